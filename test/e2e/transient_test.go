package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
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

	e.viaProxy(proxy, "push-via-proxy")

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

// viaProxy makes the proxy another registry host to the cluster: its (the registry's) CA trusted
// for it, and a push secret with an entry for it.
func (e *env) viaProxy(proxy *harness.Proxy, secret string) {
	e.t.Helper()
	ctx := e.t.Context()
	cas := &corev1.ConfigMap{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: "openshift-config", Name: "registry-cas"}, cas); err != nil {
		e.t.Fatal(err)
	}
	host, port, _ := strings.Cut(proxy.Host, ":")
	cas.Data[host+".."+port] = string(e.reg.CA.PEM)
	if err := e.c.Update(ctx, cas); err != nil {
		e.t.Fatal(err)
	}
	if err := e.c.Create(ctx, dockerSecret(secret, harness.DockerConfigJSON(proxy.Host, e.reg.Username, e.reg.Password))); err != nil {
		e.t.Fatal(err)
	}
}

// A registry that accepts connections and never answers holds none of the controller's workers
// beyond --registry-timeout (30 s by default), and the MachineOSConfig says why it waits.
func TestAHungRegistryDoesNotHoldAWorker(t *testing.T) {
	t.Parallel()
	// One worker: a call that never returned would stop every MachineOSConfig.
	e := newEnvWith(t, envOptions{controllerArgs: []string{"--workers", "1"}})
	proxy := harness.StartProxy(t, e.reg.Host)
	e.viaProxy(proxy, "push-via-hung-proxy")
	m := e.newMOSC("hung", "RUN echo hung > /etc/hung")
	m.Spec.BuildInputs.RenderedImagePushspec = mosbv1.ImageTagPushspec(proxy.Host + "/os/hung:latest")
	m.Spec.BuildInputs.RenderedImagePushSecret.Name = "push-via-hung-proxy"
	e.create(m)
	first := e.waitBuilt("hung", 1).Status.DigestedImagePushspec
	setContent := func(content string) {
		t.Helper()
		e.updateMOSC("hung", func(m *mosbv1.MachineOSConfig) { m.Spec.BuildInputs.Containerfile[0].Content = content })
	}
	setContent("RUN echo hung again > /etc/hung")
	e.waitBuilt("hung", 2)

	proxy.Hang()
	// Back to the first inputs: the controller checks that their image is still in the registry,
	// which now never answers.
	setContent("RUN echo hung > /etc/hung")
	hungAt := time.Now()
	e.create(e.newMOSC("healthy", "RUN echo healthy > /etc/healthy"))

	var said corev1.Event
	eventually(t, 45*time.Second, "a RegistryUnresponsive event on the MachineOSConfig whose registry hangs", func(ctx context.Context) (bool, error) {
		events, err := eventsFor(ctx, e.c, "MachineOSConfig", "hung")
		for _, ev := range events {
			if ev.Reason == pipeline.ReasonRegistryUnresponsive {
				said = ev
				return true, nil
			}
		}
		return false, err
	})
	t.Logf("after %s: %s", time.Since(hungAt).Round(time.Second), said.Message)
	if !strings.Contains(said.Message, proxy.Host) || !strings.Contains(said.Message, "no answer within 30s") {
		t.Errorf("the event does not name the registry %s and the bound: %q", proxy.Host, said.Message)
	}
	// The worker is free between the checks: the other MachineOSConfig builds meanwhile.
	e.waitReady("healthy")

	proxy.Answer()
	eventually(t, 2*time.Minute, "the status of the MachineOSConfig whose registry answers again", func(ctx context.Context) (bool, error) {
		m := e.get("hung")
		return string(m.Status.CurrentImagePullspec) == first, nil
	})
}

// An image deleted from the registry is built again when its inputs come back: the MachineOSConfig
// goes back to content whose build succeeded before, the controller finds that build's image
// gone (ImageMissing), and the same inputs build the same image again.
func TestAnImageDeletedFromTheRegistryIsBuiltAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.create(e.newMOSC("deleted", "RUN echo one > /etc/one"))
	first := e.waitBuilt("deleted", 1).Status.DigestedImagePushspec
	setContent := func(content string) {
		t.Helper()
		e.updateMOSC("deleted", func(m *mosbv1.MachineOSConfig) { m.Spec.BuildInputs.Containerfile[0].Content = content })
	}
	setContent("RUN echo two > /etc/two")
	e.waitBuilt("deleted", 2)

	ref, err := name.NewDigest(first)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Delete(ref, remote.WithAuth(e.reg.Auth()), remote.WithTransport(e.reg.Transport()), remote.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	setContent("RUN echo one > /etc/one")
	eventually(t, time.Minute, "an ImageMissing event on the MachineOSConfig", func(ctx context.Context) (bool, error) {
		events, err := eventsFor(ctx, e.c, "MachineOSConfig", "deleted")
		for _, ev := range events {
			if ev.Reason == pipeline.ReasonImageMissing && strings.Contains(ev.Message, first) {
				return true, nil
			}
		}
		return false, err
	})
	// The first build went with its image; its inputs built again: two builds, the same image.
	again := e.waitBuilt("deleted", 2)
	if again.Status.DigestedImagePushspec != first {
		t.Errorf("the inputs built again gave %s, first %s", again.Status.DigestedImagePushspec, first)
	}
	if _, err := remote.Head(ref, remote.WithAuth(e.reg.Auth()), remote.WithTransport(e.reg.Transport()), remote.WithContext(ctx)); err != nil {
		t.Errorf("the image is not in the registry again: %v", err)
	}
}
