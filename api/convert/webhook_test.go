package convert_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/mosb-dev/mosb/api/convert"
	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
)

func review(t *testing.T, srv *httptest.Server, desired string, objs ...any) *apiextensionsv1.ConversionResponse {
	t.Helper()
	req := apiextensionsv1.ConversionReview{TypeMeta: metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "ConversionReview"},
		Request: &apiextensionsv1.ConversionRequest{UID: "uid-1", DesiredAPIVersion: desired}}
	for _, o := range objs {
		raw, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		req.Request.Objects = append(req.Request.Objects, runtime.RawExtension{Raw: raw})
	}
	body, _ := json.Marshal(req)
	resp, err := http.Post(srv.URL, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out apiextensionsv1.ConversionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Response == nil || out.Response.UID != "uid-1" {
		t.Fatalf("response %+v, %v", out, err)
	}
	return out.Response
}

// The webhook converts a mixed list both ways and back to the same objects.
func TestTheWebhookConvertsBothKindsBothWays(t *testing.T) {
	srv := httptest.NewServer(convert.Handler())
	defer srv.Close()
	f := filler(4)
	mosc, mosb := &mosbv1.MachineOSConfig{}, &mosbv1.MachineOSBuild{}
	f.Fill(mosc)
	f.Fill(mosb)
	mosc.TypeMeta = metav1.TypeMeta{APIVersion: mosbv1.GroupVersion.String(), Kind: "MachineOSConfig"}
	mosb.TypeMeta = metav1.TypeMeta{APIVersion: mosbv1.GroupVersion.String(), Kind: "MachineOSBuild"}

	toV1 := review(t, srv, mcfgv1.GroupVersion.String(), mosc, mosb)
	if toV1.Result.Status != metav1.StatusSuccess || len(toV1.ConvertedObjects) != 2 {
		t.Fatalf("to v1: %+v", toV1.Result)
	}
	var v1Config mcfgv1.MachineOSConfig
	if err := json.Unmarshal(toV1.ConvertedObjects[0].Raw, &v1Config); err != nil || v1Config.APIVersion != mcfgv1.GroupVersion.String() {
		t.Fatalf("converted %s (%v)", toV1.ConvertedObjects[0].Raw, err)
	}
	var raws []any
	for _, o := range toV1.ConvertedObjects {
		raws = append(raws, json.RawMessage(o.Raw))
	}
	back := review(t, srv, mosbv1.GroupVersion.String(), raws...)
	var gotConfig mosbv1.MachineOSConfig
	var gotBuild mosbv1.MachineOSBuild
	if err := json.Unmarshal(back.ConvertedObjects[0].Raw, &gotConfig); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(back.ConvertedObjects[1].Raw, &gotBuild); err != nil {
		t.Fatal(err)
	}
	// Through JSON, times keep seconds (as the API server's do): compare through JSON too.
	for _, pair := range [][2]any{{mosc, &gotConfig}, {mosb, &gotBuild}} {
		want, got := roundJSON(t, pair[0]), roundJSON(t, pair[1])
		if !equality.Semantic.DeepEqual(want, got) {
			t.Errorf("through the webhook and back:\n%s", diff(want, got))
		}
	}
}

func roundJSON(t *testing.T, o any) map[string]any {
	raw, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTheWebhookRefusesWhatItCannotConvert(t *testing.T) {
	srv := httptest.NewServer(convert.Handler())
	defer srv.Close()
	const secret = "content-never-echoed"
	bad := map[string]any{"apiVersion": mosbv1.GroupVersion.String(), "kind": "MachineOSConfig", "metadata": map[string]any{"name": "worker"},
		"spec": map[string]any{"buildInputs": map[string]any{"imageBuilder": map[string]any{"imageBuilderType": "Kaniko"}, "releaseVersion": secret}}}
	resp := review(t, srv, mcfgv1.GroupVersion.String(), bad)
	if resp.Result.Status != metav1.StatusFailure || !strings.Contains(resp.Result.Message, `MachineOSConfig "worker"`) ||
		!strings.Contains(resp.Result.Message, "imageBuilderType") || strings.Contains(resp.Result.Message, secret) {
		t.Errorf("result %+v", resp.Result)
	}
	other := map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "x"}}
	if resp := review(t, srv, mcfgv1.GroupVersion.String(), other); resp.Result.Status != metav1.StatusFailure {
		t.Errorf("a ConfigMap was converted: %+v", resp.Result)
	}
	if r, err := http.Get(srv.URL); err != nil || r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %v %v", r, err)
	}
}
