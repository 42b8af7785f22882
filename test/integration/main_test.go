package integration

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/containers/buildah"

	"github.com/mosb-dev/mosb/test/harness"
)

// sharedPlane is one control plane for the package: starting one costs seconds, and each test works
// on objects of its own names.
var sharedPlane *harness.ControlPlane

func controlPlane(t *testing.T) *harness.ControlPlane {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs kube-apiserver + etcd (run without -short)")
	}
	if sharedPlane == nil {
		sharedPlane = harness.StartControlPlane(packageTB{t})
	}
	return sharedPlane
}

func TestMain(m *testing.M) {
	// chroot isolation re-executes the test binary; the child must not run the tests.
	if buildah.InitReexec() {
		return
	}
	code := m.Run()
	for i := len(packageCleanups) - 1; i >= 0; i-- {
		packageCleanups[i]()
	}
	os.Exit(code)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
