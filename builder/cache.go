package builder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/containers/buildah"
	"github.com/containers/buildah/define"
	"github.com/docker/distribution/registry/api/errcode"
	v2 "github.com/docker/distribution/registry/api/v2"
	"go.podman.io/common/pkg/config"
	"go.podman.io/image/v5/docker/reference"
)

// The cache repository (--cache-from) is read by buildah itself: for every step it pulls
// repo:<cache key> with buildah.Pull. In buildah v1.43 buildah.Pull first resolves the host's
// container network backend (getNetworkInterface, "before we pull any images") even though a
// pull uses no network backend; built without the cni tag, that backend is netavark, and
// containers/common refuses to go on unless it finds a netavark binary in containers.conf's
// helper_binaries_dir. imagebuildah's pullCache logs the refusal at debug level and builds the
// step, so on a machine or in an image without netavark no step was ever taken from the cache,
// and nothing said so.
//
// mosb never uses a container network (chroot isolation, the network of the host or pod; see
// hostNetwork), so it gives buildah's pull what it looks for and nothing more: a containers.conf
// module, loaded as the process's default configuration over the host's own files, that names
// netavark as the backend and adds a directory holding a placeholder "netavark" to
// helper_binaries_dir (after the host's directories: a real netavark, where installed, is found
// first). The placeholder is only ever looked up, never run; if it were run it would say what it is
// and fail.
//
// And whatever else keeps buildah from reading the cache, the build says so: before the build, the
// engine asks buildah.Pull, with the build's registry configuration, credentials, policy and
// retries as the cache pulls have them, for a tag no cache key can be. "Manifest unknown" means the
// repository can be read (a tag that is missing is an ordinary cache miss); any other error is
// printed as a warning with its reason, and the build runs without --cache-from (every step is
// built; the layers are still pushed to the repository). What can only fail once an entry has been
// found (a signature policy rejecting it, a blob that cannot be fetched) is not seen by the probe.

// cacheProbeTag is the tag the readability check asks for. buildah's cache keys are 64 hex
// digits, so it is never one of them.
const cacheProbeTag = "mosb-cache-probe"

const placeholderNetavark = `#!/bin/sh
# Written by mosb. This is not netavark. buildah looks for a netavark binary before every pull it
# makes for a cache repository, only to see that one exists; mosb builds never set up a container
# network (chroot isolation, on the network the build runs in), so nothing ever runs this.
echo "mosb: $0 is a placeholder, not netavark: mosb builds use the network they run in" >&2
exit 1
`

// networkHelpers are the directories holding the placeholder, one per engine root used in this
// process. The containers.conf default is process-wide; listing all of them keeps it valid while
// any of those roots exists.
var networkHelpers struct {
	sync.Mutex
	dirs []string
}

// cacheReadable reports whether buildah's cache pulls can read repo, after making them able to on a
// machine without netavark. When they cannot, it prints a warning with the reason to the build
// output. scratch is the build's private directory.
func (e *Engine) cacheReadable(ctx context.Context, scratch string, repo reference.Named, opts *define.BuildOptions) bool {
	err := e.prepareCachePulls(scratch)
	if err == nil {
		err = e.probeCache(ctx, repo, opts)
	}
	if err == nil {
		return true
	}
	fmt.Fprintf(e.out, "mosb: warning: the cache repository %s could not be read: %s — no step is taken from it, every step is built\n",
		reference.FamiliarString(repo), strings.Join(strings.Fields(err.Error()), " "))
	return false
}

// prepareCachePulls writes the placeholder netavark under the engine's root and loads the
// containers.conf module that points buildah's pulls at it.
func (e *Engine) prepareCachePulls(scratch string) error {
	dir := filepath.Join(e.root, "network-helpers")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "netavark"), []byte(placeholderNetavark), 0o700); err != nil {
		return err
	}
	networkHelpers.Lock()
	defer networkHelpers.Unlock()
	if !slices.Contains(networkHelpers.dirs, dir) {
		networkHelpers.dirs = append(networkHelpers.dirs, dir)
	}
	var list strings.Builder
	for _, d := range networkHelpers.dirs {
		// TOML literal strings: no escapes, so only a quote or a line break could break one.
		if strings.ContainsAny(d, "'\n\r") {
			return fmt.Errorf("engine root %q: a path with a quote or a line break cannot go into containers.conf", d)
		}
		fmt.Fprintf(&list, "'%s', ", d)
	}
	module := filepath.Join(scratch, "containers.conf")
	conf := "# mosb: buildah's pulls look for a network backend they do not use (see builder/cache.go).\n" +
		"[engine]\nhelper_binaries_dir = [" + list.String() + "{append = true}]\n\n" +
		"[network]\nnetwork_backend = \"netavark\"\n"
	if err := os.WriteFile(module, []byte(conf), 0o600); err != nil {
		return err
	}
	if _, err := config.New(&config.Options{Modules: []string{module}, SetDefault: true}); err != nil {
		return fmt.Errorf("loading containers.conf with %s: %w", module, err)
	}
	return nil
}

// probeCache pulls repo:cacheProbeTag the way imagebuildah pulls a cache entry. A missing tag or
// repository is a readable, empty cache; any other error is why the cache cannot be read.
func (e *Engine) probeCache(ctx context.Context, repo reference.Named, opts *define.BuildOptions) error {
	tagged, err := reference.WithTag(repo, cacheProbeTag)
	if err != nil {
		return err
	}
	id, err := buildah.Pull(ctx, tagged.String(), buildah.PullOptions{
		SignaturePolicyPath: opts.SignaturePolicyPath,
		Store:               e.store,
		SystemContext:       opts.SystemContext,
		MaxRetries:          opts.MaxPullPushRetries,
		RetryDelay:          opts.PullPushRetryDelay,
		PullPolicy:          define.PullAlways,
	})
	if err == nil {
		// Someone pushed that tag: the cache can be read. The image is of no use to the build.
		_, _ = e.store.DeleteImage(id, true)
		return nil
	}
	if isMissingManifest(err) {
		return nil
	}
	return err
}

// isMissingManifest says whether a registry answered that the tag or the repository does not exist.
func isMissingManifest(err error) bool {
	var coder errcode.ErrorCoder
	if errors.As(err, &coder) {
		switch coder.ErrorCode() {
		case v2.ErrorCodeManifestUnknown, v2.ErrorCodeNameUnknown:
			return true
		}
	}
	return false
}
