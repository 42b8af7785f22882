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
	"time"

	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/registry"
	"github.com/mosb-dev/mosb/registry/bounds"
)

// Labels mosb puts on what it creates, so a MachineOSConfig finds its builds and pods.
const (
	LabelMachineOSConfig = "mosb.dev/machineosconfig"
	LabelMachineOSBuild  = "mosb.dev/machineosbuild"
	LabelArch            = "mosb.dev/arch"
	// AnnotationRebuild on a MachineOSBuild records the rebuild request it answered.
	AnnotationRebuild = "mosb.dev/rebuild"
	// AnnotationCreated on a MachineOSBuild is when the controller created it (RFC 3339, with
	// nanoseconds): creationTimestamp has whole seconds, too coarse to order builds created
	// together, such as two rebuild requests in a row.
	AnnotationCreated = "mosb.dev/created"
)

// BuildReconciler turns a MachineOSConfig into an image: it keeps one MachineOSBuild (and its
// build pods) for the current inputs, supersedes builds of older inputs, pushes the index of a
// multi-architecture build, and reports on both objects.
type BuildReconciler struct {
	Client   client.Client
	Recorder record.EventRecorder
	// Namespace holds the secrets, the machine-config-osimageurl ConfigMap and the build pods.
	Namespace      string
	BuilderImage   string
	BuildTimeout   time.Duration
	DefaultArch    string
	BuilderVersion string
	HostNetwork    bool
	// BuildServiceAccount is the build pods' ServiceAccount (empty: the namespace's default).
	BuildServiceAccount string
	// AllowEmulation lets a build pod run on a node labelled EmulationLabel(arch)=true when the
	// cluster has no schedulable node of its architecture (see Place).
	AllowEmulation bool
	// MaxRetries is how many times a transiently failed build is tried again.
	MaxRetries int
	// SucceededHistory and FailedHistory are how many ended MachineOSBuilds of each kind are kept.
	SucceededHistory, FailedHistory int
	// PruneImages deletes the images of the builds that go (history, MachineOSConfig deleted)
	// from the registry, unless something else refers to them (prune.go).
	PruneImages bool
	// ImagePullGrace is how long a build pod may fail to pull the builder image (default 5m).
	ImagePullGrace time.Duration
	// APIReader reads around the cache, to tell a deleted pod from one the cache has not seen yet.
	APIReader client.Reader
	Metrics   *Metrics
	// Workers is how many MachineOSConfigs are reconciled at once (default 1).
	Workers int
	// Clock is the controller's time (default: the real clock); tests move it.
	Clock clock.PassiveClock
	// RegistryTimeout bounds each of the controller's own registry operations, retries included
	// (0: DefaultRegistryTimeout).
	RegistryTimeout time.Duration
	// RegistryBounds hold every registry request of the controller and of its build pods:
	// connecting, waiting for an answer, a transfer without progress (zero fields: the defaults).
	RegistryBounds bounds.Bounds
	// NodeStore is the node image store build pods share (nil: none, every build pulls its base).
	NodeStore *buildpod.NodeStore
	// BuildResources are the build pods' default requests and limits (--build-requests,
	// --build-limits); a MachineOSConfig's annotations override them key by key.
	BuildResources BuildResources
	// RebuildOnAnyMachineConfigChange builds a new image for every new rendered MachineConfig, not
	// only for those that change what the image holds (rebuildrules.go); a MachineOSConfig's
	// AnnotationRebuildOnAnyChange overrides it.
	RebuildOnAnyMachineConfigChange bool
	// RunMountNames are the entitlement Secret and repository ConfigMaps of the build namespace
	// that RUN steps get when they exist.
	RunMountNames RunMountNames

	logged sync.Map
	// baseSizes caches base image sizes, which size ephemeral storage (podResources).
	baseSizes baseSizes
	// registryOptions are added to the registry clients of the base size lookup (tests).
	registryOptions []registry.Option
}

