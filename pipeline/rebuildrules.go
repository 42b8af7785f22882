package pipeline

import (
	"fmt"
	"reflect"

	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
)

// Rebuild rules. A new rendered MachineConfig changes the OS image only through what the node
// cannot apply to a running image itself: the OS image (osImageURL), the kernel type, extensions
// and kernel arguments (the Machine Config Operator's RequiresRebuild). A change to anything else
// (files, units, SSH keys) keeps the image the pool has: the node applies it, with no new image
// and no reboot. The image's /etc/machine-config-daemon/currentconfig is then the MachineConfig it
// was built from; the MachineOSBuild says which rendered MachineConfig the image now serves
// (AnnotationServes), and the MachineOSConfig's Ready condition says both.
//
// For image-mode clusters, where nothing writes files on the node, every change must rebuild:
// the controller's --rebuild-on-any-machineconfig-change, or the MachineOSConfig's annotation
// AnnotationRebuildOnAnyChange.

// AnnotationRebuildOnAnyChange on a MachineOSConfig: "true" builds a new image for every new
// rendered MachineConfig; "false" keeps the image while only what the node applies changes, even
// under --rebuild-on-any-machineconfig-change.
const AnnotationRebuildOnAnyChange = "mosb.dev/rebuild-on-any-machineconfig-change"

// AnnotationServes on a succeeded MachineOSBuild is the rendered MachineConfig its image serves
// when that is not the one it was built from (spec.renderedMachineConfig).
const AnnotationServes = "mosb.dev/serves-machineconfig"

// ReasonImageKept is the Event when a new rendered MachineConfig keeps the pool's image.
const ReasonImageKept = "ImageKept"

// RequiresRebuild says whether going from the rendered MachineConfig old to new changes what the
// OS image must hold, and which field says so ("" when nothing does).
func RequiresRebuild(old, new *mcfgv1.MachineConfig) (bool, string) {
	switch {
	case old.Spec.OSImageURL != new.Spec.OSImageURL:
		return true, "osImageURL"
	case old.Spec.KernelType != new.Spec.KernelType:
		return true, "kernelType"
	case !reflect.DeepEqual(old.Spec.Extensions, new.Spec.Extensions):
		return true, "extensions"
	case !reflect.DeepEqual(old.Spec.KernelArguments, new.Spec.KernelArguments):
		return true, "kernelArguments"
	}
	return false, ""
}

// RebuildOnAnyChange is the MachineOSConfig's rule: its annotation, else the controller's
// default. A value other than "true" or "false" is refused.
func RebuildOnAnyChange(m *mosbv1.MachineOSConfig, controllerDefault bool) (bool, *Failure) {
	v, set := m.Annotations[AnnotationRebuildOnAnyChange]
	switch {
	case !set:
		return controllerDefault, nil
	case v == "true":
		return true, nil
	case v == "false":
		return false, nil
	}
	return false, fail(ReasonInvalidMachineOSConfig, nil, "MachineOSConfig %s: annotation %s must be \"true\" or \"false\"", m.Name, AnnotationRebuildOnAnyChange)
}

// ServedBuild is the succeeded MachineOSBuild whose image the MachineOSConfig's status names (nil
// when none does): the image the pool has.
func ServedBuild(m *mosbv1.MachineOSConfig, builds []mosbv1.MachineOSBuild) *mosbv1.MachineOSBuild {
	current := string(m.Status.CurrentImagePullspec)
	if current == "" {
		return nil
	}
	for i := range builds {
		if Phase(&builds[i]) == PhaseSucceeded && builds[i].Status.DigestedImagePushspec == current {
			return &builds[i]
		}
	}
	return nil
}

// KeepDecision is whether a new rendered MachineConfig keeps the pool's image.
type KeepDecision struct {
	// Keep: no build; the served build's image serves the new rendered MachineConfig.
	Keep bool
	// Why says so in a sentence for the log and the Event (empty when the question did not arise).
	Why string
}

// DecideKeep is the rebuild rule for a MachineOSConfig whose current inputs have no build: served
// is the build whose image the pool has, built from the rendered MachineConfig builtFrom (nil
// when it no longer exists), and desired the pool's rendered MachineConfig now. The image is kept
// when only desired changed, and not in what the image must hold; sameOtherwise says whether the
// inputs other than the rendered MachineConfig are still those served was built from (the plan
// of today's inputs with builtFrom in place of desired has served's identity).
func DecideKeep(served *mosbv1.MachineOSBuild, builtFrom, desired *mcfgv1.MachineConfig, anyChange, sameOtherwise bool) KeepDecision {
	if served == nil || desired == nil || served.Spec.RenderedMachineConfig == "" || served.Spec.RenderedMachineConfig == desired.Name {
		return KeepDecision{}
	}
	from := served.Spec.RenderedMachineConfig
	switch {
	case anyChange:
		return KeepDecision{Why: fmt.Sprintf("rendered MachineConfig %s replaces %s: every change builds (%s)", desired.Name, from, AnnotationRebuildOnAnyChange)}
	case builtFrom == nil:
		return KeepDecision{Why: fmt.Sprintf("rendered MachineConfig %s replaces %s, which no longer exists to compare with: building", desired.Name, from)}
	}
	if rebuild, field := RequiresRebuild(builtFrom, desired); rebuild {
		return KeepDecision{Why: fmt.Sprintf("rendered MachineConfig %s changes %s from %s: the image must change", desired.Name, field, from)}
	}
	if !sameOtherwise {
		return KeepDecision{Why: fmt.Sprintf("rendered MachineConfig %s changes nothing the image holds, but other inputs changed since %s: building", desired.Name, served.Name)}
	}
	return KeepDecision{Keep: true, Why: fmt.Sprintf("rendered MachineConfig %s differs from %s, which the image %s was built from, only in what the node applies itself (files, units, SSH keys): no new image", desired.Name, from, served.Status.DigestedImagePushspec)}
}
