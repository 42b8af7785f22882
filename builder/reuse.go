package builder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ggcrtypes "github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	specsv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/blobinfocache"
	"go.podman.io/image/v5/pkg/compression"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"

	"github.com/mosb-dev/mosb/registry"
)

// Reusing the base image's layers.
//
// The layers an image inherits from its FROM image are published exactly as the base image has
// them: the same compressed blobs, so the same digests. The OCI-layout export does not compress
// them again (a multi-GB OS base took minutes of CPU, and got new digests, so every build uploaded
// the whole base again); the push then finds them in the target repository (nothing to send),
// mounts them from the base's repository when it is on the same registry, and only otherwise
// streams them from where the build pulled the base (its mirrors, with the pull secret) to the
// target (with the push secret). The manifest therefore names the base's blobs whatever the state
// of either registry: for the same inputs and the same base, the same digest.

// baseImage is what a build reuses of the image its last stage started FROM.
type baseImage struct {
	// ref is repository@digest of the base, as the build pulled it (mirrors apply).
	ref reference.Canonical
	// blobs are the base's compressed layers by the digest of their uncompressed content.
	blobs map[digest.Digest]baseBlob
}

type baseBlob struct {
	digest    digest.Digest
	diffID    digest.Digest
	size      int64
	algorithm compression.Algorithm
}

// findBase reads, from storage, the compressed layers of the image the build started FROM: buildah
// notes its name and digest in the built manifest's org.opencontainers.image.base.* annotations,
// and the pulled image's own manifest, kept in storage as pulled, lists its blobs. It returns nil
// when there is nothing to reuse (FROM scratch, a short name, a locally built base, uncompressed
// layers): the export then compresses every layer, as before.
func (e *Engine) findBase(ctx context.Context, sys *types.SystemContext, imageID string) (*baseImage, error) {
	built, err := e.store.Image(imageID)
	if err != nil {
		return nil, err
	}
	raw, err := e.manifestOf(ctx, sys, imageID)
	if err != nil {
		return nil, err
	}
	var m specsv1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("reading the built image's manifest: %w", err)
	}
	baseName, baseDigest := m.Annotations[specsv1.AnnotationBaseImageName], m.Annotations[specsv1.AnnotationBaseImageDigest]
	if baseName == "" || baseDigest == "" {
		return nil, nil
	}
	d, err := digest.Parse(baseDigest)
	if err != nil {
		return nil, nil
	}
	named, err := reference.ParseNormalizedNamed(baseName)
	if err != nil {
		return nil, nil
	}
	ref, err := reference.WithDigest(reference.TrimNamed(named), d)
	if err != nil {
		return nil, nil
	}

	// The base in storage is the image of that digest whose top layer the built image sits on (a
	// list digest names one image per architecture).
	chain := map[string]bool{}
	for id := built.TopLayer; id != "" && !chain[id]; {
		chain[id] = true
		l, err := e.store.Layer(id)
		if err != nil {
			return nil, err
		}
		id = l.Parent
	}
	candidates, err := e.store.ImagesByDigest(d)
	if err != nil {
		return nil, nil
	}
	baseID := ""
	for _, c := range candidates {
		if c.TopLayer != "" && chain[c.TopLayer] {
			baseID = c.ID
			break
		}
	}
	if baseID == "" {
		return nil, nil
	}
	sref, err := istorage.Transport.NewStoreReference(e.store, nil, baseID)
	if err != nil {
		return nil, err
	}
	img, err := sref.NewImage(ctx, sys)
	if err != nil {
		return nil, fmt.Errorf("reading the base image %s from storage: %w", ref, err)
	}
	defer img.Close()
	cfg, err := img.OCIConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the config of the base image %s: %w", ref, err)
	}
	infos := img.LayerInfos()
	if len(infos) != len(cfg.RootFS.DiffIDs) {
		return nil, nil
	}
	base := &baseImage{ref: ref, blobs: map[digest.Digest]baseBlob{}}
	for i, info := range infos {
		diffID := cfg.RootFS.DiffIDs[i]
		var alg compression.Algorithm
		switch info.MediaType {
		case specsv1.MediaTypeImageLayerGzip, manifest.DockerV2Schema2LayerMediaType:
			alg = compression.Gzip
		case specsv1.MediaTypeImageLayerZstd:
			alg = compression.Zstd
		default:
			continue
		}
		if len(info.URLs) > 0 || info.Size <= 0 || info.Digest == diffID || info.Digest.Validate() != nil || diffID.Validate() != nil {
			continue
		}
		if _, seen := base.blobs[diffID]; !seen {
			base.blobs[diffID] = baseBlob{digest: info.Digest, diffID: diffID, size: info.Size, algorithm: alg}
		}
	}
	if len(base.blobs) == 0 {
		return nil, nil
	}
	return base, nil
}

