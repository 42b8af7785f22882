package builder

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containers/buildah"
	"github.com/containers/buildah/define"
	"github.com/containers/buildah/imagebuildah"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	ggcrlayout "github.com/google/go-containerregistry/pkg/v1/layout"
	specsv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/common/libimage"
	"go.podman.io/image/v5/docker/reference"
	ocilayout "go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
	"go.podman.io/storage/pkg/archive"
	"golang.org/x/sys/unix"

	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/registry/bounds"
)

// Engine builds images with buildah over a containers/storage root it owns. Storage, registry
// configuration, credentials, certificates, the blob-info cache and big temporary files all live
// under the root, so nothing is written to /var/lib/containers or /etc/containers. (buildah still
// reads the host's containers.conf defaults, and its own scratch space follows $TMPDIR: callers
// that must keep /var/tmp clean point TMPDIR under the root, as `mosb build` and `mosb worker` do.)
// An Engine builds one image at a time.
type Engine struct {
	root    string
	store   storage.Store
	storage StorageChoice
	out     io.Writer
	bounds  bounds.Bounds
}

type engineOptions struct {
	driver     string
	imageStore string
	out        io.Writer
	bounds     bounds.Bounds
}

// Option configures an Engine.
type Option func(*engineOptions)

// WithStorageDriver chooses the containers/storage driver: DriverAuto (the default: overlay, or
// vfs where an overlay mount is impossible), DriverOverlay or DriverVFS (no fallback).
func WithStorageDriver(driver string) Option { return func(o *engineOptions) { o.driver = driver } }

// WithImageStore reads images from dir, a containers/storage overlay graph root used read-only (a
// node's image store, see PrepareImageStore): a base image found there is neither pulled nor
// extracted, its layers are the build's lower layers as they are. Ignored under vfs.
func WithImageStore(dir string) Option { return func(o *engineOptions) { o.imageStore = dir } }

// WithProgress sends buildah's step-by-step output (STEP 1/5: FROM …) and push progress to w.
func WithProgress(w io.Writer) Option { return func(o *engineOptions) { o.out = w } }

// WithRegistryBounds holds the build's registry traffic to b (zero fields: the defaults, which
// apply without this option too): pulls of the images the Containerfile names, cache pulls and
// pushes, and reading the base image's layers for the push.
func WithRegistryBounds(b bounds.Bounds) Option { return func(o *engineOptions) { o.bounds = b } }

