package harness

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	configv1 "github.com/openshift/api/config/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The mosb image is built by mosb's own engine: a runtime rootfs (the dynamic loader and the
// shared libraries the binary needs, busybox, users, CAs) is pushed as a one-layer base image, the
// binary as a second one-layer image, and `mosb build` layers the binary on the base with a
// Containerfile (COPY --from=<binary image> + ENTRYPOINT), exactly as it builds an OS image.

// MosbUID is the uid (and gid) of the image's unprivileged user "mosb": the controller runs as it.
const MosbUID = 65532

// MosbImageRepo, MosbRuntimeRepo and MosbBinaryRepo are the repositories BuildMosbImage pushes to:
// the mosb image, its base (the runtime rootfs) and the image holding only the binary.
const (
	MosbImageRepo   = "mosb/mosb"
	MosbRuntimeRepo = "mosb/runtime"
	MosbBinaryRepo  = "mosb/binary"
)

// MosbImageBinary is where the mosb binary is in the image, and its entrypoint.
const MosbImageBinary = "/usr/bin/mosb"

// mosbImagePath is the image's PATH: `mosb worker` (a build pod's command) is found through it.
const mosbImagePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// mosbImageApplets are busybox's applets linked into the mosb image's /bin: the base image's (for
// the Containerfile template's RUN steps) and what helps when debugging inside a build pod.
var mosbImageApplets = append(slices.Clone(busyboxApplets),
	"awk", "basename", "cut", "df", "diff", "dirname", "du", "free", "hexdump", "hostname", "kill",
	"less", "mktemp", "mount", "nslookup", "ps", "pwd", "readlink", "realpath", "rmdir", "sort",
	"top", "tr", "umount", "uniq", "vi", "wget", "whoami", "xargs",
)

// mosbContainerfile is the user content of the MachineOSConfig that builds the mosb image.
const mosbContainerfile = `COPY --from=%s %s %s
LABEL org.opencontainers.image.title=mosb
USER %d:%d
ENTRYPOINT ["%s"]
`

// BuildMosbImage builds the mosb image for this machine's architecture with `mosb build` (the
// binary at mosbBin) and pushes it to reg as <reg.Host>/mosb/mosb:<tag>: BuildMosbIndex with one
// architecture. Returns the tag pullspec and the digest pullspec.
func BuildMosbImage(t T, reg *Registry, mosbBin, tag string) (tagRef, digestRef string) {
	t.Helper()
	return BuildMosbIndex(t, reg, tag, map[string]string{runtime.GOARCH: mosbBin})
}

