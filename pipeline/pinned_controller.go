package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/registry"
)

// Pinning: after a successful build, the pool's nodes should pre-pull the new image (and the base
// it was built from) so that the rollout does not wait for the registry. mosb keeps one
// PinnedImageSet per pool, named PinnedImageSetName(pool), listing the images of the succeeded
// MachineOSBuilds of the pool's MachineOSConfigs that pin (PinningEnabled), and references it
// from the pool's spec.pinnedImageSets. The set is recomputed from the MachineOSBuilds that
// exist, so the images of builds that history cleanup deleted drop out.

// AnnotationPinImages on a MachineOSConfig: "true" pins its images; "false" opts it out of the
// controller's --pin-images.
const AnnotationPinImages = "mosb.dev/pin-images"

// Labels on the PinnedImageSets mosb manages.
const (
	// LabelPinnedPool names the pool the set is for.
	LabelPinnedPool = "machineconfiguration.openshift.io/pool"
	// LabelManagedBy marks the sets mosb owns; a set of the same name without it is left alone.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	managedByMosb  = "mosb"
)

// Event reasons of the pinnedimages controller.
const (
	// ReasonPinnedImageRefused: an image fails the PinnedImageSet rules and is left out.
	ReasonPinnedImageRefused = "PinnedImageRefused"
	// ReasonPinnedImagesTruncated: more than registry.MaxPinnedImages images; the oldest builds' are left out.
	ReasonPinnedImagesTruncated = "PinnedImagesTruncated"
	// ReasonPinnedImageSetUpdated: the set was created or changed.
	ReasonPinnedImageSetUpdated = "PinnedImageSetUpdated"
	// ReasonPinnedImageSetFailed: the API server refused the set, or its name is taken.
	ReasonPinnedImageSetFailed = "PinnedImageSetFailed"
)

// maxPoolPinnedImageSets is the MachineConfigPool API's limit on spec.pinnedImageSets.
const maxPoolPinnedImageSets = 100

// PinnedImagesReconciler keeps each pool's PinnedImageSet in step with its succeeded builds.
// The reconcile key is the MachineConfigPool's name.
type PinnedImagesReconciler struct {
	Client   client.Client
	Recorder record.EventRecorder
	// PinAll pins the images of every MachineOSConfig (--pin-images) except those annotated
	// mosb.dev/pin-images: "false".
	PinAll bool

	// warned holds, per pool, the warnings of its last reconcile: a warning is an Event when it
	// first appears, not at every reconcile while it holds.
	warnedMu sync.Mutex
	warned   map[string]map[string]bool
}

// firstTime records the warnings a pool has now and says which of them it did not have at its
// previous reconcile.
func (r *PinnedImagesReconciler) firstTime(pool string, now []string) map[string]bool {
	r.warnedMu.Lock()
	defer r.warnedMu.Unlock()
	if r.warned == nil {
		r.warned = map[string]map[string]bool{}
	}
	prev := r.warned[pool]
	current := make(map[string]bool, len(now))
	news := map[string]bool{}
	for _, w := range now {
		current[w] = true
		if !prev[w] {
			news[w] = true
		}
	}
	if len(current) == 0 {
		delete(r.warned, pool)
	} else {
		r.warned[pool] = current
	}
	return news
}

// PinnedImageSetName is the name of the PinnedImageSet mosb keeps for a pool: "mosb-<pool>".
// A pool whose name would make that an invalid reference (a first DNS label over 63
// characters, or a name over 253) gets a shortened name with a hash of the pool's name.
func PinnedImageSetName(pool string) string {
	name := "mosb-" + pool
	first, _, _ := strings.Cut(name, ".")
	if len(first) <= validation.DNS1123LabelMaxLength && len(name) <= validation.DNS1123SubdomainMaxLength {
		return name
	}
	sum := sha256.Sum256([]byte(pool))
	suffix := "-" + hex.EncodeToString(sum[:])[:10]
	if len(first) > validation.DNS1123LabelMaxLength-len(suffix) {
		first = first[:validation.DNS1123LabelMaxLength-len(suffix)]
	}
	return strings.TrimRight(first, "-") + suffix
}

// PinningEnabled says whether a MachineOSConfig's images are pinned.
func PinningEnabled(m *mosbv1.MachineOSConfig, pinAll bool) bool {
	switch m.Annotations[AnnotationPinImages] {
	case "true":
		return true
	case "false":
		return false
	default:
		return pinAll
	}
}

// RefusedPin is an image that the PinnedImageSet rules refuse.
type RefusedPin struct {
	MachineOSConfig, MachineOSBuild string
	// Role is "image" or "base image".
	Role  string
	Image string
	Err   error
}

