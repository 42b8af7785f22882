// Package ignitionlayer lays the Ignition config of a rendered MachineConfig into an image layer:
// what `ignition-apply --ignore-unsupported` would write into the image (files, directories, links,
// systemd units and drop-ins, presets, and the symlinks `systemctl enable` makes), as a tar archive
// that a Containerfile ADDs. It is a pure function of the config: the same MachineConfig gives the
// same bytes, so the same layer and the same image digest, on any base (busybox as well as RHCOS,
// which is why the layer is made here rather than by running ignition inside the image).
//
// What Ignition does but an image cannot hold (disks, filesystems, users and their SSH keys, kernel
// arguments…) is not laid; Layer.Skipped names it, for the MachineOSBuild's status.
package ignitionlayer

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/coreos/ignition/v2/config/v3_5"
	"github.com/coreos/ignition/v2/config/v3_5/types"
)

// ErrInvalidConfig is matched by every error about the config itself (as opposed to a bug).
var ErrInvalidConfig = errors.New("invalid Ignition config")

// Where Ignition puts units, drop-ins and presets (as its files stage does).
const (
	UnitDir    = "/etc/systemd/system"
	PresetFile = "/etc/systemd/system-preset/20-ignition.preset"
)

// Layer is what an Ignition config lays into an image.
type Layer struct {
	// Archive is the layer as a gzip-compressed tar; nil when the config lays nothing.
	Archive []byte
	// Files, Directories, Links and Units count what was laid (links include the enablement
	// symlinks and masks; units count unit files and drop-ins).
	Files, Directories, Links, Units int
	// Skipped are the parts of the config that are not laid, in a fixed order.
	Skipped []Skipped
}

// Skipped is one part of the config that is not in the layer, and why.
type Skipped struct {
	// Section is where it is in the config, e.g. "passwd.users" or "storage.files[/etc/motd].append".
	Section string
	// Count is how many entries of the section are skipped.
	Count int
	// Why says who applies it instead, or what to change.
	Why string
}

func (s Skipped) String() string {
	if s.Count > 1 {
		return fmt.Sprintf("%s (%d): %s", s.Section, s.Count, s.Why)
	}
	return fmt.Sprintf("%s: %s", s.Section, s.Why)
}

// Summary says in one line what the layer holds and what was skipped.
func (l *Layer) Summary() string {
	laid := fmt.Sprintf("%d files, %d directories, %d links, %d systemd units and drop-ins", l.Files, l.Directories, l.Links, l.Units)
	if l.Archive == nil {
		laid = "no files, directories, links or units to lay"
	}
	if len(l.Skipped) == 0 {
		return laid + "; nothing skipped"
	}
	var skipped []string
	for _, s := range l.Skipped {
		skipped = append(skipped, s.String())
	}
	return laid + "; skipped: " + strings.Join(skipped, "; ")
}

