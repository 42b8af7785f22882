package registry

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// maxIndexDepth is how many indexes deep CompressedSize follows an index to an image: an index
// of per-platform images is one; an index of indexes is rare, and deeper nesting is refused.
const maxIndexDepth = 2

// CompressedSize is the sum of the compressed sizes of the layers of the image a digest pullspec
// names, as its manifest declares them. When the pullspec names an index, it is the image for
// platform in it (a field of platform left empty matches any value). Only manifests are read,
// never a blob. The pull sources are tried in order, as ResolveDigest does (permitted mirrors,
// then the source unless NeverContactSource), after the image policy is checked.
func (c *Client) CompressedSize(ctx context.Context, pullspec string, platform v1.Platform) (int64, error) {
	ref, err := ParseDigestPullspec(pullspec)
	if err != nil {
		return 0, err
	}
	if err := c.config.CheckPull(ref).Err(); err != nil {
		return 0, err
	}
	var attempts []error
	for _, src := range c.config.PullSources(ref) {
		size, err := c.layersSize(ctx, src.Reference, platform, 0)
		if err == nil {
			return size, nil
		}
		if ctx.Err() != nil {
			return 0, err
		}
		attempts = append(attempts, err)
	}
	return 0, joinAttempts(ref, attempts)
}

// layersSize reads the manifest of ref (by digest) and sums its layers, following an index to
// the image for platform.
func (c *Client) layersSize(ctx context.Context, ref Reference, platform v1.Platform, depth int) (int64, error) {
	var desc *remote.Descriptor
	err := c.call(ctx, "inspect", ref, func(r name.Reference) error {
		d, err := remote.Get(r, c.remoteOptions(ctx)...)
		desc = d
		return err
	})
	if err != nil {
		return 0, err
	}
	switch {
	case desc.MediaType.IsIndex():
		if depth >= maxIndexDepth {
			return 0, fmt.Errorf("inspect %s: indexes nested more than %d deep", ref, maxIndexDepth)
		}
		index, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
		if err != nil {
			return 0, fmt.Errorf("inspect %s: the index cannot be read: %w", ref, err)
		}
		var have []string
		for _, m := range index.Manifests {
			if m.Platform == nil || !(m.MediaType.IsImage() || m.MediaType.IsIndex()) {
				continue // attestations and other artifacts have no platform of their own
			}
			if m.Platform.Satisfies(platform) {
				return c.layersSize(ctx, ref.WithDigest(m.Digest.String()), platform, depth+1)
			}
			have = append(have, platformKey(*m.Platform))
		}
		return 0, fmt.Errorf("inspect %s: the index has no image for %s (it has %s)", ref, platformKey(platform), strings.Join(have, ", "))
	case desc.MediaType.IsImage():
		m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
		if err != nil {
			return 0, fmt.Errorf("inspect %s: the manifest cannot be read: %w", ref, err)
		}
		var total int64
		for _, l := range m.Layers {
			if l.Size < 0 || l.Size > math.MaxInt64-total {
				return 0, fmt.Errorf("inspect %s: layer %s declares an impossible size %d", ref, l.Digest, l.Size)
			}
			total += l.Size
		}
		return total, nil
	default:
		return 0, fmt.Errorf("inspect %s: manifest of media type %q is neither an image nor an index", ref, desc.MediaType)
	}
}
