package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/test/harness"
)

// unresponsiveCase is a registry that misbehaves in one way, in front of the pull or the push.
type unresponsiveCase struct {
	name string
	// misbehave sets the proxy's mode; throughPull: the base image is pulled through the proxy
	// (else only the push goes through it).
	misbehave   func(p *harness.Proxy)
	throughPull bool
	// op is what the message must say was being done.
	op string
}

var unresponsiveCases = []unresponsiveCase{
	{"a: accepts and never answers", func(p *harness.Proxy) { p.Hang() }, true, "while "},
	{"b: a layer download stops", func(p *harness.Proxy) { p.StallDownloadsAfter(32 << 10) }, true, "while pulling layer sha256:"},
	// 64 KiB: more than a connection carries besides layers (pings, tokens, manifests, configs),
	// less than the layers (the base's, and the snippet's 300 kB).
	{"c: a blob upload is never taken", func(p *harness.Proxy) { p.StallUploadsAfter(64 << 10) }, false, " to os/unresponsive"},
}

// runUnresponsive builds with the registry misbehaving as c says and returns the result, the
// proxy's host, the build root and how long the build took.
func runUnresponsive(t *testing.T, f *buildFixture, c unresponsiveCase, extra ...string) (cliResult, string, string, time.Duration) {
	t.Helper()
	proxy := harness.StartProxy(t, f.reg.Host)
	f.trust(t, proxy.Host)
	return runUnresponsiveThrough(t, f, proxy, c, runCLI, extra...)
}

func runUnresponsiveThrough(t *testing.T, f *buildFixture, proxy *harness.Proxy, c unresponsiveCase, runMosb func(*testing.T, ...string) cliResult, extra ...string) (cliResult, string, string, time.Duration) {
	t.Helper()
	base, target := f.base["amd64"], f.reg.Host+"/os/unresponsive:latest"
	if c.throughPull {
		base = strings.Replace(base, f.reg.Host, proxy.Host, 1)
	} else {
		target = proxy.Host + "/os/unresponsive:latest"
	}
	mosc := filepath.Join(t.TempDir(), "mosc.yaml")
	// A layer of its own worth pushing: more than the proxy lets through.
	write(t, mosc, string(harness.BuildMachineOSConfig("unresponsive", base, target, "4.16.0-test", map[string]string{"": "RUN head -c 300000 /bin/busybox > /big"})))
	c.misbehave(proxy)
	root := t.TempDir()
	start := time.Now()
	res := runMosb(t, append([]string{"build", "-f", mosc, "--cluster-config", f.clusterDir, "--authfile", f.authFile, "--root", root}, extra...)...)
	return res, proxy.Host, root, time.Since(start)
}

// checkUnresponsive: exit 1, the reason first, the registry, the operation and the wait named,
// and nothing of the build left in the root.
func checkUnresponsive(t *testing.T, c unresponsiveCase, res cliResult, host, root string, bound time.Duration) {
	t.Helper()
	if res.code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", res.code, res.stderr)
	}
	msg := res.stderr[strings.LastIndex(res.stderr, "mosb: "):]
	wants := []string{"mosb: " + buildpod.ReasonRegistryUnresponsive + ": ", "registry " + host + " is unresponsive", c.op, "--registry-stall-timeout"}
	if bound > 0 {
		wants = append(wants, bound.String())
	}
	for _, want := range wants {
		if !strings.Contains(msg, want) {
			t.Errorf("the failure should say %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "{Env:") {
		t.Errorf("a Go struct in the message:\n%s", msg)
	}
	left, _ := filepath.Glob(filepath.Join(root, "build-*"))
	if len(left) > 0 {
		t.Errorf("the failed build left %v in its root", left)
	}
}

// With short bounds set by the flags, each way of not answering ends the build by itself, with
// the reason and a message naming the registry and the operation; a slow but steady registry
// is no failure.
func TestBuildGivesUpOnAnUnresponsiveRegistry(t *testing.T) {
	f := newBuildFixture(t, "amd64")
	short := 3 * time.Second
	flags := []string{"--registry-connect-timeout", short.String(), "--registry-response-timeout", short.String(), "--registry-stall-timeout", short.String()}
	for _, c := range unresponsiveCases {
		t.Run(c.name, func(t *testing.T) {
			res, host, root, took := runUnresponsive(t, f, c, flags...)
			checkUnresponsive(t, c, res, host, root, short)
			// No half-pushed tag: the manifest goes last, after every blob.
			ref, err := name.ParseReference(f.reg.Host + "/os/unresponsive:latest")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := remote.Head(ref, remote.WithAuth(f.reg.Auth()), remote.WithTransport(f.reg.Transport()), remote.WithContext(t.Context())); err == nil {
				t.Error("the failed build left the tag os/unresponsive:latest in the registry")
			}
			// Three attempts of a bound each, their backoff, and the build around them.
			if took > 90*time.Second {
				t.Errorf("took %s with %s bounds", took, short)
			}
		})
	}
	t.Run("d: slow but steady", func(t *testing.T) {
		trickle := unresponsiveCase{name: "d", misbehave: func(p *harness.Proxy) { p.Trickle(256 << 10) }, throughPull: true}
		res, _, _, took := runUnresponsive(t, f, trickle, flags...)
		if res.code != 0 {
			t.Fatalf("a registry that trickles steadily must not fail the build (exit %d after %s):\n%s", res.code, took, res.stderr)
		}
		if took < short {
			t.Errorf("the base came in %s: the trickle was not slower than the bounds, the case shows nothing", took)
		}
	})
}

// SIGTERM ends a build stuck on a registry at once and cleanly, whatever it was stuck in (the
// default bounds would hold it a minute more): exit 1, Interrupted, nothing of the build left in
// its root — no scratch directory, no mount — and no process of it left running.
func TestSIGTERMEndsABuildStuckOnARegistry(t *testing.T) {
	f := newBuildFixture(t, "amd64")
	for _, c := range unresponsiveCases {
		t.Run(c.name, func(t *testing.T) {
			proxy := harness.StartProxy(t, f.reg.Host)
			f.trust(t, proxy.Host)
			var p *cliProcess
			run := func(t *testing.T, args ...string) cliResult {
				p = startCLIProcess(t, t.Context(), args...)
				select {
				case <-proxy.Holding():
				case <-p.done:
					t.Fatalf("the build ended before it was stuck:\n%s", p.errOut.String())
				case <-time.After(2 * time.Minute):
					t.Fatal("the build never got stuck on the proxy")
				}
				_ = p.cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-p.done:
				case <-time.After(30 * time.Second):
					_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
					t.Fatal("mosb build did not end within 30s of SIGTERM")
				}
				return p.wait(t)
			}
			res, _, root, took := runUnresponsiveThrough(t, f, proxy, c, run)
			if res.code != exitFailed || !strings.Contains(res.stderr, "mosb: "+buildpod.ReasonInterrupted+": ") {
				t.Errorf("exit %d, want %d and %s:\n%s", res.code, exitFailed, buildpod.ReasonInterrupted, res.stderr)
			}
			if left, _ := filepath.Glob(filepath.Join(root, "build-*")); len(left) > 0 {
				t.Errorf("the interrupted build left %v in its root", left)
			}
			if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(mi), root+"/") {
				t.Errorf("the interrupted build left mounts under its root %s", root)
			}
			if err := syscall.Kill(-p.cmd.Process.Pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("a process of the interrupted build is still running (kill -0 of its group: %v)", err)
			}
			t.Logf("interrupted after %s", took.Round(time.Second))
		})
	}
}
