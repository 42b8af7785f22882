package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mosb-dev/mosb/test/harness"
)

// The controller's identity in deploy/base.
const (
	mosbNamespace      = "mosb-system"
	mosbServiceAccount = "system:serviceaccount:" + mosbNamespace + ":mosb"
)

// Resources as `kubectl auth can-i` names them (resource.group).
const (
	rMOSC    = "machineosconfigs.machineconfiguration.openshift.io"
	rMOSB    = "machineosbuilds.machineconfiguration.openshift.io"
	rPool    = "machineconfigpools.machineconfiguration.openshift.io"
	rMC      = "machineconfigs.machineconfiguration.openshift.io"
	rPinned  = "pinnedimagesets.machineconfiguration.openshift.io"
	rImage   = "images.config.openshift.io"
	rIDMS    = "imagedigestmirrorsets.config.openshift.io"
	rICP     = "imagecontentpolicies.config.openshift.io"
	rITMS    = "imagetagmirrorsets.config.openshift.io"
	rProxy   = "proxies.config.openshift.io"
	rCRD     = "customresourcedefinitions.apiextensions.k8s.io"
	rLease   = "leases.coordination.k8s.io"
	rJob     = "jobs.batch"
	rCRole   = "clusterroles.rbac.authorization.k8s.io"
	rCRB     = "clusterrolebindings.rbac.authorization.k8s.io"
	rRole    = "roles.rbac.authorization.k8s.io"
	rRB      = "rolebindings.rbac.authorization.k8s.io"
	allNS    = "*" // cluster-wide: every namespace
	noNS     = ""  // a cluster-scoped resource
	trustNS  = "openshift-config"
	eventsNS = "default" // where Events about cluster-scoped objects land
)

// access is one `kubectl auth can-i` question.
type access struct {
	verb, resource, subresource, namespace string
}

func (a access) String() string {
	s := a.verb + " " + a.resource
	if a.subresource != "" {
		s += "/" + a.subresource
	}
	switch a.namespace {
	case noNS:
	case allNS:
		s += " in all namespaces"
	default:
		s += " in " + a.namespace
	}
	return s
}

// The controller's needs, each from a call in pipeline/ or cmd/mosb/controller.go.
var controllerNeeds = []access{
	// Build Jobs: create, watch, direct get, delete (placed again), deletecollection by label; only
	// in the build namespace.
	{"create", rJob, "", mosbNamespace},
	{"delete", rJob, "", mosbNamespace},
	{"get", rJob, "", mosbNamespace},
	{"list", rJob, "", mosbNamespace},
	{"watch", rJob, "", mosbNamespace},
	{"deletecollection", rJob, "", mosbNamespace},
	// Their pods: watch, direct get (the controller's own), delete (placed again),
	// deletecollection by label.
	{"delete", "pods", "", mosbNamespace},
	{"get", "pods", "", mosbNamespace},
	{"list", "pods", "", mosbNamespace},
	{"watch", "pods", "", mosbNamespace},
	{"deletecollection", "pods", "", mosbNamespace},
	// Request ConfigMaps and machine-config-osimageurl.
	{"create", "configmaps", "", mosbNamespace},
	{"get", "configmaps", "", mosbNamespace},
	{"list", "configmaps", "", mosbNamespace},
	{"watch", "configmaps", "", mosbNamespace},
	{"deletecollection", "configmaps", "", mosbNamespace},
	// Pull and push secrets.
	{"get", "secrets", "", mosbNamespace},
	{"list", "secrets", "", mosbNamespace},
	{"watch", "secrets", "", mosbNamespace},
	// Build pods' proxy Secrets, the webhook certificate Secret (a resource/name is a resourceNames rule).
	{"create", "secrets", "", mosbNamespace},
	{"delete", "secrets", "", mosbNamespace},
	{"update", "secrets/mosb-webhook-cert", "", mosbNamespace},
	// The conversion webhook's CA bundle and address in mosb's CRDs.
	{"get", rCRD + "/machineosconfigs.machineconfiguration.openshift.io", "", noNS},
	{"patch", rCRD + "/machineosconfigs.machineconfiguration.openshift.io", "", noNS},
	{"get", rCRD + "/machineosbuilds.machineconfiguration.openshift.io", "", noNS},
	{"patch", rCRD + "/machineosbuilds.machineconfiguration.openshift.io", "", noNS},
	// additionalTrustedCA.
	{"get", "configmaps", "", trustNS},
	{"list", "configmaps", "", trustNS},
	{"watch", "configmaps", "", trustNS},
	// MachineOSConfigs: watched, patched (releaseVersion, rebuild annotation), status written.
	{"get", rMOSC, "", noNS},
	{"list", rMOSC, "", noNS},
	{"watch", rMOSC, "", noNS},
	{"patch", rMOSC, "", noNS},
	{"update", rMOSC, "status", noNS},
	{"update", rMOSC, "finalizers", noNS},
	// MachineOSBuilds.
	{"create", rMOSB, "", noNS},
	{"delete", rMOSB, "", noNS},
	{"list", rMOSB, "", noNS},
	{"watch", rMOSB, "", noNS},
	{"update", rMOSB, "status", noNS},
	{"update", rMOSB, "finalizers", noNS},
	// Build inputs.
	{"list", "nodes", "", noNS},
	{"watch", "nodes", "", noNS},
	{"list", rPool, "", noNS},
	{"watch", rPool, "", noNS},
	{"get", rMC, "", noNS},
	{"list", rMC, "", noNS},
	{"watch", rMC, "", noNS},
	{"get", rImage, "", noNS},
	{"watch", rImage, "", noNS},
	{"get", rProxy, "", noNS},
	{"list", rProxy, "", noNS},
	{"watch", rProxy, "", noNS},
	{"list", rIDMS, "", noNS},
	{"watch", rIDMS, "", noNS},
	{"list", rICP, "", noNS},
	{"watch", rICP, "", noNS},
	{"list", rITMS, "", noNS},
	{"watch", rITMS, "", noNS},
	// The pinnedimages controller.
	{"patch", rPool, "", noNS},
	// The poolstatus controller: ImageBuildDegraded.
	{"patch", rPool, "status", noNS},
	{"create", rPinned, "", noNS},
	{"update", rPinned, "", noNS},
	{"delete", rPinned, "", noNS},
	{"watch", rPinned, "", noNS},
	// --leader-elect.
	{"create", rLease, "", mosbNamespace},
	{"get", rLease + "/mosb-controller", "", mosbNamespace},
	{"update", rLease + "/mosb-controller", "", mosbNamespace},
	// Events: on the Lease (its namespace) and on cluster-scoped objects ("default").
	{"create", "events", "", mosbNamespace},
	{"patch", "events", "", mosbNamespace},
	{"create", "events", "", eventsNS},
	{"patch", "events", "", eventsNS},
}

