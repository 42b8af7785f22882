package kubelet_test

import (
	"archive/tar"
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/test/harness"
)

const (
	namespace = "mosb-system" // deploy/'s
	pool      = "worker"
	// A real pod's build pulls the base, unpacks it and, for arm64, runs under qemu.
	buildTimeout = 6 * time.Minute
)

// cluster is the real single-node cluster the tests share (starting it takes a minute), with mosb
// deployed in it from deploy/local.
type cluster struct {
	*harness.KubeletCluster
	reg       *harness.Registry
	base      string
	mosb      *harness.MosbDeployment
	emulation bool
}

// TestRealKubelet runs builds in real pods: kube-scheduler places them, the kubelet runs the mosb
// image under containerd + runc, and the controller itself runs as the Deployment of deploy/.
func TestRealKubelet(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a kubelet, containerd, kube-apiserver, a registry and buildah")
	}
	if why := harness.KubeletUnsupported(); why != "" {
		// Loud: `make test` prints this line (see the Makefile), so a machine that cannot run it
		// never passes silently.
		t.Skipf("SKIPPED: the real-kubelet e2e cannot run on this machine: %s", why)
	}
	c := startCluster(t)

	t.Run("two architectures build in two scheduled pods", func(t *testing.T) { testTwoArchitectures(t, c) })
	t.Run("the controller Deployment recreated mid-build adopts the build", func(t *testing.T) { testDeploymentRecreated(t, c) })
	t.Run("a deleted MachineOSConfig takes its builds, pods and ConfigMaps with it", func(t *testing.T) { testDeletedMachineOSConfig(t, c) })
	t.Run("a realistic OS base: the node image store serves later and concurrent builds", func(t *testing.T) { testRealisticBase(t, c) })
	// Last: it replaces the controller the other cases run with.
	t.Run("make image + make release + kubectl apply -f installs a mosb that builds", func(t *testing.T) { testRelease(t, c) })
}

func startCluster(t *testing.T) *cluster {
	kc := harness.StartKubeletCluster(t)
	c := &cluster{KubeletCluster: kc, reg: harness.StartRegistry(t)}
	ctx := t.Context()

	c.base = harness.PushBaseIndex(t, c.reg, "os/base", "amd64", "arm64")

	// A node that runs arm64 binaries through qemu says so; with --allow-emulation (deploy/local)
	// mosb sends arm64 builds there when no arm64 node exists.
	c.emulation = qemuRegistered("aarch64")
	if c.emulation {
		if _, err := c.Kubectl("label", "node", c.NodeName, pipeline.EmulationLabel("arm64")+"=true"); err != nil {
			t.Fatal(err)
		}
	}

	// What a MachineOSConfig needs in the cluster. The pool selects no node (its label is on
	// none), so the architectures come from the MachineOSConfig's containerFile entries.
	for _, o := range (harness.Cluster{Namespace: namespace, Registry: c.reg, BaseImage: c.base, ReleaseVersion: "4.16.0-kubelet", Pool: pool}).Objects() {
		if err := c.Client.Create(ctx, o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}

	c.mosb = kc.DeployMosb(t, c.reg, harness.MosbBinary(t))
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.Kubectl("-n", namespace, "logs", "deployment/"+c.mosb.Name, "--tail=60")
			t.Logf("controller log:\n%s", out)
			out, _ = c.Kubectl("get", "pods", "-A", "-o", "wide")
			t.Logf("pods:\n%s", out)
		}
	})
	return c
}

