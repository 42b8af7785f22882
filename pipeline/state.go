package pipeline

import (
	"fmt"

	"github.com/mosb-dev/mosb/builder/buildpod"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
)

// Reasons on MachineOSBuild conditions and on the MachineOSConfig summary.
const (
	ReasonPrepared     = "Prepared"
	ReasonPodsCreated  = "PodsCreated"
	ReasonBuilt        = "Built"
	ReasonBuildFailed  = buildpod.ReasonBuildFailed
	ReasonPushFailed   = buildpod.ReasonPushFailed
	ReasonSuperseded   = "Superseded"
	ReasonBuilding     = "Building"
	ReasonImageMissing = "ImageMissing"
	// ReasonRegistryUnresponsive: a registry did not answer one of the controller's calls within
	// --registry-timeout or the registry bounds, or a build pod's; ReasonRegistryError: it answered
	// with an error that may pass.
	ReasonRegistryUnresponsive = buildpod.ReasonRegistryUnresponsive
	ReasonRegistryError        = "RegistryError"
	// ReasonBuildStorageFull: the build ran out of storage (its pod's volume, or the node's disk).
	ReasonBuildStorageFull = buildpod.ReasonBuildStorageFull
	// ReasonRetrying: an attempt failed in a way that may pass, and another starts after a backoff.
	ReasonRetrying   = "Retrying"
	ReasonNoBuild    = "NoBuild"
	ReasonAsExpected = "AsExpected"
)

// BuildPhase is where a MachineOSBuild is in its life.
type BuildPhase string

// The phases, derived from the conditions so there is one source of truth.
const (
	PhasePending     BuildPhase = "Pending"
	PhaseBuilding    BuildPhase = "Building"
	PhaseSucceeded   BuildPhase = "Succeeded"
	PhaseFailed      BuildPhase = "Failed"
	PhaseInterrupted BuildPhase = "Interrupted"
)

// Phase reads a MachineOSBuild's phase from its conditions.
func Phase(b *mosbv1.MachineOSBuild) BuildPhase {
	c := b.Status.Conditions
	switch {
	case meta.IsStatusConditionTrue(c, mosbv1.MachineOSBuildSucceeded):
		return PhaseSucceeded
	case meta.IsStatusConditionTrue(c, mosbv1.MachineOSBuildFailed):
		return PhaseFailed
	case meta.IsStatusConditionTrue(c, mosbv1.MachineOSBuildInterrupted):
		return PhaseInterrupted
	case meta.IsStatusConditionTrue(c, mosbv1.MachineOSBuildBuilding):
		return PhaseBuilding
	default:
		return PhasePending
	}
}

// Terminal says the build will not change any more.
func (p BuildPhase) Terminal() bool {
	return p == PhaseSucceeded || p == PhaseFailed || p == PhaseInterrupted
}

// SetBuildPhase sets the five conditions of a MachineOSBuild consistently for a phase.
func SetBuildPhase(b *mosbv1.MachineOSBuild, phase BuildPhase, reason, message string, now metav1.Time) {
	set := func(t string, on bool, r, m string) {
		s := metav1.ConditionFalse
		if on {
			s = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&b.Status.Conditions, metav1.Condition{
			Type: t, Status: s, Reason: r, Message: m, ObservedGeneration: b.Generation, LastTransitionTime: now,
		})
	}
	set(mosbv1.MachineOSBuildPrepared, true, ReasonPrepared, "build request and pods prepared")
	set(mosbv1.MachineOSBuildBuilding, phase == PhaseBuilding, reasonOr(phase == PhaseBuilding, reason, string(phase)), messageOr(phase == PhaseBuilding, message))
	set(mosbv1.MachineOSBuildSucceeded, phase == PhaseSucceeded, reasonOr(phase == PhaseSucceeded, reason, string(phase)), messageOr(phase == PhaseSucceeded, message))
	set(mosbv1.MachineOSBuildFailed, phase == PhaseFailed, reasonOr(phase == PhaseFailed, reason, string(phase)), messageOr(phase == PhaseFailed, message))
	set(mosbv1.MachineOSBuildInterrupted, phase == PhaseInterrupted, reasonOr(phase == PhaseInterrupted, reason, string(phase)), messageOr(phase == PhaseInterrupted, message))
	if phase.Terminal() && b.Status.BuildEnd == nil {
		b.Status.BuildEnd = &now
	}
}

func reasonOr(mine bool, reason, phase string) string {
	if mine {
		return reason
	}
	return "Build" + phase
}

func messageOr(mine bool, message string) string {
	if mine {
		return message
	}
	return ""
}

