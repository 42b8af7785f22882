package registry

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
)

// hostTransport gives every registry host its own TLS settings: the system roots plus that
// registry's CA from the Image config's additionalTrustedCA, or no verification for an insecure
// registry — what containers/image does with certs.d and registries.conf "insecure".
type hostTransport struct {
	base         *http.Transport
	config       *Config
	systemPEM    []byte
	useSystemPEM bool

	mu      sync.Mutex
	perHost map[string]*http.Transport
}

func newHostTransport() *hostTransport {
	return &hostTransport{perHost: map[string]*http.Transport{}}
}

// ErrPlainHTTPRefused: a request would go to a registry over plain HTTP although the registry is
// not listed as insecure. go-containerregistry falls back to HTTP by itself for loopback,
// localhost and private addresses; that would send credentials in clear text, so it stops here.
var ErrPlainHTTPRefused = errors.New("plain HTTP to a registry not listed in insecureRegistries")

func (t *hostTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !t.config.InsecureHost(req.URL.Host) {
		return nil, fmt.Errorf("%w: %s; list it in image.config.openshift.io/cluster spec.registrySources.insecureRegistries if it really serves plain HTTP", ErrPlainHTTPRefused, req.URL.Host)
	}
	return t.forHost(req.URL.Host).RoundTrip(req)
}

func (t *hostTransport) forHost(host string) *http.Transport {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tr, ok := t.perHost[host]; ok {
		return tr
	}
	var tr *http.Transport
	if t.base != nil {
		tr = t.base.Clone()
	} else {
		tr = http.DefaultTransport.(*http.Transport).Clone()
	}
	if proxy := t.config.Proxy(); !proxy.IsZero() {
		// The cluster's proxy, not the process environment's: the same for every call mosb makes.
		tr.Proxy = proxy.RequestFunc()
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if tr.TLSClientConfig != nil {
		cfg = tr.TLSClientConfig.Clone()
	}
	if t.config.InsecureHost(host) {
		cfg.InsecureSkipVerify = true
	} else if ca, trusted := caForHost(t.config.RegistryCAs(), host), t.config.TrustedCA(); ca != nil || trusted != nil || t.useSystemPEM {
		pool := t.roots()
		for _, bundle := range [][]byte{ca, trusted} {
			if bundle != nil {
				pool.AppendCertsFromPEM(bundle)
			}
		}
		cfg.RootCAs = pool
	}
	tr.TLSClientConfig = cfg
	// HTTP/1.1 only, as containers/image speaks: over HTTP/2 every request to a registry shares one
	// connection, so a transfer cut for being stuck leaves the connection — and each retry on it —
	// stuck too.
	tr.ForceAttemptHTTP2 = false
	cfg.NextProtos = []string{"http/1.1"}
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	t.perHost[host] = tr
	return tr
}

func (t *hostTransport) roots() *x509.CertPool {
	if t.useSystemPEM {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(t.systemPEM)
		return pool
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		return x509.NewCertPool()
	}
	return pool
}

// caForHost finds the certs.d entry of a URL host; ":443" is the default port, so
// "host:443" and "host" name the same registry.
func caForHost(cas map[string][]byte, host string) []byte {
	if ca, ok := cas[host]; ok {
		return ca
	}
	if h, ok := strings.CutSuffix(host, ":443"); ok {
		return cas[h]
	}
	return cas[host+":443"]
}
