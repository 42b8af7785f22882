package integration

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/mosb-dev/mosb/test/harness"
)

// mosbImageGoTags are the build tags of the mosb binary (buildah as a library).
const mosbImageGoTags = "containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper"

// TestMosbImage builds the mosb image with mosb's own engine and checks what a kubelet + containerd
// node needs of it: the binary, what it loads and the users are in it, it runs in its own root
// filesystem as root and as the mosb user, containerd imports its archive by name, and building
// it again gives the same digest.
func TestMosbImage(t *testing.T) {
	if testing.Short() {
		t.Skip("needs docker-registry, buildah (mosb build) and root")
	}
	if os.Geteuid() != 0 {
		t.Skip("mosb build (chroot isolation), chroot and containerd need root")
	}
	reg := harness.StartRegistry(t)
	bin := goBuildMosb(t)
	tagRef, digestRef := harness.BuildMosbImage(t, reg, bin, "test")
	if want := reg.Host + "/" + harness.MosbImageRepo + ":test"; tagRef != want {
		t.Errorf("tag pullspec %q, want %q", tagRef, want)
	}
	img, served := pullImage(t, reg, tagRef)
	if want := digestRef[strings.Index(digestRef, "@")+1:]; served != want {
		t.Fatalf("%s serves %s, BuildMosbImage returned %s", tagRef, served, digestRef)
	}
	tree := imageTree(t, img)
	logImageSize(t, img, tree)

	t.Run("config", func(t *testing.T) {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if got := cf.Config.Entrypoint; len(got) != 1 || got[0] != harness.MosbImageBinary {
			t.Errorf("entrypoint %q, want [%s]", got, harness.MosbImageBinary)
		}
		if want := fmt.Sprintf("%d:%d", harness.MosbUID, harness.MosbUID); cf.Config.User != want {
			t.Errorf("user %q, want %q", cf.Config.User, want)
		}
		// A build pod's command is `mosb worker …`: found through PATH.
		if !envHasPathDir(cf.Config.Env, path.Dir(harness.MosbImageBinary)) {
			t.Errorf("env %q: PATH does not hold %s", cf.Config.Env, path.Dir(harness.MosbImageBinary))
		}
		if cf.Architecture != "amd64" || cf.OS != "linux" {
			t.Errorf("platform %s/%s, want linux/amd64", cf.OS, cf.Architecture)
		}
	})

	t.Run("contents", func(t *testing.T) {
		want, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		tree.wantFile(t, harness.MosbImageBinary, 0o755, sha256Hex(want))
		// What the binary loads, as this machine's loader resolves it (ldd), is in the image at the
		// same paths.
		loads := lddPaths(t, bin)
		if len(loads) == 0 {
			t.Fatalf("ldd lists nothing for %s", bin)
		}
		for _, p := range loads {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			tree.wantFile(t, p, -1, sha256Hex(data))
		}
		tree.wantLink(t, "/bin/sh", "busybox")
		tree.wantFile(t, "/bin/busybox", 0o755, "")
		ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
		if err != nil {
			t.Fatal(err)
		}
		tree.wantFile(t, "/etc/ssl/certs/ca-certificates.crt", 0o644, sha256Hex(ca))
		if passwd := tree.content("/etc/passwd"); !strings.Contains(passwd, fmt.Sprintf("\nmosb:x:%d:%d:", harness.MosbUID, harness.MosbUID)) ||
			!strings.HasPrefix(passwd, "root:x:0:0:") {
			t.Errorf("/etc/passwd has no root or no mosb (%d) entry:\n%s", harness.MosbUID, passwd)
		}
		if group := tree.content("/etc/group"); !strings.Contains(group, fmt.Sprintf("\nmosb:x:%d:", harness.MosbUID)) {
			t.Errorf("/etc/group has no mosb group:\n%s", group)
		}
		if ns := tree.content("/etc/nsswitch.conf"); !strings.Contains(ns, "passwd: files") {
			t.Errorf("/etc/nsswitch.conf:\n%s", ns)
		}
		for dir, mode := range map[string]int64{"/tmp": 0o1777, "/var/tmp": 0o1777, "/run": 0o755} {
			e, ok := tree[dir]
			if !ok || e.Typeflag != tar.TypeDir || e.Mode&0o7777 != mode {
				t.Errorf("%s: want a directory of mode %o, have %+v", dir, mode, e.Header)
			}
		}
	})

	rootDir := filepath.Join(t.TempDir(), "rootfs")
	extractImage(t, img, rootDir)
	hostVersion := strings.TrimSpace(runOut(t, bin, "version"))

	t.Run("runs in its rootfs", func(t *testing.T) {
		if got := strings.TrimSpace(runOut(t, "chroot", rootDir, harness.MosbImageBinary, "version")); got != hostVersion {
			t.Errorf("mosb version in the image: %q, on the host: %q", got, hostVersion)
		}
	})

	t.Run("runs as the mosb user", func(t *testing.T) {
		user := fmt.Sprintf("--userspec=%d:%d", harness.MosbUID, harness.MosbUID)
		groups := fmt.Sprintf("--groups=%d", harness.MosbUID)
		if got := strings.TrimSpace(runOut(t, "chroot", user, groups, rootDir, harness.MosbImageBinary, "version")); got != hostVersion {
			t.Errorf("mosb version as %d: %q, want %q", harness.MosbUID, got, hostVersion)
		}
		// The image's own passwd and group name the user (busybox id reads them).
		if got := strings.TrimSpace(runOut(t, "chroot", user, groups, rootDir, "/bin/id")); !strings.HasPrefix(got, fmt.Sprintf("uid=%d(mosb) gid=%d(mosb)", harness.MosbUID, harness.MosbUID)) {
			t.Errorf("id as %d in the image: %q", harness.MosbUID, got)
		}
	})

	t.Run("builds an image inside its rootfs", func(t *testing.T) {
		buildInsideRootfs(t, reg, bin, rootDir)
	})

	t.Run("containerd imports its archive", func(t *testing.T) {
		ctrd := startThrowawayContainerd(t)
		archive := filepath.Join(t.TempDir(), "mosb.tar")
		harness.SaveImageArchive(t, reg, digestRef, archive)
		checkArchive(t, archive, digestRef, served)
		ctrd.importArchive(t, archive, digestRef)
		// The tag as well: what a Deployment names.
		tagArchive := filepath.Join(t.TempDir(), "mosb-tag.tar")
		harness.SaveImageArchive(t, reg, tagRef, tagArchive)
		ctrd.importArchive(t, tagArchive, tagRef)
		// containerd unpacked it (as it does for a pod): the snapshot runs mosb.
		mnt := ctrd.mountImage(t, tagRef)
		if got := strings.TrimSpace(runOut(t, "chroot", mnt, harness.MosbImageBinary, "version")); got != hostVersion {
			t.Errorf("mosb version in containerd's snapshot: %q, want %q", got, hostVersion)
		}
		// An index is saved whole and imported as one image.
		index := harness.PushBaseIndex(t, reg, "os/base-index", "amd64")
		indexArchive := filepath.Join(t.TempDir(), "index.tar")
		harness.SaveImageArchive(t, reg, index, indexArchive)
		checkArchive(t, indexArchive, index, index[strings.Index(index, "@")+1:])
		ctrd.importArchive(t, indexArchive, index)
		if _, err := os.Stat(filepath.Join(ctrd.mountImage(t, index), "bin/busybox")); err != nil {
			t.Errorf("the imported index's image: %v", err)
		}
	})

	t.Run("reproducible", func(t *testing.T) {
		_, again := harness.BuildMosbImage(t, reg, bin, "again")
		if again[strings.Index(again, "@"):] != digestRef[strings.Index(digestRef, "@"):] {
			t.Errorf("the same binary built two different mosb images:\n%s\n%s", digestRef, again)
		}
	})
}