// PinPlan is what a pool's PinnedImageSet should hold.
type PinPlan struct {
	// Spec is the set's spec; meaningful only when Empty is false.
	Spec mcfgv1.PinnedImageSetSpec
	// Empty: nothing to pin (no succeeded build, or pinning is off): no set is wanted.
	Empty bool
	// Refused are the invalid references left out.
	Refused []RefusedPin
	// Dropped are valid images left out because the set is full (the oldest builds' first).
	Dropped []string
}

// PlanPins decides a pool's pinned images from the MachineOSBuilds of its pinning
// MachineOSConfigs: each succeeded build's image and its base image, newest builds first, each
// image once, at most registry.MaxPinnedImages (the images of the oldest builds are the ones
// left out). Every image passes the PinnedImageSet rules of registry.NewPinnedImageSetSpec or is
// refused on its own, so one bad reference never keeps the others from being pinned.
func PlanPins(builds []mosbv1.MachineOSBuild) PinPlan {
	succeeded := make([]*mosbv1.MachineOSBuild, 0, len(builds))
	for i := range builds {
		b := &builds[i]
		if b.Status.DigestedImagePushspec != "" && Phase(b) == PhaseSucceeded && b.DeletionTimestamp.IsZero() {
			succeeded = append(succeeded, b)
		}
	}
	sort.SliceStable(succeeded, func(i, j int) bool { return newerBuild(succeeded[i], succeeded[j]) })

	var plan PinPlan
	seen := map[string]bool{}
	var images []string
	for _, b := range succeeded {
		for _, c := range []struct{ role, image string }{
			{"image", b.Status.DigestedImagePushspec},
			{"base image", b.Spec.BaseOSImagePullspec},
		} {
			if c.image == "" || seen[c.image] {
				continue
			}
			seen[c.image] = true
			if _, err := registry.NewPinnedImageSetSpec([]string{c.image}); err != nil {
				plan.Refused = append(plan.Refused, RefusedPin{
					MachineOSConfig: b.Spec.MachineOSConfig.Name, MachineOSBuild: b.Name, Role: c.role, Image: c.image, Err: unwrapPinned(err),
				})
				continue
			}
			if len(images) == registry.MaxPinnedImages {
				plan.Dropped = append(plan.Dropped, c.image)
				continue
			}
			images = append(images, c.image)
		}
	}
	if len(images) == 0 {
		plan.Empty = true
		return plan
	}
	spec, err := registry.NewPinnedImageSetSpec(images)
	if err != nil {
		// Unreachable: every image passed on its own and there are at most MaxPinnedImages.
		// Pin nothing rather than something the API would refuse.
		plan.Empty = true
		plan.Refused = append(plan.Refused, RefusedPin{Role: "set", Err: err})
		return plan
	}
	plan.Spec = spec
	return plan
}

