package pipeline

import (
	"context"
	"fmt"
	"sort"

	configv1 "github.com/openshift/api/config/v1"
	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/registry"
)

// Extra input-failure reasons that only exist in a cluster.
const (
	ReasonRenderedMachineConfigNotFound = "RenderedMachineConfigNotFound"
)

// ImageConfigName is the one Image config object, and TrustedCANamespace holds the ConfigMap it
// names in spec.additionalTrustedCA.
const (
	ImageConfigName    = "cluster"
	TrustedCANamespace = "openshift-config"
	archLabel          = "kubernetes.io/arch"
)

// gatherInputs reads everything a MachineOSConfig's build is made of. A *Failure is input the
// user must fix; an error is the cluster failing to answer (retried).
func (r *BuildReconciler) gatherInputs(ctx context.Context, m *mosbv1.MachineOSConfig) (Inputs, *Failure, error) {
	in := Inputs{
		MachineOSConfig: m, Namespace: r.Namespace, DefaultArch: r.DefaultArch, BuilderVersion: r.BuilderVersion,
		BuildResources: r.BuildResources,
	}
	obj := "MachineOSConfig " + m.Name

	pool := &mcfgv1.MachineConfigPool{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: m.Spec.MachineConfigPool.Name}, pool); err != nil {
		switch {
		case apierrors.IsNotFound(err):
			return in, fail(ReasonPoolNotFound, err, "%s: MachineConfigPool %s not found; create it or fix spec.machineConfigPool.name", obj, m.Spec.MachineConfigPool.Name), nil
		case meta.IsNoMatchError(err):
			return in, fail(ReasonPoolNotFound, err, "%s: the MachineConfigPool API is not installed in this cluster, so pool %s cannot exist", obj, m.Spec.MachineConfigPool.Name), nil
		default:
			return in, nil, err
		}
	}

	in.Pool = pool
	if rendered := renderedConfigName(pool); rendered != "" {
		mc := &mcfgv1.MachineConfig{}
		err := r.Client.Get(ctx, types.NamespacedName{Name: rendered}, mc)
		switch {
		case err == nil:
			in.RenderedMachineConfig = mc
		case meta.IsNoMatchError(err):
			r.logOnce(ctx, "no-machineconfig-api", "the MachineConfig API is not installed; images are built without /etc/machine-config-daemon/currentconfig")
		case apierrors.IsNotFound(err):
			return in, fail(ReasonRenderedMachineConfigNotFound, err, "%s: MachineConfigPool %s names rendered MachineConfig %s, which does not exist; wait for the pool to render it", obj, pool.Name, rendered), nil
		default:
			return in, nil, err
		}
	}

	arches, err := r.poolArches(ctx, pool)
	if err != nil {
		return in, nil, err
	}
	in.Arches = arches

	cm := &corev1.ConfigMap{}
	switch err := r.Client.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: OSImageURLConfigMap}, cm); {
	case err == nil:
		in.OSImageURL = cm.Data
	case !apierrors.IsNotFound(err):
		return in, nil, err
	}

	for _, s := range []struct {
		name string
		into **corev1.Secret
	}{{m.Spec.BuildInputs.BaseImagePullSecret.Name, &in.PullSecret}, {m.Spec.BuildInputs.RenderedImagePushSecret.Name, &in.PushSecret}} {
		secret := &corev1.Secret{}
		switch err := r.Client.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: s.name}, secret); {
		case err == nil:
			*s.into = secret
		case !apierrors.IsNotFound(err):
			return in, nil, err
		}
	}

	if in.RunMounts, err = r.runMounts(ctx); err != nil {
		return in, nil, err
	}

	f, err := r.gatherClusterConfig(ctx, obj, &in)
	return in, f, err
}

// runMounts are the mounts of the run-mount objects the build namespace has.
func (r *BuildReconciler) runMounts(ctx context.Context) ([]buildpod.RunMount, error) {
	var failed error
	exists := func(obj client.Object) func(string) bool {
		return func(name string) bool {
			err := r.Client.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: name}, obj)
			if err != nil && !apierrors.IsNotFound(err) && failed == nil {
				failed = err
			}
			return err == nil
		}
	}
	mounts := r.RunMountNames.RunMounts(exists(&corev1.Secret{}), exists(&corev1.ConfigMap{}))
	return mounts, failed
}

func renderedConfigName(pool *mcfgv1.MachineConfigPool) string {
	if pool.Spec.Configuration.Name != "" {
		return pool.Spec.Configuration.Name
	}
	return pool.Status.Configuration.Name
}