// New opens (creating when needed) a build root: storage, blob-info cache and per-build scratch space.
func New(root string, opts ...Option) (*Engine, error) {
	o := engineOptions{driver: DriverAuto, out: io.Discard}
	for _, fn := range opts {
		fn(&o)
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{root, filepath.Join(root, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("creating build root %s: %w", d, err)
		}
	}
	store, choice, err := openStore(root, o)
	if err != nil {
		return nil, err
	}
	return &Engine{root: root, store: store, storage: choice, out: o.out, bounds: o.bounds.OrDefault()}, nil
}

// Storage is the driver the engine runs with (and why, when it fell back to vfs).
func (e *Engine) Storage() StorageChoice { return e.storage }

// TempDir is where large temporary files of a build go: under the root, not /var/tmp.
func (e *Engine) TempDir() string { return filepath.Join(e.root, "tmp") }

// Close releases the storage; an engine is unusable afterwards.
func (e *Engine) Close() error {
	_, err := e.store.Shutdown(false)
	return err
}

// Built is one architecture's image, built and laid out on disk, not yet pushed.
type Built struct {
	Arch string
	// Image is the image to push. The layers it shares with its base image are the base's own
	// blobs, which the layout on disk does not hold: reading one streams it from the base's
	// registry (with the build's pull credentials, while the context given to BuildImage lasts).
	Image    v1.Image
	Digest   v1.Hash
	Duration time.Duration
	// dir holds the build's scratch space and OCI layout; Release removes it.
	dir string
	// reusing is Image when it publishes the base image's blobs as they are (the layout does not
	// hold them); base reads them from the base's registry if the push needs them.
	reusing *reusingImage
	base    *baseSource
	// guard relays containers/image's registry traffic for the build and the push (base layers).
	guard *bounds.Guard
}

// Release removes what the build left on disk besides storage (which is kept as the layer cache).
func (b *Built) Release() error {
	if b.base != nil {
		_ = b.base.Close()
	}
	if b.guard != nil {
		_ = b.guard.Close()
	}
	return os.RemoveAll(b.dir)
}

// ReusedBaseLayers is how many of the image's layers are the base image's blobs, published as the
// base has them rather than compressed again.
func (b *Built) ReusedBaseLayers() int {
	if b.reusing == nil {
		return 0
	}
	return len(b.reusing.layers)
}

// pushImage is the image to publish to target: Image, with its base layers mountable from the
// base's repository when that is on the target's registry.
func (b *Built) pushImage(target string) v1.Image {
	if b.reusing == nil {
		return b.Image
	}
	return b.reusing.mountableFor(target)
}

// Cache is a registry repository that holds intermediate layers across builds and machines
// (buildah's --cache-to/--cache-from).
type Cache struct {
	Repo string
	// Auth is a containers auth file with credentials that may push to Repo.
	Auth []byte
}

// BuildImage builds one architecture. The image is left as an OCI layout for Push.
func (e *Engine) BuildImage(ctx context.Context, b buildpod.ArchBuild, rc buildpod.RegistryConfig, cache *Cache, run RunEnvironment) (*Built, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	transientMounts, err := run.transientMounts()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	dir, err := os.MkdirTemp(filepath.Join(e.root), "build-")
	if err != nil {
		return nil, err
	}
	built := &Built{Arch: b.Arch, dir: dir}
	fail := func(err error) (*Built, error) {
		_ = built.Release()
		return nil, err
	}
	sys, policyPath, err := e.systemContext(dir, b.Arch, rc, cache)
	if err != nil {
		return fail(err)
	}
	if built.guard, err = bounds.NewGuard(e.bounds); err != nil {
		return fail(err)
	}
	if !run.Proxy.IsZero() {
		built.guard.UseProxy(run.Proxy.URLFunc())
	}
	sys.DockerProxy = built.guard.Proxy
	contextDir := filepath.Join(dir, "context")
	containerfile, err := writeContext(contextDir, b)
	if err != nil {
		return fail(err)
	}
	ulimits, err := hardUlimits()
	if err != nil {
		return fail(err)
	}
	out := newNoSpaceWatch(e.out)
	tag := "localhost/mosb-build/" + randomName() + ":" + b.Arch
	epoch := Epoch
	opts := define.BuildOptions{
		ContextDirectory: contextDir,
		PullPolicy:       define.PullIfMissing,
		// chroot isolation runs without a container runtime or user namespaces: it works on a plain
		// host and inside an unprivileged build pod alike.
		Isolation:               define.IsolationChroot,
		NetworkInterface:        hostNetwork{},
		Output:                  tag,
		OutputFormat:            define.OCIv1ImageManifest,
		Layers:                  true,
		RemoveIntermediateCtrs:  true,
		ForceRmIntermediateCtrs: true,
		Timestamp:               &epoch,
		Architecture:            b.Arch,
		OS:                      "linux",
		SystemContext:           sys,
		SignaturePolicyPath:     policyPath,
		MaxPullPushRetries:      3,
		PullPushRetryDelay:      2 * time.Second,
		Out:                     out,
		Err:                     out,
		ReportWriter:            out,
		TransientMounts:         transientMounts,
		Args:                    run.Proxy.Env(),
		CommonBuildOpts: &define.CommonBuildOptions{
			// As root, buildah raises RLIMIT_NOFILE/NPROC to 1048576, which fails without
			// CAP_SYS_RESOURCE; asking for what we already have always works.
			Ulimit: ulimits,
			// /etc/hostname and /etc/hosts would carry the build host into the image.
			NoHostname: true,
			NoHosts:    true,
			// The buildah version label would change the digest with every buildah upgrade.
			IdentityLabel: types.OptionalBoolFalse,
		},
	}
	if cache != nil && cache.Repo != "" {
		named, err := reference.ParseNormalizedNamed(cache.Repo)
		if err != nil {
			return fail(fmt.Errorf("cache repository %q: %w", cache.Repo, err))
		}
		// A cache that cannot be read is a warning in the build output (cache.go), not a silent miss.
		if e.cacheReadable(ctx, dir, named, &opts) {
			opts.CacheFrom = []reference.Named{named}
		}
		opts.CacheTo = []reference.Named{named}
	}
	if e.storage.ImageStore != "" {
		// A base in the read-only image store is mounted at commit through a temporary buildah
		// container (containers/storage cannot mount a read-only store's image directly), and
		// making one looks for the same unused network backend as a cache pull (cache.go).
		if err := e.prepareCachePulls(dir); err != nil {
			return fail(err)
		}
	}
	if err := e.pullFirst(ctx, b, sys, policyPath, built.guard, out); err != nil {
		return fail(e.storageFull(fmt.Errorf("building %s image: %w", b.Arch, err), out))
	}
	imageID, _, err := imagebuildah.BuildDockerfiles(ctx, e.store, opts, containerfile)
	if err != nil {
		return fail(e.storageFull(fmt.Errorf("building %s image: %w", b.Arch, built.guard.Explain(err)), out))
	}
	defer func() {
		// The tag is ours alone; dropping it lets storage reclaim the image while the intermediate
		// layers stay as cache.
		_, _ = e.store.DeleteImage(imageID, true)
	}()

	base, err := e.findBase(ctx, sys, imageID)
	if err != nil {
		return fail(fmt.Errorf("reading the base image of the %s image: %w", b.Arch, built.guard.Explain(err)))
	}
	layoutDir := filepath.Join(dir, "layout")
	dest, err := ocilayout.NewReference(layoutDir, b.Arch)
	if err != nil {
		return fail(err)
	}
	pushOpts := buildah.PushOptions{
		Store:         e.store,
		SystemContext: sys,
		ManifestType:  specsv1.MediaTypeImageManifest,
		Compression:   archive.Gzip,
		ReportWriter:  io.Discard,
	}
	if base != nil {
		pushOpts.DestinationLookupReferenceFunc = func(ref types.ImageReference) (types.ImageReference, error) {
			return reuseReference{ImageReference: ref, base: base}, nil
		}
	}
	if _, _, err := buildah.Push(ctx, imageID, dest, pushOpts); err != nil {
		return fail(e.storageFull(fmt.Errorf("exporting %s image to an OCI layout: %w", b.Arch, built.guard.Explain(err)), out))
	}
	img, err := layoutImage(layoutDir)
	if err != nil {
		return fail(err)
	}
	built.Image = img
	if base != nil {
		built.base = &baseSource{ctx: ctx, sys: sys, base: base}
		if built.reusing, err = withBaseLayers(img, built.base); err != nil {
			return fail(err)
		}
		built.Image = built.reusing
		if n := len(built.reusing.layers); n > 0 {
			fmt.Fprintf(e.out, "mosb: %d layer(s) of the base image %s are published as they are, not compressed again\n", n, base.ref)
		}
	}
	if built.Digest, err = img.Digest(); err != nil {
		return fail(err)
	}
	built.Duration = time.Since(start)
	return built, nil
}

// pullFirst pulls the images the Containerfile names (a base image of GBs, mostly) with each
// layer's progress watched and retries of our own, before buildah would pull them with neither.
func (e *Engine) pullFirst(ctx context.Context, b buildpod.ArchBuild, sys *types.SystemContext, policyPath string, guard *bounds.Guard, out io.Writer) error {
	images := pullFirst(b.Containerfile)
	if len(images) == 0 {
		return nil
	}
	rt, err := libimage.RuntimeFromStore(e.store, &libimage.RuntimeOptions{SystemContext: sys})
	if err != nil {
		return err
	}
	for _, img := range images {
		opts := libimage.CopyOptions{SystemContext: sys, SignaturePolicyPath: policyPath, Writer: out, Architecture: b.Arch, OS: "linux"}
		if err := pullWatched(ctx, rt, img, opts, e.bounds, guard, out); err != nil {
			return err
		}
	}
	return nil
}

// systemContext writes the registry configuration into the build's directory and points
// containers/image at it, so no host-wide file is consulted.
func (e *Engine) systemContext(dir, arch string, rc buildpod.RegistryConfig, cache *Cache) (*types.SystemContext, string, error) {
	return writeSystemContext(filepath.Join(dir, "sys"), e.root, arch, rc, cache)
}

// writeSystemContext writes the registry configuration and credentials into sysDir (private to one
// build) and returns a SystemContext that reads only them; root holds the blob-info cache and the
// big temporary files.
func writeSystemContext(sysDir, root, arch string, rc buildpod.RegistryConfig, cache *Cache) (*types.SystemContext, string, error) {
	files := map[string][]byte{
		"registries.conf": rc.RegistriesConf,
		"policy.json":     rc.PolicyJSON,
	}
	if len(files["policy.json"]) == 0 {
		files["policy.json"] = []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`)
	}
	auth, err := mergeAuthFiles(rc.PullAuth, cacheAuth(cache))
	if err != nil {
		return nil, "", err
	}
	files["auth.json"] = auth
	for host, pem := range rc.CAs {
		if strings.ContainsAny(host, "/\\") || host == "" || host == "." || host == ".." {
			return nil, "", fmt.Errorf("CA bundle for %q: not a registry host[:port]", host)
		}
		files[filepath.Join("certs.d", host, "ca.crt")] = pem
	}
	for name, data := range files {
		p := filepath.Join(sysDir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return nil, "", err
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return nil, "", err
		}
	}
	// registries.d (signature lookaside) stays absent: containers/image opens that directory on
	// every image source and leaves the descriptor to the garbage collector, which would hold
	// a build root's filesystem busy after the build.
	for _, d := range []string{"registries.conf.d", "certs.d"} {
		if err := os.MkdirAll(filepath.Join(sysDir, d), 0o700); err != nil {
			return nil, "", err
		}
	}
	blobCache := filepath.Join(root, "blob-info-cache")
	if err := os.MkdirAll(blobCache, 0o700); err != nil {
		return nil, "", err
	}
	return &types.SystemContext{
		SystemRegistriesConfPath:    filepath.Join(sysDir, "registries.conf"),
		SystemRegistriesConfDirPath: filepath.Join(sysDir, "registries.conf.d"),
		RegistriesDirPath:           filepath.Join(sysDir, "registries.d"),
		SignaturePolicyPath:         filepath.Join(sysDir, "policy.json"),
		AuthFilePath:                filepath.Join(sysDir, "auth.json"),
		DockerPerHostCertDirPath:    filepath.Join(sysDir, "certs.d"),
		BlobInfoCacheDir:            blobCache,
		BigFilesTemporaryDir:        filepath.Join(root, "tmp"),
		ArchitectureChoice:          arch,
		OSChoice:                    "linux",
	}, filepath.Join(sysDir, "policy.json"), nil
}

func cacheAuth(c *Cache) []byte {
	if c == nil {
		return nil
	}
	return c.Auth
}

// writeContext lays the build context out and returns the Containerfile's path.
func writeContext(dir string, b buildpod.ArchBuild) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	for rel, data := range b.ContextFiles {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return "", err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return "", err
		}
	}
	// Outside the context directory, so COPY . cannot pick it up.
	p := filepath.Join(filepath.Dir(dir), "Containerfile")
	return p, os.WriteFile(p, b.Containerfile, 0o600)
}

func layoutImage(dir string) (v1.Image, error) {
	idx, err := ggcrlayout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the built OCI layout: %w", err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) != 1 {
		return nil, fmt.Errorf("the built OCI layout holds %d images, want 1", len(m.Manifests))
	}
	return idx.Image(m.Manifests[0].Digest)
}

func hardUlimits() ([]string, error) {
	var out []string
	for _, l := range []struct {
		name     string
		resource int
	}{{"nofile", syscall.RLIMIT_NOFILE}, {"nproc", unix.RLIMIT_NPROC}} {
		var r syscall.Rlimit
		if err := syscall.Getrlimit(l.resource, &r); err != nil {
			return nil, fmt.Errorf("reading RLIMIT_%s: %w", strings.ToUpper(l.name), err)
		}
		out = append(out, fmt.Sprintf("%s=%d:%d", l.name, r.Cur, r.Max))
	}
	return out, nil
}

func randomName() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
