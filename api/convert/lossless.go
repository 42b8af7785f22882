package convert

import (
	"encoding/json"
	"fmt"

	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
)

// Each version holds fields the other has no place for. A conversion keeps them, as JSON, in an
// annotation of the object it makes, and the conversion back takes them out again: an object
// read through one version and written back through it loses nothing of the other (what an API
// server serving both versions needs of its conversion webhook).
const (
	// AnnotationV1Alpha1Fields, on a v1 object, holds the v1alpha1 fields v1 cannot hold.
	AnnotationV1Alpha1Fields = "mosb.dev/v1alpha1-fields"
	// AnnotationV1Fields, on a v1alpha1 object, holds the v1 fields v1alpha1 cannot hold.
	AnnotationV1Fields = "mosb.dev/v1-fields"
)

// v1alpha1ConfigFields are a v1alpha1 MachineOSConfig's fields v1 has no place for.
type v1alpha1ConfigFields struct {
	BaseOSImagePullspec           mosbv1.ImageDigestFormat           `json:"baseOSImagePullspec,omitempty"`
	BaseOSExtensionsImagePullspec mosbv1.ImageDigestFormat           `json:"baseOSExtensionsImagePullspec,omitempty"`
	ReleaseVersion                string                             `json:"releaseVersion,omitempty"`
	CurrentImagePullSecret        *mosbv1.ImageSecretObjectReference `json:"currentImagePullSecret,omitempty"`
	// ArchSpellings are the containerFile entries' architectures where v1alpha1 spelled them
	// otherwise than v1's name maps back to (x86_64 for amd64…), by index.
	ArchSpellings map[int]mosbv1.ContainerfileArch `json:"archSpellings,omitempty"`
}

// v1ConfigFields are a v1 MachineOSConfig's fields v1alpha1 has no place for.
type v1ConfigFields struct {
	// EmptyPullSecret: baseImagePullSecret was set with an empty name (v1alpha1's "none" is an
	// empty name too, which converts back to no reference).
	EmptyPullSecret bool `json:"emptyPullSecret,omitempty"`
	// ArchSpellings are the entries whose architecture v1 left empty (the CRD's default, NoArch).
	ArchSpellings map[int]mcfgv1.ContainerfileArch `json:"archSpellings,omitempty"`
}

// alphaArches maps v1alpha1's architecture names to v1's; v1Arches is the way back.
var alphaArches = map[mosbv1.ContainerfileArch]mcfgv1.ContainerfileArch{
	mosbv1.ArchAMD64: mcfgv1.Amd64, mosbv1.ArchX86_64: mcfgv1.Amd64,
	mosbv1.ArchARM64: mcfgv1.Arm64, mosbv1.ArchAArch64: mcfgv1.Arm64,
	mosbv1.ArchPPC64LE: mcfgv1.Ppc, mosbv1.ArchS390X: mcfgv1.S390,
	mosbv1.NoArch: mcfgv1.NoArch, "": mcfgv1.NoArch,
}

