package registry

import (
	"encoding/base64"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"sync/atomic"
	"testing"

	configv1 "github.com/openshift/api/config/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestTheClusterProxyCarriesRegistryCalls names the registry by a host only the proxy can reach:
// the call succeeds through the cluster Proxy (with its credentials), and fails without it.
func TestTheClusterProxyCarriesRegistryCalls(t *testing.T) {
	reg := newTestRegistry(t, regUser, regPass, false)
	digest := reg.pushRandom(t, reg.host()+"/os/base:v1")
	const hidden = "registry.behind-the-proxy.invalid:5000"
	var proxied atomic.Int64
	forward := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.Out.URL.Scheme, r.Out.URL.Host, r.Out.Host = "http", reg.host(), reg.host()
	}}
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("mosb:pr0xy-pa55"))
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Proxy-Authorization") != wantAuth {
			http.Error(w, "proxy credentials", http.StatusProxyAuthRequired)
			return
		}
		if r.URL.Host != hidden {
			http.Error(w, "unknown host "+r.URL.Host, http.StatusBadGateway)
			return
		}
		proxied.Add(1)
		if r.Method == http.MethodConnect {
			tunnel(t, w, reg.host())
			return
		}
		forward.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	proxyURL := "http://mosb:pr0xy-pa55@" + strings.TrimPrefix(proxy.URL, "http://")

	insecure := imageConfig(configv1.RegistrySources{InsecureRegistries: []string{hidden}}, "")
	withProxy, err := NewConfig(ConfigSources{Image: insecure, Proxy: &configv1.Proxy{Spec: configv1.ProxySpec{HTTPProxy: proxyURL, HTTPSProxy: proxyURL}}})
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(WithConfig(withProxy), WithKeychain(testAuths(t, hidden, regUser, regPass).Keychain()), fastRetry())
	ok, err := c.DigestExists(t.Context(), hidden+"/os/base@"+digest)
	if err != nil || !ok || proxied.Load() == 0 {
		t.Fatalf("through the proxy: exists %v, err %v, %d proxied requests", ok, err, proxied.Load())
	}

	direct, err := NewConfig(ConfigSources{Image: insecure})
	if err != nil {
		t.Fatal(err)
	}
	before := proxied.Load()
	c = NewClient(WithConfig(direct), WithKeychain(testAuths(t, hidden, regUser, regPass).Keychain()), fastRetry())
	if _, err := c.DigestExists(t.Context(), hidden+"/os/base@"+digest); err == nil || proxied.Load() != before {
		t.Errorf("without the cluster Proxy: err %v, %d proxied requests (want a failure, none)", err, proxied.Load()-before)
	}
}

// tunnel answers a CONNECT as a proxy does: a byte stream to target.
func tunnel(t *testing.T, w http.ResponseWriter, target string) {
	upstream, err := net.Dial("tcp", target)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		upstream.Close()
		t.Error(err)
		return
	}
	_, _ = conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
	go func() { _, _ = io.Copy(upstream, conn); upstream.Close() }()
	go func() { _, _ = io.Copy(conn, upstream); conn.Close() }()
}

func TestProxyFromClusterPrefersStatusAndNeverShowsThePassword(t *testing.T) {
	obj := &configv1.Proxy{
		Spec:   configv1.ProxySpec{HTTPProxy: "http://spec.example:3128"},
		Status: configv1.ProxyStatus{HTTPProxy: "http://u:s3cret@status.example:3128", NoProxy: ".cluster.local,10.0.0.0/16"},
	}
	p, err := ProxyFromCluster(obj)
	if err != nil || p.HTTPProxy != "http://u:s3cret@status.example:3128" || p.NoProxy != ".cluster.local,10.0.0.0/16" {
		t.Fatalf("got %+v, %v: want the status", p, err)
	}
	if r := p.Redacted(); strings.Contains(r, "s3cret") || !strings.Contains(r, "status.example:3128") {
		t.Errorf("Redacted() = %q", r)
	}
	if env := p.Env(); env["http_proxy"] != p.HTTPProxy || env["HTTP_PROXY"] != p.HTTPProxy || env["no_proxy"] != p.NoProxy || len(env) != 4 {
		t.Errorf("Env() = %v", env)
	}
	obj.Status = configv1.ProxyStatus{}
	if p, _ := ProxyFromCluster(obj); p.HTTPProxy != "http://spec.example:3128" {
		t.Errorf("without a status: %+v, want the spec", p)
	}
	if p, err := ProxyFromCluster(nil); err != nil || !p.IsZero() {
		t.Errorf("no Proxy object: %+v, %v", p, err)
	}

	for _, bad := range []string{"socks5://u:s3cret@h:1080", "u:s3cret@h:3128", "http://u:s3cret@/"} {
		_, err := ProxyFromCluster(&configv1.Proxy{Spec: configv1.ProxySpec{HTTPSProxy: bad}})
		if err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "httpsProxy") {
			t.Errorf("%q: %v (want the field named, no password)", bad, err)
		}
	}
	if _, err := NewConfig(ConfigSources{Proxy: &configv1.Proxy{Spec: configv1.ProxySpec{HTTPProxy: "ftp://x"}}}); err == nil {
		t.Error("NewConfig accepted a bad proxy")
	}
}

