package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/test/harness"
	"github.com/mosb-dev/mosb/test/kubeletstandin"
)

// The cluster of these tests has one node, amd64, labelled as able to run arm64 under emulation,
// and outside the worker pool: the pool has no nodes, so the MachineOSConfig's containerFile
// entries (amd64 and arm64) choose the architectures. The stand-in runs every pod on this machine,
// where qemu binfmt runs the arm64 RUN steps, as a real node labelled so would.

// needArm64Emulation skips, loudly, where an arm64 build cannot run: qemu's binfmt handler is not
// registered, or the arm64 busybox of the base image is missing.
func needArm64Emulation(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/proc/sys/fs/binfmt_misc/qemu-aarch64"); err != nil {
		t.Skip("SKIPPED LOUDLY: arm64 emulation is not registered (hack/binfmt.sh); the arm64 build pod cannot run here")
	}
	if _, err := os.Stat(harness.BusyboxPath("arm64")); err != nil {
		t.Skip("SKIPPED LOUDLY: no arm64 busybox (hack/arm64-busybox.sh)")
	}
}

func emulationEnv(t *testing.T, controllerArgs ...string) *env {
	t.Helper()
	return emulationEnvWith(t, envOptions{controllerArgs: controllerArgs})
}

// emulationEnvWith is emulationEnv with options; its nodes are emulationEnv's.
func emulationEnvWith(t *testing.T, o envOptions) *env {
	t.Helper()
	needArm64Emulation(t)
	o.nodes = []kubeletstandin.Node{{Name: "node-amd64", Labels: map[string]string{
		"kubernetes.io/arch": "amd64", pipeline.EmulationLabel("arm64"): "true",
	}}}
	return newEnvWith(t, o, "amd64", "arm64")
}

// twoArchMOSC has an amd64 and an arm64 containerFile entry, each printing the machine it runs on.
func (e *env) twoArchMOSC(name string) *mosbv1.MachineOSConfig {
	m := e.newMOSC(name, "")
	m.Spec.BuildInputs.Containerfile = []mosbv1.MachineOSContainerfile{
		{ContainerfileArch: mosbv1.ArchAMD64, Content: "RUN uname -m | tee /etc/built-on"},
		{ContainerfileArch: mosbv1.ArchARM64, Content: "RUN uname -m | tee /etc/built-on"},
	}
	return m
}

func archEntry(b *mosbv1.MachineOSBuild, arch string) *mosbv1.ArchitectureBuild {
	for i := range b.Status.Architectures {
		if b.Status.Architectures[i].Architecture == arch {
			return &b.Status.Architectures[i]
		}
	}
	return nil
}

// checkEmulatedBuild checks a succeeded build of twoArchMOSC whose arm64 pod ran under emulation
// on node-amd64: the index of both images in status, what each architecture's entry says, the
// pods' placement (as first seen, when capture is not nil) and node, and the machine each build
// step ran on.
func (e *env) checkEmulatedBuild(m *mosbv1.MachineOSConfig, capture *requestCapture) {
	t := e.t
	t.Helper()
	ctx := t.Context()
	builds := e.builds(ctx, m.Name)
	if len(builds) != 1 {
		t.Fatalf("%d MachineOSBuilds, want 1", len(builds))
	}
	b := &builds[0]
	if b.Name != m.Name+"-"+b.Spec.BuildIdentity[:10] {
		t.Errorf("MachineOSBuild %s is not named by its identity %s", b.Name, b.Spec.BuildIdentity)
	}
	images, err := harness.IndexImages(string(m.Status.CurrentImagePullspec), remote.WithAuth(e.reg.Auth()), remote.WithTransport(e.reg.Transport()), remote.WithContext(ctx))
	if err != nil {
		t.Fatalf("status does not name an index: %v", err)
	}
	platforms := slices.Sorted(maps.Keys(images))
	if strings.Join(platforms, ",") != "amd64,arm64" {
		t.Errorf("the index holds %v, want amd64 and arm64", platforms)
	}

	want := map[string]struct {
		selector map[string]string
		machine  string
	}{
		"amd64": {map[string]string{"kubernetes.io/arch": "amd64"}, "x86_64"},
		"arm64": {map[string]string{pipeline.EmulationLabel("arm64"): "true"}, "aarch64"},
	}
	for arch, w := range want {
		a := archEntry(b, arch)
		if a == nil || a.PodName == "" || a.DigestedImagePushspec == "" {
			t.Errorf("%s: no pod or image in status: %+v", arch, a)
			continue
		}
		emulated := strings.Contains(a.Message, "built under emulation on a node labelled emulation.mosb.dev/arm64")
		if emulated != (arch == "arm64") {
			t.Errorf("%s's status message %q", arch, a.Message)
		}
		if capture != nil {
			capture.mu.Lock()
			pod := capture.pods[a.PodName]
			capture.mu.Unlock()
			if pod == nil {
				t.Errorf("%s: pod %s was never seen", arch, a.PodName)
			} else if !maps.Equal(pod.Spec.NodeSelector, w.selector) || (pod.Labels[pipeline.LabelEmulated] == "true") != (arch == "arm64") {
				t.Errorf("%s: pod %s has node selector %v and labels %v; want selector %v", arch, a.PodName, pod.Spec.NodeSelector, pod.Labels, w.selector)
			}
		}
		evs, err := eventsFor(ctx, e.c, "Pod", a.PodName)
		if err != nil {
			t.Fatal(err)
		}
		scheduled := false
		for _, ev := range evs {
			scheduled = scheduled || (ev.Reason == "Scheduled" && strings.HasSuffix(ev.Message, " to node-amd64 (kubelet stand-in)"))
		}
		if !scheduled {
			t.Errorf("%s: pod %s was not scheduled to node-amd64: %v", arch, a.PodName, evs)
		}
		logs, err := e.kubelet.Logs(buildNamespace, a.PodName)
		if err != nil {
			t.Errorf("no log for pod %s: %v", a.PodName, err)
		} else if !strings.Contains(logs, "\n"+w.machine+"\n") {
			t.Errorf("%s: pod %s's build did not run on %s:\n%s", arch, a.PodName, w.machine, logs)
		}
	}
}