// BuildMosbIndex builds the mosb image for every architecture of bins (architecture → the mosb
// binary built for it) with `mosb build`, run by the binary of this machine's architecture, and
// pushes it to reg as <reg.Host>/mosb/mosb:<tag>: with several architectures, an image per
// architecture and an index under the tag. Returns the tag pullspec and the digest pullspec.
//
// What the build starts from goes to reg too: the runtime rootfs of each architecture as one
// index (mosb/runtime:<tag>, the base image) and each binary as an image of its own
// (mosb/binary:<tag>-<arch>), which each architecture's containerFile entry copies in; the build
// names them under MosbImageSources. Other
// architectures than this machine's build under qemu (make deps registers it). The same binaries,
// busybox and CA bundle give the same digest.
func BuildMosbIndex(t T, reg *Registry, tag string, bins map[string]string) (tagRef, digestRef string) {
	t.Helper()
	host, ok := bins[runtime.GOARCH]
	if !ok {
		t.Fatalf("the mosb image is built by `mosb build` of this machine's architecture (%s): no %s binary among %v", runtime.GOARCH, runtime.GOARCH, slices.Sorted(maps.Keys(bins)))
	}
	arches := slices.Sorted(maps.Keys(bins))
	var bases []v1.Image
	content := map[string]string{}
	for _, arch := range arches {
		base, err := MosbRuntimeImage(bins[arch], BusyboxPath(arch), arch)
		if err != nil {
			t.Fatalf("assembling the %s runtime rootfs of the mosb image: %v", arch, err)
		}
		bases = append(bases, base)
		bin, err := mosbBinaryImage(bins[arch], arch)
		if err != nil {
			t.Fatalf("packing %s as an image: %v", bins[arch], err)
		}
		binRef := stableSource(reg, pushImage(t, reg, MosbBinaryRepo+":"+tag+"-"+arch, bin))
		content[arch] = fmt.Sprintf(mosbContainerfile, binRef, MosbImageBinary, MosbImageBinary, MosbUID, MosbUID, MosbImageBinary)
	}
	baseRef := stableSource(reg, pushIndex(t, reg, MosbRuntimeRepo+":"+tag, bases))

	dir := t.TempDir()
	tagRef = reg.Host + "/" + MosbImageRepo + ":" + tag
	in := WriteBuildInputs(t, reg, dir, "mosb-image", baseRef, tagRef, content)
	mustWrite(t, filepath.Join(in.ClusterConfig, "mirror.yaml"), mustYAML(&configv1.ImageDigestMirrorSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: configv1.GroupVersion.String(), Kind: "ImageDigestMirrorSet"},
		ObjectMeta: metav1.ObjectMeta{Name: "mosb-image-sources"},
		Spec: configv1.ImageDigestMirrorSetSpec{ImageDigestMirrors: []configv1.ImageDigestMirrors{{
			Source:             MosbImageSources,
			Mirrors:            []configv1.ImageMirror{configv1.ImageMirror(reg.Host + "/mosb")},
			MirrorSourcePolicy: configv1.NeverContactSource,
		}}},
	}))

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, host, append(in.Args(), "--arch", strings.Join(arches, ","), "--root", filepath.Join(dir, "root"))...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("`mosb build` of the mosb image: %v\n%s", err, lastLines(stderr.String(), 60))
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	digestRef = lines[len(lines)-1]
	if !strings.HasPrefix(digestRef, reg.Host+"/"+MosbImageRepo+"@sha256:") {
		t.Fatalf("`mosb build` printed %q as its last line, not the mosb image by digest\n%s", digestRef, lastLines(stderr.String(), 60))
	}
	t.Logf("built the mosb image %s for %s in %s (base %s)", digestRef, strings.Join(arches, ", "), time.Since(start).Round(time.Second), baseRef)
	return tagRef, digestRef
}

// MosbImageSources is the name the mosb image's build gives the images it starts from (its base
// label and history record it): reg serves them through an ImageDigestMirrorSet, so that the
// image does not depend on the address of the registry it was built against.
const MosbImageSources = "mosb-image.invalid/mosb"

// stableSource is ref, an image pushed to reg's mosb/ namespace by digest, under MosbImageSources.
func stableSource(reg *Registry, ref string) string {
	return strings.Replace(ref, reg.Host+"/mosb", MosbImageSources, 1)
}

// BuildInputs are the files `mosb build` reads: a MachineOSConfig, a --cluster-config directory
// and an --authfile.
type BuildInputs struct {
	MachineOSConfig, ClusterConfig, AuthFile string
}

// Args are `mosb build`'s arguments for the inputs (without --root and --arch).
func (in BuildInputs) Args() []string {
	return []string{"build", "-f", in.MachineOSConfig, "--cluster-config", in.ClusterConfig, "--authfile", in.AuthFile}
}

// WriteBuildInputs writes, under dir, what `mosb build` needs to build content (containerFile
// entries by architecture, "noarch" for one that names none; see BuildMachineOSConfig) on base and
// push it to target on reg: the MachineOSConfig mosc, the registry's CA as additionalTrustedCA (or
// the registry as insecure when it speaks plain HTTP) and its credentials.
func WriteBuildInputs(t T, reg *Registry, dir, mosc, base, target string, content map[string]string) BuildInputs {
	t.Helper()
	in := BuildInputs{
		MachineOSConfig: filepath.Join(dir, "machineosconfig.yaml"),
		ClusterConfig:   filepath.Join(dir, "cluster"),
		AuthFile:        filepath.Join(dir, "auth.json"),
	}
	mustWrite(t, in.MachineOSConfig, BuildMachineOSConfig(mosc, base, target, "", content))
	WriteClusterConfig(t, in.ClusterConfig, reg)
	WriteAuthFile(t, in.AuthFile, reg)
	return in
}