// FromMachineConfig lays the Ignition config in spec.config of a MachineConfig (JSON, as in
// /etc/machine-config-daemon/currentconfig). A MachineConfig without a config lays nothing.
func FromMachineConfig(machineConfig []byte) (*Layer, error) {
	var mc struct {
		Spec struct {
			Config json.RawMessage `json:"config"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(machineConfig, &mc); err != nil {
		return nil, fmt.Errorf("%w: the MachineConfig is not JSON: %v", ErrInvalidConfig, err)
	}
	raw := bytes.TrimSpace(mc.Spec.Config)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) || bytes.Equal(raw, []byte("{}")) {
		return &Layer{}, nil
	}
	return FromIgnition(raw)
}

// FromIgnition lays an Ignition config of spec 3.0 to 3.5.
func FromIgnition(raw []byte) (*Layer, error) {
	cfg, rpt, err := v3_5.ParseCompatibleVersion(raw)
	if err != nil {
		detail := err.Error()
		if msg := strings.TrimSpace(rpt.String()); msg != "" {
			detail += ": " + msg
		}
		return nil, fmt.Errorf("%w: spec.config: %s (mosb reads Ignition spec 3.0 to 3.5)", ErrInvalidConfig, detail)
	}
	l := &layout{entries: map[string]*entry{}}
	if err := l.lay(cfg); err != nil {
		return nil, err
	}
	return l.layer()
}

// entry is one tar entry.
type entry struct {
	typeflag byte
	mode     int64
	uid, gid int
	data     []byte
	linkname string
}

type layout struct {
	entries                          map[string]*entry
	files, directories, links, units int
	skipped                          []Skipped
	presets                          []string
}

func (l *layout) skip(section string, count int, why string) {
	if count > 0 {
		l.skipped = append(l.skipped, Skipped{Section: section, Count: count, Why: why})
	}
}

// put records an entry; a later one at the same path replaces an earlier one, as Ignition's later
// steps overwrite its earlier ones (directories, files, links, then units).
func (l *layout) put(path string, e *entry) {
	l.entries[path] = e
}

func (l *layout) lay(cfg types.Config) error {
	provisioning := "set up when a machine is provisioned, not held by an image"
	l.skip("storage.disks", len(cfg.Storage.Disks), provisioning)
	l.skip("storage.raid", len(cfg.Storage.Raid), provisioning)
	l.skip("storage.filesystems", len(cfg.Storage.Filesystems), provisioning)
	l.skip("storage.luks", len(cfg.Storage.Luks), provisioning)
	l.skip("passwd.users", len(cfg.Passwd.Users), "users, passwords and SSH keys are applied on the node (the machine-config-daemon writes the core user's), not in the image")
	l.skip("passwd.groups", len(cfg.Passwd.Groups), "groups are applied on the node, not in the image")
	l.skip("kernelArguments", len(cfg.KernelArguments.ShouldExist)+len(cfg.KernelArguments.ShouldNotExist), "kernel arguments are applied by the node, not held by an image")
	merge := len(cfg.Ignition.Config.Merge)
	if cfg.Ignition.Config.Replace.Source != nil {
		merge++
	}
	l.skip("ignition.config", merge, "configs merged from elsewhere are not fetched during a build; render them into the MachineConfig")

	for _, d := range cfg.Storage.Directories {
		uid, gid := l.owner("storage.directories["+d.Path+"]", d.Node)
		l.put(d.Path, &entry{typeflag: tar.TypeDir, mode: modeOr(d.Mode, 0o755), uid: uid, gid: gid})
		l.directories++
	}
	for _, f := range cfg.Storage.Files {
		if err := l.file(f); err != nil {
			return err
		}
	}
	var hardLinks int
	for _, link := range cfg.Storage.Links {
		uid, gid := l.owner("storage.links["+link.Path+"]", link.Node)
		if link.Target == nil {
			return fmt.Errorf("%w: storage.links[%s] has no target", ErrInvalidConfig, link.Path)
		}
		if link.Hard != nil && *link.Hard {
			target, laid := l.entries[*link.Target]
			if !laid || target.typeflag != tar.TypeReg {
				hardLinks++
				continue
			}
			l.put(link.Path, &entry{typeflag: tar.TypeLink, linkname: *link.Target, uid: uid, gid: gid})
		} else {
			l.put(link.Path, &entry{typeflag: tar.TypeSymlink, mode: 0o777, linkname: *link.Target, uid: uid, gid: gid})
		}
		l.links++
	}
	l.skip("storage.links (hard)", hardLinks, "a hard link to a file of the base image cannot be laid in a layer; make it a symbolic link or put the file in the MachineConfig")

	l.systemd(cfg.Systemd.Units)
	return nil
}

func modeOr(mode *int, def int64) int64 {
	if mode == nil {
		return def
	}
	return int64(*mode)
}

// owner returns the numeric owner of a node. Names other than root cannot be resolved without the
// image's /etc/passwd; such nodes are laid owned by root, and the name is reported.
func (l *layout) owner(section string, n types.Node) (uid, gid int) {
	resolve := func(id *int, name *string, what string) int {
		switch {
		case id != nil:
			return *id
		case name == nil || *name == "" || *name == "root":
			return 0
		default:
			l.skip(section+"."+what+".name", 1, fmt.Sprintf("the %s name %q cannot be resolved without the image's files: the entry is laid owned by root; give the numeric %s.id", what, *name, what))
			return 0
		}
	}
	return resolve(n.User.ID, n.User.Name, "user"), resolve(n.Group.ID, n.Group.Name, "group")
}

func (l *layout) file(f types.File) error {
	section := "storage.files[" + f.Path + "]"
	uid, gid := l.owner(section, f.Node)
	var data []byte
	if f.Contents.Source == nil && len(f.Append) > 0 {
		l.skip(section+".append", len(f.Append), "appending to a file of the base image cannot be laid in a layer; give the whole file as contents")
		return nil
	}
	if f.Contents.Source != nil {
		content, err := fetch(section+".contents", f.Contents)
		if err != nil {
			return err
		}
		data = content
	}
	for i, a := range f.Append {
		content, err := fetch(fmt.Sprintf("%s.append[%d]", section, i), a)
		if err != nil {
			return err
		}
		data = append(data, content...)
	}
	l.put(f.Path, &entry{typeflag: tar.TypeReg, mode: modeOr(f.Mode, 0o644), uid: uid, gid: gid, data: data})
	l.files++
	return nil
}

// layer writes the tar archive: entries in path order (a directory before what it holds), hard
// links last (after what they link to), every time the epoch, no user or group names.
func (l *layout) layer() (*Layer, error) {
	out := &Layer{Files: l.files, Directories: l.directories, Links: l.links, Units: l.units, Skipped: l.skipped}
	if len(l.presets) > 0 {
		slices.Sort(l.presets)
		l.presets = slices.Compact(l.presets)
		preset := []byte(strings.Join(l.presets, "\n") + "\n")
		if existing, ok := l.entries[PresetFile]; ok && existing.typeflag == tar.TypeReg {
			// Ignition appends its lines to a preset file the config also writes.
			existing.data = append(existing.data, preset...)
		} else {
			l.put(PresetFile, &entry{typeflag: tar.TypeReg, mode: 0o644, data: preset})
		}
	}
	if len(l.entries) == 0 {
		return out, nil
	}
	paths := make([]string, 0, len(l.entries))
	for p := range l.entries {
		paths = append(paths, p)
	}
	slices.SortFunc(paths, func(a, b string) int {
		ha, hb := l.entries[a].typeflag == tar.TypeLink, l.entries[b].typeflag == tar.TypeLink
		if ha != hb {
			if ha {
				return 1
			}
			return -1
		}
		return strings.Compare(a, b)
	})
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	epoch := time.Unix(0, 0).UTC()
	for _, p := range paths {
		e := l.entries[p]
		name := strings.TrimPrefix(p, "/")
		if name == "" || !strings.HasPrefix(p, "/") || path.Clean(p) != p {
			return nil, fmt.Errorf("%w: %q is not a clean absolute path other than /", ErrInvalidConfig, p)
		}
		hdr := &tar.Header{
			Typeflag: e.typeflag, Name: name, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: epoch, Format: tar.FormatPAX,
		}
		switch e.typeflag {
		case tar.TypeDir:
			hdr.Name += "/"
		case tar.TypeReg:
			hdr.Size = int64(len(e.data))
		case tar.TypeLink:
			hdr.Linkname = strings.TrimPrefix(e.linkname, "/")
		case tar.TypeSymlink:
			hdr.Linkname = e.linkname
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("laying %s: %w", p, err)
		}
		if e.typeflag == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, fmt.Errorf("laying %s: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	out.Archive = buf.Bytes()
	return out, nil
}
