package main

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"sigs.k8s.io/yaml"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/test/harness"
)

func TestBuildTwoArchitecturesPushesAnIndex(t *testing.T) {
	if _, err := os.Stat("/proc/sys/fs/binfmt_misc/qemu-aarch64"); err != nil {
		t.Skip("SKIPPED LOUDLY: arm64 emulation is not registered (hack/binfmt.sh, run by make test, registers it); the two-arch build cannot run here")
	}
	if _, err := os.Stat(harness.BusyboxPath("arm64")); err != nil {
		t.Skip("SKIPPED LOUDLY: no arm64 busybox (hack/arm64-busybox.sh, run by make test, fetches it)")
	}
	f := newBuildFixture(t)
	f.baseIndex = harness.PushBaseIndex(t, f.reg, "os/base", "amd64", "arm64")
	target := f.reg.Host + "/os/multi:latest"
	res := runCLI(t, "build", "-f", f.mosc(t, "multi", target, map[string]string{"": "RUN uname -m > /etc/built-on"}),
		"--arch", "amd64,arm64", "--cluster-config", f.clusterDir, "--authfile", f.authFile, "--root", t.TempDir())
	if res.code != 0 {
		t.Fatalf("exit %d:\n%s", res.code, res.stderr)
	}
	ref, err := name.ParseReference(target)
	if err != nil {
		t.Fatal(err)
	}
	opts := []remote.Option{remote.WithAuth(f.reg.Auth()), remote.WithTransport(f.reg.Transport()), remote.WithContext(t.Context())}
	idx, err := remote.Index(ref, opts...)
	if err != nil {
		t.Fatalf("%s is not an index: %v", target, err)
	}
	digest, _ := idx.Digest()
	if want := f.reg.Host + "/os/multi@" + digest.String(); res.lastLine() != want {
		t.Errorf("printed %q, the tag serves index %q", res.lastLine(), want)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"amd64": "x86_64\n", "arm64": "aarch64\n"}
	if len(m.Manifests) != len(want) {
		t.Fatalf("index has %d manifests, want 2", len(m.Manifests))
	}
	for _, d := range m.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		arch := d.Platform.Architecture
		if got := imageFiles(t, img)["etc/built-on"]; got != want[arch] {
			t.Errorf("%s image: RUN uname -m wrote %q, want %q", arch, got, want[arch])
		}
		if cfg, _ := img.ConfigFile(); cfg == nil || cfg.Architecture != arch {
			t.Errorf("%s image config says architecture %v", arch, cfg)
		}
	}
}

func TestBuildSurvivesARegistryOutageMidPush(t *testing.T) {
	f := newBuildFixture(t, "amd64")
	proxy := harness.StartProxy(t, f.reg.Host)
	f.trust(t, proxy.Host)
	// The build pulls straight from the registry; only the push goes through the proxy, which
	// cuts every connection once part of the image has been sent.
	proxy.CutAfter(64 << 10)
	go func() {
		<-proxy.Cut()
		// Down for a second: inside the push retries' backoff window (0.5s, 0.75s, 1.1s, …).
		time.AfterFunc(time.Second, func() {
			if err := proxy.Resume(); err != nil {
				t.Errorf("resuming the proxy: %v", err)
			}
		})
	}()
	target := proxy.Host + "/os/outage:latest"
	res := runCLI(t, "build", "-f", f.mosc(t, "outage", target, map[string]string{"": "RUN head -c 300000 /bin/busybox > /big"}),
		"--cluster-config", f.clusterDir, "--authfile", f.authFile, "--root", t.TempDir())
	select {
	case <-proxy.Cut():
	default:
		t.Fatal("the proxy never cut: the test did not interrupt the push")
	}
	if res.code != 0 {
		t.Fatalf("a push interrupted for a second was not retried to success (exit %d):\n%s", res.code, res.stderr)
	}
	if _, served := f.pull(t, f.reg.Host+"/os/outage:latest"); !strings.HasSuffix(res.lastLine(), served) {
		t.Errorf("printed %s, the registry serves %s", res.lastLine(), served)
	}
}

