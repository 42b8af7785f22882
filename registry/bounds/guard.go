package bounds

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpproxy"
)

// Guard holds a client it cannot wrap to Bounds: the client is given the guard as its SOCKS5
// proxy (containers/image's SystemContext.DockerProxy) and the guard relays each connection to
// the registry, watching it. TLS passes through untouched, so the guard sees connections, not
// requests:
//   - a connection that cannot be opened within Connect fails (a definite strike);
//   - bytes sent by the client and not answered within Response cut the connection (a strike);
//   - a registry that stops taking what the client sends for Stall cuts it (a strike);
//   - a connection silent both ways for Stall is closed: mid-download (a stall) and idle cannot be
//     told apart inside TLS, and closing an idle keep-alive connection costs nothing — the client
//     opens a new one. Such closes are remembered, not counted.
//
// After maxStrikes strikes against a registry, the guard refuses new connections to it, so that a
// client's own retries end quickly. Explain turns a client's error into the *UnresponsiveError
// behind it. A Guard serves one build; Close ends every relay.
type Guard struct {
	b      Bounds
	ln     net.Listener
	url    *url.URL
	env    func(*url.URL) (*url.URL, error)
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	lastOp  map[string]string
	strikes map[string][]*UnresponsiveError
	suspect map[string]suspectClose
}

type suspectClose struct {
	err *UnresponsiveError
	at  time.Time
}

// maxStrikes is how many definite bounds a registry may hit before the guard stops trying it for
// the rest of the build.
const maxStrikes = 2

// NewGuard listens on the loopback interface.
func NewGuard(b Bounds) (*Guard, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting the registry guard: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Guard{
		b: b.OrDefault(), ln: ln, ctx: ctx, cancel: cancel,
		url:     &url.URL{Scheme: "socks5", Host: ln.Addr().String()},
		env:     httpproxy.FromEnvironment().ProxyFunc(),
		conns:   map[net.Conn]struct{}{},
		lastOp:  map[string]string{},
		strikes: map[string][]*UnresponsiveError{},
		suspect: map[string]suspectClose{},
	}
	g.wg.Add(1)
	go g.serve()
	return g, nil
}

// UseProxy makes the guard hand the client proxy (for the URLs it proxies) instead of the
// environment's: a build told its proxy explicitly (the cluster's) goes through it. Call it before
// the guard is used.
func (g *Guard) UseProxy(proxy func(*url.URL) (*url.URL, error)) { g.env = proxy }

// Proxy is the proxy function for a client (containers/image's SystemContext.DockerProxy): the
// guard, unless the environment names an HTTP(S) proxy for the URL — then that proxy, which the
// guard cannot relay through, and the bounds apply only where the caller watches progress itself.
func (g *Guard) Proxy(u *url.URL) (*url.URL, error) {
	if p, err := g.env(u); err != nil || p != nil {
		return p, err
	}
	g.mu.Lock()
	g.lastOp[hostPort(u)] = Describe("", u.Path)
	g.mu.Unlock()
	return g.url, nil
}

func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "http" {
		return net.JoinHostPort(u.Hostname(), "80")
	}
	return net.JoinHostPort(u.Hostname(), "443")
}

// Explain returns err as the *UnresponsiveError behind it when the guard cut or refused a
// connection to a registry that err names, err unchanged otherwise. A client's own timeout
// (containers/image bounds TLS handshakes by itself) is reported the same way.
func (g *Guard) Explain(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := AsUnresponsive(err); ok {
		return err
	}
	msg := err.Error()
	g.mu.Lock()
	defer g.mu.Unlock()
	var found *UnresponsiveError
	for host, strikes := range g.strikes {
		if len(strikes) > 0 && mentions(msg, host) {
			found = strikes[len(strikes)-1]
		}
	}
	if found == nil && connectionLost(msg) {
		// A broken body read often names no host ("reading blob …: unexpected EOF"): then the
		// latest close the guard made, if it was recent enough to be the cause.
		var latest, anyLatest time.Time
		var anyFound *UnresponsiveError
		for host, s := range g.suspect {
			if mentions(msg, host) && s.at.After(latest) {
				found, latest = s.err, s.at
			}
			if s.at.After(anyLatest) {
				anyFound, anyLatest = s.err, s.at
			}
		}
		if found == nil && anyFound != nil && !mentionsAnyOther(msg, g.lastOp, anyFound.Registry) && time.Since(anyLatest) < 2*g.b.Stall+time.Minute {
			found = anyFound
		}
	}
	if found == nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && strings.Contains(msg, "TLS handshake timeout") {
			for host, op := range g.lastOp {
				if mentions(msg, host) {
					found = &UnresponsiveError{Registry: host, Op: "in the TLS handshake, " + op, Phase: PhaseConnect, Waited: tlsHandshakeTimeout, Transferred: -1}
				}
			}
		}
	}
	if found == nil {
		return err
	}
	return found.with(err)
}

