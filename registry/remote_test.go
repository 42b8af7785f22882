package registry

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	configv1 "github.com/openshift/api/config/v1"
	"go.uber.org/goleak"

	"github.com/mosb-dev/mosb/registry/bounds"
)

const (
	regUser = "builder"
	regPass = "hunter2-registry-secret"
)

// testRegistry is go-containerregistry's in-process registry behind basic auth (when user is
// set), counting requests and optionally failing the first manifest requests.
type testRegistry struct {
	srv      *httptest.Server
	requests atomic.Int64
	failures atomic.Int64 // manifest requests still to answer 503
	// refuseDelete answers DELETE as a docker-registry without storage.delete.enabled does.
	refuseDelete atomic.Bool
}

func newTestRegistry(t *testing.T, user, pass string, tlsServer bool) *testRegistry {
	t.Helper()
	inner := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	tr := &testRegistry{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.requests.Add(1)
		if user != "" {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		if r.Method == http.MethodDelete && tr.refuseDelete.Load() {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusMethodNotAllowed)
			_, _ = io.WriteString(w, `{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}`)
			return
		}
		if strings.Contains(r.URL.Path, "/manifests/") && tr.failures.Load() > 0 {
			tr.failures.Add(-1)
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		inner.ServeHTTP(w, r)
	})
	if tlsServer {
		tr.srv = httptest.NewTLSServer(h)
	} else {
		tr.srv = httptest.NewServer(h)
	}
	t.Cleanup(tr.srv.Close)
	return tr
}

// host is host:port of the server.
func (r *testRegistry) host() string {
	return strings.TrimPrefix(strings.TrimPrefix(r.srv.URL, "http://"), "https://")
}

// pushRandom writes a random image with go-containerregistry directly and returns its digest.
func (r *testRegistry) pushRandom(t *testing.T, ref string, opts ...remote.Option) string {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	nref, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if r.srv.TLS != nil {
		opts = append([]remote.Option{remote.WithTransport(r.srv.Client().Transport)}, opts...)
	}
	opts = append(opts, remote.WithAuth(&authn.Basic{Username: regUser, Password: regPass}))
	if err := remote.Write(nref, img, opts...); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func testAuths(t *testing.T, host, user, pass string) Auths {
	t.Helper()
	a, err := NewAuths(map[string]Credential{host: NewCredential(user, pass)})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// trustTestServers trusts the certificate every httptest TLS server presents. The registries of
// these tests serve TLS: mosb refuses plain HTTP to registries not listed as insecure.
func trustTestServers(t *testing.T) Option {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	return WithSystemRoots(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
}

func fastRetry() Option { return WithRetry(3, time.Millisecond, time.Second) }

func TestResolveDigestByTagAndDigest(t *testing.T) {
	reg := newTestRegistry(t, regUser, regPass, true)
	digest := reg.pushRandom(t, reg.host()+"/os/base:v1")
	c := NewClient(trustTestServers(t), WithKeychain(testAuths(t, reg.host(), regUser, regPass).Keychain()), fastRetry())

	res, err := c.ResolveDigest(t.Context(), reg.host()+"/os/base:v1")
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != digest || res.From.String() != reg.host()+"/os/base:v1" {
		t.Fatalf("got %+v, want digest %s", res, digest)
	}
	if got := res.Pullspec(mustRef(t, reg.host()+"/os/base:v1")); got != reg.host()+"/os/base@"+digest {
		t.Fatalf("Pullspec = %s", got)
	}
	res, err = c.ResolveDigest(t.Context(), reg.host()+"/os/base@"+digest)
	if err != nil || res.Digest != digest {
		t.Fatalf("by digest: %+v, %v", res, err)
	}
	if _, err := c.ResolveDigest(t.Context(), "not a spec"); !errors.Is(err, RuleNoRegistryHost) && !errors.As(err, new(*PullspecError)) {
		t.Fatalf("invalid spec: %v", err)
	}
}

func TestCredentialsRefused(t *testing.T) {
	reg := newTestRegistry(t, regUser, regPass, true)
	reg.pushRandom(t, reg.host()+"/os/base:v1")
	const wrong = "wrong-password-value"
	c := NewClient(trustTestServers(t), WithKeychain(testAuths(t, reg.host(), regUser, wrong).Keychain()), fastRetry())
	before := reg.requests.Load()
	_, err := c.ResolveDigest(t.Context(), reg.host()+"/os/base:v1")
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("want ErrUnauthorized, got %v", err)
	}
	var re *RemoteError
	if !errors.As(err, &re) || re.StatusCode != http.StatusUnauthorized || re.Registry != reg.host() {
		t.Fatalf("RemoteError: %+v", re)
	}
	for _, want := range []string{"credentials", "401", reg.host(), "pull secret"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), regPass) {
		t.Fatalf("message shows a password: %v", err)
	}
	// A 401 is not transient: no retries (one ping and one manifest request at most).
	if n := reg.requests.Load() - before; n > 2 {
		t.Errorf("%d requests for a refused credential: it was retried", n)
	}
	// Anonymous access is refused the same way.
	_, err = NewClient(trustTestServers(t), fastRetry()).ResolveDigest(t.Context(), reg.host()+"/os/base:v1")
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("anonymous: %v", err)
	}
}

