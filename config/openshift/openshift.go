// Package openshift holds OpenShift's own CRD of the v1 MachineOSConfig (OpenShift 4.19 and
// later), copied from the github.com/openshift/api module mosb builds with by `make generate`
// (make verify keeps it current): mosb's CLI checks a v1 MachineOSConfig with the rules an
// OpenShift cluster applies. deploy/ never installs it: OpenShift serves it already.
package openshift

import (
	"embed"
	"fmt"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// MachineOSConfigFile is the CRD's file name here and in openshift/api.
const MachineOSConfigFile = "0000_80_machine-config_01_machineosconfigs.crd.yaml"

//go:embed 0000_80_machine-config_01_machineosconfigs.crd.yaml
var files embed.FS

// MachineOSConfig is OpenShift's MachineOSConfig CRD (version v1).
func MachineOSConfig() (*apiextensionsv1.CustomResourceDefinition, error) {
	raw, err := files.ReadFile(MachineOSConfigFile)
	if err != nil {
		return nil, err
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(raw, crd); err != nil {
		return nil, fmt.Errorf("config/openshift/%s: %w", MachineOSConfigFile, err)
	}
	return crd, nil
}
