package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

// GroupVersion is the group and version mosb serves its MachineOSConfig and MachineOSBuild under.
var GroupVersion = schema.GroupVersion{Group: "machineconfiguration.openshift.io", Version: "v1alpha1"}

var (
	schemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme registers MachineOSConfig and MachineOSBuild with a scheme.
	AddToScheme = schemeBuilder.AddToScheme
)

func init() {
	schemeBuilder.Register(&MachineOSConfig{}, &MachineOSConfigList{}, &MachineOSBuild{}, &MachineOSBuildList{})
}