// What the controller must not be able to do.
var controllerMustNot = []access{
	// Other CRDs, other Secrets.
	{"patch", rCRD + "/machineconfigs.machineconfiguration.openshift.io", "", noNS},
	{"patch", rCRD, "", noNS},
	{"update", "secrets/push", "", mosbNamespace},
	// Secrets: readable in the build namespace only, and never writable.
	{"get", "secrets", "", "kube-system"},
	{"get", "secrets", "", "default"},
	{"list", "secrets", "", "default"},
	{"get", "secrets", "", trustNS},
	{"list", "secrets", "", allNS},
	{"watch", "secrets", "", allNS},
	{"update", "secrets", "", mosbNamespace},
	{"patch", "secrets", "", mosbNamespace},
	{"deletecollection", "secrets", "", mosbNamespace},
	// Pods: the Job controller makes them; only in the build namespace, and no way into them.
	{"create", "pods", "", mosbNamespace},
	{"update", rJob, "", mosbNamespace},
	{"create", rJob, "", "default"},
	{"create", rJob, "", allNS},
	{"list", rJob, "", allNS},
	{"create", "pods", "", "default"},
	{"create", "pods", "", "kube-system"},
	{"create", "pods", "", trustNS},
	{"create", "pods", "", allNS},
	{"list", "pods", "", allNS},
	{"delete", "pods", "", "default"},
	{"create", "pods", "exec", mosbNamespace},
	{"create", "pods", "attach", mosbNamespace},
	{"create", "serviceaccounts", "token", mosbNamespace},
	// The trusted CA ConfigMap is only read.
	{"create", "configmaps", "", trustNS},
	{"update", "configmaps", "", trustNS},
	{"patch", "configmaps", "", trustNS},
	{"delete", "configmaps", "", trustNS},
	{"get", "configmaps", "", "kube-system"},
	{"create", "configmaps", "", "default"},
	// Nodes and the other build inputs are only read.
	{"delete", "nodes", "", noNS},
	{"patch", "nodes", "", noNS},
	{"update", "nodes", "", noNS},
	{"update", rMC, "", noNS},
	{"delete", rMC, "", noNS},
	{"update", rPool, "", noNS},
	{"update", rPool, "status", noNS},
	{"delete", rPool, "", noNS},
	{"update", rImage, "", noNS},
	{"patch", rIDMS, "", noNS},
	// Users' MachineOSConfigs are never deleted or replaced; MachineOSBuild specs are immutable.
	{"delete", rMOSC, "", noNS},
	{"create", rMOSC, "", noNS},
	{"update", rMOSB, "", noNS},
	// No escalation: no RBAC writes, no bind/escalate, no impersonation.
	{"create", rCRole, "", noNS},
	{"create", rCRB, "", noNS},
	{"escalate", rCRole, "", noNS},
	{"bind", rCRole, "", noNS},
	{"create", rRole, "", mosbNamespace},
	{"create", rRB, "", mosbNamespace},
	{"create", rRB, "", trustNS},
	{"impersonate", "serviceaccounts", "", mosbNamespace},
	{"impersonate", "users", "", noNS},
	// Another Lease, Events elsewhere.
	{"update", rLease + "/kube-controller-manager", "", "kube-system"},
	{"update", rLease + "/another-controller", "", mosbNamespace},
	{"create", rLease, "", "kube-system"},
	{"create", "events", "", "kube-system"},
	{"create", "namespaces", "", noNS},
}