// Reconcile brings one MachineOSConfig's build and status up to date.
func (r *BuildReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	m := &mosbv1.MachineOSConfig{}
	if err := r.Client.Get(ctx, req.NamespacedName, m); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !m.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finishDeletion(ctx, m)
	}
	// The finalizer is metadata: changing it triggers no reconcile of its own, so this one goes on.
	if err := r.keepFinalizer(ctx, m); err != nil {
		return ctrl.Result{}, err
	}

	in, failure, err := r.gatherInputs(ctx, m)
	if err != nil {
		return ctrl.Result{}, err
	}
	var plan *Plan
	if failure == nil {
		plan, err = Prepare(in)
		if err != nil {
			if !errors.As(err, &failure) {
				return ctrl.Result{}, err
			}
		}
	}
	var anyChange bool
	if failure == nil {
		anyChange, failure = RebuildOnAnyChange(m, r.RebuildOnAnyMachineConfigChange)
	}
	var builds []mosbv1.MachineOSBuild
	var preBuilt string
	var preBuiltStep PreBuiltStep
	if failure == nil {
		if builds, err = r.buildsOf(ctx, m.Name); err != nil {
			return ctrl.Result{}, err
		}
		preBuilt, preBuiltStep, failure = DecidePreBuilt(m, builds, plan.Identity)
	}
	if failure != nil {
		changed, err := r.writeConfigStatus(ctx, m, Summarise(failure, nil, false), "", "")
		if changed {
			// Once per change: every reconcile of unchanged bad input would repeat it.
			log.Info("input refused", "reason", failure.Reason, "message", failure.Message)
			r.Recorder.Event(m, corev1.EventTypeWarning, failure.Reason, failure.Message)
		}
		return ctrl.Result{}, err
	}

	// The API says mosb fills releaseVersion when the user left it empty.
	if m.Spec.BuildInputs.ReleaseVersion == "" && plan.ReleaseVersion != "" {
		patch := client.MergeFrom(m.DeepCopy())
		m.Spec.BuildInputs.ReleaseVersion = plan.ReleaseVersion
		if err := r.Client.Patch(ctx, m, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("populating spec.buildInputs.releaseVersion: %w", err)
		}
		log.Info("populated releaseVersion from the cluster default", "releaseVersion", plan.ReleaseVersion)
	}

	switch preBuiltStep {
	case PreBuiltSeed:
		b, err := r.seedPreBuilt(ctx, m, plan, currentBuild(builds, plan.Identity), preBuilt)
		if err != nil {
			return ctrl.Result{}, err
		}
		builds = append(slices.DeleteFunc(builds, func(o mosbv1.MachineOSBuild) bool { return o.Name == b.Name }), *b)
	case PreBuiltDone, PreBuiltIgnored:
		patch := client.MergeFrom(m.DeepCopy())
		delete(m.Annotations, AnnotationPreBuiltImage)
		if err := r.Client.Patch(ctx, m, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("removing the %s annotation: %w", AnnotationPreBuiltImage, err)
		}
		if preBuiltStep == PreBuiltIgnored {
			r.Recorder.Eventf(m, corev1.EventTypeWarning, ReasonPreBuiltImageIgnored, "annotation %s removed unused: the current inputs have a build already (%s); a pre-built image is adopted only for inputs that have none", AnnotationPreBuiltImage, currentBuild(builds, plan.Identity).Name)
		}
	}
	rebuild, token := DecideRebuild(m.Annotations, builds)
	if rebuild == TakeRebuild {
		if token, err = r.takeRebuild(ctx, m); err != nil {
			return ctrl.Result{}, err
		}
		rebuild = StartRebuild
	}
	var keep KeepDecision
	if rebuild != StartRebuild && currentBuild(builds, plan.Identity) == nil {
		var kept *Plan
		if kept, keep, err = r.keepImage(ctx, m, in, builds, anyChange); err != nil {
			return ctrl.Result{}, err
		}
		if keep.Keep {
			plan = kept
		}
	}
	current, superseded := DecideCurrent(builds, plan.Identity, rebuild == StartRebuild)
	for _, b := range superseded {
		if err := r.supersede(ctx, b); err != nil {
			return ctrl.Result{}, err
		}
	}

	if current == nil {
		// A held build starts when the pool recovers (its status change reconciles this
		// MachineOSConfig); a rebuild request waits with it.
		if why := PoolHold(in.Pool); why != "" {
			changed, err := r.writeConfigStatus(ctx, m, SummariseHeld(why), "", "")
			if changed {
				log.Info("build held back", "reason", ReasonPoolDegraded, "message", why)
				r.Recorder.Event(m, corev1.EventTypeWarning, ReasonPoolDegraded, why)
			}
			return ctrl.Result{}, err
		}
		answers := ""
		if rebuild == StartRebuild {
			answers = token
		}
		if current, err = r.startBuild(ctx, m, plan, answers); err != nil {
			return ctrl.Result{}, err
		}
	}
	if rebuild == StartRebuild || rebuild == ClearRebuild {
		patch := client.MergeFrom(m.DeepCopy())
		delete(m.Annotations, AnnotationRebuildRequest)
		if err := r.Client.Patch(ctx, m, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("clearing the answered rebuild request: %w", err)
		}
	}

	var pullspec string
	switch Phase(current) {
	case PhasePending, PhaseBuilding:
		again, err := r.advanceBuild(ctx, m, plan, current)
		if err != nil {
			return ctrl.Result{}, err
		}
		if again > 0 {
			_, err := r.writeConfigStatus(ctx, m, Summarise(nil, current, false), "", "")
			return ctrl.Result{RequeueAfter: again}, err
		}
	case PhaseSucceeded:
		pullspec = current.Status.DigestedImagePushspec
		if err := r.recordServed(ctx, m, current, in, keep); err != nil {
			return ctrl.Result{}, err
		}
		if NeedsImageCheck(m, pullspec) && !IsPreBuilt(current) {
			exists, err := r.imageExists(ctx, plan, pullspec)
			switch DecideImage(exists, err) {
			case ImageWait:
				// Not a reason to build again nor to fail: say why the status waits, and look again.
				log.Info("cannot check the image of a succeeded build", "image", pullspec, "error", err.Error())
				reason, why := r.registryProblem(err)
				r.Recorder.Eventf(m, corev1.EventTypeWarning, reason, "checking that %s is still in the registry: %s", pullspec, why)
				return ctrl.Result{RequeueAfter: r.registryTimeout()}, nil
			case ImageRebuild:
				log.Info("the image of a succeeded build is gone; building again", "machineosbuild", current.Name, "image", pullspec)
				r.Recorder.Eventf(m, corev1.EventTypeNormal, ReasonImageMissing, "image %s of %s is no longer in the registry; building it again", pullspec, current.Name)
				return ctrl.Result{RequeueAfter: time.Millisecond}, client.IgnoreNotFound(r.Client.Delete(ctx, current))
			}
		}
	}
	var built string
	if pullspec != "" {
		built = current.Name
	}
	_, err = r.writeConfigStatus(ctx, m, Summarise(nil, current, pullspec != ""), pullspec, built)
	return ctrl.Result{}, err
}

