package ignitionlayer

import (
	"archive/tar"
	"path"
	"strings"

	"github.com/coreos/go-systemd/v22/unit"
	"github.com/coreos/ignition/v2/config/v3_5/types"
)

// systemd lays units as Ignition's files stage does — unit files and drop-ins under
// /etc/systemd/system, masks as links to /dev/null, enabled and disabled units as lines of its
// preset file — and, for an enabled unit whose file the config holds, the symlinks `systemctl
// enable` makes from its [Install] section. Presets alone are not enough for an image: systemd
// applies them when a machine is first provisioned, not when a node moves to a new image.
func (l *layout) systemd(units []types.Unit) {
	var presetOnly []string
	for _, u := range units {
		unitPath := path.Join(UnitDir, u.Name)
		if u.Contents != nil {
			l.put(unitPath, &entry{typeflag: tar.TypeReg, mode: 0o644, data: []byte(*u.Contents)})
			l.units++
		}
		for _, d := range u.Dropins {
			if d.Contents == nil {
				continue
			}
			l.put(path.Join(UnitDir, u.Name+".d", d.Name), &entry{typeflag: tar.TypeReg, mode: 0o644, data: []byte(*d.Contents)})
			l.units++
		}
		if u.Mask != nil && *u.Mask {
			l.put(unitPath, &entry{typeflag: tar.TypeSymlink, mode: 0o777, linkname: "/dev/null"})
			l.links++
		}
		if u.Enabled == nil {
			continue
		}
		if !*u.Enabled {
			l.presets = append(l.presets, "disable "+presetName(u.Name))
			continue
		}
		l.presets = append(l.presets, "enable "+presetName(u.Name))
		if u.Contents == nil || strings.Contains(u.Name, "@") || (u.Mask != nil && *u.Mask) {
			presetOnly = append(presetOnly, u.Name)
			continue
		}
		if !l.enable(u.Name, unitPath, *u.Contents) {
			presetOnly = append(presetOnly, u.Name)
		}
	}
	if len(presetOnly) > 0 {
		l.skip("systemd.units[enabled] ("+strings.Join(presetOnly, ", ")+")", len(presetOnly),
			"enabled only through the preset file: the unit's [Install] section is not in the MachineConfig (or it is a template instance, or its file cannot be read), so no enablement link is laid; systemd applies presets when a machine is provisioned")
	}
}

// presetName is how a preset line names a unit: an instance as "<template> <instance>".
func presetName(name string) string {
	at := strings.Index(name, "@")
	dot := strings.LastIndex(name, ".")
	if at < 0 || dot < at {
		return name
	}
	if instance := name[at+1 : dot]; instance != "" {
		return name[:at+1] + name[dot:] + " " + instance
	}
	return name
}

// enable lays the links `systemctl enable <name>` would make for a unit file in /etc/systemd/system:
// <target>.wants/<name> and <target>.requires/<name> for WantedBy= and RequiredBy=, and
// /etc/systemd/system/<alias> for Alias=, each pointing at the unit file. It lays nothing and
// returns false when the unit file cannot be read (systemd's parser is more lenient than
// go-systemd's) or names a target that is not a unit name.
func (l *layout) enable(name, unitPath, contents string) bool {
	options, err := unit.DeserializeOptions(strings.NewReader(contents))
	if err != nil {
		return false
	}
	var links []string
	for _, o := range options {
		if o.Section != "Install" {
			continue
		}
		for _, target := range strings.Fields(o.Value) {
			var link string
			switch o.Name {
			case "WantedBy":
				link = path.Join(UnitDir, target+".wants", name)
			case "RequiredBy":
				link = path.Join(UnitDir, target+".requires", name)
			case "Alias":
				link = path.Join(UnitDir, target)
			default:
				continue
			}
			if strings.Contains(target, "/") || target == "." || target == ".." {
				return false
			}
			links = append(links, link)
		}
	}
	for _, link := range links {
		l.put(link, &entry{typeflag: tar.TypeSymlink, mode: 0o777, linkname: unitPath})
		l.links++
	}
	return true
}