func testTwoArchitectures(t *testing.T, c *cluster) {
	if !c.emulation {
		t.Skip("SKIPPED: no qemu-aarch64 binfmt handler here (make deps registers it): no node can build arm64")
	}
	name := "two-arch"
	logs := c.followBuildPods(t, name)
	m := c.newMOSC(name, []mosbv1.MachineOSContainerfile{
		// Each architecture's own entry (a noarch one would be used only where there is none).
		{ContainerfileArch: "arm64", Content: "RUN echo arm64 content > /etc/arch-content && uname -m > /etc/built-on"},
		{ContainerfileArch: "amd64", Content: "RUN echo amd64 content > /etc/arch-content && uname -m > /etc/built-on"},
	})
	if err := c.Client.Create(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	m = c.waitReady(t, name)
	b := c.onlyBuild(t, name)

	// Two pods, placed by kube-scheduler: amd64 natively on the amd64 node, arm64 on the node
	// that says it emulates arm64.
	if got := len(b.Status.Architectures); got != 2 {
		t.Fatalf("MachineOSBuild %s has %d architectures, want amd64 and arm64: %+v", b.Name, got, b.Status.Architectures)
	}
	for _, a := range b.Status.Architectures {
		l := logs.of(t, a.PodName)
		if l.node != c.NodeName {
			t.Errorf("pod %s ran on node %q, want %s (scheduled by kube-scheduler)", a.PodName, l.node, c.NodeName)
		}
		wantSelector := map[string]string{corev1.LabelArchStable: a.Architecture}
		if a.Architecture == "arm64" {
			wantSelector = map[string]string{pipeline.EmulationLabel("arm64"): "true"}
		}
		if !maps.Equal(l.nodeSelector, wantSelector) {
			t.Errorf("pod %s: nodeSelector %v, want %v", a.PodName, l.nodeSelector, wantSelector)
		}
		// Overlay in a real pod under containerd, over the node image store the init container filled.
		if a.StorageDriver != "overlay" || !strings.Contains(l.text, "storage: overlay, node image store") {
			t.Errorf("pod %s: storage driver %q (message %q); its log does not say it built with overlay over the node image store:\n%s", a.PodName, a.StorageDriver, a.Message, l.text)
		}
		// Each pod's log shows its own build: the RUN steps of its architecture.
		if want := a.Architecture + " content"; !strings.Contains(l.text, want) {
			t.Errorf("the log of pod %s does not show its build (%q):\n%s", a.PodName, want, l.text)
		}
		// The pod was its Job's, made by kube-controller-manager's Job controller, which records
		// the success in its own time.
		job := &batchv1.Job{}
		harness.Eventually(t.Context(), t, 250*time.Millisecond, time.Minute, "Job "+a.JobName+" complete", func(ctx context.Context) (bool, error) {
			if err := c.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: a.JobName}, job); err != nil {
				return false, err
			}
			return job.Status.Succeeded == 1 && job.Status.Failed == 0 && job.Status.CompletionTime != nil,
				fmt.Errorf("succeeded %d, failed %d, conditions %+v", job.Status.Succeeded, job.Status.Failed, job.Status.Conditions)
		})
		if !maps.Equal(job.Spec.Template.Spec.NodeSelector, wantSelector) || !strings.HasPrefix(a.PodName, a.JobName+"-") {
			t.Errorf("Job %s: nodeSelector %v, pod %s; want %v and its pod", a.JobName, job.Spec.Template.Spec.NodeSelector, a.PodName, wantSelector)
		}
	}

	// The index is what the registry serves under the tag, and in status.
	digest := c.servedDigest(t, string(m.Spec.BuildInputs.RenderedImagePushspec))
	if !strings.HasSuffix(string(m.Status.CurrentImagePullspec), "@"+digest) {
		t.Fatalf("status has %s, the registry serves %s under the tag", m.Status.CurrentImagePullspec, digest)
	}
	// v1 too, as OpenShift 4.19 clients read it: the API server reaches the controller's
	// conversion webhook through Service mosb-webhook, with the CA the controller wrote.
	v1 := &mcfgv1.MachineOSConfig{}
	if err := c.Client.Get(t.Context(), client.ObjectKey{Name: name}, v1); err != nil {
		t.Fatalf("reading %s through v1 (the conversion webhook): %v", name, err)
	}
	if string(v1.Status.CurrentImagePullSpec) != string(m.Status.CurrentImagePullspec) || v1.Status.MachineOSBuild == nil || v1.Status.MachineOSBuild.Name != b.Name {
		t.Errorf("through v1: image %s, build %+v; want %s, %s", v1.Status.CurrentImagePullSpec, v1.Status.MachineOSBuild, m.Status.CurrentImagePullspec, b.Name)
	}
	v1Build := &mcfgv1.MachineOSBuild{}
	if err := c.Client.Get(t.Context(), client.ObjectKey{Name: b.Name}, v1Build); err != nil {
		t.Fatalf("reading MachineOSBuild %s through v1: %v", b.Name, err)
	}
	if ref := v1Build.Status.Builder; ref == nil || ref.ImageBuilderType != mcfgv1.JobBuilder || ref.Job == nil || ref.Job.Name != b.Status.Architectures[0].JobName {
		t.Errorf("v1 status.builder %+v, want the Job %s", ref, b.Status.Architectures[0].JobName)
	}
	idx := c.index(t, string(m.Status.CurrentImagePullspec))
	for _, arch := range []string{"amd64", "arm64"} {
		want := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[arch]
		if got := c.fileIn(t, idx[arch], "etc/built-on"); strings.TrimSpace(got) != want {
			t.Errorf("the %s image was built on %q (uname -m), want %q", arch, strings.TrimSpace(got), want)
		}
	}
}

