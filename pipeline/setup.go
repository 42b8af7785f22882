package pipeline

import (
	"context"
	"fmt"

	configv1 "github.com/openshift/api/config/v1"
	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
)

// Field indexes the watches use to find the MachineOSConfigs an object affects.
const (
	indexPool   = "mosb.spec.machineConfigPool.name"
	indexSecret = "mosb.spec.buildInputs.secrets"
)

// SetupWithManager registers the build controller and its watches. Watches of optional
// OpenShift APIs (mirror sets, Image, MachineConfig) are only set where the API exists.
func (r *BuildReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorderFor("mosb")
	}
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &mosbv1.MachineOSConfig{}, indexPool, func(o client.Object) []string {
		return []string{o.(*mosbv1.MachineOSConfig).Spec.MachineConfigPool.Name}
	}); err != nil {
		return err
	}
	if err := idx.IndexField(ctx, &mosbv1.MachineOSConfig{}, indexSecret, func(o client.Object) []string {
		bi := o.(*mosbv1.MachineOSConfig).Spec.BuildInputs
		return []string{bi.BaseImagePullSecret.Name, bi.RenderedImagePushSecret.Name}
	}); err != nil {
		return err
	}

	b := ctrl.NewControllerManagedBy(mgr).
		Named("build").
		For(&mosbv1.MachineOSConfig{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&mosbv1.MachineOSBuild{}).
		Watches(&batchv1.Job{}, handler.EnqueueRequestsFromMapFunc(byLabel), builder.WithPredicates(inNamespace(r.Namespace))).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(byLabel), builder.WithPredicates(inNamespace(r.Namespace))).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.bySecret), builder.WithPredicates(inNamespace(r.Namespace))).
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(r.all), builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return (o.GetNamespace() == r.Namespace && o.GetName() == OSImageURLConfigMap) || o.GetNamespace() == TrustedCANamespace
		}))).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(r.all), builder.WithPredicates(predicate.Funcs{
			UpdateFunc: func(e event.UpdateEvent) bool {
				old, okOld := e.ObjectOld.(*corev1.Node)
				updated, okNew := e.ObjectNew.(*corev1.Node)
				return !okOld || !okNew || NodeChangeMovesPods(old, updated)
			},
		}))

	mapper := mgr.GetRESTMapper()
	optional := []struct {
		gvk schema.GroupVersionKind
		obj client.Object
		fn  handler.MapFunc
		// only, when set, filters the updates that reconcile.
		only predicate.Predicate
	}{
		{mcfgv1.GroupVersion.WithKind("MachineConfigPool"), &mcfgv1.MachineConfigPool{}, r.byPool, predicate.Funcs{
			UpdateFunc: func(e event.UpdateEvent) bool {
				old, okOld := e.ObjectOld.(*mcfgv1.MachineConfigPool)
				updated, okNew := e.ObjectNew.(*mcfgv1.MachineConfigPool)
				return !okOld || !okNew || PoolChangeMatters(old, updated)
			},
		}},
		{mcfgv1.GroupVersion.WithKind("MachineConfig"), &mcfgv1.MachineConfig{}, r.byMachineConfig, nil},
		{configv1.GroupVersion.WithKind("Image"), &configv1.Image{}, r.all, nil},
		{configv1.GroupVersion.WithKind("Proxy"), &configv1.Proxy{}, r.all, nil},
		{configv1.GroupVersion.WithKind("ImageDigestMirrorSet"), &configv1.ImageDigestMirrorSet{}, r.all, nil},
		{configv1.GroupVersion.WithKind("ImageTagMirrorSet"), &configv1.ImageTagMirrorSet{}, r.all, nil},
		{configv1.GroupVersion.WithKind("ImageContentPolicy"), &configv1.ImageContentPolicy{}, r.all, nil},
	}
	log := mgr.GetLogger().WithName("build")
	for _, o := range optional {
		if _, err := mapper.RESTMapping(o.gvk.GroupKind(), o.gvk.Version); err != nil {
			if !meta.IsNoMatchError(err) {
				// Discovery failed for another reason: guessing "not installed" would silently
				// stop watching an API that exists. Fail; the Deployment restarts us.
				return fmt.Errorf("discovering the %s API: %w", o.gvk.Kind, err)
			}
			log.Info("API not installed; not watching it", "kind", o.gvk.Kind, "group", o.gvk.Group)
			continue
		}
		var opts []builder.WatchesOption
		if o.only != nil {
			opts = append(opts, builder.WithPredicates(o.only))
		}
		b = b.Watches(o.obj, handler.EnqueueRequestsFromMapFunc(o.fn), opts...)
	}
	return b.WithOptions(controller.Options{MaxConcurrentReconciles: max(r.Workers, 1)}).Complete(r)
}

func inNamespace(ns string) predicate.Predicate {
	return predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetNamespace() == ns })
}

func byLabel(_ context.Context, o client.Object) []reconcile.Request {
	if name := o.GetLabels()[LabelMachineOSConfig]; name != "" {
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: name}}}
	}
	return nil
}

func (r *BuildReconciler) matching(ctx context.Context, opts ...client.ListOption) []reconcile.Request {
	list := &mosbv1.MachineOSConfigList{}
	if err := r.Client.List(ctx, list, opts...); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing MachineOSConfigs for a watch event")
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for _, m := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKey{Name: m.Name}})
	}
	return out
}

func (r *BuildReconciler) all(ctx context.Context, _ client.Object) []reconcile.Request {
	return r.matching(ctx)
}

func (r *BuildReconciler) bySecret(ctx context.Context, o client.Object) []reconcile.Request {
	return r.matching(ctx, client.MatchingFields{indexSecret: o.GetName()})
}

func (r *BuildReconciler) byPool(ctx context.Context, o client.Object) []reconcile.Request {
	return r.matching(ctx, client.MatchingFields{indexPool: o.GetName()})
}

// byMachineConfig: the MachineOSConfigs of the pools whose rendered config this is.
func (r *BuildReconciler) byMachineConfig(ctx context.Context, o client.Object) []reconcile.Request {
	pools := &mcfgv1.MachineConfigPoolList{}
	if err := r.Client.List(ctx, pools); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing MachineConfigPools for a MachineConfig event")
		return nil
	}
	var out []reconcile.Request
	for i := range pools.Items {
		if renderedConfigName(&pools.Items[i]) == o.GetName() {
			out = append(out, r.byPool(ctx, &pools.Items[i])...)
		}
	}
	return out
}
