package pipeline

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Build pod resources: the controller's defaults (--build-requests, --build-limits), overridden
// key by key by a MachineOSConfig's annotations. They do not change the image, so they are not
// part of the build identity: changing them starts no build, and applies to the pods made after
// the change (a retry, the next build).
const (
	AnnotationBuildRequests = "mosb.dev/build-requests"
	AnnotationBuildLimits   = "mosb.dev/build-limits"

	// DefaultBuildRequests: buildah's peak RSS while building on a 1.5 GB OS image is a few
	// hundred MiB; a RUN step that installs packages (dnf and its metadata) takes more.
	DefaultBuildRequests = "cpu=500m,memory=1Gi"
	// DefaultBuildLimits bounds memory only: a runaway build is stopped (OutOfMemory) before it
	// starves the node; without a CPU limit a build uses whatever CPU is idle.
	DefaultBuildLimits = "memory=4Gi"
)

// Sizing ephemeral storage from the base image, when neither the controller's flags nor the
// MachineOSConfig set it. The build pod's emptyDir holds the base image unpacked (its layers
// arrive compressed, and OS images compress about 2.5–3×), the layers the build adds and, while
// a layer is unpacked, its compressed blob.
const (
	// UncompressedRatio estimates the unpacked size of the base from its compressed layers.
	UncompressedRatio = 3
	// StorageHeadroom is added to the estimate for what the build adds: its layers, HOME, TMPDIR.
	StorageHeadroom = 1 << 30
	// StorageLimitFactor: the limit is this many times the request, room for blobs held while
	// they are unpacked and for builds that add more than the headroom.
	StorageLimitFactor = 2
	// FallbackStorageRequest is the request when the base image's size cannot be read.
	FallbackStorageRequest = 10 << 30
	// maxSizedBase caps the base size that is sized from: nothing real comes near it, and the
	// arithmetic stays far from overflowing.
	maxSizedBase = 1 << 40
)

const gib = 1 << 30

// buildResourceNames are the resources a build's requests and limits may name.
var buildResourceNames = []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage}

const resourceSyntax = "cpu=…,memory=…,ephemeral-storage=… with Kubernetes quantities (e.g. cpu=500m,memory=2Gi,ephemeral-storage=20Gi)"

// BuildResources are the controller's default requests and limits for build pods.
type BuildResources struct {
	Requests, Limits corev1.ResourceList
}

// ParseResourceList reads "cpu=500m,memory=1Gi,ephemeral-storage=10Gi": each of cpu, memory and
// ephemeral-storage at most once, with a positive quantity. Empty is no resources.
func ParseResourceList(s string) (corev1.ResourceList, error) {
	out := corev1.ResourceList{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for entry := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(entry, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, fmt.Errorf("entry %q is not name=quantity", strings.TrimSpace(entry))
		}
		res := corev1.ResourceName(k)
		if !slices.Contains(buildResourceNames, res) {
			return nil, fmt.Errorf("entry %q: %q is not a resource a build pod can be given (cpu, memory, ephemeral-storage)", strings.TrimSpace(entry), k)
		}
		if _, dup := out[res]; dup {
			return nil, fmt.Errorf("entry %q: %s is given twice", strings.TrimSpace(entry), k)
		}
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return nil, fmt.Errorf("entry %q: %q is not a quantity (e.g. 500m, 2, 512Mi, 4Gi)", strings.TrimSpace(entry), v)
		}
		if q.Sign() <= 0 {
			return nil, fmt.Errorf("entry %q: the quantity must be positive", strings.TrimSpace(entry))
		}
		out[res] = q
	}
	return out, nil
}

// ParseBuildResources reads the controller's flags. The error names the flag and the fix.
func ParseBuildResources(requests, limits string) (BuildResources, error) {
	var d BuildResources
	var err error
	if d.Requests, err = ParseResourceList(requests); err != nil {
		return BuildResources{}, fmt.Errorf("--build-requests=%q: %v; write %s", requests, err, resourceSyntax)
	}
	if d.Limits, err = ParseResourceList(limits); err != nil {
		return BuildResources{}, fmt.Errorf("--build-limits=%q: %v; write %s", limits, err, resourceSyntax)
	}
	for _, res := range buildResourceNames {
		req, hasReq := d.Requests[res]
		lim, hasLim := d.Limits[res]
		if hasReq && hasLim && req.Cmp(lim) > 0 {
			return BuildResources{}, fmt.Errorf("--build-requests %s=%s is above --build-limits %s=%s; a request must not exceed its limit", res, req.String(), res, lim.String())
		}
	}
	return d, nil
}