func testDeploymentRecreated(t *testing.T, c *cluster) {
	name := "recreated"
	logs := c.followBuildPods(t, name)
	// A build that runs long enough to delete and recreate the Deployment in the middle of it.
	m := c.newMOSC(name, []mosbv1.MachineOSContainerfile{
		{ContainerfileArch: mosbv1.NoArch, Content: "RUN sleep 40 && echo slow > /etc/slow"},
	})
	if err := c.Client.Create(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	harness.Eventually(t.Context(), t, 250*time.Millisecond, 2*time.Minute, "the build pod of "+name+" running", func(ctx context.Context) (bool, error) {
		pods := &corev1.PodList{}
		if err := c.Client.List(ctx, pods, client.InNamespace(namespace), client.MatchingLabels{pipeline.LabelMachineOSConfig: name}); err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				pod = p
				return true, nil
			}
		}
		return false, nil
	})

	// Foreground: kubectl returns once the ReplicaSet and the controller's pod are gone too.
	if out, err := c.Kubectl("-n", namespace, "delete", "deployment", c.mosb.Name, "--cascade=foreground", "--wait=true", "--timeout=2m"); err != nil {
		t.Fatal(err)
	} else {
		t.Log(strings.TrimSpace(out))
	}
	still := &corev1.Pod{}
	if err := c.Client.Get(t.Context(), client.ObjectKeyFromObject(&pod), still); err != nil || still.Status.Phase != corev1.PodRunning {
		t.Fatalf("the build pod %s should still be running while no controller runs (phase %q, %v): the build is too short for this test", pod.Name, still.Status.Phase, err)
	}
	c.Apply(t, c.mosb)

	m = c.waitReady(t, name)
	b := c.onlyBuild(t, name)
	if b.Status.Attempt != 1 || len(b.Status.FailedAttempts) != 0 {
		t.Errorf("MachineOSBuild %s: attempt %d, failed attempts %+v; the recreated controller should have adopted attempt 1", b.Name, b.Status.Attempt, b.Status.FailedAttempts)
	}
	if got := logs.podNames(); !slices.Equal(got, []string{pod.Name}) {
		t.Errorf("build pods of %s: %v, want only %s (adopted, not started again)", name, got, pod.Name)
	}
	if l := logs.of(t, pod.Name); l.uid != string(pod.UID) {
		t.Errorf("pod %s was replaced (uid %s, then %s)", pod.Name, pod.UID, l.uid)
	}
	if digest := c.servedDigest(t, string(m.Spec.BuildInputs.RenderedImagePushspec)); !strings.HasSuffix(string(m.Status.CurrentImagePullspec), "@"+digest) {
		t.Fatalf("status has %s, the registry serves %s", m.Status.CurrentImagePullspec, digest)
	}
}