func TestDigestExists(t *testing.T) {
	reg := newTestRegistry(t, "", "", true)
	digest := reg.pushRandom(t, reg.host()+"/os/base:v1")
	c := NewClient(trustTestServers(t), fastRetry())
	ok, err := c.DigestExists(t.Context(), reg.host()+"/os/base@"+digest)
	if err != nil || !ok {
		t.Fatalf("existing: %v, %v", ok, err)
	}
	ok, err = c.DigestExists(t.Context(), reg.host()+"/os/base@"+dgA)
	if err != nil || ok {
		t.Fatalf("missing digest: %v, %v", ok, err)
	}
	ok, err = c.DigestExists(t.Context(), reg.host()+"/os/other@"+digest)
	if err != nil || ok {
		t.Fatalf("missing repository: %v, %v", ok, err)
	}
	// An unreachable registry is an error, never "gone".
	dead := httptest.NewServer(http.NotFoundHandler())
	deadHost := strings.TrimPrefix(dead.URL, "http://")
	dead.Close()
	ok, err = c.DigestExists(t.Context(), deadHost+"/os/base@"+digest)
	if err == nil || ok || !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), deadHost) {
		t.Fatalf("dead registry: %v, %v", ok, err)
	}
	if _, err := c.DigestExists(t.Context(), reg.host()+"/os/base:v1"); err == nil {
		t.Fatal("a tag is not a digest pullspec")
	}
}

func TestResolveThroughMirrors(t *testing.T) {
	source := newTestRegistry(t, "", "", true)
	mirror := newTestRegistry(t, "", "", true)
	digest := mirror.pushRandom(t, mirror.host()+"/mirrored/base:v1")
	sourceDigest := source.pushRandom(t, source.host()+"/os/base:v1")

	for _, tt := range []struct {
		name        string
		never       bool
		spec        string
		wantFrom    string
		wantErr     error
		sourceCalls bool
	}{
		{name: "found at the mirror", spec: source.host() + "/os/base@" + digest, wantFrom: mirror.host() + "/mirrored/base@" + digest},
		{name: "not at the mirror: the source", spec: source.host() + "/os/base@" + sourceDigest, wantFrom: source.host() + "/os/base@" + sourceDigest, sourceCalls: true},
		{name: "NeverContactSource", never: true, spec: source.host() + "/os/base@" + sourceDigest, wantErr: ErrNotFound},
		{name: "tag pulls do not use digest mirrors", spec: source.host() + "/os/base:v1", wantFrom: source.host() + "/os/base:v1", sourceCalls: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			entry := digestMirrors(source.host()+"/os", mirror.host()+"/mirrored")
			if tt.never {
				entry = neverContact(entry)
			}
			cfg, err := NewConfig(ConfigSources{ImageDigestMirrorSets: []configv1.ImageDigestMirrorSet{idms("m", entry)}})
			if err != nil {
				t.Fatal(err)
			}
			before := source.requests.Load()
			res, err := NewClient(trustTestServers(t), WithConfig(cfg), fastRetry()).ResolveDigest(t.Context(), tt.spec)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("want %v, got %v", tt.wantErr, err)
				}
			} else if err != nil || res.From.String() != tt.wantFrom {
				t.Fatalf("got %+v, %v; want from %s", res, err, tt.wantFrom)
			}
			if called := source.requests.Load() > before; called != tt.sourceCalls {
				t.Errorf("source contacted = %v, want %v", called, tt.sourceCalls)
			}
		})
	}
}