// ResolveBuildResources is what a MachineOSConfig's build pods get: the defaults, with each
// resource its annotations name replaced. An annotation that cannot be read, or a request above
// its limit, is a Failure (InvalidBuildResources) naming the annotation, the entry and the fix.
func ResolveBuildResources(obj string, defaults BuildResources, annotations map[string]string) (corev1.ResourceRequirements, *Failure) {
	type setting struct {
		list corev1.ResourceList
		from map[corev1.ResourceName]string // where each value came from, for messages
	}
	merge := func(def corev1.ResourceList, flag, annot string) (setting, *Failure) {
		s := setting{list: corev1.ResourceList{}, from: map[corev1.ResourceName]string{}}
		for k, v := range def {
			s.list[k], s.from[k] = v.DeepCopy(), "the controller's "+flag
		}
		raw, ok := annotations[annot]
		if !ok {
			return s, nil
		}
		over, err := ParseResourceList(raw)
		if err != nil {
			return s, fail(ReasonInvalidBuildResources, err, "%s: annotation %s: %v; write %s, or remove the annotation to use the controller's %s",
				obj, annot, err, resourceSyntax, flag)
		}
		for k, v := range over {
			s.list[k], s.from[k] = v, "annotation "+annot
		}
		return s, nil
	}
	req, f := merge(defaults.Requests, "--build-requests", AnnotationBuildRequests)
	if f != nil {
		return corev1.ResourceRequirements{}, f
	}
	lim, f := merge(defaults.Limits, "--build-limits", AnnotationBuildLimits)
	if f != nil {
		return corev1.ResourceRequirements{}, f
	}
	for _, res := range buildResourceNames {
		r, hasReq := req.list[res]
		l, hasLim := lim.list[res]
		if hasReq && hasLim && r.Cmp(l) > 0 {
			return corev1.ResourceRequirements{}, fail(ReasonInvalidBuildResources, nil,
				"%s: the build's %s request %s (%s) is above its limit %s (%s); raise the limit with the annotation %s (e.g. %s=%s) or lower the request with %s",
				obj, res, r.String(), req.from[res], l.String(), lim.from[res], AnnotationBuildLimits, res, r.String(), AnnotationBuildRequests)
		}
	}
	out := corev1.ResourceRequirements{}
	if len(req.list) > 0 {
		out.Requests = req.list
	}
	if len(lim.list) > 0 {
		out.Limits = lim.list
	}
	return out, nil
}

// StorageFromBase says whether a build's ephemeral storage is to be sized from its base image:
// when neither its requests nor its limits name ephemeral-storage.
func StorageFromBase(rr corev1.ResourceRequirements) bool {
	_, req := rr.Requests[corev1.ResourceEphemeralStorage]
	_, lim := rr.Limits[corev1.ResourceEphemeralStorage]
	return !req && !lim
}

// BaseSizedStorage is the ephemeral storage of a build on a base whose layers are compressed
// bytes: request = UncompressedRatio × compressed + StorageHeadroom, rounded up to whole GiB;
// limit = StorageLimitFactor × request. Unknown (known false): FallbackStorageRequest.
func BaseSizedStorage(compressed int64, known bool) (request, limit resource.Quantity) {
	reqBytes := int64(FallbackStorageRequest)
	if known {
		c := min(max(compressed, 0), maxSizedBase)
		reqBytes = (UncompressedRatio*c + StorageHeadroom + gib - 1) / gib * gib
	}
	return *resource.NewQuantity(reqBytes, resource.BinarySI), *resource.NewQuantity(StorageLimitFactor*reqBytes, resource.BinarySI)
}

// WithBaseSizedStorage is rr (deep-copied) with ephemeral storage sized from the base image
// (BaseSizedStorage) when StorageFromBase(rr), else rr unchanged.
func WithBaseSizedStorage(rr corev1.ResourceRequirements, compressed int64, known bool) corev1.ResourceRequirements {
	out := *rr.DeepCopy()
	if !StorageFromBase(rr) {
		return out
	}
	req, lim := BaseSizedStorage(compressed, known)
	if out.Requests == nil {
		out.Requests = corev1.ResourceList{}
	}
	if out.Limits == nil {
		out.Limits = corev1.ResourceList{}
	}
	out.Requests[corev1.ResourceEphemeralStorage] = req
	out.Limits[corev1.ResourceEphemeralStorage] = lim
	return out
}

// describeResources is "requests cpu=500m,memory=1Gi; limits memory=4Gi", for logs and events.
func describeResources(rr corev1.ResourceRequirements) string {
	list := func(l corev1.ResourceList) string {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(l)) {
			q := l[k]
			parts = append(parts, string(k)+"="+q.String())
		}
		if len(parts) == 0 {
			return "none"
		}
		return strings.Join(parts, ",")
	}
	return "requests " + list(rr.Requests) + "; limits " + list(rr.Limits)
}