func TestBuildFailsWithinTheBoundWhenTheRegistryStaysDown(t *testing.T) {
	f := newBuildFixture(t, "amd64")
	proxy := harness.StartProxy(t, f.reg.Host)
	f.trust(t, proxy.Host)
	proxy.CutAfter(64 << 10)
	start := time.Now()
	res := runCLI(t, "build", "-f", f.mosc(t, "down", proxy.Host+"/os/down:latest", map[string]string{"": "RUN head -c 300000 /bin/busybox > /big"}),
		"--cluster-config", f.clusterDir, "--authfile", f.authFile, "--root", t.TempDir())
	if res.code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", res.code, res.stderr)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Minute {
		t.Errorf("gave up after %s; the retry bound is 2 minutes", elapsed)
	}
	msg := res.stderr[strings.LastIndex(res.stderr, "mosb:"):]
	if !strings.Contains(msg, proxy.Host) {
		t.Errorf("the error does not name the registry %s:\n%s", proxy.Host, msg)
	}
}

func TestPushPasswordIsInNoBlobAndNoOutput(t *testing.T) {
	f := newBuildFixture(t, "amd64")
	target := f.reg.Host + "/os/secret:latest"
	// The snippet looks for anything credential-like the build could see and keeps it.
	snippet := "RUN (env; find / -xdev -name '*auth*' 2>/dev/null; cat /run/secrets/* 2>/dev/null) > /leak.txt || true"
	res := runCLI(t, "build", "-f", f.mosc(t, "secret", target, map[string]string{"": snippet}),
		"--cluster-config", f.clusterDir, "--authfile", f.authFile, "--root", t.TempDir(), "-o", "yaml")
	if res.code != 0 {
		t.Fatalf("exit %d:\n%s", res.code, res.stderr)
	}
	if strings.Contains(res.stdout+res.stderr, f.reg.Password) {
		t.Fatal("the password appears in mosb's output")
	}
	img, _ := f.pull(t, target)
	blobs := map[string][]byte{}
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	blobs["manifest"] = raw
	if blobs["config"], err = img.RawConfigFile(); err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		for kind, open := range map[string]func() (io.ReadCloser, error){"compressed": l.Compressed, "uncompressed": l.Uncompressed} {
			rc, err := open()
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			blobs[kind+" layer "+string(rune('0'+i))] = b
		}
	}
	if len(layers) < 2 {
		t.Fatalf("image has %d layers; the RUN layer is missing", len(layers))
	}
	for what, b := range blobs {
		if bytes.Contains(b, []byte(f.reg.Password)) {
			t.Errorf("the push password is in the %s", what)
		}
	}

	// -o yaml: the MachineOSConfig with the digest in status.
	var m mosbv1.MachineOSConfig
	if err := yaml.UnmarshalStrict([]byte(res.stdout), &m); err != nil {
		t.Fatalf("-o yaml printed no MachineOSConfig: %v\n%s", err, res.stdout)
	}
	d, _ := img.Digest()
	if want := f.reg.Host + "/os/secret@" + d.String(); string(m.Status.CurrentImagePullspec) != want {
		t.Errorf("status.currentImagePullspec = %q, want %q", m.Status.CurrentImagePullspec, want)
	}
}

func TestCacheRepoReusesEarlierLayersOnAnotherMachine(t *testing.T) {
	f := newBuildFixture(t, "amd64")
	cache := f.reg.Host + "/os/cache"
	first := "RUN echo one > /one\nRUN echo two > /two\nRUN echo three > /three"
	second := "RUN echo one > /one\nRUN echo two > /two\nRUN echo changed > /three"
	build := func(content string) cliResult {
		// A fresh root each time stands for another CI machine: only the cache repository is shared.
		return runCLI(t, "build", "-f", f.mosc(t, "cached", f.reg.Host+"/os/cached:latest", map[string]string{"": content}),
			"--cluster-config", f.clusterDir, "--authfile", f.authFile, "--root", t.TempDir(), "--cache-repo", cache)
	}
	if res := build(first); res.code != 0 {
		t.Fatalf("first build exit %d:\n%s", res.code, res.stderr)
	}
	res := build(second)
	if res.code != 0 {
		t.Fatalf("second build exit %d:\n%s", res.code, res.stderr)
	}
	hits := strings.Count(res.stderr, "Using cache")
	if hits < 2 {
		t.Errorf("the rebuild reused %d layers from %s, want the two unchanged RUN steps at least:\n%s", hits, cache, res.stderr)
	}
	if !strings.Contains(res.stderr, "RUN echo changed") {
		t.Errorf("the changed step was not built:\n%s", res.stderr)
	}
}

