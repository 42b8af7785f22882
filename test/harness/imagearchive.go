package harness

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Image archives for a containerd that cannot pull: an OCI image layout in a tar (oci-layout,
// index.json, blobs/sha256/…), which `ctr -n k8s.io images import` reads. index.json names the
// image with the annotation io.containerd.image.name, so the import creates an image of that name
// and kubelet finds it without a pull. Manifests and blobs are the registry's bytes: the imported
// image has the digest the registry serves.

// containerdImageNameAnnotation is the name `ctr images import` gives the image it imports.
const containerdImageNameAnnotation = "io.containerd.image.name"

// SaveImageArchive pulls ref from reg and writes an archive that `ctr images import` accepts,
// the image named ref in it (so the imported image is found by that name, no pull needed).
//
// ref is a tag or digest pullspec on reg (host:port/repo:tag or host:port/repo@sha256:…). An
// index is saved whole, every platform's image with it.
func SaveImageArchive(t T, reg *Registry, ref, path string) {
	t.Helper()
	if !strings.HasPrefix(ref, reg.Host+"/") {
		t.Fatalf("SaveImageArchive: %s is not on the registry %s", ref, reg.Host)
	}
	r, err := name.ParseReference(ref, nameOpts(reg)...)
	if err != nil {
		t.Fatalf("SaveImageArchive: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	desc, err := remote.Get(r, remote.WithAuth(reg.Auth()), remote.WithTransport(reg.Transport()), remote.WithContext(ctx))
	if err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	var top imageOrIndex
	if desc.MediaType.IsIndex() {
		top, err = desc.ImageIndex()
	} else {
		top, err = desc.Image()
	}
	if err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	if err := writeImageArchive(path, containerdImageName(ref), top); err != nil {
		t.Fatalf("writing the archive of %s: %v", ref, err)
	}
}

// PauseImageArchive builds test/harness/pause (CGO_ENABLED=0) and writes an archive of a one-layer
// image named name whose entrypoint is it, for containerd's sandbox_image.
func PauseImageArchive(t T, name, path string) {
	t.Helper()
	img := pauseImage(t, runtime.GOARCH)
	if err := writeImageArchive(path, containerdImageName(name), img); err != nil {
		t.Fatalf("writing the pause image archive: %v", err)
	}
}

// pauseImage is the pause program as the only file (/pause) of an image for linux/arch.
func pauseImage(t T, arch string) v1.Image {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pause")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./test/harness/pause")
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the pause program: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var fs rootfs
	fs.file("pause", 0o755, data)
	layer, err := fs.layer()
	if err != nil {
		t.Fatal(err)
	}
	img, err := singleLayerImage(layer, arch, func(c *v1.Config) {
		c.Entrypoint = []string{"/pause"}
		c.Labels = map[string]string{"org.opencontainers.image.title": "mosb test pause"}
	})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// containerdImageName is ref as containerd (and kubelet, through the CRI) names it: with its
// registry (docker.io when it has none, library/ for a one-component repository there) and a tag
// (latest when it has neither a tag nor a digest).
func containerdImageName(ref string) string {
	first, _, found := strings.Cut(ref, "/")
	if !found || (!strings.ContainsAny(first, ".:") && first != "localhost") {
		if !found {
			ref = "library/" + ref
		}
		ref = "docker.io/" + ref
	}
	last := ref[strings.LastIndex(ref, "/")+1:]
	if !strings.Contains(last, ":") && !strings.Contains(last, "@") {
		ref += ":latest"
	}
	return ref
}

// imageOrIndex is what an archive holds at its top: v1.Image or v1.ImageIndex.
type imageOrIndex interface {
	MediaType() (types.MediaType, error)
	Digest() (v1.Hash, error)
	Size() (int64, error)
	RawManifest() ([]byte, error)
}

// writeImageArchive writes top and everything it references as an OCI layout in a tar at path,
// top named imageName.
func writeImageArchive(path, imageName string, top imageOrIndex) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	a := &archiveWriter{tw: tar.NewWriter(f), written: map[v1.Hash]bool{}}
	if err := a.file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := a.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: time.Unix(0, 0).UTC()}); err != nil {
			return err
		}
	}
	if err := a.manifest(top); err != nil {
		return err
	}
	mt, err := top.MediaType()
	if err != nil {
		return err
	}
	d, err := top.Digest()
	if err != nil {
		return err
	}
	size, err := top.Size()
	if err != nil {
		return err
	}
	index, err := json.Marshal(v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: mt, Digest: d, Size: size,
			Annotations: map[string]string{containerdImageNameAnnotation: imageName},
		}},
	})
	if err != nil {
		return err
	}
	if err := a.file("index.json", index); err != nil {
		return err
	}
	return a.tw.Close()
}

type archiveWriter struct {
	tw      *tar.Writer
	written map[v1.Hash]bool
}

func (a *archiveWriter) file(name string, data []byte) error {
	if err := a.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(0, 0).UTC()}); err != nil {
		return err
	}
	_, err := a.tw.Write(data)
	return err
}

// blob writes one blob of the given digest and size once, checking that the content is that.
func (a *archiveWriter) blob(d v1.Hash, size int64, open func() (io.ReadCloser, error)) error {
	if a.written[d] {
		return nil
	}
	if d.Algorithm != "sha256" {
		return fmt.Errorf("blob %s: only sha256 digests are supported", d)
	}
	rc, err := open()
	if err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	defer rc.Close()
	if err := a.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "blobs/sha256/" + d.Hex, Mode: 0o644, Size: size, ModTime: time.Unix(0, 0).UTC()}); err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(a.tw, io.TeeReader(rc, h))
	if err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	if n != size {
		return fmt.Errorf("blob %s: %d bytes, the descriptor says %d", d, n, size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != d.Hex {
		return fmt.Errorf("blob %s: the content's digest is sha256:%s", d, got)
	}
	a.written[d] = true
	return nil
}

func (a *archiveWriter) raw(data []byte) error {
	d, size, err := v1.SHA256(bytes.NewReader(data))
	if err != nil {
		return err
	}
	return a.blob(d, size, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
}

// manifest writes an image's or an index's manifest and every blob it references.
func (a *archiveWriter) manifest(m imageOrIndex) error {
	raw, err := m.RawManifest()
	if err != nil {
		return err
	}
	switch m := m.(type) {
	case v1.Image:
		cfg, err := m.RawConfigFile()
		if err != nil {
			return err
		}
		if err := a.raw(cfg); err != nil {
			return err
		}
		layers, err := m.Layers()
		if err != nil {
			return err
		}
		for _, l := range layers {
			d, err := l.Digest()
			if err != nil {
				return err
			}
			size, err := l.Size()
			if err != nil {
				return err
			}
			if err := a.blob(d, size, l.Compressed); err != nil {
				return err
			}
		}
	case v1.ImageIndex:
		im, err := m.IndexManifest()
		if err != nil {
			return err
		}
		for _, desc := range im.Manifests {
			var child imageOrIndex
			if desc.MediaType.IsIndex() {
				child, err = m.ImageIndex(desc.Digest)
			} else {
				child, err = m.Image(desc.Digest)
			}
			if err != nil {
				return fmt.Errorf("manifest %s of the index: %w", desc.Digest, err)
			}
			if err := a.manifest(child); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%T is neither an image nor an index", m)
	}
	return a.raw(raw)
}
