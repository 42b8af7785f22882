package harness

import (
	"encoding/json"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	configv1 "github.com/openshift/api/config/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
)

// The files `mosb build` reads besides its flags — a MachineOSConfig, a --cluster-config
// directory and an --authfile — as the CLI tests, the benchmark and the mosb image build write
// them.

// MachineOSConfig is the MachineOSConfig the tests start from: pool pool, the pull and push
// secrets named "pull" and "push", the pod image builder, base (none when "") and target.
func MachineOSConfig(name, pool, base, target string) *mosbv1.MachineOSConfig {
	return &mosbv1.MachineOSConfig{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: mosbv1.MachineOSConfigSpec{
			MachineConfigPool: mosbv1.MachineConfigPoolReference{Name: pool},
			BuildInputs: mosbv1.BuildInputs{
				BaseOSImagePullspec:     mosbv1.ImageDigestFormat(base),
				ImageBuilder:            mosbv1.MachineOSImageBuilder{ImageBuilderType: mosbv1.PodImageBuilder},
				BaseImagePullSecret:     mosbv1.ImageSecretObjectReference{Name: "pull"},
				RenderedImagePushSecret: mosbv1.ImageSecretObjectReference{Name: "push"},
				RenderedImagePushspec:   mosbv1.ImageTagPushspec(target),
			},
		},
	}
}

// BuildMachineOSConfig is a MachineOSConfig for `mosb build` in YAML: pool worker, secrets pull and
// push, base by digest, target by tag, and one containerFile entry per content key (the
// architecture; "" for an entry that names none), in key order. Each entry's content ends in one
// newline, as a YAML literal block would have it.
func BuildMachineOSConfig(name, base, target, releaseVersion string, content map[string]string) []byte {
	m := MachineOSConfig(name, "worker", base, target)
	m.TypeMeta = metav1.TypeMeta{APIVersion: mosbv1.GroupVersion.String(), Kind: "MachineOSConfig"}
	m.Spec.BuildInputs.ReleaseVersion = releaseVersion
	for _, arch := range slices.Sorted(maps.Keys(content)) {
		m.Spec.BuildInputs.Containerfile = append(m.Spec.BuildInputs.Containerfile, mosbv1.MachineOSContainerfile{
			ContainerfileArch: mosbv1.ContainerfileArch(arch),
			Content:           strings.TrimRight(content[arch], "\n") + "\n",
		})
	}
	return mustYAML(m)
}

// WriteClusterConfig writes into dir the --cluster-config through which `mosb build` reaches reg
// under each of hosts (reg.Host when none; more for proxies in front of it): reg's CA as the Image
// config's additionalTrustedCA for every host, or the hosts as insecure registries when reg speaks
// plain HTTP.
func WriteClusterConfig(t T, dir string, reg *Registry, hosts ...string) {
	t.Helper()
	if len(hosts) == 0 {
		hosts = []string{reg.Host}
	}
	image := &configv1.Image{
		TypeMeta:   metav1.TypeMeta{APIVersion: configv1.GroupVersion.String(), Kind: "Image"},
		ObjectMeta: metav1.ObjectMeta{Name: "cluster"},
	}
	if reg.CA == nil {
		image.Spec.RegistrySources.InsecureRegistries = hosts
		mustWrite(t, filepath.Join(dir, "image.yaml"), mustYAML(image))
		return
	}
	image.Spec.AdditionalTrustedCA.Name = "registry-cas"
	cas := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "openshift-config", Name: "registry-cas"},
		Data:       map[string]string{},
	}
	for _, h := range hosts {
		// additionalTrustedCA keys spell host:port as host..port.
		cas.Data[strings.Replace(h, ":", "..", 1)] = string(reg.CA.PEM)
	}
	mustWrite(t, filepath.Join(dir, "image.yaml"), mustYAML(image))
	mustWrite(t, filepath.Join(dir, "cas.yaml"), mustYAML(cas))
}

// WriteAuthFile writes an --authfile with reg's credentials for each of hosts (reg.Host when
// none), or none at all when reg takes anonymous pushes.
func WriteAuthFile(t T, path string, reg *Registry, hosts ...string) {
	t.Helper()
	if len(hosts) == 0 {
		hosts = []string{reg.Host}
	}
	auths := map[string]any{}
	if reg.Username != "" {
		for _, h := range hosts {
			var one struct{ Auths map[string]any }
			if err := json.Unmarshal(DockerConfigJSON(h, reg.Username, reg.Password), &one); err != nil {
				t.Fatal(err)
			}
			auths[h] = one.Auths[h]
		}
	}
	raw, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, path, raw)
}

func mustYAML(obj any) []byte {
	raw, err := yaml.Marshal(obj)
	if err != nil {
		panic(err) // the harness's own typed objects always marshal
	}
	return raw
}