func TestPolicyIsEnforcedBeforeAnyCall(t *testing.T) {
	reg := newTestRegistry(t, "", "", true)
	cfg, err := NewConfig(ConfigSources{Image: imageConfig(configv1.RegistrySources{BlockedRegistries: []string{reg.host()}}, "")})
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(trustTestServers(t), WithConfig(cfg), fastRetry())
	_, err = c.ResolveDigest(t.Context(), reg.host()+"/os/base:v1")
	if !errors.Is(err, ErrNotPermitted) {
		t.Fatalf("pull: %v", err)
	}
	_, err = c.PushIndex(t.Context(), reg.host()+"/os/base:v1", []IndexManifest{{Digest: dgA, Platform: v1.Platform{OS: "linux", Architecture: "amd64"}}})
	if !errors.Is(err, ErrNotPermitted) {
		t.Fatalf("push: %v", err)
	}
	if n := reg.requests.Load(); n != 0 {
		t.Fatalf("%d requests reached a blocked registry", n)
	}
}

func TestPushIndex(t *testing.T) {
	reg := newTestRegistry(t, regUser, regPass, true)
	repo := reg.host() + "/os/worker"
	amd := reg.pushRandom(t, repo+":amd64")
	arm := reg.pushRandom(t, repo+":arm64")
	c := NewClient(trustTestServers(t), WithKeychain(testAuths(t, reg.host(), regUser, regPass).Keychain()), fastRetry())
	entries := []IndexManifest{
		{Digest: arm, Platform: v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}},
		{Digest: amd, Platform: v1.Platform{OS: "linux", Architecture: "amd64"}},
	}
	got, err := c.PushIndex(t.Context(), repo+":latest", entries)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name() != repo || !got.IsDigest() {
		t.Fatalf("returned %s", got)
	}
	// The tag now names an OCI index with both platforms, and the returned digest is its digest.
	ref, _ := name.ParseReference(repo + ":latest")
	desc, err := remote.Get(ref, remote.WithAuth(&authn.Basic{Username: regUser, Password: regPass}), remote.WithTransport(reg.srv.Client().Transport))
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest.String() != got.Digest || desc.MediaType != types.OCIImageIndex {
		t.Fatalf("registry has %s %s, PushIndex said %s", desc.MediaType, desc.Digest, got.Digest)
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 2 || im.Manifests[0].Digest.String() != amd || im.Manifests[1].Platform.Variant != "v8" || im.Manifests[0].Size == 0 {
		t.Fatalf("index manifests: %+v", im.Manifests)
	}
	// The same images in another order give the same index.
	again, err := c.PushIndex(t.Context(), repo+":latest", []IndexManifest{entries[1], entries[0]})
	if err != nil || again != got {
		t.Fatalf("not deterministic: %s vs %s (%v)", again, got, err)
	}

	for _, bad := range []struct {
		name    string
		entries []IndexManifest
		want    string
	}{
		{"empty", nil, "at least one"},
		{"missing image", []IndexManifest{{Digest: dgA, Platform: v1.Platform{OS: "linux", Architecture: "amd64"}}}, "must be pushed"},
		{"no platform", []IndexManifest{{Digest: amd}}, "platform"},
		{"duplicate platform", []IndexManifest{entries[1], {Digest: arm, Platform: v1.Platform{OS: "linux", Architecture: "amd64"}}}, "two images"},
		{"bad digest", []IndexManifest{{Digest: "sha256:XYZ", Platform: v1.Platform{OS: "linux", Architecture: "amd64"}}}, "digest"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			_, err := c.PushIndex(t.Context(), repo+":latest", bad.entries)
			if err == nil || !strings.Contains(err.Error(), bad.want) {
				t.Fatalf("want an error about %q, got %v", bad.want, err)
			}
		})
	}
	if _, err := c.PushIndex(t.Context(), repo+"@"+amd, entries); !errors.Is(err, RuleNotByTag) {
		t.Fatalf("push to a digest: %v", err)
	}
}

