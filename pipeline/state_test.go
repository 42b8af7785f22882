package pipeline

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
)

func TestSetBuildPhaseKeepsOneConditionTrue(t *testing.T) {
	now := metav1.NewTime(time.Unix(1000, 0))
	for _, phase := range []BuildPhase{PhaseBuilding, PhaseSucceeded, PhaseFailed, PhaseInterrupted} {
		b := &mosbv1.MachineOSBuild{}
		SetBuildPhase(b, PhaseBuilding, ReasonPodsCreated, "building", now)
		SetBuildPhase(b, phase, "SomeReason", "some message", now)
		if got := Phase(b); got != phase {
			t.Errorf("set %s, read back %s", phase, got)
		}
		trueCount := 0
		for _, c := range b.Status.Conditions {
			if c.Type != mosbv1.MachineOSBuildPrepared && c.Status == metav1.ConditionTrue {
				trueCount++
				if c.Reason != "SomeReason" || c.Message != "some message" {
					t.Errorf("%s: the true condition carries %s/%q", phase, c.Reason, c.Message)
				}
			}
		}
		if trueCount != 1 {
			t.Errorf("%s: %d of Building/Succeeded/Failed/Interrupted are true, want 1", phase, trueCount)
		}
		if phase.Terminal() != (b.Status.BuildEnd != nil) {
			t.Errorf("%s: buildEnd %v", phase, b.Status.BuildEnd)
		}
	}
}

func TestSummarise(t *testing.T) {
	building := &mosbv1.MachineOSBuild{ObjectMeta: metav1.ObjectMeta{Name: "w-1"}}
	SetBuildPhase(building, PhaseBuilding, ReasonPodsCreated, "", metav1.Now())
	failed := &mosbv1.MachineOSBuild{ObjectMeta: metav1.ObjectMeta{Name: "w-2"}}
	SetBuildPhase(failed, PhaseFailed, ReasonPushFailed, "registry r refused the credentials", metav1.Now())
	succeeded := &mosbv1.MachineOSBuild{ObjectMeta: metav1.ObjectMeta{Name: "w-3"}, Status: mosbv1.MachineOSBuildStatus{DigestedImagePushspec: "r/x@sha256:1"}}
	SetBuildPhase(succeeded, PhaseSucceeded, ReasonBuilt, "", metav1.Now())

	cases := []struct {
		name                      string
		failure                   *Failure
		build                     *mosbv1.MachineOSBuild
		imageReady                bool
		ready, building, degraded metav1.ConditionStatus
		reason                    string
	}{
		{"invalid input", &Failure{Reason: ReasonSecretNotFound, Message: "secret x not found"}, nil, false, "False", "False", "True", ReasonSecretNotFound},
		{"no build yet", nil, nil, false, "False", "False", "False", ReasonNoBuild},
		{"building", nil, building, false, "False", "True", "False", ReasonBuilding},
		{"failed", nil, failed, false, "False", "False", "True", ReasonPushFailed},
		{"succeeded, status written", nil, succeeded, true, "True", "False", "False", ReasonBuilt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Summarise(tc.failure, tc.build, tc.imageReady)
			if c.Ready.Status != tc.ready || c.Building.Status != tc.building || c.Degraded.Status != tc.degraded {
				t.Errorf("Ready/Building/Degraded = %s/%s/%s, want %s/%s/%s", c.Ready.Status, c.Building.Status, c.Degraded.Status, tc.ready, tc.building, tc.degraded)
			}
			if c.Ready.Reason != tc.reason {
				t.Errorf("Ready reason %s, want %s", c.Ready.Reason, tc.reason)
			}
			for _, cond := range []metav1.Condition{c.Ready, c.Building, c.Degraded} {
				if cond.Reason == "" {
					t.Errorf("%s has no reason", cond.Type)
				}
			}
			if tc.build != nil && tc.degraded == "True" && !strings.Contains(c.Degraded.Message, tc.build.Name) {
				t.Errorf("Degraded message does not name the build: %s", c.Degraded.Message)
			}
		})
	}
}

func TestCurrentBuildIsTheNewestOfTheIdentity(t *testing.T) {
	at := func(s int64) metav1.Time { return metav1.NewTime(time.Unix(s, 0)) }
	builds := []mosbv1.MachineOSBuild{
		{ObjectMeta: metav1.ObjectMeta{Name: "w-aaa", CreationTimestamp: at(10)}, Spec: mosbv1.MachineOSBuildSpec{BuildIdentity: "A"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "w-aaa-r1", CreationTimestamp: at(20)}, Spec: mosbv1.MachineOSBuildSpec{BuildIdentity: "A"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "w-bbb", CreationTimestamp: at(30)}, Spec: mosbv1.MachineOSBuildSpec{BuildIdentity: "B"}},
	}
	if got := currentBuild(builds, "A"); got == nil || got.Name != "w-aaa-r1" {
		t.Errorf("current of A = %v, want the rebuild w-aaa-r1", got)
	}
	if got := currentBuild(builds, "C"); got != nil {
		t.Errorf("current of an identity never built = %s", got.Name)
	}
}

// Two rebuilds of one identity requested within a second share a creationTimestamp, and their
// names (the request's hash) say nothing of their order: the controller's own stamp does.
func TestCurrentBuildOfRebuildsInOneSecond(t *testing.T) {
	second := metav1.NewTime(time.Unix(100, 0))
	build := func(name, created string) mosbv1.MachineOSBuild {
		return mosbv1.MachineOSBuild{
			ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: second, Annotations: map[string]string{AnnotationCreated: created}},
			Spec:       mosbv1.MachineOSBuildSpec{BuildIdentity: "A"},
		}
	}
	builds := []mosbv1.MachineOSBuild{
		build("w-aaa", "1970-01-01T00:01:40.1Z"),
		build("w-aaa-rca9781", "1970-01-01T00:01:40.25Z"),
		build("w-aaa-r3e23e8", "1970-01-01T00:01:40.7Z"),
	}
	if got := currentBuild(builds, "A"); got == nil || got.Name != "w-aaa-r3e23e8" {
		t.Errorf("current of A = %v, want the last created, w-aaa-r3e23e8", got)
	}
	// Without the stamp (builds of an older mosb) the order falls back to the name.
	delete(builds[2].Annotations, AnnotationCreated)
	if got := currentBuild(builds, "A"); got == nil || got.Name != "w-aaa-rca9781" {
		t.Errorf("current of A without stamps = %v, want w-aaa-rca9781 (by name)", got)
	}
}
