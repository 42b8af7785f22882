package containerfiles

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Names a Containerfile assembled by mosb guarantees to user content.
const (
	// StageConfigs is the stage holding the base OS image and the rendered MachineConfig. Content
	// without a FROM of its own continues it; multi-stage content usually starts its final stage
	// with "FROM configs AS final", as for the Machine Config Operator's on-cluster builds.
	StageConfigs = "configs"
	// StageExtensions is the stage holding the base OS extensions image, present only when the
	// MachineOSConfig has one: "COPY --from=extensions …" or
	// "RUN --mount=type=bind,from=extensions,source=/,target=/run/extensions …".
	StageExtensions = "extensions"
	// CurrentConfigPath is where the rendered MachineConfig lands in the image.
	CurrentConfigPath = "/etc/machine-config-daemon/currentconfig"
	// ContextCurrentConfig is the rendered MachineConfig's path in the build context.
	ContextCurrentConfig = "machineconfig/currentconfig"
	// ContextMachineConfigLayer is the rendered MachineConfig's Ignition content (a gzip tar, see
	// package ignitionlayer) in the build context, ADDed to / in the configs stage.
	ContextMachineConfigLayer = "machineconfig/ignition.tar.gz"
	// TrustedCAPath is where the cluster's user CA bundle lands in the image, as the Machine Config
	// Operator puts it (update-ca-trust then adds it to the trust store, where the base has it).
	TrustedCAPath = "/etc/pki/ca-trust/source/anchors/openshift-config-user-ca-bundle.crt"
	// ContextTrustedCA is that bundle's path in the build context.
	ContextTrustedCA = "cluster/openshift-config-user-ca-bundle.crt"
)

// updateCATrustScript refreshes the trust store of a base that has update-ca-trust (RHEL, RHCOS,
// Fedora) and does nothing on others.
const updateCATrustScript = "if command -v update-ca-trust >/dev/null 2>&1; then update-ca-trust; fi"

// Labels of every image mosb builds. They are set by the last instruction of the final stage, so
// user content cannot override them.
const (
	LabelPrefix = "machineconfiguration.openshift.io/"
	// LabelMachineOSConfig is the MachineOSConfig's name.
	LabelMachineOSConfig = LabelPrefix + "machineosconfig"
	// LabelPool is the MachineConfigPool's name.
	LabelPool = LabelPrefix + "pool"
	// LabelRenderedMachineConfig is the rendered MachineConfig's name; absent when unknown.
	LabelRenderedMachineConfig = LabelPrefix + "rendered-machineconfig"
	// LabelBaseImage is the base OS image pullspec, by digest.
	LabelBaseImage = LabelPrefix + "base-image"
	// LabelExtensionsImage is the base OS extensions image pullspec, by digest; absent when none.
	LabelExtensionsImage = LabelPrefix + "extensions-image"
	// LabelReleaseVersion is the OpenShift release of the base image; absent when unknown.
	LabelReleaseVersion = LabelPrefix + "release-version"
	// LabelContainerfileArch is the containerFile entry used: the architecture's own (amd64, …),
	// noarch, or none.
	LabelContainerfileArch = LabelPrefix + "containerfile-arch"
)

// ostreeCommitScript finalises an ostree-native container image (RHCOS, FCOS) and does nothing
// elsewhere. ostree-native images carry their ostree repository at /sysroot/ostree/repo (the
// ostree-ext container format); a base without it, such as a busybox test base or a Debian image
// that merely ships the ostree package (whose ostree has no container command, and answers
// "--help" to any command with success), has nothing to finalise and would fail the build.
const ostreeCommitScript = "if [ -d /sysroot/ostree/repo ] && command -v ostree >/dev/null 2>&1; then ostree container commit; fi"

// Containerfile is what one architecture's build needs: the Containerfile and its build context.
type Containerfile struct {
	// Arch is the architecture the Containerfile builds.
	Arch Arch
	// Selection is the containerFile entry used; record Selection.EntryArch in the MachineOSBuild.
	Selection Selection
	// Text is the Containerfile.
	Text string
	// Context maps paths relative to the build context directory to their content. The map is
	// the Containerfile's own (no aliasing of Input).
	Context map[string][]byte
}