// keepImage applies the rebuild rules (rebuildrules.go) when the current inputs have no build:
// with Keep, the returned plan is the one the pool's image was built from, which stands for the
// current inputs.
func (r *BuildReconciler) keepImage(ctx context.Context, m *mosbv1.MachineOSConfig, in Inputs, builds []mosbv1.MachineOSBuild, anyChange bool) (*Plan, KeepDecision, error) {
	served, desired := ServedBuild(m, builds), in.RenderedMachineConfig
	if served == nil || desired == nil || served.Spec.RenderedMachineConfig == "" || served.Spec.RenderedMachineConfig == desired.Name {
		return nil, KeepDecision{}, nil
	}
	var builtFrom *mcfgv1.MachineConfig
	mc := &mcfgv1.MachineConfig{}
	switch err := r.Client.Get(ctx, types.NamespacedName{Name: served.Spec.RenderedMachineConfig}, mc); {
	case err == nil:
		builtFrom = mc
	case !apierrors.IsNotFound(err):
		return nil, KeepDecision{}, err
	}
	var before *Plan
	if builtFrom != nil && !anyChange {
		// Today's inputs with the MachineConfig the image was built from: the same identity says
		// nothing else changed since.
		then := in
		then.RenderedMachineConfig = builtFrom
		if p, err := Prepare(then); err == nil && p.Identity == served.Spec.BuildIdentity {
			before = p
		}
	}
	d := DecideKeep(served, builtFrom, desired, anyChange, before != nil)
	if d.Why != "" {
		r.logOnce(ctx, "keep/"+m.Name+"/"+desired.Name, d.Why)
	}
	return before, d, nil
}

// recordServed keeps the succeeded build's AnnotationServes in step with the rule's decision:
// the rendered MachineConfig its image serves besides the one it was built from, or none. The
// Event says it once, when it changes.
func (r *BuildReconciler) recordServed(ctx context.Context, m *mosbv1.MachineOSConfig, b *mosbv1.MachineOSBuild, in Inputs, keep KeepDecision) error {
	want := ""
	if keep.Keep && in.RenderedMachineConfig != nil {
		want = in.RenderedMachineConfig.Name
	}
	if b.Annotations[AnnotationServes] == want {
		return nil
	}
	patch := client.MergeFrom(b.DeepCopy())
	if want == "" {
		delete(b.Annotations, AnnotationServes)
	} else {
		if b.Annotations == nil {
			b.Annotations = map[string]string{}
		}
		b.Annotations[AnnotationServes] = want
	}
	if err := r.Client.Patch(ctx, b, patch); err != nil {
		return fmt.Errorf("recording on MachineOSBuild %s which rendered MachineConfig its image serves: %w", b.Name, err)
	}
	if want != "" {
		r.Recorder.Event(m, corev1.EventTypeNormal, ReasonImageKept, keep.Why)
	}
	return nil
}

// takeRebuild replaces the user's rebuild annotation with a request token of the controller's (see
// AnnotationRebuildRequest), in one write that fails if the MachineOSConfig changed meanwhile.
func (r *BuildReconciler) takeRebuild(ctx context.Context, m *mosbv1.MachineOSConfig) (string, error) {
	token := string(uuid.NewUUID())
	patch := client.MergeFromWithOptions(m.DeepCopy(), client.MergeFromWithOptimisticLock{})
	delete(m.Annotations, mosbv1.RebuildAnnotation)
	m.Annotations[AnnotationRebuildRequest] = token
	if err := r.Client.Patch(ctx, m, patch); err != nil {
		return "", fmt.Errorf("taking the rebuild request (%s): %w", mosbv1.RebuildAnnotation, err)
	}
	ctrl.LoggerFrom(ctx).Info("rebuild requested", "token", token)
	return token, nil
}

// DecideCurrent picks the build that stands for the current inputs (nil: a new one must start)
// and the builds to supersede: every unfinished build that is not it. A rebuild request sets
// aside the build of the same inputs, finished or not.
func DecideCurrent(builds []mosbv1.MachineOSBuild, identity string, rebuild bool) (current *mosbv1.MachineOSBuild, superseded []*mosbv1.MachineOSBuild) {
	if !rebuild {
		current = currentBuild(builds, identity)
	}
	for i := range builds {
		b := &builds[i]
		if (current == nil || b.Name != current.Name) && !Phase(b).Terminal() {
			superseded = append(superseded, b)
		}
	}
	return current, superseded
}

// currentBuild is the newest MachineOSBuild of an identity.
func currentBuild(builds []mosbv1.MachineOSBuild, identity string) *mosbv1.MachineOSBuild {
	var cur *mosbv1.MachineOSBuild
	for i := range builds {
		b := &builds[i]
		if b.Spec.BuildIdentity != identity {
			continue
		}
		if cur == nil || createdBefore(cur, b) {
			cur = b
		}
	}
	return cur
}

