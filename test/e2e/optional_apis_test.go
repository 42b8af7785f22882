package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/test/harness"
)

// On a cluster without the OpenShift APIs the controller runs, says which APIs it skips, and
// reports a MachineOSConfig whose pool cannot exist instead of crashing or ignoring it.
func TestControllerToleratesMissingOpenShiftAPIs(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("e2e")
	}
	bin := mosbBinary(t)
	cp := harness.StartControlPlane(t, harness.WithoutOpenShiftCRDs())
	ctx := t.Context()
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: buildNamespace}},
		dockerSecret("pull", harness.DockerConfigJSON("r.example.com", "u", "p")),
		dockerSecret("push", harness.DockerConfigJSON("r.example.com", "u", "p")),
	} {
		if err := cp.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	ctrl := startController(t, bin, cp.Kubeconfig)
	m := harness.MachineOSConfig("plain", poolName, "r.example.com/os/base@sha256:"+strings.Repeat("a", 64), "r.example.com/os/plain:latest")
	if err := cp.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "PoolNotFound saying the API is not installed", func(ctx context.Context) (bool, error) {
		got := &mosbv1.MachineOSConfig{}
		if err := cp.Client.Get(ctx, client.ObjectKey{Name: "plain"}, got); err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(got.Status.Conditions, mosbv1.MachineOSConfigDegraded)
		return c != nil && c.Reason == pipeline.ReasonPoolNotFound && strings.Contains(c.Message, "not installed"), nil
	})
	logs := ctrl.logs()
	for _, kind := range []string{"MachineConfigPool", "ImageDigestMirrorSet", "Image"} {
		if n := strings.Count(logs, `not watching it" logger="build" kind="`+kind+`"`); n != 1 {
			t.Errorf("the controller logged the missing %s API %d times, want once:\n%s", kind, n, logs)
		}
	}
}
