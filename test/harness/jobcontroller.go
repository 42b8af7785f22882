package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

var (
	kcmOnce sync.Once
	kcmErr  error
)

// ControllerManagerAssets returns the KubeAssets directory with kube-controller-manager of the same
// version in it, building it with hack/kube-assets.sh when it is missing (minutes, once).
func ControllerManagerAssets(t T) string {
	t.Helper()
	dir := KubeAssets(t)
	kcmOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(dir, "kube-controller-manager")); err == nil {
			return
		}
		got, err := runKubeAssets("controller-manager")
		if err != nil {
			kcmErr = err
		} else if got != dir {
			kcmErr = fmt.Errorf("it built into %s, but the control plane's binaries are in %s: one version for all of them (unset KUBEBUILDER_ASSETS)", got, dir)
		}
	})
	if kcmErr != nil {
		t.Fatalf("building kube-controller-manager with hack/kube-assets.sh controller-manager: %v", kcmErr)
	}
	return dir
}

// StartJobController runs kube-controller-manager's Job controller (and the garbage collector,
// which removes what a deleted Job owned) against the control plane until the test ends: the Jobs
// mosb creates get their pods, as in a cluster. It acts as one privileged user.
func (cp *ControlPlane) StartJobController(t T) {
	t.Helper()
	assets := ControllerManagerAssets(t)
	kc := cp.KubeconfigFor(t, "system:kube-controller-manager", "system:masters")
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	p := startProcess(t, filepath.Join(t.TempDir(), "kube-controller-manager.log"), "kube-controller-manager",
		filepath.Join(assets, "kube-controller-manager"),
		"--kubeconfig="+kc, "--authentication-kubeconfig="+kc, "--authorization-kubeconfig="+kc,
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(port),
		"--controllers=job,garbagecollector", "--use-service-account-credentials=false")
	// Registered after the control plane's cleanup, so it runs first.
	t.Cleanup(func() {
		select {
		case <-p.exited:
			t.Errorf("kube-controller-manager (the Job controller) exited during the test: %s", tail(p.log, 20))
			return
		default:
		}
		p.stop(10 * time.Second)
	})
}