// createdBefore orders builds by creation: by the controller's AnnotationCreated where both
// have it, else by creationTimestamp, and by name where that ties.
func createdBefore(a, b *mosbv1.MachineOSBuild) bool {
	ta, errA := time.Parse(time.RFC3339Nano, a.Annotations[AnnotationCreated])
	tb, errB := time.Parse(time.RFC3339Nano, b.Annotations[AnnotationCreated])
	if errA == nil && errB == nil && !ta.Equal(tb) {
		return ta.Before(tb)
	}
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

func (r *BuildReconciler) buildsOf(ctx context.Context, mosc string) ([]mosbv1.MachineOSBuild, error) {
	list := &mosbv1.MachineOSBuildList{}
	if err := r.Client.List(ctx, list, client.MatchingLabels{LabelMachineOSConfig: mosc}); err != nil {
		return nil, err
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items, nil
}

// seedPreBuilt records the MachineOSBuild of the plan as succeeded with a pre-built image
// (prebuilt.go): no request, no pod. recorded is the build a previous attempt created, if any.
func (r *BuildReconciler) seedPreBuilt(ctx context.Context, m *mosbv1.MachineOSConfig, plan *Plan, recorded *mosbv1.MachineOSBuild, image string) (*mosbv1.MachineOSBuild, error) {
	b := recorded.DeepCopy()
	if b == nil {
		var err error
		if b, err = r.newBuild(m, plan, ""); err != nil {
			return nil, err
		}
		b.Labels[LabelPreBuiltImage] = "true"
		if err := r.Client.Create(ctx, b); err != nil {
			return nil, fmt.Errorf("recording MachineOSBuild %s for the pre-built image: %w", b.Name, err)
		}
	}
	now := metav1.NewTime(r.now())
	b.Status.DigestedImagePushspec = image
	b.Status.BuildStart, b.Status.BuildEnd = &now, &now
	meta.SetStatusCondition(&b.Status.Conditions, metav1.Condition{Type: mosbv1.MachineOSBuildSucceeded, Status: metav1.ConditionTrue,
		Reason: ReasonPreBuiltImageSeeded, Message: "adopted the pre-built image " + image + " (annotation " + AnnotationPreBuiltImage + "); nothing was built"})
	if err := r.Client.Status().Update(ctx, b); err != nil {
		return nil, fmt.Errorf("recording MachineOSBuild %s as succeeded with the pre-built image: %w", b.Name, err)
	}
	ctrl.LoggerFrom(ctx).Info("adopted a pre-built image", "machineosbuild", b.Name, "image", image)
	r.Recorder.Eventf(m, corev1.EventTypeNormal, ReasonPreBuiltImageSeeded, "MachineOSBuild %s records the pre-built image %s for the current inputs; no build runs", b.Name, image)
	return b, nil
}

// startBuild creates the MachineOSBuild of the plan. A rebuild (answering the request token
// rebuild) gets a suffix of its own.
func (r *BuildReconciler) startBuild(ctx context.Context, m *mosbv1.MachineOSConfig, plan *Plan, rebuild string) (*mosbv1.MachineOSBuild, error) {
	b, err := r.newBuild(m, plan, rebuild)
	if err != nil {
		return nil, err
	}
	if err := r.Client.Create(ctx, b); err != nil {
		if apierrors.IsAlreadyExists(err) {
			// Our cache was behind: the build exists; the next reconcile sees it.
			return nil, fmt.Errorf("MachineOSBuild %s exists already; retrying with a fresh view", b.Name)
		}
		return nil, err
	}
	ctrl.LoggerFrom(ctx).Info("build started", "machineosbuild", b.Name, "identity", plan.ShortIdentity(), "arches", plan.ArchNames())
	r.Recorder.Eventf(m, corev1.EventTypeNormal, "BuildStarted", "MachineOSBuild %s builds %s for %v", b.Name, plan.Target, plan.ArchNames())
	return b, nil
}

// newBuild is the MachineOSBuild of the plan, owned by the MachineOSConfig, not yet created.
func (r *BuildReconciler) newBuild(m *mosbv1.MachineOSConfig, plan *Plan, rebuild string) (*mosbv1.MachineOSBuild, error) {
	name := plan.MachineOSBuildName(m.Name)
	if rebuild != "" {
		sum := sha256.Sum256([]byte(rebuild))
		name += "-r" + hex.EncodeToString(sum[:])[:6]
	}
	b := &mosbv1.MachineOSBuild{
		ObjectMeta: metav1.ObjectMeta{
			Name:   name,
			Labels: map[string]string{LabelMachineOSConfig: m.Name},
		},
		Spec: mosbv1.MachineOSBuildSpec{
			MachineOSConfig:               mosbv1.MachineOSConfigReference{Name: m.Name},
			RenderedMachineConfig:         plan.RenderedMachineConfig,
			BuildIdentity:                 plan.Identity,
			RenderedImagePushspec:         mosbv1.ImageTagPushspec(plan.Target),
			BaseOSImagePullspec:           plan.BaseImage,
			BaseOSExtensionsImagePullspec: plan.ExtensionsImage,
			ReleaseVersion:                plan.ReleaseVersion,
			Architectures:                 plan.ArchNames(),
		},
	}
	b.Annotations = map[string]string{AnnotationCreated: r.now().UTC().Format(time.RFC3339Nano)}
	if rebuild != "" {
		b.Annotations[AnnotationRebuild] = rebuild
	}
	if err := controllerutil.SetControllerReference(m, b, r.Client.Scheme()); err != nil {
		return nil, err
	}
	return b, nil
}

// advanceBuild makes sure every architecture of the current attempt has its pod, reads their
// outcomes, retries transient failures after a backoff, and finishes the build when every
// architecture is done. It returns when to look again (0: when something changes).
func (r *BuildReconciler) advanceBuild(ctx context.Context, m *mosbv1.MachineOSConfig, plan *Plan, b *mosbv1.MachineOSBuild) (time.Duration, error) {
	now := metav1.NewTime(r.now())
	status := b.Status.DeepCopy()
	if status.BuildStart == nil {
		status.BuildStart = &now
	}
	if status.Attempt == 0 {
		status.Attempt = 1
	}
	if wait := r.backoffLeft(status, now.Time); wait > 0 {
		return wait, nil
	}

	outcomes := make([]Outcome, len(plan.Arches))
	var waiting []string // why pods wait for a node, for the Building condition
	place := r.placer(ctx)
	for i, a := range plan.Arches {
		jobName := JobName(b.Name, a.Arch, status.Attempt)
		entry := mosbv1.ArchitectureBuild{Architecture: a.Arch, JobName: jobName, ContainerfileArch: string(a.Selection.EntryArch), Message: noContentNote(a)}
		job, pod, created, err := r.job(ctx, status, jobName)
		if err != nil {
			return 0, err
		}
		if pod != nil {
			entry.PodName = pod.Name
		}
		// Where a pod goes is decided when its Job is made; a Job whose pod no node has taken yet
		// is made again when its placement would be different now (and could run). Any other Job
		// is adopted as it is, placed by whichever controller made it.
		var placement Placement
		if (job == nil && !created) || Unscheduled(pod) {
			if placement, err = place(a.Arch); err != nil {
				return 0, err
			}
		}
		if (job == nil && !created) || Replace(pod, placement) {
			if job == nil {
				if err := r.confirmCurrent(ctx, b); err != nil {
					return 0, err
				}
			}
			if err := r.placeJob(ctx, plan, a, b, jobName, job, pod, placement); err != nil {
				return 0, err
			}
			entry.PodName = ""
			entry.Message = joinNotes(entry.Message, placement.Message)
			if placement.Waiting {
				waiting = append(waiting, placement.Message)
			}
			setArch(status, entry)
			continue
		}
		out := ClassifyJob(job, pod, jobName, now.Time, r.imagePullGrace())
		outcomes[i] = out
		switch {
		case out.Failed:
			entry.Message = out.Message
		case !out.Done:
			entry.Message = joinNotes(entry.Message, out.Message)
		case out.Done:
			entry.DigestedImagePushspec = out.Result.Pullspec
			entry.StorageDriver = out.Result.StorageDriver
			entry.Message = joinNotes(entry.Message, out.Result.Storage)
		}
		note := PlacementMessage(pod, a.Arch, placement)
		entry.Message = joinNotes(entry.Message, note)
		if placement.Waiting && note == placement.Message {
			waiting = append(waiting, note)
		}
		setArch(status, entry)
	}
	status.Builder = BuilderReference(status, r.Namespace)

	d := DecideAttempt(AttemptState{Attempt: status.Attempt, MaxRetries: r.MaxRetries, Arches: plan.ArchNames(),
		Outcomes: outcomes, Waiting: waiting, Namespace: r.Namespace})
	phase, reason, message, again := d.Phase, d.Reason, d.Message, d.Again
	switch d.Step {
	case AttemptRetry:
		// This attempt's pods go; the next attempt starts after the backoff.
		if err := r.cleanup(ctx, b, false); err != nil {
			return 0, err
		}
		status.FailedAttempts = append(status.FailedAttempts, mosbv1.BuildAttemptFailure{Attempt: status.Attempt, Reason: d.Failure.Reason, Message: d.Failure.Message, Time: now})
		status.Attempt++
		r.metrics().retried(b, d.Failure.Reason)
		ctrl.LoggerFrom(ctx).Info("build attempt failed; retrying", "machineosbuild", b.Name, "attempt", status.Attempt-1, "reason", d.Failure.Reason, "after", again)
		r.Recorder.Eventf(b, corev1.EventTypeWarning, d.Failure.Reason, "attempt %d failed, retrying: %s", status.Attempt-1, d.Failure.Message)
	case AttemptPublish:
		pullspec, err := r.publish(ctx, plan, d.Results)
		if err != nil {
			if errors.Is(err, registry.ErrUnauthorized) || errors.Is(err, registry.ErrNotPermitted) || errors.Is(err, registry.ErrNotFound) {
				phase, reason, message = PhaseFailed, ReasonPushFailed, err.Error()
			} else {
				// Transient: the next reconcile pushes again; until then the build says why it waits.
				ctrl.LoggerFrom(ctx).Info("pushing the index failed; trying again", "machineosbuild", b.Name, "error", err.Error())
				reason, why := r.registryProblem(err)
				r.Recorder.Eventf(b, corev1.EventTypeWarning, reason, "pushing the index of %s: %s; trying again", plan.Target, why)
				return r.registryTimeout(), nil
			}
		} else {
			phase, reason, message = PhaseSucceeded, ReasonBuilt, "pushed "+pullspec
			for _, a := range plan.Arches {
				if note := d.Results[a.Arch].Storage; note != "" {
					// A build that fell back to vfs is slow and costly, and says so where people look.
					message = joinNotes(message, a.Arch+": "+note)
				}
			}
			status.DigestedImagePushspec = pullspec
		}
	}
	if c, ok := MachineConfigCondition(plan, b.Generation, now); ok {
		meta.SetStatusCondition(&status.Conditions, c)
	}
	updated := b.DeepCopy()
	updated.Status = *status
	SetBuildPhase(updated, phase, reason, message, now)
	if err := r.Client.Status().Update(ctx, updated); err != nil {
		return 0, err
	}
	*b = *updated
	if phase.Terminal() {
		ctrl.LoggerFrom(ctx).Info("build finished", "machineosbuild", b.Name, "phase", phase, "reason", reason, "message", message)
		evType := corev1.EventTypeNormal
		if phase != PhaseSucceeded {
			evType = corev1.EventTypeWarning
		}
		r.Recorder.Event(b, evType, reason, message)
		r.Recorder.Eventf(m, evType, reason, "MachineOSBuild %s: %s", b.Name, message)
		r.metrics().ended(b, reason)
		if err := r.cleanup(ctx, b, false); err != nil {
			return 0, err
		}
		return 0, r.pruneHistory(ctx, m, plan, b.Name, phase == PhaseSucceeded)
	}
	return again, nil
}

// job finds an architecture's build Job and the pod it made. A Job the status says was created
// but that the API server no longer has is reported as (nil, nil, true): it was deleted. The cache
// may lag behind a Job just created, so "gone" is confirmed with a direct read.
func (r *BuildReconciler) job(ctx context.Context, status *mosbv1.MachineOSBuildStatus, name string) (*batchv1.Job, *corev1.Pod, bool, error) {
	key := types.NamespacedName{Namespace: r.Namespace, Name: name}
	job := &batchv1.Job{}
	err := r.Client.Get(ctx, key, job)
	if apierrors.IsNotFound(err) {
		recorded := false
		for _, a := range status.Architectures {
			recorded = recorded || a.JobName == name
		}
		if !recorded || r.APIReader == nil {
			return nil, nil, recorded, nil
		}
		if err = r.APIReader.Get(ctx, key, job); apierrors.IsNotFound(err) {
			return nil, nil, true, nil
		}
	}
	if err != nil {
		return nil, nil, false, err
	}
	pods := &corev1.PodList{}
	if err := r.Client.List(ctx, pods, client.InNamespace(r.Namespace), client.MatchingLabels{buildpod.LabelJobController: string(job.UID)}); err != nil {
		return nil, nil, false, fmt.Errorf("listing the pods of Job %s: %w", name, err)
	}
	return job, JobPod(job, pods.Items), true, nil
}

// confirmCurrent makes sure the MachineOSBuild read from the cache is the API server's before a
// pod its status does not record is created: a cache behind our own status write does not know
// the pod was made, and would make it again after a user deleted it (an interruption lost, the
// attempt not counted). Pods are made once per attempt and architecture, so the read is rare.
func (r *BuildReconciler) confirmCurrent(ctx context.Context, b *mosbv1.MachineOSBuild) error {
	if r.APIReader == nil {
		return nil
	}
	live := &mosbv1.MachineOSBuild{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(b), live); err != nil {
		return fmt.Errorf("reading MachineOSBuild %s before creating its pods: %w", b.Name, err)
	}
	if live.ResourceVersion != b.ResourceVersion {
		return fmt.Errorf("MachineOSBuild %s changed since the cache read it; retrying with a fresh view", b.Name)
	}
	return nil
}

// backoffLeft is how long the next attempt still has to wait.
func (r *BuildReconciler) backoffLeft(s *mosbv1.MachineOSBuildStatus, now time.Time) time.Duration {
	if len(s.FailedAttempts) == 0 {
		return 0
	}
	last := s.FailedAttempts[len(s.FailedAttempts)-1]
	return last.Time.Add(retryBackoff(int(s.Attempt))).Sub(now)
}

// retryBackoff before attempt n (n ≥ 2): 10 s, 20 s, 40 s, … up to 5 minutes.
func retryBackoff(n int) time.Duration {
	d := 10 * time.Second
	for i := 2; i < n && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}

func (r *BuildReconciler) imagePullGrace() time.Duration {
	if r.ImagePullGrace > 0 {
		return r.ImagePullGrace
	}
	return 5 * time.Minute
}

func (r *BuildReconciler) metrics() *Metrics { return r.Metrics }

func (r *BuildReconciler) now() time.Time {
	if r.Clock == nil {
		return time.Now()
	}
	return r.Clock.Now()
}

// pruneHistory keeps the newest SucceededHistory succeeded and FailedHistory failed or
// interrupted MachineOSBuilds of a MachineOSConfig (and always the current one), and deletes
// the others with their pods, ConfigMaps and (PruneImages) images. When the current build
// succeeded, the MachineOSConfig's status is about to name its image: the image it names now
// does not keep itself (only the builds kept, nodes and pinned sets do).
func (r *BuildReconciler) pruneHistory(ctx context.Context, m *mosbv1.MachineOSConfig, plan *Plan, current string, currentSucceeded bool) error {
	builds, err := r.buildsOf(ctx, m.Name)
	if err != nil {
		return err
	}
	sort.Slice(builds, func(i, j int) bool { return createdBefore(&builds[j], &builds[i]) })
	kept := map[bool]int{}
	var doomed []mosbv1.MachineOSBuild
	for i := range builds {
		b := &builds[i]
		phase := Phase(b)
		if b.Name == current || !phase.Terminal() {
			continue
		}
		succeeded := phase == PhaseSucceeded
		limit := r.FailedHistory
		if succeeded {
			limit = r.SucceededHistory
		}
		if kept[succeeded] < limit {
			kept[succeeded]++
			continue
		}
		doomed = append(doomed, *b)
	}
	r.pruneImages(ctx, m, plan, doomed, currentSucceeded)
	for i := range doomed {
		b := &doomed[i]
		if err := r.cleanup(ctx, b, true); err != nil {
			return err
		}
		if err := r.Client.Delete(ctx, b); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting old MachineOSBuild %s: %w", b.Name, err)
		}
		ctrl.LoggerFrom(ctx).Info("history limit: deleted an old build", "machineosbuild", b.Name, "phase", Phase(b))
	}
	return nil
}

func noContentNote(a ArchPlan) string {
	if a.Selection.Source == "none" {
		return fmt.Sprintf("built without user content: no %s or noarch containerFile entry", a.Arch)
	}
	return ""
}

// joinNotes joins the non-empty notes of an architecture's status message.
func joinNotes(notes ...string) string {
	var out []string
	for _, n := range notes {
		if n != "" {
			out = append(out, n)
		}
	}
	return strings.Join(out, "; ")
}

func setArch(s *mosbv1.MachineOSBuildStatus, e mosbv1.ArchitectureBuild) {
	for i := range s.Architectures {
		if s.Architectures[i].Architecture == e.Architecture {
			s.Architectures[i] = e
			return
		}
	}
	s.Architectures = append(s.Architectures, e)
	sort.Slice(s.Architectures, func(i, j int) bool { return s.Architectures[i].Architecture < s.Architectures[j].Architecture })
}

// placeJob creates an architecture's build Job as placed, replacing old (when not nil): a Job
// whose pod no node has taken, placed otherwise. The Job and its pod go only as the cache saw the
// pod (same UID and resourceVersion): a pod that a scheduler bound meanwhile stays, and the next
// reconcile sees it.
func (r *BuildReconciler) placeJob(ctx context.Context, plan *Plan, a ArchPlan, b *mosbv1.MachineOSBuild, name string, old *batchv1.Job, oldPod *corev1.Pod, p Placement) error {
	log := ctrl.LoggerFrom(ctx).WithValues("job", name, "arch", a.Arch, "nodeSelector", p.NodeSelector)
	if old != nil {
		uid, rv := oldPod.UID, oldPod.ResourceVersion
		err := r.Client.Delete(ctx, oldPod, client.Preconditions{UID: &uid, ResourceVersion: &rv})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil // it changed or went meanwhile: the next reconcile sees how
		}
		if err != nil {
			return fmt.Errorf("deleting pod %s/%s to place it again: %w", oldPod.Namespace, oldPod.Name, err)
		}
		jobUID := old.UID
		err = r.Client.Delete(ctx, old, client.Preconditions{UID: &jobUID}, client.PropagationPolicy(metav1.DeletePropagationBackground))
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting Job %s/%s to place it again: %w", old.Namespace, old.Name, err)
		}
		// In the background: the Job itself is gone at once, and its name free for the new one.
		log.Info("moving a build Job whose pod no node has taken", "from", oldPod.Spec.NodeSelector)
		r.Recorder.Eventf(b, corev1.EventTypeNormal, ReasonPodMoved, "build pod %s of Job %s for %s had no node yet; placed again with node selector %v", oldPod.Name, name, a.Arch, p.NodeSelector)
	}
	created, err := r.createJob(ctx, plan, a, b, name, p)
	switch {
	case err != nil:
		return err
	case !created:
		// It was there already (the cache was behind); whoever made it said so.
	case p.Emulated:
		log.Info("build Job placed under emulation", "label", EmulationLabel(a.Arch), "message", p.Message)
		r.Recorder.Eventf(b, corev1.EventTypeNormal, ReasonEmulated, "%s: %s", name, p.Message)
	case p.Waiting:
		log.Info("build Job waits for a node", "message", p.Message)
		r.Recorder.Eventf(b, corev1.EventTypeWarning, ReasonNoSchedulableNode, "%s: %s", name, p.Message)
	}
	return nil
}

