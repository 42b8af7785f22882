package registry

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/mosb-dev/mosb/registry/bounds"
)

// Client makes the few registry calls mosb needs, honouring a Config: mirrors for pulls,
// insecure registries, per-registry CAs, and the image policy. It is the only part of the
// package with side effects. Use one Client per credential set: a pull client with the pull
// secret's keychain, a push client with the push secret's.
type Client struct {
	keychain  authn.Keychain
	config    *Config
	transport *hostTransport
	bounds    bounds.Bounds
	watched   http.RoundTripper
	userAgent string
	retry     retryPolicy

	mu        sync.Mutex
	plainHTTP map[string]bool // insecure hosts found to speak HTTP only
}

type retryPolicy struct {
	maxTries   uint64
	initial    time.Duration
	maxElapsed time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithKeychain sets the credentials (Auths.Keychain()); the default is anonymous.
func WithKeychain(k authn.Keychain) Option { return func(c *Client) { c.keychain = k } }

// WithConfig sets the cluster registry configuration; the default has no mirrors, no
// restrictions and no extra CAs.
func WithConfig(cfg *Config) Option { return func(c *Client) { c.config = cfg } }

// WithBaseTransport sets the HTTP transport to clone per registry (proxies, timeouts). Its TLS
// settings are replaced per registry.
func WithBaseTransport(t *http.Transport) Option { return func(c *Client) { c.transport.base = t } }

// WithSystemRoots replaces the system certificate pool that per-registry CAs are added to (for
// air-gapped hosts with their own bundle, and tests).
func WithSystemRoots(pemBundle []byte) Option {
	return func(c *Client) { c.transport.systemPEM, c.transport.useSystemPEM = pemBundle, true }
}

// WithRetry bounds the retries of transient failures (5xx, 408, 429, network errors):
// at most maxTries attempts, starting initial apart and growing, within maxElapsed.
func WithRetry(maxTries int, initial, maxElapsed time.Duration) Option {
	return func(c *Client) {
		if maxTries < 1 {
			maxTries = 1
		}
		c.retry = retryPolicy{maxTries: uint64(maxTries), initial: initial, maxElapsed: maxElapsed}
	}
}

// WithBounds holds every request to b: connecting, waiting for an answer, a transfer without
// progress (zero fields: the defaults, which apply without this option too).
func WithBounds(b bounds.Bounds) Option { return func(c *Client) { c.bounds = b } }

// WithUserAgent sets the User-Agent of registry requests.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// NewClient makes a Client.
func NewClient(opts ...Option) *Client {
	c := &Client{
		keychain:  authn.NewMultiKeychain(), // no credentials: anonymous
		transport: newHostTransport(),
		userAgent: "mosb",
		retry:     retryPolicy{maxTries: 5, initial: 500 * time.Millisecond, maxElapsed: 2 * time.Minute},
		plainHTTP: map[string]bool{},
	}
	for _, o := range opts {
		o(c)
	}
	c.transport.config = c.config
	c.watched = bounds.Watch(c.transport, c.bounds)
	return c
}

// Resolved is where a pull found an image.
type Resolved struct {
	// Digest is "sha256:…".
	Digest string
	// From is the reference that answered (a mirror or the source).
	From Reference
	// MediaType of the manifest (an image or an index).
	MediaType string
}

// Pullspec is the original repository with the resolved digest: what goes into a spec or status.
func (r Resolved) Pullspec(original Reference) string { return original.WithDigest(r.Digest).String() }

// ResolveDigest finds the digest of a pullspec (by tag or by digest), trying its pull sources
// in order: permitted mirrors, then the source unless NeverContactSource. For a digest pullspec
// it confirms the image is there. The image policy is checked first.
func (c *Client) ResolveDigest(ctx context.Context, pullspec string) (Resolved, error) {
	ref, err := ParsePullspec(pullspec)
	if err != nil {
		return Resolved{}, err
	}
	if err := c.config.CheckPull(ref).Err(); err != nil {
		return Resolved{}, err
	}
	var attempts []error
	for _, src := range c.config.PullSources(ref) {
		desc, err := c.head(ctx, "resolve", src.Reference)
		if err == nil && ref.IsDigest() && desc.Digest.String() != ref.Digest {
			// Content addressing makes this a broken registry or mirror, not an answer.
			err = fmt.Errorf("resolve %s: %s answered with digest %s", ref, src.Reference.Host, desc.Digest)
		}
		if err == nil {
			return Resolved{Digest: desc.Digest.String(), From: src.Reference, MediaType: string(desc.MediaType)}, nil
		}
		if ctx.Err() != nil {
			return Resolved{}, err
		}
		attempts = append(attempts, err)
	}
	return Resolved{}, joinAttempts(ref, attempts)
}

// DigestExists says whether the image of a digest pullspec can be pulled (for reusing a build):
// true when any pull source has it, false when every source answered "not found", an error
// otherwise (unreachable, refused credentials…), so a registry outage never looks like "gone".
func (c *Client) DigestExists(ctx context.Context, pullspec string) (bool, error) {
	ref, err := ParseDigestPullspec(pullspec)
	if err != nil {
		return false, err
	}
	if err := c.config.CheckPull(ref).Err(); err != nil {
		return false, err
	}
	var attempts []error
	allNotFound := true
	for _, src := range c.config.PullSources(ref) {
		_, err := c.head(ctx, "check", src.Reference)
		if err == nil {
			return true, nil
		}
		if ctx.Err() != nil {
			return false, err
		}
		attempts = append(attempts, err)
		allNotFound = allNotFound && errors.Is(err, ErrNotFound)
	}
	if allNotFound {
		return false, nil
	}
	return false, joinAttempts(ref, attempts)
}

// IndexManifest is one per-architecture image of a manifest list.
type IndexManifest struct {
	// Digest of the image manifest, "sha256:…"; the image must already be in the push repository.
	Digest   string
	Platform v1.Platform
}

// PushIndex pushes an OCI image index of already pushed per-arch images to pushspec (a tag)
// and returns the index's digest reference. The pushspec is used as is: mirrors never apply to
// pushes. Manifests are sorted by platform so the same images always give the same digest.
func (c *Client) PushIndex(ctx context.Context, pushspec string, manifests []IndexManifest) (Reference, error) {
	ref, err := ParseTagPushspec(pushspec)
	if err != nil {
		return Reference{}, err
	}
	if err := c.config.CheckPush(ref).Err(); err != nil {
		return Reference{}, err
	}
	if len(manifests) == 0 {
		return Reference{}, fmt.Errorf("push %s: an index needs at least one image", ref)
	}
	sorted := append([]IndexManifest(nil), manifests...)
	sort.SliceStable(sorted, func(i, j int) bool { return platformKey(sorted[i].Platform) < platformKey(sorted[j].Platform) })
	index := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	seen := map[string]bool{}
	for _, m := range sorted {
		pk := platformKey(m.Platform)
		if m.Platform.OS == "" || m.Platform.Architecture == "" {
			return Reference{}, fmt.Errorf("push %s: image %s has no platform OS/architecture", ref, m.Digest)
		}
		if seen[pk] {
			return Reference{}, fmt.Errorf("push %s: two images for platform %s; an index holds one per platform", ref, pk)
		}
		seen[pk] = true
		child := ref.WithDigest(m.Digest)
		if err := checkDigest(child.String(), m.Digest); err != nil {
			return Reference{}, err
		}
		desc, err := c.head(ctx, "push", child)
		if err != nil {
			return Reference{}, fmt.Errorf("image for %s must be pushed to %s before the index: %w", pk, ref.Name(), err)
		}
		platform := m.Platform
		index.Manifests = append(index.Manifests, v1.Descriptor{MediaType: desc.MediaType, Size: desc.Size, Digest: desc.Digest, Platform: &platform})
	}
	raw, err := json.Marshal(index)
	if err != nil {
		return Reference{}, fmt.Errorf("push %s: encoding the index: %w", ref, err)
	}
	sum := sha256.Sum256(raw)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	err = c.call(ctx, "push", ref, func(r name.Reference) error {
		return remote.Put(r, rawManifest{raw: raw, mediaType: types.OCIImageIndex}, c.remoteOptions(ctx)...)
	})
	if err != nil {
		return Reference{}, err
	}
	return ref.WithDigest(digest), nil
}

// PushImage pushes one image to the repository of target (a tag pushspec), by digest, and with
// tag also under target's tag. It returns the image's digest reference. Like PushIndex it checks
// the image policy and never uses mirrors: pushes go where the user said.
func (c *Client) PushImage(ctx context.Context, target string, img v1.Image, tag bool) (Reference, error) {
	ref, err := ParseTagPushspec(target)
	if err != nil {
		return Reference{}, err
	}
	if err := c.config.CheckPush(ref).Err(); err != nil {
		return Reference{}, err
	}
	d, err := img.Digest()
	if err != nil {
		return Reference{}, fmt.Errorf("push %s: digest of the image: %w", ref, err)
	}
	dest := ref.WithDigest(d.String())
	if !tag {
		// Pushing by digest leaves the tag to the caller (the index of several architectures).
		ref = dest
	}
	err = c.call(ctx, "push", ref, func(r name.Reference) error {
		return remote.Write(r, img, c.remoteOptions(ctx)...)
	})
	if err != nil {
		return Reference{}, err
	}
	return dest, nil
}

func platformKey(p v1.Platform) string {
	k := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		k += "/" + p.Variant
	}
	return k
}

