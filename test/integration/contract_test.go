package integration

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/mosb-dev/mosb/api/validation"
	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/test/harness"
)

// unknownFieldRE finds the fields the API server's strict field validation names.
var unknownFieldRE = regexp.MustCompile(`unknown field "([^"]+)"`)

// TestTheCLIAndTheAPIServerAgreeOnEveryMachineOSConfig holds mosb's CLI to the cluster's verdict
// over a shared corpus (api/validation/testdata/machineosconfigs): each object is created on the
// API server (dry run, strict field validation as kubectl does by default) and given to
// `mosb render`. The server accepts exactly valid/; the CLI renders each of those and refuses each
// of invalid/ as InvalidMachineOSConfig, naming every field the server named. The in-process
// validator the CLI uses names exactly the server's fields.
func TestTheCLIAndTheAPIServerAgreeOnEveryMachineOSConfig(t *testing.T) {
	cp := controlPlane(t)
	ctx := testContext(t)
	mosb := harness.MosbBinary(t)
	validator, err := validation.MachineOSConfig()
	if err != nil {
		t.Fatal(err)
	}
	cluster := t.TempDir()
	if err := os.WriteFile(filepath.Join(cluster, "osimageurl.yaml"), []byte(`apiVersion: v1
kind: ConfigMap
metadata:
  name: machine-config-osimageurl
  namespace: openshift-machine-config-operator
data:
  baseOSContainerImage: quay.io/openshift/os@`+digest+`
`), 0o600); err != nil {
		t.Fatal(err)
	}
	corpus := filepath.Join(harness.RepoRoot(), "api", "validation", "testdata", "machineosconfigs")
	seen := map[string]int{}
	for _, verdict := range []string{"valid", "invalid"} {
		files, err := filepath.Glob(filepath.Join(corpus, verdict, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		seen[verdict] = len(files)
		for _, file := range files {
			t.Run(verdict+"/"+strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
				raw, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				obj := map[string]any{}
				if err := yaml.Unmarshal(raw, &obj); err != nil {
					t.Fatal(err)
				}
				serverFields, serverErr := serverVerdict(ctx, cp.Client, obj)
				if accepted := serverErr == nil; accepted != (verdict == "valid") {
					t.Fatalf("the API server disagrees with the corpus (%s): %v", verdict, serverErr)
				}
				inProcess := fieldsOf(validator.ValidateCreate(ctx, obj))
				if !slices.Equal(inProcess, serverFields) {
					t.Errorf("the in-process validator names %q, the API server %q (%v)", inProcess, serverFields, serverErr)
				}

				cmd := exec.CommandContext(ctx, mosb, "render", "-f", file, "--cluster-config", cluster, "--show", "containerfile")
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				err = cmd.Run()
				var exit *exec.ExitError
				switch {
				case verdict == "valid" && err != nil:
					t.Fatalf("mosb render refused what the API server accepts: %v\n%s", err, stderr.String())
				case verdict == "invalid" && (!errors.As(err, &exit) || exit.ExitCode() != 2):
					t.Fatalf("mosb render: %v, want exit 2 as the API server refuses it (%v)\n%s", err, serverErr, stderr.String())
				case verdict == "invalid":
					msg := stderr.String()
					if !strings.Contains(msg, pipeline.ReasonInvalidMachineOSConfig+": ") || !strings.Contains(msg, "breaks the rules of its CRD") {
						t.Errorf("want an InvalidMachineOSConfig refusal by the CRD's rules:\n%s", msg)
					}
					for _, f := range serverFields {
						if !strings.Contains(msg, f) {
							t.Errorf("the API server names %s, mosb render does not:\n%s\nserver: %v", f, msg, serverErr)
						}
					}
				}
			})
		}
	}
	if seen["valid"] < 5 || seen["invalid"] < 20 {
		t.Fatalf("the corpus is too small: %v", seen)
	}
}

// serverVerdict creates obj as a dry run and returns the fields the API server's refusal names,
// sorted.
func serverVerdict(ctx context.Context, c client.Client, obj map[string]any) ([]string, error) {
	u := &unstructured.Unstructured{Object: obj}
	err := c.Create(ctx, u.DeepCopy(), client.DryRunAll, client.FieldValidation("Strict"))
	if err == nil {
		return nil, nil
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) || (!apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err)) {
		return nil, err
	}
	var fields []string
	for _, m := range unknownFieldRE.FindAllStringSubmatch(err.Error(), -1) {
		fields = append(fields, m[1])
	}
	if d := status.Status().Details; d != nil {
		for _, cause := range d.Causes {
			if cause.Field != "" && cause.Field != "<nil>" {
				fields = append(fields, cause.Field)
			}
		}
	}
	slices.Sort(fields)
	return slices.Compact(fields), err
}

func fieldsOf(errs field.ErrorList) []string {
	var fields []string
	for _, e := range errs {
		if e.Field != "" && e.Field != "<nil>" {
			fields = append(fields, e.Field)
		}
	}
	slices.Sort(fields)
	return slices.Compact(fields)
}