// createJob creates an architecture's request ConfigMap and build Job, and says whether the Job
// is new (false: it was there already).
func (r *BuildReconciler) createJob(ctx context.Context, plan *Plan, a ArchPlan, b *mosbv1.MachineOSBuild, name string, p Placement) (bool, error) {
	owner := metav1.NewControllerRef(b, mosbv1.GroupVersion.WithKind("MachineOSBuild"))
	var deadline *int64
	if r.BuildTimeout > 0 {
		s := int64(r.BuildTimeout.Seconds())
		deadline = &s
	}
	labels := map[string]string{
		LabelMachineOSConfig: b.Spec.MachineOSConfig.Name,
		LabelMachineOSBuild:  b.Name,
		LabelArch:            a.Arch,
	}
	if p.Emulated {
		labels[LabelEmulated] = "true"
	}
	resources := r.podResources(ctx, plan, a.Arch)
	// The build fields as `mosb render --request-dir` writes them; the pod's own around them.
	req := plan.BuildRequest(a)
	req.Name = name
	req.Namespace = r.Namespace
	req.Labels = labels
	req.Owner = *owner
	req.PullSecret = plan.PullSecretName
	req.PushSecret = plan.PushSecretName
	req.BuilderImage = r.BuilderImage
	req.RegistryBounds = r.RegistryBounds
	req.ActiveDeadlineSeconds = deadline
	req.HostNetwork = r.HostNetwork
	req.ServiceAccount = r.BuildServiceAccount
	req.NodeSelector = p.NodeSelector
	req.Resources = resources
	req.NodeStore = r.NodeStore
	cm, job, err := buildpod.JobObjects(req)
	if err != nil {
		return false, fmt.Errorf("building the Job of %s for %s: %w", b.Name, a.Arch, err)
	}
	if err := r.Client.Create(ctx, cm); err != nil && !apierrors.IsAlreadyExists(err) {
		return false, fmt.Errorf("creating ConfigMap %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	if secret := buildpod.ProxySecret(req); secret != nil {
		// The proxy's URLs may hold a password: the pod reads them from this Secret only.
		if err := r.Client.Create(ctx, secret); err != nil && !apierrors.IsAlreadyExists(err) {
			return false, fmt.Errorf("creating the proxy Secret %s/%s: %w", secret.Namespace, secret.Name, err)
		}
	}
	if err := r.Client.Create(ctx, job); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return false, nil
		}
		return false, fmt.Errorf("creating Job %s/%s: %w", job.Namespace, job.Name, err)
	}
	ctrl.LoggerFrom(ctx).Info("build Job created", "job", job.Name, "arch", a.Arch, "emulated", p.Emulated, "resources", describeResources(resources))
	return true, nil
}

