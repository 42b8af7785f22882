package builder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/mosb-dev/mosb/registry"

	"github.com/mosb-dev/mosb/builder/buildpod"
)

// Request is one image: every architecture of it, where it goes, and how registries are reached.
type Request struct {
	Builds []buildpod.ArchBuild
	// Target is the pushspec (host[:port]/repo:tag) the image is published under.
	Target   string
	Registry buildpod.RegistryConfig
	// Cache, when set, shares intermediate layers through a registry repository.
	Cache *Cache
	// Untagged pushes each image by digest only and leaves Target's tag alone: a build pod's
	// worker does this, and the controller tags (or pushes the index) once every arch is in.
	Untagged bool
	// Run is what every RUN step gets besides the image.
	Run RunEnvironment
}

// RunEnvironment is what the build's RUN steps get and no layer holds: read-only mounts
// (entitlements, repository definitions) and the proxy, which the build's pulls use too.
type RunEnvironment struct {
	Mounts []Mount
	// Proxy is the proxy of the build's pulls and RUN steps (as HTTP_PROXY, http_proxy, … build
	// arguments, which buildah keeps out of the image's history); zero: none for RUN steps, and
	// the process environment's for pulls.
	Proxy registry.Proxy
}

// Mount is a host directory RUN steps see read-only at Target.
type Mount struct {
	Source, Target string
}

// Publisher pushes built images. A *registry.Client made with the push secret's keychain (and
// nothing else) is one: pulls never see the push credentials, and pushes never go to mirrors.
type Publisher interface {
	PushImage(ctx context.Context, target string, img v1.Image, tag bool) (registry.Reference, error)
	PushIndex(ctx context.Context, pushspec string, manifests []registry.IndexManifest) (registry.Reference, error)
}

// ArchResult is one architecture's pushed image.
type ArchResult struct {
	Arch     string
	Platform v1.Platform
	// Pullspec is host/repo@sha256:… of this architecture's image.
	Pullspec      string
	Digest        string
	BuildDuration time.Duration
}

// Result is the published image.
type Result struct {
	// Pullspec is host/repo@sha256:… of what Target now names: the image itself for one
	// architecture, the OCI index for several (or, with Untagged, the only image built).
	Pullspec     string
	Digest       string
	Arches       []ArchResult
	PushDuration time.Duration
	Duration     time.Duration
}

// Build builds every architecture of the request, one after another, then publishes them.
func (e *Engine) Build(ctx context.Context, req Request, pub Publisher) (*Result, error) {
	if len(req.Builds) == 0 {
		return nil, errors.New("build request has no architecture to build")
	}
	if req.Untagged && len(req.Builds) > 1 {
		return nil, errors.New("an untagged build pushes one architecture; the index is the caller's")
	}
	seen := map[string]bool{}
	for _, b := range req.Builds {
		if seen[b.Arch] {
			return nil, fmt.Errorf("build request names architecture %s twice", b.Arch)
		}
		seen[b.Arch] = true
	}
	start := time.Now()
	builds := append([]buildpod.ArchBuild(nil), req.Builds...)
	sort.Slice(builds, func(i, j int) bool { return builds[i].Arch < builds[j].Arch })

	var built []*Built
	defer func() {
		for _, b := range built {
			_ = b.Release()
		}
	}()
	for _, b := range builds {
		out, err := e.BuildImage(ctx, b, req.Registry, req.Cache, req.Run)
		if err != nil {
			return nil, err
		}
		built = append(built, out)
	}

	pushStart := time.Now()
	res := &Result{}
	tagEach := len(built) == 1 && !req.Untagged
	for _, b := range built {
		cfg, err := b.Image.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("reading the %s image config: %w", b.Arch, err)
		}
		ref, err := pub.PushImage(ctx, req.Target, b.pushImage(req.Target), tagEach)
		if err != nil {
			return nil, err
		}
		res.Arches = append(res.Arches, ArchResult{
			Arch:          b.Arch,
			Platform:      v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant},
			Pullspec:      ref.String(),
			Digest:        b.Digest.String(),
			BuildDuration: b.Duration,
		})
	}
	if len(res.Arches) == 1 {
		res.Pullspec, res.Digest = res.Arches[0].Pullspec, res.Arches[0].Digest
	} else {
		manifests := make([]registry.IndexManifest, 0, len(res.Arches))
		for _, a := range res.Arches {
			manifests = append(manifests, registry.IndexManifest{Digest: a.Digest, Platform: a.Platform})
		}
		ref, err := pub.PushIndex(ctx, req.Target, manifests)
		if err != nil {
			return nil, err
		}
		res.Pullspec, res.Digest = ref.String(), ref.Digest
	}
	res.PushDuration = time.Since(pushStart)
	res.Duration = time.Since(start)
	return res, nil
}

// transientMounts are the mounts in buildah's --volume syntax, read-only, after checking each
// source is a directory and each target a path buildah's syntax can carry.
func (r RunEnvironment) transientMounts() ([]string, error) {
	var out []string
	for _, m := range r.Mounts {
		if !filepath.IsAbs(m.Target) || filepath.Clean(m.Target) != m.Target || m.Target == "/" || strings.ContainsAny(m.Target+m.Source, ":,") {
			return nil, fmt.Errorf("run mount %s:%s: the target must be a clean absolute path other than /, and neither path may hold ':' or ','", m.Source, m.Target)
		}
		info, err := os.Stat(m.Source)
		if err != nil {
			return nil, fmt.Errorf("run mount for %s: %w", m.Target, err)
		}
		if !info.IsDir() {
			return nil, fmt.Errorf("run mount for %s: %s is not a directory", m.Target, m.Source)
		}
		src, err := filepath.Abs(m.Source)
		if err != nil {
			return nil, err
		}
		out = append(out, src+":"+m.Target+":ro")
	}
	return out, nil
}