// testDeletedMachineOSConfig deletes a MachineOSConfig in the middle of its build: the cluster's
// garbage collector takes its MachineOSBuild (owned by it), then the build Job and its request
// ConfigMap (owned by the build), then the Job's pod; the running build ends, nothing of it stays.
func testDeletedMachineOSConfig(t *testing.T, c *cluster) {
	name := "deleted"
	m := c.newMOSC(name, []mosbv1.MachineOSContainerfile{
		{ContainerfileArch: mosbv1.NoArch, Content: "RUN sleep 40 && echo slow > /etc/slow"},
	})
	if err := c.Client.Create(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	mine := client.MatchingLabels{pipeline.LabelMachineOSConfig: name}
	harness.Eventually(t.Context(), t, 250*time.Millisecond, 2*time.Minute, "the build pod of "+name+" running", func(ctx context.Context) (bool, error) {
		pods := &corev1.PodList{}
		if err := c.Client.List(ctx, pods, client.InNamespace(namespace), mine); err != nil {
			return false, err
		}
		return len(pods.Items) == 1 && pods.Items[0].Status.Phase == corev1.PodRunning, nil
	})
	if err := c.Client.Delete(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t.Context(), t, 500*time.Millisecond, 2*time.Minute, "no MachineOSBuild, Job, pod or ConfigMap of "+name+" left", func(ctx context.Context) (bool, error) {
		builds, jobs, pods, cms := &mosbv1.MachineOSBuildList{}, &batchv1.JobList{}, &corev1.PodList{}, &corev1.ConfigMapList{}
		if err := c.Client.List(ctx, builds, mine); err != nil {
			return false, err
		}
		if err := c.Client.List(ctx, jobs, client.InNamespace(namespace), mine); err != nil {
			return false, err
		}
		if err := c.Client.List(ctx, pods, client.InNamespace(namespace), mine); err != nil {
			return false, err
		}
		if err := c.Client.List(ctx, cms, client.InNamespace(namespace), mine); err != nil {
			return false, err
		}
		return len(builds.Items)+len(jobs.Items)+len(pods.Items)+len(cms.Items) == 0, nil
	})
}

// testRealisticBase builds over an OS-sized base (~50 layers, ~1.3 GB): a first build fills the
// node image store; then a change to that MachineOSConfig and a second MachineOSConfig build at
// the same time on the node, both from the store, neither pulling nor extracting the base again,
// each pod within its ephemeral-storage limit.
func testRealisticBase(t *testing.T, c *cluster) {
	if os.Getenv("MOSB_REALBASE") != "1" && !harness.RealisticBaseCached() {
		t.Skip("SKIPPED: the realistic base image is not built on this machine: `make e2e-kubelet` (or `make realistic-base`) builds it, minutes once")
	}
	shape := harness.RealisticBaseInfo(t)
	base := harness.RealisticBase(t, c.reg, "os/realistic")
	t.Logf("realistic base: %s", shape)
	mosc := func(name, content string) *mosbv1.MachineOSConfig {
		m := c.newMOSC(name, []mosbv1.MachineOSContainerfile{{ContainerfileArch: mosbv1.NoArch, Content: content}})
		m.Spec.BuildInputs.BaseOSImagePullspec = mosbv1.ImageDigestFormat(base)
		return m
	}
	const unit = "RUN printf '[Service]\\nType=oneshot\\nExecStart=/bin/true\\n[Install]\\nWantedBy=multi-user.target\\n' > /etc/systemd/system/mosb-e2e.service && systemctl enable mosb-e2e.service"

	first := c.followBuildPods(t, "os-first")
	if err := c.Client.Create(t.Context(), mosc("os-first", unit+" && echo one > /etc/mosb-e2e")); err != nil {
		t.Fatal(err)
	}
	c.waitReadyWithin(t, "os-first", 10*time.Minute)
	b := c.onlyBuild(t, "os-first")
	for _, a := range b.Status.Architectures {
		l := first.of(t, a.PodName)
		if !strings.Contains(l.storeText, "into the node image store in") {
			t.Errorf("pod %s: the first build over the base should have pulled it into the node image store; its store log:\n%s", a.PodName, l.storeText)
		}
		c.checkPodDisk(t, a.PodName, l)
	}
	firstPods := first.podNames()
	storeSize := diskUsage(t, c.NodeStore())
	t.Logf("node image store after the first build: %.0f MB for a base of %.0f MB uncompressed (%.2f×)", float64(storeSize)/1e6, float64(shape.Uncompressed)/1e6, float64(storeSize)/float64(shape.Uncompressed))
	if float64(storeSize) > 1.3*float64(shape.Uncompressed) {
		t.Errorf("the node image store holds %d bytes for a base of %d uncompressed: more than 1.3×", storeSize, shape.Uncompressed)
	}

	// A change to the first MachineOSConfig and a new one, at once: two pods on the one node.
	changed := c.followBuildPods(t, "os-first")
	second := c.followBuildPods(t, "os-second")
	m := &mosbv1.MachineOSConfig{}
	if err := c.Client.Get(t.Context(), client.ObjectKey{Name: "os-first"}, m); err != nil {
		t.Fatal(err)
	}
	firstImage := m.Status.CurrentImagePullspec
	m.Spec.BuildInputs.Containerfile[0].Content = unit + " && echo two > /etc/mosb-e2e"
	if err := c.Client.Update(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.Create(t.Context(), mosc("os-second", "RUN echo second > /etc/mosb-e2e")); err != nil {
		t.Fatal(err)
	}
	var running map[string]bool
	harness.Eventually(t.Context(), t, 200*time.Millisecond, 5*time.Minute, "both builds' pods running at once", func(ctx context.Context) (bool, error) {
		pods := &corev1.PodList{}
		if err := c.Client.List(ctx, pods, client.InNamespace(namespace), client.HasLabels{pipeline.LabelMachineOSConfig}); err != nil {
			return false, err
		}
		running = map[string]bool{}
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				running[p.Labels[pipeline.LabelMachineOSConfig]] = true
			}
		}
		return running["os-first"] && running["os-second"], nil
	})
	after := &mosbv1.MachineOSConfig{}
	harness.Eventually(t.Context(), t, time.Second, 10*time.Minute, "os-first Ready with the image of its change", func(ctx context.Context) (bool, error) {
		if err := c.Client.Get(ctx, client.ObjectKey{Name: "os-first"}, after); err != nil {
			return false, err
		}
		if cond := meta.FindStatusCondition(after.Status.Conditions, mosbv1.MachineOSConfigDegraded); cond != nil && cond.Status == metav1.ConditionTrue {
			t.Fatalf("MachineOSConfig os-first Degraded: %s: %s", cond.Reason, cond.Message)
		}
		return meta.IsStatusConditionTrue(after.Status.Conditions, mosbv1.MachineOSConfigReady) && after.Status.CurrentImagePullspec != firstImage, nil
	})
	c.waitReadyWithin(t, "os-second", 10*time.Minute)
	for name, logs := range map[string]*podLogs{"os-first": changed, "os-second": second} {
		checked := 0
		for _, pod := range logs.podNames() {
			if slices.Contains(firstPods, pod) {
				continue
			}
			checked++
			l := logs.of(t, pod)
			if !strings.Contains(l.storeText, "is in the node image store already: not pulled, not extracted") || strings.Contains(l.storeText, "pulled "+base) {
				t.Errorf("%s, pod %s: the base should have been served by the node image store, neither pulled nor extracted; its store log:\n%s", name, pod, l.storeText)
			}
			if !strings.Contains(l.text, "storage: overlay, node image store") {
				t.Errorf("%s, pod %s: its log does not say it built with overlay over the node image store:\n%s", name, pod, tail(l.text, 30))
			}
			c.checkPodDisk(t, pod, l)
		}
		if checked == 0 {
			t.Errorf("%s: no build pod of the second round was seen running", name)
		}
	}
	if got := c.fileInTopLayers(t, string(after.Status.CurrentImagePullspec), "etc/mosb-e2e"); strings.TrimSpace(got) != "two" {
		t.Errorf("os-first's new image has /etc/mosb-e2e %q, want \"two\"", got)
	}
}

