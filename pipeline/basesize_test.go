package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-logr/logr/funcr"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/mosb-dev/mosb/registry"
)

// sizeRegistry is go-containerregistry's in-process registry over TLS, counting requests.
type sizeRegistry struct {
	srv      *httptest.Server
	requests atomic.Int64
	notFound bool // answer 404 to everything
}

func newSizeRegistry(t *testing.T, notFound bool) *sizeRegistry {
	t.Helper()
	inner := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	r := &sizeRegistry{notFound: notFound}
	r.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		if r.notFound {
			http.NotFound(w, req)
			return
		}
		inner.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *sizeRegistry) host() string { return strings.TrimPrefix(r.srv.URL, "https://") }

func (r *sizeRegistry) trust() registry.Option {
	return registry.WithSystemRoots(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.srv.Certificate().Raw}))
}

// putManifest stores an image manifest declaring layers of the given compressed sizes (the
// in-process registry does not ask for the blobs) and returns its digest pullspec.
func (r *sizeRegistry) putManifest(t *testing.T, repo string, layerSizes ...int64) string {
	t.Helper()
	type desc struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
	}
	fake := func(i int) string {
		s := sha256.Sum256(fmt.Appendf(nil, "%s %d", repo, i))
		return "sha256:" + hex.EncodeToString(s[:])
	}
	m := struct {
		SchemaVersion int    `json:"schemaVersion"`
		MediaType     string `json:"mediaType"`
		Config        desc   `json:"config"`
		Layers        []desc `json:"layers"`
	}{SchemaVersion: 2, MediaType: "application/vnd.oci.image.manifest.v1+json",
		Config: desc{"application/vnd.oci.image.config.v1+json", fake(-1), 100}}
	for i, s := range layerSizes {
		m.Layers = append(m.Layers, desc{"application/vnd.oci.image.layer.v1.tar+gzip", fake(i), s})
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	req, err := http.NewRequest(http.MethodPut, r.srv.URL+"/v2/"+repo+"/manifests/"+digest, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", m.MediaType)
	resp, err := r.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT manifest: %s", resp.Status)
	}
	return r.host() + "/" + repo + "@" + digest
}

// logged collects what the reconciler logs.
type logged struct {
	mu    sync.Mutex
	lines []string
}

func (l *logged) ctx(t *testing.T) context.Context {
	return ctrl.LoggerInto(t.Context(), funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, args)
	}, funcr.Options{}))
}

func (l *logged) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, sub) {
			n++
		}
	}
	return n
}

func quantity(rl corev1.ResourceList, name corev1.ResourceName) string {
	q, ok := rl[name]
	if !ok {
		return "unset"
	}
	return q.String()
}

func TestPodResourcesSizeStorageFromTheBase(t *testing.T) {
	reg := newSizeRegistry(t, false)
	// 1 GiB + 512 MiB compressed: 4.5 GiB unpacked + 1 GiB headroom, rounded up: 6Gi.
	base := reg.putManifest(t, "os/base", 1<<30, 512<<20)
	r := &BuildReconciler{registryOptions: []registry.Option{reg.trust()}}
	plan := &Plan{BaseImage: base, Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("4Gi")},
	}}
	var logs logged
	ctx := logs.ctx(t)

	got := r.podResources(ctx, plan, "amd64")
	if s := quantity(got.Requests, corev1.ResourceEphemeralStorage) + "/" + quantity(got.Limits, corev1.ResourceEphemeralStorage); s != "6Gi/12Gi" {
		t.Errorf("ephemeral-storage request/limit = %s, want 6Gi/12Gi", s)
	}
	if quantity(got.Requests, corev1.ResourceCPU) != "500m" || quantity(got.Limits, corev1.ResourceMemory) != "4Gi" {
		t.Errorf("the other resources were not kept: %+v", got)
	}
	if _, ok := plan.Resources.Requests[corev1.ResourceEphemeralStorage]; ok {
		t.Error("the plan's resources were changed")
	}

	// By digest the size never changes: asked once per digest and architecture.
	n := reg.requests.Load()
	r.podResources(ctx, plan, "amd64")
	if reg.requests.Load() != n {
		t.Error("the size of the same base and architecture was asked again")
	}
	r.podResources(ctx, plan, "arm64")
	if reg.requests.Load() == n {
		t.Error("another architecture was not asked")
	}

	// Set by the flags or the annotations: the registry is not asked.
	set := *plan.Resources.DeepCopy()
	set.Limits[corev1.ResourceEphemeralStorage] = resource.MustParse("50Gi")
	plan2 := &Plan{BaseImage: reg.putManifest(t, "os/other", 1<<30), Resources: set}
	n = reg.requests.Load()
	got = r.podResources(ctx, plan2, "amd64")
	if reg.requests.Load() != n || quantity(got.Limits, corev1.ResourceEphemeralStorage) != "50Gi" || quantity(got.Requests, corev1.ResourceEphemeralStorage) != "unset" {
		t.Errorf("set storage: %+v, %d requests", got, reg.requests.Load()-n)
	}
	if logs.count("cannot read") != 0 {
		t.Errorf("logged a failure: %v", logs.lines)
	}
}

func TestPodResourcesFallBackWhenTheSizeIsUnknown(t *testing.T) {
	reg := newSizeRegistry(t, true)
	base := reg.host() + "/os/base@sha256:" + strings.Repeat("1", 64)
	r := &BuildReconciler{registryOptions: []registry.Option{reg.trust()}}
	plan := &Plan{BaseImage: base}
	var logs logged
	ctx := logs.ctx(t)

	var after []int64
	for range 2 {
		got := r.podResources(ctx, plan, "amd64")
		if s := quantity(got.Requests, corev1.ResourceEphemeralStorage) + "/" + quantity(got.Limits, corev1.ResourceEphemeralStorage); s != "10Gi/20Gi" {
			t.Errorf("ephemeral-storage request/limit = %s, want the fallback 10Gi/20Gi", s)
		}
		after = append(after, reg.requests.Load())
	}
	if after[0] == 0 || after[1] != after[0] {
		t.Errorf("requests after each lookup: %v; want the registry asked by the first only (a failure is not tried again at once)", after)
	}
	if n := logs.count("cannot read the size of base image " + base); n != 1 {
		t.Errorf("logged %d times, want once: %v", n, logs.lines)
	}
	if n := logs.count(AnnotationBuildRequests); n != 1 {
		t.Errorf("the log does not say how to choose: %v", logs.lines)
	}
}
