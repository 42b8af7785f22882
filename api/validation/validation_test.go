package validation_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/mosb-dev/mosb/api/validation"
	"github.com/mosb-dev/mosb/config/crd"
)

// The corpus is shared with test/integration, which checks that the API server, given the same
// CRD, accepts exactly testdata/machineosconfigs/valid and that mosb's CLI agrees with it.

func machineOSConfigValidator(t *testing.T) *validation.Validator {
	t.Helper()
	v, err := validation.MachineOSConfig()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func corpus(t *testing.T, verdict string) map[string]map[string]any {
	t.Helper()
	return corpusOf(t, "machineosconfigs", verdict)
}

func corpusOf(t *testing.T, dir, verdict string) map[string]map[string]any {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", dir, verdict, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no %s corpus: %v", verdict, err)
	}
	out := map[string]map[string]any{}
	for _, f := range files {
		out[filepath.Base(f)] = readObject(t, f)
	}
	return out
}

// readObject is a YAML file's one object, as the API server's decoder would see it.
func readObject(t *testing.T, path string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	obj := map[string]any{}
	if err := yaml.Unmarshal(raw, &obj); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return obj
}

func TestCorpusVerdicts(t *testing.T) {
	v1, err := validation.MachineOSConfigV1()
	if err != nil {
		t.Fatal(err)
	}
	for dir, v := range map[string]*validation.Validator{"machineosconfigs": machineOSConfigValidator(t), "machineosconfigs-v1": v1} {
		for name, obj := range corpusOf(t, dir, "valid") {
			if errs := v.ValidateCreate(context.Background(), obj); len(errs) > 0 {
				t.Errorf("%s/valid/%s refused: %s", dir, name, validation.Describe(errs))
			}
		}
		for name, obj := range corpusOf(t, dir, "invalid") {
			if errs := v.ValidateCreate(context.Background(), obj); len(errs) == 0 {
				t.Errorf("%s/invalid/%s accepted", dir, name)
			}
		}
	}
}

func TestValidateCreateLeavesItsInputAlone(t *testing.T) {
	v := machineOSConfigValidator(t)
	obj := corpus(t, "valid")["arch-omitted.yaml"]
	before, _ := yaml.Marshal(obj)
	v.ValidateCreate(context.Background(), obj)
	if after, _ := yaml.Marshal(obj); string(after) != string(before) {
		t.Fatalf("the object was changed (defaulted?):\n%s", after)
	}
}

func TestDescribeNeverShowsAValue(t *testing.T) {
	v := machineOSConfigValidator(t)
	const secretish = "Pw736563726574Z"
	obj := corpus(t, "valid")["minimal.yaml"]
	spec := obj["spec"].(map[string]any)["buildInputs"].(map[string]any)
	spec["renderedImagePushspec"] = "registry.example.com/" + secretish
	spec["imageBuilder"] = map[string]any{"imageBuilderType": secretish}
	spec["containerFile"] = []any{map[string]any{"containerfileArch": secretish, "content": "RUN " + secretish}}
	errs := v.ValidateCreate(context.Background(), obj)
	if len(errs) == 0 {
		t.Fatal("accepted")
	}
	if got := validation.Describe(errs); strings.Contains(got, secretish) || !strings.Contains(got, "spec.buildInputs.imageBuilder.imageBuilderType") {
		t.Fatalf("want the fields named and no value shown: %s", got)
	}
}

func TestNewRefusesAVersionTheCRDDoesNotServe(t *testing.T) {
	c, err := crd.MachineOSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := validation.New(c, "v2"); err == nil {
		t.Fatal("no error for a version the CRD does not have")
	}
	// mosb's CRD serves OpenShift's v1 beside v1alpha1.
	if _, err := validation.New(c, "v1"); err != nil {
		t.Fatalf("v1: %v", err)
	}
}

// TestExamplesAreValid holds the examples a user copies to the CRD of their version.
func TestExamplesAreValid(t *testing.T) {
	v1, err := validation.MachineOSConfigV1()
	if err != nil {
		t.Fatal(err)
	}
	validators := map[string]*validation.Validator{}
	for _, v := range []*validation.Validator{machineOSConfigValidator(t), v1} {
		validators[v.GroupVersionKind().GroupVersion().String()] = v
	}
	files, err := filepath.Glob(filepath.Join("..", "..", "examples", "*.yaml"))
	if err != nil || len(files) < 2 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		obj := readObject(t, f)
		apiVersion, _ := obj["apiVersion"].(string)
		v := validators[apiVersion]
		if v == nil || obj["kind"] != "MachineOSConfig" {
			t.Errorf("%s: a %v %v, not a MachineOSConfig of a version mosb reads", f, obj["apiVersion"], obj["kind"])
			continue
		}
		if errs := v.ValidateCreate(context.Background(), obj); len(errs) > 0 {
			t.Errorf("%s refused: %s", f, validation.Describe(errs))
		}
	}
}