// poolArches are the architectures of the pool's nodes (none when it has no nodes yet).
func (r *BuildReconciler) poolArches(ctx context.Context, pool *mcfgv1.MachineConfigPool) ([]string, error) {
	if pool.Spec.NodeSelector == nil {
		return nil, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(pool.Spec.NodeSelector)
	if err != nil {
		return nil, nil //nolint:nilerr // an unusable selector selects no node; the pool's own controller reports it
	}
	nodes := &corev1.NodeList{}
	if err := r.Client.List(ctx, nodes, client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, n := range nodes.Items {
		if a := n.Labels[archLabel]; a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	sort.Strings(out)
	return out, nil
}

// placer decides build pods' placements (Place) from the cluster's nodes, listed from the cache
// once, the first time it is asked: most reconciles place no pod.
func (r *BuildReconciler) placer(ctx context.Context) func(arch string) (Placement, error) {
	var nodes *corev1.NodeList
	return func(arch string) (Placement, error) {
		if nodes == nil {
			list := &corev1.NodeList{}
			if err := r.Client.List(ctx, list); err != nil {
				return Placement{}, fmt.Errorf("listing nodes to place the %s build pod: %w", arch, err)
			}
			nodes = list
		}
		return Place(arch, nodes.Items, r.AllowEmulation), nil
	}
}

func (r *BuildReconciler) gatherClusterConfig(ctx context.Context, obj string, in *Inputs) (*Failure, error) {
	img := &configv1.Image{}
	switch err := r.Client.Get(ctx, types.NamespacedName{Name: ImageConfigName}, img); {
	case err == nil:
		in.Cluster.Image = img
		var f *Failure
		var err error
		if in.Cluster.AdditionalTrustedCA, f, err = r.trustedCA(ctx, obj, "image", "additionalTrustedCA", img.Spec.AdditionalTrustedCA.Name); f != nil || err != nil {
			return f, err
		}
	case meta.IsNoMatchError(err):
		r.logOnce(ctx, "no-image-api", "the Image config API is not installed; no registry policy applies")
	case !apierrors.IsNotFound(err):
		return nil, err
	}

	proxy := &configv1.Proxy{}
	switch err := r.Client.Get(ctx, types.NamespacedName{Name: registry.ProxyName}, proxy); {
	case err == nil:
		in.Cluster.Proxy = proxy
		var f *Failure
		var err error
		if in.Cluster.ProxyTrustedCA, f, err = r.trustedCA(ctx, obj, "proxy", "trustedCA", proxy.Spec.TrustedCA.Name); f != nil || err != nil {
			return f, err
		}
	case meta.IsNoMatchError(err):
		r.logOnce(ctx, "no-proxy-api", "the Proxy config API is not installed; builds use no cluster proxy")
	case !apierrors.IsNotFound(err):
		return nil, err
	}

	idms := &configv1.ImageDigestMirrorSetList{}
	if ok, err := r.listOptional(ctx, idms, "ImageDigestMirrorSet"); err != nil {
		return nil, err
	} else if ok {
		in.Cluster.ImageDigestMirrorSets = idms.Items
	}
	itms := &configv1.ImageTagMirrorSetList{}
	if ok, err := r.listOptional(ctx, itms, "ImageTagMirrorSet"); err != nil {
		return nil, err
	} else if ok {
		in.Cluster.ImageTagMirrorSets = itms.Items
	}
	icps := &configv1.ImageContentPolicyList{}
	if ok, err := r.listOptional(ctx, icps, "ImageContentPolicy"); err != nil {
		return nil, err
	} else if ok {
		in.Cluster.ImageContentPolicies = icps.Items
	}
	return nil, nil
}

// trustedCA reads the ConfigMap of openshift-config that a cluster config object (kind: image or
// proxy) names in field; nil when it names none.
func (r *BuildReconciler) trustedCA(ctx context.Context, obj, kind, field, name string) (*corev1.ConfigMap, *Failure, error) {
	if name == "" {
		return nil, nil, nil
	}
	cm := &corev1.ConfigMap{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: TrustedCANamespace, Name: name}, cm)
	switch {
	case err == nil:
		return cm, nil, nil
	case apierrors.IsNotFound(err):
		return nil, fail(ReasonInvalidClusterConfig, err, "%s cannot be built: %s.config.openshift.io/cluster names %s ConfigMap %s, which does not exist in %s; create it or clear spec.%s",
			obj, kind, field, name, TrustedCANamespace, field), nil
	default:
		return nil, nil, err
	}
}

func (r *BuildReconciler) listOptional(ctx context.Context, list client.ObjectList, kind string) (bool, error) {
	err := r.Client.List(ctx, list)
	switch {
	case err == nil:
		return true, nil
	case meta.IsNoMatchError(err):
		r.logOnce(ctx, "no-"+kind, fmt.Sprintf("the %s API is not installed; no %s applies", kind, kind))
		return false, nil
	default:
		return false, err
	}
}
