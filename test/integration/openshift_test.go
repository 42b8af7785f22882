package integration

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	securityv1 "github.com/openshift/api/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/test/harness"
)

// restrictedV2 is OpenShift's default SCC for authenticated users (4.11 and later), as OpenShift
// ships it: what the controller must fit.
var restrictedV2 = securityv1.SecurityContextConstraints{
	ObjectMeta:               metav1.ObjectMeta{Name: "restricted-v2"},
	AllowPrivilegeEscalation: ptrTo(false),
	AllowedCapabilities:      []corev1.Capability{"NET_BIND_SERVICE"},
	RequiredDropCapabilities: []corev1.Capability{"ALL"},
	RunAsUser:                securityv1.RunAsUserStrategyOptions{Type: securityv1.RunAsUserStrategyMustRunAsRange},
	SELinuxContext:           securityv1.SELinuxContextStrategyOptions{Type: securityv1.SELinuxStrategyMustRunAs},
	SeccompProfiles:          []string{"runtime/default"},
	Volumes: []securityv1.FSType{securityv1.FSTypeConfigMap, securityv1.FSTypeCSI, securityv1.FSTypeDownwardAPI, securityv1.FSTypeEmptyDir,
		securityv1.FSTypeEphemeral, securityv1.FSTypePersistentVolumeClaim, securityv1.FSProjected, securityv1.FSTypeSecret},
}

func ptrTo[T any](v T) *T { return &v }

// TestOpenShiftOverlay checks deploy/openshift as far as can be without an OpenShift API server:
// the build pods mosb makes (with the node image store) are admitted by its SCC mosb-build and
// refused by restricted-v2, the controller's pod fits restricted-v2, and the ServiceAccount the
// build pods run as (the controller's --build-service-account: the Job controller creates the pods,
// so only their own ServiceAccount counts) may use mosb-build in its namespace.
func TestOpenShiftOverlay(t *testing.T) {
	objs := render(t, kubectlIn(harness.KubeAssets(t)), "openshift")
	var scc *securityv1.SecurityContextConstraints
	var controller *appsv1.Deployment
	var useRoles []string
	var bindings []*unstructured.Unstructured
	for _, o := range objs {
		switch o.GetKind() {
		case "SecurityContextConstraints":
			scc = &securityv1.SecurityContextConstraints{}
			fromUnstructured(t, o, scc)
		case "Deployment":
			controller = &appsv1.Deployment{}
			fromUnstructured(t, o, controller)
		case "ClusterRole":
			if strings.Contains(fmt.Sprint(o.Object["rules"]), "securitycontextconstraints") {
				useRoles = append(useRoles, o.GetName())
			}
		case "RoleBinding":
			bindings = append(bindings, o)
		}
	}
	if scc == nil || scc.Name != "mosb-build" || controller == nil {
		t.Fatalf("deploy/openshift lacks the SCC mosb-build or the controller")
	}

	build := buildPodWithNodeStore(t)
	if problems := sccRefuses(scc, &build.Spec); len(problems) > 0 {
		t.Errorf("SCC mosb-build refuses the build pod: %s", strings.Join(problems, "; "))
	}
	if problems := sccRefuses(&restrictedV2, &build.Spec); len(problems) == 0 {
		t.Error("restricted-v2 admits the build pod: mosb-build would not be needed (or the check is broken)")
	}
	if problems := sccRefuses(&restrictedV2, &controller.Spec.Template.Spec); len(problems) > 0 {
		t.Errorf("restricted-v2 refuses the controller: %s", strings.Join(problems, "; "))
	}
	if problems := sccRefuses(scc, &controller.Spec.Template.Spec); len(problems) > 0 {
		t.Logf("(mosb-build would refuse the controller too: %s)", strings.Join(problems, "; "))
	}

	buildSA := ""
	for _, a := range controller.Spec.Template.Spec.Containers[0].Args {
		if v, ok := strings.CutPrefix(a, "--build-service-account="); ok {
			buildSA = v
		}
	}
	if buildSA == "" {
		t.Fatal("the controller runs build pods as the namespace's default ServiceAccount: the SCC would have to be granted to every pod of mosb-system")
	}
	granted := false
	for _, b := range bindings {
		roleRef, _, _ := unstructured.NestedString(b.Object, "roleRef", "name")
		subjects := fmt.Sprint(b.Object["subjects"])
		if slices.Contains(useRoles, roleRef) && b.GetNamespace() == mosbNamespace && strings.Contains(subjects, "name:"+buildSA+" ") {
			granted = true
		}
	}
	if !granted {
		t.Errorf("no RoleBinding in mosb-system lets the build pods' ServiceAccount %s use mosb-build", buildSA)
	}
}

// buildPodWithNodeStore is a build pod as the controller makes it, with the node image store.
func buildPodWithNodeStore(t *testing.T) *corev1.Pod {
	t.Helper()
	_, pod, err := buildpod.Objects(buildpod.Request{
		Name:         "worker-0123456789-amd64",
		Namespace:    mosbNamespace,
		Owner:        metav1.OwnerReference{APIVersion: "machineconfiguration.openshift.io/v1alpha1", Kind: "MachineOSBuild", Name: "worker-0123456789", UID: "6f1c2a9e-0000-4000-8000-000000000001"},
		Build:        buildpod.ArchBuild{Arch: "amd64", Containerfile: []byte("FROM registry.example.com/os/base@sha256:" + strings.Repeat("a", 64) + "\n")},
		Target:       "registry.example.com/os/worker:latest",
		Registry:     buildpod.RegistryConfig{RegistriesConf: []byte{}, PolicyJSON: []byte{}},
		PullSecret:   "pull",
		PushSecret:   "push",
		BuilderImage: "quay.example.com/mosb/mosb@sha256:" + strings.Repeat("b", 64),
		NodeStore:    &buildpod.NodeStore{HostPath: "/var/lib/mosb/store", Budget: 1 << 30},
	})
	if err != nil {
		t.Fatal(err)
	}
	return pod
}

