package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MachineOSBuild is one build attempt of one MachineOSConfig for one build identity. Its name is
// <machineosconfig>-<short identity hash>, so the same inputs always map to the same object.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:path=machineosbuilds,scope=Cluster,shortName=mosb
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Config",type=string,JSONPath=`.spec.machineOSConfig.name`
// +kubebuilder:printcolumn:name="Prepared",type=string,JSONPath=`.status.conditions[?(@.type=="Prepared")].status`,priority=1
// +kubebuilder:printcolumn:name="Building",type=string,JSONPath=`.status.conditions[?(@.type=="Building")].status`
// +kubebuilder:printcolumn:name="Succeeded",type=string,JSONPath=`.status.conditions[?(@.type=="Succeeded")].status`
// +kubebuilder:printcolumn:name="Failed",type=string,JSONPath=`.status.conditions[?(@.type=="Failed")].status`
// +kubebuilder:printcolumn:name="Interrupted",type=string,JSONPath=`.status.conditions[?(@.type=="Interrupted")].status`,priority=1
// +kubebuilder:printcolumn:name="Image",type=string,JSONPath=`.status.digestedImagePushspec`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MachineOSBuild struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec MachineOSBuildSpec `json:"spec"`

	// +optional
	Status MachineOSBuildStatus `json:"status,omitempty"`
}

// MachineOSBuildSpec records everything a build was made from. It never changes after creation:
// a change of inputs is a new identity and so a new MachineOSBuild.
//
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="MachineOSBuild spec is immutable; a change of inputs is a new MachineOSBuild"
type MachineOSBuildSpec struct {
	// machineOSConfig is the MachineOSConfig this build is for.
	// +required
	MachineOSConfig MachineOSConfigReference `json:"machineOSConfig"`

	// renderedMachineConfig is the name of the pool's rendered MachineConfig built into the image, if any.
	// +optional
	RenderedMachineConfig string `json:"renderedMachineConfig,omitempty"`

	// buildIdentity is the hash of every input that changes the image.
	// +required
	// +kubebuilder:validation:MinLength=1
	BuildIdentity string `json:"buildIdentity"`

	// renderedImagePushspec is the tag the image is pushed to.
	// +required
	RenderedImagePushspec ImageTagPushspec `json:"renderedImagePushspec"`

	// baseOSImagePullspec is the base image actually used (from the MachineOSConfig or the cluster default).
	// +optional
	BaseOSImagePullspec string `json:"baseOSImagePullspec,omitempty"`

	// baseOSExtensionsImagePullspec is the extensions image actually used, if any.
	// +optional
	BaseOSExtensionsImagePullspec string `json:"baseOSExtensionsImagePullspec,omitempty"`

	// releaseVersion is the release version actually used, if any.
	// +optional
	ReleaseVersion string `json:"releaseVersion,omitempty"`

	// architectures are the normalised architectures built (amd64, arm64, ppc64le, s390x).
	// +optional
	// +listType=set
	Architectures []string `json:"architectures,omitempty"`
}

// MachineOSConfigReference refers to a MachineOSConfig.
type MachineOSConfigReference struct {
	// name of the MachineOSConfig.
	// +required
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
}