// ContextPaths returns the build context's paths in sorted order, for callers that write or hash
// the context and must not depend on map order.
func (c *Containerfile) ContextPaths() []string {
	return slices.Sorted(maps.Keys(c.Context))
}

// Assemble builds the Containerfile of one architecture. The result has been parsed with the
// parser buildah uses and run through imagebuilder's evaluator without executing anything, so a
// build fails only for reasons that need the images themselves. Errors about the user's content
// match ErrInvalidContainerfile (see InvalidContainerfileError); errors about the rest of the input
// match ErrInvalidInput. Only the entry used for arch is checked; Validate checks all of them.
func Assemble(in Input, arch Arch) (*Containerfile, error) {
	buildArch, err := NormalizeBuildArch(string(arch))
	if err != nil {
		return nil, err
	}
	if err := in.checkScalars(); err != nil {
		return nil, err
	}
	selection, err := SelectEntry(in.Entries, buildArch)
	if err != nil {
		return nil, err
	}
	return assembleSelection(in, selection)
}

// Validate checks everything Assemble would, for every containerFile entry at once, so that a
// MachineOSConfig is refused before any build whichever architectures it is built for. The errors
// of several entries are joined.
func Validate(in Input) error {
	if err := in.checkScalars(); err != nil {
		return err
	}
	if err := CheckArchitectures(in.Entries); err != nil {
		return err
	}
	var problems []error
	for i, entry := range in.Entries {
		entryArch, _ := NormalizeArch(entryArchName(entry)) // indexEntries accepted it
		selection := Selection{Arch: entryArch, Source: SourceOwn, Index: i, EntryArch: entryArch, EntryName: entryArchName(entry), Content: entry.Content}
		if entryArch == NoArch {
			// The content does not depend on the architecture; any build architecture checks it.
			selection.Arch, selection.Source = AMD64, SourceNoArch
		}
		if _, err := assembleSelection(in, selection); err != nil {
			problems = append(problems, err)
		}
	}
	return errors.Join(problems...)
}

func assembleSelection(in Input, selection Selection) (*Containerfile, error) {
	var content *userContent
	if selection.Source != SourceNone {
		checker := contentChecker{entryName: selection.EntryName, extensionsAvailable: in.ExtensionsImage != ""}
		var err error
		if content, err = checker.parse(selection.Content); err != nil {
			return nil, err
		}
	}
	doc := render(in, selection, content)
	if err := doc.verify(selection.EntryName); err != nil {
		if content == nil {
			return nil, fmt.Errorf("mosb's Containerfile template does not verify (a bug in mosb): %w", err)
		}
		return nil, err
	}
	result := &Containerfile{Arch: selection.Arch, Selection: selection, Text: doc.text.String(), Context: map[string][]byte{}}
	if len(in.RenderedMachineConfigContent) > 0 {
		result.Context[ContextCurrentConfig] = slices.Clone(in.RenderedMachineConfigContent)
	}
	if len(in.MachineConfigLayer) > 0 {
		result.Context[ContextMachineConfigLayer] = slices.Clone(in.MachineConfigLayer)
	}
	if len(in.TrustedCABundle) > 0 {
		result.Context[ContextTrustedCA] = slices.Clone(in.TrustedCABundle)
	}
	return result, nil
}