// publish pushes the OCI index of a multi-architecture build (the single image is already tagged
// by its pod) with the push secret only.
func (r *BuildReconciler) publish(ctx context.Context, plan *Plan, results map[string]buildpod.Result) (string, error) {
	if len(results) == 1 {
		for _, res := range results {
			return res.Pullspec, nil
		}
	}
	manifests := make([]registry.IndexManifest, 0, len(results))
	for _, res := range results {
		manifests = append(manifests, registry.IndexManifest{Digest: res.Digest, Platform: res.Platform})
	}
	ctx, cancel := context.WithTimeout(ctx, r.registryTimeout())
	defer cancel()
	ref, err := r.pushClient(plan).PushIndex(ctx, plan.Target, manifests)
	if err != nil {
		return "", err
	}
	return ref.String(), nil
}

func (r *BuildReconciler) pushClient(plan *Plan) *registry.Client {
	return registry.NewClient(registry.WithKeychain(plan.PushAuths.Keychain()), registry.WithConfig(plan.Config), registry.WithBounds(r.RegistryBounds))
}

// imageExists asks the registry it was pushed to, with the push credentials (they can read what
// they pushed). The pull mirrors do not apply: a NeverContactSource mirror set for the push
// repository would otherwise send the question to a mirror that never received the image.
func (r *BuildReconciler) imageExists(ctx context.Context, plan *Plan, pullspec string) (bool, error) {
	cfg, err := plan.Registry.PushConfig()
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.registryTimeout())
	defer cancel()
	return registry.NewClient(registry.WithKeychain(plan.PushAuths.Keychain()), registry.WithConfig(cfg.WithNetworkOf(plan.Config)), registry.WithBounds(r.RegistryBounds)).DigestExists(ctx, pullspec)
}

