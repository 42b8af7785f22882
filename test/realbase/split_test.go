package main

import (
	"archive/tar"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"golang.org/x/sys/unix"
)

const fakePackages = 20

var testEpoch = time.Unix(1700000000, 0)

// fakeRootfs is a tiny dpkg system: usr-merged (/bin -> usr/bin), fakePackages packages of very
// uneven sizes listing their files as dpkg does (some through /bin), a hard link, a symlink, an
// empty directory of a package's own, a diversion, files of no package, a user xattr (where the
// filesystem takes one) and an mtime after the epoch.
func fakeRootfs(t *testing.T) (dir string, xattr bool) {
	t.Helper()
	dir = t.TempDir()
	mkdir := func(p string) {
		if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string, n int) {
		mkdir(path.Dir(p))
		if err := os.WriteFile(filepath.Join(dir, p), []byte(strings.Repeat(p[len(p)-1:], n)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lists := map[string][]string{}
	list := func(pkg string, paths ...string) {
		lists[pkg] = append(lists[pkg], paths...)
	}
	for _, d := range []string{"usr/bin", "usr/lib", "usr/share/doc", "etc", "var/lib/dpkg/info", "var/log", "proc", "tmp"} {
		mkdir(d)
	}
	if err := os.Symlink("usr/bin", filepath.Join(dir, "bin")); err != nil {
		t.Fatal(err)
	}
	for i := range fakePackages {
		pkg := fmt.Sprintf("pkg%02d", i)
		write("usr/lib/"+pkg+"/data", (i+1)*(i+1)*500)
		write("usr/bin/tool"+pkg, 100+i)
		write("usr/share/doc/"+pkg+"/copyright", 50)
		// dpkg lists directories too, and a usr-merged system's files by their /bin names.
		list(pkg, "/.", "/usr", "/usr/lib", "/usr/lib/"+pkg, "/usr/lib/"+pkg+"/data", "/bin", "/bin/tool"+pkg,
			"/usr/share", "/usr/share/doc", "/usr/share/doc/"+pkg, "/usr/share/doc/"+pkg+"/copyright")
	}
	// A hard link: one file, two names, and a symlink.
	if err := os.Link(filepath.Join(dir, "usr/bin/toolpkg00"), filepath.Join(dir, "usr/bin/toolpkg00-alias")); err != nil {
		t.Fatal(err)
	}
	list("pkg00", "/bin/toolpkg00-alias")
	if err := os.Symlink("toolpkg01", filepath.Join(dir, "usr/bin/toolpkg01-link")); err != nil {
		t.Fatal(err)
	}
	list("pkg01", "/usr/bin/toolpkg01-link")
	// An empty directory only its package has.
	mkdir("var/log/pkg02")
	list("pkg02", "/var", "/var/log", "/var/log/pkg02")
	// pkg03 diverts pkg04's tool and puts its own in its place.
	if err := os.Rename(filepath.Join(dir, "usr/bin/toolpkg04"), filepath.Join(dir, "usr/bin/toolpkg04.distrib")); err != nil {
		t.Fatal(err)
	}
	write("usr/bin/toolpkg04", 7)
	list("pkg03", "/usr/bin/toolpkg04")
	if err := os.WriteFile(filepath.Join(dir, "var/lib/dpkg/diversions"), []byte("/usr/bin/toolpkg04\n/usr/bin/toolpkg04.distrib\npkg03\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Files of no package.
	write("etc/passwd", 30)
	write("etc/ld.so.cache", 3000)
	write("var/lib/dpkg/status", 200)
	for pkg, paths := range lists {
		if err := os.WriteFile(filepath.Join(dir, "var/lib/dpkg/info", pkg+".list"), []byte(strings.Join(paths, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A setuid file and an mtime past the epoch.
	if err := os.Chmod(filepath.Join(dir, "usr/bin/toolpkg05"), 0o755|fs.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	future := testEpoch.Add(1000 * time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "usr/lib/pkg06/data"), future, future); err != nil {
		t.Fatal(err)
	}
	err := unix.Setxattr(filepath.Join(dir, "usr/lib/pkg07/data"), "user.realbase", []byte("kept"), 0)
	return dir, err == nil
}

type tarEntry struct {
	hdr   *tar.Header
	layer int
}

// readLayout reads the image of a layout back: its config and each layer's tar headers in order.
func readLayout(t *testing.T, dir string) (v1.Image, *v1.ConfigFile, [][]*tar.Header) {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 {
		t.Fatalf("%d manifests in the layout, want 1", len(m.Manifests))
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]*tar.Header
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		var hdrs []*tar.Header
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			hdrs = append(hdrs, h)
		}
		rc.Close()
		out = append(out, hdrs)
	}
	return img, cfg, out
}

func TestSplitRootfsIntoLayers(t *testing.T) {
	root, xattr := fakeRootfs(t)
	const layers, packed = 8, 2
	s, err := splitRootfs(root, layers, packed)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "layout")
	info, err := s.WriteLayout(out, testEpoch, 3)
	if err != nil {
		t.Fatal(err)
	}
	img, cfg, tars := readLayout(t, out)
	if len(tars) != layers || info.Layers != layers {
		t.Fatalf("%d layers (info: %d), want %d", len(tars), info.Layers, layers)
	}
	if cfg.Architecture != "amd64" || cfg.OS != "linux" || !slices.Equal(cfg.Config.Cmd, []string{"/sbin/init"}) {
		t.Errorf("config: %s/%s cmd %v", cfg.OS, cfg.Architecture, cfg.Config.Cmd)
	}
	if len(cfg.History) != layers || !strings.Contains(cfg.History[0].CreatedBy, "pkg19") {
		t.Errorf("history: %+v", cfg.History)
	}

	// Every file, symlink and hard link of the rootfs is in exactly one layer; every directory in
	// at least one; each entry's directory comes before it in its layer.
	where := map[string][]int{}
	byName := map[string]tarEntry{}
	for l, hdrs := range tars {
		seen := map[string]bool{}
		for _, h := range hdrs {
			name := strings.TrimSuffix(h.Name, "/")
			if dir := path.Dir(name); dir != "." && !seen[dir] {
				t.Errorf("layer %d: %s comes before its directory", l, name)
			}
			if seen[name] {
				t.Errorf("layer %d: %s twice", l, name)
			}
			seen[name] = true
			where[name] = append(where[name], l)
			byName[name] = tarEntry{h, l}
			if h.ModTime.After(testEpoch) {
				t.Errorf("%s: mtime %s after the epoch", name, h.ModTime)
			}
		}
		if !slices.IsSortedFunc(hdrs, func(a, b *tar.Header) int { return walkOrder(a.Name, b.Name) }) {
			t.Errorf("layer %d is not in walk order", l)
		}
	}
	var files, dirs int
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch n := len(where[rel]); {
		case d.IsDir() && n == 0:
			t.Errorf("directory %s is in no layer", rel)
		case !d.IsDir() && n != 1:
			t.Errorf("%s is in %d layers, want 1", rel, n)
		}
		if d.IsDir() {
			dirs++
		} else {
			files++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var inTars int
	for name, ls := range where {
		if h := byName[name].hdr; h.Typeflag != tar.TypeDir {
			inTars += len(ls)
		}
	}
	if inTars != files {
		t.Errorf("the layers hold %d non-directories, the rootfs %d", inTars, files)
	}

	// The biggest package alone on the first layer; the files of no package on the last.
	if l := where["usr/lib/pkg19/data"]; l[0] != 0 || s.Layers[0].Name() != "pkg19" {
		t.Errorf("pkg19 (the biggest) is on layer %v (%s), want 0 alone", l, s.Layers[0].Name())
	}
	for _, p := range []string{"etc/passwd", "etc/ld.so.cache", "var/lib/dpkg/status"} {
		if l := where[p]; l[0] != layers-1 {
			t.Errorf("%s (no package's) is on layer %v, want the last (%d)", p, l, layers-1)
		}
	}
	// Links: the hard link's two names in one layer, the first a file, the second a link to it.
	file, alias := byName["usr/bin/toolpkg00"], byName["usr/bin/toolpkg00-alias"]
	if file.layer != alias.layer || file.hdr.Typeflag != tar.TypeReg || alias.hdr.Typeflag != tar.TypeLink || alias.hdr.Linkname != "usr/bin/toolpkg00" {
		t.Errorf("hard link: %+v in layer %d, %+v in layer %d", file.hdr, file.layer, alias.hdr, alias.layer)
	}
	if h := byName["usr/bin/toolpkg01-link"].hdr; h.Typeflag != tar.TypeSymlink || h.Linkname != "toolpkg01" {
		t.Errorf("symlink: %+v", h)
	}
	if h := byName["bin"].hdr; h.Typeflag != tar.TypeSymlink || h.Linkname != "usr/bin" {
		t.Errorf("/bin: %+v", h)
	}
	// Ownership through /bin and through the diversion, and the empty directory with its package.
	if where["usr/bin/toolpkg08"][0] != where["usr/lib/pkg08/data"][0] {
		t.Errorf("/bin/toolpkg08 is not with its package")
	}
	if where["usr/bin/toolpkg04.distrib"][0] != where["usr/lib/pkg04/data"][0] || where["usr/bin/toolpkg04"][0] != where["usr/lib/pkg03/data"][0] {
		t.Errorf("the diverted tool is not with pkg04, or the diverting one not with pkg03")
	}
	if where["var/log/pkg02"][0] != where["usr/lib/pkg02/data"][0] {
		t.Errorf("pkg02's empty directory is not with it")
	}
	// Modes, mtimes, xattrs.
	if h := byName["usr/bin/toolpkg05"].hdr; h.Mode != 0o4755 {
		t.Errorf("setuid file: mode %o", h.Mode)
	}
	if h := byName["usr/lib/pkg06/data"].hdr; !h.ModTime.Equal(testEpoch) {
		t.Errorf("a file of the future: mtime %s, want the epoch", h.ModTime)
	}
	if h := byName["usr/lib/pkg07/data"].hdr; xattr && h.PAXRecords["SCHILY.xattr.user.realbase"] != "kept" {
		t.Errorf("xattr lost: %v", h.PAXRecords)
	} else if !xattr {
		t.Log("this filesystem takes no user xattrs: not checked")
	}

	// Deterministic: the same rootfs gives the same image.
	s2, err := splitRootfs(root, layers, packed)
	if err != nil {
		t.Fatal(err)
	}
	info2, err := s2.WriteLayout(filepath.Join(t.TempDir(), "layout"), testEpoch, 1)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	if info.Image != d.String() || info2.Image != info.Image {
		t.Errorf("image digests differ: %s, %s, layout %s", info.Image, info2.Image, d)
	}
	t.Logf("%d files, %d directories in %d layers: %s", files, dirs, layers, info.Image)
}

// walkOrder compares tar names the way filepath.WalkDir visits them: by path component.
func walkOrder(a, b string) int {
	return slices.Compare(strings.Split(strings.TrimSuffix(a, "/"), "/"), strings.Split(strings.TrimSuffix(b, "/"), "/"))
}

func TestPlanLayers(t *testing.T) {
	sizes := map[string]int64{}
	for i := range 300 {
		sizes[fmt.Sprintf("p%03d", i)] = int64(i*i*i) + 1 // a few huge, many tiny
	}
	const layers, packed = 50, 8
	plan := planLayers(sizes, 12345, layers, packed)
	if len(plan) != layers {
		t.Fatalf("%d layers, want %d", len(plan), layers)
	}
	seen := map[string]bool{}
	for i, l := range plan {
		for _, p := range l.Packages {
			if seen[p] {
				t.Errorf("%s on two layers", p)
			}
			seen[p] = true
		}
		switch {
		case i < layers-1-packed:
			want := fmt.Sprintf("p%03d", 299-i)
			if len(l.Packages) != 1 || l.Packages[0] != want {
				t.Errorf("layer %d: %v, want %s alone", i, l.Packages, want)
			}
		case i < layers-1:
			if len(l.Packages) < 2 {
				t.Errorf("packed layer %d holds %v", i, l.Packages)
			}
		default:
			if len(l.Packages) != 0 || l.Bytes != 12345 {
				t.Errorf("the last layer: %+v, want the unpackaged files", l)
			}
		}
	}
	if len(seen) != len(sizes) {
		t.Errorf("%d packages placed, want %d", len(seen), len(sizes))
	}
	// Largest first onto the lightest bin: the bins differ by no more than their biggest package.
	bins := plan[layers-1-packed : layers-1]
	lightest := slices.MinFunc(bins, func(a, b Layer) int { return cmp.Compare(a.Bytes, b.Bytes) })
	heaviest := slices.MaxFunc(bins, func(a, b Layer) int { return cmp.Compare(a.Bytes, b.Bytes) })
	if biggest := sizes[fmt.Sprintf("p%03d", 299-(layers-1-packed))]; heaviest.Bytes-lightest.Bytes > biggest {
		t.Errorf("packed layers of %d to %d bytes: more apart than their biggest package (%d)", lightest.Bytes, heaviest.Bytes, biggest)
	}

	// Fewer packages than layers: one each.
	few := planLayers(map[string]int64{"a": 1, "b": 3, "c": 2}, 0, layers, packed)
	if got := len(few); got != 4 || few[0].Packages[0] != "b" || few[2].Packages[0] != "a" {
		t.Errorf("three packages: %+v", few)
	}
}

func TestResolve(t *testing.T) {
	r := &rootfs{byPath: map[string]*entry{
		"bin":       {path: "bin", mode: fs.ModeSymlink, link: "usr/bin"},
		"lib64":     {path: "lib64", mode: fs.ModeSymlink, link: "/usr/lib64"},
		"usr/lib64": {path: "usr/lib64", mode: fs.ModeSymlink, link: "../usr/lib/x86_64"},
		"usr/bin":   {path: "usr/bin", mode: fs.ModeDir},
		"etc/link":  {path: "etc/link", mode: fs.ModeSymlink, link: "elsewhere"},
	}}
	for in, want := range map[string]string{
		"/.":                    "",
		"/bin":                  "bin",
		"/bin/ls":               "usr/bin/ls",
		"/lib64/ld.so":          "usr/lib/x86_64/ld.so",
		"/usr/bin/../bin/x":     "usr/bin/x",
		"/etc/link":             "etc/link",
		"/etc/link/x":           "etc/elsewhere/x",
		"/usr/share/doc/x/copy": "usr/share/doc/x/copy",
	} {
		if got := r.resolve(in); got != want {
			t.Errorf("resolve(%q) = %q, want %q", in, got, want)
		}
	}
}
