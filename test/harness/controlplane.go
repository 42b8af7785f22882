package harness

import (
	"os"
	"path/filepath"

	configv1 "github.com/openshift/api/config/v1"
	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	mosbv1alpha1 "github.com/mosb-dev/mosb/api/v1alpha1"
)

// OpenShiftCRDs are the openshift/api CRD manifests of the resources mosb reads, relative to the
// github.com/openshift/api module. Where a resource has feature-set variants, the Default one.
// openshift/api's own v1 machineosconfigs/machineosbuilds are deliberately absent: mosb serves its
// v1alpha1 under those names.
var OpenShiftCRDs = []string{
	"config/v1/zz_generated.crd-manifests/0000_03_config-operator_01_proxies.crd.yaml",
	"config/v1/zz_generated.crd-manifests/0000_10_config-operator_01_images-Default.crd.yaml",
	"config/v1/zz_generated.crd-manifests/0000_10_config-operator_01_imagedigestmirrorsets.crd.yaml",
	"config/v1/zz_generated.crd-manifests/0000_10_config-operator_01_imagecontentpolicies.crd.yaml",
	"config/v1/zz_generated.crd-manifests/0000_10_config-operator_01_imagetagmirrorsets.crd.yaml",
	"machineconfiguration/v1/zz_generated.crd-manifests/0000_80_machine-config_01_machineconfigpools.crd.yaml",
	"machineconfiguration/v1/zz_generated.crd-manifests/0000_80_machine-config_01_machineconfigs.crd.yaml",
	"machineconfiguration/v1/zz_generated.crd-manifests/0000_80_machine-config_01_pinnedimagesets.crd.yaml",
}

// Scheme knows every type mosb reads or writes.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, mosbv1alpha1.AddToScheme,
		configv1.Install, mcfgv1.Install,
	} {
		if err := add(s); err != nil {
			panic(err) // a scheme registration conflict is a programming error, found by any test
		}
	}
	return s
}

// ControlPlane is a running kube-apiserver + etcd with mosb's and the OpenShift CRDs installed.
type ControlPlane struct {
	Config *rest.Config
	Client client.Client
	// Kubeconfig is a file with cluster-admin credentials, for kubectl and for mosb's own commands.
	Kubeconfig string
	// Assets is the directory holding etcd, kube-apiserver and kubectl.
	Assets string

	env *envtest.Environment
}

// ControlPlaneOption adjusts a control plane before it starts.
type ControlPlaneOption func(*envtest.Environment)

// WithoutOpenShiftCRDs starts a control plane with mosb's CRDs only, as on a cluster that lacks
// the optional OpenShift APIs.
func WithoutOpenShiftCRDs() ControlPlaneOption {
	return func(e *envtest.Environment) {
		e.CRDInstallOptions.Paths = e.CRDInstallOptions.Paths[:1]
	}
}

// WithOpenShiftMachineOSConfigs serves OpenShift's own v1 MachineOSConfig CRD (config/openshift)
// in place of mosb's CRDs, as an OpenShift 4.19 cluster does.
func WithOpenShiftMachineOSConfigs() ControlPlaneOption {
	return func(e *envtest.Environment) {
		e.CRDInstallOptions.Paths[0] = filepath.Join(RepoRoot(), "config", "openshift")
	}
}

// StartControlPlane starts a control plane for the test and stops it when the test ends.
func StartControlPlane(t T, opts ...ControlPlaneOption) *ControlPlane {
	t.Helper()
	assets := KubeAssets(t)
	paths := []string{filepath.Join(RepoRoot(), "config", "crd")}
	openshift := GoModuleDir(t, "github.com/openshift/api")
	for _, p := range OpenShiftCRDs {
		paths = append(paths, filepath.Join(openshift, p))
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		Scheme:                Scheme(),
		CRDInstallOptions: envtest.CRDInstallOptions{
			Paths:              paths,
			ErrorIfPathMissing: true,
		},
	}
	for _, o := range opts {
		o(env)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting kube-apiserver + etcd from %s: %v", assets, err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Logf("stopping control plane: %v", err)
		}
	})
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatalf("client for control plane: %v", err)
	}
	cp := &ControlPlane{Config: cfg, Client: c, Assets: assets, env: env}
	cp.Kubeconfig = cp.KubeconfigFor(t, "mosb-test-admin", "system:masters")
	return cp
}

// KubeconfigFor writes a kubeconfig for a user authenticated by a client certificate (user name
// and groups as Kubernetes reads them from it) and returns its path.
func (cp *ControlPlane) KubeconfigFor(t T, user string, groups ...string) string {
	t.Helper()
	u, err := cp.env.AddUser(envtest.User{Name: user, Groups: groups}, nil)
	if err != nil {
		t.Fatalf("adding user %s: %v", user, err)
	}
	kc, err := u.KubeConfig()
	if err != nil {
		t.Fatalf("kubeconfig of %s: %v", user, err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