func TestRetriesTransientErrors(t *testing.T) {
	reg := newTestRegistry(t, "", "", true)
	digest := reg.pushRandom(t, reg.host()+"/os/base:v1")

	reg.failures.Store(2)
	res, err := NewClient(trustTestServers(t), WithRetry(3, time.Millisecond, 5*time.Second)).ResolveDigest(t.Context(), reg.host()+"/os/base:v1")
	if err != nil || res.Digest != digest {
		t.Fatalf("two 503s then success: %+v, %v", res, err)
	}

	reg.failures.Store(5)
	_, err = NewClient(trustTestServers(t), WithRetry(2, time.Millisecond, 5*time.Second)).ResolveDigest(t.Context(), reg.host()+"/os/base:v1")
	var re *RemoteError
	if !errors.As(err, &re) || re.StatusCode != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), reg.host()) {
		t.Fatalf("bounded retries: %v", err)
	}
	if left := reg.failures.Load(); left != 3 {
		t.Errorf("%d failures left: want exactly 2 attempts", left)
	}
	reg.failures.Store(0)

	// A cancelled context stops at once.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := NewClient(trustTestServers(t), fastRetry()).ResolveDigest(ctx, reg.host()+"/os/base:v1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// redirectTo makes every dial go to addr, so a TLS server can be reached under the name its
// certificate has (example.com) instead of a loopback address go-containerregistry would
// insist on reaching over plain HTTP.
func redirectTo(addr string) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}}
}

func TestTLSWithRegistryCA(t *testing.T) {
	reg := newTestRegistry(t, "", "", true)
	_, port, _ := net.SplitHostPort(reg.host())
	host := "example.com:" + port
	// Push through the TLS server with go-containerregistry directly (trusting its cert).
	tlsTransport := redirectTo(reg.host())
	tlsTransport.TLSClientConfig = &tls.Config{RootCAs: reg.srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	digest := reg.pushRandom(t, host+"/os/base:v1", remote.WithTransport(tlsTransport))

	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: reg.srv.Certificate().Raw})
	spec := host + "/os/base:v1"
	// No CA: TLS fails, the message says where to put the CA.
	c := NewClient(WithBaseTransport(redirectTo(reg.host())), WithSystemRoots(nil), fastRetry())
	_, err := c.ResolveDigest(t.Context(), spec)
	if err == nil || !strings.Contains(err.Error(), "TLS") || !strings.Contains(err.Error(), "example.com.."+port) {
		t.Fatalf("without the CA: %v", err)
	}

	// The CA from the Image config's additionalTrustedCA ConfigMap.
	cfg, err := NewConfig(ConfigSources{
		Image:               imageConfig(configv1.RegistrySources{}, "registry-cas"),
		AdditionalTrustedCA: caConfigMap("registry-cas", map[string]string{"example.com.." + port: string(caPEM)}),
	})
	if err != nil {
		t.Fatal(err)
	}
	c = NewClient(WithConfig(cfg), WithBaseTransport(redirectTo(reg.host())), WithSystemRoots(nil), fastRetry())
	res, err := c.ResolveDigest(t.Context(), spec)
	if err != nil || res.Digest != digest {
		t.Fatalf("with the CA: %+v, %v", res, err)
	}

	// The CA of another registry does not help.
	cfg, _ = NewConfig(ConfigSources{
		Image:               imageConfig(configv1.RegistrySources{}, "registry-cas"),
		AdditionalTrustedCA: caConfigMap("registry-cas", map[string]string{"other.example.com": string(caPEM)}),
	})
	c = NewClient(WithConfig(cfg), WithBaseTransport(redirectTo(reg.host())), WithSystemRoots(nil), fastRetry())
	if _, err := c.ResolveDigest(t.Context(), spec); err == nil {
		t.Fatal("a CA for another registry was trusted")
	}

	// Insecure: no verification, still HTTPS.
	cfg, _ = NewConfig(ConfigSources{Image: imageConfig(configv1.RegistrySources{InsecureRegistries: []string{host}}, "")})
	c = NewClient(WithConfig(cfg), WithBaseTransport(redirectTo(reg.host())), WithSystemRoots(nil), fastRetry())
	if res, err := c.ResolveDigest(t.Context(), spec); err != nil || res.Digest != digest {
		t.Fatalf("insecure over TLS: %+v, %v", res, err)
	}
}