func render(in Input, selection Selection, content *userContent) *document {
	doc := &document{}
	hasCurrentConfig := len(in.RenderedMachineConfigContent) > 0
	copyCurrentConfig := "COPY --chmod=0644 " + ContextCurrentConfig + " " + CurrentConfigPath

	doc.comment("# Containerfile assembled by mosb; generated, do not edit.")
	doc.comment(fmt.Sprintf("# MachineOSConfig %s, MachineConfigPool %s, architecture %s.", in.MachineOSConfig, in.Pool, selection.Arch))
	switch selection.Source {
	case SourceOwn:
		doc.comment(fmt.Sprintf("# User content: containerFile entry %s.", selection.EntryName))
	case SourceNoArch:
		doc.comment(fmt.Sprintf("# User content: containerFile entry %s (there is no %s entry).", selection.EntryName, selection.Arch))
	default:
		doc.comment(fmt.Sprintf("# User content: none (no %s entry and no noarch entry).", selection.Arch))
	}

	if content != nil && content.hasFrom && len(content.headingArgs) > 0 {
		doc.comment("")
		doc.comment("# The ARGs before the user content's first FROM, declared here too so that its FROM lines can use them.")
		for _, arg := range content.headingArgs {
			doc.userInstruction(arg.Original, arg.StartLine)
		}
	}

	if in.ExtensionsImage != "" {
		doc.comment("")
		doc.comment("# The base OS extensions image, for the user content: COPY --from=" + StageExtensions + " or RUN --mount=type=bind,from=" + StageExtensions + ".")
		doc.instruction("FROM " + in.ExtensionsImage + " AS " + StageExtensions)
	}

	doc.comment("")
	doc.comment("# The base OS image with the rendered MachineConfig. User content without a FROM continues this stage;")
	doc.comment("# multi-stage user content can start its final stage with FROM " + StageConfigs + ".")
	doc.instruction("FROM " + in.BaseImage + " AS " + StageConfigs)
	if hasCurrentConfig {
		doc.instruction(copyCurrentConfig)
	}
	if len(in.MachineConfigLayer) > 0 {
		doc.comment("# The rendered MachineConfig's files, directories, links and systemd units, as ignition-apply would write them.")
		doc.instruction("ADD " + ContextMachineConfigLayer + " /")
	}
	if len(in.TrustedCABundle) > 0 {
		doc.comment("# The cluster's user CA bundle (Proxy spec.trustedCA), trusted by the image and by the RUN steps after it.")
		doc.instruction("COPY --chmod=0644 " + ContextTrustedCA + " " + TrustedCAPath)
		doc.instruction(`RUN ["/bin/sh", "-c", "` + updateCATrustScript + `"]`)
	}

	if content != nil {
		doc.comment("")
		doc.comment(fmt.Sprintf("# containerFile[arch=%s] begins.", selection.EntryName))
		doc.userContent(content)
		doc.comment(fmt.Sprintf("# containerFile[arch=%s] ends.", selection.EntryName))
	}

	doc.comment("")
	doc.comment("# mosb's closing steps, in the final stage whatever the user content left last.")
	if hasCurrentConfig && content != nil {
		// Copied again: the user content may have started another stage or changed the file, and
		// the machine-config-daemon must find the rendered MachineConfig exactly.
		doc.instruction(copyCurrentConfig)
	}
	doc.instruction(labelInstruction(imageLabels(in, selection))...)
	doc.instruction(`RUN ["/bin/sh", "-c", "` + ostreeCommitScript + `"]`)
	return doc
}

type label struct{ key, value string }

// imageLabels returns the labels in the fixed order they are written in.
func imageLabels(in Input, selection Selection) []label {
	labels := []label{
		{LabelMachineOSConfig, in.MachineOSConfig},
		{LabelPool, in.Pool},
	}
	if in.RenderedMachineConfig != "" {
		labels = append(labels, label{LabelRenderedMachineConfig, in.RenderedMachineConfig})
	}
	labels = append(labels, label{LabelBaseImage, in.BaseImage})
	if in.ExtensionsImage != "" {
		labels = append(labels, label{LabelExtensionsImage, in.ExtensionsImage})
	}
	if in.ReleaseVersion != "" {
		labels = append(labels, label{LabelReleaseVersion, in.ReleaseVersion})
	}
	entry := string(selection.EntryArch)
	if selection.Source == SourceNone {
		entry = string(SourceNone)
	}
	return append(labels, label{LabelContainerfileArch, entry})
}

