package registry

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	configv1 "github.com/openshift/api/config/v1"
	"golang.org/x/net/http/httpproxy"
)

// ProxyName is the one cluster-wide Proxy object (config.openshift.io/v1).
const ProxyName = "cluster"

// Proxy is the HTTP(S) proxy a build and mosb's own registry calls go through. A proxy URL may
// carry a user name and password: a Proxy's URLs are secrets and are never written into
// messages, logs, status or the build request (Redacted is the form to show).
type Proxy struct {
	HTTPProxy, HTTPSProxy, NoProxy string
}

// IsZero reports whether no proxy is set.
func (p Proxy) IsZero() bool { return p.HTTPProxy == "" && p.HTTPSProxy == "" }

// ProxyFromCluster reads the cluster Proxy: its status, which the network operator fills from the
// spec (adding the cluster's own networks to noProxy), else its spec. A nil object is no proxy.
func ProxyFromCluster(obj *configv1.Proxy) (Proxy, error) {
	if obj == nil {
		return Proxy{}, nil
	}
	p := Proxy{HTTPProxy: obj.Status.HTTPProxy, HTTPSProxy: obj.Status.HTTPSProxy, NoProxy: obj.Status.NoProxy}
	if p.IsZero() {
		p = Proxy{HTTPProxy: obj.Spec.HTTPProxy, HTTPSProxy: obj.Spec.HTTPSProxy, NoProxy: obj.Spec.NoProxy}
	}
	if p.IsZero() {
		return Proxy{}, nil
	}
	return p, p.Validate()
}

// ProxyFromEnvironment is the proxy the environment names (HTTP_PROXY, HTTPS_PROXY, NO_PROXY, or
// their lower-case forms), as for `mosb build` on a CI machine behind a proxy.
func ProxyFromEnvironment() Proxy {
	c := httpproxy.FromEnvironment()
	return Proxy{HTTPProxy: c.HTTPProxy, HTTPSProxy: c.HTTPSProxy, NoProxy: c.NoProxy}
}

// Validate checks that each URL is an http(s) proxy URL. Its errors show the URL redacted.
func (p Proxy) Validate() error {
	for _, f := range []struct{ field, value string }{{"httpProxy", p.HTTPProxy}, {"httpsProxy", p.HTTPSProxy}} {
		if f.value == "" {
			continue
		}
		u, err := url.Parse(f.value)
		if err != nil {
			return fmt.Errorf("the cluster Proxy's %s is not a URL", f.field)
		}
		// The value is not shown: a malformed URL's password would not be recognised as one.
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("the cluster Proxy's %s is not an http:// or https:// proxy URL with a host", f.field)
		}
	}
	if strings.ContainsAny(p.NoProxy, " \t\r\n") {
		return fmt.Errorf("the cluster Proxy's noProxy has whitespace: write a comma-separated list")
	}
	return nil
}

// Redacted is the proxy as it may be shown: passwords replaced by xxxxx.
func (p Proxy) Redacted() string {
	redact := func(s string) string {
		if u, err := url.Parse(s); err == nil {
			return u.Redacted()
		}
		return "(unparseable)"
	}
	var parts []string
	if p.HTTPProxy != "" {
		parts = append(parts, "http "+redact(p.HTTPProxy))
	}
	if p.HTTPSProxy != "" {
		parts = append(parts, "https "+redact(p.HTTPSProxy))
	}
	if p.NoProxy != "" {
		parts = append(parts, "no proxy for "+p.NoProxy)
	}
	return strings.Join(parts, ", ")
}

// URLFunc is the proxy for a request URL (nil: direct), with NO_PROXY's matching rules.
func (p Proxy) URLFunc() func(*url.URL) (*url.URL, error) {
	return (&httpproxy.Config{HTTPProxy: p.HTTPProxy, HTTPSProxy: p.HTTPSProxy, NoProxy: p.NoProxy}).ProxyFunc()
}

// RequestFunc is URLFunc for an http.Transport's Proxy field.
func (p Proxy) RequestFunc() func(*http.Request) (*url.URL, error) {
	f := p.URLFunc()
	return func(r *http.Request) (*url.URL, error) { return f(r.URL) }
}

// Env is the proxy as environment variables, upper and lower case (tools read one or the other:
// busybox wget and curl the lower, dnf both), sorted.
func (p Proxy) Env() map[string]string {
	env := map[string]string{}
	for _, v := range []struct{ name, value string }{{"HTTP_PROXY", p.HTTPProxy}, {"HTTPS_PROXY", p.HTTPSProxy}, {"NO_PROXY", p.NoProxy}} {
		if v.value != "" {
			env[v.name] = v.value
			env[strings.ToLower(v.name)] = v.value
		}
	}
	return env
}