// MachineOSConfigToV1 is in as v1, with what v1 cannot hold in AnnotationV1Alpha1Fields and
// what an earlier conversion from v1 kept in AnnotationV1Fields restored.
func MachineOSConfigToV1(in *mosbv1.MachineOSConfig) (*mcfgv1.MachineOSConfig, error) {
	var kept v1ConfigFields
	meta, err := takeAnnotation(in.ObjectMeta, AnnotationV1Fields, &kept)
	if err != nil {
		return nil, err
	}
	bi := in.Spec.BuildInputs
	extra := v1alpha1ConfigFields{
		BaseOSImagePullspec: bi.BaseOSImagePullspec, BaseOSExtensionsImagePullspec: bi.BaseOSExtensionsImagePullspec,
		ReleaseVersion: bi.ReleaseVersion, CurrentImagePullSecret: in.Spec.BuildOutputs.CurrentImagePullSecret.DeepCopy(),
	}
	out := &mcfgv1.MachineOSConfig{TypeMeta: metav1.TypeMeta{APIVersion: mcfgv1.GroupVersion.String(), Kind: "MachineOSConfig"}, ObjectMeta: meta}
	out.Spec.MachineConfigPool.Name = in.Spec.MachineConfigPool.Name
	out.Spec.ImageBuilder.ImageBuilderType = mcfgv1.JobBuilder
	if t := bi.ImageBuilder.ImageBuilderType; t != mosbv1.PodImageBuilder && t != "" {
		return nil, &FieldError{Field: "spec.buildInputs.imageBuilder.imageBuilderType", Value: string(t), Want: string(mosbv1.PodImageBuilder)}
	}
	if bi.BaseImagePullSecret.Name != "" || kept.EmptyPullSecret {
		out.Spec.BaseImagePullSecret = &mcfgv1.ImageSecretObjectReference{Name: bi.BaseImagePullSecret.Name}
	}
	out.Spec.RenderedImagePushSecret.Name = bi.RenderedImagePushSecret.Name
	out.Spec.RenderedImagePushSpec = mcfgv1.ImageTagFormat(bi.RenderedImagePushspec)
	for i, cf := range bi.Containerfile {
		arch, ok := alphaArches[cf.ContainerfileArch]
		if !ok {
			return nil, &FieldError{Field: fmt.Sprintf("spec.buildInputs.containerFile[%d].containerfileArch", i), Value: string(cf.ContainerfileArch), Want: "an architecture v1alpha1 defines"}
		}
		if back := v1Arches[arch]; back != cf.ContainerfileArch {
			if extra.ArchSpellings == nil {
				extra.ArchSpellings = map[int]mosbv1.ContainerfileArch{}
			}
			extra.ArchSpellings[i] = cf.ContainerfileArch
		}
		if spelled, ok := kept.ArchSpellings[i]; ok && v1Arches[spelled] == v1Arches[arch] {
			arch = spelled
		}
		out.Spec.Containerfile = append(out.Spec.Containerfile, mcfgv1.MachineOSContainerfile{ContainerfileArch: arch, Content: cf.Content})
	}
	out.Status.ObservedGeneration = in.Status.ObservedGeneration
	out.Status.CurrentImagePullSpec = mcfgv1.ImageDigestFormat(in.Status.CurrentImagePullspec)
	out.Status.Conditions = copyConditions(in.Status.Conditions)
	out.Status.MachineOSBuild = objectRefToV1(in.Status.MachineOSBuild)
	if err := putAnnotation(&out.ObjectMeta, AnnotationV1Alpha1Fields, extra); err != nil {
		return nil, err
	}
	return out, nil
}

// MachineOSConfigFromV1Lossless is in as v1alpha1, with what v1alpha1 cannot hold in
// AnnotationV1Fields and what an earlier conversion to v1 kept in AnnotationV1Alpha1Fields
// restored. Unlike MachineOSConfigFromV1 (for building a v1 file), the base image fields are
// whatever the v1alpha1 object had, not left to the cluster.
func MachineOSConfigFromV1Lossless(in *mcfgv1.MachineOSConfig) (*mosbv1.MachineOSConfig, error) {
	var kept v1alpha1ConfigFields
	meta, err := takeAnnotation(in.ObjectMeta, AnnotationV1Alpha1Fields, &kept)
	if err != nil {
		return nil, err
	}
	plain := in.DeepCopy()
	plain.ObjectMeta = meta
	out, err := MachineOSConfigFromV1(plain)
	if err != nil {
		return nil, err
	}
	extra := v1ConfigFields{}
	out.Status.MachineOSBuild = objectRefFromV1(in.Status.MachineOSBuild)
	if in.Spec.BaseImagePullSecret != nil && in.Spec.BaseImagePullSecret.Name == "" {
		extra.EmptyPullSecret = true
	}
	bi := &out.Spec.BuildInputs
	for i, cf := range in.Spec.Containerfile {
		if cf.ContainerfileArch == "" {
			if extra.ArchSpellings == nil {
				extra.ArchSpellings = map[int]mcfgv1.ContainerfileArch{}
			}
			extra.ArchSpellings[i] = ""
		}
		if spelled, ok := kept.ArchSpellings[i]; ok && i < len(bi.Containerfile) && alphaArches[spelled] == alphaArches[bi.Containerfile[i].ContainerfileArch] {
			bi.Containerfile[i].ContainerfileArch = spelled
		}
	}
	bi.BaseOSImagePullspec, bi.BaseOSExtensionsImagePullspec, bi.ReleaseVersion = kept.BaseOSImagePullspec, kept.BaseOSExtensionsImagePullspec, kept.ReleaseVersion
	out.Spec.BuildOutputs.CurrentImagePullSecret = kept.CurrentImagePullSecret
	if err := putAnnotation(&out.ObjectMeta, AnnotationV1Fields, extra); err != nil {
		return nil, err
	}
	return out, nil
}

