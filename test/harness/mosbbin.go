package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

// GoTags are the build tags mosb is built with (buildah as a library without gpgme, btrfs and
// devicemapper headers).
const GoTags = "containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper"

var (
	mosbOnce sync.Once
	mosbPath string
	mosbErr  error
)

// MosbBinary builds ./cmd/mosb once per test binary, into a temporary directory, and returns its
// path: the tests run the source they are part of, never a stale bin/mosb.
func MosbBinary(t T) string {
	t.Helper()
	mosbOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mosb-bin-")
		if err != nil {
			mosbErr = err
			return
		}
		mosbPath = filepath.Join(dir, "mosb")
		cmd := exec.Command("go", "build", "-tags", GoTags, "-o", mosbPath, "./cmd/mosb")
		cmd.Dir = RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			mosbErr = fmt.Errorf("go build ./cmd/mosb: %v\n%s", err, out)
		}
	})
	if mosbErr != nil {
		t.Fatal(mosbErr)
	}
	return mosbPath
}
