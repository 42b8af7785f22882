package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/test/harness"
)

const webhookNamespace = "mosb-system"

var servedConversion sync.Once

// v1Plane is the package's control plane with the conversion webhook served: mosb's CRDs serve v1.
func v1Plane(t *testing.T) *harness.ControlPlane {
	t.Helper()
	cp := controlPlane(t)
	servedConversion.Do(func() { harness.ServeConversion(packageTB{t}, cp, webhookNamespace, pipeline.WebhookCertPolicy{}) })
	return cp
}

// openshiftSuite is one of openshift/api's CRD test files (machineconfiguration/v1/tests/…).
type openshiftSuite struct {
	Name    string `json:"name"`
	CRDName string `json:"crdName"`
	Tests   struct {
		OnCreate []struct {
			Name          string `json:"name"`
			Initial       string `json:"initial"`
			Expected      string `json:"expected"`
			ExpectedError string `json:"expectedError"`
		} `json:"onCreate"`
		OnUpdate []struct {
			Name string `json:"name"`
			// InitialCRDPatches loosen the CRD (JSON patch, paths of OpenShift's one-version CRD)
			// while the initial object is created: a persisted value no longer valid.
			InitialCRDPatches   []map[string]any `json:"initialCRDPatches"`
			Initial             string           `json:"initial"`
			Updated             string           `json:"updated"`
			Expected            string           `json:"expected"`
			ExpectedError       string           `json:"expectedError"`
			ExpectedStatusError string           `json:"expectedStatusError"`
		} `json:"onUpdate"`
	} `json:"tests"`
}

