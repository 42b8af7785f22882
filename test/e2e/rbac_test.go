package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/test/harness"
)

// The controller's namespace and identity in deploy/base.
const (
	mosbNamespace      = "mosb-system"
	mosbServiceAccount = "system:serviceaccount:" + mosbNamespace + ":mosb"
)

// TestRBACOfDeployBaseIsEnoughForABuild runs the controller as deploy/base's ServiceAccount (its
// kubeconfig impersonates it), in mosb-system, with --leader-elect and --pin-images, on an API
// server that enforces owner-reference permissions as OpenShift's does: a MachineOSConfig is
// built, its digest reaches status, its images are pinned, and nothing the controller tried was
// forbidden. test/integration/rbac_test.go checks the other direction (nothing more is allowed).
func TestRBACOfDeployBaseIsEnoughForABuild(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{
		namespace:            mosbNamespace,
		controlPlane:         []harness.ControlPlaneOption{enforceOwnerReferencePermissions},
		controllerKubeconfig: asMosbServiceAccount,
		// The conversion webhook too: its Secret and the CRDs' conversion settings are written
		// with these rules.
		controllerArgs: append([]string{"--leader-elect", "--pin-images"}, harness.ConversionWebhookArgs(t)...),
	})
	ctx := t.Context()

	eventually(t, time.Minute, "the controller to hold the Lease", func(ctx context.Context) (bool, error) {
		lease := &coordinationv1.Lease{}
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: mosbNamespace, Name: "mosb-controller"}, lease); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return lease.Spec.HolderIdentity != nil && strings.Contains(e.ctrl.logs(), acquired), nil
	})

	if err := e.c.Create(ctx, e.newMOSC("worker", "RUN echo rbac > /etc/rbac")); err != nil {
		t.Fatal(err)
	}
	m := e.waitReady("worker")
	target := e.reg.Host + "/os/worker:latest"
	if want := e.reg.Host + "/os/worker@" + e.servedDigest(target); string(m.Status.CurrentImagePullspec) != want {
		t.Errorf("status.currentImagePullspec = %s, the registry serves %s", m.Status.CurrentImagePullspec, want)
	}
	if m.Spec.BuildInputs.ReleaseVersion != "4.16.0-e2e" {
		t.Errorf("releaseVersion was not populated (a patch of the MachineOSConfig): %q", m.Spec.BuildInputs.ReleaseVersion)
	}
	builds := e.builds(ctx, "worker")
	if len(builds) != 1 || pipeline.Phase(&builds[0]) != pipeline.PhaseSucceeded ||
		builds[0].Status.DigestedImagePushspec != string(m.Status.CurrentImagePullspec) {
		t.Fatalf("want one Succeeded MachineOSBuild with the digest, got %+v", builds)
	}
	// --pin-images: a PinnedImageSet created and the pool patched to reference it.
	e.waitPinned(pipeline.PinnedImageSetName(poolName), string(m.Status.CurrentImagePullspec), e.base)
	// The build's pod and request ConfigMap are removed with it (deletecollection).
	eventually(t, time.Minute, "the build's pods and ConfigMaps in "+mosbNamespace+" gone", func(ctx context.Context) (bool, error) {
		sel := client.MatchingLabels{pipeline.LabelMachineOSConfig: "worker"}
		pods, cms := &corev1.PodList{}, &corev1.ConfigMapList{}
		if err := e.c.List(ctx, pods, client.InNamespace(mosbNamespace), sel); err != nil {
			return false, err
		}
		if err := e.c.List(ctx, cms, client.InNamespace(mosbNamespace), sel); err != nil {
			return false, err
		}
		return len(pods.Items) == 0 && len(cms.Items) == 0, nil
	})

	// Events are written where client-go puts them: the MachineOSConfig's (cluster-scoped) in
	// "default", the Lease's in mosb-system. A refused Event is only logged, so look for them.
	eventually(t, 30*time.Second, "Events about the MachineOSConfig and the Lease", func(ctx context.Context) (bool, error) {
		return hasEvent(ctx, e.c, "default", "MachineOSConfig", "BuildStarted") &&
			hasEvent(ctx, e.c, mosbNamespace, "Lease", "LeaderElection"), nil
	})

	// Every refusal shows up in the controller's log (informers, writes, Events): there is none.
	if log := e.ctrl.logs(); strings.Contains(log, "forbidden") {
		t.Errorf("the controller was refused something:\n%s", forbiddenLines(log))
	}
}

// asMosbServiceAccount applies deploy/base and returns a kubeconfig with the admin's
// certificate that impersonates deploy/base's ServiceAccount: every request the controller makes
// is authorized as that ServiceAccount's.
func asMosbServiceAccount(e *env) string {
	t := e.t
	t.Helper()
	kubectl := filepath.Join(e.cp.Assets, "kubectl")
	deploy := filepath.Join(harness.RepoRoot(), "deploy", "base")
	if out, err := exec.CommandContext(t.Context(), kubectl, "--kubeconfig", e.cp.Kubeconfig, "apply", "-k", deploy).CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply -k deploy/base: %v\n%s", err, out)
	}
	cfg, err := clientcmd.LoadFromFile(e.cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, user := range cfg.AuthInfos {
		user.Impersonate = mosbServiceAccount
	}
	path := filepath.Join(t.TempDir(), "kubeconfig-mosb-sa")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// enforceOwnerReferencePermissions turns on the admission plugin OpenShift runs and plain
// clusters do not: setting an owner reference needs delete on the object, and
// blockOwnerDeletion needs update on the owner's finalizers.
func enforceOwnerReferencePermissions(env *envtest.Environment) {
	env.ControlPlane.GetAPIServer().Configure().Append("enable-admission-plugins", "OwnerReferencesPermissionEnforcement")
}

func hasEvent(ctx context.Context, c client.Client, namespace, kind, reason string) bool {
	events := &corev1.EventList{}
	if err := c.List(ctx, events, client.InNamespace(namespace)); err != nil {
		return false
	}
	for _, ev := range events.Items {
		if ev.InvolvedObject.Kind == kind && ev.Reason == reason {
			return true
		}
	}
	return false
}

func forbiddenLines(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "forbidden") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
