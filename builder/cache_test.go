package builder_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mosb-dev/mosb/builder"
	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/test/harness"
)

// buildWithCache builds FROM base plus one RUN step with a fresh engine (another machine: nothing
// cached locally) and the cache repository cache; it returns the build output and error.
func buildWithCache(t *testing.T, base string, rc buildpod.RegistryConfig, cache *builder.Cache) (string, error) {
	t.Helper()
	var progress bytes.Buffer
	e, err := builder.New(t.TempDir(), builder.WithProgress(&progress))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cf := fmt.Sprintf("FROM %s\nRUN echo cached > /cached\n", base)
	built, err := e.BuildImage(ctx, buildpod.ArchBuild{Arch: "amd64", Containerfile: []byte(cf)}, rc, cache, builder.RunEnvironment{})
	if err == nil {
		_ = built.Release()
	}
	return progress.String(), err
}

// cacheWarnings are the lines of a build's output that say the cache repository cannot be read.
func cacheWarnings(progress string) []string {
	var out []string
	for _, l := range strings.Split(progress, "\n") {
		if strings.Contains(l, "could not be read") {
			out = append(out, l)
		}
	}
	return out
}

// A cache repository that cannot be read is a warning with the reason in the build output; a
// repository that can be read but holds no entry for a step is an ordinary miss, said nowhere.
func TestCacheRepositoryThatCannotBeReadIsAWarning(t *testing.T) {
	if testing.Short() {
		t.Skip("needs buildah and a registry")
	}
	ca, err := harness.NewCA("mosb test registries CA")
	if err != nil {
		t.Fatal(err)
	}
	reg := harness.StartRegistry(t, harness.WithCA(ca))
	base := harness.PushBaseImage(t, reg, "os/base", "amd64")
	rc := buildpod.RegistryConfig{PullAuth: reg.DockerConfigJSON(), CAs: map[string][]byte{reg.Host: ca.PEM}}

	t.Run("an empty repository is a miss", func(t *testing.T) {
		repo := reg.Host + "/os/cache-empty"
		progress, err := buildWithCache(t, base, rc, &builder.Cache{Repo: repo, Auth: reg.DockerConfigJSON()})
		if err != nil {
			t.Fatalf("%v\n%s", err, progress)
		}
		if w := cacheWarnings(progress); len(w) > 0 {
			t.Errorf("a cache repository with nothing in it yet is not a warning; the build said:\n%s", strings.Join(w, "\n"))
		}
	})

	// What kept buildah v1.43 from ever reading a cache on a machine without netavark: its pulls
	// find no netavark binary. Here a containers.conf override (which wins over every other
	// file) takes mosb's placeholder away again; the build goes on and says why no step came
	// from the cache.
	t.Run("buildah refuses to pull", func(t *testing.T) {
		override := filepath.Join(t.TempDir(), "containers.conf")
		if err := os.WriteFile(override, []byte("[engine]\nhelper_binaries_dir = ['/nonexistent/mosb-test-helpers', {append = false}]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("CONTAINERS_CONF_OVERRIDE", override)
		repo := reg.Host + "/os/cache-unread"
		progress, err := buildWithCache(t, base, rc, &builder.Cache{Repo: repo, Auth: reg.DockerConfigJSON()})
		if err != nil {
			t.Fatalf("a cache that cannot be read failed the build: %v\n%s", err, progress)
		}
		w := cacheWarnings(progress)
		if len(w) != 1 {
			t.Fatalf("the build said %d times that the cache cannot be read, want once:\n%s", len(w), progress)
		}
		t.Log(w[0])
		for _, want := range []string{"warning", repo, "netavark", "/nonexistent/mosb-test-helpers"} {
			if !strings.Contains(w[0], want) {
				t.Errorf("the warning does not say %q: %s", want, w[0])
			}
		}
		if !strings.Contains(progress, "RUN echo cached") || strings.Contains(progress, "Using cache") {
			t.Errorf("the step was not built:\n%s", progress)
		}
	})

	t.Run("the registry refuses the credentials", func(t *testing.T) {
		other := harness.StartRegistry(t, harness.WithCA(ca))
		rc := rc
		rc.CAs = map[string][]byte{reg.Host: ca.PEM, other.Host: ca.PEM}
		repo := other.Host + "/os/cache"
		progress, err := buildWithCache(t, base, rc,
			&builder.Cache{Repo: repo, Auth: harness.DockerConfigJSON(other.Host, other.Username, "not-"+other.Password)})
		// The step's layer cannot be pushed to the cache either, which fails the build; the
		// warning has come first.
		t.Logf("build error: %v", err)
		w := cacheWarnings(progress)
		if len(w) != 1 {
			t.Fatalf("the build said %d times that the cache cannot be read, want once:\n%s", len(w), progress)
		}
		t.Log(w[0])
		for _, want := range []string{"warning", repo, "authentication required"} {
			if !strings.Contains(w[0], want) {
				t.Errorf("the warning does not say %q: %s", want, w[0])
			}
		}
		if strings.Contains(w[0], other.Password) {
			t.Errorf("the warning shows the password: %s", w[0])
		}
	})
}
