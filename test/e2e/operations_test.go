package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/test/harness"
)

// waitBuildEnds waits for the only MachineOSBuild of a MachineOSConfig to reach a final phase.
func (e *env) waitBuildEnds(mosc string) mosbv1.MachineOSBuild {
	e.t.Helper()
	var b mosbv1.MachineOSBuild
	eventually(e.t, buildTimeout, "the build of "+mosc+" to end", func(ctx context.Context) (bool, error) {
		builds := e.builds(ctx, mosc)
		if len(builds) != 1 {
			return false, fmt.Errorf("%d builds", len(builds))
		}
		b = builds[0]
		return pipeline.Phase(&b).Terminal(), nil
	})
	return b
}

func (e *env) runningPod(mosc string) *corev1.Pod {
	e.t.Helper()
	var pod *corev1.Pod
	eventually(e.t, time.Minute, "a running build pod of "+mosc, func(ctx context.Context) (bool, error) {
		pods := &corev1.PodList{}
		if err := e.c.List(ctx, pods, client.InNamespace(buildNamespace), client.MatchingLabels{pipeline.LabelMachineOSConfig: mosc}); err != nil {
			return false, err
		}
		for i := range pods.Items {
			if pods.Items[i].Status.Phase == corev1.PodRunning {
				pod = &pods.Items[i]
				return true, nil
			}
		}
		return false, nil
	})
	return pod
}

func condition(b *mosbv1.MachineOSBuild, t string) *metav1.Condition {
	return meta.FindStatusCondition(b.Status.Conditions, t)
}

func TestFailedBuildsSayWhyAndTransientOnesAreRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()

	// A RUN that fails: Failed, the worker's reason and the end of the log; not retried.
	if err := e.c.Create(ctx, e.newMOSC("broken", "RUN echo about-to-fail && false")); err != nil {
		t.Fatal(err)
	}
	// A build whose pod is deleted mid-build: Interrupted, then retried to success.
	if err := e.c.Create(ctx, e.newMOSC("deleted", "RUN sleep 8")); err != nil {
		t.Fatal(err)
	}
	// A push the registry refuses: PushFailed saying credentials, not retried.
	bad := dockerSecret("bad-push", harness.DockerConfigJSON(e.reg.Host, e.reg.Username, "not-the-password"))
	if err := e.c.Create(ctx, bad); err != nil {
		t.Fatal(err)
	}
	m := e.newMOSC("refused", "RUN true")
	m.Spec.BuildInputs.RenderedImagePushSecret.Name = "bad-push"
	if err := e.c.Create(ctx, m); err != nil {
		t.Fatal(err)
	}

	pod := e.runningPod("deleted")
	if err := e.c.Delete(ctx, pod); err != nil {
		t.Fatal(err)
	}

	b := e.waitBuildEnds("broken")
	c := condition(&b, mosbv1.MachineOSBuildFailed)
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != "BuildFailed" || !strings.Contains(c.Message, "about-to-fail") || !strings.Contains(c.Message, "exit code 1") {
		t.Errorf("broken: want Failed/BuildFailed with the exit code and the log tail, got %+v", c)
	}
	if len(b.Status.FailedAttempts) != 0 {
		t.Errorf("broken: a deterministic failure was retried: %+v", b.Status.FailedAttempts)
	}
	eventually(t, time.Minute, "broken's MachineOSConfig Degraded/BuildFailed", func(ctx context.Context) (bool, error) {
		mb := &mosbv1.MachineOSConfig{}
		if err := e.c.Get(ctx, client.ObjectKey{Name: "broken"}, mb); err != nil {
			return false, err
		}
		d := meta.FindStatusCondition(mb.Status.Conditions, mosbv1.MachineOSConfigDegraded)
		return d != nil && d.Status == metav1.ConditionTrue && d.Reason == "BuildFailed", fmt.Errorf("Degraded: %+v", d)
	})

	b = e.waitBuildEnds("refused")
	c = condition(&b, mosbv1.MachineOSBuildFailed)
	if c == nil || c.Reason != pipeline.ReasonPushFailed || !strings.Contains(c.Message, "credentials") || !strings.Contains(c.Message, e.reg.Host) {
		t.Errorf("refused: want Failed/PushFailed saying credentials and naming %s, got %+v", e.reg.Host, c)
	}
	if len(b.Status.FailedAttempts) != 0 || strings.Contains(c.Message, "not-the-password") {
		t.Errorf("refused: retried, or the password leaked: %+v", b.Status)
	}

	b = e.waitBuildEnds("deleted")
	if pipeline.Phase(&b) != pipeline.PhaseSucceeded {
		t.Fatalf("deleted: the retry did not succeed: %+v", b.Status.Conditions)
	}
	if len(b.Status.FailedAttempts) != 1 || b.Status.FailedAttempts[0].Reason != pipeline.ReasonInterrupted || b.Status.Attempt != 2 {
		t.Errorf("deleted: want one Interrupted attempt then attempt 2, got attempt %d, %+v", b.Status.Attempt, b.Status.FailedAttempts)
	}
	e.waitReady("deleted")
}

func TestDeadlineEndsTheBuildWithTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.ctrl.restartWith("--build-timeout", "5s")
	if err := e.c.Create(t.Context(), e.newMOSC("slowpoke", "RUN sleep 60")); err != nil {
		t.Fatal(err)
	}
	b := e.waitBuildEnds("slowpoke")
	c := condition(&b, mosbv1.MachineOSBuildFailed)
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != pipeline.ReasonTimeout || !strings.Contains(c.Message, "--build-timeout") {
		t.Errorf("want Failed/Timeout naming --build-timeout, got %+v", c)
	}
}