// rawManifest lets remote.Put send bytes we built, so the digest we return is of these bytes.
type rawManifest struct {
	raw       []byte
	mediaType types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mediaType, nil }

func (c *Client) head(ctx context.Context, op string, ref Reference) (*v1.Descriptor, error) {
	var desc *v1.Descriptor
	err := c.call(ctx, op, ref, func(r name.Reference) error {
		d, err := remote.Head(r, c.remoteOptions(ctx)...)
		desc = d
		return err
	})
	return desc, err
}

// call runs one registry operation with retries. For an insecure registry it first tries HTTPS
// without verification and falls back to plain HTTP when the server answers in HTTP, as
// containers/image does with "insecure": go-containerregistry's own Insecure option would go
// straight to HTTP and fail against a registry with a self-signed certificate.
func (c *Client) call(ctx context.Context, op string, ref Reference, fn func(name.Reference) error) error {
	return c.withRetry(ctx, op, ref, func() error {
		c.mu.Lock()
		plain := c.plainHTTP[ref.Host]
		c.mu.Unlock()
		err := fn(c.ggcrRef(ref, plain))
		if err != nil && !plain && c.config.InsecureHost(ref.Host) && speaksPlainHTTP(err) {
			c.mu.Lock()
			c.plainHTTP[ref.Host] = true
			c.mu.Unlock()
			err = fn(c.ggcrRef(ref, true))
		}
		return err
	})
}

