package buildpod

import (
	"fmt"
	"path"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// RunMountsDir is where a build pod mounts its run mounts: RunMountsDir/<index>.
const RunMountsDir = "/var/run/mosb/run-mounts"

// RunMount is a Secret or a ConfigMap of the build namespace that every RUN step of the build sees
// read-only at Target, and that no layer holds: RHEL entitlements, yum repositories and GPG keys for
// package installs, as the Machine Config Operator mounts them.
type RunMount struct {
	// Secret or ConfigMap names the object (exactly one).
	Secret, ConfigMap string
	// Target is the absolute path RUN steps see it at, e.g. /etc/pki/entitlement.
	Target string
}

func (m RunMount) String() string {
	if m.Secret != "" {
		return "Secret " + m.Secret + " at " + m.Target
	}
	return "ConfigMap " + m.ConfigMap + " at " + m.Target
}

// validateRunMounts refuses mounts a pod or buildah could not lay out as written.
func validateRunMounts(mounts []RunMount) error {
	seen := map[string]bool{}
	for _, m := range mounts {
		name := m.Secret + m.ConfigMap
		if (m.Secret == "") == (m.ConfigMap == "") {
			return fmt.Errorf("run mount at %q: name exactly one Secret or ConfigMap", m.Target)
		}
		if problems := validation.IsDNS1123Subdomain(name); len(problems) > 0 {
			return fmt.Errorf("run mount %s: %s", m, strings.Join(problems, "; "))
		}
		if err := checkRunMountTarget(m.Target); err != nil {
			return fmt.Errorf("run mount %s: %w", m, err)
		}
		if seen[m.Target] {
			return fmt.Errorf("two run mounts at %s", m.Target)
		}
		seen[m.Target] = true
	}
	return nil
}

// checkRunMountTarget accepts a clean absolute path that is not the root and has no ':' or ','
// (buildah's mount syntax separates with them).
func checkRunMountTarget(target string) error {
	if !path.IsAbs(target) || path.Clean(target) != target || target == "/" || strings.ContainsAny(target, ":,\\") {
		return fmt.Errorf("the target %q must be a clean absolute path other than / without ':' or ','", target)
	}
	return nil
}

func runMountTargets(mounts []RunMount) []string {
	out := make([]string, 0, len(mounts))
	for _, m := range mounts {
		out = append(out, m.Target)
	}
	return out
}

// runMountVolumes are the pod's volumes and mounts of the run mounts. They are optional: an object
// deleted after the controller saw it leaves an empty directory rather than a pod that never starts.
func runMountVolumes(mounts []RunMount) ([]corev1.Volume, []corev1.VolumeMount) {
	var volumes []corev1.Volume
	var vms []corev1.VolumeMount
	for i, m := range mounts {
		name := fmt.Sprintf("run-mount-%d", i)
		v := corev1.Volume{Name: name}
		if m.Secret != "" {
			v.Secret = &corev1.SecretVolumeSource{SecretName: m.Secret, Optional: ptr(true), DefaultMode: ptr(int32(0o400))}
		} else {
			v.ConfigMap = &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: m.ConfigMap}, Optional: ptr(true), DefaultMode: ptr(int32(0o444))}
		}
		volumes = append(volumes, v)
		vms = append(vms, corev1.VolumeMount{Name: name, MountPath: fmt.Sprintf("%s/%d", RunMountsDir, i), ReadOnly: true})
	}
	return volumes, vms
}

// ProxySecretName is the Secret that holds a build pod's proxy environment.
func ProxySecretName(r Request) string { return r.Name + "-proxy" }

// ProxySecret is the Secret a build pod reads its proxy environment from (HTTP_PROXY, https_proxy,
// NO_PROXY…, upper and lower case), owned like the request; nil when the request has no proxy.
// The proxy URLs may hold a password: they go in a Secret, never in the request ConfigMap or the
// pod spec.
func ProxySecret(r Request) *corev1.Secret {
	if r.Proxy.IsZero() {
		return nil
	}
	data := map[string][]byte{}
	for k, v := range r.Proxy.Env() {
		data[k] = []byte(v)
	}
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: r.objectMeta(ProxySecretName(r)),
		Immutable:  ptr(true),
		Type:       corev1.SecretTypeOpaque,
		Data:       data,
	}
}

// proxyEnv is the build container's environment from the proxy Secret, in a fixed order.
func proxyEnv(r Request) []corev1.EnvVar {
	if r.Proxy.IsZero() {
		return nil
	}
	env := r.Proxy.Env()
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	slices.Sort(names)
	out := make([]corev1.EnvVar, 0, len(names))
	for _, k := range names {
		out = append(out, corev1.EnvVar{Name: k, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: ProxySecretName(r)}, Key: k,
		}}})
	}
	return out
}