// tlsHandshakeTimeout is containers/image's own bound on a TLS handshake.
const tlsHandshakeTimeout = 10 * time.Second

// mentions says whether msg names host:port (or the host alone, for the default ports a URL omits).
func mentions(msg, hostport string) bool {
	if strings.Contains(msg, hostport) {
		return true
	}
	host, port, err := net.SplitHostPort(hostport)
	if err == nil && (port == "443" || port == "80") {
		return strings.Contains(msg, "://"+host+"/") || strings.Contains(msg, " "+host+"/")
	}
	return false
}

// mentionsAnyOther says whether msg names a registry the guard relayed to other than host.
func mentionsAnyOther(msg string, seen map[string]string, host string) bool {
	for h := range seen {
		if h != host && mentions(msg, h) {
			return true
		}
	}
	return false
}

func connectionLost(msg string) bool {
	for _, s := range []string{"EOF", "connection reset", "broken pipe", "closed network connection", "socks connect"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// Close stops the guard and cuts every relayed connection.
func (g *Guard) Close() error {
	g.cancel()
	err := g.ln.Close()
	g.mu.Lock()
	for c := range g.conns {
		_ = c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
	return err
}

func (g *Guard) track(c net.Conn, on bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if on {
		if g.ctx.Err() != nil {
			return false
		}
		g.conns[c] = struct{}{}
	} else {
		delete(g.conns, c)
	}
	return true
}

func (g *Guard) serve() {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		if !g.track(c, true) {
			_ = c.Close()
			return
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer g.track(c, false)
			defer c.Close()
			g.handle(c)
		}()
	}
}

func (g *Guard) strike(u *UnresponsiveError) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.strikes[u.Registry] = append(g.strikes[u.Registry], u)
}

func (g *Guard) refused(host string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.strikes[host]) >= maxStrikes
}

func (g *Guard) op(host string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lastOp[host]
}

// SOCKS5 (RFC 1928), the subset Go's HTTP client speaks: no authentication, CONNECT.
const (
	socksVersion      = 5
	socksCmdConnect   = 1
	socksAtypIPv4     = 1
	socksAtypDomain   = 3
	socksAtypIPv6     = 4
	socksOK           = 0
	socksFailure      = 1
	socksUnreachable  = 4
	socksRefused      = 5
	socksTTLExpired   = 6
	socksBadCommand   = 7
	socksNoAcceptable = 0xff
)

func (g *Guard) handle(client net.Conn) {
	_ = client.SetDeadline(time.Now().Add(g.b.Connect))
	target, err := socksRequest(client)
	if err != nil {
		return
	}
	if g.refused(target) {
		socksReply(client, socksUnreachable)
		return
	}
	d := net.Dialer{Timeout: g.b.Connect}
	up, err := d.DialContext(g.ctx, "tcp", target)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			g.strike(&UnresponsiveError{Registry: target, Op: orConnecting(g.op(target)), Phase: PhaseConnect, Waited: g.b.Connect, Transferred: -1})
			socksReply(client, socksTTLExpired)
			return
		}
		socksReply(client, socksRefused)
		return
	}
	defer up.Close()
	if !g.track(up, true) {
		return
	}
	defer g.track(up, false)
	if !socksReply(client, socksOK) {
		return
	}
	_ = client.SetDeadline(time.Time{})
	newRelay(g, target, client, up).run()
}

func orConnecting(op string) string {
	if op == "" {
		return "connecting"
	}
	return "connecting for " + op
}

