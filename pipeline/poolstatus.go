package pipeline

import (
	"fmt"
	"slices"
	"strings"
	"time"

	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
)

// The pool says how the builds of its image go, as the Machine Config Operator's pools do: the
// condition ImageBuildDegraded, True when a build of the pool's image failed, False with the
// reason Building, BuildSuccess or BuildPending otherwise (poolstatus_controller.go writes it).
// And a pool that is NodeDegraded or RenderDegraded starts no build: a new image would roll out to
// nodes that are failing already, or be built from a MachineConfig that is not the pool's.

// ReasonPoolDegraded: the pool is NodeDegraded or RenderDegraded; no build starts until it is not.
const ReasonPoolDegraded = "PoolDegraded"

// PoolHold says why the pool holds new builds back ("" when it does not).
func PoolHold(pool *mcfgv1.MachineConfigPool) string {
	if pool == nil {
		return ""
	}
	for _, t := range []mcfgv1.MachineConfigPoolConditionType{mcfgv1.MachineConfigPoolNodeDegraded, mcfgv1.MachineConfigPoolRenderDegraded} {
		for _, c := range pool.Status.Conditions {
			if c.Type == t && c.Status == corev1.ConditionTrue {
				why := ""
				if c.Message != "" {
					why = " (" + c.Message + ")"
				}
				return fmt.Sprintf("MachineConfigPool %s is %s%s: no build starts until it recovers", pool.Name, t, why)
			}
		}
	}
	return ""
}

// PoolChangeMatters says whether a pool's update changes a build input or the hold (PoolHold): its
// spec (node selector, rendered MachineConfig), its rendered MachineConfig in status, or whether
// and why it holds builds. Not the rest of its status: the conditions mosb and others write there
// (ImageBuildDegraded among them) would reconcile every MachineOSConfig of the pool for nothing.
func PoolChangeMatters(old, updated *mcfgv1.MachineConfigPool) bool {
	return old.Generation != updated.Generation ||
		old.Status.Configuration.Name != updated.Status.Configuration.Name ||
		PoolHold(old) != PoolHold(updated)
}

// PoolBuildCondition is the pool's ImageBuildDegraded condition given the MachineOSConfigs of the
// pool (none: ok is false, the pool is none of mosb's business unless it carries the condition
// already, then it is cleared).
func PoolBuildCondition(pool string, moscs []mosbv1.MachineOSConfig, hadCondition bool) (c mcfgv1.MachineConfigPoolCondition, ok bool) {
	cond := func(status corev1.ConditionStatus, reason mcfgv1.MachineConfigPoolConditionType, msg string) (mcfgv1.MachineConfigPoolCondition, bool) {
		return mcfgv1.MachineConfigPoolCondition{Type: mcfgv1.MachineConfigPoolImageBuildDegraded, Status: status, Reason: string(reason), Message: msg}, true
	}
	if len(moscs) == 0 {
		if hadCondition {
			return cond(corev1.ConditionFalse, "NoLayeredObjects", "no MachineOSConfig builds an image for pool "+pool)
		}
		return mcfgv1.MachineConfigPoolCondition{}, false
	}
	moscs = slices.SortedFunc(slices.Values(moscs), func(a, b mosbv1.MachineOSConfig) int { return strings.Compare(a.Name, b.Name) })
	var building, pending []string
	for _, m := range moscs {
		if d := meta.FindStatusCondition(m.Status.Conditions, mosbv1.MachineOSConfigDegraded); d != nil && d.Status == metav1.ConditionTrue {
			return cond(corev1.ConditionTrue, mcfgv1.MachineConfigPoolBuildFailed, fmt.Sprintf("Failed to build OS image for pool %s (MachineOSConfig %s): %s: %s", pool, m.Name, d.Reason, d.Message))
		}
		switch {
		case meta.IsStatusConditionTrue(m.Status.Conditions, mosbv1.MachineOSConfigBuilding):
			building = append(building, m.Name)
		case !meta.IsStatusConditionTrue(m.Status.Conditions, mosbv1.MachineOSConfigReady):
			pending = append(pending, m.Name)
		}
	}
	switch {
	case len(building) > 0:
		return cond(corev1.ConditionFalse, mcfgv1.MachineConfigPoolBuilding, "Build started for pool "+pool+" (MachineOSConfig "+strings.Join(building, ", ")+")")
	case len(pending) > 0:
		return cond(corev1.ConditionFalse, mcfgv1.MachineConfigPoolBuildPending, "MachineOSConfig "+strings.Join(pending, ", ")+" of pool "+pool+" waits for its build")
	}
	return cond(corev1.ConditionFalse, mcfgv1.MachineConfigPoolBuildSuccess, "Build succeeded for pool "+pool)
}

// SetPoolCondition puts c into conditions: in place of the condition of its type, its transition
// time kept while its status stays. Reports whether anything changed.
func SetPoolCondition(conditions []mcfgv1.MachineConfigPoolCondition, c mcfgv1.MachineConfigPoolCondition, now time.Time) ([]mcfgv1.MachineConfigPoolCondition, bool) {
	for i, old := range conditions {
		if old.Type != c.Type {
			continue
		}
		if old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message {
			return conditions, false
		}
		c.LastTransitionTime = old.LastTransitionTime
		if old.Status != c.Status {
			c.LastTransitionTime = metav1.NewTime(now)
		}
		out := slices.Clone(conditions)
		out[i] = c
		return out, true
	}
	c.LastTransitionTime = metav1.NewTime(now)
	return append(slices.Clone(conditions), c), true
}
