package pipeline

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/builder/buildpod"
)

func TestDecideAttempt(t *testing.T) {
	done := func(arch string) Outcome {
		return Outcome{Done: true, Result: buildpod.Result{Arch: arch, Pullspec: "r.example.com/os/w@sha256:" + strings.Repeat("a", 64)}}
	}
	failed := func(reason string, retryable bool) Outcome {
		return Outcome{Done: true, Failed: true, Reason: reason, Retryable: retryable, Message: reason + " happened"}
	}
	running := Outcome{}
	pulling := func(left time.Duration) Outcome { return Outcome{Recheck: left} }
	two := []string{"amd64", "arm64"}
	for _, tc := range []struct {
		name    string
		state   AttemptState
		step    AttemptStep
		phase   BuildPhase
		reason  string
		again   time.Duration
		says    string
		results int
	}{
		{name: "pods running", state: AttemptState{Attempt: 1, Arches: two, Outcomes: []Outcome{running, running}, Namespace: "ns"},
			step: AttemptContinue, phase: PhaseBuilding, reason: ReasonPodsCreated, says: "attempt 1: building [amd64 arm64] in namespace ns"},
		{name: "a pod waits for a node", state: AttemptState{Attempt: 1, Arches: two, Outcomes: []Outcome{running, running}, Waiting: []string{"no arm64 node"}},
			step: AttemptContinue, phase: PhaseBuilding, reason: ReasonPodsCreated, says: "; no arm64 node"},
		{name: "one built, one running", state: AttemptState{Attempt: 1, Arches: two, Outcomes: []Outcome{done("amd64"), running}},
			step: AttemptContinue, phase: PhaseBuilding, reason: ReasonPodsCreated, results: 1},
		// The grace for the builder image ends without any change to the pod: look again then.
		{name: "builder image pulling, the earliest grace end", state: AttemptState{Attempt: 1, Arches: two, Outcomes: []Outcome{pulling(4 * time.Minute), pulling(time.Minute)}},
			step: AttemptContinue, phase: PhaseBuilding, reason: ReasonPodsCreated, again: time.Minute},
		{name: "every architecture built", state: AttemptState{Attempt: 2, Arches: two, Outcomes: []Outcome{done("amd64"), done("arm64")}},
			step: AttemptPublish, phase: PhaseBuilding, reason: ReasonPodsCreated, results: 2},
		{name: "nothing planned is never published", state: AttemptState{Attempt: 1}, step: AttemptContinue, phase: PhaseBuilding, reason: ReasonPodsCreated},
		{name: "transient failure, retries left", state: AttemptState{Attempt: 1, MaxRetries: 2, Arches: two, Outcomes: []Outcome{running, failed(ReasonPodEvicted, true)}},
			step: AttemptRetry, phase: PhaseBuilding, reason: "Retrying", again: 10 * time.Second,
			says: "attempt 1 failed (PodEvicted: PodEvicted happened); attempt 2 of 3 starts in 10s"},
		{name: "the backoff grows", state: AttemptState{Attempt: 2, MaxRetries: 2, Arches: two, Outcomes: []Outcome{failed(ReasonPodEvicted, true), running}},
			step: AttemptRetry, phase: PhaseBuilding, reason: "Retrying", again: 20 * time.Second, says: "attempt 3 of 3"},
		{name: "transient failure, retries used up", state: AttemptState{Attempt: 3, MaxRetries: 2, Arches: two, Outcomes: []Outcome{done("amd64"), failed(ReasonPodEvicted, true)}},
			step: AttemptFail, phase: PhaseFailed, reason: ReasonPodEvicted, says: "(gave up after 3 attempts)", results: 1},
		{name: "no retries at all", state: AttemptState{Attempt: 1, Arches: two, Outcomes: []Outcome{failed(ReasonInterrupted, true), running}},
			step: AttemptFail, phase: PhaseFailed, reason: ReasonInterrupted, says: "gave up after 1 attempts"},
		{name: "a failure no retry fixes", state: AttemptState{Attempt: 1, MaxRetries: 5, Arches: two, Outcomes: []Outcome{failed(buildpod.ReasonBuildFailed, false), running}},
			step: AttemptFail, phase: PhaseFailed, reason: buildpod.ReasonBuildFailed, says: "BuildFailed happened"},
		// A retry would meet the same Containerfile error again: the permanent failure decides,
		// whichever architecture reported it.
		{name: "permanent after transient", state: AttemptState{Attempt: 1, MaxRetries: 5, Arches: two, Outcomes: []Outcome{failed(ReasonPodEvicted, true), failed(buildpod.ReasonBuildFailed, false)}},
			step: AttemptFail, phase: PhaseFailed, reason: buildpod.ReasonBuildFailed},
		{name: "transient after permanent", state: AttemptState{Attempt: 1, MaxRetries: 5, Arches: two, Outcomes: []Outcome{failed(ReasonOutOfMemory, false), failed(ReasonPodEvicted, true)}},
			step: AttemptFail, phase: PhaseFailed, reason: ReasonOutOfMemory},
		{name: "two transient: the first reported", state: AttemptState{Attempt: 1, MaxRetries: 1, Arches: two, Outcomes: []Outcome{failed(ReasonInterrupted, true), failed(ReasonPodEvicted, true)}},
			step: AttemptRetry, phase: PhaseBuilding, reason: "Retrying", again: 10 * time.Second, says: "(Interrupted:"},
		{name: "built and failed: the failure wins", state: AttemptState{Attempt: 1, Arches: two, Outcomes: []Outcome{done("amd64"), failed(ReasonTimeout, false)}},
			step: AttemptFail, phase: PhaseFailed, reason: ReasonTimeout, results: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := DecideAttempt(tc.state)
			if d.Step != tc.step || d.Phase != tc.phase || d.Reason != tc.reason || d.Again != tc.again {
				t.Errorf("got %s/%s/%s again %s, want %s/%s/%s again %s (%s)", d.Step, d.Phase, d.Reason, d.Again, tc.step, tc.phase, tc.reason, tc.again, d.Message)
			}
			if !strings.Contains(d.Message, tc.says) {
				t.Errorf("message %q does not say %q", d.Message, tc.says)
			}
			if len(d.Results) != tc.results {
				t.Errorf("%d results, want %d", len(d.Results), tc.results)
			}
			if (d.Step == AttemptRetry || d.Step == AttemptFail) != (d.Failure != nil) {
				t.Errorf("step %s with failure %+v", d.Step, d.Failure)
			}
		})
	}
}

