package integration

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/containers/buildah"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

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

// create makes obj for the test's duration: the control plane is shared by the package, so what a
// test makes goes when it ends, and the package runs again (-count) on the same API server.
func create(ctx context.Context, t *testing.T, c client.Client, obj client.Object) error {
	t.Helper()
	if err := c.Create(ctx, obj); err != nil {
		return err
	}
	t.Cleanup(func() {
		if err := c.Delete(context.Background(), obj); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting %s: %v", obj.GetName(), err)
		}
	})
	return nil
}
