package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	"sigs.k8s.io/yaml"

	"github.com/mosb-dev/mosb/pipeline"
)

// v1MachineOSConfig is a v1 MachineOSConfig as OpenShift 4.19's documentation writes one: no base
// image (the cluster's machine-config-osimageurl gives it), the Job builder, NoArch content.
func v1MachineOSConfig(pool, target, content string) string {
	return `apiVersion: machineconfiguration.openshift.io/v1
kind: MachineOSConfig
metadata:
  name: ` + pool + `
spec:
  machineConfigPool:
    name: ` + pool + `
  imageBuilder:
    imageBuilderType: Job
  renderedImagePushSecret:
    name: push-secret
  renderedImagePushSpec: ` + target + `
  containerFile:
  - containerfileArch: NoArch
    content: |-
      ` + strings.ReplaceAll(strings.TrimSpace(content), "\n", "\n      ") + `
`
}

// A v1 MachineOSConfig builds with mosb build, its base image and release version from the
// cluster's machine-config-osimageurl, into the same image as the v1alpha1 one that names them;
// -o yaml answers in v1.
func TestBuildReadsAV1MachineOSConfig(t *testing.T) {
	f := newBuildFixture(t, "amd64")
	target := f.reg.Host + "/os/worker:latest"
	snippet := userSnippet(f.base["amd64"])

	// The same cluster, with machine-config-osimageurl naming the base and the release.
	clusterDir := t.TempDir()
	entries, err := os.ReadDir(f.clusterDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(f.clusterDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(clusterDir, e.Name()), string(data))
	}
	write(t, filepath.Join(clusterDir, "osimageurl.yaml"), `apiVersion: v1
kind: ConfigMap
metadata:
  namespace: openshift-machine-config-operator
  name: `+pipeline.OSImageURLConfigMap+`
data:
  `+pipeline.OSImageURLBaseKey+`: `+f.base["amd64"]+`
  `+pipeline.OSImageURLReleaseKey+`: 4.16.0-test
`)
	v1File := filepath.Join(t.TempDir(), "worker-v1.yaml")
	write(t, v1File, v1MachineOSConfig("worker", target, snippet))

	v1 := runCLI(t, "build", "-f", v1File, "--cluster-config", clusterDir, "--authfile", f.authFile, "--root", t.TempDir(), "-o", "yaml")
	if v1.code != 0 {
		t.Fatalf("mosb build of a v1 MachineOSConfig exited %d:\n%s", v1.code, v1.stderr)
	}
	v1alpha1 := runCLI(t, "build", "-f", f.mosc(t, "worker", target, map[string]string{"": snippet}),
		"--cluster-config", f.clusterDir, "--authfile", f.authFile, "--root", t.TempDir())
	if v1alpha1.code != 0 {
		t.Fatalf("mosb build of the v1alpha1 MachineOSConfig exited %d:\n%s", v1alpha1.code, v1alpha1.stderr)
	}

	var out mcfgv1.MachineOSConfig
	if err := yaml.UnmarshalStrict([]byte(v1.stdout), &out); err != nil {
		t.Fatalf("-o yaml of a v1 MachineOSConfig is not a v1 MachineOSConfig: %v\n%s", err, v1.stdout)
	}
	if out.APIVersion != "machineconfiguration.openshift.io/v1" || out.Kind != "MachineOSConfig" {
		t.Errorf("-o yaml answers in %s %s, want machineconfiguration.openshift.io/v1 MachineOSConfig", out.APIVersion, out.Kind)
	}
	if got, want := string(out.Status.CurrentImagePullSpec), v1alpha1.lastLine(); got != want {
		t.Errorf("the v1 MachineOSConfig built %s, the v1alpha1 one %s: the same inputs must give the same image", got, want)
	}
	if out.Spec.ImageBuilder.ImageBuilderType != mcfgv1.JobBuilder || out.Spec.Containerfile[0].ContainerfileArch != mcfgv1.NoArch {
		t.Errorf("-o yaml changed the spec it was given: %+v", out.Spec)
	}
}

// What OpenShift's v1 CRD refuses, mosb refuses with that CRD's own rules and messages, exit 2
// (test/integration holds the two to one corpus).
func TestRenderRefusesWhatV1Forbids(t *testing.T) {
	f := renderFixture(t)
	for name, tc := range map[string]struct {
		yaml, says string
	}{
		"named other than its pool": {strings.Replace(v1MachineOSConfig("worker", renderTarget, "RUN true"), "  name: worker\nspec:", "  name: my-layers\nspec:", 1),
			"MachineOSConfig name must match the referenced MachineConfigPool name"},
		"v1alpha1's builder": {strings.Replace(v1MachineOSConfig("worker", renderTarget, "RUN true"), "imageBuilderType: Job", "imageBuilderType: PodImageBuilder", 1),
			`spec.imageBuilder.imageBuilderType: Unsupported value: supported values: "Job"`},
		"v1alpha1's architecture": {strings.Replace(v1MachineOSConfig("worker", renderTarget, "RUN true"), "containerfileArch: NoArch", "containerfileArch: amd64", 1),
			`spec.containerFile[0].containerfileArch: Unsupported value: supported values: "ARM64", "AMD64", "PPC64LE", "S390X", "NoArch"`},
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "mosc.yaml")
			write(t, p, tc.yaml)
			res := runCLI(t, "render", "-f", p, "--authfile", f.authFile, "--arch", "amd64")
			if res.code != exitInvalidInput || !strings.Contains(res.stderr, tc.says) {
				t.Errorf("exit %d, want %d saying %q:\n%s", res.code, exitInvalidInput, tc.says, res.stderr)
			}
		})
	}
}
