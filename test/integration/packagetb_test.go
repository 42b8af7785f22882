package integration

import (
	"os"
	"testing"
)

var packageCleanups []func()

// packageTB lets a package-wide fixture be started from the first test that needs it while its
// teardown runs after the last test (TestMain), not when that first test ends.
type packageTB struct{ *testing.T }

func (p packageTB) Cleanup(f func()) { packageCleanups = append(packageCleanups, f) }

func (p packageTB) TempDir() string {
	dir, err := os.MkdirTemp("", "mosb-it-")
	if err != nil {
		p.Fatal(err)
	}
	packageCleanups = append(packageCleanups, func() { _ = os.RemoveAll(dir) })
	return dir
}