func TestInsecureRegistryOverPlainHTTP(t *testing.T) {
	reg := newTestRegistry(t, "", "", false)
	_, port, _ := net.SplitHostPort(reg.host())
	host := "example.com:" + port
	plain := redirectTo(reg.host())
	digest := reg.pushRandom(t, reg.host()+"/os/base:v1")

	// Not insecure: HTTPS to an HTTP server fails with advice.
	_, err := NewClient(WithBaseTransport(plain), fastRetry()).ResolveDigest(t.Context(), host+"/os/base:v1")
	if err == nil || !strings.Contains(err.Error(), "insecureRegistries") {
		t.Fatalf("plain HTTP without insecure: %v", err)
	}
	cfg, _ := NewConfig(ConfigSources{Image: imageConfig(configv1.RegistrySources{InsecureRegistries: []string{host}}, "")})
	res, err := NewClient(WithConfig(cfg), WithBaseTransport(plain), fastRetry()).ResolveDigest(t.Context(), host+"/os/base:v1")
	if err != nil || res.Digest != digest {
		t.Fatalf("insecure over HTTP: %+v, %v", res, err)
	}
}

// go-containerregistry falls back to plain HTTP for loopback and private addresses by itself;
// credentials must not follow unless the registry is listed as insecure.
func TestNoCredentialsOverPlainHTTPUnlessInsecure(t *testing.T) {
	var sawAuth atomic.Int64
	inner := newTestRegistry(t, "", "", false)
	spy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			sawAuth.Add(1)
		}
		inner.srv.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(spy.Close)
	host := strings.TrimPrefix(spy.URL, "http://")
	inner.pushRandom(t, inner.host()+"/os/base:v1")
	keys := WithKeychain(testAuths(t, host, regUser, regPass).Keychain())

	_, err := NewClient(keys, fastRetry()).ResolveDigest(t.Context(), host+"/os/base:v1")
	if !errors.Is(err, ErrPlainHTTPRefused) || !strings.Contains(err.Error(), "insecureRegistries") {
		t.Fatalf("plain HTTP to a registry not listed as insecure: want ErrPlainHTTPRefused, got %v", err)
	}
	if n := sawAuth.Load(); n != 0 {
		t.Fatalf("credentials were sent over plain HTTP %d times", n)
	}
	cfg, _ := NewConfig(ConfigSources{Image: imageConfig(configv1.RegistrySources{InsecureRegistries: []string{host}}, "")})
	if _, err := NewClient(keys, WithConfig(cfg), fastRetry()).ResolveDigest(t.Context(), host+"/os/base:v1"); err != nil {
		t.Fatalf("listed as insecure, plain HTTP is allowed: %v", err)
	}
}

// A registry that accepts requests and never answers ends the controller's check within the
// bounds (retries included), as an unresponsive registry rather than "gone", and leaves no
// goroutine behind.
func TestAHungRegistryEndsWithinTheBounds(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	release := make(chan struct{})
	hung := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() {
		close(release)
		hung.Close()
		goleak.VerifyNone(t, opt)
	})
	host := strings.TrimPrefix(hung.URL, "https://")
	b := bounds.Bounds{Connect: time.Second, Response: 300 * time.Millisecond, Stall: 300 * time.Millisecond}
	c := NewClient(trustTestServers(t), WithRetry(3, 10*time.Millisecond, 5*time.Second), WithBounds(b))
	start := time.Now()
	ok, err := c.DigestExists(t.Context(), host+"/os/base@"+dgA)
	if ok || err == nil {
		t.Fatalf("a hung registry: %v, %v", ok, err)
	}
	u, isUnresponsive := bounds.AsUnresponsive(err)
	if !isUnresponsive || u.Registry != host || u.Phase != bounds.PhaseResponse {
		t.Fatalf("want the registry named as unresponsive, got %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("three attempts of a %s bound took %s", b.Response, d)
	}
}