// With --allow-emulation, the architecture no node has is built on the node labelled as emulating
// it, and the build says so.
func TestEmulationBuildsAnArchitectureNoNodeHas(t *testing.T) {
	t.Parallel()
	e := emulationEnv(t, "--allow-emulation")
	capture := e.captureRequests()
	m := e.twoArchMOSC("emu")
	e.create(m)
	m = e.waitReady("emu")
	e.checkEmulatedBuild(m, capture)
	if logs := e.ctrl.logs(); !strings.Contains(logs, `"build Job placed under emulation"`) {
		t.Errorf("the controller did not log the emulated placement:\n%s", logs)
	}
}

// Without --allow-emulation the arm64 pod waits, Pending with the native selector, and the build
// says why and what would fix it; restarted with the flag, the controller moves the waiting pod
// to the emulating node, and the build ends as it would have with the flag from the start.
func TestEmulationOffAPodWaitsForItsArchitecture(t *testing.T) {
	t.Parallel()
	e := emulationEnv(t)
	e.create(e.twoArchMOSC("wait"))

	var pod corev1.Pod
	var build mosbv1.MachineOSBuild
	eventually(t, buildTimeout, "amd64 built, the arm64 pod Pending and its status saying why", func(ctx context.Context) (bool, error) {
		builds := e.builds(ctx, "wait")
		if len(builds) != 1 {
			return false, nil
		}
		build = builds[0]
		amd, arm := archEntry(&build, "amd64"), archEntry(&build, "arm64")
		if amd == nil || arm == nil || amd.DigestedImagePushspec == "" || !strings.Contains(arm.Message, "waiting for a schedulable arm64 node") {
			return false, nil
		}
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: buildNamespace, Name: arm.PodName}, &pod); err != nil {
			return false, err
		}
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Reason == corev1.PodReasonUnschedulable {
				return true, nil
			}
		}
		return false, nil
	})
	if pipeline.Phase(&build) != pipeline.PhaseBuilding {
		t.Errorf("the build is %s, want Building while a pod waits for a node", pipeline.Phase(&build))
	}
	arm := archEntry(&build, "arm64")
	for _, s := range []string{"the cluster has none", "add one", "--allow-emulation", "emulation.mosb.dev/arm64=true"} {
		if !strings.Contains(arm.Message, s) {
			t.Errorf("the arm64 status message %q does not say %q", arm.Message, s)
		}
	}
	if c := condition(&build, string(pipeline.PhaseBuilding)); c == nil || !strings.Contains(c.Message, arm.Message) {
		t.Errorf("the Building condition does not say why arm64 waits: %+v", c)
	}
	if pod.Status.Phase != corev1.PodPending || pod.Spec.NodeName != "" ||
		!maps.Equal(pod.Spec.NodeSelector, map[string]string{"kubernetes.io/arch": "arm64"}) {
		t.Errorf("pod %s: phase %s, node %q, selector %v; want Pending, no node, the native selector",
			pod.Name, pod.Status.Phase, pod.Spec.NodeName, pod.Spec.NodeSelector)
	}
	// Nothing fails a build that waits for a node: it is still waiting a little later.
	e.assertBuildsStay("wait", 1, 3*time.Second)
	if b := e.builds(t.Context(), "wait")[0]; pipeline.Phase(&b) != pipeline.PhaseBuilding {
		t.Fatalf("the waiting build became %s", pipeline.Phase(&b))
	}

	e.ctrl.restartWith("--allow-emulation")
	m := e.waitReady("wait")
	e.checkEmulatedBuild(m, nil)
	evs, err := eventsFor(t.Context(), e.c, "MachineOSBuild", build.Name)
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, ev := range evs {
		reasons = append(reasons, ev.Reason)
	}
	for _, want := range []string{pipeline.ReasonNoSchedulableNode, pipeline.ReasonPodMoved, pipeline.ReasonEmulated} {
		if !strings.Contains(","+strings.Join(reasons, ",")+",", ","+want+",") {
			t.Errorf("no %s event on %s (events: %v)", want, build.Name, reasons)
		}
	}
	if b := e.builds(t.Context(), "wait")[0]; b.Status.Attempt != 1 || len(b.Status.FailedAttempts) != 0 {
		t.Errorf("moving a waiting pod cost an attempt: attempt %d, failed %v", b.Status.Attempt, b.Status.FailedAttempts)
	}
}

