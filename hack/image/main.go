// Command image builds the mosb image for several architectures with mosb's own engine and pushes
// it as one index: `make image IMG=host/ns/mosb:tag` runs it over the binaries it cross-compiled.
//
// `mosb build`, run by the binary of this machine's architecture (other architectures build under
// qemu), builds it against a registry started for the purpose on 127.0.0.1 (TLS and credentials of
// its own, gone at the end), which also holds what the build starts from: each architecture's
// runtime rootfs and each binary as an image. The result is then copied to IMG manifest for
// manifest, so its digest is the build's, with the credentials of -authfile or the usual places.
//
//	go run ./hack/image -img host/ns/mosb:tag -bin amd64=bin/image/mosb-linux-amd64 -bin arm64=… [-insecure] [-authfile F]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/mosb-dev/mosb/test/harness"
)

func main() {
	img := flag.String("img", "", "the tag to push the mosb image to, e.g. quay.io/me/mosb:v0.3.0 (required)")
	insecure := flag.Bool("insecure", false, "IMG's registry speaks plain HTTP (a development registry such as 127.0.0.1:5000); never the default")
	authFile := flag.String("authfile", "", "an auth file with the credentials for IMG's registry (default: Docker's ~/.docker/config.json, then $REGISTRY_AUTH_FILE, then podman's ${XDG_RUNTIME_DIR}/containers/auth.json; none: push anonymously)")
	digestFile := flag.String("digest-file", "", "also write the pushed image's pullspec by digest to this file (make release reads it)")
	bins := map[string]string{}
	flag.Func("bin", "ARCH=PATH: the mosb binary for an architecture (repeat per architecture)", func(v string) error {
		arch, path, ok := strings.Cut(v, "=")
		if !ok || arch == "" || path == "" {
			return fmt.Errorf("%q: want ARCH=PATH", v)
		}
		bins[arch] = path
		return nil
	})
	flag.Parse()

	code := 0
	if err := run(*img, *insecure, *authFile, *digestFile, bins); err != nil {
		fmt.Fprintln(os.Stderr, "make image:", err)
		code = 1
		var usage usageError
		if errors.As(err, &usage) {
			code = 2
		}
	}
	os.Exit(code)
}

type usageError struct{ error }

func run(img string, insecure bool, authFile, digestFile string, bins map[string]string) error {
	if img == "" {
		return usageError{errors.New("IMG is required: make image IMG=host/ns/mosb:tag [INSECURE=1 for a plain-HTTP development registry]")}
	}
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	dst, err := name.NewTag(img, append(opts, name.StrictValidation)...)
	if err != nil {
		return usageError{fmt.Errorf("IMG=%s: %v (want host/namespace/name:tag)", img, err)}
	}
	if len(bins) == 0 {
		return usageError{errors.New("no -bin ARCH=PATH given")}
	}
	var keychain authn.Keychain = authn.DefaultKeychain
	if authFile != "" {
		if keychain, err = fileKeychain(authFile); err != nil {
			return usageError{err}
		}
	}
	p := &harness.Program{TempPrefix: "mosb-image-"}
	defer p.Teardown()
	return p.Run(func() error {
		helpers := harness.StartRegistry(p)
		built, _ := harness.BuildMosbIndex(p, helpers, "image", bins)
		digestRef, err := copyImage(helpers, built, dst, keychain)
		if err != nil {
			return err
		}
		if digestFile != "" {
			if err := os.WriteFile(digestFile, []byte(digestRef+"\n"), 0o644); err != nil {
				return err
			}
		}
		fmt.Println(digestRef)
		return nil
	})
}

// copyImage copies the image or index src of the build's registry to dst, manifests byte for byte
// (so the digest stays), and returns dst by digest.
func copyImage(helpers *harness.Registry, src string, dst name.Tag, keychain authn.Keychain) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	from, err := name.ParseReference(src)
	if err != nil {
		return "", err
	}
	desc, err := remote.Get(from, remote.WithAuth(helpers.Auth()), remote.WithTransport(helpers.Transport()), remote.WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("reading the built image %s: %w", src, err)
	}
	push := []remote.Option{remote.WithAuthFromKeychain(keychain), remote.WithContext(ctx)}
	if err := writeTo(dst, desc, push...); err != nil {
		return "", fmt.Errorf("pushing the mosb image to %s: %w", dst, err)
	}
	return dst.Context().Name() + "@" + desc.Digest.String(), nil
}

// writeTo writes the index or image desc to dst, with what they refer to.
func writeTo(dst name.Tag, desc *remote.Descriptor, opts ...remote.Option) error {
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return err
		}
		return remote.WriteIndex(dst, idx, opts...)
	}
	img, err := desc.Image()
	if err != nil {
		return err
	}
	return remote.Write(dst, img, opts...)
}

// fileKeychain resolves credentials from one auth file, as podman, buildah and skopeo write it or
// as Docker does (credential helpers included). Never quotes the file.
func fileKeychain(path string) (authn.Keychain, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cf, err := config.LoadFromReader(f)
	if err != nil {
		return nil, fmt.Errorf("AUTHFILE=%s is not a containers or Docker auth file (JSON with \"auths\")", path)
	}
	return configKeychain{cf}, nil
}

type configKeychain struct{ cf *configfile.ConfigFile }

func (k configKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	ac, err := k.cf.GetAuthConfig(r.RegistryStr())
	if err != nil {
		return nil, err
	}
	if ac == (types.AuthConfig{}) {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{Username: ac.Username, Password: ac.Password, Auth: ac.Auth, IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken}), nil
}
