package builder_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mosb-dev/mosb/builder"
	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/registry"
	"github.com/mosb-dev/mosb/test/harness"
)

// TestRunStepsGetMountsAndProxyThatNoLayerHolds: a RUN step reads an entitlement and a repository
// file from the run mounts and sees the proxy in both spellings; afterwards no byte of either file,
// nor the proxy's password, is in any layer, the image config or its history.
func TestRunStepsGetMountsAndProxyThatNoLayerHolds(t *testing.T) {
	if testing.Short() {
		t.Skip("needs buildah and a registry")
	}
	const (
		entitlement   = "ENTITLEMENT-KEY-BYTES-4f1d9c"
		repo          = "[mosb-private]\nbaseurl=http://repo.example/REPO-BYTES-77ab\n"
		proxyPassword = "pr0xy-pa55-c31e"
	)
	entDir, repoDir := t.TempDir(), t.TempDir()
	for dir, file := range map[string][2]string{entDir: {"key.pem", entitlement}, repoDir: {"private.repo", repo}} {
		if err := os.WriteFile(filepath.Join(dir, file[0]), []byte(file[1]), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	reg := harness.StartRegistry(t)
	base := harness.PushBaseImage(t, reg, "os/base", "amd64")
	var progress bytes.Buffer
	e, err := builder.New(t.TempDir(), builder.WithProgress(&progress))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	proxy := registry.Proxy{HTTPProxy: "http://mosb:" + proxyPassword + "@proxy.invalid:3128", NoProxy: "localhost"}
	// The step names no secret itself (its text is in the history and the output): it checks a
	// checksum of the entitlement, a word of the repository file and the proxy's shape.
	cf := fmt.Sprintf(`FROM %s
RUN md5sum /etc/pki/entitlement/key.pem | cut -d' ' -f1 > /etc/entitlement-sum && grep -q REPO-BYTES /etc/yum.repos.d/private.repo && \
    case "$http_proxy" in http://mosb:*@proxy.invalid:3128) ;; *) exit 3 ;; esac && test "$HTTP_PROXY" = "$http_proxy" && \
    test "$no_proxy" = localhost && echo ran > /etc/ran
`, base)
	run := builder.RunEnvironment{
		Mounts: []builder.Mount{{Source: entDir, Target: "/etc/pki/entitlement"}, {Source: repoDir, Target: "/etc/yum.repos.d"}},
		Proxy:  proxy,
	}
	built, err := e.BuildImage(ctx, buildpod.ArchBuild{Arch: "amd64", Containerfile: []byte(cf)},
		buildpod.RegistryConfig{PullAuth: reg.DockerConfigJSON(), CAs: map[string][]byte{reg.Host: reg.CA.PEM}}, nil, run)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	defer built.Release()

	secrets := []string{entitlement, "REPO-BYTES-77ab", proxyPassword}
	ran, sum := false, ""
	if err := harness.WalkImage(built.Image, func(h *tar.Header, r io.Reader) error {
		data, err := io.ReadAll(r)
		switch strings.TrimPrefix(h.Name, "./") {
		case "etc/ran":
			ran = true
		case "etc/entitlement-sum":
			sum = strings.TrimSpace(string(data))
		}
		for _, s := range secrets {
			if strings.Contains(string(data), s) || strings.Contains(h.Name, "key.pem") || strings.Contains(h.Name, "private.repo") {
				t.Errorf("layer entry %s holds a run mount's file or the proxy password", h.Name)
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%x", md5.Sum([]byte(entitlement))); !ran || sum != want {
		t.Errorf("the RUN step ran %v and read an entitlement summing to %q, want %q:\n%s", ran, sum, want, progress.String())
	}
	rawConfig, err := built.Image.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if strings.Contains(string(rawConfig), s) {
			t.Errorf("the image config (env, history) holds %.8s…", s)
		}
	}
	if strings.Contains(progress.String(), proxyPassword) {
		t.Error("the build output shows the proxy password")
	}

	if _, err := e.BuildImage(ctx, buildpod.ArchBuild{Arch: "amd64", Containerfile: []byte(cf)}, buildpod.RegistryConfig{}, nil,
		builder.RunEnvironment{Mounts: []builder.Mount{{Source: filepath.Join(entDir, "missing"), Target: "/etc/pki/entitlement"}}}); err == nil {
		t.Error("a run mount without its directory was accepted")
	}
}
