package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Sentinels for the kinds of registry failure a caller reacts to differently.
var (
	// ErrUnauthorized: the registry refused the credentials (HTTP 401/403).
	ErrUnauthorized = errors.New("registry refused the credentials")
	// ErrNotFound: the registry has no such repository or manifest (HTTP 404).
	ErrNotFound = errors.New("image not found in registry")
	// ErrUnreachable: no HTTP answer (DNS, connection, TLS).
	ErrUnreachable = errors.New("registry unreachable")
	// ErrUnsupported: the registry does not do what was asked (HTTP 405), such as deleting a
	// manifest on a docker-registry without storage.delete.enabled.
	ErrUnsupported = errors.New("registry does not support the operation")
)

// RemoteError is a failed registry call. Its message names the registry and the HTTP status.
type RemoteError struct {
	// Op is what was being done: "resolve", "check", "inspect", "push" or "delete".
	Op string
	// Reference is the image the call was about.
	Reference string
	// Registry is the host[:port] that was called.
	Registry string
	// StatusCode is the HTTP status, 0 when there was no HTTP answer.
	StatusCode int
	Err        error
}

func newRemoteError(op string, ref Reference, err error) *RemoteError {
	var re *RemoteError
	if errors.As(err, &re) {
		return re
	}
	e := &RemoteError{Op: op, Reference: ref.String(), Registry: ref.Host, Err: err}
	var te *transport.Error
	if errors.As(err, &te) {
		e.StatusCode = te.StatusCode
	}
	return e
}

func (e *RemoteError) Error() string {
	status := fmt.Sprintf("HTTP %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	secret := "pull secret"
	if e.Op == "push" || e.Op == "delete" {
		secret = "push secret"
	}
	switch {
	case e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden:
		return fmt.Sprintf("%s %s: registry %s refused the credentials (%s): check that the %s has an entry for %s with access to this repository",
			e.Op, e.Reference, e.Registry, status, secret, e.Registry)
	case e.StatusCode == http.StatusNotFound:
		return fmt.Sprintf("%s %s: registry %s has no such image (%s)", e.Op, e.Reference, e.Registry, status)
	case e.StatusCode == http.StatusMethodNotAllowed:
		return fmt.Sprintf("%s %s: registry %s does not allow it (%s); a docker-registry deletes images only with storage.delete.enabled",
			e.Op, e.Reference, e.Registry, status)
	case e.StatusCode != 0:
		return fmt.Sprintf("%s %s: registry %s answered %s: %v", e.Op, e.Reference, e.Registry, status, e.Err)
	case isTLSError(e.Err):
		return fmt.Sprintf("%s %s: TLS with registry %s failed: %v; add its CA to the ConfigMap named by %s spec.additionalTrustedCA (key %s) or list it in insecureRegistries",
			e.Op, e.Reference, e.Registry, e.Err, imageConfigObject, caKey(e.Registry))
	default:
		return fmt.Sprintf("%s %s: cannot reach registry %s: %v", e.Op, e.Reference, e.Registry, e.Err)
	}
}

// Unwrap exposes both the cause and the sentinel of its kind.
func (e *RemoteError) Unwrap() []error {
	out := []error{e.Err}
	switch {
	case e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden:
		out = append(out, ErrUnauthorized)
	case e.StatusCode == http.StatusNotFound:
		out = append(out, ErrNotFound)
	case e.StatusCode == http.StatusMethodNotAllowed:
		out = append(out, ErrUnsupported)
	case e.StatusCode == 0 && !errors.Is(e.Err, context.Canceled) && !errors.Is(e.Err, context.DeadlineExceeded):
		out = append(out, ErrUnreachable)
	}
	return out
}

// transient says whether trying again may help.
func (e *RemoteError) transient() bool {
	switch e.StatusCode {
	case 0:
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	default:
		return false
	}
	if errors.Is(e.Err, context.Canceled) || errors.Is(e.Err, context.DeadlineExceeded) || isTLSError(e.Err) || speaksPlainHTTP(e.Err) {
		return false
	}
	// *url.Error satisfies net.Error whatever its cause, so look at the cause: a failed
	// connection or a timeout may pass, an unknown host will not.
	var dns *net.DNSError
	if errors.As(e.Err, &dns) {
		return dns.IsTimeout || dns.IsTemporary
	}
	var op *net.OpError
	if errors.As(e.Err, &op) {
		return true
	}
	var ne net.Error
	if errors.As(e.Err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(e.Err, io.ErrUnexpectedEOF) || errors.Is(e.Err, io.EOF)
}

func isTLSError(err error) bool {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var cv *tls.CertificateVerificationError
	var rh tls.RecordHeaderError
	return errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) || errors.As(err, &cv) || errors.As(err, &rh) || speaksPlainHTTP(err)
}

// caKey is the ConfigMap key for a registry's CA: ':' is spelled "..".
func caKey(host string) string {
	h, port, ok := cutLast(host, ':')
	if !ok {
		return host
	}
	return h + ".." + port
}

func cutLast(s string, sep byte) (string, string, bool) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
