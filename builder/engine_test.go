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

func TestBuildImageKeepsEverythingUnderItsRoot(t *testing.T) {
	if testing.Short() {
		t.Skip("needs buildah and a registry")
	}
	_, hostStorageBefore := os.Stat("/var/lib/containers/storage")
	reg := harness.StartRegistry(t)
	base := harness.PushBaseImage(t, reg, "os/base", "amd64")
	root := t.TempDir()
	var progress bytes.Buffer
	e, err := builder.New(root, builder.WithProgress(&progress))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cf := fmt.Sprintf("FROM %s\nCOPY currentconfig /etc/machine-config-daemon/currentconfig\nRUN echo hello > /etc/hello\n", base)
	built, err := e.BuildImage(ctx, buildpod.ArchBuild{Arch: "amd64", Containerfile: []byte(cf), ContextFiles: map[string][]byte{"currentconfig": []byte("{}")}},
		buildpod.RegistryConfig{PullAuth: reg.DockerConfigJSON(), CAs: map[string][]byte{reg.Host: reg.CA.PEM}}, nil, builder.RunEnvironment{})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	defer built.Release()
	if !strings.Contains(progress.String(), "STEP 3/3: RUN echo hello") {
		t.Errorf("progress lacks the build steps:\n%s", progress.String())
	}
	if _, err := os.Stat(filepath.Join(root, "storage")); err != nil {
		t.Errorf("image storage is not under the engine's root: %v", err)
	}
	if _, err := os.Stat("/var/lib/containers/storage"); os.IsNotExist(hostStorageBefore) && err == nil {
		t.Error("the build wrote to /var/lib/containers/storage")
	}
	if cfg, err := built.Image.ConfigFile(); err != nil || cfg.Architecture != "amd64" || !cfg.Created.Time.Equal(builder.Epoch) {
		t.Errorf("image config: arch %q created %v (err %v); want amd64 created at the epoch", cfg.Architecture, cfg.Created, err)
	}
}

func TestBuildRequestValidation(t *testing.T) {
	e, err := builder.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	ctx := context.Background()
	for name, req := range map[string]builder.Request{
		"no architectures": {Target: "r.example.com/a:b"},
		"arch twice": {Target: "r.example.com/a:b", Builds: []buildpod.ArchBuild{
			{Arch: "amd64", Containerfile: []byte("FROM x")}, {Arch: "amd64", Containerfile: []byte("FROM x")}}},
		"untagged multi-arch": {Target: "r.example.com/a:b", Untagged: true, Builds: []buildpod.ArchBuild{
			{Arch: "amd64", Containerfile: []byte("FROM x")}, {Arch: "arm64", Containerfile: []byte("FROM x")}}},
		"context escapes": {Target: "r.example.com/a:b", Builds: []buildpod.ArchBuild{
			{Arch: "amd64", Containerfile: []byte("FROM x"), ContextFiles: map[string][]byte{"../etc/passwd": nil}}}},
		"empty containerfile": {Target: "r.example.com/a:b", Builds: []buildpod.ArchBuild{{Arch: "amd64"}}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := e.Build(ctx, req, nil); err == nil {
				t.Error("accepted")
			}
		})
	}
}