func object(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

// errorSays checks an API error against a suite's expected error text.
func errorSays(t *testing.T, what string, err error, want string) bool {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("%s: %v", what, err)
	case want != "" && err == nil:
		t.Fatalf("%s: accepted, want an error with %q", what, want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("%s: %v\nwant an error with %q", what, err, want)
	}
	return err != nil
}

// sameAs compares what the API server returned with a suite's expected object: spec, status and
// the metadata the suite writes (labels, annotations).
func sameAs(t *testing.T, got *unstructured.Unstructured, expected string) {
	t.Helper()
	want := object(t, expected)
	for _, field := range [][]string{{"spec"}, {"status"}, {"metadata", "labels"}, {"metadata", "annotations"}} {
		g, _, _ := unstructured.NestedFieldNoCopy(got.Object, field...)
		w, _, _ := unstructured.NestedFieldNoCopy(want.Object, field...)
		if !equality.Semantic.DeepEqual(normal(t, g), normal(t, w)) {
			gy, _ := yaml.Marshal(g)
			wy, _ := yaml.Marshal(w)
			t.Fatalf("%s differs:\ngot:\n%s\nwant:\n%s", strings.Join(field, "."), gy, wy)
		}
	}
}

// normal is v through JSON (numbers and times as the API server writes them); nil for empty.
func normal(t *testing.T, v any) any {
	if v == nil {
		return nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	if m, ok := out.(map[string]any); ok && len(m) == 0 {
		return nil
	}
	return out
}

// TestOpenShiftV1SuitesPassAgainstMosbCRDs runs openshift/api's own CRD test cases of the v1
// MachineOSConfig and MachineOSBuild — every create and update, with their expected objects and
// errors — against mosb's CRDs, which store v1alpha1 and convert through the webhook.
func TestOpenShiftV1SuitesPassAgainstMosbCRDs(t *testing.T) {
	cp := v1Plane(t)
	dir := filepath.Join(harness.GoModuleDir(t, "github.com/openshift/api"), "machineconfiguration", "v1", "tests")
	for _, crd := range pipeline.ConvertedCRDs {
		files, err := filepath.Glob(filepath.Join(dir, crd, "*.yaml"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no test suites for %s in %s (%v)", crd, dir, err)
		}
		for _, file := range files {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var suite openshiftSuite
			if err := yaml.Unmarshal(raw, &suite); err != nil {
				t.Fatal(err)
			}
			if len(suite.Tests.OnCreate)+len(suite.Tests.OnUpdate) == 0 {
				t.Fatalf("%s holds no test", file)
			}
			for _, tc := range suite.Tests.OnCreate {
				t.Run(suite.Name+"/onCreate/"+tc.Name, func(t *testing.T) {
					ctx := testContext(t)
					obj := object(t, tc.Initial)
					cleanup(t, cp, obj)
					status := takeStatus(obj)
					if errorSays(t, "create", cp.Client.Create(ctx, obj), tc.ExpectedError) {
						return
					}
					writeStatus(t, cp, obj, status)
					sameAs(t, get(t, cp, obj), tc.Expected)
				})
			}
			for _, tc := range suite.Tests.OnUpdate {
				t.Run(suite.Name+"/onUpdate/"+tc.Name, func(t *testing.T) {
					ctx := testContext(t)
					obj := object(t, tc.Initial)
					cleanup(t, cp, obj)
					status := takeStatus(obj)
					if len(tc.InitialCRDPatches) > 0 {
						createWithLoosenedCRD(t, cp, suite.CRDName, tc.InitialCRDPatches, obj)
					} else if err := cp.Client.Create(ctx, obj); err != nil {
						t.Fatalf("creating the initial object: %v", err)
					}
					writeStatus(t, cp, obj, status)
					updated := object(t, tc.Updated)
					current := get(t, cp, obj)
					updated.SetResourceVersion(current.GetResourceVersion())
					if errorSays(t, "update", cp.Client.Update(ctx, updated.DeepCopy()), tc.ExpectedError) {
						return
					}
					if newStatus, ok, _ := unstructured.NestedFieldCopy(updated.Object, "status"); ok {
						current = get(t, cp, obj)
						_ = unstructured.SetNestedField(current.Object, newStatus, "status")
						if errorSays(t, "status update", cp.Client.Status().Update(ctx, current), tc.ExpectedStatusError) {
							return
						}
					} else if tc.ExpectedStatusError != "" {
						t.Fatalf("the suite expects a status error but updates no status")
					}
					if tc.Expected != "" {
						sameAs(t, get(t, cp, obj), tc.Expected)
					}
				})
			}
		}
	}
}

// takeStatus is obj's status (nil when none): a create ignores it, writeStatus writes it after.
func takeStatus(obj *unstructured.Unstructured) map[string]any {
	status, _, _ := unstructured.NestedMap(obj.Object, "status")
	return status
}

// writeStatus writes status (if any) through the status subresource onto the created obj.
func writeStatus(t *testing.T, cp *harness.ControlPlane, obj *unstructured.Unstructured, status map[string]any) {
	t.Helper()
	if status == nil {
		return
	}
	if err := unstructured.SetNestedMap(obj.Object, status, "status"); err != nil {
		t.Fatal(err)
	}
	if err := cp.Client.Status().Update(testContext(t), obj); err != nil {
		t.Fatalf("writing the initial status: %v", err)
	}
}

// createWithLoosenedCRD creates obj while the CRD has the suite's patches (their version index
// mapped to v1's place in mosb's CRD), then puts the CRD back and waits until it refuses obj again.
func createWithLoosenedCRD(t *testing.T, cp *harness.ControlPlane, crdName string, patches []map[string]any, obj *unstructured.Unstructured) {
	t.Helper()
	ctx := testContext(t)
	orig := &apiextensionsv1.CustomResourceDefinition{}
	if err := cp.Client.Get(ctx, client.ObjectKey{Name: crdName}, orig); err != nil {
		t.Fatal(err)
	}
	v1Index := -1
	for i, v := range orig.Spec.Versions {
		if v.Name == "v1" {
			v1Index = i
		}
	}
	if v1Index < 0 {
		t.Fatalf("CRD %s serves no v1", crdName)
	}
	for _, p := range patches {
		if path, ok := p["path"].(string); ok && strings.HasPrefix(path, "/spec/versions/0/") {
			p["path"] = fmt.Sprintf("/spec/versions/%d/%s", v1Index, strings.TrimPrefix(path, "/spec/versions/0/"))
		}
	}
	raw, err := json.Marshal(patches)
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Client.Patch(ctx, orig.DeepCopy(), client.RawPatch(types.JSONPatchType, raw)); err != nil {
		t.Fatalf("loosening CRD %s: %v", crdName, err)
	}
	restore := func() error {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur := &apiextensionsv1.CustomResourceDefinition{}
			if err := cp.Client.Get(ctx, client.ObjectKey{Name: crdName}, cur); err != nil {
				return err
			}
			cur.Spec.Versions = orig.Spec.Versions
			return cp.Client.Update(ctx, cur)
		})
	}
	t.Cleanup(func() { _ = restore() })
	harness.Eventually(ctx, t, 100*time.Millisecond, 20*time.Second, "the loosened CRD to accept the initial object", func(ctx context.Context) (bool, error) {
		return cp.Client.Create(ctx, obj.DeepCopy()) == nil, nil
	})
	if err := restore(); err != nil {
		t.Fatalf("restoring CRD %s: %v", crdName, err)
	}
	harness.Eventually(ctx, t, 100*time.Millisecond, 20*time.Second, "the restored CRD to refuse the initial object again", func(ctx context.Context) (bool, error) {
		probe := obj.DeepCopy()
		probe.SetName(probe.GetName() + "-probe")
		err := cp.Client.Create(ctx, probe, client.DryRunAll)
		return err != nil, nil
	})
}

func get(t *testing.T, cp *harness.ControlPlane, like *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	out := &unstructured.Unstructured{}
	out.SetGroupVersionKind(like.GroupVersionKind())
	if err := cp.Client.Get(testContext(t), client.ObjectKeyFromObject(like), out); err != nil {
		t.Fatal(err)
	}
	return out
}

func cleanup(t *testing.T, cp *harness.ControlPlane, obj *unstructured.Unstructured) {
	gone := obj.DeepCopy()
	t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), gone) })
}