// speaksPlainHTTP recognises net/http's report that an HTTPS request got an HTTP answer; it is
// a plain error string there, so the text is all there is to match.
func speaksPlainHTTP(err error) bool {
	var rh tls.RecordHeaderError
	return errors.As(err, &rh) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
}

// ggcrRef builds the go-containerregistry reference from parts, not by re-parsing text: its
// parser would read "library/busybox" as a Docker Hub name, while for us "library" is the host.
// Note that go-containerregistry always speaks plain HTTP to loopback, localhost and RFC 1918
// addresses, whatever we say; buildah would use HTTPS there unless the registry is insecure.
func (c *Client) ggcrRef(ref Reference, plainHTTP bool) name.Reference {
	var opts []name.Option
	if plainHTTP {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(ref.Host, opts...)
	if err != nil {
		// Unreachable for a validated Reference; fall back to a registry value ggcr accepts so
		// that the request fails with a registry error rather than a panic.
		reg, _ = name.NewRegistry("invalid.invalid")
	}
	repo := reg.Repo(ref.Repository)
	if ref.IsDigest() {
		return repo.Digest(ref.Digest)
	}
	return repo.Tag(ref.Tag)
}

func (c *Client) remoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(c.keychain),
		remote.WithTransport(c.watched),
		remote.WithUserAgent(c.userAgent),
		// Our own backoff decides about retries; ggcr's would multiply the attempts.
		remote.WithRetryStatusCodes(),
		remote.WithRetryBackoff(remote.Backoff{Steps: 1}),
	}
}

func (c *Client) withRetry(ctx context.Context, op string, ref Reference, call func() error) error {
	eb := backoff.NewExponentialBackOff()
	eb.InitialInterval = c.retry.initial
	eb.MaxElapsedTime = c.retry.maxElapsed
	bo := backoff.WithContext(backoff.WithMaxRetries(eb, c.retry.maxTries-1), ctx)
	err := backoff.Retry(func() error {
		err := call()
		if err == nil {
			return nil
		}
		rerr := newRemoteError(op, ref, err)
		if !rerr.transient() {
			return backoff.Permanent(rerr)
		}
		return rerr
	}, bo)
	if err != nil && !errors.As(err, new(*RemoteError)) {
		// The context ended before a call failed; say which call was waiting.
		return newRemoteError(op, ref, err)
	}
	return err
}

// joinAttempts reports a pull that failed at every source. Like containers/image, the last
// attempt (normally the source) is the primary error that errors.Is/As see.
func joinAttempts(ref Reference, attempts []error) error {
	switch len(attempts) {
	case 0:
		return fmt.Errorf("pull %s: no source to try", ref)
	case 1:
		return attempts[0]
	}
	return &AttemptsError{Reference: ref.String(), Attempts: attempts}
}

// AttemptsError is a pull that failed at a mirror or more and at the source.
type AttemptsError struct {
	Reference string
	Attempts  []error
}

func (e *AttemptsError) Error() string {
	parts := make([]string, len(e.Attempts))
	for i, a := range e.Attempts {
		parts[i] = a.Error()
	}
	return fmt.Sprintf("%s could not be pulled from any of its %d sources: %s", e.Reference, len(e.Attempts), strings.Join(parts, "; "))
}

// Unwrap is the last attempt.
func (e *AttemptsError) Unwrap() error { return e.Attempts[len(e.Attempts)-1] }