// MosbRuntimeImage is the mosb image's base: one layer holding what the binary at mosbBin needs at
// run time and nothing of mosb itself. The dynamic loader and the shared libraries come from this
// machine, found the way the loader finds them (the binary's PT_INTERP and DT_NEEDED entries,
// transitively); busybox-static gives /bin/sh and the applets; /etc/passwd and /etc/group have
// root and mosb (MosbUID); the CA bundle is this machine's. Entries are sorted and dated at the
// epoch: the same inputs give the same digest.
func MosbRuntimeImage(mosbBin, busybox, arch string) (v1.Image, error) {
	var fs rootfs
	for _, d := range []string{"bin", "dev", "etc", "home", "proc", "root", "run", "sbin", "sys", "usr", "usr/bin", "usr/lib", "usr/local", "usr/local/bin", "usr/sbin", "var", "var/lib"} {
		fs.dir(d, 0o755)
	}
	fs.dir("root", 0o700)
	for _, d := range []string{"tmp", "var/tmp"} {
		fs.dir(d, 0o1777)
	}
	fs.symlink("var/run", "../run")
	fs.add(rootfsEntry{name: "home/mosb", typ: tar.TypeDir, mode: 0o700, uid: MosbUID, gid: MosbUID})

	objects, err := sharedObjects(mosbBin, arch)
	if err != nil {
		return nil, err
	}
	for _, o := range objects {
		data, err := os.ReadFile(o.host) // through symlinks: the image gets the file itself
		if err != nil {
			return nil, err
		}
		fs.file(strings.TrimPrefix(o.image, "/"), 0o755, data)
	}

	bb, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("reading busybox-static (install it with `make deps`): %w", err)
	}
	fs.file("bin/busybox", 0o755, bb)
	for _, a := range mosbImageApplets {
		fs.symlink("bin/"+a, "busybox")
	}
	fs.symlink("sbin/nologin", "../bin/busybox")

	ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		return nil, fmt.Errorf("reading this machine's CA bundle (Debian package ca-certificates): %w", err)
	}
	fs.file("etc/ssl/certs/ca-certificates.crt", 0o644, ca)
	fs.file("etc/passwd", 0o644, fmt.Appendf(nil, "root:x:0:0:root:/root:/bin/sh\nmosb:x:%d:%d:mosb:/home/mosb:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n", MosbUID, MosbUID))
	fs.file("etc/group", 0o644, fmt.Appendf(nil, "root:x:0:\nmosb:x:%d:\nnogroup:x:65534:\n", MosbUID))
	fs.file("etc/nsswitch.conf", 0o644, []byte("passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n"))
	fs.file("etc/os-release", 0o644, []byte("NAME=\"mosb runtime\"\nID=mosb\nPRETTY_NAME=\"mosb runtime (busybox, "+arch+")\"\n"))

	layer, err := fs.layer()
	if err != nil {
		return nil, err
	}
	return singleLayerImage(layer, arch, func(c *v1.Config) {
		c.Env = []string{mosbImagePath}
		c.Cmd = []string{"/bin/sh"}
		c.Labels = map[string]string{"org.opencontainers.image.title": "mosb runtime"}
	})
}

// mosbBinaryImage is an image whose only content is the mosb binary at MosbImageBinary.
func mosbBinaryImage(mosbBin, arch string) (v1.Image, error) {
	if err := checkELFArch(mosbBin, arch); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(mosbBin)
	if err != nil {
		return nil, err
	}
	var fs rootfs
	fs.file(strings.TrimPrefix(MosbImageBinary, "/"), 0o755, data)
	layer, err := fs.layer()
	if err != nil {
		return nil, err
	}
	return singleLayerImage(layer, arch, func(c *v1.Config) {
		c.Labels = map[string]string{"org.opencontainers.image.title": "mosb binary"}
	})
}