// TestRBACGrantsTheControllerWhatItNeedsAndNoMore applies deploy/local on a fresh control plane,
// then deploy/base over it (as on OpenShift, where openshift-config exists), and asks the API
// server, as the controller's ServiceAccount, about each thing the controller does and about
// what it must never be able to do. test/e2e/rbac_test.go runs a whole build with these rules.
func TestRBACGrantsTheControllerWhatItNeedsAndNoMore(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs kube-apiserver + etcd (run without -short)")
	}
	// A control plane of its own: the manifests create cluster-wide objects and namespaces.
	cp := harness.StartControlPlane(t)
	ctx := testContext(t)
	kubectl := kubectlIn(cp.Assets)
	for _, args := range [][]string{
		{"apply", "-k", deployDir("local")},
		{"apply", "-k", deployDir("base")},
		// The example's objects are valid for the API server (CRD schema, secret type).
		{"apply", "-k", deployDir("examples"), "--dry-run=server"},
	} {
		if out, err := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", cp.Kubeconfig}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	for _, tc := range []struct {
		name string
		want bool
		list []access
	}{{"can", true, controllerNeeds}, {"cannot", false, controllerMustNot}} {
		t.Run(tc.name, func(t *testing.T) {
			for _, a := range tc.list {
				t.Run(a.String(), func(t *testing.T) {
					t.Parallel()
					got, err := canI(ctx, kubectl, cp.Kubeconfig, mosbServiceAccount, a)
					if err != nil {
						t.Fatal(err)
					}
					if got != tc.want {
						t.Errorf("%s may %s: %v, want %v", mosbServiceAccount, a, got, tc.want)
					}
				})
			}
		})
	}
}

