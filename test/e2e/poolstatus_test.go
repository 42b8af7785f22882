package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/pipeline"
)

// TestThePoolSaysHowItsImageBuildsAndHoldsBuildsWhileDegraded: the pool's ImageBuildDegraded
// condition follows a failing build, then the fixed one; a NodeDegraded pool starts no build for
// a changed MachineOSConfig (which says why) until it recovers.
func TestThePoolSaysHowItsImageBuildsAndHoldsBuildsWhileDegraded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const name = "poolstatus"
	e.create(e.newMOSC(name, "RUN echo about to fail && false"))
	e.waitBuildFailed(name)
	c := e.waitPoolCondition(corev1.ConditionTrue, string(mcfgv1.MachineConfigPoolBuildFailed))
	if !strings.Contains(c.Message, "MachineOSConfig "+name) {
		t.Errorf("the pool's %s message does not name the MachineOSConfig: %q", c.Type, c.Message)
	}

	e.updateMOSC(name, func(m *mosbv1.MachineOSConfig) {
		m.Spec.BuildInputs.Containerfile[0].Content = "RUN echo fixed > /etc/fixed"
	})
	e.waitReady(name)
	e.waitPoolCondition(corev1.ConditionFalse, string(mcfgv1.MachineConfigPoolBuildSuccess))
	builds := e.buildCount(name)

	// A node of the pool is degraded: a changed MachineOSConfig waits.
	e.setPoolCondition(mcfgv1.MachineConfigPoolNodeDegraded, corev1.ConditionTrue, "node-amd64: disk full")
	e.updateMOSC(name, func(m *mosbv1.MachineOSConfig) {
		m.Spec.BuildInputs.Containerfile[0].Content = "RUN echo again > /etc/again"
	})
	eventually(t, buildTimeout, "MachineOSConfig "+name+" held back by its pool", func(ctx context.Context) (bool, error) {
		m := &mosbv1.MachineOSConfig{}
		if err := e.c.Get(ctx, client.ObjectKey{Name: name}, m); err != nil {
			return false, err
		}
		r := meta.FindStatusCondition(m.Status.Conditions, mosbv1.MachineOSConfigReady)
		return r != nil && r.Reason == pipeline.ReasonPoolDegraded && strings.Contains(r.Message, "NodeDegraded (node-amd64: disk full)") &&
			m.Status.ObservedGeneration == m.Generation, fmt.Errorf("Ready: %+v", r)
	})
	if got, held := e.holdsBuildCount(name, builds, 3*time.Second); !held {
		t.Fatalf("a build started while the pool is NodeDegraded: %d MachineOSBuilds, had %d", got, builds)
	}

	// Recovered: the build starts.
	e.setPoolCondition(mcfgv1.MachineConfigPoolNodeDegraded, corev1.ConditionFalse, "")
	e.waitBuilt(name, builds+1)
}

// waitPoolCondition waits for the worker pool's ImageBuildDegraded condition.
func (e *env) waitPoolCondition(status corev1.ConditionStatus, reason string) mcfgv1.MachineConfigPoolCondition {
	e.t.Helper()
	var got mcfgv1.MachineConfigPoolCondition
	eventually(e.t, buildTimeout, fmt.Sprintf("pool %s: %s=%s (%s)", poolName, mcfgv1.MachineConfigPoolImageBuildDegraded, status, reason), func(ctx context.Context) (bool, error) {
		pool := &mcfgv1.MachineConfigPool{}
		if err := e.c.Get(ctx, client.ObjectKey{Name: poolName}, pool); err != nil {
			return false, err
		}
		for _, c := range pool.Status.Conditions {
			if c.Type == mcfgv1.MachineConfigPoolImageBuildDegraded {
				got = c
				return c.Status == status && c.Reason == reason, fmt.Errorf("%+v", c)
			}
		}
		return false, fmt.Errorf("no %s condition: %+v", mcfgv1.MachineConfigPoolImageBuildDegraded, pool.Status.Conditions)
	})
	return got
}

// setPoolCondition sets a condition of the worker pool's status, as the Machine Config Operator
// would.
func (e *env) setPoolCondition(t mcfgv1.MachineConfigPoolConditionType, status corev1.ConditionStatus, msg string) {
	e.t.Helper()
	e.updatePool(true, func(pool *mcfgv1.MachineConfigPool) {
		c := mcfgv1.MachineConfigPoolCondition{Type: t, Status: status, Message: msg, Reason: "E2E"}
		pool.Status.Conditions, _ = pipeline.SetPoolCondition(pool.Status.Conditions, c, time.Now())
	})
}