// unwrapPinned drops the "pinned image 0" position, meaningless for a one-image check.
func unwrapPinned(err error) error {
	var pe *registry.PinnedImageError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// newerBuild orders builds newest first: by end time, then by creation (createdBefore).
func newerBuild(a, b *mosbv1.MachineOSBuild) bool {
	ta, tb := buildTime(a), buildTime(b)
	if !ta.Equal(&tb) {
		return tb.Before(&ta)
	}
	return createdBefore(b, a)
}

func buildTime(b *mosbv1.MachineOSBuild) metav1.Time {
	if b.Status.BuildEnd != nil {
		return *b.Status.BuildEnd
	}
	return b.CreationTimestamp
}

// WithPinnedImageSetRef returns refs with name added at the end (refs unchanged when present).
func WithPinnedImageSetRef(refs []mcfgv1.PinnedImageSetRef, name string) ([]mcfgv1.PinnedImageSetRef, bool) {
	for _, r := range refs {
		if r.Name == name {
			return refs, false
		}
	}
	out := append(append([]mcfgv1.PinnedImageSetRef(nil), refs...), mcfgv1.PinnedImageSetRef{Name: name})
	return out, true
}

// WithoutPinnedImageSetRef returns refs without name, keeping the others in order.
func WithoutPinnedImageSetRef(refs []mcfgv1.PinnedImageSetRef, name string) ([]mcfgv1.PinnedImageSetRef, bool) {
	var out []mcfgv1.PinnedImageSetRef
	changed := false
	for _, r := range refs {
		if r.Name == name {
			changed = true
			continue
		}
		out = append(out, r)
	}
	if !changed {
		return refs, false
	}
	return out, true
}

// Reconcile brings one pool's PinnedImageSet and its reference from the pool up to date.
func (r *PinnedImagesReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx).WithValues("pool", req.Name)
	poolName := req.Name
	setName := PinnedImageSetName(poolName)

	pool := &mcfgv1.MachineConfigPool{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: poolName}, pool); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		// No pool, no nodes to pre-pull on: a set of ours for it is a leftover.
		r.firstTime(poolName, nil)
		return ctrl.Result{}, r.deleteSet(ctx, setName)
	}

	builds, err := r.pinnedBuilds(ctx, poolName)
	if err != nil {
		return ctrl.Result{}, err
	}
	plan := PlanPins(builds)
	refused := make([]string, len(plan.Refused))
	for i, p := range plan.Refused {
		refused[i] = fmt.Sprintf("%s %s of MachineOSBuild %s cannot be pinned and is left out of PinnedImageSet %s: %v",
			p.Role, p.Image, p.MachineOSBuild, setName, p.Err)
	}
	truncated := ""
	if len(plan.Dropped) > 0 {
		truncated = fmt.Sprintf("PinnedImageSet %s holds at most %d images; the %d images of the oldest builds are left out (first: %s)",
			setName, registry.MaxPinnedImages, len(plan.Dropped), plan.Dropped[0])
	}
	warnings := slices.Clone(refused)
	if truncated != "" {
		warnings = append(warnings, truncated)
	}
	news := r.firstTime(poolName, warnings)
	for i, p := range plan.Refused {
		if news[refused[i]] {
			log.Info("image refused for pinning", "image", p.Image, "machineosbuild", p.MachineOSBuild, "error", p.Err.Error())
			r.event(ctx, p.MachineOSConfig, pool, corev1.EventTypeWarning, ReasonPinnedImageRefused, refused[i])
		}
	}
	if truncated != "" && news[truncated] {
		log.Info("too many images to pin", "dropped", len(plan.Dropped))
		r.Recorder.Event(pool, corev1.EventTypeWarning, ReasonPinnedImagesTruncated, truncated)
	}

	if plan.Empty {
		if err := r.unreference(ctx, pool, setName); err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, r.deleteSet(ctx, setName)
	}
	ok, err := r.applySet(ctx, pool, setName, plan.Spec)
	if err != nil || !ok {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, r.reference(ctx, pool, setName)
}

// pinnedBuilds are the MachineOSBuilds of the pool's MachineOSConfigs that pin.
func (r *PinnedImagesReconciler) pinnedBuilds(ctx context.Context, pool string) ([]mosbv1.MachineOSBuild, error) {
	moscs := &mosbv1.MachineOSConfigList{}
	if err := r.Client.List(ctx, moscs); err != nil {
		return nil, err
	}
	var out []mosbv1.MachineOSBuild
	for i := range moscs.Items {
		m := &moscs.Items[i]
		if m.Spec.MachineConfigPool.Name != pool || !PinningEnabled(m, r.PinAll) || !m.DeletionTimestamp.IsZero() {
			continue
		}
		list := &mosbv1.MachineOSBuildList{}
		if err := r.Client.List(ctx, list, client.MatchingLabels{LabelMachineOSConfig: m.Name}); err != nil {
			return nil, err
		}
		for _, b := range list.Items {
			// The label is ours to set, but only a build whose spec says so belongs to m.
			if b.Spec.MachineOSConfig.Name == m.Name {
				out = append(out, b)
			}
		}
	}
	return out, nil
}

