package convert

import (
	"errors"
	"reflect"
	"testing"

	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
)

// v1Config is a v1 MachineOSConfig as OpenShift's documentation writes one.
func v1Config() *mcfgv1.MachineOSConfig {
	return &mcfgv1.MachineOSConfig{
		TypeMeta:   metav1.TypeMeta{APIVersion: "machineconfiguration.openshift.io/v1", Kind: "MachineOSConfig"},
		ObjectMeta: metav1.ObjectMeta{Name: "worker", Generation: 3, Labels: map[string]string{"team": "os"}, Annotations: map[string]string{"mosb.dev/build-limits": "memory=4Gi"}},
		Spec: mcfgv1.MachineOSConfigSpec{
			MachineConfigPool:       mcfgv1.MachineConfigPoolReference{Name: "worker"},
			ImageBuilder:            mcfgv1.MachineOSImageBuilder{ImageBuilderType: mcfgv1.JobBuilder},
			BaseImagePullSecret:     &mcfgv1.ImageSecretObjectReference{Name: "pull"},
			RenderedImagePushSecret: mcfgv1.ImageSecretObjectReference{Name: "push"},
			RenderedImagePushSpec:   "registry.example.com/os/worker:latest",
			Containerfile: []mcfgv1.MachineOSContainerfile{
				{ContainerfileArch: mcfgv1.NoArch, Content: "RUN echo all"},
				{ContainerfileArch: mcfgv1.Arm64, Content: "RUN echo arm"},
				{ContainerfileArch: mcfgv1.Amd64, Content: "RUN echo amd"},
				{Content: "RUN echo defaulted"},
			},
		},
		Status: mcfgv1.MachineOSConfigStatus{
			ObservedGeneration:   2,
			CurrentImagePullSpec: "registry.example.com/os/worker@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			Conditions:           []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Built"}},
		},
	}
}

func TestMachineOSConfigFromV1(t *testing.T) {
	in := v1Config()
	got, err := MachineOSConfigFromV1(in)
	if err != nil {
		t.Fatal(err)
	}
	want := &mosbv1.MachineOSConfig{
		TypeMeta:   metav1.TypeMeta{APIVersion: "machineconfiguration.openshift.io/v1alpha1", Kind: "MachineOSConfig"},
		ObjectMeta: in.ObjectMeta,
		Spec: mosbv1.MachineOSConfigSpec{
			MachineConfigPool: mosbv1.MachineConfigPoolReference{Name: "worker"},
			BuildInputs: mosbv1.BuildInputs{
				ImageBuilder:            mosbv1.MachineOSImageBuilder{ImageBuilderType: mosbv1.PodImageBuilder},
				BaseImagePullSecret:     mosbv1.ImageSecretObjectReference{Name: "pull"},
				RenderedImagePushSecret: mosbv1.ImageSecretObjectReference{Name: "push"},
				RenderedImagePushspec:   "registry.example.com/os/worker:latest",
				Containerfile: []mosbv1.MachineOSContainerfile{
					{ContainerfileArch: mosbv1.NoArch, Content: "RUN echo all"},
					{ContainerfileArch: mosbv1.ArchARM64, Content: "RUN echo arm"},
					{ContainerfileArch: mosbv1.ArchAMD64, Content: "RUN echo amd"},
					{ContainerfileArch: mosbv1.NoArch, Content: "RUN echo defaulted"},
				},
			},
		},
		Status: mosbv1.MachineOSConfigStatus{
			ObservedGeneration:   2,
			CurrentImagePullspec: mosbv1.ImageDigestFormat(in.Status.CurrentImagePullSpec),
			Conditions:           in.Status.Conditions,
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("converted:\n%+v\nwant:\n%+v", got, want)
	}
	// A copy: changing the result leaves the input alone.
	got.Labels["team"] = "changed"
	got.Status.Conditions[0].Reason = "changed"
	if in.Labels["team"] != "os" || in.Status.Conditions[0].Reason != "Built" {
		t.Error("the result shares maps or slices with the input")
	}
}

// Without a base image pull secret (v1 makes it optional: the cluster-wide pull secret), the name
// stays empty for the caller to fill.
func TestMachineOSConfigFromV1WithoutPullSecret(t *testing.T) {
	in := v1Config()
	in.Spec.BaseImagePullSecret = nil
	got, err := MachineOSConfigFromV1(in)
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.BuildInputs.BaseImagePullSecret.Name != "" {
		t.Errorf("pull secret %q, want none", got.Spec.BuildInputs.BaseImagePullSecret.Name)
	}
}

func TestMachineOSConfigFromV1Refuses(t *testing.T) {
	for name, tc := range map[string]struct {
		change func(*mcfgv1.MachineOSConfig)
		field  string
	}{
		"an unknown builder":      {func(m *mcfgv1.MachineOSConfig) { m.Spec.ImageBuilder.ImageBuilderType = "PodImageBuilder" }, "spec.imageBuilder.imageBuilderType"},
		"no builder":              {func(m *mcfgv1.MachineOSConfig) { m.Spec.ImageBuilder.ImageBuilderType = "" }, "spec.imageBuilder.imageBuilderType"},
		"v1alpha1's arch":         {func(m *mcfgv1.MachineOSConfig) { m.Spec.Containerfile[1].ContainerfileArch = "arm64" }, "spec.containerFile[1].containerfileArch"},
		"an unknown architecture": {func(m *mcfgv1.MachineOSConfig) { m.Spec.Containerfile[0].ContainerfileArch = "RISCV64" }, "spec.containerFile[0].containerfileArch"},
	} {
		t.Run(name, func(t *testing.T) {
			in := v1Config()
			tc.change(in)
			_, err := MachineOSConfigFromV1(in)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("got %v, want a FieldError about %s", err, tc.field)
			}
		})
	}
}