// canI asks `kubectl auth can-i` as the user and reads its answer: exit code 0 and "yes", or
// exit code 1 and "no". Anything else, or a resource the server does not know (a typo in the
// table would otherwise read as a harmless "no"), is an error.
func canI(ctx context.Context, kubectl, kubeconfig, as string, a access) (bool, error) {
	args := []string{"--kubeconfig", kubeconfig, "auth", "can-i", "--as", as, a.verb, a.resource}
	if a.subresource != "" {
		args = append(args, "--subresource", a.subresource)
	}
	switch a.namespace {
	case noNS:
	case allNS:
		args = append(args, "--all-namespaces")
	default:
		args = append(args, "--namespace", a.namespace)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, kubectl, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	answer := strings.TrimSpace(stdout.String())
	if strings.Contains(stderr.String(), "doesn't have a resource type") {
		return false, fmt.Errorf("kubectl %s: the question is wrong: %s", strings.Join(args[2:], " "), stderr.String())
	}
	var exit *exec.ExitError
	switch {
	case err == nil && answer == "yes":
		return true, nil
	case errors.As(err, &exit) && exit.ExitCode() == 1 && answer == "no":
		return false, nil
	default:
		return false, fmt.Errorf("kubectl %s: %v: stdout %q, stderr %q", strings.Join(args[2:], " "), err, answer, stderr.String())
	}
}

// TestRBACDeployManifestsRender checks what deploy/base and deploy/local render: the controller
// Deployment as the API server will see it, and RBAC without wildcards, secrets and pods only
// in the build namespace.
func TestRBACDeployManifestsRender(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs kubectl (run without -short)")
	}
	kubectl := kubectlIn(harness.KubeAssets(t))
	base := render(t, kubectl, "base")
	local := render(t, kubectl, "local")

	if find(base, "Namespace", "", "openshift-config") != nil {
		t.Error("deploy/base creates the namespace openshift-config: `kubectl delete -k deploy/base` would delete OpenShift's")
	}
	if find(local, "Namespace", "", "openshift-config") == nil {
		t.Error("deploy/local does not create the namespace openshift-config")
	}
	ns := find(base, "Namespace", "", mosbNamespace)
	if ns == nil || ns.GetLabels()["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("namespace %s is missing or not labelled pod-security.kubernetes.io/enforce=privileged: %v", mosbNamespace, ns)
	}
	if find(base, "ServiceAccount", mosbNamespace, "mosb") == nil {
		t.Errorf("no ServiceAccount mosb in %s", mosbNamespace)
	}
	// The build pods' (--build-service-account): no token, and no binding in deploy/base.
	if sa := find(base, "ServiceAccount", mosbNamespace, "mosb-build"); sa == nil || sa.Object["automountServiceAccountToken"] != false {
		t.Errorf("no ServiceAccount mosb-build in %s without a token: %v", mosbNamespace, sa)
	}
	for _, o := range base {
		if (o.GetKind() == "RoleBinding" || o.GetKind() == "ClusterRoleBinding") && strings.Contains(fmt.Sprint(o.Object["subjects"]), "name:mosb-build ") {
			t.Errorf("%s %s grants the build pods' ServiceAccount something: builds make no API call", o.GetKind(), o.GetName())
		}
	}
	for _, name := range []string{rMOSC, rMOSB} {
		if find(base, "CustomResourceDefinition", "", name) == nil {
			t.Errorf("deploy/base lacks the CRD %s", name)
		}
	}

	d := deployment(t, base)
	c := controllerContainer(t, d)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Template.Spec.ServiceAccountName != "mosb" {
		t.Errorf("replicas %v, serviceAccountName %q; want 1, mosb", d.Spec.Replicas, d.Spec.Template.Spec.ServiceAccountName)
	}
	if c.Image != "mosb:dev" || !slices.Equal(c.Command, []string{"mosb", "controller"}) {
		t.Errorf("image %q command %q", c.Image, c.Command)
	}
	wantArgs := []string{"--namespace=$(POD_NAMESPACE)", "--build-service-account=mosb-build", "--leader-elect", "--health-probe-bind-address=:8081", "--metrics-bind-address=:8080"}
	if !slices.Equal(c.Args, wantArgs) {
		t.Errorf("args %q, want %q", c.Args, wantArgs)
	}
	for _, e := range []struct{ name, field string }{{"POD_NAME", "metadata.name"}, {"POD_NAMESPACE", "metadata.namespace"}} {
		i := slices.IndexFunc(c.Env, func(v corev1.EnvVar) bool { return v.Name == e.name })
		if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.FieldRef == nil || c.Env[i].ValueFrom.FieldRef.FieldPath != e.field {
			t.Errorf("env %s is not the downward API's %s", e.name, e.field)
		}
	}
	for _, p := range []struct {
		what  string
		probe *corev1.Probe
		path  string
	}{{"livenessProbe", c.LivenessProbe, "/healthz"}, {"readinessProbe", c.ReadinessProbe, "/readyz"}} {
		// By the port's name, so that an overlay moving the port (the harness's, on the host's
		// network) moves the probes with it.
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "probes" {
			t.Errorf("%s is not GET %s on the port named probes: %+v", p.what, p.path, p.probe)
		}
	}
	if i := slices.IndexFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "probes" }); i < 0 || c.Ports[i].ContainerPort != 8081 {
		t.Errorf("no container port probes 8081 (the --health-probe-bind-address): %+v", c.Ports)
	}
	if c.Resources.Requests.Cpu().Cmp(resource.MustParse("100m")) != 0 || c.Resources.Requests.Memory().Cmp(resource.MustParse("128Mi")) != 0 {
		t.Errorf("requests %v, want cpu 100m, memory 128Mi", c.Resources.Requests)
	}
	if c.Resources.Limits.Memory().IsZero() {
		t.Error("no memory limit")
	}
	sc := c.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("the controller's securityContext is not least privilege: %+v", sc)
	}
	if sc != nil && sc.Privileged != nil && *sc.Privileged {
		t.Error("the controller container is privileged")
	}
	raw, err := find(base, "Deployment", mosbNamespace, "mosb-controller").MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "privileged") || d.Spec.Template.Spec.HostNetwork || d.Spec.Template.Spec.HostPID {
		t.Errorf("the base Deployment mentions privileged or uses the host's namespaces:\n%s", raw)
	}

	// deploy/local: the base plus the node's network, emulation, no pull.
	ld := deployment(t, local)
	lc := controllerContainer(t, ld)
	if !ld.Spec.Template.Spec.HostNetwork || ld.Spec.Template.Spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet || lc.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("deploy/local: hostNetwork %v, dnsPolicy %q, imagePullPolicy %q", ld.Spec.Template.Spec.HostNetwork, ld.Spec.Template.Spec.DNSPolicy, lc.ImagePullPolicy)
	}
	if want := append(slices.Clone(wantArgs), "--host-network", "--allow-emulation"); !slices.Equal(lc.Args, want) {
		t.Errorf("deploy/local args %q, want %q", lc.Args, want)
	}

	// RBAC: no wildcard anywhere; secrets and pod creation only in the build namespace.
	for _, o := range base {
		var rules []rbacv1.PolicyRule
		switch o.GetKind() {
		case "ClusterRole":
			r := &rbacv1.ClusterRole{}
			fromUnstructured(t, o, r)
			rules = r.Rules
		case "Role":
			r := &rbacv1.Role{}
			fromUnstructured(t, o, r)
			rules = r.Rules
		default:
			continue
		}
		where := o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
		for _, r := range rules {
			all := slices.Concat(r.APIGroups, r.Resources, r.Verbs)
			if slices.Contains(all, "*") || len(r.NonResourceURLs) > 0 {
				t.Errorf("%s has a wildcard or non-resource rule: %+v", where, r)
			}
			inBuildNS := o.GetKind() == "Role" && o.GetNamespace() == mosbNamespace
			if slices.Contains(r.Resources, "secrets") && !inBuildNS {
				t.Errorf("%s grants access to secrets: %+v", where, r)
			}
			if slices.Contains(r.Resources, "pods") && !inBuildNS {
				t.Errorf("%s grants access to pods: %+v", where, r)
			}
		}
	}
}

