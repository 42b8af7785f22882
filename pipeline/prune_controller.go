package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"

	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/registry"
)

// pruneImages deletes from the registry the images of builds that go, except those anything
// else refers to (PlanImagePrune). It never fails the caller: a registry that refuses or fails
// is said in an Event on the MachineOSConfig, the images stay, and the builds go all the same.
// notOwnStatus: the MachineOSConfig's status does not keep the image it names (it is being
// deleted, or about to name the image of the build that just succeeded).
func (r *BuildReconciler) pruneImages(ctx context.Context, m *mosbv1.MachineOSConfig, plan *Plan, doomed []mosbv1.MachineOSBuild, notOwnStatus bool) {
	if !r.PruneImages || len(doomed) == 0 {
		return
	}
	names := make([]string, 0, len(doomed))
	for i := range doomed {
		names = append(names, doomed[i].Name)
	}
	what := "the images of MachineOSBuild(s) " + strings.Join(names, ", ")
	except := ""
	if notOwnStatus {
		except = m.Name
	}
	kept, all, err := r.keptImages(ctx, except, doomed)
	if err != nil {
		r.Recorder.Eventf(m, corev1.EventTypeWarning, ReasonImagePruneFailed, "%s stay in the registry: reading what refers to images: %v", what, err)
		return
	}
	cfg, err := plan.Registry.PushConfig()
	if err != nil {
		r.Recorder.Eventf(m, corev1.EventTypeWarning, ReasonImagePruneFailed, "%s stay in the registry: %v", what, err)
		return
	}
	reg := registry.NewClient(registry.WithKeychain(plan.PushAuths.Keychain()), registry.WithConfig(cfg.WithNetworkOf(plan.Config)), registry.WithBounds(r.RegistryBounds))
	children := RecordedIndexChildren(all)
	for _, img := range UnknownIndexes(doomed, kept, all) {
		callCtx, cancel := context.WithTimeout(ctx, r.registryTimeout())
		kids, err := reg.IndexChildren(callCtx, img)
		cancel()
		if err != nil && !errors.Is(err, registry.ErrNotFound) {
			r.Recorder.Eventf(m, corev1.EventTypeWarning, ReasonImagePruneFailed, "%s stay in the registry: %s is in use and what it holds could not be read: %v", what, img, err)
			return
		}
		children[digestOf(img)] = kids
	}
	decision := PlanImagePrune(doomed, kept, children)
	var deleted []string
	for _, img := range decision.Delete {
		callCtx, cancel := context.WithTimeout(ctx, r.registryTimeout())
		err := reg.DeleteManifest(callCtx, img)
		cancel()
		switch {
		case err == nil, errors.Is(err, registry.ErrNotFound):
			deleted = append(deleted, img)
		case errors.Is(err, registry.ErrUnsupported), errors.Is(err, registry.ErrUnauthorized):
			// The same registry refuses the rest too: one Event, no retry.
			r.Recorder.Eventf(m, corev1.EventTypeWarning, ReasonImagePruneRefused, "%s stay in the registry, which refuses to delete them: %v (--prune-images=false turns pruning off)", what, err)
			return
		default:
			r.Recorder.Eventf(m, corev1.EventTypeWarning, ReasonImagePruneFailed, "%s: deleting %s failed, it stays in the registry: %v", what, img, err)
		}
	}
	if len(deleted) > 0 || len(decision.Spared) > 0 {
		msg := SummarisePrune(names, deleted, decision.Spared)
		ctrl.LoggerFrom(ctx).Info("pruned images", "machineosconfig", m.Name, "deleted", deleted, "spared", len(decision.Spared))
		r.Recorder.Event(m, corev1.EventTypeNormal, ReasonImagesPruned, msg)
	}
}