// TestMosbImagePause checks the sandbox image containerd is given: its program exits 0 on SIGTERM
// as PID 1, and containerd imports the archive by name.
func TestMosbImagePause(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the pause program")
	}
	const pauseName = "localhost/mosb/pause:test"
	archive := filepath.Join(t.TempDir(), "pause.tar")
	harness.PauseImageArchive(t, pauseName, archive)
	a := checkArchive(t, archive, pauseName, "")
	cf, layers := a.image(t)
	if got := cf.Config.Entrypoint; len(got) != 1 || got[0] != "/pause" {
		t.Fatalf("pause entrypoint %q, want [/pause]", got)
	}
	if len(layers) != 1 {
		t.Fatalf("pause image has %d layers, want 1", len(layers))
	}
	pause := layers[0]["pause"]
	if len(pause) == 0 {
		t.Fatalf("no /pause in the layer (has %v)", sortedKeys(layers[0]))
	}
	bin := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(bin, pause, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("file", bin).Output(); err == nil && !strings.Contains(string(out), "statically linked") {
		t.Errorf("the pause program is not static: %s", out)
	}

	t.Run("exits 0 on SIGTERM as PID 1", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("a PID namespace needs root")
		}
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
			cmd := exec.Command(bin)
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				t.Fatalf("pause exited on its own: %v", err)
			case <-time.After(300 * time.Millisecond):
			}
			_ = cmd.Process.Signal(sig)
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("pause as PID 1 after %s: %v, want exit 0", sig, err)
				}
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Errorf("pause as PID 1 ignored %s", sig)
			}
		}
	})

	t.Run("containerd imports it", func(t *testing.T) {
		ctrd := startThrowawayContainerd(t)
		ctrd.importArchive(t, archive, pauseName)
		mnt := ctrd.mountImage(t, pauseName)
		if fi, err := os.Stat(filepath.Join(mnt, "pause")); err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("the unpacked pause image has no executable /pause: %v", err)
		}
	})
}

