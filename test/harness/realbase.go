package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// The realistic base image is what real users build on, in shape: an OS of ~1.2 GB uncompressed
// (kernel, systemd, NetworkManager, podman, containerd, ...) in ~50 layers of very uneven sizes,
// split by owning package as rpm-ostree chunks RHCOS / Fedora CoreOS images. hack/realistic-base.sh
// makes it from Debian's archive (minutes, once; cached under ~/.cache/mosb/realistic-base) as an
// OCI image layout; test/realbase does the splitting.

// RealisticBaseUnsupported says why this machine cannot make the realistic base image, or "" when
// it can (or already has it cached).
func RealisticBaseUnsupported() string {
	if _, err := runRealbaseScript(io.Discard, "--cached"); err == nil {
		return ""
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		return "it is built for linux/amd64 by running Debian amd64 binaries in a chroot; this is " + runtime.GOOS + "/" + runtime.GOARCH
	}
	if os.Geteuid() != 0 {
		return "debootstrap, chroot and its mounts need root"
	}
	for _, bin := range []string{"unshare", "chroot", "go"} {
		if _, err := exec.LookPath(bin); err != nil {
			return bin + " is not installed"
		}
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		if _, err := exec.LookPath("apt-get"); err != nil {
			return "debootstrap is not installed and there is no apt-get to install it"
		}
	}
	return ""
}

// RealisticBaseCached says whether the realistic base image is built and cached on this machine
// (then using it costs seconds, not minutes).
func RealisticBaseCached() bool {
	_, err := runRealbaseScript(io.Discard, "--cached")
	return err == nil
}

var realbase struct {
	sync.Mutex
	layout string
}

// realbaseExitUnsupported is the script's exit code when the machine cannot build the image;
// realbaseExitNotCached its answer to --cached when it is not built yet.
const (
	realbaseExitUnsupported = 2
	realbaseExitNotCached   = 3
)

func runRealbaseScript(stderr io.Writer, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(RepoRoot(), "hack", "realistic-base.sh"), args...)
	cmd.Stderr = stderr
	out, err := cmd.Output()
	if err != nil {
		return "", err
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}

// RealisticBaseLayout returns the OCI image layout directory of the realistic base image, building
// it with hack/realistic-base.sh when it is not cached yet (minutes; its progress goes to stderr).
// Where the machine cannot build it, the test is skipped loudly (SKIPPED: ... why).
func RealisticBaseLayout(t T) string {
	t.Helper()
	realbase.Lock()
	defer realbase.Unlock()
	if realbase.layout != "" {
		return realbase.layout
	}
	if dir, err := runRealbaseScript(io.Discard, "--cached"); err == nil {
		realbase.layout = dir
		return dir
	}
	if why := RealisticBaseUnsupported(); why != "" {
		skipLoudly(t, "the realistic base image cannot be made on this machine: "+why)
	}
	t.Logf("building the realistic base image with hack/realistic-base.sh (cached afterwards; the first build takes minutes)")
	var stderr bytes.Buffer
	start := time.Now()
	dir, err := runRealbaseScript(io.MultiWriter(os.Stderr, &stderr))
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == realbaseExitUnsupported {
		skipLoudly(t, "the realistic base image cannot be made on this machine: "+strings.TrimSpace(stderr.String()))
	}
	if err != nil {
		t.Fatalf("hack/realistic-base.sh failed (run `make realistic-base` to see why): %v", err)
	}
	t.Logf("realistic base image built in %s: %s", time.Since(start).Round(time.Second), dir)
	realbase.layout = dir
	return dir
}

// skipLoudly skips a test (or benchmark) with a SKIPPED line that `make test`'s filter prints;
// a caller that cannot skip (a program) fails instead.
func skipLoudly(t T, msg string) {
	t.Helper()
	if s, ok := t.(interface{ Skip(args ...any) }); ok {
		s.Skip("SKIPPED: " + msg)
	}
	t.Fatal(msg)
}

// RealisticBaseShape is the realistic base image's shape, for a benchmark's table.
type RealisticBaseShape struct {
	Layout string // the OCI image layout directory
	Image  string // the manifest digest
	Layers int
	// Uncompressed and Compressed add up the layers' tars and their gzip blobs; Largest and
	// Smallest are the extreme layers' uncompressed sizes. In bytes.
	Uncompressed, Compressed int64
	Largest, Smallest        int64
}

func (s RealisticBaseShape) String() string {
	return fmt.Sprintf("%d layers, %.0f MB uncompressed (%.0f MB gzip), layers of %.3f to %.0f MB",
		s.Layers, float64(s.Uncompressed)/1e6, float64(s.Compressed)/1e6, float64(s.Smallest)/1e6, float64(s.Largest)/1e6)
}

// RealisticBaseInfo returns the realistic base image's shape (building it if need be), from the
// info.json test/realbase writes beside the layout.
func RealisticBaseInfo(t T) RealisticBaseShape {
	t.Helper()
	dir := RealisticBaseLayout(t)
	data, err := os.ReadFile(filepath.Join(filepath.Dir(dir), "info.json"))
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Image        string `json:"image"`
		Layers       int    `json:"layers"`
		Compressed   int64  `json:"compressed"`
		Uncompressed int64  `json:"uncompressed"`
		LayerInfo    []struct {
			Uncompressed int64 `json:"uncompressed"`
		} `json:"layerInfo"`
	}
	if err := json.Unmarshal(data, &info); err != nil {
		t.Fatalf("%s/../info.json: %v", dir, err)
	}
	s := RealisticBaseShape{Layout: dir, Image: info.Image, Layers: info.Layers, Uncompressed: info.Uncompressed, Compressed: info.Compressed}
	for i, l := range info.LayerInfo {
		if i == 0 || l.Uncompressed > s.Largest {
			s.Largest = l.Uncompressed
		}
		if i == 0 || l.Uncompressed < s.Smallest {
			s.Smallest = l.Uncompressed
		}
	}
	return s
}

// RealisticBase pushes the realistic base image (building it first if need be) to repo on the
// registry and returns it by digest: host/repo@sha256:...
func RealisticBase(t T, r *Registry, repo string) string {
	t.Helper()
	dir := RealisticBaseLayout(t)
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 {
		t.Fatalf("%s holds %d manifests, want 1", dir, len(m.Manifests))
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(r.Host+"/"+repo+":realistic", nameOpts(r)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if err := remote.Write(ref, img, remote.WithAuth(r.Auth()), remote.WithTransport(r.Transport()), remote.WithContext(ctx)); err != nil {
		t.Fatalf("pushing the realistic base image to %s: %v", ref, err)
	}
	return r.Host + "/" + repo + "@" + m.Manifests[0].Digest.String()
}
