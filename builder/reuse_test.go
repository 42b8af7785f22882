package builder_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/mosb-dev/mosb/builder"
	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/registry"
	"github.com/mosb-dev/mosb/test/harness"
)

// reuseContainerfile adds a small layer to the base.
func reuseContainerfile(base string) []byte {
	return []byte(fmt.Sprintf("FROM %s\nRUN echo hello > /etc/hello\n", base))
}

// pushClient is a registry client with the credentials of one auth file only, as mosb's publisher
// has the push secret's.
func pushClient(t *testing.T, rc buildpod.RegistryConfig, auth []byte) *registry.Client {
	t.Helper()
	cfg, err := rc.PushConfig()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := registry.ParseDockerConfigJSON("push secret", auth)
	if err != nil {
		t.Fatal(err)
	}
	return registry.NewClient(registry.WithKeychain(keys.Keychain()), registry.WithConfig(cfg), registry.WithRetry(2, 100*time.Millisecond, 10*time.Second))
}

func remoteImage(t *testing.T, reg *harness.Registry, spec string) v1.Image {
	t.Helper()
	ref, err := name.ParseReference(spec)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref, remote.WithAuth(reg.Auth()), remote.WithTransport(reg.Transport()), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("pulling %s: %v", spec, err)
	}
	return img
}

func layerDescriptors(t *testing.T, img v1.Image) []v1.Descriptor {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return m.Layers
}

func buildAndPush(t *testing.T, base, target string, rc buildpod.RegistryConfig, pub builder.Publisher) (*builder.Result, string) {
	t.Helper()
	var progress bytes.Buffer
	e, err := builder.New(t.TempDir(), builder.WithProgress(&progress))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := e.Build(ctx, builder.Request{
		Builds:   []buildpod.ArchBuild{{Arch: "amd64", Containerfile: reuseContainerfile(base)}},
		Target:   target,
		Registry: rc,
	}, pub)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	return res, progress.String()
}

// The base image's layer is published as the base has it, and mounted from the base's repository
// rather than uploaded: the push sends a small fraction of the base's size.
func TestBuildPublishesTheBaseLayerAsItIsAndMountsIt(t *testing.T) {
	if testing.Short() {
		t.Skip("needs buildah and a registry")
	}
	reg := harness.StartRegistry(t)
	// Everything goes through the proxy, which counts what the build sends to the registry: the
	// pull sends requests only, the push sends requests and blobs.
	proxy := harness.StartProxy(t, reg.Host)
	base := proxy.Host + strings.TrimPrefix(harness.PushBaseImage(t, reg, "os/base", "amd64"), reg.Host)
	baseLayers := layerDescriptors(t, remoteImage(t, reg, base))
	auth := harness.DockerConfigJSON(proxy.Host, reg.Username, reg.Password)
	rc := buildpod.RegistryConfig{PullAuth: auth, CAs: map[string][]byte{proxy.Host: reg.CA.PEM}}

	before := proxy.Sent()
	res, progress := buildAndPush(t, base, proxy.Host+"/os/app:latest", rc, pushClient(t, rc, auth))
	sent := proxy.Sent() - before

	pushed := layerDescriptors(t, remoteImage(t, reg, res.Pullspec))
	if len(pushed) != len(baseLayers)+1 {
		t.Fatalf("pushed image has %d layers, want the base's %d and one more", len(pushed), len(baseLayers))
	}
	for i, l := range baseLayers {
		if pushed[i].Digest != l.Digest || pushed[i].Size != l.Size {
			t.Errorf("layer %d is %s (%d bytes), want the base image's blob %s (%d bytes)", i, pushed[i].Digest, pushed[i].Size, l.Digest, l.Size)
		}
		if pushed[i].MediaType != l.MediaType {
			t.Errorf("layer %d has media type %s, want %s", i, pushed[i].MediaType, l.MediaType)
		}
	}
	t.Logf("base layer %d bytes; the build sent %d bytes to the registry", baseLayers[0].Size, sent)
	if sent >= baseLayers[0].Size/2 {
		t.Errorf("the build sent %d bytes to the registry for a base layer of %d bytes: the base was uploaded again", sent, baseLayers[0].Size)
	}
	if !strings.Contains(progress, "published as they are") {
		t.Errorf("the progress does not say the base layer was reused:\n%s", progress)
	}
}