// TestTheProxyTrustedCAIsTrustedForEveryHost: a registry whose certificate only the cluster's user
// CA bundle (Proxy spec.trustedCA) vouches for is reached with it, and refused without it.
func TestTheProxyTrustedCAIsTrustedForEveryHost(t *testing.T) {
	reg := newTestRegistry(t, regUser, regPass, true)
	digest := reg.pushRandom(t, reg.host()+"/os/base:v1")
	bundle := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: reg.srv.Certificate().Raw}))
	proxy := &configv1.Proxy{Spec: configv1.ProxySpec{TrustedCA: configv1.ConfigMapNameReference{Name: "user-ca-bundle"}}}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "user-ca-bundle", Namespace: "openshift-config"}, Data: map[string]string{ProxyTrustedCAKey: bundle}}

	cfg, err := NewConfig(ConfigSources{Proxy: proxy, ProxyTrustedCA: cm})
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg.TrustedCA()) != bundle {
		t.Fatal("TrustedCA() is not the bundle")
	}
	auths := testAuths(t, reg.host(), regUser, regPass).Keychain()
	if ok, err := NewClient(WithConfig(cfg), WithKeychain(auths), fastRetry()).DigestExists(t.Context(), reg.host()+"/os/base@"+digest); err != nil || !ok {
		t.Errorf("with the trusted CA: %v, %v", ok, err)
	}
	if _, err := NewClient(WithKeychain(auths), fastRetry()).DigestExists(t.Context(), reg.host()+"/os/base@"+digest); err == nil {
		t.Error("without the trusted CA the registry's certificate was accepted")
	}

	if _, err := NewConfig(ConfigSources{Proxy: proxy}); err == nil || !strings.Contains(err.Error(), "user-ca-bundle") {
		t.Errorf("a missing trustedCA ConfigMap: %v", err)
	}
	cm.Data[ProxyTrustedCAKey] = "not a certificate"
	if _, err := NewConfig(ConfigSources{Proxy: proxy, ProxyTrustedCA: cm}); err == nil || strings.Contains(err.Error(), "not a certificate") {
		t.Errorf("a bundle without certificates: %v (want refused, not quoted)", err)
	}
	cm.Data = nil
	if cfg, err := NewConfig(ConfigSources{Proxy: proxy, ProxyTrustedCA: cm}); err != nil || cfg.TrustedCA() != nil {
		t.Errorf("an empty bundle: %v", err)
	}
}

func TestWithNetworkOfKeepsTheRestAndTakesTheProxy(t *testing.T) {
	img := imageConfig(configv1.RegistrySources{InsecureRegistries: []string{"insecure.example:5000"}}, "")
	own, err := NewConfig(ConfigSources{Image: img})
	if err != nil {
		t.Fatal(err)
	}
	cluster, err := NewConfig(ConfigSources{Proxy: &configv1.Proxy{Spec: configv1.ProxySpec{HTTPSProxy: "http://proxy.example:3128"}}})
	if err != nil {
		t.Fatal(err)
	}
	got := own.WithNetworkOf(cluster)
	if got.Proxy() != cluster.Proxy() || !got.InsecureHost("insecure.example:5000") {
		t.Errorf("proxy %+v, insecure %v", got.Proxy(), got.InsecureHost("insecure.example:5000"))
	}
	if !own.Proxy().IsZero() {
		t.Error("WithNetworkOf changed its receiver")
	}
	if p := (*Config)(nil).WithNetworkOf(cluster).Proxy(); p != cluster.Proxy() {
		t.Errorf("from a nil Config: %+v", p)
	}
}
