package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/test/harness"
)

// A build pod whose registry stops answering ends by itself, within the bounds the controller's
// flags set for its pods, and the MachineOSBuild and MachineOSConfig say RegistryUnresponsive,
// naming the registry and the operation: (a) a registry that accepts connections and never
// answers, (b) a layer download that stops half-way, (c) a blob upload never taken; (d) a registry
// that trickles steadily is no failure.
func TestABuildPodGivesUpOnAnUnresponsiveRegistry(t *testing.T) {
	t.Parallel()
	metricsAddr := harness.FreeLoopbackAddr(t)
	e := newEnvWith(t, envOptions{controllerArgs: []string{"--max-retries", "0", "--metrics-bind-address", metricsAddr,
		"--registry-connect-timeout", "3s", "--registry-response-timeout", "3s", "--registry-stall-timeout", "3s"}})
	// (d) A registry that trickles the base slowly but steadily, longer than the bounds, is no
	// failure.
	t.Run("trickle", func(t *testing.T) {
		proxy := harness.StartProxy(t, e.reg.Host)
		e.viaProxy(proxy, "via-trickle")
		m := e.mosc("trickle", "RUN true", strings.Replace(e.base, e.reg.Host, proxy.Host, 1), e.reg.Host+"/os/trickle:latest")
		m.Spec.BuildInputs.BaseImagePullSecret.Name = "via-trickle"
		proxy.Trickle(256 << 10)
		start := time.Now()
		e.create(m)
		e.waitReady("trickle")
		t.Logf("built through a 256 KiB/s registry in %s", time.Since(start).Round(time.Second))
	})
	// The controller's goroutines once it has built something (informers, caches and
	// connections warm): the failures below must leave no more behind.
	before := goroutines(t, metricsAddr)
	for _, c := range []struct {
		name        string
		misbehave   func(p *harness.Proxy)
		throughPull bool
		op          string
	}{
		{"hang", func(p *harness.Proxy) { p.Hang() }, true, "while "},
		{"stalled-pull", func(p *harness.Proxy) { p.StallDownloadsAfter(32 << 10) }, true, "while pulling layer sha256:"},
		{"stalled-push", func(p *harness.Proxy) { p.StallUploadsAfter(64 << 10) }, false, " to os/stalled-push"},
	} {
		t.Run(c.name, func(t *testing.T) {
			proxy := harness.StartProxy(t, e.reg.Host)
			secret := "via-" + c.name
			e.viaProxy(proxy, secret)
			base, push := e.base, e.reg.Host+"/os/"+c.name+":latest"
			if c.throughPull {
				base = strings.Replace(base, e.reg.Host, proxy.Host, 1)
			} else {
				push = proxy.Host + "/os/" + c.name + ":latest"
			}
			m := e.mosc(c.name, "RUN head -c 300000 /bin/busybox > /big", base, push)
			if c.throughPull {
				m.Spec.BuildInputs.BaseImagePullSecret.Name = secret
			} else {
				m.Spec.BuildInputs.RenderedImagePushSecret.Name = secret
			}
			c.misbehave(proxy)
			e.create(m)
			b, msg := e.waitBuildFailed(c.name)
			failed := meta.FindStatusCondition(b.Status.Conditions, mosbv1.MachineOSBuildFailed)
			if failed.Reason != pipeline.ReasonRegistryUnresponsive {
				t.Errorf("the build failed with %s, want %s: %s", failed.Reason, pipeline.ReasonRegistryUnresponsive, msg)
			}
			for _, want := range []string{"registry " + proxy.Host + " is unresponsive", c.op, "3s"} {
				if !strings.Contains(msg, want) {
					t.Errorf("the build's message should say %q:\n%s", want, msg)
				}
			}
			if got := e.waitDegraded(c.name, pipeline.ReasonRegistryUnresponsive); !strings.Contains(got, proxy.Host) {
				t.Errorf("the MachineOSConfig's Degraded condition does not name %s: %s", proxy.Host, got)
			}
			// No pod is left holding a node's build slot.
			pods := &corev1.PodList{}
			if err := e.c.List(t.Context(), pods, client.InNamespace(buildNamespace), client.MatchingLabels{pipeline.LabelMachineOSConfig: c.name}); err != nil {
				t.Fatal(err)
			}
			for _, p := range pods.Items {
				if p.Status.Phase != corev1.PodFailed && p.Status.Phase != corev1.PodSucceeded {
					t.Errorf("build pod %s is %s after the build failed", p.Name, p.Status.Phase)
				}
			}
		})
	}
	// The failures left no goroutine behind in the controller: its count comes back to where it
	// was before, give or take the informers' and idle connections' few. (Its registry client
	// against a hung registry is checked with goleak in package registry.)
	// Each case's proxy added to the cluster's trusted CAs changed every build's inputs, so the
	// controller builds the earlier cases again (through proxies gone by then): the
	// MachineOSConfigs go first, and with them that churn.
	for _, name := range []string{"trickle", "hang", "stalled-pull", "stalled-push"} {
		if err := e.c.Delete(t.Context(), &mosbv1.MachineOSConfig{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
	const slack = 20
	var after int
	eventually(t, 3*time.Minute, "the controller's goroutines back to their count before the failures", func(context.Context) (bool, error) {
		after = goroutines(t, metricsAddr)
		if after > before+slack {
			return false, fmt.Errorf("%d goroutines, %d before the failures", after, before)
		}
		return true, nil
	})
	t.Logf("controller goroutines: %d before the failures, %d after", before, after)
}

// goroutines reads go_goroutines from the controller's /metrics, waiting for it to serve.
func goroutines(t *testing.T, addr string) int {
	t.Helper()
	n := -1
	eventually(t, time.Minute, "the controller's /metrics", func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
		if err != nil {
			return false, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return false, err
		}
		m := regexp.MustCompile(`(?m)^go_goroutines (\d+)$`).FindSubmatch(body)
		if m == nil {
			return false, fmt.Errorf("no go_goroutines in /metrics")
		}
		n, err = strconv.Atoi(string(m[1]))
		return err == nil, err
	})
	return n
}

// A build pod whose volume is too small for the build ends with BuildStorageFull, and the
// MachineOSBuild and MachineOSConfig say where the build was and how to give it more: the
// ephemeral-storage limit sizes the pod's emptyDir (the stand-in mounts a filesystem that size;
// a kubelet evicts the pod instead, which TestStorageEvictionIsBuildStorageFull covers).
func TestABuildPodThatRunsOutOfStorageSaysSo(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{controllerArgs: []string{"--max-retries", "0"}})
	const name = "storage-full"
	m := e.mosc(name, "RUN dd if=/dev/zero of=/big bs=1M count=200", e.base, "")
	m.Annotations = map[string]string{pipeline.AnnotationBuildLimits: "ephemeral-storage=64Mi"}
	e.create(m)
	b, msg := e.waitBuildFailed(name)
	failed := meta.FindStatusCondition(b.Status.Conditions, mosbv1.MachineOSBuildFailed)
	if failed.Reason != pipeline.ReasonBuildStorageFull {
		t.Errorf("the build failed with %s, want %s: %s", failed.Reason, pipeline.ReasonBuildStorageFull, msg)
	}
	for _, want := range []string{"the build pod's volume at " + buildpod.WorkDir, "a 64 MiB filesystem", "in the RUN of step ", `("RUN dd if=/dev/zero of=/big bs=1M count=200")`, "ephemeral-storage", pipeline.AnnotationBuildLimits} {
		if !strings.Contains(msg, want) {
			t.Errorf("the build's message should say %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "{Env:") {
		t.Errorf("a Go struct in the message:\n%s", msg)
	}
	e.waitDegraded(name, pipeline.ReasonBuildStorageFull)
}
