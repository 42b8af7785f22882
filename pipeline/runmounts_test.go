package pipeline_test

import (
	"reflect"
	"strings"
	"testing"

	configv1 "github.com/openshift/api/config/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/containerfiles"
	"github.com/mosb-dev/mosb/pipeline"
)

func TestRunMountsAreThoseThatExist(t *testing.T) {
	names := pipeline.DefaultRunMountNames()
	has := func(names ...string) func(string) bool {
		return func(n string) bool {
			for _, x := range names {
				if x == n {
					return true
				}
			}
			return false
		}
	}
	got := names.RunMounts(has("etc-pki-entitlement"), has("etc-pki-rpm-gpg", "etc-yum-repos-d"))
	want := []buildpod.RunMount{
		{Secret: "etc-pki-entitlement", Target: pipeline.EntitlementTarget},
		{ConfigMap: "etc-yum-repos-d", Target: pipeline.YumReposTarget},
		{ConfigMap: "etc-pki-rpm-gpg", Target: pipeline.RPMGPGTarget},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v", got)
	}
	if got := names.RunMounts(has(), has("etc-yum-repos-d")); len(got) != 1 || got[0].ConfigMap != "etc-yum-repos-d" {
		t.Errorf("only the repos: %+v", got)
	}
	names.YumReposConfigMap = ""
	if got := names.RunMounts(has("etc-yum-repos-d"), has("etc-yum-repos-d")); len(got) != 0 {
		t.Errorf("a disabled name was looked for: %+v", got)
	}
}

// TestProxyAndRunMountsReachTheRequestNotTheIdentity: the cluster's proxy and the run mounts go
// to every architecture's request and change no identity; the proxy's trusted CA goes into the
// image, so it does.
func TestProxyAndRunMountsReachTheRequestNotTheIdentity(t *testing.T) {
	in := validInputs()
	in.Arches = []string{"amd64", "arm64"}
	plain := identityOf(t, in)

	in.Cluster.Proxy = &configv1.Proxy{ObjectMeta: metav1.ObjectMeta{Name: "cluster"},
		Spec: configv1.ProxySpec{HTTPProxy: "http://u:s3cret@proxy.example:3128", NoProxy: ".svc"}}
	in.RunMounts = []buildpod.RunMount{{Secret: "etc-pki-entitlement", Target: pipeline.EntitlementTarget}}
	plan := mustPrepare(t, in)
	if plan.Identity != plain {
		t.Error("the proxy or the run mounts changed the identity")
	}
	for _, a := range plan.Arches {
		req := plan.BuildRequest(a)
		if req.Proxy.HTTPProxy != "http://u:s3cret@proxy.example:3128" || !reflect.DeepEqual(req.RunMounts, in.RunMounts) {
			t.Errorf("%s request: proxy %q, run mounts %+v", a.Arch, req.Proxy.Redacted(), req.RunMounts)
		}
		if strings.Contains(string(a.Build.Containerfile), "s3cret") {
			t.Errorf("%s: the Containerfile holds the proxy password", a.Arch)
		}
	}

	in.Cluster.Proxy.Spec.TrustedCA.Name = "user-ca-bundle"
	in.Cluster.ProxyTrustedCA = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "user-ca-bundle", Namespace: "openshift-config"},
		Data: map[string]string{"ca-bundle.crt": string(testCAs[0])}}
	plan = mustPrepare(t, in)
	if plan.Identity == plain {
		t.Error("the trusted CA, which the image holds, did not change the identity")
	}
	if cf := string(plan.Arches[0].Build.Containerfile); !strings.Contains(cf, containerfiles.TrustedCAPath) ||
		string(plan.Arches[0].Build.ContextFiles[containerfiles.ContextTrustedCA]) != string(testCAs[0]) {
		t.Errorf("the trusted CA is not copied into the image:\n%s", cf)
	}

	in.Cluster.ProxyTrustedCA = nil
	if _, err := pipeline.Prepare(in); err == nil || !strings.Contains(err.Error(), "user-ca-bundle") {
		t.Errorf("a missing trusted CA ConfigMap: %v", err)
	}
	in.Cluster.Proxy.Spec = configv1.ProxySpec{HTTPProxy: "socks5://u:s3cret@x:1"}
	_, err := pipeline.Prepare(in)
	if f, ok := err.(*pipeline.Failure); !ok || f.Reason != pipeline.ReasonInvalidClusterConfig || strings.Contains(f.Message, "s3cret") {
		t.Errorf("a bad proxy: %v", err)
	}
}
