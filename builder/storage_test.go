package builder_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mosb-dev/mosb/builder"
)

// overlayRoot is a directory on an overlayfs mount: overlay cannot stack on it, as on a machine
// whose root filesystem is itself an overlay (a container's).
func overlayRoot(t *testing.T) string {
	t.Helper()
	needRoot(t)
	d := t.TempDir()
	for _, s := range []string{"lower", "upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(d, s), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	merged := filepath.Join(d, "merged")
	opts := "lowerdir=" + filepath.Join(d, "lower") + ",upperdir=" + filepath.Join(d, "upper") + ",workdir=" + filepath.Join(d, "work")
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Skipf("SKIPPED: cannot mount an overlayfs to test the fallback on: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(merged, unix.MNT_DETACH) })
	return filepath.Join(merged, "root")
}

func TestStorageFallsBackToVFSWhereOverlayCannotMount(t *testing.T) {
	root := overlayRoot(t)
	e, err := builder.New(root, builder.WithImageStore(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	got := e.Storage()
	if got.Driver != builder.DriverVFS || got.Fallback == "" {
		t.Fatalf("storage %+v, want vfs with the reason overlay could not be used", got)
	}
	if !strings.Contains(got.String(), "overlay cannot mount here") || !strings.Contains(got.ImageStoreUnused, "vfs") {
		t.Errorf("the fallback is not said: %q / %q", got.String(), got.ImageStoreUnused)
	}

	// Asked for explicitly, overlay is not swapped for vfs behind the user's back.
	if e, err := builder.New(filepath.Join(root, "explicit"), builder.WithStorageDriver(builder.DriverOverlay)); err == nil {
		_ = e.Close()
		t.Error("--storage-driver overlay on an overlayfs root: no error")
	}
}

func TestStorageIsOverlayByDefault(t *testing.T) {
	needRoot(t)
	e, err := builder.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if got := e.Storage(); got.Driver != builder.DriverOverlay || got.Fallback != "" {
		t.Fatalf("storage %+v, want overlay", got)
	}
}