func TestDecideCurrent(t *testing.T) {
	build := func(name, identity string, phase BuildPhase, created string) mosbv1.MachineOSBuild {
		b := mosbv1.MachineOSBuild{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{AnnotationCreated: created}},
			Spec: mosbv1.MachineOSBuildSpec{BuildIdentity: identity}}
		SetBuildPhase(&b, phase, "Test", "test", metav1.NewTime(time.Unix(0, 0)))
		return b
	}
	const t1, t2, t3 = "2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z", "2026-01-01T00:00:03Z"
	for _, tc := range []struct {
		name       string
		builds     []mosbv1.MachineOSBuild
		identity   string
		rebuild    bool
		current    string
		superseded []string
	}{
		{name: "no builds", current: ""},
		{name: "the build of the inputs", builds: []mosbv1.MachineOSBuild{build("a", "A", PhaseSucceeded, t1)}, current: "a"},
		// New inputs: the running build of the old ones stops; finished builds stay as history.
		{name: "new inputs", builds: []mosbv1.MachineOSBuild{build("a", "A", PhaseSucceeded, t1), build("b", "B", PhaseBuilding, t2)},
			identity: "C", current: "", superseded: []string{"b"}},
		// Inputs back to ones built before: that build again (the controller checks its image).
		{name: "inputs reverted", builds: []mosbv1.MachineOSBuild{build("a", "A", PhaseSucceeded, t1), build("b", "B", PhaseBuilding, t2)},
			current: "a", superseded: []string{"b"}},
		// A rebuild of the same inputs: the newest build of the identity stands.
		{name: "rebuilt before", builds: []mosbv1.MachineOSBuild{build("a", "A", PhaseSucceeded, t1), build("a-r1", "A", PhasePending, t3), build("a-r0", "A", PhaseFailed, t2)},
			current: "a-r1"},
		{name: "a rebuild request sets the running build aside", builds: []mosbv1.MachineOSBuild{build("a", "A", PhaseBuilding, t1)}, rebuild: true,
			current: "", superseded: []string{"a"}},
		{name: "a rebuild request over a finished build", builds: []mosbv1.MachineOSBuild{build("a", "A", PhaseSucceeded, t1)}, rebuild: true, current: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			identity := tc.identity
			if identity == "" {
				identity = "A"
			}
			cur, sup := DecideCurrent(tc.builds, identity, tc.rebuild)
			got := ""
			if cur != nil {
				got = cur.Name
			}
			var names []string
			for _, b := range sup {
				names = append(names, b.Name)
			}
			if got != tc.current || strings.Join(names, ",") != strings.Join(tc.superseded, ",") {
				t.Errorf("current %q, superseded %v; want %q, %v", got, names, tc.current, tc.superseded)
			}
		})
	}
}

func TestImageCheck(t *testing.T) {
	const img = "r.example.com/os/w@sha256:" + "aa"
	at := func(gen, observed int64, named string) *mosbv1.MachineOSConfig {
		m := &mosbv1.MachineOSConfig{ObjectMeta: metav1.ObjectMeta{Generation: gen}}
		m.Status.ObservedGeneration, m.Status.CurrentImagePullspec = observed, mosbv1.ImageDigestFormat(named)
		return m
	}
	for _, tc := range []struct {
		name string
		m    *mosbv1.MachineOSConfig
		want bool
	}{
		{"status names it for this generation", at(3, 3, img), false},
		{"status names nothing yet", at(1, 0, ""), true},
		{"status names another image", at(2, 2, "r.example.com/os/w@sha256:bb"), true},
		// Inputs that went back to ones built before: the old image may be gone since.
		{"status names it for an older generation", at(4, 3, img), true},
	} {
		if got := NeedsImageCheck(tc.m, img); got != tc.want {
			t.Errorf("%s: NeedsImageCheck = %v, want %v", tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct {
		exists bool
		err    error
		want   ImageStep
	}{
		{true, nil, ImageReport},
		{false, nil, ImageRebuild},
		// A registry that does not answer says nothing about the image: never rebuild on it.
		{false, context.DeadlineExceeded, ImageWait},
		{true, errors.New("HTTP 500"), ImageWait},
	} {
		if got := DecideImage(tc.exists, tc.err); got != tc.want {
			t.Errorf("DecideImage(%v, %v) = %d, want %d", tc.exists, tc.err, got, tc.want)
		}
	}
}
