// Package containerfiles turns a MachineOSConfig's inputs into the Containerfile (and build
// context) of one architecture, and refuses content mosb cannot build before any build starts.
//
// It is a pure library: plain values in, plain values out, no I/O and no global mutable state.
//
// # Architectures
//
// Users write amd64, x86_64, arm64, aarch64, ppc64le, s390x or noarch (an omitted
// containerfileArch is noarch). NormalizeArch maps them to an Arch; CheckArchitectures refuses
// unknown names and two entries for one architecture (x86_64 and amd64, aarch64 and arm64, two
// noarch). SelectEntry picks the entry of a build architecture: its own, else noarch, else none
// (Selection.Source); with none the image is built without user content.
//
// # The template
//
//	# Containerfile assembled by mosb; generated, do not edit.          (header comments)
//	ARG …                               only when the user content has a FROM: the ARGs it
//	                                    declares before its first FROM, so its FROM lines can use them
//	FROM <extensions@digest> AS extensions       only with an extensions image
//	FROM <base@digest> AS configs
//	COPY --chmod=0644 machineconfig/currentconfig /etc/machine-config-daemon/currentconfig
//	<the user content, byte for byte>
//	COPY --chmod=0644 machineconfig/currentconfig /etc/machine-config-daemon/currentconfig
//	LABEL machineconfiguration.openshift.io/…
//	RUN ["/bin/sh", "-c", "if [ -d /sysroot/ostree/repo ] && command -v ostree >/dev/null 2>&1; then ostree container commit; fi"]
//
// The COPY lines are there only with a rendered MachineConfig; the second one only with user
// content. The testdata directory holds complete examples.
//
// What user content can rely on:
//   - Content without a FROM continues the configs stage: the base image with the rendered
//     MachineConfig at /etc/machine-config-daemon/currentconfig.
//   - Content with FROM lines is multi-stage. "FROM configs AS final" (as for the Machine Config
//     Operator's on-cluster builds) starts from the same state. Instructions before the first
//     FROM still apply to configs; ARGs before the first FROM can be used in FROM lines. A FROM
//     not by digest is allowed, but then the same inputs no longer guarantee the same image.
//   - The stage extensions exists when the MachineOSConfig has a base OS extensions image:
//     "COPY --from=extensions …" and "RUN --mount=type=bind,from=extensions,target=… …".
//   - Whatever stage the content leaves last is the image. mosb's closing steps always run at
//     the very end, in that stage: they copy the rendered MachineConfig again (the content may
//     have started a new stage or changed the file), set the labels (after the content's, so
//     they win), and run "ostree container commit" when the image is ostree-native (it has
//     /sysroot/ostree/repo, as RHCOS has; a Debian image with the ostree package has not). The
//     commit step uses the exec form with /bin/sh, so a SHELL instruction does not change it and
//     a busybox base builds as well as RHCOS. It runs as the content's last USER.
//
// # Labels
//
// LabelMachineOSConfig, LabelPool, LabelRenderedMachineConfig (when known), LabelBaseImage,
// LabelExtensionsImage (when set), LabelReleaseVersion (when set) and LabelContainerfileArch (the
// entry used: an architecture, noarch or none), in that order.
//
// # What is refused
//
// Errors about the content are *InvalidContainerfileError (matching ErrInvalidContainerfile) and
// name the entry and the line within its content, e.g. "containerFile[arch=arm64] line 3: …".
// Refused, beyond what the parser and evaluator that buildah uses reject (both run on the
// assembled file before it is returned):
//   - empty content, or content with only comments;
//   - unknown instructions (the parser ignores them; buildah fails on them);
//   - a line continuation on the last line, which would swallow mosb's next line;
//   - a "# escape=" parser directive: mosb's lines come first, so it would be a plain comment;
//   - COPY and ADD from the build context, and RUN bind mounts without from=: the context holds
//     only mosb's files (heredocs, ADD <url>, --from=<stage or image> are fine);
//   - stage numbers in --from= or from=: mosb's stages come first and shift them;
//   - the stage names configs and extensions for the content's own stages;
//   - the extensions stage when there is no extensions image;
//   - a final stage FROM scratch: the image must be an OS image and the closing steps need /bin/sh.
//
// Errors about the rest of the Input (pullspecs not by digest, names, release version, build
// architecture) match ErrInvalidInput.
//
// # Images pulled
//
// PulledImages reads, with the same parser, which images a Containerfile pulls: FROM, COPY --from=
// and RUN --mount=…,from= values that are not earlier stages (or scratch, or a stage number). A
// value built from a variable is reported as unresolved instead of guessed: only the build knows it.
package containerfiles
