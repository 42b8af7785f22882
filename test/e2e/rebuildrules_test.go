package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/pipeline"
)

// TestOnlyWhatTheImageHoldsRebuildsOnAMachineConfigChange follows a pool's rendered
// MachineConfig through the changes a cluster sees: an SSH key (the node applies it: the image
// stays, and says which rendered MachineConfig it now serves), kernel arguments (a new image),
// and, once the MachineOSConfig asks for a build on every change, an SSH key again (a new image).
func TestOnlyWhatTheImageHoldsRebuildsOnAMachineConfigChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const name = "rules"
	e.create(e.newMOSC(name, "RUN echo rules > /etc/rules"))
	first := e.waitBuilt(name, 1)
	if first.Spec.RenderedMachineConfig != renderedName {
		t.Fatalf("the first build is of %q, want %s", first.Spec.RenderedMachineConfig, renderedName)
	}

	// An SSH key: no build; the image serves the new rendered MachineConfig.
	e.renderPool("rendered-worker-2", `{"ignition":{"version":"3.4.0"},"passwd":{"users":[{"name":"core","sshAuthorizedKeys":["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey2 admin"]}]}}`, nil)
	eventually(t, buildTimeout, "MachineOSBuild "+first.Name+" serving rendered-worker-2", func(ctx context.Context) (bool, error) {
		b := &mosbv1.MachineOSBuild{}
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(first), b); err != nil {
			return false, err
		}
		return b.Annotations[pipeline.AnnotationServes] == "rendered-worker-2", fmt.Errorf("annotations %v", b.Annotations)
	})
	if got, held := e.holdsBuildCount(name, 1, 3*time.Second); !held {
		t.Fatalf("an SSH-key-only MachineConfig change made %d MachineOSBuilds, want the one there was", got)
	}
	m := e.get(name)
	ready := meta.FindStatusCondition(m.Status.Conditions, mosbv1.MachineOSConfigReady)
	if string(m.Status.CurrentImagePullspec) != first.Status.DigestedImagePushspec || ready == nil || ready.Status != metav1.ConditionTrue ||
		!strings.Contains(ready.Message, "serves rendered MachineConfig rendered-worker-2") {
		t.Errorf("status after the SSH key change: image %s (want %s), Ready %+v", m.Status.CurrentImagePullspec, first.Status.DigestedImagePushspec, ready)
	}
	if msg := e.waitEvent(name, pipeline.ReasonImageKept); !strings.Contains(msg, "rendered-worker-2") {
		t.Errorf("ImageKept Event: %q", msg)
	}

	// Kernel arguments: the image must change.
	e.renderPool("rendered-worker-3", `{"ignition":{"version":"3.4.0"},"passwd":{"users":[{"name":"core","sshAuthorizedKeys":["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey2 admin"]}]}}`, []string{"nosmt"})
	second := e.waitBuilt(name, 2)
	if second.Spec.RenderedMachineConfig != "rendered-worker-3" || second.Status.DigestedImagePushspec == first.Status.DigestedImagePushspec {
		t.Fatalf("the kernel arguments change built %s of %q with image %s (the first: %s)", second.Name, second.Spec.RenderedMachineConfig, second.Status.DigestedImagePushspec, first.Status.DigestedImagePushspec)
	}

	// Every change builds once the MachineOSConfig asks for it: an SSH key again.
	e.updateMOSC(name, func(m *mosbv1.MachineOSConfig) {
		metav1.SetMetaDataAnnotation(&m.ObjectMeta, pipeline.AnnotationRebuildOnAnyChange, "true")
	})
	e.renderPool("rendered-worker-4", `{"ignition":{"version":"3.4.0"},"passwd":{"users":[{"name":"core","sshAuthorizedKeys":["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey4 admin"]}]}}`, []string{"nosmt"})
	if third := e.waitBuilt(name, 3); third.Spec.RenderedMachineConfig != "rendered-worker-4" {
		t.Fatalf("with %s, the SSH key change built %s of %q", pipeline.AnnotationRebuildOnAnyChange, third.Name, third.Spec.RenderedMachineConfig)
	}
}

// renderPool does what the Machine Config Operator does when a pool's MachineConfigs change: a
// new rendered MachineConfig (ignition config and kernel arguments), named in the pool's spec.
func (e *env) renderPool(rendered, ignition string, kernelArguments []string) {
	e.t.Helper()
	e.create(&mcfgv1.MachineConfig{ObjectMeta: metav1.ObjectMeta{Name: rendered},
		Spec: mcfgv1.MachineConfigSpec{Config: runtime.RawExtension{Raw: []byte(ignition)}, KernelArguments: kernelArguments}})
	e.updatePool(false, func(pool *mcfgv1.MachineConfigPool) { pool.Spec.Configuration.Name = rendered })
}

// updatePool changes the worker pool, its status when status is true, on a fresh copy and again
// on a conflict: the controller writes it too.
func (e *env) updatePool(status bool, change func(*mcfgv1.MachineConfigPool)) {
	e.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pool := &mcfgv1.MachineConfigPool{}
		if err := e.c.Get(e.t.Context(), client.ObjectKey{Name: poolName}, pool); err != nil {
			return err
		}
		change(pool)
		if status {
			return e.c.Status().Update(e.t.Context(), pool)
		}
		return e.c.Update(e.t.Context(), pool)
	})
	if err != nil {
		e.t.Fatalf("updating pool %s: %v", poolName, err)
	}
}