// buildInsideRootfs runs `mosb build` in the image's root filesystem as a build pod runs
// `mosb worker`: the root read-only, a writable work directory for the storage, HOME and TMPDIR
// (and the paths buildah writes to whatever it is told), /proc, /dev and /sys, and the hosts and
// resolv.conf files a runtime provides. The build has a RUN step (chroot isolation) and pushes.
func buildInsideRootfs(t *testing.T, reg *harness.Registry, mosbBin, rootDir string) {
	t.Helper()
	const work = "/var/lib/mosb" // builder.PodWorkDir
	base := harness.PushBaseImage(t, reg, "os/base", "amd64")
	target := reg.Host + "/os/built-inside:latest"
	hostWork := t.TempDir()
	in := harness.WriteBuildInputs(t, reg, filepath.Join(hostWork, "inputs"), "inside", base, target,
		map[string]string{"noarch": "RUN echo built-inside-the-mosb-image > /etc/built-inside"})
	for _, d := range []string{"home", "tmp", "run-lock", "run-containers"} {
		if err := os.MkdirAll(filepath.Join(hostWork, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Mount points, as a runtime creates them before it makes the root read-only.
	for _, d := range []string{work, "/run/lock", "/run/containers"} {
		if err := os.MkdirAll(filepath.Join(rootDir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"/etc/hosts", "/etc/resolv.conf", "/etc/hostname"} {
		if err := os.WriteFile(filepath.Join(rootDir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var args []string
	for _, a := range in.Args() {
		args = append(args, strings.Replace(a, hostWork, work, 1))
	}
	args = append(args, "--arch", "amd64", "--root", work+"/build")
	script := `set -e
R=$1; W=$2; shift 2
mount --bind "$R" "$R"
mount -o remount,bind,ro "$R"
mount --bind "$W" "$R/var/lib/mosb"
mount --bind "$W/run-lock" "$R/run/lock"
mount --bind "$W/run-containers" "$R/run/containers"
for f in /etc/hosts /etc/resolv.conf /etc/hostname; do [ -e "$f" ] && mount --bind "$f" "$R$f"; done
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mount --rbind /sys "$R/sys"
exec chroot "$R" /usr/bin/mosb "$@"
`
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare (util-linux) is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// A mount namespace of its own: every mount goes when the build ends.
	cmd := exec.CommandContext(ctx, unshare, append([]string{"--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh", rootDir, hostWork}, args...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + work + "/home", "TMPDIR=" + work + "/tmp"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if strings.Contains(stderr.String(), `could not find "netavark"`) {
			// buildah (new.go) sets up a network backend for every build container unless the
			// build options carry a NetworkInterface, and containers/common's netavark backend
			// insists on finding the netavark binary, which chroot isolation never runs.
			t.Errorf("a build pod cannot build with the mosb image: the engine needs the netavark binary in its helper directories though it never runs it (builder: define.BuildOptions.NetworkInterface is nil); build output:\n%s",
				lastLinesOf(stderr.String(), 10))
			return
		}
		t.Fatalf("mosb build inside the mosb image: %v\n%s", err, lastLinesOf(stderr.String(), 40))
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	pushed := lines[len(lines)-1]
	if !strings.HasPrefix(pushed, reg.Host+"/os/built-inside@sha256:") {
		t.Fatalf("mosb build inside the mosb image printed %q\n%s", pushed, lastLinesOf(stderr.String(), 40))
	}
	img, _ := pullImage(t, reg, pushed)
	if got := imageTree(t, img).content("/etc/built-inside"); got != "built-inside-the-mosb-image\n" {
		t.Errorf("the RUN step's file in the image built inside: %q", got)
	}
	// The same build on this machine gives the same image: the engine in the image is mosb's.
	hostArgs := append(in.Args(), "--arch", "amd64", "--root", filepath.Join(t.TempDir(), "build"))
	lines = strings.Split(strings.TrimSpace(runOut(t, mosbBin, hostArgs...)), "\n")
	if onHost := lines[len(lines)-1]; onHost != pushed {
		t.Errorf("built inside the mosb image: %s; on this machine: %s", pushed, onHost)
	}
}

func goBuildMosb(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mosb")
	cmd := exec.Command("go", "build", "-tags", mosbImageGoTags, "-o", bin, "./cmd/mosb")
	cmd.Dir = harness.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/mosb: %v\n%s", err, out)
	}
	return bin
}

func pullImage(t *testing.T, reg *harness.Registry, ref string) (v1.Image, string) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r, remote.WithAuth(reg.Auth()), remote.WithTransport(reg.Transport()), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	img, err := desc.Image()
	if err != nil {
		t.Fatal(err)
	}
	return img, desc.Digest.String()
}

func runOut(t *testing.T, prog string, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(prog, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", prog, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

func envHasPathDir(env []string, dir string) bool {
	for _, e := range env {
		if p, ok := strings.CutPrefix(e, "PATH="); ok {
			for _, d := range strings.Split(p, ":") {
				if d == dir {
					return true
				}
			}
		}
	}
	return false
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// lddPaths are the files this machine's loader maps for bin: its interpreter and its libraries.
func lddPaths(t *testing.T, bin string) []string {
	t.Helper()
	var paths []string
	sc := bufio.NewScanner(strings.NewReader(runOut(t, "ldd", bin)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			paths = append(paths, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			paths = append(paths, f[0])
		}
	}
	return paths
}

// treeEntry is one path of an image's flattened layers.
type treeEntry struct {
	*tar.Header
	sha256 string
	small  []byte // the content of files up to 64 KiB
}

// fileTree is an image's flattened layers by absolute path (whiteouts applied).
type fileTree map[string]treeEntry

func imageTree(t *testing.T, img v1.Image) fileTree {
	t.Helper()
	tree := fileTree{}
	forEachLayerEntry(t, img, func(h *tar.Header, r io.Reader) {
		p := "/" + strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		dir, base := path.Split(p)
		if base == ".wh..wh..opq" {
			for k := range tree {
				if strings.HasPrefix(k, dir) {
					delete(tree, k)
				}
			}
			return
		}
		if gone, ok := strings.CutPrefix(base, ".wh."); ok {
			g := path.Join(dir, gone)
			for k := range tree {
				if k == g || strings.HasPrefix(k, g+"/") {
					delete(tree, k)
				}
			}
			return
		}
		e := treeEntry{Header: h}
		if h.Typeflag == tar.TypeReg {
			hs := sha256.New()
			var small bytes.Buffer
			if _, err := io.Copy(io.MultiWriter(hs, &limitedBuffer{&small, 64 << 10}), r); err != nil {
				t.Fatal(err)
			}
			e.sha256 = hex.EncodeToString(hs.Sum(nil))
			if h.Size <= 64<<10 {
				e.small = small.Bytes()
			}
		}
		tree[p] = e
	})
	return tree
}

type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// wantFile checks p is a regular file of the given mode (-1: any executable-or-not mode) and
// content digest ("" : any).
func (tree fileTree) wantFile(t *testing.T, p string, mode int64, sum string) {
	t.Helper()
	e, ok := tree[p]
	switch {
	case !ok:
		t.Errorf("%s is not in the image", p)
	case e.Typeflag != tar.TypeReg:
		t.Errorf("%s is not a regular file (type %q)", p, e.Typeflag)
	case mode >= 0 && e.Mode&0o7777 != mode:
		t.Errorf("%s has mode %o, want %o", p, e.Mode&0o7777, mode)
	case sum != "" && e.sha256 != sum:
		t.Errorf("%s in the image differs from this machine's", p)
	}
}

func (tree fileTree) wantLink(t *testing.T, p, target string) {
	t.Helper()
	if e, ok := tree[p]; !ok || e.Typeflag != tar.TypeSymlink || e.Linkname != target {
		t.Errorf("%s is not a symlink to %s", p, target)
	}
}

func (tree fileTree) content(p string) string { return string(tree[p].small) }

func forEachLayerEntry(t *testing.T, img v1.Image, fn func(*tar.Header, io.Reader)) {
	t.Helper()
	if err := harness.WalkImage(img, func(h *tar.Header, r io.Reader) error { fn(h, r); return nil }); err != nil {
		t.Fatal(err)
	}
}

func logImageSize(t *testing.T, img v1.Image, tree fileTree) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var compressed, files int64
	for _, l := range layers {
		s, err := l.Size()
		if err != nil {
			t.Fatal(err)
		}
		compressed += s
	}
	for _, e := range tree {
		if e.Typeflag == tar.TypeReg {
			files += e.Size
		}
	}
	t.Logf("the mosb image: %d layers, %.1f MB compressed, %.1f MB of files, %d paths", len(layers), float64(compressed)/1e6, float64(files)/1e6, len(tree))
}

// extractImage lays the image's layers out in dir as a container runtime would (owners, modes,
// whiteouts), refusing paths that leave dir.
func extractImage(t *testing.T, img v1.Image, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	forEachLayerEntry(t, img, func(h *tar.Header, r io.Reader) {
		rel := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if rel == "" {
			return
		}
		target := filepath.Join(dir, rel)
		parent, base := filepath.Split(target)
		if fi, err := os.Lstat(filepath.Clean(parent)); err != nil || !fi.IsDir() {
			if err := os.MkdirAll(parent, 0o755); err != nil {
				t.Fatalf("%s: %v", h.Name, err)
			}
		}
		if base == ".wh..wh..opq" {
			entries, _ := os.ReadDir(parent)
			for _, e := range entries {
				_ = os.RemoveAll(filepath.Join(parent, e.Name()))
			}
			return
		}
		if gone, ok := strings.CutPrefix(base, ".wh."); ok {
			_ = os.RemoveAll(filepath.Join(parent, gone))
			return
		}
		if fi, err := os.Lstat(target); err == nil && !(fi.IsDir() && h.Typeflag == tar.TypeDir) {
			_ = os.RemoveAll(target)
		}
		var err error
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(target, 0o755)
		case tar.TypeReg:
			var f *os.File
			if f, err = os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600); err == nil {
				_, err = io.Copy(f, r)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, target)
		case tar.TypeLink:
			err = os.Link(filepath.Join(dir, strings.TrimPrefix(path.Clean("/"+h.Linkname), "/")), target)
		default:
			t.Fatalf("%s: unexpected entry type %q in the image", h.Name, h.Typeflag)
		}
		if err == nil {
			err = os.Lchown(target, h.Uid, h.Gid)
		}
		if err == nil && h.Typeflag != tar.TypeSymlink {
			// After the chown, which clears setuid/setgid bits.
			err = os.Chmod(target, os.FileMode(h.Mode&0o777)|modeBits(h.Mode))
		}
		if err != nil {
			t.Fatalf("extracting %s: %v", h.Name, err)
		}
	})
}

func modeBits(m int64) os.FileMode {
	var fm os.FileMode
	if m&0o4000 != 0 {
		fm |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		fm |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		fm |= os.ModeSticky
	}
	return fm
}

// imageArchive is an archive's index.json and blobs.
type imageArchive struct {
	index v1.IndexManifest
	blobs map[string][]byte // "sha256:…" -> content
}

// checkArchive reads an image archive and checks that it is an OCI layout naming the image
// imageName, whose blobs are all there and match their digests, and whose top manifest has digest
// wantDigest (when set).
func checkArchive(t *testing.T, file, imageName, wantDigest string) imageArchive {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a := imageArchive{blobs: map[string][]byte{}}
	var layout, index []byte
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		switch n := path.Clean(h.Name); {
		case n == "oci-layout":
			layout = data
		case n == "index.json":
			index = data
		case strings.HasPrefix(n, "blobs/sha256/") && h.Typeflag == tar.TypeReg:
			hexDigest := strings.TrimPrefix(n, "blobs/sha256/")
			if got := sha256Hex(data); got != hexDigest {
				t.Errorf("blob %s has digest %s", n, got)
			}
			a.blobs["sha256:"+hexDigest] = data
		}
	}
	if !bytes.Contains(layout, []byte(`"imageLayoutVersion":"1.0.0"`)) {
		t.Errorf("oci-layout: %q", layout)
	}
	if err := json.Unmarshal(index, &a.index); err != nil {
		t.Fatalf("index.json: %v: %s", err, index)
	}
	if len(a.index.Manifests) != 1 {
		t.Fatalf("index.json has %d manifests, want 1: %s", len(a.index.Manifests), index)
	}
	top := a.index.Manifests[0]
	if got := top.Annotations["io.containerd.image.name"]; got != imageName {
		t.Errorf("the archive names the image %q, want %q", got, imageName)
	}
	if wantDigest != "" && top.Digest.String() != wantDigest {
		t.Errorf("the archive's manifest is %s, the registry serves %s", top.Digest, wantDigest)
	}
	a.checkBlobs(t, top)
	return a
}

// checkBlobs checks that the blob of desc and every blob it references are in the archive.
func (a imageArchive) checkBlobs(t *testing.T, desc v1.Descriptor) {
	t.Helper()
	raw, ok := a.blobs[desc.Digest.String()]
	if !ok || int64(len(raw)) != desc.Size {
		t.Errorf("blob %s (%d bytes) is missing from the archive", desc.Digest, desc.Size)
		return
	}
	if desc.MediaType.IsIndex() {
		var idx v1.IndexManifest
		if err := json.Unmarshal(raw, &idx); err != nil {
			t.Fatalf("index %s: %v", desc.Digest, err)
		}
		for _, d := range idx.Manifests {
			a.checkBlobs(t, d)
		}
		return
	}
	if !desc.MediaType.IsImage() {
		return // a config or a layer
	}
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("manifest %s: %v", desc.Digest, err)
	}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		a.checkBlobs(t, d)
	}
}

// image is the archive's image config and its layers' regular files (path -> content).
func (a imageArchive) image(t *testing.T) (*v1.ConfigFile, []map[string][]byte) {
	t.Helper()
	var m v1.Manifest
	if err := json.Unmarshal(a.blobs[a.index.Manifests[0].Digest.String()], &m); err != nil {
		t.Fatal(err)
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(a.blobs[m.Config.Digest.String()]))
	if err != nil {
		t.Fatal(err)
	}
	var layers []map[string][]byte
	for _, l := range m.Layers {
		files := map[string][]byte{}
		var rc io.Reader = bytes.NewReader(a.blobs[l.Digest.String()])
		if strings.HasSuffix(string(l.MediaType), "gzip") {
			zr, err := gzip.NewReader(rc)
			if err != nil {
				t.Fatal(err)
			}
			rc = zr
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Typeflag == tar.TypeReg {
				b, _ := io.ReadAll(tr)
				files[strings.TrimPrefix(path.Clean("/"+h.Name), "/")] = b
			}
		}
		layers = append(layers, files)
	}
	return cf, layers
}

// throwawayContainerd is a containerd of the test's own: root, state and socket in a temporary
// directory, in a mount namespace of its own, the CRI plugin off (importing needs none of it).
type throwawayContainerd struct {
	dir, sock string
}

func startThrowawayContainerd(t *testing.T) *throwawayContainerd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("containerd needs root")
	}
	bin, err := exec.LookPath("containerd")
	if err != nil {
		t.Skip("containerd is not installed (Debian package containerd): the import into containerd is not checked")
	}
	if _, err := exec.LookPath("ctr"); err != nil {
		t.Skip("ctr is not installed (Debian package containerd): the import into containerd is not checked")
	}
	dir, err := os.MkdirTemp("", "mosb-ctrd-") // short: a unix socket path has at most 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	c := &throwawayContainerd{dir: dir, sock: filepath.Join(dir, "containerd.sock")}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, c.sock+".ttrpc", filepath.Join(dir, "opt"))
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "containerd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own mount namespace: whatever it mounts while unpacking goes when it does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Unshareflags: syscall.CLONE_NEWNS}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("starting containerd: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	// Cleanups run last-in first-out: containerd stops and the mounts go before dir is removed.
	t.Cleanup(func() {
		_ = os.RemoveAll(dir)
	})
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if n, err := unmountAllUnder(dir); err != nil {
			t.Errorf("unmounting what containerd left under %s: %v", dir, err)
		} else if n > 0 {
			t.Logf("unmounted %d mounts containerd left under %s", n, dir)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.ctr("version"); err == nil {
			break
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("containerd exited at start:\n%s", lastLinesOf(string(log), 30))
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("containerd does not answer on %s after 30s:\n%s", c.sock, lastLinesOf(string(log), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return c
}

func (c *throwawayContainerd) ctr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ctr", append([]string{"-a", c.sock, "-n", "k8s.io"}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// importArchive imports the archive (unpacking it for the default snapshotter, as for a pod) and
// checks the image is listed under name and nothing else was created.
func (c *throwawayContainerd) importArchive(t *testing.T, archive, imageName string) {
	t.Helper()
	before := c.images(t)
	out, err := c.ctr("images", "import", archive)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ctr images import: %s", strings.TrimSpace(out))
	after := c.images(t)
	var added []string
	for n := range after {
		if !before[n] {
			added = append(added, n)
		}
	}
	if !after[imageName] {
		t.Fatalf("after importing, containerd lists no image %s; it has %v", imageName, sortedKeys(after))
	}
	if len(added) > 1 {
		t.Errorf("importing %s created %v, want only it", imageName, added)
	}
	if out, err := c.ctr("images", "check"); err != nil || !strings.Contains(out, "complete") {
		t.Errorf("ctr images check: %v\n%s", err, out)
	}
}

func (c *throwawayContainerd) images(t *testing.T) map[string]bool {
	t.Helper()
	out, err := c.ctr("images", "ls", "-q")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, l := range strings.Fields(out) {
		names[l] = true
	}
	return names
}

// mountImage mounts the image's unpacked root filesystem (a view of containerd's snapshot) until
// the test ends.
func (c *throwawayContainerd) mountImage(t *testing.T, imageName string) string {
	t.Helper()
	mnt := filepath.Join(c.dir, "mnt-"+sha256Hex([]byte(imageName))[:12])
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ctr("images", "mount", imageName, mnt); err != nil {
		t.Fatalf("the image is not unpacked: %v", err)
	}
	t.Cleanup(func() {
		if _, err := c.ctr("images", "unmount", "--rm", mnt); err != nil {
			t.Errorf("%v", err)
		}
	})
	return mnt
}

// unmountAllUnder unmounts (lazily, deepest first) every mount of this mount namespace under dir.
func unmountAllUnder(dir string) (int, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := strings.ReplaceAll(fields[4], `\040`, " ")
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			mounts = append(mounts, mp)
		}
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	for _, mp := range mounts {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			return 0, fmt.Errorf("unmounting %s: %w", mp, err)
		}
	}
	return len(mounts), sc.Err()
}

func lastLinesOf(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