// singleLayerImage is an OCI image of one layer for linux/arch, created at the epoch.
func singleLayerImage(layer v1.Layer, arch string, config func(*v1.Config)) (v1.Image, error) {
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = arch, "linux"
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	for i := range cf.History {
		cf.History[i].Created = cf.Created
		cf.History[i].CreatedBy = "mosb test harness"
	}
	config(&cf.Config)
	return mutate.ConfigFile(img, cf)
}

// pushImage pushes img to <reg.Host>/<repoTag> and returns it by digest.
func pushImage(t T, reg *Registry, repoTag string, img v1.Image) string {
	t.Helper()
	ref, err := name.NewTag(reg.Host+"/"+repoTag, nameOpts(reg)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := remote.Write(ref, img, remote.WithAuth(reg.Auth()), remote.WithTransport(reg.Transport()), remote.WithContext(ctx)); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return ref.Context().Name() + "@" + d.String()
}

// elfMachines are the ELF machines of the architectures an image can be built for.
var elfMachines = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390,
}

// multiarchTriplets name the Debian library directories of each architecture.
var multiarchTriplets = map[string]string{
	"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu", "ppc64le": "powerpc64le-linux-gnu", "s390x": "s390x-linux-gnu",
}

func checkELFArch(bin, arch string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("%s: %w", bin, err)
	}
	defer f.Close()
	return elfArchMatches(f, bin, arch)
}

func elfArchMatches(f *elf.File, file, arch string) error {
	want, ok := elfMachines[arch]
	if !ok {
		return fmt.Errorf("no ELF machine known for architecture %q", arch)
	}
	if f.Machine != want {
		return fmt.Errorf("%s is a %s binary, not %s (%s)", file, f.Machine, arch, want)
	}
	return nil
}

// placedPath is a path on this machine (host) and the one the image has it at (image): the same
// for this machine's architecture; for another one, a file or directory of Debian's
// cross-compilation sysroot (/usr/<triplet>/lib, package libc6-<arch>-cross) and where the
// image's loader looks for it.
type placedPath struct{ host, image string }

