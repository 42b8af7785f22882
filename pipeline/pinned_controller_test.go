package pipeline

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/registry"
)

func pinDigest(n int) string { return fmt.Sprintf("sha256:%064x", n) }

// pinBuild is a MachineOSBuild of mosc that ended at minute `at` in the given phase.
func pinBuild(mosc, name string, at int, phase BuildPhase, image, base string) mosbv1.MachineOSBuild {
	b := mosbv1.MachineOSBuild{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(time.Unix(int64(at)*60, 0))},
		Spec: mosbv1.MachineOSBuildSpec{
			MachineOSConfig:     mosbv1.MachineOSConfigReference{Name: mosc},
			BaseOSImagePullspec: base,
		},
	}
	if phase == PhaseSucceeded {
		b.Status.DigestedImagePushspec = image
	}
	end := metav1.NewTime(time.Unix(int64(at)*60+30, 0))
	SetBuildPhase(&b, phase, "Test", "test", end)
	return b
}

func pinnedNames(spec mcfgv1.PinnedImageSetSpec) []string {
	var out []string
	for _, p := range spec.PinnedImages {
		out = append(out, string(p.Name))
	}
	return out
}

func TestPlanPinsHoldsSucceededImagesAndBasesOnce(t *testing.T) {
	base := "registry.example.com/os/base@" + pinDigest(1)
	img2 := "registry.example.com/os/worker@" + pinDigest(2)
	img3 := "registry.example.com/os/worker@" + pinDigest(3)
	plan := PlanPins([]mosbv1.MachineOSBuild{
		pinBuild("worker", "worker-a", 1, PhaseSucceeded, img2, base),
		pinBuild("worker", "worker-b", 2, PhaseSucceeded, img3, base),
		// Neither a failed nor a running build pins anything, not even its base.
		pinBuild("worker", "worker-c", 3, PhaseFailed, "", "registry.example.com/os/other@"+pinDigest(4)),
		pinBuild("worker", "worker-d", 4, PhaseBuilding, "", "registry.example.com/os/other@"+pinDigest(5)),
	})
	if plan.Empty || len(plan.Refused) > 0 || len(plan.Dropped) > 0 {
		t.Fatalf("plan: %+v", plan)
	}
	got := strings.Join(pinnedNames(plan.Spec), ",")
	if want := strings.Join([]string{base, img2, img3}, ","); got != want {
		t.Errorf("pinned %s, want %s (each image once, sorted as NewPinnedImageSetSpec sorts)", got, want)
	}
	if err := registry.ValidatePinnedImageSetSpec(plan.Spec); err != nil {
		t.Errorf("the planned spec does not validate: %v", err)
	}
}

func TestPlanPinsWithoutSucceededBuildsIsEmpty(t *testing.T) {
	if p := PlanPins(nil); !p.Empty {
		t.Errorf("no builds: want an empty plan, got %+v", p)
	}
	p := PlanPins([]mosbv1.MachineOSBuild{pinBuild("w", "w-a", 1, PhaseFailed, "", "registry.example.com/os/base@"+pinDigest(1))})
	if !p.Empty {
		t.Errorf("only a failed build: want an empty plan, got %+v", p)
	}
}

func TestPlanPinsRefusesInvalidReferencesOneByOne(t *testing.T) {
	good := "registry.example.com/os/worker@" + pinDigest(2)
	base := "registry.example.com/os/base@" + pinDigest(1)
	// Valid digest pullspecs that the PinnedImageSet API refuses, and one that is not by digest.
	nested := "registry.example.com/a/b/c@" + pinDigest(3)
	noDot := "localhost:5000/os/base@" + pinDigest(4)
	tagged := "registry.example.com/os/base:latest"
	plan := PlanPins([]mosbv1.MachineOSBuild{
		pinBuild("worker", "worker-new", 3, PhaseSucceeded, good, base),
		pinBuild("nested", "nested-a", 2, PhaseSucceeded, nested, noDot),
		pinBuild("tagged", "tagged-a", 1, PhaseSucceeded, "registry.example.com/os/tagged@"+pinDigest(5), tagged),
	})
	if plan.Empty {
		t.Fatal("one bad reference must not keep the good ones from being pinned")
	}
	got := strings.Join(pinnedNames(plan.Spec), ",")
	want := strings.Join([]string{base, "registry.example.com/os/tagged@" + pinDigest(5), good}, ",")
	if got != want {
		t.Errorf("pinned %s, want %s", got, want)
	}
	refused := map[string]RefusedPin{}
	for _, r := range plan.Refused {
		refused[r.Image] = r
	}
	for img, want := range map[string]struct {
		build, mosc, role string
		err               error
	}{
		nested: {"nested-a", "nested", "image", registry.ErrNotPinnable},
		noDot:  {"nested-a", "nested", "base image", registry.ErrNotPinnable},
		tagged: {"tagged-a", "tagged", "base image", registry.RuleNotByDigest},
	} {
		r, ok := refused[img]
		if !ok {
			t.Errorf("%s was not refused: %+v", img, plan.Refused)
			continue
		}
		if r.MachineOSBuild != want.build || r.MachineOSConfig != want.mosc || r.Role != want.role || !errors.Is(r.Err, want.err) {
			t.Errorf("%s refused as %+v, want build %s of %s, role %s, error %v", img, r, want.build, want.mosc, want.role, want.err)
		}
	}
	if len(plan.Refused) != 3 {
		t.Errorf("%d refused, want 3: %+v", len(plan.Refused), plan.Refused)
	}
}

