// Package convert converts MachineOSConfigs and MachineOSBuilds between mosb's v1alpha1 and the v1
// that OpenShift 4.19 and later serves (types in openshift/api).
//
// v1 flattened the spec: no base image, extensions image or release version (the cluster's
// machine-config-osimageurl ConfigMap gives them, and the pipeline reads it when the spec has
// none), an optional base image pull secret (the cluster-wide pull secret when absent), the
// builder type Job, and architectures spelled AMD64, ARM64, PPC64LE, S390X and NoArch.
// MachineOSConfigFromV1 reads a v1 file for a build; the *ToV1 and *FromV1(Lossless) pairs are
// lossless both ways (lossless.go), for an API server that serves both versions.
package convert

import (
	"fmt"
	"strings"

	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
)

// v1Arches maps v1's architecture names to v1alpha1's.
var v1Arches = map[mcfgv1.ContainerfileArch]mosbv1.ContainerfileArch{
	mcfgv1.Amd64:  mosbv1.ArchAMD64,
	mcfgv1.Arm64:  mosbv1.ArchARM64,
	mcfgv1.Ppc:    mosbv1.ArchPPC64LE,
	mcfgv1.S390:   mosbv1.ArchS390X,
	mcfgv1.NoArch: mosbv1.NoArch,
	"":            mosbv1.NoArch, // the CRD's default
}

// FieldError is a v1 field that has no v1alpha1 meaning.
type FieldError struct {
	Field, Value, Want string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s %q: want %s", e.Field, e.Value, e.Want)
}

// MachineOSConfigFromV1 is in's v1alpha1 form. Its base image fields stay empty: they come from
// the cluster. The builder type Job is mosb's build pods, as PodImageBuilder is.
func MachineOSConfigFromV1(in *mcfgv1.MachineOSConfig) (*mosbv1.MachineOSConfig, error) {
	if t := in.Spec.ImageBuilder.ImageBuilderType; t != mcfgv1.JobBuilder {
		return nil, &FieldError{Field: "spec.imageBuilder.imageBuilderType", Value: string(t), Want: string(mcfgv1.JobBuilder)}
	}
	out := &mosbv1.MachineOSConfig{
		TypeMeta:   metav1.TypeMeta{APIVersion: mosbv1.GroupVersion.String(), Kind: "MachineOSConfig"},
		ObjectMeta: *in.ObjectMeta.DeepCopy(),
	}
	out.Spec.MachineConfigPool.Name = in.Spec.MachineConfigPool.Name
	bi := &out.Spec.BuildInputs
	bi.ImageBuilder.ImageBuilderType = mosbv1.PodImageBuilder
	if in.Spec.BaseImagePullSecret != nil {
		bi.BaseImagePullSecret.Name = in.Spec.BaseImagePullSecret.Name
	}
	bi.RenderedImagePushSecret.Name = in.Spec.RenderedImagePushSecret.Name
	bi.RenderedImagePushspec = mosbv1.ImageTagPushspec(in.Spec.RenderedImagePushSpec)
	for i, cf := range in.Spec.Containerfile {
		arch, ok := v1Arches[cf.ContainerfileArch]
		if !ok {
			return nil, &FieldError{Field: fmt.Sprintf("spec.containerFile[%d].containerfileArch", i), Value: string(cf.ContainerfileArch), Want: "one of " + strings.Join(v1ArchNames(), ", ")}
		}
		bi.Containerfile = append(bi.Containerfile, mosbv1.MachineOSContainerfile{ContainerfileArch: arch, Content: cf.Content})
	}
	out.Status.ObservedGeneration = in.Status.ObservedGeneration
	out.Status.CurrentImagePullspec = mosbv1.ImageDigestFormat(in.Status.CurrentImagePullSpec)
	for _, c := range in.Status.Conditions {
		out.Status.Conditions = append(out.Status.Conditions, *c.DeepCopy())
	}
	return out, nil
}

func v1ArchNames() []string {
	return []string{string(mcfgv1.Amd64), string(mcfgv1.Arm64), string(mcfgv1.Ppc), string(mcfgv1.S390), string(mcfgv1.NoArch)}
}
