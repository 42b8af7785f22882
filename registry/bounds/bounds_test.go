package bounds

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// short bounds keep the tests quick; the server misbehaves for far longer than any of them.
var short = Bounds{Connect: 2 * time.Second, Response: 400 * time.Millisecond, Stall: 400 * time.Millisecond}

const blobPath = "/v2/ns/base/blobs/sha256:0123456789abcdef0123456789abcdef"

// misbehaving is a registry stand-in: the last path element says how it misbehaves.
func misbehaving(t *testing.T, tlsOn bool) *httptest.Server {
	t.Helper()
	quit := make(chan struct{})
	wait := func(r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-quit: // a handler that reads nothing does not see its connection close
		}
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mode := r.URL.Query().Get("mode")
		switch mode {
		case "hang": // accepts, reads the request, never answers
			wait(r)
		case "stall": // starts the body, then stops sending
			w.Header().Set("Content-Length", "10000000")
			_, _ = w.Write(make([]byte, 64<<10))
			w.(http.Flusher).Flush()
			wait(r)
		case "trickle": // 1 MiB in 16 KiB steps, steadily, slower than any bound in total
			w.Header().Set("Content-Length", "1048576")
			for i := 0; i < 64; i++ {
				if _, err := w.Write(make([]byte, 16<<10)); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				time.Sleep(15 * time.Millisecond)
			}
		case "ignore-upload": // never reads what it is sent, never answers
			wait(r)
		default:
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = w.Write(make([]byte, 1<<20))
		}
	})
	var s *httptest.Server
	if tlsOn {
		s = httptest.NewTLSServer(h)
	} else {
		s = httptest.NewServer(h)
	}
	t.Cleanup(func() {
		close(quit)
		s.CloseClientConnections()
		s.Close()
	})
	return s
}

// noLeaks checks, after every other cleanup of the test, that no goroutine it started is left.
func noLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

func get(t *testing.T, c *http.Client, u string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

func wantUnresponsive(t *testing.T, err error, phase Phase, host string) *UnresponsiveError {
	t.Helper()
	u, ok := AsUnresponsive(err)
	if !ok {
		t.Fatalf("want an UnresponsiveError (%s), got %v", phase, err)
	}
	if u.Phase != phase || u.Registry != host {
		t.Fatalf("want phase %s on %s, got %+v", phase, host, u)
	}
	if !strings.Contains(u.Error(), host) || !strings.Contains(u.Error(), "ns/base") {
		t.Errorf("message should name the registry and the repository: %q", u.Error())
	}
	return u
}

func TestWatch(t *testing.T) {
	noLeaks(t)
	srv := misbehaving(t, true)
	host := strings.TrimPrefix(srv.URL, "https://")
	tr := srv.Client().Transport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: Watch(tr, short)}

	t.Run("no answer", func(t *testing.T) {
		start := time.Now()
		_, err := get(t, c, srv.URL+blobPath+"?mode=hang")
		wantUnresponsive(t, err, PhaseResponse, host)
		if d := time.Since(start); d > 5*short.Response {
			t.Errorf("took %s for a %s bound", d, short.Response)
		}
	})
	t.Run("body stops", func(t *testing.T) {
		_, err := get(t, c, srv.URL+blobPath+"?mode=stall")
		u := wantUnresponsive(t, err, PhaseStall, host)
		if u.Transferred < 64<<10 || !strings.Contains(u.Error(), "pulling layer sha256:0123456789ab of ns/base") {
			t.Errorf("want the bytes moved and the layer named: %d, %q", u.Transferred, u.Error())
		}
	})
	t.Run("upload never taken", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, srv.URL+"/v2/ns/base/blobs/uploads/x?mode=ignore-upload", io.NopCloser(bytes.NewReader(make([]byte, 64<<20))))
		_, err := c.Do(req)
		u, ok := AsUnresponsive(err)
		if !ok || (u.Phase != PhaseStall && u.Phase != PhaseResponse) || !strings.Contains(u.Error(), "pushing a layer to ns/base") {
			t.Fatalf("want a stalled upload, got %v", err)
		}
	})
	t.Run("slow but steady", func(t *testing.T) {
		body, err := get(t, c, srv.URL+blobPath+"?mode=trickle")
		if err != nil || len(body) != 1<<20 {
			t.Fatalf("a steady transfer longer than every bound must finish: %d bytes, %v", len(body), err)
		}
	})
	t.Run("slow reader is no stall", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+blobPath, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		time.Sleep(3 * short.Stall) // the consumer is busy: not the registry's fault
		if b, err := io.ReadAll(resp.Body); err != nil || len(b) != 1<<20 {
			t.Fatalf("%d bytes, %v", len(b), err)
		}
	})
}