func TestPlanPinsNeverExceedsTheLimitAndKeepsTheNewest(t *testing.T) {
	// 300 builds, each with its own image and base: 600 distinct images.
	var builds []mosbv1.MachineOSBuild
	for i := 0; i < 300; i++ {
		builds = append(builds, pinBuild("worker", fmt.Sprintf("worker-%03d", i), i, PhaseSucceeded,
			"registry.example.com/os/worker@"+pinDigest(2*i+1), "registry.example.com/os/base@"+pinDigest(2*i+2)))
	}
	plan := PlanPins(builds)
	if n := len(plan.Spec.PinnedImages); n != registry.MaxPinnedImages {
		t.Fatalf("%d pinned, want exactly %d", n, registry.MaxPinnedImages)
	}
	if len(plan.Dropped) != 100 {
		t.Errorf("%d dropped, want 100", len(plan.Dropped))
	}
	pinned := map[string]bool{}
	for _, n := range pinnedNames(plan.Spec) {
		pinned[n] = true
	}
	// The newest 250 builds (50..299) fit entirely; the oldest 50 are left out.
	for i, b := range builds {
		in := pinned[b.Status.DigestedImagePushspec] && pinned[b.Spec.BaseOSImagePullspec]
		if i >= 50 && !in {
			t.Fatalf("build %s (new) is not pinned", b.Name)
		}
		if i < 50 && (pinned[b.Status.DigestedImagePushspec] || pinned[b.Spec.BaseOSImagePullspec]) {
			t.Fatalf("build %s (among the oldest) is pinned while newer ones compete for the room", b.Name)
		}
	}
	if err := registry.ValidatePinnedImageSetSpec(plan.Spec); err != nil {
		t.Errorf("the planned spec does not validate: %v", err)
	}
}

func TestPlanPinsOrdersByEndTimeThenCreation(t *testing.T) {
	// Limit pressure decides which image goes: with 499 newer images, only the newest of two
	// more fits. b1 was created later but ended earlier than b2: b2 is the newer.
	var builds []mosbv1.MachineOSBuild
	shared := "registry.example.com/os/base@" + pinDigest(9999)
	for i := 0; i < 498; i++ {
		builds = append(builds, pinBuild("worker", fmt.Sprintf("w-%03d", i), 1000+i, PhaseSucceeded, "registry.example.com/os/w@"+pinDigest(i+1), shared))
	}
	b1 := pinBuild("worker", "b1", 10, PhaseSucceeded, "registry.example.com/os/b1@"+pinDigest(5001), shared)
	b2 := pinBuild("worker", "b2", 5, PhaseSucceeded, "registry.example.com/os/b2@"+pinDigest(5002), shared)
	b1.Status.BuildEnd = pinTime(time.Unix(100, 0))
	b2.Status.BuildEnd = pinTime(time.Unix(200, 0))
	plan := PlanPins(append(builds, b1, b2))
	names := strings.Join(pinnedNames(plan.Spec), ",")
	if !strings.Contains(names, "/os/b2@") || strings.Contains(names, "/os/b1@") {
		t.Errorf("want b2 (ended later) pinned and b1 left out; dropped %v", plan.Dropped)
	}
}

func pinTime(t time.Time) *metav1.Time { v := metav1.NewTime(t); return &v }

func TestPinningEnabled(t *testing.T) {
	for _, tt := range []struct {
		annotation string
		pinAll     bool
		want       bool
	}{
		{"", false, false}, {"", true, true},
		{"true", false, true}, {"true", true, true},
		{"false", true, false}, {"false", false, false},
		{"yes", false, false}, {"yes", true, true},
	} {
		m := &mosbv1.MachineOSConfig{}
		if tt.annotation != "" {
			m.Annotations = map[string]string{AnnotationPinImages: tt.annotation}
		}
		if got := PinningEnabled(m, tt.pinAll); got != tt.want {
			t.Errorf("annotation %q, --pin-images=%v: got %v, want %v", tt.annotation, tt.pinAll, got, tt.want)
		}
	}
}

