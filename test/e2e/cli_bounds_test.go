package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/registry/bounds"
	"github.com/mosb-dev/mosb/test/harness"
)

// With the default bounds, `mosb build` against a registry that (a) accepts and never answers,
// (b) stops every layer download after 32 KiB, or (c) never takes a blob upload ends by itself
// within five minutes, RegistryUnresponsive, naming the registry, the operation and the bound.
// It lives with the e2e tests, which run side by side, because its cases take minutes of
// waiting each (cmd/mosb tests the same cases with short bounds).
func TestMosbBuildGivesUpOnAnUnresponsiveRegistryByDefault(t *testing.T) {
	if testing.Short() {
		t.Skip("needs buildah and docker-registry")
	}
	if os.Getenv("MOSB_SKIP_SLOW") != "" {
		t.Skip("SKIPPED LOUDLY: MOSB_SKIP_SLOW is set")
	}
	t.Parallel()
	bin := mosbBinary(t)
	reg := harness.StartRegistry(t)
	base := harness.PushBaseImage(t, reg, "os/base", "amd64")
	cases := []struct {
		name        string
		misbehave   func(p *harness.Proxy)
		throughPull bool
		op          string
		bound       time.Duration // named in the message; 0: another bound speaks first
	}{
		// Against a TLS registry that never answers, containers/image's own 10 s bound on the
		// handshake comes before mosb's minute.
		{"a: accepts and never answers", func(p *harness.Proxy) { p.Hang() }, true, "while ", 0},
		{"b: a layer download stops", func(p *harness.Proxy) { p.StallDownloadsAfter(32 << 10) }, true, "while pulling layer sha256:", bounds.DefaultStall},
		{"c: a blob upload is never taken", func(p *harness.Proxy) { p.StallUploadsAfter(64 << 10) }, false, " to os/unresponsive", bounds.DefaultStall},
	}
	// One cluster configuration and auth file for all: the registry and every proxy.
	dir := t.TempDir()
	proxies := make([]*harness.Proxy, len(cases))
	hosts := []string{reg.Host}
	for i := range cases {
		proxies[i] = harness.StartProxy(t, reg.Host)
		hosts = append(hosts, proxies[i].Host)
	}
	clusterDir, authFile := filepath.Join(dir, "cluster"), filepath.Join(dir, "auth.json")
	harness.WriteClusterConfig(t, clusterDir, reg, hosts...)
	harness.WriteAuthFile(t, authFile, reg, hosts...)
	// The three builds run at once, in processes of their own (they mostly wait), while the
	// test takes one slot of -parallel; each subtest checks its build's end.
	type ended struct {
		err    error
		stderr string
		root   string
		took   time.Duration
	}
	results := make([]chan ended, len(cases))
	for i, c := range cases {
		results[i] = make(chan ended, 1)
		proxy := proxies[i]
		from, target := base, reg.Host+"/os/unresponsive:latest"
		if c.throughPull {
			from = strings.Replace(base, reg.Host, proxy.Host, 1)
		} else {
			target = proxy.Host + "/os/unresponsive:latest"
		}
		mosc := filepath.Join(t.TempDir(), "mosc.yaml")
		// A layer of its own worth pushing: more than the proxy lets through.
		if err := os.WriteFile(mosc, harness.BuildMachineOSConfig("unresponsive", from, target, "4.16.0-test", map[string]string{"": "RUN head -c 300000 /bin/busybox > /big"}), 0o600); err != nil {
			t.Fatal(err)
		}
		c.misbehave(proxy)
		root := t.TempDir()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
		t.Cleanup(cancel)
		cmd := exec.CommandContext(ctx, bin, "build", "-f", mosc, "--cluster-config", clusterDir, "--authfile", authFile, "--root", root)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		go func() {
			start := time.Now()
			err := cmd.Run()
			results[i] <- ended{err: err, stderr: stderr.String(), root: root, took: time.Since(start)}
		}()
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			proxy := proxies[i]
			r := <-results[i]
			err, took, root := r.err, r.took, r.root
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("mosb build ended with %v after %s, want exit 1:\n%s", err, took, r.stderr)
			}
			msg := r.stderr
			if i := strings.LastIndex(msg, "mosb: "); i >= 0 {
				msg = msg[i:]
			}
			wants := []string{"mosb: " + buildpod.ReasonRegistryUnresponsive + ": ", "registry " + proxy.Host + " is unresponsive", c.op, "--registry-stall-timeout"}
			if c.bound > 0 {
				wants = append(wants, c.bound.String())
			}
			for _, want := range wants {
				if !strings.Contains(msg, want) {
					t.Errorf("the failure should say %q:\n%s", want, msg)
				}
			}
			if left, _ := filepath.Glob(filepath.Join(root, "build-*")); len(left) > 0 {
				t.Errorf("the failed build left %v in its root", left)
			}
			if took > 5*time.Minute {
				t.Errorf("took %s with the default bounds; the promise is five minutes", took)
			}
			t.Logf("gave up after %s", took.Round(time.Second))
		})
	}
}
