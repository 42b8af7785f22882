// Package v1alpha1 holds mosb's own API: MachineOSConfig (as the OKD v1alpha1 API reference defines it)
// and MachineOSBuild (one build attempt of a MachineOSConfig).
//
// +kubebuilder:object:generate=true
// +groupName=machineconfiguration.openshift.io
package v1alpha1
