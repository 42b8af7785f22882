package main

import (
	"bufio"
	"cmp"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// An entry is one file, directory or link of the root filesystem, as lstat saw it.
type entry struct {
	path   string // slash-separated, relative to the root, never "" (the root itself is not an entry)
	mode   fs.FileMode
	uid    int
	gid    int
	size   int64
	mtime  time.Time
	link   string // a symlink's target
	inode  inodeKey
	nlink  uint64
	xattrs map[string]string
	owner  string // the dpkg package the entry belongs to; "" for none
}

type inodeKey struct{ dev, ino uint64 }

// keptXattr says which extended attributes go into the layers: file capabilities (ping's
// cap_net_raw) and user attributes. Not security.selinux or trusted.* (the build host's).
func keptXattr(name string) bool {
	return name == "security.capability" || strings.HasPrefix(name, "user.")
}

// rootfs is a scanned root filesystem: its entries in walk order (lexical, parents before
// children), which is also the order of every layer's tar.
type rootfs struct {
	dir     string
	entries []*entry
	byPath  map[string]*entry
	skipped []string // device nodes and sockets: not in any layer
}

func scanRootfs(dir string) (*rootfs, error) {
	r := &rootfs{dir: dir, byPath: map[string]*entry{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		m := fi.Mode()
		if m&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeSocket) != 0 {
			r.skipped = append(r.skipped, rel)
			return nil
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat_t", p)
		}
		e := &entry{
			path:  rel,
			mode:  m,
			uid:   int(st.Uid),
			gid:   int(st.Gid),
			mtime: time.Unix(st.Mtim.Sec, 0),
			inode: inodeKey{uint64(st.Dev), st.Ino},
			nlink: uint64(st.Nlink),
		}
		if m.IsRegular() {
			e.size = fi.Size()
		}
		if m&fs.ModeSymlink != 0 {
			if e.link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		if e.xattrs, err = readXattrs(p); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		r.entries = append(r.entries, e)
		r.byPath[rel] = e
		return nil
	})
	return r, err
}

func readXattrs(p string) (map[string]string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err == unix.ERANGE {
		if n, err = unix.Llistxattr(p, nil); err == nil {
			buf = make([]byte, n)
			n, err = unix.Llistxattr(p, buf)
		}
	}
	if err == unix.ENOTSUP || err == unix.EOPNOTSUPP {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing xattrs: %w", err)
	}
	var out map[string]string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" || !keptXattr(name) {
			continue
		}
		sz, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, fmt.Errorf("reading xattr %s: %w", name, err)
		}
		val := make([]byte, sz)
		if sz, err = unix.Lgetxattr(p, name, val); err != nil {
			return nil, fmt.Errorf("reading xattr %s: %w", name, err)
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = string(val[:sz])
	}
	return out, nil
}

// resolve maps a path as a package lists it (/bin/ls) to where it is in the tree: its directories
// followed through symlinks (usr-merged /bin -> usr/bin), its last component kept as it is.
func (r *rootfs) resolve(p string) string {
	p = strings.Trim(path.Clean("/"+p), "/")
	if p == "" {
		return ""
	}
	dir, base := path.Split(p)
	return path.Join(r.resolveDir(strings.TrimSuffix(dir, "/"), 0), base)
}

func (r *rootfs) resolveDir(dir string, depth int) string {
	if dir == "" || depth > 40 {
		return dir
	}
	cur := ""
	for _, c := range strings.Split(dir, "/") {
		next := path.Join(cur, c)
		if e := r.byPath[next]; e != nil && e.mode&fs.ModeSymlink != 0 {
			t := e.link
			if !strings.HasPrefix(t, "/") {
				t = path.Join(cur, t)
			}
			next = r.resolveDir(strings.Trim(path.Clean("/"+t), "/"), depth+1)
		}
		cur = next
	}
	return cur
}

// assignOwners sets each entry's owning package from dpkg's database: var/lib/dpkg/info/*.list
// (and var/lib/dpkg/diversions for diverted files). A path several packages list (a directory,
// mostly) goes to the first of them by name; hard links all go to their first owned name's package.
func (r *rootfs) assignOwners() error {
	infoDir := filepath.Join(r.dir, "var/lib/dpkg/info")
	lists, err := filepath.Glob(filepath.Join(infoDir, "*.list"))
	if err != nil {
		return err
	}
	if len(lists) == 0 {
		return fmt.Errorf("%s has no *.list: not a dpkg root filesystem", infoDir)
	}
	slices.Sort(lists)
	listers := map[string][]string{}
	for _, l := range lists {
		pkg := strings.TrimSuffix(filepath.Base(l), ".list")
		f, err := os.Open(l)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			p := r.resolve(sc.Text())
			if p == "" {
				continue
			}
			if ls := listers[p]; len(ls) == 0 || ls[len(ls)-1] != pkg {
				listers[p] = append(ls, pkg)
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", l, err)
		}
	}
	for _, e := range r.entries {
		if ls := listers[e.path]; len(ls) > 0 {
			e.owner = ls[0]
		}
	}
	if err := r.applyDiversions(listers); err != nil {
		return err
	}
	// Hard links: one layer holds all of a file's names.
	groups := map[inodeKey][]*entry{}
	for _, e := range r.entries {
		if e.mode.IsRegular() && e.nlink > 1 {
			groups[e.inode] = append(groups[e.inode], e)
		}
	}
	for _, g := range groups {
		owner := ""
		for _, e := range g {
			if e.owner != "" {
				owner = e.owner
				break
			}
		}
		for _, e := range g {
			e.owner = owner
		}
	}
	return nil
}

