// Package crd holds mosb's CustomResourceDefinitions, generated from api/ by `make generate`, for
// what must check an object exactly as the API server will: mosb's CLI validates a MachineOSConfig
// file with the schema and rules of the CRD the cluster serves, not with a copy of them.
package crd

import (
	"embed"
	"fmt"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

//go:embed machineconfiguration.openshift.io_*.yaml
var files embed.FS

// MachineOSConfig is the MachineOSConfig CRD as deploy/ installs it.
func MachineOSConfig() (*apiextensionsv1.CustomResourceDefinition, error) {
	return load("machineconfiguration.openshift.io_machineosconfigs.yaml")
}

// MachineOSBuild is the MachineOSBuild CRD as deploy/ installs it.
func MachineOSBuild() (*apiextensionsv1.CustomResourceDefinition, error) {
	return load("machineconfiguration.openshift.io_machineosbuilds.yaml")
}

func load(name string) (*apiextensionsv1.CustomResourceDefinition, error) {
	raw, err := files.ReadFile(name)
	if err != nil {
		return nil, err
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(raw, crd); err != nil {
		return nil, fmt.Errorf("config/crd/%s: %w", name, err)
	}
	return crd, nil
}