// MachineOSBuildStatus is the progress and result of a build.
type MachineOSBuildStatus struct {
	// conditions: Prepared, Building, Succeeded, Failed, Interrupted.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// architectures holds one result per architecture built.
	// +optional
	// +listType=map
	// +listMapKey=architecture
	Architectures []ArchitectureBuild `json:"architectures,omitempty"`

	// digestedImagePushspec is the final image by digest (the index digest when several architectures were built).
	// +optional
	DigestedImagePushspec string `json:"digestedImagePushspec,omitempty"`

	// buildStart is when the first build pod was created.
	// +optional
	BuildStart *metav1.Time `json:"buildStart,omitempty"`

	// buildEnd is when the build reached a final state.
	// +optional
	BuildEnd *metav1.Time `json:"buildEnd,omitempty"`

	// attempt is the current attempt, from 1. A transient failure (a deleted or evicted pod, an
	// unreachable registry) starts the next attempt after a backoff, up to the controller's
	// --max-retries.
	// +optional
	Attempt int32 `json:"attempt,omitempty"`

	// failedAttempts records every attempt that failed and was retried, oldest first.
	// +optional
	// +listType=atomic
	FailedAttempts []BuildAttemptFailure `json:"failedAttempts,omitempty"`

	// builder is what v1's status says built the image (kept here so that a status written
	// through v1 loses nothing).
	// +optional
	Builder *MachineOSBuilderReference `json:"builder,omitempty"`

	// relatedObjects are v1's objects related to the build (kept here as for builder).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	RelatedObjects []ObjectReference `json:"relatedObjects,omitempty"`
}

// MachineOSBuilderReference is v1's builder of a MachineOSBuild.
type MachineOSBuilderReference struct {
	// imageBuilderType is the builder: Job in v1.
	// +required
	// +kubebuilder:validation:MaxLength=63
	ImageBuilderType string `json:"imageBuilderType"`
	// job is the Job that built the image.
	// +optional
	Job *ObjectReference `json:"job,omitempty"`
}

// BuildAttemptFailure is why one attempt of a build failed.
type BuildAttemptFailure struct {
	// attempt is the attempt's number.
	Attempt int32 `json:"attempt"`
	// reason is CamelCase: Interrupted, PodEvicted, PushFailed, OutOfMemory, ...
	Reason string `json:"reason"`
	// message says what happened, with the end of the build log where there is one.
	// +optional
	Message string `json:"message,omitempty"`
	// time is when the failure was seen.
	Time metav1.Time `json:"time"`
}

// ArchitectureBuild is the result of building one architecture.
type ArchitectureBuild struct {
	// architecture is the normalised architecture (amd64, arm64, ppc64le, s390x).
	// +required
	Architecture string `json:"architecture"`

	// jobName is the batch/v1 Job that builds this architecture (its current attempt).
	// +optional
	// +kubebuilder:validation:MaxLength=63
	JobName string `json:"jobName,omitempty"`

	// podName is the build pod of this architecture: the pod its Job made.
	// +optional
	PodName string `json:"podName,omitempty"`

	// containerfileArch is the containerFile entry used (the architecture's own, noarch, or empty when
	// the image was built without user content).
	// +optional
	ContainerfileArch string `json:"containerfileArch,omitempty"`

	// digestedImagePushspec is this architecture's image by digest.
	// +optional
	DigestedImagePushspec string `json:"digestedImagePushspec,omitempty"`

	// storageDriver is the containers/storage driver the build ran with: overlay, or vfs where an
	// overlay mount was impossible on the node (the message then says why).
	// +optional
	StorageDriver string `json:"storageDriver,omitempty"`

	// message says what happened to this architecture's build, e.g. why it failed.
	// +optional
	Message string `json:"message,omitempty"`
}

// MachineOSBuildList is a list of MachineOSBuilds.
//
// +kubebuilder:object:root=true
type MachineOSBuildList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MachineOSBuild `json:"items"`
}

// Condition types of a MachineOSBuild.
const (
	MachineOSBuildPrepared    = "Prepared"
	MachineOSBuildBuilding    = "Building"
	MachineOSBuildSucceeded   = "Succeeded"
	MachineOSBuildFailed      = "Failed"
	MachineOSBuildInterrupted = "Interrupted"
)

// Condition types of a MachineOSConfig.
const (
	MachineOSConfigReady    = "Ready"
	MachineOSConfigBuilding = "Building"
	MachineOSConfigDegraded = "Degraded"
)

// RebuildAnnotation on a MachineOSConfig forces a new build; mosb clears it once the build started.
const RebuildAnnotation = "machineconfiguration.openshift.io/rebuild"
