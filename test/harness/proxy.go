package harness

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy forwards TCP connections to a registry, so a test can make the registry vanish in the
// middle of a transfer (after a given number of bytes sent to it) and come back on the same port.
// TLS passes through untouched: the registry's certificate for 127.0.0.1 stays valid.
type Proxy struct {
	// Host is the proxy's host:port; use it in pullspecs instead of the registry's.
	Host   string
	target string

	mu      sync.Mutex
	ln      net.Listener
	conns   map[net.Conn]struct{}
	cutAt   int64 // upstream bytes after which the proxy cuts; 0 = never
	cut     chan struct{}
	cutOnce sync.Once
	sent    atomic.Int64
	hang    bool // accept connections and never answer
	// Per connection: hold it (forward nothing more that way) once this many bytes went down
	// (registry to client) or up (client to registry); 0 = never.
	stallDown, stallUp int64
	trickle            int // registry-to-client bytes per second; 0 = full speed
	// holding is closed the first time the proxy holds a connection (Hang, StallDownloadsAfter,
	// StallUploadsAfter): from then on a client is waiting on it.
	holding     chan struct{}
	holdingOnce sync.Once
}

// Holding is closed once the proxy first holds a connection without answering: a client is then
// stuck on it.
func (p *Proxy) Holding() <-chan struct{} { return p.holding }

func (p *Proxy) held() { p.holdingOnce.Do(func() { close(p.holding) }) }

// StallDownloadsAfter makes every new connection stop passing the registry's bytes on after n of
// them, while staying open: a layer download that stops half-way (b).
func (p *Proxy) StallDownloadsAfter(n int64) { p.setLimits(n, 0, 0) }

// StallUploadsAfter makes every new connection stop taking the client's bytes once it has sent n
// without an answer in between, while staying open: a blob upload the registry never takes,
// never answered (c).
func (p *Proxy) StallUploadsAfter(n int64) { p.setLimits(0, n, 0) }

// Trickle passes the registry's bytes on at bytesPerSecond, steadily (d).
func (p *Proxy) Trickle(bytesPerSecond int) { p.setLimits(0, 0, bytesPerSecond) }

func (p *Proxy) setLimits(down, up int64, trickle int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stallDown, p.stallUp, p.trickle = down, up, trickle
}

// StartProxy starts a proxy to target (host:port) and stops it when the test ends.
func StartProxy(t T, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Host: ln.Addr().String(), target: target, conns: map[net.Conn]struct{}{}, cut: make(chan struct{}), holding: make(chan struct{})}
	p.serve(ln)
	t.Cleanup(func() { p.drop() })
	return p
}

// CutAfter makes the proxy drop every connection and stop listening once more than n bytes have
// been sent to the registry in total.
func (p *Proxy) CutAfter(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutAt = n
}

// Sent is how many bytes clients have sent to the registry through the proxy so far: requests,
// and the blobs of a push.
func (p *Proxy) Sent() int64 { return p.sent.Load() }

// Cut is closed when the proxy has cut.
func (p *Proxy) Cut() <-chan struct{} { return p.cut }

// Resume listens again on the same port.
func (p *Proxy) Resume() error {
	ln, err := net.Listen("tcp", p.Host)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.cutAt = 0
	p.mu.Unlock()
	p.serve(ln)
	return nil
}

// Hang makes the registry one that accepts connections and never answers (an overloaded mirror,
// a half-dead load balancer): open connections are dropped, new ones are held open with nothing
// read or sent, until Answer.
func (p *Proxy) Hang() { p.setHang(true) }

// Answer ends Hang: held connections are closed, new ones are forwarded again.
func (p *Proxy) Answer() { p.setHang(false) }

// setHang switches the mode and closes every open connection, which belongs to the other mode.
func (p *Proxy) setHang(hang bool) {
	p.mu.Lock()
	p.hang = hang
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
}

func (p *Proxy) forward(client net.Conn) {
	p.mu.Lock()
	hang := p.hang
	if hang {
		p.conns[client] = struct{}{} // closed by Answer or when the test ends
	}
	p.mu.Unlock()
	if hang {
		p.held()
		return
	}
	upstream, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	p.mu.Lock()
	p.conns[client], p.conns[upstream] = struct{}{}, struct{}{}
	down, up, trickle := p.stallDown, p.stallUp, p.trickle
	p.mu.Unlock()
	// sinceAnswer counts the client's bytes since the registry last sent any: one request's
	// worth, so an upload, not a connection's long history of small requests, trips StallUploads.
	var sinceAnswer atomic.Int64
	go func() {
		n, err := copyLimited(client, upstream, down, trickle, func(int) { sinceAnswer.Store(0) })
		if down == 0 {
			client.Close()
		} else if err == nil && n >= down {
			p.held()
		}
	}()
	held := copyUntil(countingWriter{upstream, p}, client, func(n int) bool { return up > 0 && sinceAnswer.Add(int64(n)) > up })
	if held {
		p.held()
	} else {
		upstream.Close()
	}
}

// copyUntil copies src to dst until src ends (false) or hold says to stop after a read (true:
// the connection is held open, nothing more passed on; the proxy closes it when the test ends).
func copyUntil(dst io.Writer, src io.Reader, hold func(n int) bool) bool {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if hold(n) {
				return true
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return false
			}
		}
		if err != nil {
			return false
		}
	}
}

// copyLimited copies until src ends, or until after bytes (0: no limit), and then holds: it
// returns without closing anything, so the connection stays open with nothing more passed on
// (the proxy closes held connections when the test ends). perSecond > 0 paces the copy; sent
// is told of every write.
func copyLimited(dst io.Writer, src io.Reader, after int64, perSecond int, sent func(int)) (int64, error) {
	buf := make([]byte, 32<<10)
	if perSecond > 0 {
		buf = make([]byte, max(perSecond/20, 1)) // twenty steps a second
	}
	var n int64
	for {
		chunk := buf
		if after > 0 && after-n < int64(len(chunk)) {
			chunk = chunk[:after-n]
		}
		if after > 0 && len(chunk) == 0 {
			return n, nil
		}
		r, err := src.Read(chunk)
		if r > 0 {
			if _, werr := dst.Write(chunk[:r]); werr != nil {
				return n, werr
			}
			sent(r)
			n += int64(r)
			if perSecond > 0 {
				time.Sleep(time.Duration(r) * time.Second / time.Duration(perSecond))
			}
		}
		if err != nil {
			return n, err
		}
	}
}

type countingWriter struct {
	w io.Writer
	p *Proxy
}

func (c countingWriter) Write(b []byte) (int, error) {
	total := c.p.sent.Add(int64(len(b)))
	c.p.mu.Lock()
	cutAt := c.p.cutAt
	c.p.mu.Unlock()
	if cutAt > 0 && total > cutAt {
		c.p.drop()
		c.p.cutOnce.Do(func() { close(c.p.cut) })
		return 0, errors.New("proxy cut")
	}
	return c.w.Write(b)
}

// drop closes the listener and every connection.
func (p *Proxy) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]struct{}{}
}
