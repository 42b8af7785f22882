package pipeline

import (
	"fmt"
	"strings"
	"time"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/builder/buildpod"
)

// AttemptStep is what the controller does with a build's current attempt.
type AttemptStep int

const (
	// AttemptContinue: the attempt is building (or waits for a node); look again after Again,
	// or when something changes if Again is 0.
	AttemptContinue AttemptStep = iota
	// AttemptRetry: the attempt failed in a way another attempt may not; its pods go and the next
	// attempt starts after Again.
	AttemptRetry
	// AttemptFail: the build failed (a failure no retry fixes, or the retries are used up).
	AttemptFail
	// AttemptPublish: every architecture is built; push the index (several architectures) and
	// succeed.
	AttemptPublish
)

func (s AttemptStep) String() string {
	return [...]string{"continue", "retry", "fail", "publish"}[s]
}

// AttemptState is what one look at an attempt's pods saw, one Outcome per planned architecture
// (the zero Outcome for a pod that was just made or waits for a node).
type AttemptState struct {
	// Attempt is the current attempt, from 1; MaxRetries is how many attempts may follow the first.
	Attempt    int32
	MaxRetries int
	Arches     []string
	Outcomes   []Outcome
	// Waiting are the reasons pods wait for a node, for the Building condition.
	Waiting   []string
	Namespace string
}

// AttemptDecision is the step to take and what the MachineOSBuild says about it.
type AttemptDecision struct {
	Step    AttemptStep
	Phase   BuildPhase
	Reason  string
	Message string
	// Again is when to look again (Continue, Retry); 0: when something changes.
	Again time.Duration
	// Failure is the outcome that decided a Retry or a Fail.
	Failure *Outcome
	// Results are the finished architectures' results (all of them for Publish).
	Results map[string]buildpod.Result
}

// DecideAttempt decides what an attempt's pod outcomes mean for the build. Pure: the controller
// gathers the outcomes and applies the decision. A failure no retry fixes wins over one a retry
// may fix; the first of each kind, in architecture order, is the one reported.
func DecideAttempt(s AttemptState) AttemptDecision {
	d := AttemptDecision{Step: AttemptContinue, Phase: PhaseBuilding, Reason: ReasonPodsCreated, Results: map[string]buildpod.Result{},
		Message: fmt.Sprintf("attempt %d: building %v in namespace %s", s.Attempt, s.Arches, s.Namespace)}
	if len(s.Waiting) > 0 {
		d.Message += "; " + strings.Join(s.Waiting, "; ")
	}
	for i := range s.Outcomes {
		out := s.Outcomes[i]
		switch {
		case out.Failed:
			if d.Failure == nil || (d.Failure.Retryable && !out.Retryable) {
				d.Failure = &out
			}
		case out.Done:
			d.Results[s.Arches[i]] = out.Result
		case out.Recheck > 0 && (d.Again == 0 || out.Recheck < d.Again):
			d.Again = out.Recheck
		}
	}
	switch f := d.Failure; {
	case f != nil && f.Retryable && int(s.Attempt) <= s.MaxRetries:
		d.Step, d.Again = AttemptRetry, retryBackoff(int(s.Attempt)+1)
		d.Reason = ReasonRetrying
		d.Message = fmt.Sprintf("attempt %d failed (%s: %s); attempt %d of %d starts in %s",
			s.Attempt, f.Reason, f.Message, s.Attempt+1, s.MaxRetries+1, d.Again)
	case f != nil:
		d.Step, d.Phase, d.Reason, d.Message, d.Again = AttemptFail, PhaseFailed, f.Reason, f.Message, 0
		if f.Retryable {
			d.Message = fmt.Sprintf("%s (gave up after %d attempts)", f.Message, s.Attempt)
		}
	case len(d.Results) == len(s.Arches) && len(s.Arches) > 0:
		d.Step, d.Again = AttemptPublish, 0
	}
	return d
}

// NeedsImageCheck says whether the image of the current, succeeded build is to be looked up in
// the registry before the status names it: when the status does not name it yet, or names it for
// an older generation (inputs that went back to ones built before). An image the status already
// names for this generation is not asked for at every reconcile.
func NeedsImageCheck(m *mosbv1.MachineOSConfig, pullspec string) bool {
	return string(m.Status.CurrentImagePullspec) != pullspec || m.Status.ObservedGeneration != m.Generation
}

// ImageStep is what the registry's answer about a succeeded build's image means.
type ImageStep int

const (
	// ImageReport: the image is there; the status names it.
	ImageReport ImageStep = iota
	// ImageRebuild: the image was deleted from the registry; its build goes and the same inputs
	// build again (ImageMissing).
	ImageRebuild
	// ImageWait: the registry did not answer, or answered with an error: neither build again nor
	// fail; say why and look again later.
	ImageWait
)

// DecideImage reads the answer of the image check.
func DecideImage(exists bool, err error) ImageStep {
	switch {
	case err != nil:
		return ImageWait
	case !exists:
		return ImageRebuild
	}
	return ImageReport
}