// Every architecture's image starts with its base image's blob, as the base has it, and the push
// sends the new layers only: the base's blobs are mounted from the base's repository.
func TestBuildTwoArchitecturesReuseTheBaseBlobs(t *testing.T) {
	if _, err := os.Stat("/proc/sys/fs/binfmt_misc/qemu-aarch64"); err != nil {
		t.Skip("SKIPPED LOUDLY: arm64 emulation is not registered (hack/binfmt.sh, run by make test, registers it); the two-arch build cannot run here")
	}
	if _, err := os.Stat(harness.BusyboxPath("arm64")); err != nil {
		t.Skip("SKIPPED LOUDLY: no arm64 busybox (hack/arm64-busybox.sh, run by make test, fetches it)")
	}
	f := newBuildFixture(t)
	// Pulls and pushes go through the proxy, which counts what mosb sends to the registry.
	proxy := harness.StartProxy(t, f.reg.Host)
	f.trust(t, proxy.Host)
	f.baseIndex = proxy.Host + strings.TrimPrefix(harness.PushBaseIndex(t, f.reg, "os/base", "amd64", "arm64"), f.reg.Host)
	opts := []remote.Option{remote.WithAuth(f.reg.Auth()), remote.WithTransport(f.reg.Transport()), remote.WithContext(t.Context())}
	firstLayer := func(idx v1.ImageIndex) map[string]v1.Descriptor {
		t.Helper()
		m, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]v1.Descriptor{}
		for _, d := range m.Manifests {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			im, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			out[d.Platform.Architecture] = im.Layers[0]
		}
		return out
	}
	baseRef, err := name.ParseReference(f.baseIndex)
	if err != nil {
		t.Fatal(err)
	}
	baseIdx, err := remote.Index(baseRef, opts...)
	if err != nil {
		t.Fatal(err)
	}
	base := firstLayer(baseIdx)
	var baseSize int64
	for _, d := range base {
		baseSize += d.Size
	}

	target := proxy.Host + "/os/reuse:latest"
	before := proxy.Sent()
	res := runCLI(t, "build", "-f", f.mosc(t, "reuse", target, map[string]string{"": "RUN uname -m > /etc/built-on"}),
		"--arch", "amd64,arm64", "--cluster-config", f.clusterDir, "--authfile", f.authFile, "--root", t.TempDir())
	if res.code != 0 {
		t.Fatalf("exit %d:\n%s", res.code, res.stderr)
	}
	sent := proxy.Sent() - before
	ref, err := name.ParseReference(f.reg.Host + "/os/reuse:latest")
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(ref, opts...)
	if err != nil {
		t.Fatal(err)
	}
	got := firstLayer(idx)
	for arch, want := range base {
		if got[arch].Digest != want.Digest {
			t.Errorf("%s image's first layer is %s, want the base image's blob %s", arch, got[arch].Digest, want.Digest)
		}
	}
	t.Logf("base layers %d bytes; mosb sent %d bytes to the registry", baseSize, sent)
	if sent >= baseSize/4 {
		t.Errorf("mosb sent %d bytes to the registry, base layers are %d bytes: the base was uploaded again", sent, baseSize)
	}
}

// A build whose steps all come from the cache repository publishes the same image as one that
// ran them: both reuse the base image's blobs, and compress the same new layers.
func TestBuildFromTheCacheRepoMakesTheSameImage(t *testing.T) {
	f := newBuildFixture(t, "amd64")
	content := "RUN echo one > /one\nRUN echo two > /two"
	target := f.reg.Host + "/os/cached-same:latest"
	build := func(args ...string) cliResult {
		t.Helper()
		res := runCLI(t, append([]string{"build", "-f", f.mosc(t, "cached-same", target, map[string]string{"": content}),
			"--cluster-config", f.clusterDir, "--authfile", f.authFile, "--root", t.TempDir()}, args...)...)
		if res.code != 0 {
			t.Fatalf("exit %d:\n%s", res.code, res.stderr)
		}
		if !strings.Contains(res.stderr, "published as they are") {
			t.Errorf("the base layer was not reused:\n%s", res.stderr)
		}
		return res
	}
	plain := build()
	cache := f.reg.Host + "/os/cache-same"
	filled := build("--cache-repo", cache)
	fromCache := build("--cache-repo", cache)
	if hits := strings.Count(fromCache.stderr, "Using cache"); hits < 2 {
		t.Errorf("the third build took %d steps from the cache, want both:\n%s", hits, fromCache.stderr)
	}
	if plain.lastLine() != filled.lastLine() || plain.lastLine() != fromCache.lastLine() {
		t.Errorf("the same inputs built different images:\nwithout a cache:     %s\nfilling the cache:   %s\nfrom the cache:      %s",
			plain.lastLine(), filled.lastLine(), fromCache.lastLine())
	}
}