// ConfigConditions are a MachineOSConfig's Ready, Building and Degraded for its current state.
type ConfigConditions struct {
	Ready, Building, Degraded metav1.Condition
}

// Summarise decides a MachineOSConfig's conditions. failure is invalid input (or nil); build is
// the MachineOSBuild of the current inputs (or nil when none exists yet); imageReady says the
// status points at that build's image.
func Summarise(failure *Failure, build *mosbv1.MachineOSBuild, imageReady bool) ConfigConditions {
	cond := func(t string, on bool, reason, msg string) metav1.Condition {
		s := metav1.ConditionFalse
		if on {
			s = metav1.ConditionTrue
		}
		return metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg}
	}
	if failure != nil {
		return ConfigConditions{
			Ready:    cond(mosbv1.MachineOSConfigReady, false, failure.Reason, failure.Message),
			Building: cond(mosbv1.MachineOSConfigBuilding, false, failure.Reason, "no build starts until the input is fixed"),
			Degraded: cond(mosbv1.MachineOSConfigDegraded, true, failure.Reason, failure.Message),
		}
	}
	if build == nil {
		return ConfigConditions{
			Ready:    cond(mosbv1.MachineOSConfigReady, false, ReasonNoBuild, "no build for the current inputs yet"),
			Building: cond(mosbv1.MachineOSConfigBuilding, false, ReasonNoBuild, ""),
			Degraded: cond(mosbv1.MachineOSConfigDegraded, false, ReasonAsExpected, ""),
		}
	}
	name := "MachineOSBuild " + build.Name
	switch Phase(build) {
	case PhaseSucceeded:
		if imageReady {
			return ConfigConditions{
				Ready:    cond(mosbv1.MachineOSConfigReady, true, ReasonBuilt, "the image of the current generation is "+build.Status.DigestedImagePushspec+servesNote(build)),
				Building: cond(mosbv1.MachineOSConfigBuilding, false, ReasonBuilt, ""),
				Degraded: cond(mosbv1.MachineOSConfigDegraded, false, ReasonAsExpected, ""),
			}
		}
		return ConfigConditions{
			Ready:    cond(mosbv1.MachineOSConfigReady, false, ReasonBuilt, name+" succeeded; updating status"),
			Building: cond(mosbv1.MachineOSConfigBuilding, false, ReasonBuilt, ""),
			Degraded: cond(mosbv1.MachineOSConfigDegraded, false, ReasonAsExpected, ""),
		}
	case PhaseFailed, PhaseInterrupted:
		c := meta.FindStatusCondition(build.Status.Conditions, string(Phase(build)))
		reason, msg := ReasonBuildFailed, name+" failed"
		if c != nil {
			reason, msg = c.Reason, name+": "+c.Message
		}
		return ConfigConditions{
			Ready:    cond(mosbv1.MachineOSConfigReady, false, reason, msg),
			Building: cond(mosbv1.MachineOSConfigBuilding, false, reason, ""),
			Degraded: cond(mosbv1.MachineOSConfigDegraded, true, reason, msg),
		}
	default:
		return ConfigConditions{
			Ready:    cond(mosbv1.MachineOSConfigReady, false, ReasonBuilding, name+" is building the image of the current generation"),
			Building: cond(mosbv1.MachineOSConfigBuilding, true, ReasonBuilding, name+" is building"),
			Degraded: cond(mosbv1.MachineOSConfigDegraded, false, ReasonAsExpected, ""),
		}
	}
}

// servesNote tells, after the image, that it serves a rendered MachineConfig other than the one
// it was built from (AnnotationServes).
func servesNote(b *mosbv1.MachineOSBuild) string {
	serves := b.Annotations[AnnotationServes]
	if serves == "" || serves == b.Spec.RenderedMachineConfig {
		return ""
	}
	return fmt.Sprintf("; it serves rendered MachineConfig %s (built from %s: what changed since, the node applies itself)", serves, b.Spec.RenderedMachineConfig)
}

// SummariseHeld is the MachineOSConfig's conditions while its pool holds a new build back
// (PoolHold): not Ready for its current inputs, not building, and not Degraded itself.
func SummariseHeld(why string) ConfigConditions {
	return ConfigConditions{
		Ready:    metav1.Condition{Type: mosbv1.MachineOSConfigReady, Status: metav1.ConditionFalse, Reason: ReasonPoolDegraded, Message: why},
		Building: metav1.Condition{Type: mosbv1.MachineOSConfigBuilding, Status: metav1.ConditionFalse, Reason: ReasonPoolDegraded, Message: why},
		Degraded: metav1.Condition{Type: mosbv1.MachineOSConfigDegraded, Status: metav1.ConditionFalse, Reason: ReasonPoolDegraded, Message: why},
	}
}