// applySet creates or updates the set. false: it cannot be written (refused by the API server,
// or the name belongs to someone else) and an event says why; the pool is then not pointed at it.
func (r *PinnedImagesReconciler) applySet(ctx context.Context, pool *mcfgv1.MachineConfigPool, name string, spec mcfgv1.PinnedImageSetSpec) (bool, error) {
	log := ctrl.LoggerFrom(ctx).WithValues("pool", pool.Name, "pinnedimageset", name)
	labels := map[string]string{LabelPinnedPool: pool.Name, LabelManagedBy: managedByMosb}
	set := &mcfgv1.PinnedImageSet{}
	err := r.Client.Get(ctx, types.NamespacedName{Name: name}, set)
	switch {
	case apierrors.IsNotFound(err):
		set = &mcfgv1.PinnedImageSet{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: spec}
		if err := r.Client.Create(ctx, set); err != nil {
			return r.refusedByAPI(ctx, pool, name, err)
		}
	case err != nil:
		return false, err
	default:
		if set.Labels[LabelManagedBy] != managedByMosb {
			msg := fmt.Sprintf("PinnedImageSet %s exists and is not managed by mosb (no label %s=%s); rename or delete it to let mosb pin pool %s's images",
				name, LabelManagedBy, managedByMosb, pool.Name)
			log.Info("PinnedImageSet name taken", "message", msg)
			r.Recorder.Event(pool, corev1.EventTypeWarning, ReasonPinnedImageSetFailed, msg)
			return false, nil
		}
		if equality.Semantic.DeepEqual(set.Spec, spec) && set.Labels[LabelPinnedPool] == pool.Name {
			return true, nil
		}
		set.Spec = spec
		if set.Labels == nil {
			set.Labels = map[string]string{}
		}
		set.Labels[LabelPinnedPool] = pool.Name
		if err := r.Client.Update(ctx, set); err != nil {
			if apierrors.IsConflict(err) {
				return false, err
			}
			return r.refusedByAPI(ctx, pool, name, err)
		}
	}
	log.Info("PinnedImageSet written", "images", len(spec.PinnedImages))
	r.Recorder.Eventf(pool, corev1.EventTypeNormal, ReasonPinnedImageSetUpdated, "PinnedImageSet %s pins %d images for pool %s", name, len(spec.PinnedImages), pool.Name)
	return true, nil
}

// refusedByAPI reports a write the API server refused for good (invalid, forbidden); any other
// error is returned to be retried.
func (r *PinnedImagesReconciler) refusedByAPI(ctx context.Context, pool *mcfgv1.MachineConfigPool, name string, err error) (bool, error) {
	if !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) && !apierrors.IsForbidden(err) {
		return false, err
	}
	msg := fmt.Sprintf("PinnedImageSet %s for pool %s was refused by the API server: %v", name, pool.Name, err)
	ctrl.LoggerFrom(ctx).Info("PinnedImageSet refused", "pool", pool.Name, "pinnedimageset", name, "error", err.Error())
	r.Recorder.Event(pool, corev1.EventTypeWarning, ReasonPinnedImageSetFailed, msg)
	return false, nil
}

// reference adds the set to the pool's spec.pinnedImageSets (after the set exists, so the pool
// never names a missing set).
func (r *PinnedImagesReconciler) reference(ctx context.Context, pool *mcfgv1.MachineConfigPool, name string) error {
	refs, changed := WithPinnedImageSetRef(pool.Spec.PinnedImageSets, name)
	if !changed {
		return nil
	}
	if len(refs) > maxPoolPinnedImageSets {
		msg := fmt.Sprintf("MachineConfigPool %s already references %d PinnedImageSets, the most it may; %s is not added", pool.Name, len(pool.Spec.PinnedImageSets), name)
		ctrl.LoggerFrom(ctx).Info("pool cannot reference the set", "pool", pool.Name, "message", msg)
		r.Recorder.Event(pool, corev1.EventTypeWarning, ReasonPinnedImageSetFailed, msg)
		return nil
	}
	patch := client.MergeFromWithOptions(pool.DeepCopy(), client.MergeFromWithOptimisticLock{})
	pool.Spec.PinnedImageSets = refs
	if err := r.Client.Patch(ctx, pool, patch); err != nil {
		if apierrors.IsInvalid(err) {
			_, err = r.refusedByAPI(ctx, pool, name, err)
		}
		return err
	}
	ctrl.LoggerFrom(ctx).Info("pool references its PinnedImageSet", "pool", pool.Name, "pinnedimageset", name)
	return nil
}

// unreference removes the set from the pool's spec.pinnedImageSets (before the set goes).
func (r *PinnedImagesReconciler) unreference(ctx context.Context, pool *mcfgv1.MachineConfigPool, name string) error {
	refs, changed := WithoutPinnedImageSetRef(pool.Spec.PinnedImageSets, name)
	if !changed {
		return nil
	}
	patch := client.MergeFromWithOptions(pool.DeepCopy(), client.MergeFromWithOptimisticLock{})
	pool.Spec.PinnedImageSets = refs
	return r.Client.Patch(ctx, pool, patch)
}

// deleteSet deletes the set if it is mosb's.
func (r *PinnedImagesReconciler) deleteSet(ctx context.Context, name string) error {
	set := &mcfgv1.PinnedImageSet{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: name}, set); err != nil {
		return client.IgnoreNotFound(err)
	}
	if set.Labels[LabelManagedBy] != managedByMosb {
		return nil
	}
	if err := r.Client.Delete(ctx, set, client.Preconditions{UID: &set.UID}); client.IgnoreNotFound(err) != nil {
		return err
	}
	ctrl.LoggerFrom(ctx).Info("PinnedImageSet deleted: nothing to pin", "pinnedimageset", name)
	return nil
}