// labelInstruction writes one LABEL instruction, one label per line.
func labelInstruction(labels []label) []string {
	lines := []string{"LABEL \\"}
	for i, l := range labels {
		line := "    " + quoteLabelWord(l.key) + "=" + quoteLabelWord(l.value)
		if i < len(labels)-1 {
			line += " \\"
		}
		lines = append(lines, line)
	}
	return lines
}

// labelEscaper makes a string one double-quoted word for the evaluator: inside double quotes it
// gives \ " and $ their special meaning, so they are escaped.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`)

func quoteLabelWord(s string) string {
	return `"` + labelEscaper.Replace(s) + `"`
}

// document is an assembled Containerfile under construction. It remembers which of its lines
// came from the user's content (to report errors in the user's line numbers) and where each
// instruction starts and ends (to check that the parser sees exactly the instructions written).
type document struct {
	text strings.Builder
	// origins[i] is the user's line number of line i+1, 0 for mosb's lines.
	origins []int
	// instructions are the expected [start, end] lines of every instruction.
	instructions [][2]int
}

func (d *document) line(text string, origin int) {
	d.text.WriteString(text)
	d.text.WriteByte('\n')
	d.origins = append(d.origins, origin)
}

func (d *document) comment(text string) { d.line(text, 0) }

func (d *document) instruction(lines ...string) {
	start := len(d.origins) + 1
	for _, text := range lines {
		d.line(text, 0)
	}
	d.instructions = append(d.instructions, [2]int{start, len(d.origins)})
}

func (d *document) userInstruction(text string, origin int) {
	d.line(text, origin)
	d.instructions = append(d.instructions, [2]int{len(d.origins), len(d.origins)})
}

// userContent writes the content verbatim: its lines keep their bytes (a \r included).
func (d *document) userContent(content *userContent) {
	offset := len(d.origins)
	lines := strings.Split(strings.TrimSuffix(content.text, "\n"), "\n")
	for i, text := range lines {
		d.line(text, i+1)
	}
	for _, node := range content.nodes {
		d.instructions = append(d.instructions, [2]int{offset + node.StartLine, offset + node.EndLine})
	}
}

// userLine maps a line of the document to the user's line number (0 for mosb's lines).
func (d *document) userLine(line int) int {
	if line < 1 || line > len(d.origins) {
		return 0
	}
	return d.origins[line-1]
}

// verify parses the document, checks that the parser sees the instructions that were written, and
// runs them through the evaluator. Problems on user lines are reported in the user's line numbers.
func (d *document) verify(entryName string) error {
	invalid := func(line int, reason string, cause error) error {
		return &InvalidContainerfileError{Arch: entryName, Line: line, Reason: reason, Err: cause}
	}
	result, err := safeParse(d.text.String())
	if err != nil {
		return invalid(0, "the assembled Containerfile cannot be parsed: "+err.Error(), err)
	}
	nodes := result.AST.Children
	for i, node := range nodes {
		if i >= len(d.instructions) || node.StartLine != d.instructions[i][0] || node.EndLine != d.instructions[i][1] {
			return invalid(d.userLine(node.StartLine), "the content does not keep its meaning once mosb's own lines are around it "+
				fmt.Sprintf("(instruction %d of the assembled Containerfile spans lines %d-%d)", i+1, node.StartLine, node.EndLine), nil)
		}
	}
	if len(nodes) != len(d.instructions) {
		return invalid(0, fmt.Sprintf("the assembled Containerfile has %d instructions where %d were written", len(nodes), len(d.instructions)), nil)
	}
	failed, err := evaluate(result.AST)
	if err == nil {
		return nil
	}
	if failed != nil {
		if line := d.userLine(failed.StartLine); line > 0 {
			return invalid(line, err.Error(), err)
		}
		return invalid(0, fmt.Sprintf("mosb's own instruction on line %d of the assembled Containerfile fails after this content: %v", failed.StartLine, err), err)
	}
	return invalid(0, err.Error(), err)
}
