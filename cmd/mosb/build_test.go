package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/mosb-dev/mosb/test/harness"
)

// userSnippet uses RUN, COPY (from an image: the build context holds only mosb's files) and LABEL.
func userSnippet(base string) string {
	return `RUN mkdir -p /usr/share/mosb-test && uname -m > /usr/share/mosb-test/arch && echo built-by-run > /usr/share/mosb-test/run
COPY --from=` + base + ` /etc/os-release /usr/share/mosb-test/os-release
LABEL org.example.team=platform`
}

func TestBuildPushesWhatTheSnippetMade(t *testing.T) {
	f := newBuildFixture(t, "amd64")
	mc := f.renderedMachineConfig(t)
	target := f.reg.Host + "/os/worker:latest"
	res := runCLI(t, "build", "-f", f.mosc(t, "worker", target, map[string]string{"": userSnippet(f.base["amd64"])}),
		"--machineconfig", mc, "--cluster-config", f.clusterDir, "--authfile", f.authFile, "--root", t.TempDir())
	if res.code != 0 {
		t.Fatalf("mosb build exited %d:\n%s", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, "STEP") {
		t.Errorf("no build progress shown:\n%s", res.stderr)
	}
	pullspec := res.lastLine()
	if !strings.HasPrefix(pullspec, f.reg.Host+"/os/worker@sha256:") {
		t.Fatalf("last line %q is not the digested pullspec", pullspec)
	}

	img, served := f.pull(t, target)
	if want := strings.TrimPrefix(pullspec, f.reg.Host+"/os/worker@"); served != want {
		t.Errorf("the tag serves %s, mosb printed %s", served, want)
	}
	files := imageFiles(t, img)
	if got := files["usr/share/mosb-test/run"]; got != "built-by-run\n" {
		t.Errorf("file made by RUN = %q", got)
	}
	if got := files["usr/share/mosb-test/arch"]; got != "x86_64\n" {
		t.Errorf("uname -m in RUN = %q", got)
	}
	if !strings.Contains(files["usr/share/mosb-test/os-release"], "mosb test OS") {
		t.Errorf("COPY --from=<image> did not copy /etc/os-release: %q", files["usr/share/mosb-test/os-release"])
	}
	if got := files["etc/machine-config-daemon/currentconfig"]; !strings.Contains(got, `"rendered-worker-abc"`) {
		t.Errorf("currentconfig = %q, want the rendered MachineConfig", got)
	}
	if got := files["etc/mosb-laid"]; got != "laid by the MachineConfig\n" || files["etc/systemd/system/mosb-laid.service"] == "" {
		t.Errorf("the MachineConfig's file %q and unit are not laid into the image", got)
	}
	if !strings.Contains(res.stderr, "rendered MachineConfig rendered-worker-abc in the image: 1 files") {
		t.Errorf("the output does not say what of the MachineConfig is in the image:\n%s", res.stderr)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"org.example.team":                                         "platform",
		"machineconfiguration.openshift.io/pool":                   "worker",
		"machineconfiguration.openshift.io/rendered-machineconfig": "rendered-worker-abc",
		"machineconfiguration.openshift.io/release-version":        "4.16.0-test",
		"machineconfiguration.openshift.io/base-image":             f.base["amd64"],
	} {
		if got := cfg.Config.Labels[k]; got != v {
			t.Errorf("label %s = %q, want %q", k, got, v)
		}
	}
}

func TestBuildIsReproducible(t *testing.T) {
	f := newBuildFixture(t, "amd64")
	target := f.reg.Host + "/os/repro:latest"
	mosc := f.mosc(t, "repro", target, map[string]string{"": userSnippet(f.base["amd64"])})
	var digests []string
	for i := 0; i < 2; i++ {
		// A fresh storage root each time: nothing is reused, the image is built twice.
		res := runCLI(t, "build", "-f", mosc, "--machineconfig", f.renderedMachineConfig(t), "--cluster-config", f.clusterDir, "--authfile", f.authFile, "--root", t.TempDir())
		if res.code != 0 {
			t.Fatalf("build %d exited %d:\n%s", i+1, res.code, res.stderr)
		}
		digests = append(digests, res.lastLine())
	}
	if digests[0] != digests[1] {
		t.Errorf("the same inputs built two different images:\n%s\n%s", digests[0], digests[1])
	}
}

func TestBuildWithWrongPushCredentialsSaysCredentials(t *testing.T) {
	f := newBuildFixture(t, "amd64")
	wrong := filepath.Join(f.dir, "wrong.json")
	write(t, wrong, string(dockerConfig(f.reg.Host, f.reg.Username, "not-the-password")))
	res := runCLI(t, "build", "-f", f.mosc(t, "creds", f.reg.Host+"/os/creds:latest", map[string]string{"": "RUN true"}),
		"--cluster-config", f.clusterDir, "--pull-secret", f.authFile, "--push-secret", wrong, "--root", t.TempDir())
	if res.code != 1 {
		t.Fatalf("exit code %d, want 1 (build/push failure):\n%s", res.code, res.stderr)
	}
	msg := res.stderr[strings.LastIndex(res.stderr, "mosb:"):]
	for _, want := range []string{"credentials", f.reg.Host, "401"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q:\n%s", want, msg)
		}
	}
	if strings.Contains(res.stderr, "not-the-password") || strings.Contains(res.stderr, f.reg.Password) {
		t.Error("a password reached the output")
	}
}

func TestBuildInvalidInputExitsTwo(t *testing.T) {
	f := newBuildFixture(t)
	for name, content := range map[string]string{
		"bad instruction": "RUN true\nFROBNICATE now",
		"unknown stage":   "COPY --from=0 /a /b",
	} {
		t.Run(name, func(t *testing.T) {
			mosc := f.mosc(t, "invalid", "registry.example.com/os/x:latest", map[string]string{"": content})
			// The base image is only needed for a real build; validation happens first.
			res := runCLI(t, "build", "-f", mosc, "--authfile", f.authFile, "--root", t.TempDir())
			if res.code != 2 {
				t.Fatalf("exit %d, want 2:\n%s", res.code, res.stderr)
			}
			if !strings.Contains(res.stderr, "InvalidContainerfile") || !strings.Contains(res.stderr, "line") {
				t.Errorf("message does not give the reason and the line:\n%s", res.stderr)
			}
		})
	}
}

func (f *buildFixture) pull(t *testing.T, spec string) (v1.Image, string) {
	t.Helper()
	ref, err := name.ParseReference(spec)
	if err != nil {
		t.Fatal(err)
	}
	// Layers are fetched lazily, after this returns: the context lives as long as the test.
	desc, err := remote.Get(ref, remote.WithAuth(f.reg.Auth()), remote.WithTransport(f.reg.Transport()), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("pulling %s: %v", spec, err)
	}
	if desc.MediaType.IsIndex() {
		return nil, desc.Digest.String()
	}
	img, err := desc.Image()
	if err != nil {
		t.Fatal(err)
	}
	return img, desc.Digest.String()
}

// imageFiles is every regular file of the image's layers (later layers win).
func imageFiles(t *testing.T, img v1.Image) map[string]string {
	t.Helper()
	files, err := harness.ImageFiles(img)
	if err != nil {
		t.Fatal(err)
	}
	return files
}
