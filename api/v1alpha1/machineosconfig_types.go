package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MachineOSConfig describes how to build the layered OS image of the machines of one MachineConfigPool.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:path=machineosconfigs,scope=Cluster,shortName=mosc
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Pool",type=string,JSONPath=`.spec.machineConfigPool.name`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Building",type=string,JSONPath=`.status.conditions[?(@.type=="Building")].status`,priority=1
// +kubebuilder:printcolumn:name="Degraded",type=string,JSONPath=`.status.conditions[?(@.type=="Degraded")].status`,priority=1
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Image",type=string,JSONPath=`.status.currentImagePullspec`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MachineOSConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec describes the configuration of the machineosconfig
	// +required
	Spec MachineOSConfigSpec `json:"spec"`

	// status describes the status of the machineosconfig
	// +optional
	Status MachineOSConfigStatus `json:"status,omitempty"`
}

// MachineOSConfigSpec is the spec of a MachineOSConfig.
type MachineOSConfigSpec struct {
	// machineConfigPool is the pool which the build is for
	// +required
	MachineConfigPool MachineConfigPoolReference `json:"machineConfigPool"`

	// buildInputs is where user input options for the build live
	// +required
	BuildInputs BuildInputs `json:"buildInputs"`

	// buildOutputs is where user input options for the build live
	// +optional
	BuildOutputs BuildOutputs `json:"buildOutputs,omitempty"`
}

// BuildInputs are what goes into the image.
type BuildInputs struct {
	// baseOSExtensionsImagePullspec is the base Extensions image used in the build process.
	// The format of the image pullspec is: host[:port][/namespace]/name@sha256:<digest>
	// When empty, it is taken from the machine-config-osimageurl ConfigMap.
	// +optional
	BaseOSExtensionsImagePullspec ImageDigestFormat `json:"baseOSExtensionsImagePullspec,omitempty"`

	// baseOSImagePullspec is the base OSImage we use to build our custom image.
	// The format of the image pullspec is: host[:port][/namespace]/name@sha256:<digest>
	// When empty, it is taken from the machine-config-osimageurl ConfigMap.
	// +optional
	BaseOSImagePullspec ImageDigestFormat `json:"baseOSImagePullspec,omitempty"`

	// baseImagePullSecret is the secret used to pull the base image.
	// It must live in the build namespace (openshift-machine-config-operator by default).
	// +required
	BaseImagePullSecret ImageSecretObjectReference `json:"baseImagePullSecret"`

	// imageBuilder describes which image builder will be used in each build triggered by this MachineOSConfig.
	// +required
	ImageBuilder MachineOSImageBuilder `json:"imageBuilder"`

	// renderedImagePushSecret is the secret used to connect to a user registry. The push secret is used
	// only by the build to push the final image; nodes only need the (separate) pull secret.
	// +required
	RenderedImagePushSecret ImageSecretObjectReference `json:"renderedImagePushSecret"`

	// renderedImagePushspec describes the location of the final image.
	// The format of the image pushspec is: host[:port][/namespace]/name:<tag> or
	// svc_name.namespace.svc[:port]/repository/name:<tag>
	// +required
	RenderedImagePushspec ImageTagPushspec `json:"renderedImagePushspec"`

	// releaseVersion is associated with the base OS Image: the version of OpenShift the base image
	// belongs to (for example 4.16.0-0.nightly-2024-04-03-065948). mosb populates it from the
	// machine-config-osimageurl ConfigMap when it is empty. It becomes a label of the built image.
	// +optional
	ReleaseVersion string `json:"releaseVersion,omitempty"`

	// containerFile describes the custom data the user has specified to build into the image.
	// This is commonly called a Dockerfile and can be treated as such. At most one entry per
	// architecture; aarch64 and arm64 (and x86_64 and amd64) name the same architecture.
	// +optional
	// +listType=map
	// +listMapKey=containerfileArch
	// +kubebuilder:validation:MaxItems=7
	// +kubebuilder:validation:XValidation:rule="!(self.exists(c, c.containerfileArch == 'arm64') && self.exists(c, c.containerfileArch == 'aarch64'))",message="containerFile has two entries for the same architecture: arm64 and aarch64 are the same; keep one"
	// +kubebuilder:validation:XValidation:rule="!(self.exists(c, c.containerfileArch == 'amd64') && self.exists(c, c.containerfileArch == 'x86_64'))",message="containerFile has two entries for the same architecture: amd64 and x86_64 are the same; keep one"
	Containerfile []MachineOSContainerfile `json:"containerFile,omitempty"`
}

// ContainerfileArch is an architecture as users write it.
// +kubebuilder:validation:Enum=arm64;amd64;ppc64le;s390x;aarch64;x86_64;noarch
type ContainerfileArch string

// The architectures a containerFile entry may name.
const (
	ArchARM64   ContainerfileArch = "arm64"
	ArchAMD64   ContainerfileArch = "amd64"
	ArchPPC64LE ContainerfileArch = "ppc64le"
	ArchS390X   ContainerfileArch = "s390x"
	ArchAArch64 ContainerfileArch = "aarch64"
	ArchX86_64  ContainerfileArch = "x86_64"
	// NoArch is the entry that applies to every architecture without an entry of its own.
	NoArch ContainerfileArch = "noarch"
)