func TestPinnedImageSetNameIsAValidReference(t *testing.T) {
	if got := PinnedImageSetName("worker"); got != "mosb-worker" {
		t.Errorf("PinnedImageSetName(worker) = %s, want mosb-worker", got)
	}
	long := strings.Repeat("a", 63)
	for _, pool := range []string{"worker", "infra.example", long, long + "." + long, strings.Repeat(long+".", 3) + "b", "a." + strings.Repeat("b", 60) + "." + strings.Repeat(long+".", 2) + "c"} {
		name := PinnedImageSetName(pool)
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			t.Errorf("pool %q: %q is not a DNS subdomain: %v", pool, name, errs)
		}
		for _, label := range strings.Split(name, ".") {
			if errs := validation.IsDNS1123Label(label); len(errs) > 0 {
				t.Errorf("pool %q: %q has label %q, which the pool's spec.pinnedImageSets refuses: %v", pool, name, label, errs)
			}
		}
		if !strings.HasPrefix(name, "mosb-") {
			t.Errorf("pool %q: %q does not say it is mosb's", pool, name)
		}
	}
	if PinnedImageSetName(long) == PinnedImageSetName(long+"x") {
		t.Error("two long pool names share a set name")
	}
}

func TestPinnedImageSetRefs(t *testing.T) {
	refs := []mcfgv1.PinnedImageSetRef{{Name: "admin-set"}}
	added, changed := WithPinnedImageSetRef(refs, "mosb-worker")
	if !changed || len(added) != 2 || added[0].Name != "admin-set" || added[1].Name != "mosb-worker" {
		t.Fatalf("add: %v %v", added, changed)
	}
	if len(refs) != 1 {
		t.Errorf("the input was modified: %v", refs)
	}
	if again, changed := WithPinnedImageSetRef(added, "mosb-worker"); changed || len(again) != 2 {
		t.Errorf("adding twice: %v %v", again, changed)
	}
	removed, changed := WithoutPinnedImageSetRef(added, "mosb-worker")
	if !changed || len(removed) != 1 || removed[0].Name != "admin-set" {
		t.Errorf("remove: %v %v", removed, changed)
	}
	if same, changed := WithoutPinnedImageSetRef(removed, "mosb-worker"); changed || len(same) != 1 {
		t.Errorf("removing a missing ref: %v %v", same, changed)
	}
}

// A refusal is an Event when it appears, not at every reconcile while it holds (each reconcile
// of a pool would add one); it is said again when it comes back after going away. The client is a
// fake: what is tested is the decision to speak, over a pool whose state does not change.
func TestPinnedWarningsAreSaidOnce(t *testing.T) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{mosbv1.AddToScheme, mcfgv1.Install} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	mosc := &mosbv1.MachineOSConfig{ObjectMeta: metav1.ObjectMeta{Name: "nested", Annotations: map[string]string{AnnotationPinImages: "true"}},
		Spec: mosbv1.MachineOSConfigSpec{MachineConfigPool: mosbv1.MachineConfigPoolReference{Name: "worker"}}}
	refusedBuild := pinBuild("nested", "nested-a", 1, PhaseSucceeded, "registry.example.com/a/b/c@"+pinDigest(3), "registry.example.com/os/base@"+pinDigest(1))
	refusedBuild.Labels = map[string]string{LabelMachineOSConfig: "nested"}
	c := fake.NewClientBuilder().WithScheme(scheme).
		WithObjects(&mcfgv1.MachineConfigPool{ObjectMeta: metav1.ObjectMeta{Name: "worker"}}, mosc, &refusedBuild).
		WithStatusSubresource(&mcfgv1.MachineConfigPool{}, &mosbv1.MachineOSBuild{}).Build()
	rec := record.NewFakeRecorder(100)
	r := &PinnedImagesReconciler{Client: c, Recorder: rec}
	reconcile := func() {
		t.Helper()
		if _, err := r.Reconcile(t.Context(), ctrl.Request{NamespacedName: types.NamespacedName{Name: "worker"}}); err != nil {
			t.Fatal(err)
		}
	}
	refusals := func() int {
		n := 0
		for {
			select {
			case ev := <-rec.Events:
				if strings.Contains(ev, ReasonPinnedImageRefused) {
					n++
				}
			default:
				return n
			}
		}
	}
	for range 3 {
		reconcile()
	}
	if n := refusals(); n != 1 {
		t.Errorf("three reconciles of an unchanged pool said the refusal %d times, want once", n)
	}
	if err := c.Delete(t.Context(), &refusedBuild); err != nil {
		t.Fatal(err)
	}
	reconcile()
	refusedBuild.ResourceVersion = ""
	if err := c.Create(t.Context(), &refusedBuild); err != nil {
		t.Fatal(err)
	}
	reconcile()
	if n := refusals(); n != 1 {
		t.Errorf("a refusal that went away and came back was said %d times, want once", n)
	}
}