// fileInTopLayers reads a file from the newest layer of the amd64 image at ref that has it,
// without reading the whole image: the base's gigabyte is below what the build wrote.
func (c *cluster) fileInTopLayers(t *testing.T, ref, path string) string {
	t.Helper()
	opts := []remote.Option{remote.WithAuth(c.reg.Auth()), remote.WithTransport(c.reg.Transport()), remote.WithContext(t.Context())}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if desc.MediaType.IsIndex() {
		r, err = name.ParseReference(c.index(t, ref)["amd64"])
		if err != nil {
			t.Fatal(err)
		}
		if desc, err = remote.Get(r, opts...); err != nil {
			t.Fatal(err)
		}
	}
	img, err := desc.Image()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i := len(layers) - 1; i >= 0 && i >= len(layers)-8; i-- {
		rc, err := layers[i].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			if strings.TrimPrefix(h.Name, "./") == path {
				b, err := io.ReadAll(tr)
				rc.Close()
				if err != nil {
					t.Fatal(err)
				}
				return string(b)
			}
		}
		rc.Close()
	}
	t.Fatalf("%s: no %s in its top layers", ref, path)
	return ""
}

// checkPodDisk holds a pod's measured disk use to its ephemeral-storage limit.
func (c *cluster) checkPodDisk(t *testing.T, pod string, l *podLog) {
	t.Helper()
	t.Logf("pod %s: its directory held at most %.0f MB; ephemeral-storage limit %.0f MB", pod, float64(l.diskPeak)/1e6, float64(l.ephemeralLimit)/1e6)
	if l.ephemeralLimit == 0 {
		t.Errorf("pod %s has no ephemeral-storage limit", pod)
	}
	if l.diskPeak == 0 || l.diskPeak > l.ephemeralLimit {
		t.Errorf("pod %s used %d bytes of disk, its ephemeral-storage limit is %d", pod, l.diskPeak, l.ephemeralLimit)
	}
}