func (e *Engine) manifestOf(ctx context.Context, sys *types.SystemContext, imageID string) ([]byte, error) {
	ref, err := istorage.Transport.NewStoreReference(e.store, nil, imageID)
	if err != nil {
		return nil, err
	}
	src, err := ref.NewImageSource(ctx, sys)
	if err != nil {
		return nil, fmt.Errorf("reading the built image from storage: %w", err)
	}
	defer src.Close()
	raw, _, err := src.GetManifest(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("reading the built image's manifest: %w", err)
	}
	return raw, nil
}

// reuseReference wraps the OCI-layout reference the image is exported to: for a layer the base
// image has, the destination answers that the base's compressed blob is there, so containers/image
// puts that blob's descriptor in the manifest instead of compressing the layer again. The layout
// then holds the new layers, the config and the manifest, not the base's blobs.
type reuseReference struct {
	types.ImageReference
	base *baseImage
}

func (r reuseReference) NewImageDestination(ctx context.Context, sys *types.SystemContext) (types.ImageDestination, error) {
	d, err := r.ImageReference.NewImageDestination(ctx, sys)
	if err != nil {
		return nil, err
	}
	return &reuseDestination{ImageDestination: d, ref: r}, nil
}

type reuseDestination struct {
	types.ImageDestination
	ref reuseReference
}

func (d *reuseDestination) Reference() types.ImageReference { return d.ref }

func (d *reuseDestination) TryReusingBlob(ctx context.Context, info types.BlobInfo, cache types.BlobInfoCache, canSubstitute bool) (bool, types.BlobInfo, error) {
	if b, ok := d.ref.base.blobs[info.Digest]; ok && canSubstitute {
		alg := b.algorithm
		return true, types.BlobInfo{Digest: b.digest, Size: b.size, CompressionOperation: types.Compress, CompressionAlgorithm: &alg}, nil
	}
	return d.ImageDestination.TryReusingBlob(ctx, info, cache, canSubstitute)
}

// baseSource reads the base's blobs from where the build pulled it, with the build's
// registries.conf (mirrors), CAs and pull credentials; it opens the registry only when a blob is
// needed: when the target repository has the blob already or mounts it, never.
type baseSource struct {
	ctx  context.Context
	sys  *types.SystemContext
	base *baseImage

	mu  sync.Mutex
	src types.ImageSource
}

func (s *baseSource) open() (types.ImageSource, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.src != nil {
		return s.src, nil
	}
	ref, err := docker.NewReference(s.base.ref)
	if err != nil {
		return nil, err
	}
	src, err := ref.NewImageSource(s.ctx, s.sys)
	if err != nil {
		return nil, err
	}
	s.src = src
	return src, nil
}

func (s *baseSource) blob(b baseBlob) (io.ReadCloser, error) {
	src, err := s.open()
	if err != nil {
		return nil, s.pullError(b, err)
	}
	rc, _, err := src.GetBlob(s.ctx, types.BlobInfo{Digest: b.digest, Size: b.size}, blobinfocache.DefaultCache(s.sys))
	if err != nil {
		return nil, s.pullError(b, err)
	}
	return &pullReader{ReadCloser: rc, s: s, b: b}, nil
}

// Close releases the connection to the base's registry, if one was opened.
func (s *baseSource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.src == nil {
		return nil
	}
	err := s.src.Close()
	s.src = nil
	return err
}