func guardClient(t *testing.T, g *Guard, srv *httptest.Server) *http.Client {
	t.Helper()
	tr := &http.Transport{Proxy: func(r *http.Request) (*url.URL, error) { return g.Proxy(r.URL) }}
	if srv.TLS != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func TestGuard(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "")
	t.Setenv("HTTP_PROXY", "")
	for _, tlsOn := range []bool{true, false} {
		name := map[bool]string{true: "tls", false: "plain"}[tlsOn]
		t.Run(name, func(t *testing.T) {
			noLeaks(t)
			srv := misbehaving(t, tlsOn)
			u, _ := url.Parse(srv.URL)
			host := u.Host
			g, err := NewGuard(short)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			c := guardClient(t, g, srv)

			if body, err := get(t, c, srv.URL+blobPath+"?mode=trickle"); err != nil || len(body) != 1<<20 {
				t.Fatalf("a steady transfer through the guard must finish: %d bytes, %v", len(body), err)
			}
			if body, err := get(t, c, srv.URL+blobPath); err != nil || len(body) != 1<<20 {
				t.Fatalf("a plain transfer through the guard: %d bytes, %v", len(body), err)
			}

			_, err = get(t, c, srv.URL+blobPath+"?mode=stall")
			if err == nil {
				t.Fatal("a stalled body must end in an error")
			}
			stalled := wantUnresponsive(t, g.Explain(err), PhaseStall, host)
			if stalled.Transferred < 64<<10 {
				t.Errorf("the stall should say how much had come: %+v", stalled)
			}

			for i := 0; i < maxStrikes; i++ {
				_, err = get(t, c, srv.URL+blobPath+"?mode=hang")
				if err == nil {
					t.Fatal("no answer must end in an error")
				}
				wantUnresponsive(t, g.Explain(err), PhaseResponse, host)
			}
			start := time.Now()
			_, err = get(t, c, srv.URL+blobPath)
			if err == nil || time.Since(start) > short.Response {
				t.Fatalf("after %d strikes the registry is not tried again: %v after %s", maxStrikes, err, time.Since(start))
			}
			wantUnresponsive(t, g.Explain(err), PhaseResponse, host)
			if e := errors.New("unrelated failure"); g.Explain(e) != e {
				t.Error("an error naming no registry the guard saw stays as it is")
			}
		})
	}
}

func TestGuardUploadNeverTaken(t *testing.T) {
	noLeaks(t)
	srv := misbehaving(t, true)
	u, _ := url.Parse(srv.URL)
	g, err := NewGuard(short)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	c := guardClient(t, g, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, srv.URL+"/v2/ns/base/blobs/uploads/x?mode=ignore-upload", io.NopCloser(bytes.NewReader(make([]byte, 64<<20))))
	_, err = c.Do(req)
	if err == nil {
		t.Fatal("an upload the registry never takes must end in an error")
	}
	got, ok := AsUnresponsive(g.Explain(err))
	if !ok || got.Registry != u.Host || !strings.Contains(got.Error(), "pushing a layer to ns/base") {
		t.Fatalf("want the upload named, got %v", g.Explain(err))
	}
}

func TestDescribe(t *testing.T) {
	for _, c := range []struct{ method, path, want string }{
		{"GET", "/v2/", "checking the registry's API (/v2/)"},
		{"GET", "/v2/a/b/blobs/sha256:aaaaaaaaaaaaaaaaaaaa", "pulling layer sha256:aaaaaaaaaaaa of a/b"},
		{"HEAD", "/v2/a/b/blobs/sha256:aaaaaaaaaaaaaaaaaaaa", "checking layer sha256:aaaaaaaaaaaa in a/b"},
		{"POST", "/v2/a/b/blobs/uploads/", "starting a layer upload to a/b"},
		{"PATCH", "/v2/a/b/blobs/uploads/123", "pushing a layer to a/b"},
		{"PUT", "/v2/a/b/manifests/v1", "pushing the manifest v1 to a/b"},
		{"", "/v2/a/b/manifests/latest", "reading the manifest latest of a/b"},
		{"GET", "/token", "authenticating (/token)"},
	} {
		if got := Describe(c.method, c.path); got != c.want {
			t.Errorf("Describe(%s %s) = %q, want %q", c.method, c.path, got, c.want)
		}
	}
}

func TestBoundsValidate(t *testing.T) {
	if err := (Bounds{Stall: -time.Second}).Validate(); err == nil || !strings.Contains(err.Error(), "stall -1s") {
		t.Errorf("a negative bound is refused by name: %v", err)
	}
	if got := (Bounds{Stall: time.Second}).OrDefault(); got.Connect != DefaultConnect || got.Response != DefaultResponse || got.Stall != time.Second {
		t.Errorf("zero fields take their defaults: %+v", got)
	}
}
