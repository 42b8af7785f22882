package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/test/harness"
)

// TestAV1MachineOSConfigBuildsAndReadsInBothVersions applies a v1 MachineOSConfig as OpenShift
// 4.19's documentation writes one (named after its pool, the Job builder, no base image): the
// controller, which works in v1alpha1 behind its conversion webhook, builds it; its status names
// the image by digest through v1 and through v1alpha1, and so does the v1 MachineOSBuild; and
// `mosb build -f` of the same file, with the cluster's configuration, pushes the same digest.
func TestAV1MachineOSConfigBuildsAndReadsInBothVersions(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{controllerArgs: harness.ConversionWebhookArgs(t)})
	ctx := t.Context()
	doc := `apiVersion: machineconfiguration.openshift.io/v1
kind: MachineOSConfig
metadata:
  name: ` + poolName + `
spec:
  machineConfigPool:
    name: ` + poolName + `
  imageBuilder:
    imageBuilderType: Job
  baseImagePullSecret:
    name: pull
  renderedImagePushSecret:
    name: push
  renderedImagePushSpec: ` + e.reg.Host + `/os/v1:latest
  containerFile:
  - containerfileArch: NoArch
    content: |-
      RUN echo built-from-v1 > /etc/v1
`
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
		t.Fatal(err)
	}
	capture := e.captureRequests()
	// v1 is served once the controller has written the CRDs' conversion settings.
	harness.WaitForConversionWebhook(ctx, t, e.c, "")
	if err := e.c.Create(ctx, obj); err != nil {
		t.Fatalf("creating the v1 MachineOSConfig: %v", err)
	}

	var v1 mcfgv1.MachineOSConfig
	eventually(t, 20*time.Second, "the v1 status to name the image", func(ctx context.Context) (bool, error) {
		if err := e.c.Get(ctx, client.ObjectKey{Name: poolName}, &v1); err != nil {
			return false, err
		}
		return strings.Contains(string(v1.Status.CurrentImagePullSpec), "@sha256:") && meta.IsStatusConditionTrue(v1.Status.Conditions, mosbv1.MachineOSConfigReady),
			fmt.Errorf("status %+v", v1.Status)
	})
	image := string(v1.Status.CurrentImagePullSpec)
	alpha := e.get(poolName)
	if string(alpha.Status.CurrentImagePullspec) != image {
		t.Errorf("v1alpha1 names %s, v1 %s", alpha.Status.CurrentImagePullspec, image)
	}
	builds := &mcfgv1.MachineOSBuildList{}
	if err := e.c.List(ctx, builds); err != nil {
		t.Fatalf("listing MachineOSBuilds through v1: %v", err)
	}
	if len(builds.Items) != 1 || string(builds.Items[0].Status.DigestedImagePushSpec) != image || builds.Items[0].Spec.MachineOSConfig.Name != poolName {
		t.Fatalf("v1 MachineOSBuilds: %+v", builds.Items)
	}
	if ref := v1.Status.MachineOSBuild; ref == nil || ref.Name != builds.Items[0].Name || ref.Resource != "machineosbuilds" {
		t.Errorf("v1 status.machineOSBuild %+v, want %s", ref, builds.Items[0].Name)
	}
	// A Job built it: status.builder names it, it completed, and the build pod was its pod.
	builder := builds.Items[0].Status.Builder
	if builder == nil || builder.ImageBuilderType != mcfgv1.JobBuilder || builder.Job == nil || builder.Job.Group != "batch" || builder.Job.Resource != "jobs" {
		t.Fatalf("v1 status.builder %+v, want a batch Job", builder)
	}
	job := &batchv1.Job{}
	// The controller reads the result from the pod; the Job controller records it in its own time.
	eventually(t, 30*time.Second, "the Job status.builder names complete", func(ctx context.Context) (bool, error) {
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: builder.Job.Namespace, Name: builder.Job.Name}, job); err != nil {
			return false, err
		}
		complete := false
		for _, c := range job.Status.Conditions {
			complete = complete || (c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue)
		}
		return complete && job.Status.Succeeded == 1 && job.Status.Failed == 0,
			fmt.Errorf("Job %s: succeeded %d, failed %d, conditions %+v; want complete with one pod", job.Name, job.Status.Succeeded, job.Status.Failed, job.Status.Conditions)
	})
	if !metav1.IsControlledBy(job, &alphaBuild(t, e, builds.Items[0].Name).ObjectMeta) {
		t.Errorf("Job %s is not controlled by MachineOSBuild %s: %+v", job.Name, builds.Items[0].Name, job.OwnerReferences)
	}
	podName := alphaBuild(t, e, builds.Items[0].Name).Status.Architectures[0].PodName
	capture.mu.Lock()
	pod := capture.pods[podName]
	capture.mu.Unlock()
	if pod == nil || pod.Labels[batchv1.JobNameLabel] != job.Name || !metav1.IsControlledBy(pod, job) {
		t.Errorf("build pod %s was not the Job's pod: %+v", podName, pod)
	}
	if strings.TrimSpace(e.pushedImage(image).files["etc/v1"]) != "built-from-v1" {
		t.Errorf("the image lacks the v1 content's file")
	}

	// The same file through `mosb build`, with what the cluster holds.
	dir := t.TempDir()
	mosc, mc, clusterDir, auth := filepath.Join(dir, "mosc.yaml"), filepath.Join(dir, "mc.yaml"), filepath.Join(dir, "cluster"), filepath.Join(dir, "auth.json")
	writeFile(t, mosc, doc)
	rendered := &mcfgv1.MachineConfig{}
	if err := e.c.Get(ctx, client.ObjectKey{Name: renderedName}, rendered); err != nil {
		t.Fatal(err)
	}
	rendered.TypeMeta = metav1.TypeMeta{APIVersion: mcfgv1.GroupVersion.String(), Kind: "MachineConfig"}
	rendered.ObjectMeta = metav1.ObjectMeta{Name: rendered.Name, Labels: rendered.Labels, Annotations: rendered.Annotations}
	writeYAML(t, mc, rendered)
	harness.WriteClusterConfig(t, clusterDir, e.reg)
	osImageURL := &corev1.ConfigMap{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: buildNamespace, Name: "machine-config-osimageurl"}, osImageURL); err != nil {
		t.Fatal(err)
	}
	writeYAML(t, filepath.Join(clusterDir, "osimageurl.yaml"), &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: osImageURL.Name, Namespace: osImageURL.Namespace}, Data: osImageURL.Data,
	})
	harness.WriteAuthFile(t, auth, e.reg)
	cmd := exec.CommandContext(ctx, mosbBinary(t), "build", "-f", mosc, "--machineconfig", mc, "--cluster-config", clusterDir, "--authfile", auth, "--root", t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("mosb build -f of the v1 file: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if cli := lines[len(lines)-1]; cli != image {
		t.Errorf("mosb build pushed %s, the controller %s", cli, image)
	}
}

func alphaBuild(t *testing.T, e *env, name string) *mosbv1.MachineOSBuild {
	t.Helper()
	b := &mosbv1.MachineOSBuild{}
	if err := e.c.Get(t.Context(), client.ObjectKey{Name: name}, b); err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeYAML(t *testing.T, path string, obj any) {
	t.Helper()
	raw, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(raw))
}