func TestKilledControllerAdoptsTheRunningBuild(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	if err := e.c.Create(ctx, e.newMOSC("adopt", "RUN sleep 6")); err != nil {
		t.Fatal(err)
	}
	pod := e.runningPod("adopt")
	e.ctrl.restart() // SIGKILL, then a new process
	m := e.waitReady("adopt")
	builds := e.builds(ctx, "adopt")
	if len(builds) != 1 {
		t.Fatalf("%d MachineOSBuilds after the restart, want 1", len(builds))
	}
	if got := builds[0].Status.Architectures[0].PodName; got != pod.Name || builds[0].Status.Attempt != 1 {
		t.Errorf("the build was not adopted: pod %s attempt %d, the running one was %s", got, builds[0].Status.Attempt, pod.Name)
	}
	if !strings.HasSuffix(string(m.Status.CurrentImagePullspec), e.servedDigest(e.reg.Host+"/os/adopt:latest")) {
		t.Errorf("status %s is not the image the registry serves", m.Status.CurrentImagePullspec)
	}
}

func TestHistoryLimitsAndMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := l.Addr().String()
	l.Close()
	l, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	probeAddr := l.Addr().String()
	l.Close()
	e.ctrl.restartWith("--metrics-bind-address", metricsAddr, "--health-probe-bind-address", probeAddr, "--succeeded-history", "2")
	for _, path := range []string{"/healthz", "/readyz"} {
		eventually(t, 30*time.Second, path+" answering 200", func(ctx context.Context) (bool, error) {
			resp, err := http.Get("http://" + probeAddr + path)
			if err != nil {
				return false, err
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, fmt.Errorf("%s: %s", path, resp.Status)
		})
	}

	m := e.newMOSC("hist", "RUN echo 0 > /etc/n")
	if err := e.c.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	e.waitReady("hist")
	for i := 1; i < 6; i++ {
		m := e.get("hist")
		m.Spec.BuildInputs.Containerfile[0].Content = fmt.Sprintf("RUN echo %d > /etc/n", i)
		if err := e.c.Update(ctx, m); err != nil {
			t.Fatal(err)
		}
		eventually(t, buildTimeout, fmt.Sprintf("build %d of hist", i+1), func(ctx context.Context) (bool, error) {
			m := &mosbv1.MachineOSConfig{}
			if err := e.c.Get(ctx, client.ObjectKey{Name: "hist"}, m); err != nil {
				return false, err
			}
			return m.Status.ObservedGeneration == m.Generation && meta.IsStatusConditionTrue(m.Status.Conditions, mosbv1.MachineOSConfigReady), nil
		})
	}
	// 6 builds: the current one and the 2 newest older ones stay.
	if n := len(e.builds(ctx, "hist")); n != 3 {
		t.Errorf("%d MachineOSBuilds after 6 builds with --succeeded-history 2, want 3", n)
	}
	// Pods and request ConfigMaps go with each build's end (a pod once the Job controller has
	// counted it: its finalizer); a Job stays as long as its build, the record of the attempt.
	eventually(t, 30*time.Second, "no pod or request ConfigMap of hist left", func(ctx context.Context) (bool, error) {
		for _, kind := range []client.ObjectList{&corev1.PodList{}, &corev1.ConfigMapList{}} {
			if err := e.c.List(ctx, kind, client.InNamespace(buildNamespace), client.MatchingLabels{pipeline.LabelMachineOSConfig: "hist"}); err != nil {
				return false, err
			}
			if n := meta.LenList(kind); n != 0 {
				return false, fmt.Errorf("%d %T left behind", n, kind)
			}
		}
		return true, nil
	})
	kept := map[string]bool{}
	for _, b := range e.builds(ctx, "hist") {
		kept[b.Name] = true
	}
	eventually(t, 30*time.Second, "one Job per kept build of hist, none of the pruned ones", func(ctx context.Context) (bool, error) {
		jobs := &batchv1.JobList{}
		if err := e.c.List(ctx, jobs, client.InNamespace(buildNamespace), client.MatchingLabels{pipeline.LabelMachineOSConfig: "hist"}); err != nil {
			return false, err
		}
		var names []string
		for _, j := range jobs.Items {
			if !kept[j.Labels[pipeline.LabelMachineOSBuild]] {
				return false, fmt.Errorf("Job %s of pruned build %s left behind", j.Name, j.Labels[pipeline.LabelMachineOSBuild])
			}
			names = append(names, j.Name)
		}
		return len(jobs.Items) == len(kept), fmt.Errorf("Jobs %v for builds %v", names, kept)
	})

	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`mosb_builds_total{machineosconfig="hist",reason="Built",result="Succeeded"} 6`,
		`mosb_machineosconfig_ready{machineosconfig="hist"} 1`,
		`mosb_machineosconfig_degraded{machineosconfig="hist",reason=""} 0`,
		`mosb_machineosconfig_last_successful_build_timestamp_seconds{machineosconfig="hist"} `,
		`mosb_build_duration_seconds_count{result="Succeeded"} 6`,
		`mosb_builds_in_flight 0`,
		`workqueue_depth{controller="build",name="build"`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
