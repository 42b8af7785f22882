package integration

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/mosb-dev/mosb/test/harness"
)

func TestRegistryFixtureRequiresCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("needs docker-registry")
	}
	reg := harness.StartRegistry(t)
	img, err := harness.BaseImage(harness.BusyboxPath("amd64"), "amd64")
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(reg.Host + "/fixture/base:anon")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	err = remote.Write(ref, img, remote.WithAuth(authn.Anonymous), remote.WithTransport(reg.Transport()), remote.WithContext(ctx))
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous push: want 401 from the registry, got %v", err)
	}
	wrong := &authn.Basic{Username: reg.Username, Password: "not-the-password"}
	err = remote.Write(ref, img, remote.WithAuth(wrong), remote.WithTransport(reg.Transport()), remote.WithContext(ctx))
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
		t.Fatalf("push with a wrong password: want 401, got %v", err)
	}

	spec := harness.PushBaseImage(t, reg, "fixture/base", "amd64")
	dref, err := name.NewDigest(spec)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(dref, remote.WithAuth(reg.Auth()), remote.WithTransport(reg.Transport()), remote.WithContext(ctx))
	if err != nil {
		t.Fatalf("the pushed base image is not served: %v", err)
	}
	if desc.Digest.String() != dref.DigestStr() {
		t.Errorf("registry serves %s, pushed %s", desc.Digest, dref.DigestStr())
	}

	// The registry's TLS is from its own CA: a client that does not trust it is refused.
	_, err = remote.Head(dref, remote.WithAuth(reg.Auth()), remote.WithContext(ctx))
	if err == nil {
		t.Error("a client without the fixture's CA reached the registry over TLS")
	}
}

func TestBaseImageIsDeterministic(t *testing.T) {
	a, err := harness.BaseImage(harness.BusyboxPath("amd64"), "amd64")
	if err != nil {
		t.Fatal(err)
	}
	b, err := harness.BaseImage(harness.BusyboxPath("amd64"), "amd64")
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Errorf("two builds of the base image differ: %s vs %s", da, db)
	}
}

func TestRegistryRestartKeepsContent(t *testing.T) {
	if testing.Short() {
		t.Skip("needs docker-registry")
	}
	reg := harness.StartRegistry(t)
	spec := harness.PushBaseImage(t, reg, "fixture/restart", "amd64")
	reg.Stop()
	dref, _ := name.NewDigest(spec)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := remote.Head(dref, remote.WithAuth(reg.Auth()), remote.WithTransport(reg.Transport()), remote.WithContext(ctx)); err == nil {
		t.Fatal("a stopped registry answered")
	}
	if err := reg.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Head(dref, remote.WithAuth(reg.Auth()), remote.WithTransport(reg.Transport()), remote.WithContext(ctx)); err != nil {
		t.Fatalf("after a restart the image is gone: %v", err)
	}
}