// randomMOSC is a valid v1alpha1 MachineOSConfig with every field set at random within what the
// CRD accepts.
func randomMOSC(r *rand.Rand, name string) *mosbv1.MachineOSConfig {
	word := func() string {
		const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
		b := make([]byte, 3+r.Intn(8))
		for i := range b {
			b[i] = letters[r.Intn(len(letters))]
		}
		b[0] = 'a' + byte(r.Intn(26))
		return string(b)
	}
	hex := func() string {
		const digits = "0123456789abcdef"
		b := make([]byte, 64)
		for i := range b {
			b[i] = digits[r.Intn(16)]
		}
		return string(b)
	}
	m := harness.MachineOSConfig(name, word(), "quay.io/"+word()+"/"+word()+"@sha256:"+hex(), word()+".example.com:5000/"+word()+"/"+word()+":"+word())
	bi := &m.Spec.BuildInputs
	if r.Intn(2) == 0 {
		bi.BaseOSExtensionsImagePullspec = mosbv1.ImageDigestFormat("registry." + word() + ".io/ext@sha256:" + hex())
	}
	if r.Intn(2) == 0 {
		bi.ReleaseVersion = "4." + fmt.Sprint(r.Intn(30)) + ".0-" + word()
	}
	arches := []mosbv1.ContainerfileArch{mosbv1.NoArch, mosbv1.ArchAMD64, mosbv1.ArchX86_64, mosbv1.ArchARM64, mosbv1.ArchAArch64, mosbv1.ArchPPC64LE, mosbv1.ArchS390X}
	r.Shuffle(len(arches), func(i, j int) { arches[i], arches[j] = arches[j], arches[i] })
	bi.Containerfile = nil
	used := map[mosbv1.ContainerfileArch]bool{}
	for _, a := range arches[:r.Intn(4)] {
		// aarch64 and arm64 (x86_64 and amd64) are one architecture: one entry each.
		canon := map[mosbv1.ContainerfileArch]mosbv1.ContainerfileArch{mosbv1.ArchAArch64: mosbv1.ArchARM64, mosbv1.ArchX86_64: mosbv1.ArchAMD64}[a]
		if canon == "" {
			canon = a
		}
		if used[canon] {
			continue
		}
		used[canon] = true
		bi.Containerfile = append(bi.Containerfile, mosbv1.MachineOSContainerfile{ContainerfileArch: a, Content: "RUN echo " + word() + " && touch /etc/" + word()})
	}
	if r.Intn(2) == 0 {
		m.Spec.BuildOutputs.CurrentImagePullSecret = &mosbv1.ImageSecretObjectReference{Name: word()}
	}
	m.Labels = map[string]string{"team": word()}
	m.Annotations = map[string]string{"note": word()}
	return m
}