func copyConditions(in []metav1.Condition) []metav1.Condition {
	if in == nil {
		return nil
	}
	out := make([]metav1.Condition, len(in))
	for i := range in {
		in[i].DeepCopyInto(&out[i])
	}
	return out
}

// takeAnnotation is meta without the annotation key, whose JSON is decoded into into (left
// zero when absent).
func takeAnnotation(meta metav1.ObjectMeta, key string, into any) (metav1.ObjectMeta, error) {
	out := *meta.DeepCopy()
	raw, ok := out.Annotations[key]
	if !ok {
		return out, nil
	}
	if err := json.Unmarshal([]byte(raw), into); err != nil {
		return out, fmt.Errorf("annotation %s is not what mosb wrote there: %w", key, err)
	}
	delete(out.Annotations, key)
	if len(out.Annotations) == 0 {
		out.Annotations = nil
	}
	return out, nil
}

// putAnnotation sets key to value's JSON, unless value is its type's zero (nothing to keep).
func putAnnotation(meta *metav1.ObjectMeta, key string, value any) error {
	raw, err := json.Marshal(value)
	if err != nil {
		return err
	}
	if string(raw) == "{}" {
		return nil
	}
	if meta.Annotations == nil {
		meta.Annotations = map[string]string{}
	}
	meta.Annotations[key] = string(raw)
	return nil
}

// v1alpha1BuildFields are a v1alpha1 MachineOSBuild's fields v1 has no place for.
type v1alpha1BuildFields struct {
	BuildIdentity                 string                       `json:"buildIdentity,omitempty"`
	BaseOSImagePullspec           string                       `json:"baseOSImagePullspec,omitempty"`
	BaseOSExtensionsImagePullspec string                       `json:"baseOSExtensionsImagePullspec,omitempty"`
	ReleaseVersion                string                       `json:"releaseVersion,omitempty"`
	SpecArchitectures             []string                     `json:"specArchitectures,omitempty"`
	Architectures                 []mosbv1.ArchitectureBuild   `json:"architectures,omitempty"`
	Attempt                       int32                        `json:"attempt,omitempty"`
	FailedAttempts                []mosbv1.BuildAttemptFailure `json:"failedAttempts,omitempty"`
}