// sccRefuses says why an SCC would not admit a pod spec, following OpenShift's SCC admission for
// the fields mosb's pods set: privilege, capabilities, the user strategy, host namespaces,
// volume types, privilege escalation, read-only root, seccomp.
func sccRefuses(scc *securityv1.SecurityContextConstraints, spec *corev1.PodSpec) []string {
	var out []string
	if spec.HostNetwork && !scc.AllowHostNetwork {
		out = append(out, "host network")
	}
	if spec.HostPID && !scc.AllowHostPID || spec.HostIPC && !scc.AllowHostIPC {
		out = append(out, "host PID/IPC")
	}
	for _, v := range spec.Volumes {
		fs := volumeFSType(v)
		if !slices.Contains(scc.Volumes, fs) && !slices.Contains(scc.Volumes, securityv1.FSTypeAll) {
			out = append(out, fmt.Sprintf("volume %s of type %s", v.Name, fs))
		}
		if v.HostPath != nil && !scc.AllowHostDirVolumePlugin {
			out = append(out, fmt.Sprintf("hostPath volume %s", v.Name))
		}
	}
	podUser := (*int64)(nil)
	podSeccomp := ""
	if sc := spec.SecurityContext; sc != nil {
		podUser = sc.RunAsUser
		if sc.SeccompProfile != nil {
			podSeccomp = seccompName(sc.SeccompProfile)
		}
	}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		sc := c.SecurityContext
		if sc == nil {
			sc = &corev1.SecurityContext{}
		}
		if sc.Privileged != nil && *sc.Privileged && !scc.AllowPrivilegedContainer {
			out = append(out, c.Name+": privileged")
		}
		if sc.Capabilities != nil {
			for _, add := range sc.Capabilities.Add {
				if !slices.Contains(scc.AllowedCapabilities, add) && !slices.Contains(scc.DefaultAddCapabilities, add) && !slices.Contains(scc.AllowedCapabilities, "*") {
					out = append(out, fmt.Sprintf("%s: capability %s", c.Name, add))
				}
			}
		}
		for _, drop := range scc.RequiredDropCapabilities {
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, drop) && !slices.Contains(sc.Capabilities.Drop, "ALL") {
				out = append(out, fmt.Sprintf("%s: does not drop %s", c.Name, drop))
			}
		}
		user := podUser
		if sc.RunAsUser != nil {
			user = sc.RunAsUser
		}
		switch scc.RunAsUser.Type {
		case securityv1.RunAsUserStrategyMustRunAsRange:
			// The namespace's range is far above the users images name: a fixed UID is refused.
			if user != nil {
				out = append(out, fmt.Sprintf("%s: runAsUser %d outside the namespace's range", c.Name, *user))
			}
		case securityv1.RunAsUserStrategyMustRunAsNonRoot:
			if user != nil && *user == 0 {
				out = append(out, c.Name+": runs as root")
			}
		case securityv1.RunAsUserStrategyMustRunAs:
			if user == nil || scc.RunAsUser.UID == nil || *user != *scc.RunAsUser.UID {
				out = append(out, c.Name+": runAsUser is not the SCC's")
			}
		}
		if scc.AllowPrivilegeEscalation != nil && !*scc.AllowPrivilegeEscalation && (sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation) {
			out = append(out, c.Name+": allows privilege escalation")
		}
		if scc.ReadOnlyRootFilesystem && (sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem) {
			out = append(out, c.Name+": writable root filesystem")
		}
		seccomp := podSeccomp
		if sc.SeccompProfile != nil {
			seccomp = seccompName(sc.SeccompProfile)
		}
		if len(scc.SeccompProfiles) > 0 && seccomp != "" && !slices.Contains(scc.SeccompProfiles, seccomp) && !slices.Contains(scc.SeccompProfiles, "*") {
			out = append(out, fmt.Sprintf("%s: seccomp profile %s", c.Name, seccomp))
		}
	}
	return out
}

func seccompName(p *corev1.SeccompProfile) string {
	switch p.Type {
	case corev1.SeccompProfileTypeRuntimeDefault:
		return "runtime/default"
	case corev1.SeccompProfileTypeUnconfined:
		return "unconfined"
	case corev1.SeccompProfileTypeLocalhost:
		if p.LocalhostProfile != nil {
			return "localhost/" + *p.LocalhostProfile
		}
	}
	return string(p.Type)
}

func volumeFSType(v corev1.Volume) securityv1.FSType {
	switch {
	case v.ConfigMap != nil:
		return securityv1.FSTypeConfigMap
	case v.Secret != nil:
		return securityv1.FSTypeSecret
	case v.EmptyDir != nil:
		return securityv1.FSTypeEmptyDir
	case v.HostPath != nil:
		return securityv1.FSTypeHostPath
	case v.Projected != nil:
		return securityv1.FSProjected
	case v.DownwardAPI != nil:
		return securityv1.FSTypeDownwardAPI
	case v.PersistentVolumeClaim != nil:
		return securityv1.FSTypePersistentVolumeClaim
	case v.CSI != nil:
		return securityv1.FSTypeCSI
	case v.Ephemeral != nil:
		return securityv1.FSTypeEphemeral
	}
	return securityv1.FSTypeNone
}
