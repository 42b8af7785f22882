package pipeline

import (
	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/registry"
)

// An administrator can adopt an image built elsewhere, as with the Machine Config Operator: the
// annotation AnnotationPreBuiltImage on a MachineOSConfig names it by digest; when the current
// inputs have no build, the controller records a MachineOSBuild that succeeded with that image
// (labelled LabelPreBuiltImage, Event PreBuiltImageSeeded) and runs none; the status then names
// the image, and the annotation goes. Later changes build as usual. mosb never deletes a pre-built
// image from the registry (it did not push it) and does not check it is there (the push
// credentials may not reach it).

// AnnotationPreBuiltImage on a MachineOSConfig names, by digest, an image to adopt for its current
// inputs instead of building one.
const AnnotationPreBuiltImage = "machineconfiguration.openshift.io/pre-built-image"

// LabelPreBuiltImage marks a MachineOSBuild recorded for a pre-built image.
const LabelPreBuiltImage = "machineconfiguration.openshift.io/pre-built-image"

// ReasonPreBuiltImageSeeded: the MachineOSConfig adopted the image of its pre-built-image annotation.
const ReasonPreBuiltImageSeeded = "PreBuiltImageSeeded"

// IsPreBuilt says whether the build was recorded for a pre-built image (nothing of mosb's built or
// pushed it).
func IsPreBuilt(b *mosbv1.MachineOSBuild) bool { return b.Labels[LabelPreBuiltImage] == "true" }

// PreBuiltStep is what a MachineOSConfig's pre-built-image annotation asks now.
type PreBuiltStep int

const (
	// PreBuiltNone: no annotation.
	PreBuiltNone PreBuiltStep = iota
	// PreBuiltSeed: record a succeeded build of the current inputs with the image (or finish
	// recording it).
	PreBuiltSeed
	// PreBuiltDone: the current inputs have a build and the status an image: the annotation goes.
	PreBuiltDone
	// PreBuiltWait: the seeded build has not reached the status yet.
	PreBuiltWait
	// PreBuiltIgnored: the current inputs have a build already (of mosb's, or adopted with
	// another image): the annotation goes, unused (ReasonPreBuiltImageIgnored).
	PreBuiltIgnored
)

// ReasonPreBuiltImageIgnored: the pre-built-image annotation came when the current inputs had a
// build already; it is removed unused.
const ReasonPreBuiltImageIgnored = "PreBuiltImageIgnored"

// DecidePreBuilt reads the annotation: the image (by digest) and the step, or a Failure when it
// does not name an image by digest.
func DecidePreBuilt(m *mosbv1.MachineOSConfig, builds []mosbv1.MachineOSBuild, identity string) (string, PreBuiltStep, *Failure) {
	image, ok := m.Annotations[AnnotationPreBuiltImage]
	if !ok {
		return "", PreBuiltNone, nil
	}
	ref, err := registry.ParsePullspec(image)
	if err != nil || !ref.IsDigest() {
		return "", PreBuiltNone, fail(ReasonInvalidMachineOSConfig, err, "MachineOSConfig %s: annotation %s must name an image by digest (host/repository@sha256:…), as status.currentImagePullspec would; fix or remove it", m.Name, AnnotationPreBuiltImage)
	}
	current := currentBuild(builds, identity)
	switch {
	case current == nil:
		return image, PreBuiltSeed, nil
	case !IsPreBuilt(current), current.Status.DigestedImagePushspec != "" && current.Status.DigestedImagePushspec != image:
		return image, PreBuiltIgnored, nil
	case Phase(current) != PhaseSucceeded:
		// Recorded, but its status write failed: write it again (never build it).
		return image, PreBuiltSeed, nil
	case string(m.Status.CurrentImagePullspec) == current.Status.DigestedImagePushspec:
		return image, PreBuiltDone, nil
	}
	return image, PreBuiltWait, nil
}