func diskUsage(t *testing.T, dir string) int64 {
	t.Helper()
	out, err := exec.Command("du", "-s", "-x", "-B1", dir).Output()
	if err != nil {
		t.Fatalf("du %s: %v", dir, err)
	}
	n, err := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
	if err != nil {
		t.Fatalf("du %s: %q", dir, out)
	}
	return n
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func (c *cluster) newMOSC(name string, files []mosbv1.MachineOSContainerfile) *mosbv1.MachineOSConfig {
	m := harness.MachineOSConfig(name, pool, "", c.reg.Host+"/os/"+name+":latest")
	m.Spec.BuildInputs.Containerfile = files
	return m
}

// waitReady waits until the MachineOSConfig's status holds an image; a failed build fails fast.
func (c *cluster) waitReady(t *testing.T, name string) *mosbv1.MachineOSConfig {
	t.Helper()
	return c.waitReadyWithin(t, name, buildTimeout)
}

func (c *cluster) waitReadyWithin(t *testing.T, name string, timeout time.Duration) *mosbv1.MachineOSConfig {
	t.Helper()
	m := &mosbv1.MachineOSConfig{}
	harness.Eventually(t.Context(), t, time.Second, timeout, "MachineOSConfig "+name+" Ready with an image", func(ctx context.Context) (bool, error) {
		if err := c.Client.Get(ctx, client.ObjectKey{Name: name}, m); err != nil {
			return false, err
		}
		if cond := meta.FindStatusCondition(m.Status.Conditions, mosbv1.MachineOSConfigDegraded); cond != nil && cond.Status == metav1.ConditionTrue {
			t.Fatalf("MachineOSConfig %s Degraded: %s: %s", name, cond.Reason, cond.Message)
		}
		return meta.IsStatusConditionTrue(m.Status.Conditions, mosbv1.MachineOSConfigReady) && m.Status.CurrentImagePullspec != "", nil
	})
	return m
}

func (c *cluster) onlyBuild(t *testing.T, mosc string) mosbv1.MachineOSBuild {
	t.Helper()
	list := &mosbv1.MachineOSBuildList{}
	if err := c.Client.List(t.Context(), list, client.MatchingLabels{pipeline.LabelMachineOSConfig: mosc}); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 {
		t.Fatalf("%d MachineOSBuilds for %s, want exactly one", len(list.Items), mosc)
	}
	return list.Items[0]
}

func (c *cluster) servedDigest(t *testing.T, spec string) string {
	t.Helper()
	ref, err := name.ParseReference(spec)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(ref, remote.WithAuth(c.reg.Auth()), remote.WithTransport(c.reg.Transport()), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("the registry does not serve %s: %v", spec, err)
	}
	return desc.Digest.String()
}

// index maps each architecture of the index at ref to its image's reference by digest.
func (c *cluster) index(t *testing.T, ref string) map[string]string {
	t.Helper()
	images, err := harness.IndexImages(ref, remote.WithAuth(c.reg.Auth()), remote.WithTransport(c.reg.Transport()), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	return images
}

// fileIn reads a file from the image's top layer (where the build's RUN wrote it).
func (c *cluster) fileIn(t *testing.T, ref, path string) string {
	t.Helper()
	f, err := harness.FileInImage(ref, path, remote.WithAuth(c.reg.Auth()), remote.WithTransport(c.reg.Transport()), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("reading %s from %s: %v", path, ref, err)
	}
	return f
}

// podLogs follows the build pods of one MachineOSConfig from the moment they exist: the
// controller deletes them once the build ends, and with them what the kubelet kept.
type podLogs struct {
	mu   sync.Mutex
	pods map[string]*podLog
}

type podLog struct {
	uid, node    string
	nodeSelector map[string]string
	// image is the build container's image.
	image string
	done  chan struct{}
	text  string
	// storeText is the log of the init container that filled the node image store.
	storeText string
	// ephemeralLimit is the build container's ephemeral-storage limit (0: none), diskPeak the most
	// the pod's directory under the kubelet's root (its emptyDirs) held while the build ran.
	ephemeralLimit, diskPeak int64
}

func (c *cluster) followBuildPods(t *testing.T, mosc string) *podLogs {
	pl := &podLogs{pods: map[string]*podLog{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			pods := &corev1.PodList{}
			_ = c.Client.List(ctx, pods, client.InNamespace(namespace), client.MatchingLabels{pipeline.LabelMachineOSConfig: mosc})
			for _, p := range pods.Items {
				if p.Spec.NodeName == "" || (p.Status.Phase == corev1.PodPending) {
					continue
				}
				pl.mu.Lock()
				if _, seen := pl.pods[p.Name]; !seen {
					l := &podLog{uid: string(p.UID), node: p.Spec.NodeName, nodeSelector: p.Spec.NodeSelector, done: make(chan struct{})}
					pl.pods[p.Name] = l
					for _, ctr := range p.Spec.Containers {
						if ctr.Name == buildpod.ContainerName {
							l.ephemeralLimit = ctr.Resources.Limits.StorageEphemeral().Value()
							l.image = ctr.Image
						}
					}
					wg.Add(1)
					go func(pod string) {
						defer wg.Done()
						defer close(l.done)
						// Running: the init container has ended, and the kubelet keeps its log
						// until the pod goes.
						out, err := c.Kubectl("-n", namespace, "logs", pod, "-c", buildpod.StoreContainerName)
						l.storeText = out
						if err != nil {
							l.storeText += "\n(kubectl logs: " + err.Error() + ")"
						}
						stop := make(chan struct{})
						sampled := make(chan struct{})
						go func() {
							defer close(sampled)
							l.diskPeak = samplePeakDisk(filepath.Join(c.Dir, "kubelet", "pods", l.uid), stop)
						}()
						// What a user runs: kubectl logs, through the API server to the kubelet.
						cmd := exec.CommandContext(ctx, filepath.Join(c.Assets, "kubectl"), "--kubeconfig", c.Kubeconfig,
							"-n", namespace, "logs", "-f", pod, "-c", buildpod.ContainerName)
						out2, err := cmd.CombinedOutput()
						close(stop)
						<-sampled
						l.text = string(out2)
						if err != nil {
							l.text += "\n(kubectl logs: " + err.Error() + ")"
						}
					}(p.Name)
				}
				pl.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return pl
}

func (pl *podLogs) podNames() []string {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	var out []string
	for n := range pl.pods {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// of waits for the pod's log to end (its container exited) and returns it.
func (pl *podLogs) of(t *testing.T, pod string) *podLog {
	t.Helper()
	pl.mu.Lock()
	l := pl.pods[pod]
	pl.mu.Unlock()
	if l == nil {
		t.Fatalf("pod %s was never seen running", pod)
	}
	select {
	case <-l.done:
	case <-time.After(time.Minute):
		t.Fatalf("the log of pod %s did not end", pod)
	}
	return l
}

// samplePeakDisk measures what dir takes on disk (du: the pod's emptyDirs, as the kubelet's
// eviction manager counts them) every half second until stop, and returns the most it saw.
func samplePeakDisk(dir string, stop <-chan struct{}) int64 {
	var peak int64
	for {
		if out, err := exec.Command("du", "-s", "-x", "-B1", dir).Output(); err == nil {
			if f := strings.Fields(string(out)); len(f) > 0 {
				if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					peak = max(peak, n)
				}
			}
		}
		select {
		case <-stop:
			return peak
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func qemuRegistered(arch string) bool {
	f, err := os.Open("/proc/sys/fs/binfmt_misc/qemu-" + arch)
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	enabled, fixBinary := false, false
	for s.Scan() {
		line := s.Text()
		enabled = enabled || line == "enabled"
		// F: the kernel opens the interpreter at registration, so it works inside containers
		// whose filesystem has no qemu.
		if flags, ok := strings.CutPrefix(line, "flags: "); ok {
			fixBinary = strings.Contains(flags, "F")
		}
	}
	return enabled && fixBinary
}
