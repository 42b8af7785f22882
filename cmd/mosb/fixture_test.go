package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mosb-dev/mosb/test/harness"
)

// buildFixture is a registry with the tiny base image, and the files `mosb build` reads.
type buildFixture struct {
	reg        *harness.Registry
	base       map[string]string // arch -> base image by digest
	dir        string
	clusterDir string
	authFile   string
	hosts      []string
	// baseIndex, when set, is the base image of every MachineOSConfig: a multi-arch index.
	baseIndex string
}

func newBuildFixture(t *testing.T, arches ...string) *buildFixture {
	t.Helper()
	if testing.Short() {
		t.Skip("needs buildah and docker-registry")
	}
	f := &buildFixture{reg: harness.StartRegistry(t), base: map[string]string{}, dir: t.TempDir()}
	for _, a := range arches {
		f.base[a] = harness.PushBaseImage(t, f.reg, "os/base", a)
	}
	f.clusterDir = filepath.Join(f.dir, "cluster")
	f.authFile = filepath.Join(f.dir, "auth.json")
	f.trust(t, f.reg.Host)
	return f
}

// trust writes the cluster config (an additionalTrustedCA entry per host, all the fixture
// registry's CA) and an auth file (the registry's credentials per host) for these hosts: the
// registry itself, and proxies in front of it.
func (f *buildFixture) trust(t *testing.T, hosts ...string) {
	t.Helper()
	f.hosts = append(f.hosts, hosts...)
	harness.WriteClusterConfig(t, f.clusterDir, f.reg, f.hosts...)
	harness.WriteAuthFile(t, f.authFile, f.reg, f.hosts...)
}

// mosc writes a MachineOSConfig with the given user content (noarch when arch is "") and returns its path.
func (f *buildFixture) mosc(t *testing.T, name, target string, content map[string]string) string {
	t.Helper()
	base := f.base["amd64"]
	if base == "" {
		for _, b := range f.base {
			base = b
		}
	}
	if f.baseIndex != "" {
		base = f.baseIndex
	}
	if base == "" {
		// Tests of validation never pull it.
		base = "registry.example.com/os/base@sha256:" + strings.Repeat("0", 64)
	}
	p := filepath.Join(f.dir, name+".yaml")
	write(t, p, string(harness.BuildMachineOSConfig(name, base, target, "4.16.0-test", content)))
	return p
}

// renderedMachineConfig writes a rendered MachineConfig named rendered-worker-abc and returns its path.
func (f *buildFixture) renderedMachineConfig(t *testing.T) string {
	t.Helper()
	mc := filepath.Join(f.dir, "mc.yaml")
	write(t, mc, `apiVersion: machineconfiguration.openshift.io/v1
kind: MachineConfig
metadata:
  name: rendered-worker-abc
spec:
  config:
    ignition:
      version: 3.4.0
    storage:
      files:
      - path: /etc/mosb-laid
        mode: 420
        contents:
          source: data:,laid%20by%20the%20MachineConfig%0A
    systemd:
      units:
      - name: mosb-laid.service
        enabled: true
        contents: |
          [Service]
          ExecStart=/bin/true
          [Install]
          WantedBy=multi-user.target
`)
	return mc
}

type cliResult struct {
	code           int
	stdout, stderr string
}

// lastLine is what scripts read: the digested pullspec.
func (r cliResult) lastLine() string {
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	return lines[len(lines)-1]
}

func runCLI(t *testing.T, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, args, &out, &errOut)
	return cliResult{code: code, stdout: out.String(), stderr: errOut.String()}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
