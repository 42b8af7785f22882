package registry

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// DeleteManifest deletes the manifest of a digest pullspec from its registry: an image, or an
// index (its images stay: delete them too when nothing else refers to them). Mirrors never apply.
// A manifest already gone is ErrNotFound; a registry that refuses deletion, ErrUnsupported (405)
// or ErrUnauthorized (401/403): the caller decides what each means.
func (c *Client) DeleteManifest(ctx context.Context, pullspec string) error {
	ref, err := ParseDigestPullspec(pullspec)
	if err != nil {
		return err
	}
	if err := c.config.CheckPush(ref).Err(); err != nil {
		return err
	}
	return c.call(ctx, "delete", ref, func(r name.Reference) error {
		return remote.Delete(r, c.remoteOptions(ctx)...)
	})
}

// IndexChildren lists the digests of the images of an index, from the registry it was pushed to;
// none for an image that is not an index.
func (c *Client) IndexChildren(ctx context.Context, pullspec string) ([]string, error) {
	ref, err := ParseDigestPullspec(pullspec)
	if err != nil {
		return nil, err
	}
	var index *v1.IndexManifest
	err = c.call(ctx, "inspect", ref, func(r name.Reference) error {
		desc, err := remote.Get(r, c.remoteOptions(ctx)...)
		if err != nil {
			return err
		}
		if !desc.MediaType.IsIndex() {
			return nil
		}
		idx, err := desc.ImageIndex()
		if err != nil {
			return err
		}
		index, err = idx.IndexManifest()
		return err
	})
	if err != nil || index == nil {
		return nil, err
	}
	children := make([]string, 0, len(index.Manifests))
	for _, m := range index.Manifests {
		children = append(children, m.Digest.String())
	}
	if len(children) == 0 {
		return nil, fmt.Errorf("inspect %s: an index with no images", ref)
	}
	return children, nil
}