// When the base lives on another registry, its blob is read from there with the pull credentials
// and uploaded to the target with the push credentials, and the image is the same one a build
// that mounts the blob makes: the digest does not depend on what the registries hold.
func TestBuildReusesTheBaseLayerAcrossRegistries(t *testing.T) {
	if testing.Short() {
		t.Skip("needs buildah and a registry")
	}
	ca, err := harness.NewCA("mosb test registries CA")
	if err != nil {
		t.Fatal(err)
	}
	src := harness.StartRegistry(t, harness.WithCA(ca))
	dst := harness.StartRegistry(t, harness.WithCA(ca))
	base := harness.PushBaseImage(t, src, "os/base", "amd64")
	baseLayers := layerDescriptors(t, remoteImage(t, src, base))
	srcAuth := src.DockerConfigJSON()
	dstAuth := dst.DockerConfigJSON()
	rc := buildpod.RegistryConfig{PullAuth: srcAuth, CAs: map[string][]byte{src.Host: ca.PEM, dst.Host: ca.PEM}}

	// The push credentials reach the target registry only; the pull credentials the base's only.
	res, _ := buildAndPush(t, base, dst.Host+"/os/app:latest", rc, pushClient(t, rc, dstAuth))
	img := remoteImage(t, dst, res.Pullspec)
	pushed := layerDescriptors(t, img)
	if len(pushed) != len(baseLayers)+1 || pushed[0].Digest != baseLayers[0].Digest {
		t.Fatalf("pushed layers %v, want the base's blob %s first", pushed, baseLayers[0].Digest)
	}
	// The target serves the blob (go-containerregistry checks its digest as it reads).
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc0, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc0)
	rc0.Close()
	if err != nil || n != baseLayers[0].Size {
		t.Fatalf("reading the base blob from the target registry: %d bytes, %v", n, err)
	}

	// A fresh root pushing next to the base (where the blob is mounted) makes the same image.
	again, _ := buildAndPush(t, base, src.Host+"/os/app:latest", rc, pushClient(t, rc, srcAuth))
	if again.Digest != res.Digest {
		t.Errorf("the same inputs built %s pushed across registries and %s pushed next to the base", res.Digest, again.Digest)
	}
}

// Without pull credentials for the base's registry at push time the upload of the base blob
// fails, and the error names the base's registry and the pull secret, not the target.
func TestBuildSaysWhichRegistryFailedWhenTheBaseCannotBeRead(t *testing.T) {
	if testing.Short() {
		t.Skip("needs buildah and a registry")
	}
	ca, err := harness.NewCA("mosb test registries CA")
	if err != nil {
		t.Fatal(err)
	}
	src := harness.StartRegistry(t, harness.WithCA(ca))
	dst := harness.StartRegistry(t, harness.WithCA(ca))
	base := harness.PushBaseImage(t, src, "os/base", "amd64")
	rc := buildpod.RegistryConfig{PullAuth: src.DockerConfigJSON(), CAs: map[string][]byte{src.Host: ca.PEM, dst.Host: ca.PEM}}
	e, err := builder.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	built, err := e.BuildImage(ctx, buildpod.ArchBuild{Arch: "amd64", Containerfile: reuseContainerfile(base)}, rc, nil, builder.RunEnvironment{})
	if err != nil {
		t.Fatal(err)
	}
	defer built.Release()
	if built.ReusedBaseLayers() != 1 {
		t.Fatalf("%d base layers reused, want 1", built.ReusedBaseLayers())
	}
	// The base registry stops: its blob cannot be read any more.
	src.Stop()
	_, err = pushClient(t, rc, dst.DockerConfigJSON()).PushImage(ctx, dst.Host+"/os/app:latest", built.Image, true)
	if err == nil {
		t.Fatal("pushed without the base's blob")
	}
	t.Logf("push error: %v", err)
	for _, want := range []string{src.Host, "pull"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q: %v", want, err)
		}
	}
}
