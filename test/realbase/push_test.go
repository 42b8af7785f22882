package main

import (
	"os"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/mosb-dev/mosb/test/harness"
)

// TestRealisticBasePush pushes the realistic base image to a registry with auth and TLS and reads
// it back. It builds the image first when it is not cached (minutes), so it runs only when asked:
// MOSB_REALBASE=1 go test ./test/realbase (as root).
func TestRealisticBasePush(t *testing.T) {
	if testing.Short() || os.Getenv("MOSB_REALBASE") == "" {
		t.Skip("builds and pushes a 1.2 GB image: run it with MOSB_REALBASE=1 (make realistic-base builds the image)")
	}
	shape := harness.RealisticBaseInfo(t)
	t.Logf("realistic base: %s (%s)", shape, shape.Layout)
	if shape.Layers < 40 || shape.Uncompressed < 1e9 {
		t.Errorf("want >= 40 layers and >= 1 GB: %s", shape)
	}

	reg := harness.StartRegistry(t)
	start := time.Now()
	pullspec := harness.RealisticBase(t, reg, "os/realistic")
	t.Logf("pushed %s in %s", pullspec, time.Since(start).Round(time.Millisecond))

	ref, err := name.ParseReference(pullspec)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref, remote.WithAuth(reg.Auth()), remote.WithTransport(reg.Transport()))
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if d.String() != shape.Image || len(layers) != shape.Layers || cfg.Architecture != "amd64" {
		t.Errorf("read back %s: %d layers, %s; want %s, %d layers, amd64", d, len(layers), cfg.Architecture, shape.Image, shape.Layers)
	}
	var compressed int64
	for _, l := range layers {
		n, err := l.Size()
		if err != nil {
			t.Fatal(err)
		}
		compressed += n
	}
	if compressed != shape.Compressed {
		t.Errorf("the registry's layers add up to %d bytes, the layout's to %d", compressed, shape.Compressed)
	}
	t.Logf("read back %s: %d layers, %.0f MB compressed", d, len(layers), float64(compressed)/1e6)
}