// sharedObjects returns what the dynamic binary bin needs to start: its program interpreter and
// every shared library it loads, transitively (none for a static binary), searched as the loader
// does without an ld.so.cache (the binary's DT_RUNPATH/DT_RPATH, then the architecture's multiarch
// directories, then /lib64, /usr/lib64, /lib, /usr/lib), skipping files of another architecture.
// For another architecture than this machine's, Debian's cross sysroot stands for its multiarch
// directory. Image paths are the ones searched, not resolved through symlinks: the loader in the
// image finds them there.
func sharedObjects(bin, arch string) ([]placedPath, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", bin, err)
	}
	defer f.Close()
	if err := elfArchMatches(f, bin, arch); err != nil {
		return nil, err
	}
	interp := ""
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		raw, err := io.ReadAll(p.Open())
		if err != nil {
			return nil, fmt.Errorf("%s: reading PT_INTERP: %w", bin, err)
		}
		interp = strings.TrimRight(string(raw), "\x00")
	}
	if interp == "" {
		return nil, nil
	}
	triplet := multiarchTriplets[arch]
	var dirs []placedPath
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		vals, _ := f.DynString(tag)
		for _, v := range vals {
			for _, d := range strings.Split(v, ":") {
				dirs = append(dirs, placedPath{d, d})
			}
		}
	}
	if arch != runtime.GOARCH {
		dirs = append(dirs, placedPath{"/usr/" + triplet + "/lib", "/lib/" + triplet})
	}
	for _, d := range []string{"/lib/" + triplet, "/usr/lib/" + triplet, "/lib64", "/usr/lib64", "/lib", "/usr/lib"} {
		dirs = append(dirs, placedPath{d, d})
	}

	// find looks for a file of the architecture: at the path the image has it, else in the
	// directories' host copies.
	find := func(soname string) (placedPath, []string, error) {
		var candidates []placedPath
		if path.IsAbs(soname) {
			candidates = append(candidates, placedPath{soname, soname})
			if arch != runtime.GOARCH { // the loader: Debian's cross sysroot has it too
				candidates = append(candidates, placedPath{path.Join("/usr", triplet, "lib", path.Base(soname)), soname})
			}
		} else {
			for _, d := range dirs {
				candidates = append(candidates, placedPath{path.Join(d.host, soname), path.Join(d.image, soname)})
			}
		}
		for _, c := range candidates {
			lf, err := elf.Open(c.host)
			if err != nil {
				continue
			}
			if elfArchMatches(lf, c.host, arch) != nil {
				lf.Close()
				continue
			}
			needed, err := lf.ImportedLibraries()
			lf.Close()
			if err != nil {
				return placedPath{}, nil, fmt.Errorf("%s: reading DT_NEEDED: %w", c.host, err)
			}
			return c, needed, nil
		}
		var searched []string
		for _, c := range candidates {
			searched = append(searched, path.Dir(c.host))
		}
		hint := ""
		if arch != runtime.GOARCH {
			hint = fmt.Sprintf(" (for %s on this %s machine: Debian's cross sysroot, e.g. package libc6-dev-%s-cross)", arch, runtime.GOARCH, debianArch(arch))
		}
		return placedPath{}, nil, fmt.Errorf("%s needs %s, found in none of %s%s", bin, soname, strings.Join(slices.Compact(searched), ", "), hint)
	}

	loader, _, err := find(interp)
	if err != nil {
		return nil, err
	}
	objects := []placedPath{loader}
	seen := map[string]bool{path.Base(interp): true}
	queue, err := f.ImportedLibraries()
	if err != nil {
		return nil, fmt.Errorf("%s: reading DT_NEEDED: %w", bin, err)
	}
	for len(queue) > 0 {
		soname := queue[0]
		queue = queue[1:]
		if seen[soname] {
			continue
		}
		seen[soname] = true
		o, needed, err := find(soname)
		if err != nil {
			return nil, err
		}
		objects = append(objects, o)
		queue = append(queue, needed...)
	}
	slices.SortFunc(objects[1:], func(a, b placedPath) int { return strings.Compare(a.image, b.image) })
	return objects, nil
}

// debianArch is Debian's name of a Go architecture.
func debianArch(arch string) string {
	if arch == "ppc64le" {
		return "ppc64el"
	}
	return arch
}

// rootfs is a layer's content under construction: entries by path, written sorted with parents
// before children, owned by root unless said otherwise and dated at the epoch.
type rootfs struct {
	entries map[string]rootfsEntry
}

type rootfsEntry struct {
	name     string
	typ      byte
	mode     int64
	uid, gid int
	data     []byte
	link     string
}

func (fs *rootfs) add(e rootfsEntry) {
	if fs.entries == nil {
		fs.entries = map[string]rootfsEntry{}
	}
	fs.entries[e.name] = e
}

func (fs *rootfs) dir(name string, mode int64) {
	fs.add(rootfsEntry{name: name, typ: tar.TypeDir, mode: mode})
}

func (fs *rootfs) file(name string, mode int64, data []byte) {
	fs.add(rootfsEntry{name: name, typ: tar.TypeReg, mode: mode, data: data})
}

func (fs *rootfs) symlink(name, target string) {
	fs.add(rootfsEntry{name: name, typ: tar.TypeSymlink, mode: 0o777, link: target})
}

// tar writes the entries, adding the missing parent directories (0755).
func (fs *rootfs) tar(w io.Writer) error {
	for _, name := range slices.Collect(maps.Keys(fs.entries)) {
		for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
			if _, ok := fs.entries[d]; !ok {
				fs.dir(d, 0o755)
			}
		}
	}
	tw := tar.NewWriter(w)
	epoch := time.Unix(0, 0).UTC()
	for _, name := range slices.Sorted(maps.Keys(fs.entries)) {
		e := fs.entries[name]
		h := &tar.Header{Typeflag: e.typ, Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: epoch, Linkname: e.link}
		switch e.typ {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeReg:
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// layer is the entries as one gzip-compressed OCI layer, compressed once.
func (fs *rootfs) layer() (v1.Layer, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := fs.tar(zw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
