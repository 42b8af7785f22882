package e2e

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/test/harness"
)

// TestAPreBuiltImageIsAdoptedWithoutABuild: a MachineOSConfig created with the pre-built-image
// annotation gets that image in its status through a MachineOSBuild recorded as succeeded, with no
// pod; the annotation goes once adopted; a later change builds as usual.
func TestAPreBuiltImageIsAdoptedWithoutABuild(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const name = "adopt"
	adopted := harness.PushBaseImage(t, e.reg, "os/built-elsewhere", "amd64")
	m := e.newMOSC(name, "RUN echo adopt > /etc/adopt")
	m.Annotations = map[string]string{pipeline.AnnotationPreBuiltImage: adopted}
	pods := e.watchPods(name)
	e.create(m)

	eventually(t, buildTimeout, "MachineOSConfig "+name+" adopting "+adopted, func(ctx context.Context) (bool, error) {
		got := &mosbv1.MachineOSConfig{}
		if err := e.c.Get(ctx, client.ObjectKey{Name: name}, got); err != nil {
			return false, err
		}
		_, annotated := got.Annotations[pipeline.AnnotationPreBuiltImage]
		return string(got.Status.CurrentImagePullspec) == adopted && meta.IsStatusConditionTrue(got.Status.Conditions, mosbv1.MachineOSConfigReady) && !annotated,
			fmt.Errorf("status %q (annotation still there: %v): %s", got.Status.CurrentImagePullspec, annotated, conditionsText(got.Status.Conditions))
	})
	builds := e.builds(t.Context(), name)
	if len(builds) != 1 || !pipeline.IsPreBuilt(&builds[0]) || pipeline.Phase(&builds[0]) != pipeline.PhaseSucceeded || builds[0].Status.DigestedImagePushspec != adopted {
		t.Fatalf("MachineOSBuilds after adopting: %+v", builds)
	}
	if seen := pods.names(); len(seen) > 0 {
		t.Errorf("adopting a pre-built image ran build pods: %v", seen)
	}
	if msg := e.waitEvent(name, pipeline.ReasonPreBuiltImageSeeded); !strings.Contains(msg, adopted) {
		t.Errorf("%s Event: %q", pipeline.ReasonPreBuiltImageSeeded, msg)
	}

	// A change builds: the adopted image was for the inputs it came with.
	e.updateMOSC(name, func(m *mosbv1.MachineOSConfig) {
		m.Spec.BuildInputs.Containerfile[0].Content = "RUN echo changed > /etc/adopt"
	})
	if b := e.waitBuilt(name, 2); pipeline.IsPreBuilt(b) || b.Status.DigestedImagePushspec == adopted {
		t.Errorf("the change was not built: %s (%s)", b.Name, b.Status.DigestedImagePushspec)
	}
	// The adopted image was not mosb's: it stays in the registry whatever happens to its build.
	if !e.inRegistry(adopted) {
		t.Errorf("the adopted image %s is gone from the registry", adopted)
	}
}

// podWatch records the names of the build pods of one MachineOSConfig that ever existed.
type podWatch struct {
	mu   sync.Mutex
	seen map[string]bool
}

// watchPods looks for build pods of a MachineOSConfig every 100 ms until the test ends: a pod that
// came and went between two looks at the end would otherwise go unseen.
func (e *env) watchPods(mosc string) *podWatch {
	w := &podWatch{seen: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	e.t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for {
			pods := &corev1.PodList{}
			if err := e.c.List(ctx, pods, client.InNamespace(buildNamespace), client.MatchingLabels{pipeline.LabelMachineOSConfig: mosc}); err == nil {
				w.mu.Lock()
				for _, p := range pods.Items {
					w.seen[p.Name] = true
				}
				w.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *podWatch) names() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Sorted(maps.Keys(w.seen))
}
