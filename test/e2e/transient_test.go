package e2e

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/test/harness"
)

// The registry vanishes in the middle of a push for longer than the worker's own retries: the
// worker reports a retryable PushFailed, and the controller's next attempt succeeds.
func TestTransientPushFailureIsRetriedToSuccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	proxy := harness.StartProxy(t, e.reg.Host)

	// The proxy is another registry host to the cluster: trust its (the registry's) CA, and give
	// the push secret an entry for it.
	cas := &corev1.ConfigMap{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: "openshift-config", Name: "registry-cas"}, cas); err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(proxy.Host, ":")
	cas.Data[host+".."+port] = string(e.reg.CA.PEM)
	if err := e.c.Update(ctx, cas); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Create(ctx, dockerSecret("push-via-proxy", harness.DockerConfigJSON(proxy.Host, e.reg.Username, e.reg.Password))); err != nil {
		t.Fatal(err)
	}

	proxy.CutAfter(64 << 10)
	go func() {
		select {
		case <-proxy.Cut():
		case <-ctx.Done():
			return
		}
		// Longer than the worker's retries (about 6 s), shorter than the controller's backoff
		// plus the next attempt's build.
		time.AfterFunc(12*time.Second, func() {
			if err := proxy.Resume(); err != nil {
				t.Errorf("resuming the proxy: %v", err)
			}
		})
	}()
	m := e.newMOSC("flaky", "RUN head -c 300000 /bin/busybox > /big")
	m.Spec.BuildInputs.RenderedImagePushspec = mosbv1.ImageTagPushspec(proxy.Host + "/os/flaky:latest")
	m.Spec.BuildInputs.RenderedImagePushSecret.Name = "push-via-proxy"
	if err := e.c.Create(ctx, m); err != nil {
		t.Fatal(err)
	}

	b := e.waitBuildEnds("flaky")
	select {
	case <-proxy.Cut():
	default:
		t.Fatal("the proxy never cut: the push was not interrupted")
	}
	if pipeline.Phase(&b) != pipeline.PhaseSucceeded {
		t.Fatalf("the build did not recover: %+v", b.Status.Conditions)
	}
	if len(b.Status.FailedAttempts) != 1 || b.Status.FailedAttempts[0].Reason != pipeline.ReasonPushFailed || !strings.Contains(b.Status.FailedAttempts[0].Message, proxy.Host) {
		t.Errorf("want one failed attempt, PushFailed naming %s: %+v", proxy.Host, b.Status.FailedAttempts)
	}
	e.waitReady("flaky")
}