// A build pod that waits because the node labelled as emulating its architecture is cordoned
// moves there once the node is uncordoned: a Node's schedulability, not only its labels, wakes
// the controller. No scheduler touches the build namespace here (a scheduler's status update of
// the waiting pod would wake it too), and the build names only arm64, so no other pod's events
// can.
func TestUncordoningTheEmulatingNodeMovesAWaitingPod(t *testing.T) {
	t.Parallel()
	e := emulationEnvWith(t, envOptions{controllerArgs: []string{"--allow-emulation"}, standinNamespaces: []string{"no-builds-here"}})
	e.setUnschedulable("node-amd64", true)
	m := e.newMOSC("cordon", "")
	m.Spec.BuildInputs.Containerfile = []mosbv1.MachineOSContainerfile{{ContainerfileArch: mosbv1.ArchARM64, Content: "RUN uname -m"}}
	e.create(m)

	var waiting mosbv1.ArchitectureBuild
	var pod corev1.Pod
	eventually(t, buildTimeout, "the arm64 pod waiting for a schedulable node", func(ctx context.Context) (bool, error) {
		builds := e.builds(ctx, "cordon")
		if len(builds) != 1 {
			return false, fmt.Errorf("%d MachineOSBuilds", len(builds))
		}
		a := archEntry(&builds[0], "arm64")
		if a == nil || !strings.Contains(a.Message, "waiting for a schedulable arm64 node") {
			return false, fmt.Errorf("arm64 entry: %+v", a)
		}
		waiting = *a
		return true, e.c.Get(ctx, client.ObjectKey{Namespace: buildNamespace, Name: a.PodName}, &pod)
	})
	if !strings.Contains(waiting.Message, "node-amd64") || !strings.Contains(waiting.Message, "unschedulable") {
		t.Errorf("the waiting message does not say the emulating node is unschedulable: %q", waiting.Message)
	}
	if !maps.Equal(pod.Spec.NodeSelector, map[string]string{"kubernetes.io/arch": "arm64"}) {
		t.Fatalf("the waiting pod's node selector is %v, want the native one", pod.Spec.NodeSelector)
	}

	e.setUnschedulable("node-amd64", false)
	eventually(t, buildTimeout, "the arm64 pod moved to the emulating node", func(ctx context.Context) (bool, error) {
		// The Job is made again under the same name; the Job controller names its new pod.
		b := e.builds(ctx, "cordon")[0]
		a := archEntry(&b, "arm64")
		if a == nil || a.PodName == "" {
			return false, fmt.Errorf("arm64 entry: %+v", a)
		}
		moved := &corev1.Pod{}
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: buildNamespace, Name: a.PodName}, moved); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		if moved.UID == pod.UID {
			return false, fmt.Errorf("pod %s is still the waiting one, selector %v", pod.Name, moved.Spec.NodeSelector)
		}
		if a.JobName != waiting.JobName {
			return false, fmt.Errorf("the moved pod's Job is %s, want the same name %s", a.JobName, waiting.JobName)
		}
		if want := map[string]string{pipeline.EmulationLabel("arm64"): "true"}; !maps.Equal(moved.Spec.NodeSelector, want) {
			return false, fmt.Errorf("the new pod %s has node selector %v, want %v", moved.Name, moved.Spec.NodeSelector, want)
		}
		return true, nil
	})
	b := e.builds(t.Context(), "cordon")[0]
	if b.Status.Attempt != 1 || len(b.Status.FailedAttempts) != 0 {
		t.Errorf("moving the waiting pod cost an attempt: attempt %d, failed %v", b.Status.Attempt, b.Status.FailedAttempts)
	}
	if a := archEntry(&b, "arm64"); a == nil || !strings.Contains(a.Message, "built under emulation") {
		t.Errorf("the arm64 entry does not say it builds under emulation now: %+v", a)
	}
}

// setUnschedulable cordons or uncordons a node, as kubectl cordon/uncordon do.
func (e *env) setUnschedulable(node string, unschedulable bool) {
	e.t.Helper()
	patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, unschedulable)
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}
	if err := e.c.Patch(e.t.Context(), n, client.RawPatch(types.StrategicMergePatchType, []byte(patch))); err != nil {
		e.t.Fatalf("setting %s unschedulable=%t: %v", node, unschedulable, err)
	}
}