// MachineOSBuildToV1 is in as v1 (see MachineOSConfigToV1).
func MachineOSBuildToV1(in *mosbv1.MachineOSBuild) (*mcfgv1.MachineOSBuild, error) {
	// v1alpha1 holds every v1 field of a MachineOSBuild (its status has builder and
	// relatedObjects: a status written through the status subresource cannot change annotations).
	meta, err := takeAnnotation(in.ObjectMeta, AnnotationV1Fields, &struct{}{})
	if err != nil {
		return nil, err
	}
	out := &mcfgv1.MachineOSBuild{TypeMeta: metav1.TypeMeta{APIVersion: mcfgv1.GroupVersion.String(), Kind: "MachineOSBuild"}, ObjectMeta: meta}
	s := in.Spec
	out.Spec.MachineOSConfig.Name = s.MachineOSConfig.Name
	out.Spec.MachineConfig.Name = s.RenderedMachineConfig
	out.Spec.RenderedImagePushSpec = mcfgv1.ImageTagFormat(s.RenderedImagePushspec)
	st := in.Status
	out.Status.Conditions = copyConditions(st.Conditions)
	out.Status.BuildStart, out.Status.BuildEnd = st.BuildStart.DeepCopy(), st.BuildEnd.DeepCopy()
	out.Status.DigestedImagePushSpec = mcfgv1.ImageDigestFormat(st.DigestedImagePushspec)
	if b := st.Builder; b != nil {
		out.Status.Builder = &mcfgv1.MachineOSBuilderReference{ImageBuilderType: mcfgv1.MachineOSImageBuilderType(b.ImageBuilderType), Job: objectRefToV1(b.Job)}
	}
	for i := range st.RelatedObjects {
		out.Status.RelatedObjects = append(out.Status.RelatedObjects, *objectRefToV1(&st.RelatedObjects[i]))
	}
	extra := v1alpha1BuildFields{
		BuildIdentity: s.BuildIdentity, BaseOSImagePullspec: s.BaseOSImagePullspec, BaseOSExtensionsImagePullspec: s.BaseOSExtensionsImagePullspec,
		ReleaseVersion: s.ReleaseVersion, SpecArchitectures: s.Architectures, Architectures: st.Architectures, Attempt: st.Attempt, FailedAttempts: st.FailedAttempts,
	}
	if err := putAnnotation(&out.ObjectMeta, AnnotationV1Alpha1Fields, extra); err != nil {
		return nil, err
	}
	return out, nil
}

// MachineOSBuildFromV1 is in as v1alpha1 (see MachineOSConfigFromV1Lossless).
func MachineOSBuildFromV1(in *mcfgv1.MachineOSBuild) (*mosbv1.MachineOSBuild, error) {
	var kept v1alpha1BuildFields
	meta, err := takeAnnotation(in.ObjectMeta, AnnotationV1Alpha1Fields, &kept)
	if err != nil {
		return nil, err
	}
	out := &mosbv1.MachineOSBuild{TypeMeta: metav1.TypeMeta{APIVersion: mosbv1.GroupVersion.String(), Kind: "MachineOSBuild"}, ObjectMeta: meta}
	out.Spec = mosbv1.MachineOSBuildSpec{
		MachineOSConfig:       mosbv1.MachineOSConfigReference{Name: in.Spec.MachineOSConfig.Name},
		RenderedMachineConfig: in.Spec.MachineConfig.Name,
		RenderedImagePushspec: mosbv1.ImageTagPushspec(in.Spec.RenderedImagePushSpec),
		BuildIdentity:         kept.BuildIdentity, BaseOSImagePullspec: kept.BaseOSImagePullspec,
		BaseOSExtensionsImagePullspec: kept.BaseOSExtensionsImagePullspec, ReleaseVersion: kept.ReleaseVersion, Architectures: kept.SpecArchitectures,
	}
	out.Status = mosbv1.MachineOSBuildStatus{
		Conditions: copyConditions(in.Status.Conditions), BuildStart: in.Status.BuildStart.DeepCopy(), BuildEnd: in.Status.BuildEnd.DeepCopy(),
		DigestedImagePushspec: string(in.Status.DigestedImagePushSpec),
		Architectures:         kept.Architectures, Attempt: kept.Attempt, FailedAttempts: kept.FailedAttempts,
	}
	if b := in.Status.Builder; b != nil {
		out.Status.Builder = &mosbv1.MachineOSBuilderReference{ImageBuilderType: string(b.ImageBuilderType), Job: objectRefFromV1(b.Job)}
	}
	for i := range in.Status.RelatedObjects {
		out.Status.RelatedObjects = append(out.Status.RelatedObjects, *objectRefFromV1(&in.Status.RelatedObjects[i]))
	}
	return out, nil
}

func objectRefToV1(r *mosbv1.ObjectReference) *mcfgv1.ObjectReference {
	if r == nil {
		return nil
	}
	return &mcfgv1.ObjectReference{Group: r.Group, Resource: r.Resource, Namespace: r.Namespace, Name: r.Name}
}

func objectRefFromV1(r *mcfgv1.ObjectReference) *mosbv1.ObjectReference {
	if r == nil {
		return nil
	}
	return &mosbv1.ObjectReference{Group: r.Group, Resource: r.Resource, Namespace: r.Namespace, Name: r.Name}
}
