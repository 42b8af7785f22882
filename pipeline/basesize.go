package pipeline

import (
	"context"
	"fmt"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/mosb-dev/mosb/registry"
)

const (
	// baseSizeTimeout bounds the registry lookup of a base image's size: a pod is never held
	// back longer than this by it.
	baseSizeTimeout = 20 * time.Second
	// baseSizeRetryAfter is how long a failed lookup is not tried again (its pods get the
	// fallback), so an unreachable registry delays one pod, not every one.
	baseSizeRetryAfter = 10 * time.Minute
	// maxBaseSizes bounds the cache; a controller sees few distinct bases, so reaching it only
	// means starting over.
	maxBaseSizes = 1000
)

// baseSizes caches the compressed size of base images by digest and architecture: an image
// named by digest never changes.
type baseSizes struct {
	mu     sync.Mutex
	sizes  map[string]int64
	failed map[string]time.Time
}

// podResources are the resources of an architecture's build pod: the plan's, with ephemeral
// storage sized from the base image when neither the flags nor the annotations set it.
func (r *BuildReconciler) podResources(ctx context.Context, plan *Plan, arch string) corev1.ResourceRequirements {
	if !StorageFromBase(plan.Resources) {
		return *plan.Resources.DeepCopy()
	}
	size, known := r.baseSize(ctx, plan, arch)
	return WithBaseSizedStorage(plan.Resources, size, known)
}

// baseSize is the compressed size of the layers of the plan's base image for arch, read with
// the build's pull credentials, mirrors and CAs. It never fails: when the registry does not
// answer within baseSizeTimeout it says so once in the log and returns known=false.
func (r *BuildReconciler) baseSize(ctx context.Context, plan *Plan, arch string) (size int64, known bool) {
	ref, err := registry.ParseDigestPullspec(plan.BaseImage)
	if err != nil {
		return 0, false // Prepare refuses such a base; nothing to size
	}
	key := ref.Digest + " " + arch
	c := &r.baseSizes
	c.mu.Lock()
	if s, ok := c.sizes[key]; ok {
		c.mu.Unlock()
		return s, true
	}
	if at, ok := c.failed[key]; ok && time.Since(at) < baseSizeRetryAfter {
		c.mu.Unlock()
		return 0, false
	}
	c.mu.Unlock()

	lookup, cancel := context.WithTimeout(ctx, baseSizeTimeout)
	defer cancel()
	opts := append([]registry.Option{
		registry.WithKeychain(plan.PullAuths.Keychain()), registry.WithConfig(plan.Config),
		registry.WithRetry(3, time.Second, baseSizeTimeout), registry.WithBounds(r.RegistryBounds),
	}, r.registryOptions...)
	size, err = registry.NewClient(opts...).CompressedSize(lookup, plan.BaseImage, v1.Platform{OS: "linux", Architecture: arch})

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sizes == nil || len(c.sizes)+len(c.failed) >= maxBaseSizes {
		c.sizes, c.failed = map[string]int64{}, map[string]time.Time{}
	}
	if err != nil {
		c.failed[key] = time.Now()
		req, lim := BaseSizedStorage(0, false)
		r.logOnce(ctx, "base-size "+key, fmt.Sprintf("cannot read the size of base image %s for %s (%v); its build pods get ephemeral-storage request %s, limit %s; set ephemeral-storage in --build-requests/--build-limits or the annotations %s/%s to choose",
			plan.BaseImage, arch, err, req.String(), lim.String(), AnnotationBuildRequests, AnnotationBuildLimits))
		return 0, false
	}
	delete(c.failed, key)
	c.sizes[key] = size
	ctrl.LoggerFrom(ctx).V(1).Info("base image size", "image", plan.BaseImage, "arch", arch, "compressedBytes", size)
	return size, true
}
