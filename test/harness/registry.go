package harness

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"golang.org/x/crypto/bcrypt"
)

// Registry is a running Debian docker-registry (distribution 2.8) on 127.0.0.1. By default it
// requires htpasswd credentials and serves TLS from a CA of its own.
type Registry struct {
	// Host is host:port, as it appears in pullspecs.
	Host string
	// Username and Password are the only credentials the registry accepts (empty without auth).
	Username, Password string
	// CA signed the serving certificate (nil for a plain-HTTP registry).
	CA *CA
	// CertsDir is a containers-style certs.d directory holding <Host>/ca.crt.
	CertsDir string

	dir    string
	config string
	log    string
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

type registryOptions struct {
	tls      bool
	auth     bool
	ca       *CA
	username string
	noDelete bool
}

// RegistryOption changes how a test registry is served.
type RegistryOption func(*registryOptions)

// PlainHTTP serves without TLS, for insecureRegistries tests.
func PlainHTTP() RegistryOption { return func(o *registryOptions) { o.tls = false } }

// NoAuth accepts anonymous pulls and pushes.
func NoAuth() RegistryOption { return func(o *registryOptions) { o.auth = false } }

// WithCA signs the serving certificate with a given CA (several registries can share one).
func WithCA(ca *CA) RegistryOption { return func(o *registryOptions) { o.ca = ca } }

// WithoutDelete serves as docker-registry does by default: DELETE answers 405 Unsupported.
func WithoutDelete() RegistryOption { return func(o *registryOptions) { o.noDelete = true } }

// WithUsername sets the account the registry accepts.
func WithUsername(u string) RegistryOption { return func(o *registryOptions) { o.username = u } }

// StartRegistry starts a registry for the test and stops it when the test ends.
func StartRegistry(t T, opts ...RegistryOption) *Registry {
	t.Helper()
	requireBinary(t, "docker-registry")
	o := registryOptions{tls: true, auth: true, username: "mosb"}
	for _, fn := range opts {
		fn(&o)
	}
	r := &Registry{dir: t.TempDir()}
	r.log = filepath.Join(r.dir, "registry.log")
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	r.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	cfg := map[string]any{
		"version": "0.1",
		"log":     map[string]any{"level": "warn", "accesslog": map[string]any{"disabled": true}},
		"storage": map[string]any{
			"filesystem": map[string]any{"rootdirectory": filepath.Join(r.dir, "data")},
			"delete":     map[string]any{"enabled": !o.noDelete},
		},
		"http": map[string]any{"addr": r.Host, "secret": randomHex(16)},
	}
	if o.auth {
		r.Username, r.Password = o.username, randomHex(12)
		hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		htpasswd := filepath.Join(r.dir, "htpasswd")
		if err := os.WriteFile(htpasswd, fmt.Appendf(nil, "%s:%s\n", r.Username, hash), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg["auth"] = map[string]any{"htpasswd": map[string]any{"realm": "mosb-test", "path": htpasswd}}
	}
	if o.tls {
		r.CA = o.ca
		if r.CA == nil {
			if r.CA, err = NewCA("mosb test registry CA"); err != nil {
				t.Fatal(err)
			}
		}
		certPEM, keyPEM, err := r.CA.ServingPair()
		if err != nil {
			t.Fatal(err)
		}
		cert, key := filepath.Join(r.dir, "tls.crt"), filepath.Join(r.dir, "tls.key")
		mustWrite(t, cert, certPEM)
		mustWrite(t, key, keyPEM)
		cfg["http"].(map[string]any)["tls"] = map[string]any{"certificate": cert, "key": key}
		r.CertsDir = filepath.Join(r.dir, "certs.d")
		mustWrite(t, filepath.Join(r.CertsDir, r.Host, "ca.crt"), r.CA.PEM)
	}
	// docker-registry reads YAML; JSON is YAML.
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.config = filepath.Join(r.dir, "config.yml")
	mustWrite(t, r.config, raw)
	t.Cleanup(r.Stop)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	return r
}

// Start (re)starts the registry on its port with the same storage; it returns once it serves.
func (r *Registry) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(r.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command("docker-registry", "serve", r.config)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting docker-registry: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	r.cmd, r.exited = cmd, exited

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := &http.Client{Transport: r.Transport(), Timeout: time.Second}
	for {
		resp, err := client.Get(r.URL() + "/v2/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(r.log)
			r.cmd = nil
			return fmt.Errorf("docker-registry exited at start: %s", log)
		case <-ctx.Done():
			return fmt.Errorf("docker-registry on %s not serving after 20s: %v", r.Host, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop stops the registry (its storage is kept, so Start brings the same content back).
func (r *Registry) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	<-r.exited
	r.cmd = nil
}

// URL is the registry's base URL.
func (r *Registry) URL() string {
	if r.CA == nil {
		return "http://" + r.Host
	}
	return "https://" + r.Host
}

// Transport trusts the registry's CA (and nothing else).
func (r *Registry) Transport() http.RoundTripper {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if r.CA != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: r.CA.CertPool(), MinVersion: tls.VersionTLS12}
	}
	return tr
}

// Auth is the registry's credentials for go-containerregistry (anonymous without auth).
func (r *Registry) Auth() authn.Authenticator {
	if r.Username == "" {
		return authn.Anonymous
	}
	return &authn.Basic{Username: r.Username, Password: r.Password}
}

// DockerConfigJSON is a kubernetes.io/dockerconfigjson payload holding the registry's credentials.
func (r *Registry) DockerConfigJSON() []byte {
	return DockerConfigJSON(r.Host, r.Username, r.Password)
}

// DockerConfigJSON builds a kubernetes.io/dockerconfigjson payload for one registry.
func DockerConfigJSON(host, username, password string) []byte {
	auth := base64.StdEncoding.EncodeToString([]byte(username + ":" + password))
	raw, _ := json.Marshal(map[string]any{"auths": map[string]any{host: map[string]string{"auth": auth}}})
	return raw
}

// FreeLoopbackAddr is a 127.0.0.1 address whose port was free when asked, for a server a test
// starts (a controller's metrics or probes).
func FreeLoopbackAddr(t T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func mustWrite(t T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// ConversionWebhookArgs are the flags of a `mosb controller` outside the cluster that serves the
// CRDs' conversion webhook on a free loopback port, which the API server reaches by URL.
func ConversionWebhookArgs(t T) []string {
	t.Helper()
	addr := FreeLoopbackAddr(t)
	return []string{"--webhook-port", addr[strings.LastIndex(addr, ":")+1:], "--webhook-url", "https://" + addr + "/convert"}
}