// MachineOSContainerfile contains all custom content the user wants built into the image.
type MachineOSContainerfile struct {
	// containerfileArch describes the architecture this containerfile is to be built for.
	// When omitted, the content applies to all architectures (noarch).
	// +optional
	// +kubebuilder:default=noarch
	ContainerfileArch ContainerfileArch `json:"containerfileArch,omitempty"`

	// content is the custom content to be built
	// +required
	// +kubebuilder:validation:MinLength=1
	Content string `json:"content"`
}

// MachineOSImageBuilder names the backend that builds images.
type MachineOSImageBuilder struct {
	// imageBuilderType specifies the backend to be used to build the image.
	// Valid options are: PodImageBuilder
	// +required
	ImageBuilderType MachineOSImageBuilderType `json:"imageBuilderType"`
}

// MachineOSImageBuilderType is the backend that builds images.
// +kubebuilder:validation:Enum=PodImageBuilder
type MachineOSImageBuilderType string

// PodImageBuilder builds each architecture's image in a pod.
const PodImageBuilder MachineOSImageBuilderType = "PodImageBuilder"

// BuildOutputs is where the user says how the built image is consumed.
type BuildOutputs struct {
	// currentImagePullSecret is the secret used to pull the final produced image.
	// It must live in the build namespace.
	// +optional
	CurrentImagePullSecret *ImageSecretObjectReference `json:"currentImagePullSecret,omitempty"`
}

// MachineConfigPoolReference refers to a MachineConfigPool.
type MachineConfigPoolReference struct {
	// name of the MachineConfigPool object.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// ImageSecretObjectReference refers to a Secret in the build namespace.
type ImageSecretObjectReference struct {
	// name is the name of the secret used to push or pull this MachineOSConfig object.
	// This secret must be in the build namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// MachineOSConfigStatus is what mosb reports about a MachineOSConfig.
type MachineOSConfigStatus struct {
	// conditions are state related conditions for the config.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchMergeKey=type
	// +patchStrategy=merge
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`

	// observedGeneration represents the generation observed by the controller.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// currentImagePullspec is the fully qualified image pull spec used by the MCO to pull down the
	// new OSImage. It always includes the sha256 digest.
	// +optional
	CurrentImagePullspec ImageDigestFormat `json:"currentImagePullspec,omitempty"`

	// machineOSBuild is the MachineOSBuild of the current image, as v1's status names it (kept
	// here so that a status written through v1 loses nothing).
	// +optional
	MachineOSBuild *ObjectReference `json:"machineOSBuild,omitempty"`
}

// ObjectReference names an object by group, resource, namespace and name, as v1 does.
type ObjectReference struct {
	// group of the referent; empty for the core API group.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Group string `json:"group"`
	// resource of the referent.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Resource string `json:"resource"`
	// namespace of the referent; empty for a cluster-scoped object.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
	// name of the referent.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// MachineOSConfigList is a list of MachineOSConfigs.
//
// +kubebuilder:object:root=true
type MachineOSConfigList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MachineOSConfig `json:"items"`
}

// ImageDigestFormat is an image referenced by digest: host[:port][/namespace]/name@sha256:<64 lowercase hex>.
// The rules are kept equal to registry.ValidateDigestPullspec (a test compares them).
//
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=447
// +kubebuilder:validation:XValidation:rule=`self.contains('@')`,message="the image must be referenced by digest (host[:port][/namespace]/name@sha256:<64 lowercase hex>), not by tag"
// +kubebuilder:validation:XValidation:rule=`!self.contains('@') || self.substring(self.lastIndexOf('@')).matches('^@sha256:[a-f0-9]{64}$')`,message="the digest must be sha256: followed by exactly 64 lowercase hexadecimal characters"
// +kubebuilder:validation:XValidation:rule=`!self.contains('@') || self.substring(0, self.lastIndexOf('@')).matches('^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*(:[0-9]{1,5})?(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)+$')`,message="the image name must be host[:port][/namespace]/name: a registry host, an optional port, then lowercase path components"
type ImageDigestFormat string

// ImageTagPushspec is where a built image is pushed: host[:port][/namespace]/name:<tag> or
// svc_name.namespace.svc[:port]/repository/name:<tag>. The rules are kept equal to
// registry.ValidateTagPushspec (a test compares them).
//
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=447
// +kubebuilder:validation:XValidation:rule=`!self.contains('@')`,message="the pushspec must name a tag (host[:port][/namespace]/name:<tag>), not a digest"
// +kubebuilder:validation:XValidation:rule=`self.contains('@') || self.matches('^[^/]+/.*:[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127}$')`,message="the pushspec must end with a tag (:<tag>, up to 128 letters, digits, '_', '.', '-'), e.g. registry.example.com/os/worker:latest"
// +kubebuilder:validation:XValidation:rule=`self.contains('@') || !self.matches('^[^/]+/.*:[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127}$') || self.substring(0, self.lastIndexOf(':')).matches('^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*(:[0-9]{1,5})?(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)+$')`,message="the pushspec name must be host[:port][/namespace]/name or svc_name.namespace.svc[:port]/repository/name: a registry host, an optional port, then lowercase path components"
type ImageTagPushspec string
