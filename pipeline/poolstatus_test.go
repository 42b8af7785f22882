package pipeline

import (
	"strings"
	"testing"
	"time"

	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
)

func TestPoolHold(t *testing.T) {
	pool := func(conds ...mcfgv1.MachineConfigPoolCondition) *mcfgv1.MachineConfigPool {
		p := &mcfgv1.MachineConfigPool{ObjectMeta: metav1.ObjectMeta{Name: "worker"}}
		p.Status.Conditions = conds
		return p
	}
	c := func(t mcfgv1.MachineConfigPoolConditionType, s corev1.ConditionStatus, msg string) mcfgv1.MachineConfigPoolCondition {
		return mcfgv1.MachineConfigPoolCondition{Type: t, Status: s, Message: msg}
	}
	for _, tt := range []struct {
		name string
		pool *mcfgv1.MachineConfigPool
		want string // in the sentence; "" for no hold
	}{
		{"no pool API", nil, ""},
		{"a healthy pool", pool(c(mcfgv1.MachineConfigPoolUpdated, corev1.ConditionTrue, "")), ""},
		{"a node degraded", pool(c(mcfgv1.MachineConfigPoolNodeDegraded, corev1.ConditionTrue, "node a: disk full")), "worker is NodeDegraded (node a: disk full)"},
		{"rendering failed", pool(c(mcfgv1.MachineConfigPoolRenderDegraded, corev1.ConditionTrue, "")), "worker is RenderDegraded"},
		{"recovered", pool(c(mcfgv1.MachineConfigPoolNodeDegraded, corev1.ConditionFalse, "")), ""},
		{"only its own build failed", pool(c(mcfgv1.MachineConfigPoolImageBuildDegraded, corev1.ConditionTrue, "")), ""},
	} {
		got := PoolHold(tt.pool)
		if (got == "") != (tt.want == "") || !strings.Contains(got, tt.want) {
			t.Errorf("%s: PoolHold = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestPoolBuildCondition(t *testing.T) {
	mosc := func(name string, conds ...metav1.Condition) mosbv1.MachineOSConfig {
		m := mosbv1.MachineOSConfig{ObjectMeta: metav1.ObjectMeta{Name: name}}
		for _, c := range conds {
			meta.SetStatusCondition(&m.Status.Conditions, c)
		}
		return m
	}
	ready := metav1.Condition{Type: mosbv1.MachineOSConfigReady, Status: metav1.ConditionTrue, Reason: ReasonBuilt}
	building := metav1.Condition{Type: mosbv1.MachineOSConfigBuilding, Status: metav1.ConditionTrue, Reason: ReasonBuilding}
	failed := metav1.Condition{Type: mosbv1.MachineOSConfigDegraded, Status: metav1.ConditionTrue, Reason: ReasonBuildFailed, Message: "step 2 exited 1"}
	for _, tt := range []struct {
		name    string
		moscs   []mosbv1.MachineOSConfig
		had     bool
		ok      bool
		status  corev1.ConditionStatus
		reason  string
		inWords string
	}{
		{"none of mosb's", nil, false, false, "", "", ""},
		{"none left, the condition was set", nil, true, true, corev1.ConditionFalse, "NoLayeredObjects", "no MachineOSConfig"},
		{"built", []mosbv1.MachineOSConfig{mosc("worker", ready)}, false, true, corev1.ConditionFalse, string(mcfgv1.MachineConfigPoolBuildSuccess), "succeeded"},
		{"building", []mosbv1.MachineOSConfig{mosc("worker", building)}, false, true, corev1.ConditionFalse, string(mcfgv1.MachineConfigPoolBuilding), "worker"},
		{"no status yet", []mosbv1.MachineOSConfig{mosc("worker")}, false, true, corev1.ConditionFalse, string(mcfgv1.MachineConfigPoolBuildPending), "waits"},
		{"failed, another built", []mosbv1.MachineOSConfig{mosc("a", ready), mosc("b", failed)}, false, true, corev1.ConditionTrue, string(mcfgv1.MachineConfigPoolBuildFailed), "MachineOSConfig b): BuildFailed: step 2 exited 1"},
	} {
		c, ok := PoolBuildCondition("worker", tt.moscs, tt.had)
		if ok != tt.ok || c.Status != tt.status || c.Reason != tt.reason || !strings.Contains(c.Message, tt.inWords) {
			t.Errorf("%s: got %v %+v, want %v %s %s saying %q", tt.name, ok, c, tt.ok, tt.status, tt.reason, tt.inWords)
		}
		if ok && c.Type != mcfgv1.MachineConfigPoolImageBuildDegraded {
			t.Errorf("%s: condition type %s", tt.name, c.Type)
		}
	}
}

func TestSetPoolCondition(t *testing.T) {
	t0, t1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	updated := mcfgv1.MachineConfigPoolCondition{Type: mcfgv1.MachineConfigPoolUpdated, Status: corev1.ConditionTrue}
	building := mcfgv1.MachineConfigPoolCondition{Type: mcfgv1.MachineConfigPoolImageBuildDegraded, Status: corev1.ConditionFalse, Reason: "Building"}
	conds, changed := SetPoolCondition([]mcfgv1.MachineConfigPoolCondition{updated}, building, t0)
	if !changed || len(conds) != 2 || conds[0] != updated || !conds[1].LastTransitionTime.Time.Equal(t0) {
		t.Fatalf("added: %v %+v", changed, conds)
	}
	if _, changed := SetPoolCondition(conds, building, t1); changed {
		t.Error("the same condition again changed something")
	}
	success := building
	success.Reason = "BuildSuccess"
	after, changed := SetPoolCondition(conds, success, t1)
	if !changed || after[1].Reason != "BuildSuccess" || !after[1].LastTransitionTime.Time.Equal(t0) {
		t.Errorf("same status, another reason: %v %+v (the transition time stays)", changed, after)
	}
	failed := building
	failed.Status, failed.Reason = corev1.ConditionTrue, "BuildFailed"
	after, _ = SetPoolCondition(conds, failed, t1)
	if !after[1].LastTransitionTime.Time.Equal(t1) || conds[1].Reason != "Building" {
		t.Errorf("a transition: %+v (its time is now's); the input must not change: %+v", after, conds)
	}
}

func TestPoolChangeMatters(t *testing.T) {
	base := &mcfgv1.MachineConfigPool{ObjectMeta: metav1.ObjectMeta{Name: "worker", Generation: 3}}
	base.Status.Configuration.Name = "rendered-worker-1"
	for _, tt := range []struct {
		name string
		edit func(*mcfgv1.MachineConfigPool)
		want bool
	}{
		{"nothing", func(*mcfgv1.MachineConfigPool) {}, false},
		{"mosb's own ImageBuildDegraded", func(p *mcfgv1.MachineConfigPool) {
			p.Status.Conditions = []mcfgv1.MachineConfigPoolCondition{{Type: mcfgv1.MachineConfigPoolImageBuildDegraded, Status: corev1.ConditionTrue}}
		}, false},
		{"machine counts", func(p *mcfgv1.MachineConfigPool) { p.Status.ReadyMachineCount = 2 }, false},
		{"the spec", func(p *mcfgv1.MachineConfigPool) { p.Generation = 4 }, true},
		{"the rendered MachineConfig in status", func(p *mcfgv1.MachineConfigPool) { p.Status.Configuration.Name = "rendered-worker-2" }, true},
		{"a node degraded", func(p *mcfgv1.MachineConfigPool) {
			p.Status.Conditions = []mcfgv1.MachineConfigPoolCondition{{Type: mcfgv1.MachineConfigPoolNodeDegraded, Status: corev1.ConditionTrue}}
		}, true},
	} {
		updated := base.DeepCopy()
		tt.edit(updated)
		if got := PoolChangeMatters(base, updated); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
