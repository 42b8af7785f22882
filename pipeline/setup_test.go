package pipeline

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	configv1 "github.com/openshift/api/config/v1"
	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
)

// discoveryMapper answers every kind from the scheme, except one kind whose lookup fails with
// err: what a RESTMapper does when discovery of an API group fails or the group is not served.
type discoveryMapper struct {
	meta.RESTMapper
	failing string
	err     error
}

func (m discoveryMapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	if gk.Kind == m.failing {
		return nil, m.err
	}
	return m.RESTMapper.RESTMapping(gk, versions...)
}

// An optional API that is not installed turns its watch (or the pinning controller) off; any
// other discovery error stops the controller from starting, for both controllers, so that an
// API that exists is never silently left unwatched.
func TestSetupTellsNotInstalledFromDiscoveryFailure(t *testing.T) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, mosbv1.AddToScheme, mcfgv1.Install, configv1.Install} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	all := meta.NewDefaultRESTMapper(nil)
	for gvk := range scheme.AllKnownTypes() {
		all.Add(gvk, meta.RESTScopeRoot)
	}
	notInstalled := &meta.NoKindMatchError{GroupKind: schema.GroupKind{Group: mcfgv1.GroupName, Kind: "MachineConfigPool"}}
	discoveryDown := errors.New("the server is currently unable to handle the request")
	setups := map[string]func(ctrl.Manager) error{
		"build": func(mgr ctrl.Manager) error {
			return (&BuildReconciler{Namespace: "mosb"}).SetupWithManager(t.Context(), mgr)
		},
		"pinnedimages": func(mgr ctrl.Manager) error {
			return (&PinnedImagesReconciler{}).SetupWithManager(t.Context(), mgr)
		},
	}
	for name, setup := range setups {
		for _, tc := range []struct {
			err     error
			wantErr bool
		}{{notInstalled, false}, {discoveryDown, true}} {
			t.Run(name+"/"+tc.err.Error(), func(t *testing.T) {
				mgr, err := ctrl.NewManager(&rest.Config{Host: "https://127.0.0.1:1"}, ctrl.Options{
					Scheme:  scheme,
					Metrics: metricsserver.Options{BindAddress: "0"},
					MapperProvider: func(*rest.Config, *http.Client) (meta.RESTMapper, error) {
						return discoveryMapper{RESTMapper: all, failing: "MachineConfigPool", err: tc.err}, nil
					},
				})
				if err != nil {
					t.Fatal(err)
				}
				err = setup(mgr)
				switch {
				case tc.wantErr && (err == nil || !strings.Contains(err.Error(), "discovering the MachineConfigPool API")):
					t.Errorf("a discovery failure gave %v, want an error naming the API", err)
				case !tc.wantErr && err != nil:
					t.Errorf("an API that is not installed gave %v, want none", err)
				}
			})
		}
	}
}
