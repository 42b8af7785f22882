package registry

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	configv1 "github.com/openshift/api/config/v1"
)

// sizedImage is a random image of n layers and the sum of its layers' compressed sizes, counted
// from the layers themselves rather than from the manifest CompressedSize reads.
func sizedImage(t *testing.T, layerBytes int64, n int64) (v1.Image, int64) {
	t.Helper()
	img, err := random.Image(layerBytes, n)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, l := range layers {
		s, err := l.Size()
		if err != nil {
			t.Fatal(err)
		}
		total += s
	}
	return img, total
}

func (r *testRegistry) write(t *testing.T, ref string, img v1.Image) string {
	t.Helper()
	nref, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(nref, img, remote.WithTransport(r.srv.Client().Transport), remote.WithAuth(&authn.Basic{Username: regUser, Password: regPass})); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func (r *testRegistry) writeIndex(t *testing.T, ref string, idx v1.ImageIndex) string {
	t.Helper()
	nref, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(nref, idx, remote.WithTransport(r.srv.Client().Transport), remote.WithAuth(&authn.Basic{Username: regUser, Password: regPass})); err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func TestCompressedSize(t *testing.T) {
	reg := newTestRegistry(t, regUser, regPass, true)
	repo := reg.host() + "/os/base"
	amd, amdSize := sizedImage(t, 3000, 3)
	arm, armSize := sizedImage(t, 1000, 2)
	if amdSize == armSize {
		t.Fatal("the test needs images of different sizes")
	}
	imgDigest := reg.write(t, repo+":amd64", amd)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
	)
	idxDigest := reg.writeIndex(t, repo+":multi", idx)
	c := NewClient(trustTestServers(t), WithKeychain(testAuths(t, reg.host(), regUser, regPass).Keychain()), fastRetry())

	for _, tc := range []struct {
		name     string
		spec     string
		platform v1.Platform
		want     int64
		err      []string
	}{
		{name: "an image", spec: repo + "@" + imgDigest, platform: v1.Platform{OS: "linux", Architecture: "amd64"}, want: amdSize},
		{name: "an image: the platform is not checked", spec: repo + "@" + imgDigest, platform: v1.Platform{OS: "linux", Architecture: "s390x"}, want: amdSize},
		{name: "an index: amd64", spec: repo + "@" + idxDigest, platform: v1.Platform{OS: "linux", Architecture: "amd64"}, want: amdSize},
		{name: "an index: arm64 of any variant", spec: repo + "@" + idxDigest, platform: v1.Platform{OS: "linux", Architecture: "arm64"}, want: armSize},
		{name: "an index without the platform", spec: repo + "@" + idxDigest, platform: v1.Platform{OS: "linux", Architecture: "s390x"},
			err: []string{"linux/s390x", "linux/amd64, linux/arm64/v8"}},
		{name: "a tag", spec: repo + ":multi", err: []string{"digest"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.CompressedSize(t.Context(), tc.spec, tc.platform)
			if tc.err != nil {
				if err == nil {
					t.Fatalf("got %d, want an error", got)
				}
				for _, w := range tc.err {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}

	t.Run("credentials refused", func(t *testing.T) {
		bad := NewClient(trustTestServers(t), WithKeychain(testAuths(t, reg.host(), regUser, "wrong").Keychain()), fastRetry())
		_, err := bad.CompressedSize(t.Context(), repo+"@"+imgDigest, v1.Platform{})
		if !errors.Is(err, ErrUnauthorized) || strings.Contains(err.Error(), regPass) {
			t.Fatalf("got %v", err)
		}
	})
}

// The size comes from where a pull would get the image: a mirror first, the source when the
// mirror lacks it, never the source under NeverContactSource; and never from a blocked registry.
func TestCompressedSizeFollowsThePullSources(t *testing.T) {
	source := newTestRegistry(t, "", "", true)
	mirror := newTestRegistry(t, "", "", true)
	img, size := sizedImage(t, 2000, 2)
	atMirror := mirror.write(t, mirror.host()+"/mirrored/base:v1", img)
	other, otherSize := sizedImage(t, 500, 1)
	atSource := source.write(t, source.host()+"/os/base:v1", other)

	for _, tc := range []struct {
		name        string
		never       bool
		spec        string
		want        int64
		wantErr     error
		sourceCalls bool
	}{
		{name: "found at the mirror", spec: source.host() + "/os/base@" + atMirror, want: size},
		{name: "not at the mirror: the source", spec: source.host() + "/os/base@" + atSource, want: otherSize, sourceCalls: true},
		{name: "NeverContactSource", never: true, spec: source.host() + "/os/base@" + atSource, wantErr: ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entry := digestMirrors(source.host()+"/os", mirror.host()+"/mirrored")
			if tc.never {
				entry = neverContact(entry)
			}
			cfg, err := NewConfig(ConfigSources{ImageDigestMirrorSets: []configv1.ImageDigestMirrorSet{idms("m", entry)}})
			if err != nil {
				t.Fatal(err)
			}
			before := source.requests.Load()
			got, err := NewClient(trustTestServers(t), WithConfig(cfg), fastRetry()).CompressedSize(t.Context(), tc.spec, v1.Platform{OS: "linux", Architecture: "amd64"})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("want %v, got %d, %v", tc.wantErr, got, err)
				}
			} else if err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
			if called := source.requests.Load() > before; called != tc.sourceCalls {
				t.Errorf("source contacted = %v, want %v", called, tc.sourceCalls)
			}
		})
	}

	t.Run("blocked", func(t *testing.T) {
		cfg, err := NewConfig(ConfigSources{Image: imageConfig(configv1.RegistrySources{BlockedRegistries: []string{source.host()}}, "")})
		if err != nil {
			t.Fatal(err)
		}
		before := source.requests.Load()
		_, err = NewClient(trustTestServers(t), WithConfig(cfg), fastRetry()).CompressedSize(t.Context(), source.host()+"/os/base@"+atSource, v1.Platform{})
		if !errors.Is(err, ErrNotPermitted) {
			t.Fatalf("got %v", err)
		}
		if source.requests.Load() != before {
			t.Fatal("a blocked registry was asked")
		}
	})
}
