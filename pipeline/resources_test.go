package pipeline_test

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/mosb-dev/mosb/pipeline"
)

// list is a ResourceList from name=quantity pairs, for tables.
func list(t *testing.T, kv ...string) corev1.ResourceList {
	t.Helper()
	if len(kv) == 0 {
		return nil
	}
	out := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

// sameList compares by quantity value, whatever the spelling (1024Mi is 1Gi).
func sameList(a, b corev1.ResourceList) bool {
	if len(a) != len(b) {
		return false
	}
	for k, q := range a {
		o, ok := b[k]
		if !ok || q.Cmp(o) != 0 {
			return false
		}
	}
	return true
}

func TestParseResourceList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string // name, quantity pairs
		err  []string // substrings of the error
	}{
		{in: "", want: nil},
		{in: "  ", want: nil},
		{in: "cpu=500m,memory=1Gi", want: []string{"cpu", "500m", "memory", "1Gi"}},
		{in: " cpu = 2 , memory=1024Mi, ephemeral-storage=20G ", want: []string{"cpu", "2", "memory", "1Gi", "ephemeral-storage", "20G"}},
		{in: "gpu=1", err: []string{`"gpu=1"`, `"gpu" is not a resource`, "cpu, memory, ephemeral-storage"}},
		{in: "nvidia.com/gpu=1", err: []string{`"nvidia.com/gpu"`}},
		{in: "memory=lots", err: []string{`"memory=lots"`, `"lots" is not a quantity`}},
		{in: "memory=4 Gi", err: []string{`"4 Gi" is not a quantity`}},
		{in: "memory=-1Gi", err: []string{"must be positive"}},
		{in: "cpu=0", err: []string{"must be positive"}},
		{in: "memory=1Gi,memory=2Gi", err: []string{"memory is given twice"}},
		{in: "memory", err: []string{`"memory" is not name=quantity`}},
		{in: "=1Gi", err: []string{"not name=quantity"}},
		{in: "cpu=1,", err: []string{`"" is not name=quantity`}},
		{in: "cpu=1;memory=1Gi", err: []string{"is not a quantity"}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := pipeline.ParseResourceList(tc.in)
			if tc.err != nil {
				if err == nil {
					t.Fatalf("accepted as %v", got)
				}
				for _, w := range tc.err {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := list(t, tc.want...); !sameList(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

func TestParseBuildResourcesFlags(t *testing.T) {
	d, err := pipeline.ParseBuildResources(pipeline.DefaultBuildRequests, pipeline.DefaultBuildLimits)
	if err != nil {
		t.Fatalf("the defaults do not parse: %v", err)
	}
	if !sameList(d.Requests, list(t, "cpu", "500m", "memory", "1Gi")) || !sameList(d.Limits, list(t, "memory", "4Gi")) {
		t.Errorf("defaults = %+v", d)
	}
	if _, ok := d.Limits[corev1.ResourceCPU]; ok {
		t.Error("no CPU limit by default")
	}
	if d, err := pipeline.ParseBuildResources("", ""); err != nil || len(d.Requests)+len(d.Limits) != 0 {
		t.Errorf("empty flags: %+v, %v", d, err)
	}
	for _, tc := range []struct {
		requests, limits string
		want             []string
	}{
		{"cpu=500m,disk=10Gi", "", []string{"--build-requests", `"disk"`, "cpu=…,memory=…,ephemeral-storage=…"}},
		{"", "memory=4GB!", []string{"--build-limits", `"4GB!" is not a quantity`}},
		{"memory=8Gi", "memory=4Gi", []string{"--build-requests memory=8Gi is above --build-limits memory=4Gi"}},
	} {
		_, err := pipeline.ParseBuildResources(tc.requests, tc.limits)
		if err == nil {
			t.Errorf("%q / %q accepted", tc.requests, tc.limits)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q / %q: error %q does not say %q", tc.requests, tc.limits, err, w)
			}
		}
	}
}

func TestResolveBuildResources(t *testing.T) {
	defaults := pipeline.BuildResources{Requests: list(t, "cpu", "500m", "memory", "1Gi"), Limits: list(t, "memory", "4Gi")}
	for _, tc := range []struct {
		name                     string
		defaults                 pipeline.BuildResources
		annotations              map[string]string
		wantRequests, wantLimits []string
		err                      []string
	}{
		{name: "no annotations: the defaults", defaults: defaults,
			wantRequests: []string{"cpu", "500m", "memory", "1Gi"}, wantLimits: []string{"memory", "4Gi"}},
		{name: "nothing at all", annotations: map[string]string{"unrelated": "x"}},
		{name: "a request overrides its key only", defaults: defaults,
			annotations:  map[string]string{pipeline.AnnotationBuildRequests: "memory=2Gi"},
			wantRequests: []string{"cpu", "500m", "memory", "2Gi"}, wantLimits: []string{"memory", "4Gi"}},
		{name: "limits and requests together, new keys added", defaults: defaults,
			annotations:  map[string]string{pipeline.AnnotationBuildRequests: "ephemeral-storage=30Gi,memory=6Gi", pipeline.AnnotationBuildLimits: "memory=8Gi,cpu=4"},
			wantRequests: []string{"cpu", "500m", "memory", "6Gi", "ephemeral-storage", "30Gi"}, wantLimits: []string{"memory", "8Gi", "cpu", "4"}},
		{name: "an empty annotation keeps the defaults", defaults: defaults,
			annotations:  map[string]string{pipeline.AnnotationBuildLimits: ""},
			wantRequests: []string{"cpu", "500m", "memory", "1Gi"}, wantLimits: []string{"memory", "4Gi"}},
		{name: "a bad request annotation", defaults: defaults,
			annotations: map[string]string{pipeline.AnnotationBuildRequests: "cpu=1,memory=two"},
			err:         []string{"MachineOSConfig " + moscName, "annotation " + pipeline.AnnotationBuildRequests, `"memory=two"`, "cpu=…,memory=…,ephemeral-storage=…", "remove the annotation"}},
		{name: "an unknown resource in the limits", defaults: defaults,
			annotations: map[string]string{pipeline.AnnotationBuildLimits: "gpu=1"},
			err:         []string{"annotation " + pipeline.AnnotationBuildLimits, `"gpu=1"`}},
		{name: "an annotated request above the default limit", defaults: defaults,
			annotations: map[string]string{pipeline.AnnotationBuildRequests: "memory=8Gi"},
			err: []string{"MachineOSConfig " + moscName, "memory request 8Gi (annotation " + pipeline.AnnotationBuildRequests + ")",
				"limit 4Gi (the controller's --build-limits)", "raise the limit with the annotation " + pipeline.AnnotationBuildLimits + " (e.g. memory=8Gi)"}},
		{name: "an annotated limit below the default request", defaults: defaults,
			annotations: map[string]string{pipeline.AnnotationBuildLimits: "memory=512Mi"},
			err:         []string{"memory request 1Gi (the controller's --build-requests)", "limit 512Mi (annotation " + pipeline.AnnotationBuildLimits + ")"}},
		{name: "request equal to limit", defaults: defaults,
			annotations:  map[string]string{pipeline.AnnotationBuildRequests: "memory=4096Mi"},
			wantRequests: []string{"cpu", "500m", "memory", "4Gi"}, wantLimits: []string{"memory", "4Gi"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.defaults.Requests.DeepCopy()
			got, f := pipeline.ResolveBuildResources("MachineOSConfig "+moscName, tc.defaults, tc.annotations)
			if !sameList(tc.defaults.Requests, before) {
				t.Error("the defaults were changed")
			}
			if tc.err != nil {
				if f == nil {
					t.Fatalf("accepted as %+v", got)
				}
				if f.Reason != pipeline.ReasonInvalidBuildResources {
					t.Errorf("reason %s", f.Reason)
				}
				for _, w := range tc.err {
					if !strings.Contains(f.Message, w) {
						t.Errorf("message does not say %q:\n%s", w, f.Message)
					}
				}
				return
			}
			if f != nil {
				t.Fatal(f)
			}
			if !sameList(got.Requests, list(t, tc.wantRequests...)) || !sameList(got.Limits, list(t, tc.wantLimits...)) {
				t.Errorf("got requests %v limits %v; want %v %v", got.Requests, got.Limits, tc.wantRequests, tc.wantLimits)
			}
			if (got.Requests == nil) != (len(tc.wantRequests) == 0) || (got.Limits == nil) != (len(tc.wantLimits) == 0) {
				t.Errorf("empty lists must be nil: %+v", got)
			}
		})
	}
}

// An invalid annotation refuses the MachineOSConfig before any pod; fixed, it builds with the
// resources it asked for.
func TestPrepareResolvesBuildResources(t *testing.T) {
	in := validInputs()
	in.BuildResources = pipeline.BuildResources{Requests: list(t, "memory", "1Gi"), Limits: list(t, "memory", "4Gi")}
	in.MachineOSConfig.Annotations = map[string]string{pipeline.AnnotationBuildLimits: "memory=4GiB"}
	_, err := pipeline.Prepare(in)
	var f *pipeline.Failure
	if !errors.As(err, &f) || f.Reason != pipeline.ReasonInvalidBuildResources || !strings.Contains(f.Message, pipeline.AnnotationBuildLimits) {
		t.Fatalf("got %v", err)
	}
	in.MachineOSConfig.Annotations[pipeline.AnnotationBuildLimits] = "memory=6Gi"
	plan := mustPrepare(t, in)
	if !sameList(plan.Resources.Requests, list(t, "memory", "1Gi")) || !sameList(plan.Resources.Limits, list(t, "memory", "6Gi")) {
		t.Errorf("plan resources %+v", plan.Resources)
	}
}

// Resources do not change the image: changing them keeps the identity, so starts no build.
func TestBuildResourcesAreNotInTheIdentity(t *testing.T) {
	base := identityOf(t, richInputs(false))
	for name, mutate := range map[string]func(*pipeline.Inputs){
		"controller defaults": func(in *pipeline.Inputs) {
			in.BuildResources = pipeline.BuildResources{Requests: list(t, "cpu", "2", "memory", "3Gi"), Limits: list(t, "memory", "9Gi")}
		},
		"annotations": func(in *pipeline.Inputs) {
			in.MachineOSConfig.Annotations = map[string]string{
				pipeline.AnnotationBuildRequests: "cpu=1,ephemeral-storage=40Gi", pipeline.AnnotationBuildLimits: "memory=16Gi",
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			in := richInputs(false)
			mutate(&in)
			if id := identityOf(t, in); id != base {
				t.Errorf("identity changed: %s, was %s", id[:10], base[:10])
			}
		})
	}
}

func TestBaseSizedStorage(t *testing.T) {
	const gi = int64(1) << 30
	for _, tc := range []struct {
		name       string
		compressed int64
		known      bool
		req, lim   string
	}{
		{name: "unknown: the fallback", known: false, req: "10Gi", lim: "20Gi"},
		{name: "empty base: the headroom", compressed: 0, known: true, req: "1Gi", lim: "2Gi"},
		{name: "1 byte rounds up", compressed: 1, known: true, req: "2Gi", lim: "4Gi"},
		{name: "exactly 1Gi compressed: 3Gi + 1Gi", compressed: gi, known: true, req: "4Gi", lim: "8Gi"},
		// A 1.5 GB OS image: about 4.2 GiB unpacked, plus 1 GiB, rounded up.
		{name: "1.5 GB", compressed: 1_500_000_000, known: true, req: "6Gi", lim: "12Gi"},
		{name: "absurd sizes are capped, never negative", compressed: 1 << 62, known: true, req: "3073Gi", lim: "6146Gi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, lim := pipeline.BaseSizedStorage(tc.compressed, tc.known)
			if req.Cmp(resource.MustParse(tc.req)) != 0 || lim.Cmp(resource.MustParse(tc.lim)) != 0 {
				t.Errorf("got %s/%s, want %s/%s", req.String(), lim.String(), tc.req, tc.lim)
			}
		})
	}
}

func TestWithBaseSizedStorage(t *testing.T) {
	sized := func(rr corev1.ResourceRequirements) corev1.ResourceRequirements {
		return pipeline.WithBaseSizedStorage(rr, 1_500_000_000, true)
	}
	// Neither sets it: sized from the base, the rest kept, the input untouched.
	in := corev1.ResourceRequirements{Requests: list(t, "cpu", "500m"), Limits: list(t, "memory", "4Gi")}
	got := sized(in)
	if !sameList(got.Requests, list(t, "cpu", "500m", "ephemeral-storage", "6Gi")) || !sameList(got.Limits, list(t, "memory", "4Gi", "ephemeral-storage", "12Gi")) {
		t.Errorf("got %+v", got)
	}
	if _, ok := in.Requests[corev1.ResourceEphemeralStorage]; ok {
		t.Error("the input was changed")
	}
	if got := sized(corev1.ResourceRequirements{}); !sameList(got.Requests, list(t, "ephemeral-storage", "6Gi")) {
		t.Errorf("from nothing: %+v", got)
	}
	// Either sets it: left as given.
	for _, rr := range []corev1.ResourceRequirements{
		{Requests: list(t, "ephemeral-storage", "50Gi")},
		{Limits: list(t, "ephemeral-storage", "50Gi")},
	} {
		if pipeline.StorageFromBase(rr) {
			t.Errorf("%+v: sized from the base", rr)
		}
		got := sized(rr)
		if !sameList(got.Requests, rr.Requests) || !sameList(got.Limits, rr.Limits) {
			t.Errorf("%+v became %+v", rr, got)
		}
	}
}