// DefaultRegistryTimeout bounds each registry operation of the controller (checking an image,
// pushing an index), retries included: a registry that accepts connections and never answers
// must not hold one of the controller's workers.
const DefaultRegistryTimeout = 30 * time.Second

func (r *BuildReconciler) registryTimeout() time.Duration {
	if r.RegistryTimeout > 0 {
		return r.RegistryTimeout
	}
	return DefaultRegistryTimeout
}

// registryProblem is the reason and the message of a failed registry call that may pass: a
// registry that did not answer in time, or one that answered with an error.
func (r *BuildReconciler) registryProblem(err error) (reason, message string) {
	if errors.Is(err, context.DeadlineExceeded) {
		return ReasonRegistryUnresponsive, fmt.Sprintf("no answer within %s (%v); check that the registry is up and that the controller reaches it (--registry-timeout sets the bound)", r.registryTimeout(), err)
	}
	if _, ok := bounds.AsUnresponsive(err); ok {
		// The message names the registry, the operation, the bound and its flag.
		return ReasonRegistryUnresponsive, err.Error()
	}
	return ReasonRegistryError, err.Error()
}

// supersede ends a build of older inputs: its pods go, and it says why.
func (r *BuildReconciler) supersede(ctx context.Context, b *mosbv1.MachineOSBuild) error {
	if err := r.cleanup(ctx, b, false); err != nil {
		return err
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		fresh := &mosbv1.MachineOSBuild{}
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(b), fresh); err != nil {
			return client.IgnoreNotFound(err)
		}
		if Phase(fresh).Terminal() {
			return nil
		}
		SetBuildPhase(fresh, PhaseInterrupted, ReasonSuperseded, "the MachineOSConfig's inputs changed; a newer build replaces this one", metav1.NewTime(r.now()))
		if err := r.Client.Status().Update(ctx, fresh); err != nil {
			return err
		}
		r.Recorder.Event(fresh, corev1.EventTypeNormal, ReasonSuperseded, "superseded by a build of newer inputs")
		r.metrics().ended(fresh, ReasonSuperseded)
		ctrl.LoggerFrom(ctx).Info("build superseded", "machineosbuild", fresh.Name)
		return nil
	})
}

