package pipeline

import (
	"github.com/mosb-dev/mosb/builder/buildpod"
)

// Where RUN steps see the package-install inputs, as the Machine Config Operator mounts them.
const (
	EntitlementTarget = "/etc/pki/entitlement"
	YumReposTarget    = "/etc/yum.repos.d"
	RPMGPGTarget      = "/etc/pki/rpm-gpg"
)

// RunMountNames name the objects of the build namespace whose content RUN steps get, when they
// exist: RHEL entitlement certificates (a Secret), yum repository definitions and RPM GPG keys
// (ConfigMaps). An empty name is not looked for.
type RunMountNames struct {
	EntitlementSecret, YumReposConfigMap, RPMGPGConfigMap string
}

// DefaultRunMountNames are the Machine Config Operator's names.
func DefaultRunMountNames() RunMountNames {
	return RunMountNames{EntitlementSecret: "etc-pki-entitlement", YumReposConfigMap: "etc-yum-repos-d", RPMGPGConfigMap: "etc-pki-rpm-gpg"}
}

// RunMounts are the mounts of the named objects that exist (secretExists, configMapExists),
// in a fixed order.
func (n RunMountNames) RunMounts(secretExists, configMapExists func(name string) bool) []buildpod.RunMount {
	var out []buildpod.RunMount
	if n.EntitlementSecret != "" && secretExists(n.EntitlementSecret) {
		out = append(out, buildpod.RunMount{Secret: n.EntitlementSecret, Target: EntitlementTarget})
	}
	if n.YumReposConfigMap != "" && configMapExists(n.YumReposConfigMap) {
		out = append(out, buildpod.RunMount{ConfigMap: n.YumReposConfigMap, Target: YumReposTarget})
	}
	if n.RPMGPGConfigMap != "" && configMapExists(n.RPMGPGConfigMap) {
		out = append(out, buildpod.RunMount{ConfigMap: n.RPMGPGConfigMap, Target: RPMGPGTarget})
	}
	return out
}
