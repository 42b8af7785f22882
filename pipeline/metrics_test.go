package pipeline

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
)

func TestMachineOSConfigStates(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	mosc := func(name string, conds ...metav1.Condition) mosbv1.MachineOSConfig {
		m := mosbv1.MachineOSConfig{ObjectMeta: metav1.ObjectMeta{Name: name}}
		m.Status.Conditions = conds
		return m
	}
	cond := func(typ string, status metav1.ConditionStatus, reason string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: status, Reason: reason}
	}
	build := func(mosc string, phase BuildPhase, end time.Time) mosbv1.MachineOSBuild {
		b := mosbv1.MachineOSBuild{}
		b.Spec.MachineOSConfig.Name = mosc
		SetBuildPhase(&b, phase, "R", "m", metav1.NewTime(end))
		if phase.Terminal() {
			b.Status.BuildEnd = &metav1.Time{Time: end}
		}
		return b
	}
	states := machineOSConfigStates(
		[]mosbv1.MachineOSConfig{
			mosc("worker", cond(mosbv1.MachineOSConfigReady, metav1.ConditionTrue, "Built"), cond(mosbv1.MachineOSConfigDegraded, metav1.ConditionFalse, "AsExpected")),
			mosc("infra", cond(mosbv1.MachineOSConfigReady, metav1.ConditionFalse, "Building"), cond(mosbv1.MachineOSConfigDegraded, metav1.ConditionTrue, "PushFailed")),
			mosc("new"),
		},
		[]mosbv1.MachineOSBuild{
			build("worker", PhaseSucceeded, t0),
			build("worker", PhaseSucceeded, t0.Add(2*time.Hour)),
			build("worker", PhaseFailed, t0.Add(3*time.Hour)),
			build("worker", PhaseBuilding, t0.Add(4*time.Hour)),
			build("infra", PhaseFailed, t0.Add(time.Hour)),
			build("gone", PhaseSucceeded, t0),
		})
	want := []machineOSConfigState{
		{name: "worker", ready: true, lastSuccess: t0.Add(2 * time.Hour)},
		{name: "infra", degradedReason: "PushFailed"},
		{name: "new"},
	}
	if len(states) != len(want) {
		t.Fatalf("got %d states, want %d: %+v", len(states), len(want), states)
	}
	for i := range want {
		if got := states[i]; got.name != want[i].name || got.ready != want[i].ready || got.degradedReason != want[i].degradedReason || !got.lastSuccess.Equal(want[i].lastSuccess) {
			t.Errorf("state %d: got %+v, want %+v", i, got, want[i])
		}
	}
}
