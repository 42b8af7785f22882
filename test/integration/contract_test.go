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
// over shared corpora (api/validation/testdata): v1alpha1 objects on an API server serving mosb's
// CRD, v1 objects on one serving OpenShift's v1 CRD, as OpenShift 4.19 does. Each object is created
// (dry run, strict field validation as kubectl does by default) and given to `mosb render`. The
// server accepts exactly valid/; the CLI renders each of those and refuses each of invalid/ as
// InvalidMachineOSConfig, naming every field the server named. The in-process validator the CLI
// uses names exactly the server's fields.
func TestTheCLIAndTheAPIServerAgreeOnEveryMachineOSConfig(t *testing.T) {
	mosb := harness.MosbBinary(t)
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
	for _, version := range []struct {
		corpus    string
		validator func() (*validation.Validator, error)
		server    func(t *testing.T) *harness.ControlPlane
		minValid  int
		minRefuse int
	}{
		{"machineosconfigs", validation.MachineOSConfig, controlPlane, 5, 20},
		{"machineosconfigs-v1", validation.MachineOSConfigV1, func(t *testing.T) *harness.ControlPlane {
			return harness.StartControlPlane(t, harness.WithOpenShiftMachineOSConfigs())
		}, 4, 8},
	} {
		t.Run(version.corpus, func(t *testing.T) {
			if testing.Short() {
				t.Skip("needs kube-apiserver + etcd")
			}
			cp := version.server(t)
			ctx := testContext(t)
			validator, err := version.validator()
			if err != nil {
				t.Fatal(err)
			}
			corpus := filepath.Join(harness.RepoRoot(), "api", "validation", "testdata", version.corpus)
			seen := map[string]int{}
			for _, verdict := range []string{"valid", "invalid"} {
				files, err := filepath.Glob(filepath.Join(corpus, verdict, "*.yaml"))
				if err != nil {
					t.Fatal(err)
				}
				seen[verdict] = len(files)
				for _, file := range files {
					t.Run(verdict+"/"+strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
						agree(ctx, t, cp.Client, validator, mosb, cluster, file, verdict == "valid")
					})
				}
			}
			if seen["valid"] < version.minValid || seen["invalid"] < version.minRefuse {
				t.Fatalf("the corpus is too small: %v", seen)
			}
		})
	}
}

// agree checks one corpus file: the API server's verdict is the corpus's, the in-process validator
// names the server's fields, and `mosb render` renders it or refuses it naming them.
func agree(ctx context.Context, t *testing.T, c client.Client, validator *validation.Validator, mosb, cluster, file string, valid bool) {
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	obj := map[string]any{}
	if err := yaml.Unmarshal(raw, &obj); err != nil {
		t.Fatal(err)
	}
	serverFields, serverErr := serverVerdict(ctx, c, obj)
	if accepted := serverErr == nil; accepted != valid {
		t.Fatalf("the API server disagrees with the corpus (valid: %v): %v", valid, serverErr)
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
	case valid && err != nil:
		t.Fatalf("mosb render refused what the API server accepts: %v\n%s", err, stderr.String())
	case !valid && (!errors.As(err, &exit) || exit.ExitCode() != 2):
		t.Fatalf("mosb render: %v, want exit 2 as the API server refuses it (%v)\n%s", err, serverErr, stderr.String())
	case !valid:
		msg := stderr.String()
		if !strings.Contains(msg, pipeline.ReasonInvalidMachineOSConfig+": ") || !strings.Contains(msg, "breaks the rules of") {
			t.Errorf("want an InvalidMachineOSConfig refusal by the CRD's rules:\n%s", msg)
		}
		for _, f := range serverFields {
			if !strings.Contains(msg, f) {
				t.Errorf("the API server names %s, mosb render does not:\n%s\nserver: %v", f, msg, serverErr)
			}
		}
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