func socksRequest(c net.Conn) (string, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil || hdr[0] != socksVersion {
		return "", errors.New("not SOCKS5")
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(c, methods); err != nil {
		return "", err
	}
	noAuth := false
	for _, m := range methods {
		noAuth = noAuth || m == 0
	}
	if !noAuth {
		_, _ = c.Write([]byte{socksVersion, socksNoAcceptable})
		return "", errors.New("no acceptable SOCKS method")
	}
	if _, err := c.Write([]byte{socksVersion, 0}); err != nil {
		return "", err
	}
	var req [4]byte
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return "", err
	}
	if req[0] != socksVersion || req[1] != socksCmdConnect {
		socksReply(c, socksBadCommand)
		return "", errors.New("not a SOCKS5 CONNECT")
	}
	var host string
	switch req[3] {
	case socksAtypIPv4, socksAtypIPv6:
		ip := make(net.IP, map[byte]int{socksAtypIPv4: 4, socksAtypIPv6: 16}[req[3]])
		if _, err := io.ReadFull(c, ip); err != nil {
			return "", err
		}
		host = ip.String()
	case socksAtypDomain:
		var n [1]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return "", err
		}
		name := make([]byte, n[0])
		if _, err := io.ReadFull(c, name); err != nil {
			return "", err
		}
		host = string(name)
	default:
		socksReply(c, socksFailure)
		return "", errors.New("unknown SOCKS address type")
	}
	var port [2]byte
	if _, err := io.ReadFull(c, port[:]); err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port[:])))), nil
}

func socksReply(c net.Conn, code byte) bool {
	_, err := c.Write([]byte{socksVersion, code, 0, socksAtypIPv4, 0, 0, 0, 0, 0, 0})
	return err == nil
}

// relay copies one connection both ways and holds it to the bounds.
type relay struct {
	g          *Guard
	target     string
	client, up net.Conn

	mu         sync.Mutex
	lastClient time.Time // last bytes from the client
	lastServer time.Time // last bytes from the registry (or the start)
	answered   int64     // bytes from the registry since the client last sent
	once       sync.Once
}

func newRelay(g *Guard, target string, client, up net.Conn) *relay {
	return &relay{g: g, target: target, client: client, up: up, lastServer: time.Now()}
}

func (r *relay) run() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.fromRegistry()
	}()
	r.fromClient()
	<-done
}

func (r *relay) cut() {
	r.once.Do(func() {
		_ = r.client.Close()
		_ = r.up.Close()
	})
}

// owed says whether the registry owes the client an answer, and the registry's read deadline.
func (r *relay) deadline() (owed bool, at time.Time) {
	if r.lastClient.After(r.lastServer) {
		return true, r.lastClient.Add(r.g.b.Response)
	}
	return false, r.lastServer.Add(r.g.b.Stall)
}

func (r *relay) fromClient() {
	defer r.cut()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.client.Read(buf)
		if n > 0 {
			r.mu.Lock()
			if !r.lastClient.After(r.lastServer) {
				r.answered = 0
			}
			r.lastClient = time.Now()
			_, at := r.deadline()
			_ = r.up.SetReadDeadline(at)
			r.mu.Unlock()
			_ = r.up.SetWriteDeadline(time.Now().Add(r.g.b.Stall))
			if _, werr := r.up.Write(buf[:n]); werr != nil {
				var ne net.Error
				if errors.As(werr, &ne) && ne.Timeout() {
					r.g.strike(&UnresponsiveError{Registry: r.target, Op: orOp(r.g.op(r.target), "sending to it"), Phase: PhaseStall, Waited: r.g.b.Stall, Transferred: -1})
				}
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func orOp(op, fallback string) string {
	if op == "" {
		return fallback
	}
	return op
}

func (r *relay) fromRegistry() {
	defer r.cut()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.up.Read(buf)
		if n > 0 {
			r.mu.Lock()
			r.lastServer = time.Now()
			r.answered += int64(n)
			_, at := r.deadline()
			_ = r.up.SetReadDeadline(at)
			r.mu.Unlock()
			if _, werr := r.client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err == nil {
			continue
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return
		}
		r.mu.Lock()
		owed, at := r.deadline()
		answered := r.answered
		r.mu.Unlock()
		if time.Now().Before(at) {
			_ = r.up.SetReadDeadline(at) // the client sent more meanwhile
			continue
		}
		op := r.g.op(r.target)
		if owed {
			r.g.strike(&UnresponsiveError{Registry: r.target, Op: orOp(op, "waiting for it"), Phase: PhaseResponse, Waited: r.g.b.Response, Transferred: -1})
			return
		}
		if answered > 0 {
			r.g.mu.Lock()
			r.g.suspect[r.target] = suspectClose{at: time.Now(), err: &UnresponsiveError{Registry: r.target, Op: orOp(op, "receiving from it"), Phase: PhaseStall, Waited: r.g.b.Stall, Transferred: answered}}
			r.g.mu.Unlock()
		}
		return
	}
}

// ProxyFromEnvironment reports whether the environment names an HTTP(S) proxy (which the guard
// does not relay through), for a caller that wants to say so.
func ProxyFromEnvironment() bool {
	for _, v := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"} {
		if os.Getenv(v) != "" {
			return true
		}
	}
	return false
}
