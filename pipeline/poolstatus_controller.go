package pipeline

import (
	"context"
	"fmt"

	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
)

// PoolStatusReconciler keeps each MachineConfigPool's ImageBuildDegraded condition in step with
// the MachineOSConfigs of the pool (poolstatus.go decides). The reconcile key is the pool's name.
type PoolStatusReconciler struct {
	Client client.Client
	// Clock dates condition transitions (default: the real clock).
	Clock clock.PassiveClock
}

func (r *PoolStatusReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pool := &mcfgv1.MachineConfigPool{}
	if err := r.Client.Get(ctx, req.NamespacedName, pool); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	list := &mosbv1.MachineOSConfigList{}
	if err := r.Client.List(ctx, list); err != nil {
		return ctrl.Result{}, err
	}
	var moscs []mosbv1.MachineOSConfig
	for _, m := range list.Items {
		if m.Spec.MachineConfigPool.Name == pool.Name && m.DeletionTimestamp.IsZero() {
			moscs = append(moscs, m)
		}
	}
	had := false
	for _, c := range pool.Status.Conditions {
		had = had || c.Type == mcfgv1.MachineConfigPoolImageBuildDegraded
	}
	c, ok := PoolBuildCondition(pool.Name, moscs, had)
	if !ok {
		return ctrl.Result{}, nil
	}
	now := clock.RealClock{}.Now()
	if r.Clock != nil {
		now = r.Clock.Now()
	}
	conditions, changed := SetPoolCondition(pool.Status.Conditions, c, now)
	if !changed {
		return ctrl.Result{}, nil
	}
	// The Machine Config Operator writes the pool's status too: the patch fails rather than
	// overwrite a newer one, and the reconcile runs again.
	patch := client.MergeFromWithOptions(pool.DeepCopy(), client.MergeFromWithOptimisticLock{})
	pool.Status.Conditions = conditions
	if err := r.Client.Status().Patch(ctx, pool, patch); err != nil {
		if apierrors.IsConflict(err) {
			return ctrl.Result{Requeue: true}, nil
		}
		return ctrl.Result{}, fmt.Errorf("writing MachineConfigPool %s's %s condition: %w", pool.Name, mcfgv1.MachineConfigPoolImageBuildDegraded, err)
	}
	ctrl.LoggerFrom(ctx).Info("pool image build condition", "pool", pool.Name, "status", c.Status, "reason", c.Reason)
	return ctrl.Result{}, nil
}

// SetupWithManager registers the controller; without the MachineConfigPool API there is nothing
// to write.
func (r *PoolStatusReconciler) SetupWithManager(mgr ctrl.Manager) error {
	gvk := mcfgv1.GroupVersion.WithKind("MachineConfigPool")
	if _, err := mgr.GetRESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
		if !meta.IsNoMatchError(err) {
			return fmt.Errorf("discovering the MachineConfigPool API: %w", err)
		}
		mgr.GetLogger().WithName("poolstatus").Info("API not installed; no pool conditions", "kind", gvk.Kind)
		return nil
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("poolstatus").
		For(&mcfgv1.MachineConfigPool{}).
		Watches(&mosbv1.MachineOSConfig{}, moscPoolHandler{}).
		Complete(r)
}

var _ reconcile.Reconciler = &PoolStatusReconciler{}
