// Package bounds keeps registry traffic from waiting forever: it bounds connecting to a
// registry, waiting for its answer, and a transfer that stops making progress — never the total
// length of a transfer, so a multi-GB layer over a slow link finishes as long as bytes keep coming.
//
// Two ways in: Watch wraps an http.RoundTripper (mosb's own registry client), and Guard is a
// loopback SOCKS5 relay for clients whose transport cannot be wrapped (containers/image, inside
// buildah), given to them as their proxy. Both report a bound that was hit as an
// *UnresponsiveError naming the registry, the operation and how long it waited.
package bounds

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Bounds are how long registry traffic may wait. A zero field takes its default.
type Bounds struct {
	// Connect bounds opening a connection: TCP, and the TLS handshake where mosb sees it.
	Connect time.Duration
	// Response bounds the wait from a request fully sent to the first byte of its answer.
	Response time.Duration
	// Stall bounds a transfer (a layer pulled or pushed) that makes no progress at all.
	Stall time.Duration
}

// Defaults: long enough for a busy registry and a slow link, short enough that a registry that
// stopped answering ends a build (retries included) within a few minutes.
const (
	DefaultConnect  = 30 * time.Second
	DefaultResponse = 60 * time.Second
	DefaultStall    = 60 * time.Second
)

// Default is the bounds used when none are set.
func Default() Bounds {
	return Bounds{Connect: DefaultConnect, Response: DefaultResponse, Stall: DefaultStall}
}

// OrDefault fills the zero fields with their defaults.
func (b Bounds) OrDefault() Bounds {
	d := Default()
	if b.Connect == 0 {
		b.Connect = d.Connect
	}
	if b.Response == 0 {
		b.Response = d.Response
	}
	if b.Stall == 0 {
		b.Stall = d.Stall
	}
	return b
}

// Validate refuses a negative bound; zero means the default.
func (b Bounds) Validate() error {
	var bad []string
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"connect", b.Connect}, {"response", b.Response}, {"stall", b.Stall}} {
		if f.d < 0 {
			bad = append(bad, fmt.Sprintf("%s %s", f.name, f.d))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("registry bounds must be positive durations such as 30s (0: the default): %s", strings.Join(bad, ", "))
	}
	return nil
}

func (b Bounds) String() string {
	return fmt.Sprintf("connect %s, response %s, stall %s", b.Connect, b.Response, b.Stall)
}

// tick is how often a watch looks at its transfers: a fraction of the smallest bound, so a bound
// is noticed soon after it passes.
func (b Bounds) tick() time.Duration {
	t := min(b.Connect, b.Response, b.Stall) / 5
	return max(10*time.Millisecond, min(t, time.Second))
}

// Phase is the bound that was hit.
type Phase string

const (
	PhaseConnect  Phase = "connect"
	PhaseResponse Phase = "response"
	PhaseStall    Phase = "stall"
)

// UnresponsiveError is a registry that stopped answering: a bound was hit (retries, if any, are
// over by the time a caller sees it).
type UnresponsiveError struct {
	// Registry is host:port.
	Registry string
	// Op is what was being done, in words: "pulling layer sha256:… of ns/repo".
	Op     string
	Phase  Phase
	Waited time.Duration
	// Transferred is how many bytes of the stalled transfer had moved; -1 when unknown.
	Transferred int64
	// Err is the error the client saw when the bound cut the connection, if any.
	Err error
}

func (e *UnresponsiveError) Error() string {
	var what string
	switch e.Phase {
	case PhaseConnect:
		what = fmt.Sprintf("no connection within %s", e.Waited)
	case PhaseResponse:
		what = fmt.Sprintf("no answer within %s", e.Waited)
	default:
		what = fmt.Sprintf("the transfer made no progress for %s", e.Waited)
		if e.Transferred > 0 {
			what += fmt.Sprintf(" after %s", humanBytes(e.Transferred))
		}
	}
	msg := fmt.Sprintf("registry %s is unresponsive: %s", e.Registry, what)
	if e.Op != "" {
		msg += " while " + e.Op
	}
	return msg
}

// with is a copy of e carrying the error the client saw (which may hold e itself, as the
// cancellation's cause: a copy keeps the chain from looping).
func (e *UnresponsiveError) with(err error) *UnresponsiveError {
	out := *e
	out.Err = err
	return &out
}

// With is a copy of e carrying the error the client saw.
func (e *UnresponsiveError) With(err error) *UnresponsiveError { return e.with(err) }

// Unwrap is the client's error, except the cancellation the bound itself caused: that would read
// as a build stopped by its caller.
func (e *UnresponsiveError) Unwrap() error {
	if errors.Is(e.Err, context.Canceled) {
		return nil
	}
	return e.Err
}

// Timeout makes the error a net.Error that timed out, which retry policies treat as transient.
func (e *UnresponsiveError) Timeout() bool { return true }

// Temporary is false so that libraries retrying "temporary" errors on their own (go-containerregistry
// does) leave the decision to the caller's retry policy, which counts attempts of a whole bound.
func (e *UnresponsiveError) Temporary() bool { return false }

// AsUnresponsive finds an *UnresponsiveError in err's chain.
func AsUnresponsive(err error) (*UnresponsiveError, bool) {
	var u *UnresponsiveError
	ok := errors.As(err, &u)
	return u, ok
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// Describe names a registry request in words from its method and path (the distribution API's
// shapes); the path alone (method "") is enough for most.
func Describe(method, path string) string {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return "authenticating (" + path + ")"
	}
	if rest == "" {
		return "checking the registry's API (/v2/)"
	}
	if i := strings.Index(rest, "/blobs/uploads"); i >= 0 {
		if method == "POST" {
			return "starting a layer upload to " + rest[:i]
		}
		return "pushing a layer to " + rest[:i]
	}
	if i := strings.LastIndex(rest, "/blobs/"); i >= 0 {
		layer := shortDigest(rest[i+len("/blobs/"):])
		switch method {
		case "GET":
			return "pulling layer " + layer + " of " + rest[:i]
		case "HEAD":
			return "checking layer " + layer + " in " + rest[:i]
		}
		return "requesting layer " + layer + " of " + rest[:i]
	}
	if i := strings.LastIndex(rest, "/manifests/"); i >= 0 {
		ref := shortDigest(rest[i+len("/manifests/"):])
		if method == "PUT" {
			return "pushing the manifest " + ref + " to " + rest[:i]
		}
		return "reading the manifest " + ref + " of " + rest[:i]
	}
	return "requesting " + path
}

func shortDigest(s string) string {
	if alg, hex, ok := strings.Cut(s, ":"); ok && len(hex) > 12 {
		return alg + ":" + hex[:12]
	}
	return s
}