// keptImages are the images something other than the doomed builds refers to: the other
// MachineOSBuilds, the MachineOSConfigs' current images (but except's), the PinnedImageSets mosb
// does not manage (its own follow the builds), and the images nodes run or are moving to. all
// is every MachineOSBuild, the doomed ones included.
func (r *BuildReconciler) keptImages(ctx context.Context, except string, doomed []mosbv1.MachineOSBuild) (kept []KeptImage, all []mosbv1.MachineOSBuild, err error) {
	going := map[string]bool{}
	for i := range doomed {
		going[doomed[i].Name] = true
	}
	builds := &mosbv1.MachineOSBuildList{}
	if err := r.Client.List(ctx, builds); err != nil {
		return nil, nil, err
	}
	for i := range builds.Items {
		b := &builds.Items[i]
		if going[b.Name] {
			continue
		}
		for _, img := range BuildImages(b) {
			kept = append(kept, KeptImage{Pullspec: img, By: "MachineOSBuild " + b.Name})
		}
	}
	configs := &mosbv1.MachineOSConfigList{}
	if err := r.Client.List(ctx, configs); err != nil {
		return nil, nil, err
	}
	for _, c := range configs.Items {
		if c.Name != except && c.Status.CurrentImagePullspec != "" {
			kept = append(kept, KeptImage{Pullspec: string(c.Status.CurrentImagePullspec), By: "MachineOSConfig " + c.Name})
		}
	}
	sets := &mcfgv1.PinnedImageSetList{}
	switch err := r.Client.List(ctx, sets); {
	case meta.IsNoMatchError(err):
		// No PinnedImageSet API in this cluster.
	case err != nil:
		return nil, nil, err
	default:
		for _, s := range sets.Items {
			if s.Labels[LabelManagedBy] == managedByMosb {
				continue
			}
			for _, p := range s.Spec.PinnedImages {
				kept = append(kept, KeptImage{Pullspec: string(p.Name), By: "PinnedImageSet " + s.Name})
			}
		}
	}
	nodes := &corev1.NodeList{}
	if err := r.Client.List(ctx, nodes); err != nil {
		return nil, nil, err
	}
	for _, n := range nodes.Items {
		for _, a := range []struct{ key, what string }{{AnnotationNodeCurrentImage, "currentImage"}, {AnnotationNodeDesiredImage, "desiredImage"}} {
			if img := n.Annotations[a.key]; img != "" {
				kept = append(kept, KeptImage{Pullspec: img, By: fmt.Sprintf("node %s (%s)", n.Name, a.what)})
			}
		}
	}
	return kept, builds.Items, nil
}

// keepFinalizer adds or removes FinalizerPruneImages as pruning is on or off.
func (r *BuildReconciler) keepFinalizer(ctx context.Context, m *mosbv1.MachineOSConfig) error {
	if r.PruneImages == controllerutil.ContainsFinalizer(m, FinalizerPruneImages) {
		return nil
	}
	patch := client.MergeFromWithOptions(m.DeepCopy(), client.MergeFromWithOptimisticLock{})
	if r.PruneImages {
		controllerutil.AddFinalizer(m, FinalizerPruneImages)
	} else {
		controllerutil.RemoveFinalizer(m, FinalizerPruneImages)
	}
	return r.Client.Patch(ctx, m, patch)
}

// finishDeletion prunes the images of a deleted MachineOSConfig's builds (its MachineOSBuilds
// then go with it, by garbage collection) and lets it go. Input that cannot be planned any more
// (a Secret deleted first…) is said in an Event: the images stay.
func (r *BuildReconciler) finishDeletion(ctx context.Context, m *mosbv1.MachineOSConfig) error {
	if !controllerutil.ContainsFinalizer(m, FinalizerPruneImages) {
		return nil
	}
	if r.PruneImages {
		builds, err := r.buildsOf(ctx, m.Name)
		if err != nil {
			return err
		}
		if len(builds) > 0 {
			in, failure, err := r.gatherInputs(ctx, m)
			if err != nil {
				return err
			}
			var plan *Plan
			if failure == nil {
				if plan, err = Prepare(in); err != nil && !errors.As(err, &failure) {
					return err
				}
			}
			if failure != nil {
				r.Recorder.Eventf(m, corev1.EventTypeWarning, ReasonImagePruneFailed, "the images of its MachineOSBuilds stay in the registry: the push credentials and registry settings cannot be read: %s: %s", failure.Reason, failure.Message)
			} else {
				r.pruneImages(ctx, m, plan, builds, true)
			}
		}
	}
	patch := client.MergeFromWithOptions(m.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(m, FinalizerPruneImages)
	return client.IgnoreNotFound(r.Client.Patch(ctx, m, patch))
}
