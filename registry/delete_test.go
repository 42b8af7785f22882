package registry

import (
	"errors"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestDeleteManifestAndIndexChildren(t *testing.T) {
	reg := newTestRegistry(t, regUser, regPass, true)
	repo := reg.host() + "/os/worker"
	amd := reg.pushRandom(t, repo+":amd64")
	arm := reg.pushRandom(t, repo+":arm64")
	c := NewClient(trustTestServers(t), WithKeychain(testAuths(t, reg.host(), regUser, regPass).Keychain()), fastRetry())
	index, err := c.PushIndex(t.Context(), repo+":latest", []IndexManifest{
		{Digest: amd, Platform: v1.Platform{OS: "linux", Architecture: "amd64"}},
		{Digest: arm, Platform: v1.Platform{OS: "linux", Architecture: "arm64"}},
	})
	if err != nil {
		t.Fatal(err)
	}

	children, err := c.IndexChildren(t.Context(), index.String())
	slices.Sort(children)
	want := []string{amd, arm}
	slices.Sort(want)
	if err != nil || !slices.Equal(children, want) {
		t.Fatalf("IndexChildren: %v %v, want %v", children, err, want)
	}
	if children, err := c.IndexChildren(t.Context(), repo+"@"+amd); err != nil || children != nil {
		t.Fatalf("IndexChildren of an image: %v %v, want none", children, err)
	}

	for _, d := range []string{index.Digest, amd} {
		if err := c.DeleteManifest(t.Context(), repo+"@"+d); err != nil {
			t.Fatalf("delete %s: %v", d, err)
		}
		if ok, err := c.DigestExists(t.Context(), repo+"@"+d); ok || err != nil {
			t.Fatalf("%s still there after delete (%v)", d, err)
		}
	}
	if ok, _ := c.DigestExists(t.Context(), repo+"@"+arm); !ok {
		t.Fatal("deleting the index and one image took the other image too")
	}
	if err := c.DeleteManifest(t.Context(), repo+"@"+amd); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleting what is gone: %v, want ErrNotFound", err)
	}

	reg.refuseDelete.Store(true)
	err = c.DeleteManifest(t.Context(), repo+"@"+arm)
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "storage.delete.enabled") || !strings.Contains(err.Error(), reg.host()) {
		t.Fatalf("a registry refusing deletion: %v, want ErrUnsupported naming the registry and the setting", err)
	}

	other := NewClient(trustTestServers(t), WithKeychain(testAuths(t, reg.host(), regUser, "wrong").Keychain()), fastRetry())
	reg.refuseDelete.Store(false)
	if err := other.DeleteManifest(t.Context(), repo+"@"+arm); !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "push secret") {
		t.Fatalf("refused credentials: %v, want ErrUnauthorized naming the push secret", err)
	}
}
