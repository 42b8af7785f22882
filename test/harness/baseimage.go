package harness

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// busyboxApplets are linked into the base image's /bin: what the Containerfile template and the
// tests' RUN steps use.
var busyboxApplets = []string{
	"sh", "ls", "cat", "echo", "mkdir", "touch", "uname", "rm", "cp", "mv", "ln", "chmod", "grep",
	"sed", "test", "[", "true", "false", "env", "sleep", "wc", "head", "tail", "id", "printf", "find",
	"tar", "sha256sum", "stat", "which", "tee", "date",
}

// BusyboxPath is where busybox-static lives for an architecture: the host's own for amd64, or the
// arm64 one hack/arm64-busybox.sh extracts.
func BusyboxPath(arch string) string {
	if arch == "arm64" {
		if p := os.Getenv("MOSB_ARM64_BUSYBOX"); p != "" {
			return p
		}
		return os.ExpandEnv("$HOME/.cache/mosb/busybox-arm64/bin/busybox")
	}
	return "/bin/busybox"
}

// BaseImage is a tiny OS image: a busybox-static rootfs with /etc/os-release, built without any
// network. It is byte-for-byte deterministic for the same busybox binary, so its digest is stable.
func BaseImage(busybox, arch string) (v1.Image, error) {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("reading busybox-static (install it with `make deps`): %w", err)
	}
	layer, err := rootfsLayer(bb)
	if err != nil {
		return nil, err
	}
	return singleLayerImage(layer, arch, func(c *v1.Config) {
		c.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
		c.Cmd = []string{"/bin/sh"}
		c.Labels = map[string]string{"org.opencontainers.image.title": "mosb tiny test base"}
	})
}

func rootfsLayer(busybox []byte) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0).UTC()
	dir := func(name string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: epoch})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, d := range []string{"bin", "dev", "etc", "proc", "root", "run", "sys", "usr", "usr/bin", "var", "etc/machine-config-daemon"} {
		if err := dir(d, 0o755); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{"tmp", "var/tmp"} {
		if err := dir(d, 0o1777); err != nil {
			return nil, err
		}
	}
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"bin/busybox", 0o755, busybox},
		{"etc/os-release", 0o644, []byte("NAME=\"mosb test OS\"\nID=mosbtest\nVERSION_ID=1\nPRETTY_NAME=\"mosb tiny test base (busybox)\"\n")},
		{"etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n")},
		{"etc/group", 0o644, []byte("root:x:0:\n")},
	}
	for _, f := range files {
		if err := file(f.name, f.mode, f.data); err != nil {
			return nil, err
		}
	}
	for _, a := range busyboxApplets {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: epoch}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// PushBaseImage pushes the tiny base image for arch to repo (e.g. "os/base") on the registry and
// returns it by digest: host/repo@sha256:...
func PushBaseImage(t T, r *Registry, repo, arch string) string {
	t.Helper()
	img, err := BaseImage(BusyboxPath(arch), arch)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(r.Host+"/"+repo+":"+arch, nameOpts(r)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := remote.Write(ref, img, remote.WithAuth(r.Auth()), remote.WithTransport(r.Transport()), remote.WithContext(ctx)); err != nil {
		t.Fatalf("pushing base image to %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return r.Host + "/" + repo + "@" + d.String()
}

// PushBaseIndex pushes the tiny base image for each architecture and an OCI index of them to
// repo, and returns the index by digest: one pullspec for a multi-architecture build.
func PushBaseIndex(t T, r *Registry, repo string, arches ...string) string {
	t.Helper()
	var imgs []v1.Image
	for _, arch := range arches {
		img, err := BaseImage(BusyboxPath(arch), arch)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	return pushIndex(t, r, repo+":multiarch", imgs)
}

// pushIndex pushes an OCI index of imgs, each under the platform its config names, to
// <r.Host>/<repoTag> and returns it by digest.
func pushIndex(t T, r *Registry, repoTag string, imgs []v1.Image) string {
	t.Helper()
	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: cf.OS, Architecture: cf.Architecture}},
		})
	}
	ref, err := name.NewTag(r.Host+"/"+repoTag, nameOpts(r)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := remote.WriteIndex(ref, idx, remote.WithAuth(r.Auth()), remote.WithTransport(r.Transport()), remote.WithContext(ctx)); err != nil {
		t.Fatalf("pushing the index %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return ref.Context().Name() + "@" + d.String()
}

func nameOpts(r *Registry) []name.Option {
	if r.CA == nil {
		return []name.Option{name.Insecure}
	}
	return nil
}
