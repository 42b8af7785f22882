package kubeletstandin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// The stand-in starts every container process as a re-exec of its own binary with argv[0] helperArg0
// and the plan's path in helperEnv, in a new mount namespace (SysProcAttr.Unshareflags). The init
// function below recognises that, sets up the mounts the plan lists, and execs the container's command;
// a failure before the exec is written to fd 3, which the exec closes on success.
const (
	helperArg0 = "mosb-kubelet-standin-exec"
	helperEnv  = "MOSB_KUBELET_STANDIN_EXEC_PLAN"
	statusFD   = 3
)

func init() {
	if len(os.Args) == 1 && os.Args[0] == helperArg0 {
		if plan := os.Getenv(helperEnv); plan != "" {
			os.Exit(helperMain(plan))
		}
	}
}

func helperMain(planPath string) int {
	syscall.CloseOnExec(statusFD)
	status := os.NewFile(statusFD, "status")
	err := execPlanned(planPath) // returns only on failure
	if status != nil {
		_, _ = status.WriteString(err.Error())
	}
	return 1
}

func execPlanned(planPath string) error {
	b, err := os.ReadFile(planPath)
	if err != nil {
		return fmt.Errorf("reading the exec plan: %w", err)
	}
	var p execPlan
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("reading the exec plan %s: %w", planPath, err)
	}
	ns, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return fmt.Errorf("reading own mount namespace: %w", err)
	}
	if p.HostMountNS == "" || ns == p.HostMountNS {
		return fmt.Errorf("refusing to mount: the helper is not in a new mount namespace (%s)", ns)
	}
	// Nothing done here may propagate to the host (the fork already did this; say it again).
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	for _, sh := range p.Shadows {
		if err := shadow(sh); err != nil {
			return fmt.Errorf("shadowing %s to create %v: %w", sh.Dir, sh.Create, err)
		}
	}
	for _, bm := range p.Binds {
		if err := bind(bm); err != nil {
			return err
		}
	}
	if p.Hostname != "" {
		if err := unix.Sethostname([]byte(p.Hostname)); err != nil {
			return fmt.Errorf("setting hostname %q: %w", p.Hostname, err)
		}
	}
	if err := os.Chdir(p.WorkingDir); err != nil {
		return fmt.Errorf("changing to working dir: %w", err)
	}
	if p.SetIdentity {
		groups := make([]int, len(p.Groups))
		for i, g := range p.Groups {
			groups[i] = int(g)
		}
		if err := syscall.Setgroups(groups); err != nil {
			return fmt.Errorf("setting supplementary groups %v: %w", p.Groups, err)
		}
		if err := syscall.Setgid(int(p.GID)); err != nil {
			return fmt.Errorf("setting group %d: %w", p.GID, err)
		}
		if err := syscall.Setuid(int(p.UID)); err != nil {
			return fmt.Errorf("setting user %d: %w", p.UID, err)
		}
	}
	err = syscall.Exec(p.Path, p.Args, p.Env)
	return fmt.Errorf("exec %s: %w", p.Path, err)
}

// shadow covers sh.Dir with a tmpfs that shows the same entries (bind mounts of the originals,
// symlinks copied) plus the paths to create.
func shadow(sh shadowSpec) error {
	fi, err := os.Stat(sh.Dir)
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	mode := uint32(fi.Mode().Perm())
	if fi.Mode()&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	if fi.Mode()&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	opts := fmt.Sprintf("mode=%o,uid=%d,gid=%d", mode, st.Uid, st.Gid)
	if err := unix.Mount("tmpfs", sh.Stage, "tmpfs", 0, opts); err != nil {
		return fmt.Errorf("mounting a tmpfs at %s: %w", sh.Stage, err)
	}
	entries, err := os.ReadDir(sh.Dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		src := filepath.Join(sh.Dir, e.Name())
		dst := filepath.Join(sh.Stage, e.Name())
		efi, err := os.Lstat(src)
		if errors.Is(err, os.ErrNotExist) {
			continue // gone meanwhile
		}
		if err != nil {
			return err
		}
		switch {
		case efi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, dst); err != nil {
				return err
			}
			est := efi.Sys().(*syscall.Stat_t)
			_ = os.Lchown(dst, int(est.Uid), int(est.Gid))
		case efi.IsDir():
			if err := os.Mkdir(dst, efi.Mode().Perm()); err != nil {
				return err
			}
			if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
				return fmt.Errorf("bind-mounting %s: %w", src, err)
			}
		default:
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			_ = f.Close()
			if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("bind-mounting %s: %w", src, err)
			}
		}
	}
	for _, c := range sh.Create {
		p := filepath.Join(sh.Stage, c.Path)
		if c.Dir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		_ = f.Close()
	}
	if err := unix.Mount(sh.Stage, sh.Dir, "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving the shadow over %s: %w", sh.Dir, err)
	}
	return nil
}

func bind(b bindSpec) error {
	if err := unix.Mount(b.Source, b.Target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mounting %s at %s: %w", b.Source, b.Target, err)
	}
	if !b.ReadOnly {
		return nil
	}
	// A read-only remount of a bind must keep the flags the mount already has.
	var sfs unix.Statfs_t
	if err := unix.Statfs(b.Target, &sfs); err != nil {
		return err
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
	for st, ms := range map[int64]uintptr{
		unix.ST_NOSUID: unix.MS_NOSUID, unix.ST_NODEV: unix.MS_NODEV, unix.ST_NOEXEC: unix.MS_NOEXEC,
		unix.ST_NOATIME: unix.MS_NOATIME, unix.ST_NODIRATIME: unix.MS_NODIRATIME, unix.ST_RELATIME: unix.MS_RELATIME,
	} {
		if sfs.Flags&st != 0 {
			flags |= ms
		}
	}
	if err := unix.Mount("", b.Target, "", flags, ""); err != nil {
		return fmt.Errorf("remounting %s read-only: %w", b.Target, err)
	}
	return nil
}
