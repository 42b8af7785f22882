package kubeletstandin

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// execPlan is what the re-executed helper does inside the container's new mount namespace before it
// execs the container's command. It is written as JSON next to the run's log, so it can be read.
type execPlan struct {
	// HostMountNS is the stand-in's own mount namespace; the helper refuses to mount anything in it.
	HostMountNS string       `json:"hostMountNS"`
	Shadows     []shadowSpec `json:"shadows,omitempty"`
	Binds       []bindSpec   `json:"binds,omitempty"`
	Hostname    string       `json:"hostname,omitempty"`
	WorkingDir  string       `json:"workingDir"`
	SetIdentity bool         `json:"setIdentity,omitempty"`
	UID         int64        `json:"uid,omitempty"`
	GID         int64        `json:"gid,omitempty"`
	Groups      []int64      `json:"groups,omitempty"`
	Path        string       `json:"path"`
	Args        []string     `json:"args"`
	Env         []string     `json:"env"`
}

// shadowSpec makes paths exist under an existing host directory without touching the host: Dir is
// covered by a tmpfs (built at Stage, then moved over Dir) holding a bind mount of each of Dir's
// entries plus the paths in Create.
type shadowSpec struct {
	Dir    string       `json:"dir"`
	Stage  string       `json:"stage"`
	Create []createSpec `json:"create"`
}

type createSpec struct {
	Path string `json:"path"` // relative to Dir
	Dir  bool   `json:"dir"`
}

type bindSpec struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// mountWant is a path the container needs: a volume (or file) to bind there, or, without a source,
// just an existing directory (the working dir).
type mountWant struct {
	what     string // for messages: `volumeMount "data"`, `terminationMessagePath`, `workingDir`
	target   string
	source   string
	dir      bool
	readOnly bool
}

// planMounts decides the shadows and binds that give the container its paths. Wants are placed
// shallowest first; a want inside an earlier bind is created inside that bind's source (a directory
// the stand-in owns), anything else that does not exist on the host gets a shadow of its deepest
// existing ancestor. Stages are made under stageRoot.
func planMounts(wants []mountWant, stageRoot string) ([]shadowSpec, []bindSpec, error) {
	wants = append([]mountWant(nil), wants...)
	sort.SliceStable(wants, func(i, j int) bool { return depth(wants[i].target) < depth(wants[j].target) })

	type placed struct {
		target, effective, source string
		dir                       bool
	}
	var placedBinds []placed
	var binds []bindSpec
	shadows := map[string]*shadowSpec{}
	for _, w := range wants {
		if !filepath.IsAbs(w.target) {
			return nil, nil, fmt.Errorf("%s %q is not an absolute path", w.what, w.target)
		}
		t := filepath.Clean(w.target)
		if t == "/" {
			return nil, nil, fmt.Errorf("%s is /: the kubelet stand-in never mounts over /", w.what)
		}
		var effective string
		var inside *placed
		var rel string
		insideLen := 0
		for i := range placedBinds {
			b := &placedBinds[i]
			for _, base := range []string{b.target, b.effective} {
				if r, ok := strings.CutPrefix(t, base+"/"); ok && len(base) > insideLen {
					inside, rel, insideLen = b, r, len(base)
				}
			}
		}
		switch {
		case inside != nil:
			if !inside.dir {
				return nil, nil, fmt.Errorf("%s %s lies inside the file mounted at %s", w.what, t, inside.target)
			}
			if err := makeInside(inside.source, rel, w.dir); err != nil {
				return nil, nil, fmt.Errorf("%s %s: creating its mount point inside the volume mounted at %s: %w", w.what, t, inside.target, err)
			}
			effective = filepath.Join(inside.effective, rel)
		default:
			existing, rest, err := resolveExisting(t)
			if err != nil {
				return nil, nil, fmt.Errorf("%s %s: %w", w.what, t, err)
			}
			if rest == "" {
				fi, err := os.Stat(existing)
				if err != nil {
					return nil, nil, fmt.Errorf("%s %s: %w", w.what, t, err)
				}
				if fi.IsDir() != w.dir {
					return nil, nil, fmt.Errorf("%s %s is a %s on this machine, but what goes there is a %s", w.what, t, kindOf(fi.IsDir()), kindOf(w.dir))
				}
				effective = existing
				break
			}
			if existing == "/" {
				return nil, nil, fmt.Errorf("%s %s needs a new directory /%s, and the kubelet stand-in neither creates it on the host nor mounts over /; use a path whose top-level directory exists on this machine", w.what, t, strings.Split(rest, "/")[0])
			}
			fi, err := os.Stat(existing)
			if err != nil {
				return nil, nil, fmt.Errorf("%s %s: %w", w.what, t, err)
			}
			if !fi.IsDir() {
				return nil, nil, fmt.Errorf("%s %s: %s is not a directory on this machine", w.what, t, existing)
			}
			sh := shadows[existing]
			if sh == nil {
				sh = &shadowSpec{Dir: existing, Stage: filepath.Join(stageRoot, fmt.Sprintf("shadow-%d", len(shadows)))}
				shadows[existing] = sh
			}
			sh.Create = append(sh.Create, createSpec{Path: rest, Dir: w.dir})
			effective = filepath.Join(existing, rest)
		}
		if w.source != "" {
			placedBinds = append(placedBinds, placed{target: t, effective: effective, source: w.source, dir: w.dir})
			binds = append(binds, bindSpec{Source: w.source, Target: effective, ReadOnly: w.readOnly})
		}
	}
	var out []shadowSpec
	for _, sh := range shadows {
		if err := os.MkdirAll(sh.Stage, 0o700); err != nil {
			return nil, nil, err
		}
		out = append(out, *sh)
	}
	sort.Slice(out, func(i, j int) bool {
		if di, dj := depth(out[i].Dir), depth(out[j].Dir); di != dj {
			return di < dj
		}
		return out[i].Dir < out[j].Dir
	})
	return out, binds, nil
}

