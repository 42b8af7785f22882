package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const acquired = "successfully acquired lease"

func TestLeaderElectionOneActsAndTheOtherTakesOver(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	a := e.ctrl
	a.restartWith("--leader-elect")
	b := startController(t, mosbBinary(t), e.cp.Kubeconfig)
	b.restartWith("--leader-elect")

	var leader, standby *controllerProcess
	eventually(t, time.Minute, "one controller to hold the lease", func(ctx context.Context) (bool, error) {
		lease := &coordinationv1.Lease{}
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: buildNamespace, Name: "mosb-controller"}, lease); err != nil {
			return false, nil
		}
		switch {
		case strings.Contains(a.logs(), acquired):
			leader, standby = a, b
		case strings.Contains(b.logs(), acquired):
			leader, standby = b, a
		}
		return leader != nil, nil
	})

	if err := e.c.Create(ctx, e.newMOSC("led", "RUN sleep 8")); err != nil {
		t.Fatal(err)
	}
	pod := e.runningPod("led")
	if strings.Contains(standby.logs(), "build started") || strings.Contains(standby.logs(), acquired) {
		t.Fatalf("the standby acted while the leader held the lease:\n%s", standby.logs())
	}
	if !strings.Contains(leader.logs(), "build started") {
		t.Fatalf("the leader did not start the build:\n%s", leader.logs())
	}

	killed := time.Now()
	leader.kill()
	eventually(t, 45*time.Second, "the standby to take the lease", func(context.Context) (bool, error) {
		return strings.Contains(standby.logs(), acquired), nil
	})
	// The lease lasts 15 s (controller-runtime's default); a killed leader cannot release it.
	if took := time.Since(killed); took > 30*time.Second {
		t.Errorf("hand-over took %s, more than twice the lease duration", took)
	}
	m := e.waitReady("led")
	builds := e.builds(ctx, "led")
	if len(builds) != 1 || builds[0].Status.Attempt > 1 {
		t.Fatalf("want the one build adopted (attempt 1), got %d builds: %+v", len(builds), builds)
	}
	if builds[0].Status.Architectures[0].PodName != pod.Name {
		t.Errorf("the new leader built again instead of adopting pod %s", pod.Name)
	}
	if strings.Contains(standby.logs(), "build started") {
		t.Error("the new leader started a second build")
	}
	if !strings.HasSuffix(string(m.Status.CurrentImagePullspec), e.servedDigest(e.reg.Host+"/os/led:latest")) {
		t.Errorf("status %s is not what the registry serves", m.Status.CurrentImagePullspec)
	}
}