// cleanup deletes a build's pods (which stops a running one: its Job, with no retry of its own,
// fails), request ConfigMaps and proxy Secrets, and its Jobs too when jobs is set. An ended
// attempt keeps its Job, a few hundred bytes, as the record `kubectl get jobs` and v1's
// status.builder show, until its MachineOSBuild goes; its pod goes at once, with the node disk its
// build used.
func (r *BuildReconciler) cleanup(ctx context.Context, b *mosbv1.MachineOSBuild, jobs bool) error {
	sel := client.MatchingLabels{LabelMachineOSBuild: b.Name}
	ns := client.InNamespace(r.Namespace)
	if jobs {
		if err := r.Client.DeleteAllOf(ctx, &batchv1.Job{}, ns, sel, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
			return fmt.Errorf("deleting the Jobs of %s: %w", b.Name, err)
		}
	}
	if err := r.Client.DeleteAllOf(ctx, &corev1.Pod{}, ns, sel, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
		return fmt.Errorf("deleting the pods of %s: %w", b.Name, err)
	}
	if err := r.Client.DeleteAllOf(ctx, &corev1.ConfigMap{}, ns, sel); err != nil {
		return fmt.Errorf("deleting the request ConfigMaps of %s: %w", b.Name, err)
	}
	// Proxy Secrets one by one (RBAC: delete, not deletecollection, on secrets): only those the
	// build's label and name say are ours.
	secrets := &corev1.SecretList{}
	if err := r.Client.List(ctx, secrets, ns, sel); err != nil {
		return fmt.Errorf("listing the proxy Secrets of %s: %w", b.Name, err)
	}
	for i := range secrets.Items {
		s := &secrets.Items[i]
		if !strings.HasSuffix(s.Name, "-proxy") || !metav1.IsControlledBy(s, b) {
			continue
		}
		if err := r.Client.Delete(ctx, s); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting the proxy Secret %s: %w", s.Name, err)
		}
	}
	return nil
}

// writeConfigStatus writes the MachineOSConfig's conditions (and the image and the MachineOSBuild
// that made it, once built), and says whether anything changed.
func (r *BuildReconciler) writeConfigStatus(ctx context.Context, m *mosbv1.MachineOSConfig, c ConfigConditions, pullspec, build string) (bool, error) {
	changed := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		fresh := &mosbv1.MachineOSConfig{}
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(m), fresh); err != nil {
			return client.IgnoreNotFound(err)
		}
		before := fresh.Status.DeepCopy()
		for _, cond := range []metav1.Condition{c.Ready, c.Building, c.Degraded} {
			cond.ObservedGeneration = fresh.Generation
			meta.SetStatusCondition(&fresh.Status.Conditions, cond)
		}
		if pullspec != "" {
			fresh.Status.CurrentImagePullspec = mosbv1.ImageDigestFormat(pullspec)
			// v1's status names the build of the current image.
			fresh.Status.MachineOSBuild = &mosbv1.ObjectReference{Group: mosbv1.GroupVersion.Group, Resource: "machineosbuilds", Name: build}
		}
		fresh.Status.ObservedGeneration = fresh.Generation
		if equalStatus(before, &fresh.Status) {
			changed = false
			return nil
		}
		changed = true
		return r.Client.Status().Update(ctx, fresh)
	})
	return changed, err
}

func equalStatus(a, b *mosbv1.MachineOSConfigStatus) bool {
	if a.CurrentImagePullspec != b.CurrentImagePullspec || a.ObservedGeneration != b.ObservedGeneration || len(a.Conditions) != len(b.Conditions) ||
		!ptrEq(a.MachineOSBuild, b.MachineOSBuild) {
		return false
	}
	for _, c := range a.Conditions {
		o := meta.FindStatusCondition(b.Conditions, c.Type)
		if o == nil || o.Status != c.Status || o.Reason != c.Reason || o.Message != c.Message || o.ObservedGeneration != c.ObservedGeneration {
			return false
		}
	}
	return true
}

func (r *BuildReconciler) logOnce(ctx context.Context, key, msg string) {
	if _, loaded := r.logged.LoadOrStore(key, true); !loaded {
		ctrl.LoggerFrom(ctx).Info(msg)
	}
}