func kindOf(dir bool) string {
	if dir {
		return "directory"
	}
	return "file"
}

func depth(p string) int {
	p = filepath.Clean(p)
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}

// resolveExisting splits an absolute path into its deepest existing prefix (symlinks resolved, as the
// kernel will when it mounts there) and the part that does not exist yet.
func resolveExisting(p string) (existing, rest string, err error) {
	comps := strings.Split(strings.TrimPrefix(filepath.Clean(p), "/"), "/")
	for i := len(comps); i >= 0; i-- {
		prefix := "/" + filepath.Join(comps[:i]...)
		if _, err := os.Lstat(prefix); err != nil {
			continue
		}
		resolved, err := filepath.EvalSymlinks(prefix)
		if err != nil {
			return "", "", fmt.Errorf("resolving %s: %w", prefix, err)
		}
		return resolved, filepath.Join(comps[i:]...), nil
	}
	return "/", filepath.Join(comps...), nil
}

// makeInside creates root/rel (a directory, or an empty file) without following symlinks, so a
// volume's content cannot redirect it outside the volume.
func makeInside(root, rel string, dir bool) error {
	if !filepath.IsLocal(rel) {
		return fmt.Errorf("%q leaves the volume", rel)
	}
	comps := strings.Split(filepath.Clean(rel), "/")
	cur := root
	for i, c := range comps {
		cur = filepath.Join(cur, c)
		last := i == len(comps)-1
		fi, err := os.Lstat(cur)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if last && !dir {
				f, err := os.OpenFile(cur, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
				if err != nil {
					return err
				}
				return f.Close()
			}
			if err := os.Mkdir(cur, 0o755); err != nil {
				return err
			}
		case err != nil:
			return err
		case fi.Mode()&os.ModeSymlink != 0:
			return fmt.Errorf("%s is a symlink", cur)
		case last && fi.IsDir() != dir:
			return fmt.Errorf("%s exists and is not a %s", cur, kindOf(dir))
		case !last && !fi.IsDir():
			return fmt.Errorf("%s is not a directory", cur)
		}
	}
	return nil
}