// event goes to the MachineOSConfig when it still exists, else to the pool.
func (r *PinnedImagesReconciler) event(ctx context.Context, mosc string, pool *mcfgv1.MachineConfigPool, typ, reason, msg string) {
	m := &mosbv1.MachineOSConfig{}
	if mosc != "" && r.Client.Get(ctx, types.NamespacedName{Name: mosc}, m) == nil {
		r.Recorder.Event(m, typ, reason, msg)
		return
	}
	r.Recorder.Event(pool, typ, reason, msg)
}

// SetupWithManager registers the "pinnedimages" controller. Without the MachineConfigPool or
// PinnedImageSet API there is nothing to pin: it logs that once and registers nothing.
func (r *PinnedImagesReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	log := mgr.GetLogger().WithName("pinnedimages")
	for _, kind := range []string{"MachineConfigPool", "PinnedImageSet"} {
		gvk := mcfgv1.GroupVersion.WithKind(kind)
		if _, err := mgr.GetRESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			if !meta.IsNoMatchError(err) {
				// Discovery failed for another reason: taking it for "not installed" would turn
				// pinning off without a word. Fail, as the build controller does; the Deployment
				// restarts us.
				return fmt.Errorf("discovering the %s API: %w", kind, err)
			}
			log.Info("API not installed; images are not pinned", "kind", kind, "group", gvk.Group)
			return nil
		}
	}
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorderFor("mosb-pinnedimages")
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("pinnedimages").
		For(&mcfgv1.MachineConfigPool{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&mosbv1.MachineOSConfig{}, moscPoolHandler{}).
		Watches(&mosbv1.MachineOSBuild{}, handler.EnqueueRequestsFromMapFunc(r.poolOfBuild)).
		Watches(&mcfgv1.PinnedImageSet{}, handler.EnqueueRequestsFromMapFunc(poolOfSet)).
		Complete(r)
}

// moscPoolHandler enqueues a MachineOSConfig's pool, and on an update its old pool too (a
// MachineOSConfig moved to another pool leaves the old pool's set).
type moscPoolHandler struct{}

func (moscPoolHandler) Create(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	enqueuePool(q, e.Object)
}

func (moscPoolHandler) Update(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	enqueuePool(q, e.ObjectOld)
	enqueuePool(q, e.ObjectNew)
}

func (moscPoolHandler) Delete(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	enqueuePool(q, e.Object)
}

func (moscPoolHandler) Generic(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	enqueuePool(q, e.Object)
}

func enqueuePool(q workqueue.TypedRateLimitingInterface[reconcile.Request], o client.Object) {
	if m, ok := o.(*mosbv1.MachineOSConfig); ok && m.Spec.MachineConfigPool.Name != "" {
		q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Name: m.Spec.MachineConfigPool.Name}})
	}
}

// poolOfBuild maps a MachineOSBuild to its MachineOSConfig's pool; when the MachineOSConfig is
// gone, to every pool that has a set of mosb's (one of them may hold the build's images).
func (r *PinnedImagesReconciler) poolOfBuild(ctx context.Context, o client.Object) []reconcile.Request {
	b, ok := o.(*mosbv1.MachineOSBuild)
	if !ok {
		return nil
	}
	m := &mosbv1.MachineOSConfig{}
	err := r.Client.Get(ctx, types.NamespacedName{Name: b.Spec.MachineOSConfig.Name}, m)
	if err == nil {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: m.Spec.MachineConfigPool.Name}}}
	}
	if !apierrors.IsNotFound(err) {
		ctrl.LoggerFrom(ctx).Error(err, "finding the pool of a MachineOSBuild", "machineosbuild", b.Name)
		return nil
	}
	sets := &mcfgv1.PinnedImageSetList{}
	if err := r.Client.List(ctx, sets, client.MatchingLabels{LabelManagedBy: managedByMosb}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing mosb's PinnedImageSets")
		return nil
	}
	var out []reconcile.Request
	for i := range sets.Items {
		out = append(out, poolOfSet(ctx, &sets.Items[i])...)
	}
	return out
}

// poolOfSet maps one of mosb's sets to its pool (someone edited or deleted it: put it back).
func poolOfSet(_ context.Context, o client.Object) []reconcile.Request {
	if o.GetLabels()[LabelManagedBy] != managedByMosb {
		return nil
	}
	if pool := o.GetLabels()[LabelPinnedPool]; pool != "" {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: pool}}}
	}
	return nil
}