// TestRBACControllerPodPassesRestrictedPodSecurity: the controller's pod template, as rendered,
// is admitted by a namespace enforcing Pod Security "restricted" (server-side dry run).
func TestRBACControllerPodPassesRestrictedPodSecurity(t *testing.T) {
	cp := controlPlane(t)
	ctx := testContext(t)
	kubectl := kubectlIn(cp.Assets)
	// A name of its own per run: envtest has no namespace controller, so a deleted namespace stays.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "rbac-restricted-", Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest",
	}}}
	if err := cp.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	for _, overlay := range []string{"base", "local"} {
		spec := deployment(t, render(t, kubectl, overlay)).Spec.Template.Spec
		// deploy/local's hostNetwork is beyond "restricted" (and "baseline"); the rest must pass.
		spec.HostNetwork = false
		spec.DNSPolicy = ""
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "controller"}, Spec: spec}
		if err := cp.Client.Create(ctx, pod, client.DryRunAll); err != nil {
			t.Errorf("Pod Security restricted refuses the controller's pod of deploy/%s: %v", overlay, err)
		}
	}
}

func kubectlIn(assets string) string { return filepath.Join(assets, "kubectl") }

func deployDir(name string) string { return filepath.Join(harness.RepoRoot(), "deploy", name) }

// render is `kubectl kustomize deploy/<name>`, decoded.
func render(t *testing.T, kubectl, name string) []*unstructured.Unstructured {
	t.Helper()
	out, err := exec.Command(kubectl, "kustomize", deployDir(name)).Output()
	if err != nil {
		var stderr []byte
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			stderr = exit.Stderr
		}
		t.Fatalf("kubectl kustomize deploy/%s: %v\n%s", name, err, stderr)
	}
	var objs []*unstructured.Unstructured
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	for {
		o := &unstructured.Unstructured{}
		if err := dec.Decode(&o.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatalf("decoding deploy/%s: %v", name, err)
		}
		if len(o.Object) > 0 {
			objs = append(objs, o)
		}
	}
}

func find(objs []*unstructured.Unstructured, kind, namespace, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetNamespace() == namespace && o.GetName() == name {
			return o
		}
	}
	return nil
}

func fromUnstructured(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

func deployment(t *testing.T, objs []*unstructured.Unstructured) *appsv1.Deployment {
	t.Helper()
	u := find(objs, "Deployment", mosbNamespace, "mosb-controller")
	if u == nil {
		t.Fatalf("no Deployment %s/mosb-controller", mosbNamespace)
	}
	d := &appsv1.Deployment{}
	fromUnstructured(t, u, d)
	return d
}

func controllerContainer(t *testing.T, d *appsv1.Deployment) corev1.Container {
	t.Helper()
	cs := d.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != "controller" {
		t.Fatalf("want one container named controller (the --builder-image default reads it), got %d", len(cs))
	}
	return cs[0]
}