// pullError says which registry failed, with the status, in the words of the registry package: a
// push that fails because the base cannot be read is a pull failure of the base, to be fixed in the
// pull secret or the base's registry, and is retried like any other transient registry failure.
func (s *baseSource) pullError(b baseBlob, err error) error {
	re := &registry.RemoteError{
		Op:        "pull",
		Reference: s.base.ref.String(),
		Registry:  reference.Domain(s.base.ref),
		Err:       fmt.Errorf("reading base layer %s to upload it: %w", b.digest, err),
	}
	var status docker.UnexpectedHTTPStatusError
	var unauthorized docker.ErrUnauthorizedForCredentials
	switch {
	case errors.As(err, &unauthorized):
		re.StatusCode = http.StatusUnauthorized
	case errors.Is(err, docker.ErrTooManyRequests):
		re.StatusCode = http.StatusTooManyRequests
	case errors.As(err, &status):
		re.StatusCode = status.StatusCode
	}
	return re
}

type pullReader struct {
	io.ReadCloser
	s *baseSource
	b baseBlob
}

func (r *pullReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = r.s.pullError(r.b, err)
	}
	return n, err
}

// baseLayer is one of the base's blobs as a go-containerregistry layer, read from the base's
// registry if it has to be uploaded.
type baseLayer struct {
	src       *baseSource
	blob      baseBlob
	mediaType ggcrtypes.MediaType
}

func (l *baseLayer) Digest() (v1.Hash, error)                { return v1.NewHash(l.blob.digest.String()) }
func (l *baseLayer) DiffID() (v1.Hash, error)                { return v1.NewHash(l.blob.diffID.String()) }
func (l *baseLayer) Size() (int64, error)                    { return l.blob.size, nil }
func (l *baseLayer) MediaType() (ggcrtypes.MediaType, error) { return l.mediaType, nil }
func (l *baseLayer) Compressed() (io.ReadCloser, error)      { return l.src.blob(l.blob) }

// withBaseLayers is the exported image with its base layers read from the base's registry: the
// OCI layout does not hold them.
func withBaseLayers(img v1.Image, src *baseSource) (*reusingImage, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	byDigest := map[digest.Digest]baseBlob{}
	for _, b := range src.base.blobs {
		byDigest[b.digest] = b
	}
	out := &reusingImage{Image: img, layers: map[v1.Hash]v1.Layer{}, base: src.base}
	for _, desc := range m.Layers {
		b, ok := byDigest[digest.Digest(desc.Digest.String())]
		if !ok {
			continue
		}
		l, err := partial.CompressedToLayer(&baseLayer{src: src, blob: b, mediaType: desc.MediaType})
		if err != nil {
			return nil, err
		}
		out.layers[desc.Digest] = l
	}
	return out, nil
}

// reusingImage is an image some of whose layers come from elsewhere than its own storage.
type reusingImage struct {
	v1.Image
	layers map[v1.Hash]v1.Layer
	base   *baseImage
}

func (i *reusingImage) Layers() ([]v1.Layer, error) {
	ls, err := i.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for n, l := range ls {
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		if sub, ok := i.layers[d]; ok {
			l = sub
		}
		out[n] = l
	}
	return out, nil
}

func (i *reusingImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	if sub, ok := i.layers[h]; ok {
		return sub, nil
	}
	return i.Image.LayerByDigest(h)
}

func (i *reusingImage) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	l, err := i.Image.LayerByDiffID(h)
	if err != nil {
		return nil, err
	}
	d, err := l.Digest()
	if err != nil {
		return nil, err
	}
	return i.LayerByDigest(d)
}

// mountableFor is the image to push to target: when the base is in a repository of the target's
// registry, its layers carry that repository, so that go-containerregistry asks the registry to
// mount each missing blob from there rather than upload it.
func (i *reusingImage) mountableFor(target string) v1.Image {
	t, err := registry.ParseTagPushspec(target)
	if err != nil {
		return i
	}
	targetRegistry, err1 := name.NewRegistry(t.Host)
	baseRegistry, err2 := name.NewRegistry(reference.Domain(i.base.ref))
	if err1 != nil || err2 != nil || targetRegistry.Name() != baseRegistry.Name() {
		return i
	}
	from := baseRegistry.Repo(reference.Path(i.base.ref)).Digest(i.base.ref.Digest().String())
	out := &reusingImage{Image: i.Image, layers: map[v1.Hash]v1.Layer{}, base: i.base}
	for d, l := range i.layers {
		out.layers[d] = &remote.MountableLayer{Layer: l, Reference: from}
	}
	return out
}
