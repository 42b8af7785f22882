package bounds

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync"
	"time"
)

// Watch wraps rt so that every request it carries is held to b: connecting (from the dial to a
// usable connection), waiting for an answer once the request is sent, and a request or response
// body that stops moving. A bound that is hit cancels the request; the caller sees an
// *UnresponsiveError. A response body read slowly by its consumer is not a stall: only a read
// that waits on the network counts.
func Watch(rt http.RoundTripper, b Bounds) http.RoundTripper {
	return &watching{rt: rt, b: b.OrDefault()}
}

type watching struct {
	rt http.RoundTripper
	b  Bounds
}

type phase int

const (
	waitingForConn phase = iota // queued for a pooled connection: not ours to bound
	connecting
	sending
	awaiting
	receiving
	finished
)

// exchange is one request and its response, watched by a timer that re-arms itself.
type exchange struct {
	b      Bounds
	host   string
	op     string
	cancel context.CancelCauseFunc

	mu         sync.Mutex
	phase      phase
	since      time.Time // when the phase began, or the last progress within it
	inRead     bool      // a body Read is running: for a response, waiting on the network
	moved      int64
	err        *UnresponsiveError
	timer      *time.Timer
	uploadDone bool
}

func (w *watching) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	x := &exchange{b: w.b, host: req.URL.Host, op: Describe(req.Method, req.URL.Path), cancel: cancel, since: time.Now()}
	trace := &httptrace.ClientTrace{
		ConnectStart:         func(string, string) { x.enter(connecting) },
		GotConn:              func(httptrace.GotConnInfo) { x.enter(sending) },
		WroteRequest:         func(httptrace.WroteRequestInfo) { x.enter(awaiting) },
		GotFirstResponseByte: func() { x.enter(receiving) },
	}
	out := req.WithContext(httptrace.WithClientTrace(ctx, trace))
	if req.Body != nil && req.Body != http.NoBody {
		out.Body = &uploadBody{ReadCloser: req.Body, x: x}
	}
	x.timer = time.AfterFunc(w.b.tick(), x.check)
	resp, err := w.rt.RoundTrip(out)
	if err != nil {
		x.finish()
		cancel(nil)
		if u := x.tripped(); u != nil {
			return nil, u.with(err)
		}
		return nil, err
	}
	resp.Body = &downloadBody{ReadCloser: resp.Body, x: x}
	return resp, nil
}

func (x *exchange) enter(p phase) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if p > x.phase {
		x.phase, x.since = p, time.Now()
	}
}

func (x *exchange) progress(n int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.since = time.Now()
	x.moved += int64(n)
}

func (x *exchange) reading(on bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.inRead = on
	if on {
		x.since = time.Now()
	}
}

func (x *exchange) finish() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.phase = finished
	x.timer.Stop()
}

func (x *exchange) tripped() *UnresponsiveError {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.err
}

// check runs on the timer: it cancels the request when the current phase is over its bound.
func (x *exchange) check() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.phase == finished || x.err != nil {
		return
	}
	idle := time.Since(x.since)
	var hit Phase
	var bound time.Duration
	switch x.phase {
	case connecting:
		hit, bound = PhaseConnect, x.b.Connect
	case sending:
		// The transport reads the body only as fast as the registry takes it: no read for a
		// while, and not inside one (a slow producer of the body), means the upload is stuck.
		if !x.inRead && !x.uploadDone {
			hit, bound = PhaseStall, x.b.Stall
		}
	case awaiting:
		hit, bound = PhaseResponse, x.b.Response
	case receiving:
		if x.inRead {
			hit, bound = PhaseStall, x.b.Stall
		}
	}
	if hit != "" && idle >= bound {
		x.err = &UnresponsiveError{Registry: x.host, Op: x.op, Phase: hit, Waited: bound, Transferred: x.moved}
		if hit != PhaseStall {
			x.err.Transferred = -1
		}
		x.cancel(x.err)
		return
	}
	x.timer.Reset(x.b.tick())
}

type uploadBody struct {
	io.ReadCloser
	x *exchange
}

func (u *uploadBody) Read(p []byte) (int, error) {
	u.x.reading(true)
	n, err := u.ReadCloser.Read(p)
	u.x.reading(false)
	u.x.progress(n)
	if err != nil {
		u.x.mu.Lock()
		u.x.uploadDone = true
		u.x.mu.Unlock()
	}
	return n, err
}

type downloadBody struct {
	io.ReadCloser
	x *exchange
}

func (d *downloadBody) Read(p []byte) (int, error) {
	d.x.reading(true)
	n, err := d.ReadCloser.Read(p)
	d.x.reading(false)
	d.x.progress(n)
	if err != nil && !errors.Is(err, io.EOF) {
		if u := d.x.tripped(); u != nil {
			return n, u.with(err)
		}
	}
	return n, err
}

func (d *downloadBody) Close() error {
	d.x.finish()
	d.x.cancel(nil)
	return d.ReadCloser.Close()
}
