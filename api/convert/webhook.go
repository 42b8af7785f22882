package convert

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
)

// maxReviewBytes bounds a ConversionReview body (the API server sends lists in pages; an object
// is at most ~1.5 MiB in etcd).
const maxReviewBytes = 64 << 20

// Handler serves the CRDs' conversion webhook: ConversionReview (apiextensions.k8s.io/v1) in,
// every object converted to the desired version out. A failure names the object and why, never
// its content.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST a ConversionReview", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBytes+1))
		if err != nil || len(body) > maxReviewBytes {
			http.Error(w, "the ConversionReview cannot be read", http.StatusBadRequest)
			return
		}
		var review apiextensionsv1.ConversionReview
		if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
			http.Error(w, "the body is not a ConversionReview with a request", http.StatusBadRequest)
			return
		}
		review.Response = Review(review.Request)
		review.Request = nil
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&review)
	})
}

// Review converts every object of req to req.DesiredAPIVersion.
func Review(req *apiextensionsv1.ConversionRequest) *apiextensionsv1.ConversionResponse {
	resp := &apiextensionsv1.ConversionResponse{UID: req.UID, Result: metav1.Status{Status: metav1.StatusSuccess}}
	for i, obj := range req.Objects {
		out, err := convertRaw(obj.Raw, req.DesiredAPIVersion)
		if err != nil {
			return &apiextensionsv1.ConversionResponse{UID: req.UID, Result: metav1.Status{
				Status: metav1.StatusFailure, Reason: metav1.StatusReasonBadRequest,
				Message: fmt.Sprintf("object %d: %v", i, err),
			}}
		}
		resp.ConvertedObjects = append(resp.ConvertedObjects, runtime.RawExtension{Raw: out})
	}
	return resp
}

func convertRaw(raw []byte, desired string) ([]byte, error) {
	var head struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, fmt.Errorf("not a JSON object")
	}
	what := fmt.Sprintf("%s %q (%s)", head.Kind, head.Metadata.Name, head.APIVersion)
	if head.APIVersion == desired {
		return raw, nil
	}
	alpha, v1 := mosbv1.GroupVersion.String(), mcfgv1.GroupVersion.String()
	var out any
	var err error
	switch {
	case head.Kind == "MachineOSConfig" && head.APIVersion == alpha && desired == v1:
		out, err = decodeThen(raw, &mosbv1.MachineOSConfig{}, func(o *mosbv1.MachineOSConfig) (any, error) { return MachineOSConfigToV1(o) })
	case head.Kind == "MachineOSConfig" && head.APIVersion == v1 && desired == alpha:
		out, err = decodeThen(raw, &mcfgv1.MachineOSConfig{}, func(o *mcfgv1.MachineOSConfig) (any, error) { return MachineOSConfigFromV1Lossless(o) })
	case head.Kind == "MachineOSBuild" && head.APIVersion == alpha && desired == v1:
		out, err = decodeThen(raw, &mosbv1.MachineOSBuild{}, func(o *mosbv1.MachineOSBuild) (any, error) { return MachineOSBuildToV1(o) })
	case head.Kind == "MachineOSBuild" && head.APIVersion == v1 && desired == alpha:
		out, err = decodeThen(raw, &mcfgv1.MachineOSBuild{}, func(o *mcfgv1.MachineOSBuild) (any, error) { return MachineOSBuildFromV1(o) })
	default:
		return nil, fmt.Errorf("%s: no conversion to %s", what, desired)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return json.Marshal(out)
}

func decodeThen[T any](raw []byte, obj *T, convert func(*T) (any, error)) (any, error) {
	if err := json.Unmarshal(raw, obj); err != nil {
		return nil, fmt.Errorf("does not decode as its kind (%T)", obj)
	}
	return convert(obj)
}