// TestObjectsRoundTripThroughTheAPIServerAndWebhook: random MachineOSConfigs with every field
// set go in as v1alpha1, are read, written back and read again through v1, and come out of
// v1alpha1 as they went in; and v1 objects do the same the other way.
func TestObjectsRoundTripThroughTheAPIServerAndWebhook(t *testing.T) {
	cp := v1Plane(t)
	ctx := testContext(t)
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	for i := 0; i < 25; i++ {
		name := fmt.Sprintf("roundtrip-v1-%d", i)
		in := randomMOSC(r, name)
		if err := cp.Client.Create(ctx, in); err != nil {
			t.Fatalf("creating %s: %v", name, err)
		}
		t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), in) })
		in.Status.ObservedGeneration = in.Generation
		in.Status.CurrentImagePullspec = mosbv1.ImageDigestFormat("quay.io/os/built@sha256:" + strings.Repeat(fmt.Sprint(i%10), 64))
		in.Status.MachineOSBuild = &mosbv1.ObjectReference{Group: "machineconfiguration.openshift.io", Resource: "machineosbuilds", Name: name + "-build"}
		meta := metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Built", Message: "pushed", LastTransitionTime: metav1.NewTime(time.Unix(1700000000+int64(i), 0))}
		in.Status.Conditions = []metav1.Condition{meta}
		if err := cp.Client.Status().Update(ctx, in); err != nil {
			t.Fatalf("status of %s: %v", name, err)
		}
		want := in.DeepCopy()

		v1 := &mcfgv1.MachineOSConfig{}
		if err := cp.Client.Get(ctx, client.ObjectKey{Name: name}, v1); err != nil {
			t.Fatalf("reading %s through v1: %v", name, err)
		}
		if string(v1.Status.CurrentImagePullSpec) != string(want.Status.CurrentImagePullspec) || v1.Spec.MachineConfigPool.Name != want.Spec.MachineConfigPool.Name {
			t.Fatalf("%s through v1: %+v", name, v1.Spec)
		}
		// Written back through v1 (a v1 client updating it), spec and status.
		if err := cp.Client.Update(ctx, v1); err != nil {
			t.Fatalf("writing %s back through v1: %v", name, err)
		}
		if err := cp.Client.Status().Update(ctx, v1); err != nil {
			t.Fatalf("writing %s's status back through v1: %v", name, err)
		}
		got := &mosbv1.MachineOSConfig{}
		if err := cp.Client.Get(ctx, client.ObjectKey{Name: name}, got); err != nil {
			t.Fatal(err)
		}
		if !equality.Semantic.DeepEqual(want.Spec, got.Spec) || !equality.Semantic.DeepEqual(want.Status, got.Status) ||
			!equality.Semantic.DeepEqual(want.Labels, got.Labels) || !equality.Semantic.DeepEqual(want.Annotations, got.Annotations) {
			wy, _ := yaml.Marshal(want)
			gy, _ := yaml.Marshal(got)
			t.Fatalf("%s changed through v1:\nbefore:\n%s\nafter:\n%s", name, wy, gy)
		}
	}
}

