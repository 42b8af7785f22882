package pipeline

import (
	"fmt"
	"sort"
	"strings"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/registry"
)

// Image pruning: when MachineOSBuilds go (history limits, their MachineOSConfig deleted), the
// images they pushed are deleted from the registry with the push credentials, as the Machine
// Config Operator does, unless something still refers to them. OS images are GBs each: without
// this a pool rebuilt daily fills a registry in weeks.

// FinalizerPruneImages on a MachineOSConfig holds its deletion until the images of its builds
// are pruned (or pruning has said why it could not).
const FinalizerPruneImages = "mosb.dev/prune-images"

// Events about pruning, on the MachineOSConfig.
const (
	// ReasonImagesPruned: images of deleted builds were deleted from the registry.
	ReasonImagesPruned = "ImagesPruned"
	// ReasonImagePruneRefused: the registry refuses deletion (not enabled, or not allowed to the
	// push credentials); the images stay, the builds still go.
	ReasonImagePruneRefused = "ImagePruneRefused"
	// ReasonImagePruneFailed: an image could not be deleted, or what refers to images could not
	// be read; the images stay, the builds still go.
	ReasonImagePruneFailed = "ImagePruneFailed"
)

// Node annotations of the Machine Config Operator's image mode: the image a node runs and the
// one it is moving to. Both are in use.
const (
	AnnotationNodeCurrentImage = "machineconfiguration.openshift.io/currentImage"
	AnnotationNodeDesiredImage = "machineconfiguration.openshift.io/desiredImage"
)

// KeptImage is an image something still refers to.
type KeptImage struct {
	// Pullspec is by digest.
	Pullspec string
	// By says what refers to it: "MachineOSConfig worker", "node n1 (currentImage)"…
	By string
}

// SparedImage is an image of a build that goes and stays in the registry, and why.
type SparedImage struct {
	Pullspec string
	By       string
}

// ImagePrunePlan is what to delete from the registry: an index before its images.
type ImagePrunePlan struct {
	Delete []string
	Spared []SparedImage
}

// BuildImages are the images a MachineOSBuild pushed, by digest: its result (an index when
// several architectures were built) first, then each architecture's image, without repeats.
// A build that failed or was superseded may have pushed architecture images without an index.
func BuildImages(b *mosbv1.MachineOSBuild) []string {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if p != "" && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	add(b.Status.DigestedImagePushspec)
	for _, a := range b.Status.Architectures {
		add(a.DigestedImagePushspec)
	}
	return out
}

// RecordedIndexChildren are the images of the indexes MachineOSBuilds pushed, by the index's digest, as
// their statuses record them.
func RecordedIndexChildren(builds []mosbv1.MachineOSBuild) map[string][]string {
	children := map[string][]string{}
	for i := range builds {
		imgs := BuildImages(&builds[i])
		if len(builds[i].Status.Architectures) < 2 || len(imgs) < 2 {
			continue
		}
		idx := digestOf(imgs[0])
		for _, c := range imgs[1:] {
			children[idx] = append(children[idx], digestOf(c))
		}
	}
	return children
}

// PlanImagePrune decides which images of the doomed builds go. An image stays when anything
// kept refers to it, or to an index holding it (children: index digest → image digests). Images
// are compared by digest alone, whatever the repository: the same content in two places is
// never deleted on a guess.
func PlanImagePrune(doomed []mosbv1.MachineOSBuild, kept []KeptImage, children map[string][]string) ImagePrunePlan {
	keptBy := map[string]string{}
	for _, k := range kept {
		if d := digestOf(k.Pullspec); d != "" {
			if _, ok := keptBy[d]; !ok {
				keptBy[d] = k.By
			}
		}
	}
	// Then what the kept indexes hold, where nothing names it directly.
	for _, k := range kept {
		for _, c := range children[digestOf(k.Pullspec)] {
			if _, ok := keptBy[c]; !ok {
				keptBy[c] = k.By + ", in its index"
			}
		}
	}
	var plan ImagePrunePlan
	planned := map[string]bool{}
	for i := range doomed {
		if IsPreBuilt(&doomed[i]) {
			continue // not pushed by mosb: never deleted by it
		}
		for _, img := range BuildImages(&doomed[i]) {
			d := digestOf(img)
			if d == "" || planned[img] {
				continue
			}
			planned[img] = true
			if by, ok := keptBy[d]; ok {
				plan.Spared = append(plan.Spared, SparedImage{Pullspec: img, By: by})
				continue
			}
			plan.Delete = append(plan.Delete, img)
		}
	}
	return plan
}

// UnknownIndexes are the kept images, in the repositories of the images to delete, whose
// contents the builds' statuses do not tell: one may be an index holding an image to delete, so
// the registry must be asked (registry.Client.IndexChildren) before the plan is final.
func UnknownIndexes(doomed []mosbv1.MachineOSBuild, kept []KeptImage, builds []mosbv1.MachineOSBuild) []string {
	known := map[string]bool{}
	for i := range builds {
		for _, img := range BuildImages(&builds[i]) {
			known[digestOf(img)] = true
		}
	}
	repos := map[string]bool{}
	for i := range doomed {
		for _, img := range BuildImages(&doomed[i]) {
			if ref, err := registry.ParseDigestPullspec(img); err == nil {
				repos[ref.Name()] = true
			}
		}
	}
	var out []string
	seen := map[string]bool{}
	for _, k := range kept {
		ref, err := registry.ParseDigestPullspec(k.Pullspec)
		if err != nil || !repos[ref.Name()] || known[ref.Digest] || seen[k.Pullspec] {
			continue
		}
		seen[k.Pullspec] = true
		out = append(out, k.Pullspec)
	}
	sort.Strings(out)
	return out
}

// SummarisePrune is the message of the ImagesPruned Event.
func SummarisePrune(builds []string, deleted []string, spared []SparedImage) string {
	var b strings.Builder
	fmt.Fprintf(&b, "deleted %d image(s) of MachineOSBuild(s) %s from the registry", len(deleted), strings.Join(builds, ", "))
	if len(spared) > 0 {
		parts := make([]string, 0, len(spared))
		for _, s := range spared {
			parts = append(parts, fmt.Sprintf("%s (used by %s)", s.Pullspec, s.By))
		}
		fmt.Fprintf(&b, "; kept %s", strings.Join(parts, ", "))
	}
	return b.String()
}

// digestOf is the digest of a digest pullspec, or "" when it is not one.
func digestOf(pullspec string) string {
	i := strings.LastIndex(pullspec, "@")
	if i < 0 {
		return ""
	}
	return pullspec[i+1:]
}
