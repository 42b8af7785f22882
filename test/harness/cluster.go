package harness

import (
	"strings"

	configv1 "github.com/openshift/api/config/v1"
	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// WorkerRoleLabel selects the nodes of the pool Cluster creates.
const WorkerRoleLabel = "node-role.kubernetes.io/worker"

// Cluster describes what a MachineOSConfig needs in a test cluster besides itself: the build
// namespace and openshift-config, pull and push secrets holding the registry's credentials, the
// registry's CA as the Image config's additionalTrustedCA, machine-config-osimageurl naming the
// base image, and a pool of the worker-role nodes with its rendered MachineConfig. Empty fields
// take the defaults in brackets.
type Cluster struct {
	Namespace      string // [openshift-machine-config-operator]
	Registry       *Registry
	BaseImage      string
	ReleaseVersion string
	PullSecret     string // [pull]
	PushSecret     string // [push]
	Pool           string // [worker]
	RenderedConfig string // [rendered-<pool>-1]
	// RenderedConfigJSON is the rendered MachineConfig's spec.config [a minimal ignition config].
	RenderedConfigJSON string
}

func (c Cluster) withDefaults() Cluster {
	or := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	or(&c.Namespace, "openshift-machine-config-operator")
	or(&c.PullSecret, "pull")
	or(&c.PushSecret, "push")
	or(&c.Pool, "worker")
	or(&c.RenderedConfig, "rendered-"+c.Pool+"-1")
	or(&c.RenderedConfigJSON, `{"ignition":{"version":"3.4.0"}}`)
	return c
}

// Objects are the objects to create, in an order the API server accepts.
func (c Cluster) Objects() []client.Object {
	c = c.withDefaults()
	host, port, _ := strings.Cut(c.Registry.Host, ":")
	cas := map[string]string{}
	if c.Registry.CA != nil {
		cas[host+".."+port] = string(c.Registry.CA.PEM)
	}
	return []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.Namespace}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "openshift-config"}},
		DockerSecret(c.Namespace, c.PullSecret, c.Registry.DockerConfigJSON()),
		DockerSecret(c.Namespace, c.PushSecret, c.Registry.DockerConfigJSON()),
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "openshift-config", Name: "registry-cas"}, Data: cas},
		&configv1.Image{ObjectMeta: metav1.ObjectMeta{Name: "cluster"},
			Spec: configv1.ImageSpec{AdditionalTrustedCA: configv1.ConfigMapNameReference{Name: "registry-cas"}}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: "machine-config-osimageurl"},
			Data: map[string]string{"baseOSContainerImage": c.BaseImage, "releaseVersion": c.ReleaseVersion}},
		&mcfgv1.MachineConfig{ObjectMeta: metav1.ObjectMeta{Name: c.RenderedConfig},
			Spec: mcfgv1.MachineConfigSpec{Config: runtime.RawExtension{Raw: []byte(c.RenderedConfigJSON)}}},
		&mcfgv1.MachineConfigPool{ObjectMeta: metav1.ObjectMeta{Name: c.Pool}, Spec: mcfgv1.MachineConfigPoolSpec{
			NodeSelector:  &metav1.LabelSelector{MatchLabels: map[string]string{WorkerRoleLabel: ""}},
			Configuration: mcfgv1.MachineConfigPoolStatusConfiguration{ObjectReference: corev1.ObjectReference{Name: c.RenderedConfig}},
		}},
	}
}

// DockerSecret is a kubernetes.io/dockerconfigjson Secret.
func DockerSecret(namespace, name string, dockerConfigJSON []byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: dockerConfigJSON},
	}
}