// TestV1ObjectsRoundTripThroughV1Alpha1: random v1 MachineOSBuilds (every spec and status field,
// the builder and related objects included) go in through v1, are written back through v1alpha1
// (as the controller does), and read through v1 as they went in.
func TestV1ObjectsRoundTripThroughV1Alpha1(t *testing.T) {
	cp := v1Plane(t)
	ctx := testContext(t)
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	for i := 0; i < 25; i++ {
		name := fmt.Sprintf("v1-roundtrip-%d", i)
		start := metav1.NewTime(time.Unix(1700000000+int64(r.Intn(1<<20)), 0))
		end := metav1.NewTime(start.Add(time.Duration(1+r.Intn(3600)) * time.Second))
		in := &mcfgv1.MachineOSBuild{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"run": fmt.Sprint(r.Int63())}},
			Spec: mcfgv1.MachineOSBuildSpec{
				MachineConfig:         mcfgv1.MachineConfigReference{Name: fmt.Sprintf("rendered-worker-%x", r.Int63())},
				MachineOSConfig:       mcfgv1.MachineOSConfigReference{Name: "worker"},
				RenderedImagePushSpec: mcfgv1.ImageTagFormat(fmt.Sprintf("quay.io/os/img:v%d", r.Intn(1000))),
			},
		}
		if err := cp.Client.Create(ctx, in); err != nil {
			t.Fatalf("creating %s through v1: %v", name, err)
		}
		t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), in) })
		in.Status = mcfgv1.MachineOSBuildStatus{
			Conditions: []metav1.Condition{{Type: "Succeeded", Status: metav1.ConditionTrue, Reason: "Built", Message: fmt.Sprint(r.Int63()), LastTransitionTime: end}},
			Builder: &mcfgv1.MachineOSBuilderReference{ImageBuilderType: mcfgv1.JobBuilder,
				Job: &mcfgv1.ObjectReference{Group: "batch", Resource: "jobs", Namespace: "mosb-system", Name: fmt.Sprintf("build-%d", r.Intn(1000))}},
			RelatedObjects:        []mcfgv1.ObjectReference{{Group: "apps", Resource: "deployments", Namespace: "mosb-system", Name: fmt.Sprintf("cm-%d", r.Intn(1000))}},
			BuildStart:            &start,
			BuildEnd:              &end,
			DigestedImagePushSpec: mcfgv1.ImageDigestFormat("quay.io/os/img@sha256:" + strings.Repeat(fmt.Sprint(i%10), 64)),
		}
		if err := cp.Client.Status().Update(ctx, in); err != nil {
			t.Fatalf("status of %s through v1: %v", name, err)
		}
		want := in.DeepCopy()
		alpha := &mosbv1.MachineOSBuild{}
		if err := cp.Client.Get(ctx, client.ObjectKey{Name: name}, alpha); err != nil {
			t.Fatal(err)
		}
		if alpha.Status.Builder == nil || alpha.Status.Builder.Job == nil || alpha.Status.Builder.Job.Name != want.Status.Builder.Job.Name {
			t.Fatalf("%s through v1alpha1: builder %+v", name, alpha.Status.Builder)
		}
		if err := cp.Client.Update(ctx, alpha); err != nil {
			t.Fatalf("writing %s back through v1alpha1: %v", name, err)
		}
		if err := cp.Client.Status().Update(ctx, alpha); err != nil {
			t.Fatalf("writing %s's status back through v1alpha1: %v", name, err)
		}
		got := &mcfgv1.MachineOSBuild{}
		if err := cp.Client.Get(ctx, client.ObjectKey{Name: name}, got); err != nil {
			t.Fatal(err)
		}
		if !equality.Semantic.DeepEqual(want.Spec, got.Spec) || !equality.Semantic.DeepEqual(want.Status, got.Status) ||
			!equality.Semantic.DeepEqual(want.Labels, got.Labels) || len(got.Annotations) != 0 {
			wy, _ := yaml.Marshal(want)
			gy, _ := yaml.Marshal(got)
			t.Fatalf("%s changed through v1alpha1:\nbefore:\n%s\nafter:\n%s", name, wy, gy)
		}
	}
}

// TestTheWebhookCertificateRotatesWithoutAFailedRequest serves the webhook with certificates that
// live seconds — the serving certificate 6 s, the CA 30 s — and reads through v1 without pause
// for 30 s (the next CA joins the bundle at about 14 s and signs from about 19 s): several
// serving certificates and a new CA come and go, and no read fails.
func TestTheWebhookCertificateRotatesWithoutAFailedRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("needs kube-apiserver + etcd")
	}
	cp := harness.StartControlPlane(t)
	hook := harness.ServeConversion(t, cp, webhookNamespace, pipeline.WebhookCertPolicy{CAValidity: 30 * time.Second, ServingValidity: 6 * time.Second})
	ctx := testContext(t)
	m := validMOSC("rotation")
	if err := cp.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	serials, cas := map[string]bool{}, map[string]bool{}
	var reads, failures atomic.Int64
	var firstFailure atomic.Value
	deadline := time.Now().Add(30 * time.Second)
	pace := time.NewTicker(50 * time.Millisecond)
	defer pace.Stop()
	for ; time.Now().Before(deadline); <-pace.C {
		v1 := &mcfgv1.MachineOSConfig{}
		reads.Add(1)
		if err := cp.Client.Get(ctx, client.ObjectKey{Name: "rotation"}, v1); err != nil {
			failures.Add(1)
			firstFailure.CompareAndSwap(nil, err.Error())
		}
		if c, err := hook.Keeper.GetCertificate(&tls.ClientHelloInfo{}); err == nil {
			serials[fmt.Sprint(c.Leaf.SerialNumber)] = true
			cas[c.Leaf.Issuer.CommonName] = true
		}
	}
	if failures.Load() > 0 {
		t.Errorf("%d of %d v1 reads failed while the certificates rotated; the first: %v", failures.Load(), reads.Load(), firstFailure.Load())
	}
	if len(serials) < 5 || len(cas) < 2 || len(cas) > 4 {
		t.Errorf("%d serving certificates and %d CAs served in 30 s: the rotation did not happen as the policy says", len(serials), len(cas))
	}
	t.Logf("%d v1 reads through the webhook, %d serving certificates, %d CAs", reads.Load(), len(serials), len(cas))
}
