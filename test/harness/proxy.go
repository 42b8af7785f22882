package harness

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
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
}

// StartProxy starts a proxy to target (host:port) and stops it when the test ends.
func StartProxy(t T, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Host: ln.Addr().String(), target: target, conns: map[net.Conn]struct{}{}, cut: make(chan struct{})}
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
		return
	}
	upstream, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	p.mu.Lock()
	p.conns[client], p.conns[upstream] = struct{}{}, struct{}{}
	p.mu.Unlock()
	go func() {
		_, _ = io.Copy(client, upstream)
		client.Close()
	}()
	_, _ = io.Copy(countingWriter{upstream, p}, client)
	upstream.Close()
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