// applyDiversions: a diverted file (dpkg-divert --rename) lies at its "to" path and belongs to the
// package that ships it, not the one that diverted it, which owns the "from" path.
func (r *rootfs) applyDiversions(listers map[string][]string) error {
	data, err := os.ReadFile(filepath.Join(r.dir, "var/lib/dpkg/diversions"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	for i := 0; i+2 < len(lines); i += 3 {
		from, to, by := r.resolve(lines[i]), r.resolve(lines[i+1]), lines[i+2]
		ls := listers[from]
		if e := r.byPath[from]; e != nil && slices.Contains(ls, by) {
			e.owner = by
		}
		if e := r.byPath[to]; e != nil && e.owner == "" {
			for _, p := range ls {
				if p != by {
					e.owner = p
					break
				}
			}
		}
	}
	return nil
}

// Layer is one planned layer: the packages whose files it holds.
type Layer struct {
	Packages []string // sorted; none for the unpackaged layer
	Bytes    int64    // the file bytes the packages own (hard links once)
	Files    int      // entries assigned to it (without the parent directories it repeats)
}

// Name is how a layer is described in the image's history.
func (l Layer) Name() string {
	switch len(l.Packages) {
	case 0:
		return "unpackaged files"
	case 1:
		return l.Packages[0]
	}
	return fmt.Sprintf("%d packages: %s", len(l.Packages), strings.Join(l.Packages, " "))
}

// planLayers splits packages into at most layers layers the way rpm-ostree chunks an OS image: the
// unpackaged files last on their own, the biggest packages a layer each, and all the others
// bin-packed (largest first onto the lightest bin) into packed layers. Sizes stay very uneven: a
// kernel's hundreds of MB next to a small package's few kB.
func planLayers(pkgBytes map[string]int64, unpackaged int64, layers, packed int) []Layer {
	pkgs := make([]string, 0, len(pkgBytes))
	for p := range pkgBytes {
		pkgs = append(pkgs, p)
	}
	slices.SortFunc(pkgs, func(a, b string) int {
		if c := cmp.Compare(pkgBytes[b], pkgBytes[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	slots := max(layers-1, 1) // the unpackaged layer takes one
	var out []Layer
	if len(pkgs) <= slots {
		for _, p := range pkgs {
			out = append(out, Layer{Packages: []string{p}, Bytes: pkgBytes[p]})
		}
	} else {
		packed = min(max(packed, 1), slots)
		single := slots - packed
		for _, p := range pkgs[:single] {
			out = append(out, Layer{Packages: []string{p}, Bytes: pkgBytes[p]})
		}
		bins := make([]Layer, packed)
		for _, p := range pkgs[single:] {
			lightest := 0
			for i := range bins {
				if bins[i].Bytes < bins[lightest].Bytes {
					lightest = i
				}
			}
			bins[lightest].Packages = append(bins[lightest].Packages, p)
			bins[lightest].Bytes += pkgBytes[p]
		}
		for _, b := range bins {
			if len(b.Packages) > 0 {
				slices.Sort(b.Packages)
				out = append(out, b)
			}
		}
	}
	return append(out, Layer{Bytes: unpackaged})
}

// Split is a root filesystem's plan: which entries go in which layer.
type Split struct {
	root   *rootfs
	Layers []Layer
	// layerOf is each entry's layer (by index into root.entries).
	layerOf []int
}

// splitRootfs scans dir and plans its layers: layers in all (at most), packed of them bin-packed.
func splitRootfs(dir string, layers, packed int) (*Split, error) {
	r, err := scanRootfs(dir)
	if err != nil {
		return nil, err
	}
	if err := r.assignOwners(); err != nil {
		return nil, err
	}
	pkgBytes := map[string]int64{}
	var unpackaged int64
	seen := map[inodeKey]bool{}
	for _, e := range r.entries {
		var n int64
		if e.mode.IsRegular() && !seen[e.inode] {
			n = e.size
			if e.nlink > 1 {
				seen[e.inode] = true
			}
		}
		if e.owner == "" {
			unpackaged += n
		} else {
			pkgBytes[e.owner] += n
		}
	}
	s := &Split{root: r, Layers: planLayers(pkgBytes, unpackaged, layers, packed)}
	idx := map[string]int{}
	for i, l := range s.Layers {
		for _, p := range l.Packages {
			idx[p] = i
		}
	}
	last := len(s.Layers) - 1
	s.layerOf = make([]int, len(r.entries))
	for i, e := range r.entries {
		l := last
		if e.owner != "" {
			l = idx[e.owner]
		}
		s.layerOf[i] = l
		s.Layers[l].Files++
	}
	return s, nil
}

// members lists the entries layer l's tar holds, in tar order: its own entries and every
// directory above them (a directory can so appear in several layers, the same each time).
func (s *Split) members(l int) []*entry {
	need := make(map[string]bool)
	for i, e := range s.root.entries {
		if s.layerOf[i] != l {
			continue
		}
		need[e.path] = true
		for d := path.Dir(e.path); d != "." && !need[d]; d = path.Dir(d) {
			need[d] = true
		}
	}
	var out []*entry
	for _, e := range s.root.entries {
		if need[e.path] {
			out = append(out, e)
		}
	}
	return out
}
