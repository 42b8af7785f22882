package kubeletstandin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/mosb-dev/mosb/test/harness"
)

const (
	nodeName = "standin-node-a"
	// Host paths the tests mount over; none may exist on the host before or after.
	hostCMPath     = "/etc/mosb-standin-test"
	hostSecretPath = "/var/run/mosb-standin-secret" // /var/run is a symlink to /run on Debian
	hostDataPath   = "/mnt/mosb-standin-data"
)

// tWriter sends each write to the test log.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

type env struct {
	cs kubernetes.Interface
	si *StandIn
	ns string
}

func TestStandIn(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver + etcd and runs processes in mount namespaces")
	}
	if os.Geteuid() != 0 {
		t.Skip("the kubelet stand-in needs root (mount namespaces)")
	}
	for _, p := range []string{hostCMPath, "/run/mosb-standin-secret", hostDataPath, "/dev/termination-log", "/mosb-standin-toplevel"} {
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("%s exists on this machine before the test; remove it (the test asserts the stand-in never creates it)", p)
		}
	}
	cp := harness.StartControlPlane(t)
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	ns := "standin-test"
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	si, err := Start(ctx, cp.Config, Options{
		Nodes:           []Node{{Name: nodeName, Arch: runtime.GOARCH, Labels: map[string]string{"mosb.dev/test": "yes"}}},
		Namespaces:      []string{ns},
		Commands:        map[string]string{"sh": "/bin/sh"},
		WorkDir:         t.TempDir(),
		Log:             tWriter{t},
		ContainerOutput: tWriter{t},
		RestartBackoff:  200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(si.Stop)
	e := &env{cs: cs, si: si, ns: ns}

	t.Run("Node", e.testNode)
	t.Run("ConfigMapItemToTerminationLog", e.testConfigMapItem)
	t.Run("FailureFallsBackToLogs", e.testFailure)
	t.Run("ActiveDeadline", e.testDeadline)
	t.Run("DeleteRunningPod", e.testDelete)
	t.Run("Unschedulable", e.testUnschedulable)
	t.Run("SecretReadOnly", e.testSecret)
	t.Run("InitContainerAndOnFailureRestart", e.testInitAndRestart)
	t.Run("InitContainerFails", e.testInitFails)
	t.Run("UnknownCommand", e.testUnknownCommand)
	t.Run("NewTopLevelDirRefused", e.testTopLevel)
	t.Run("WaitsForConfigMap", e.testWaitsForConfigMap)
	t.Run("RunAsUserAndFSGroup", e.testRunAsUser)
	t.Run("CordonedNode", e.testCordoned)
	t.Run("NodeLabelAdded", e.testNodeLabelAdded)
	t.Run("StopKillsProcesses", e.testStop) // last: stops the stand-in

	for _, p := range []string{hostCMPath, "/run/mosb-standin-secret", hostDataPath, "/dev/termination-log", "/mosb-standin-toplevel"} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("host path %s was created or touched by the stand-in (lstat: %v)", p, err)
		}
	}
}

func (e *env) testNode(t *testing.T) {
	n, err := e.cs.CoreV1().Nodes().Get(context.Background(), nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{corev1.LabelArchStable: runtime.GOARCH, corev1.LabelOSStable: "linux", corev1.LabelHostname: nodeName, "mosb.dev/test": "yes"} {
		if n.Labels[k] != v {
			t.Errorf("node label %s = %q, want %q", k, n.Labels[k], v)
		}
	}
	ready := false
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	if !ready {
		t.Errorf("node is not Ready: %+v", n.Status.Conditions)
	}
	if len(n.Spec.Taints) != 0 {
		t.Errorf("node keeps taints %+v", n.Spec.Taints)
	}
	if n.Status.Allocatable.Cpu().IsZero() || n.Status.Capacity.Memory().IsZero() {
		t.Errorf("node capacity/allocatable not set: %+v / %+v", n.Status.Capacity, n.Status.Allocatable)
	}
}

func (e *env) testConfigMapItem(t *testing.T) {
	ctx := context.Background()
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "greeting", Namespace: e.ns},
		Data:       map[string]string{"greeting": "hello from a configmap", "other": "not projected"},
		BinaryData: map[string][]byte{"blob": {0, 1, 2}},
	}
	if _, err := e.cs.CoreV1().ConfigMaps(e.ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mode := int32(0o440)
	script := `set -e
cat ` + hostCMPath + `/sub/msg.txt > /dev/termination-log
stat -c 'mode=%a' ` + hostCMPath + `/sub/msg.txt
echo "blob=$(od -An -tx1 ` + hostCMPath + `/blob.bin | tr -d ' ')"
test ! -e ` + hostCMPath + `/other
echo "pod=$POD_NAME ns=$POD_NS greeting=$GREETING host=$(hostname) pwd=$(pwd)"`
	pod := e.pod("cm-item", script, func(p *corev1.Pod) {
		c := &p.Spec.Containers[0]
		c.Env = []corev1.EnvVar{
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "POD_NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			{Name: "GREETING", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "greeting"}, Key: "greeting"}}},
		}
		c.WorkingDir = hostCMPath + "/sub"
		c.VolumeMounts = []corev1.VolumeMount{{Name: "cfg", MountPath: hostCMPath, ReadOnly: true}}
		p.Spec.Volumes = []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "greeting"},
			Items:                []corev1.KeyToPath{{Key: "greeting", Path: "sub/msg.txt"}, {Key: "blob", Path: "blob.bin"}},
			DefaultMode:          &mode,
		}}}}
	})
	e.create(t, pod)
	got := e.waitPod(t, pod.Name, 60*time.Second, terminal)
	if got.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("phase %s, want Succeeded; status %+v; logs:\n%s", got.Status.Phase, got.Status, e.logs(pod.Name))
	}
	if got.Spec.NodeName != nodeName {
		t.Errorf("nodeName %q, want %q", got.Spec.NodeName, nodeName)
	}
	term := mainTerminated(t, got)
	if term.Message != "hello from a configmap" || term.ExitCode != 0 || term.Reason != "Completed" {
		t.Errorf("terminated = %+v, want message %q, exit 0, reason Completed", term, "hello from a configmap")
	}
	if term.StartedAt.IsZero() || term.FinishedAt.Before(&term.StartedAt) {
		t.Errorf("startedAt %v finishedAt %v", term.StartedAt, term.FinishedAt)
	}
	if got.Status.StartTime == nil {
		t.Error("status.startTime not set")
	}
	for typ, want := range map[corev1.PodConditionType]corev1.ConditionStatus{
		corev1.PodScheduled: corev1.ConditionTrue, corev1.PodInitialized: corev1.ConditionTrue,
		corev1.ContainersReady: corev1.ConditionFalse, corev1.PodReady: corev1.ConditionFalse,
	} {
		if c := condition(got, typ); c == nil || c.Status != want {
			t.Errorf("condition %s = %+v, want status %s", typ, c, want)
		}
	}
	logs := e.logs(pod.Name)
	for _, want := range []string{"mode=440", "blob=000102", fmt.Sprintf("pod=%s ns=%s greeting=hello from a configmap host=%s pwd=%s/sub", pod.Name, e.ns, pod.Name, hostCMPath)} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	if _, err := os.Lstat(hostCMPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("host path %s exists after the pod ran (lstat: %v)", hostCMPath, err)
	}
}

func (e *env) testFailure(t *testing.T) {
	script := `i=1; while [ $i -le 100 ]; do echo "line $i"; i=$((i+1)); done; echo boom >&2; exit 3`
	pod := e.pod("fails", script, func(p *corev1.Pod) {
		p.Spec.Containers[0].TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
	})
	e.create(t, pod)
	got := e.waitPod(t, pod.Name, 60*time.Second, terminal)
	if got.Status.Phase != corev1.PodFailed {
		t.Fatalf("phase %s, want Failed", got.Status.Phase)
	}
	term := mainTerminated(t, got)
	if term.ExitCode != 3 || term.Reason != "Error" {
		t.Errorf("terminated = %+v, want exit 3, reason Error", term)
	}
	lines := strings.Split(strings.TrimSuffix(term.Message, "\n"), "\n")
	if len(lines) != 80 || lines[0] != "line 22" || lines[79] != "boom" {
		t.Errorf("FallbackToLogsOnError message has %d lines (%q … %q), want the last 80 lines: line 22 … boom", len(lines), lines[0], lines[len(lines)-1])
	}
	if logs := e.logs(pod.Name); !strings.HasPrefix(logs, "line 1\nline 2\n") || !strings.HasSuffix(logs, "boom\n") {
		t.Errorf("logs do not hold the whole output:\n%s", logs)
	}
}

func (e *env) testDeadline(t *testing.T) {
	deadline := int64(2)
	pod := e.pod("deadline", `echo started; sleep 120`, func(p *corev1.Pod) {
		p.Spec.ActiveDeadlineSeconds = &deadline
	})
	e.create(t, pod)
	got := e.waitPod(t, pod.Name, 60*time.Second, terminal)
	if got.Status.Phase != corev1.PodFailed || got.Status.Reason != "DeadlineExceeded" || !strings.Contains(got.Status.Message, "deadline") {
		t.Fatalf("phase %s reason %q message %q, want Failed/DeadlineExceeded", got.Status.Phase, got.Status.Reason, got.Status.Message)
	}
	term := mainTerminated(t, got)
	if term.Signal != int32(syscall.SIGTERM) || term.ExitCode != 128+int32(syscall.SIGTERM) {
		t.Errorf("terminated = %+v, want killed by SIGTERM (exit 143)", term)
	}
	if ran := term.FinishedAt.Sub(got.Status.StartTime.Time); ran > 30*time.Second {
		t.Errorf("the pod ran %s with a deadline of 2s", ran)
	}
}

func (e *env) testDelete(t *testing.T) {
	ctx := context.Background()
	// $$$$: Kubernetes expands $$ to $ in commands, so the shell sees $$.
	pod := e.pod("deleted", `echo "pid=$$$$"; exec sleep 300`, nil)
	e.create(t, pod)
	running := e.waitPod(t, pod.Name, 60*time.Second, func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil
	})
	if running.Status.Phase != corev1.PodRunning {
		t.Errorf("phase %s while the container runs, want Running", running.Status.Phase)
	}
	for _, typ := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		if c := condition(running, typ); c == nil || c.Status != corev1.ConditionTrue {
			t.Errorf("condition %s = %+v while running, want True", typ, c)
		}
	}
	var pid int
	poll(t, 10*time.Second, func() bool {
		logs, _ := e.si.Logs(e.ns, pod.Name)
		_, after, ok := strings.Cut(logs, "pid=")
		if !ok {
			return false
		}
		pid, _ = strconv.Atoi(strings.TrimSpace(after))
		return pid > 0
	})
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the container's process %d is not running: %v", pid, err)
	}
	if err := e.cs.CoreV1().Pods(e.ns).Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 40*time.Second, func() bool {
		_, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, pod.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the pod is gone but its process %d is still there (kill -0: %v)", pid, err)
	}
}

func (e *env) testUnschedulable(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	pod := e.pod("nowhere", "touch "+marker, func(p *corev1.Pod) {
		p.Spec.NodeSelector = map[string]string{corev1.LabelArchStable: "s390x-not-here"}
	})
	e.create(t, pod)
	got := e.waitPod(t, pod.Name, 30*time.Second, func(p *corev1.Pod) bool {
		c := condition(p, corev1.PodScheduled)
		return c != nil && c.Status == corev1.ConditionFalse
	})
	c := condition(got, corev1.PodScheduled)
	if c.Reason != corev1.PodReasonUnschedulable || !strings.Contains(c.Message, "0/1 nodes are available") || !strings.Contains(c.Message, "node affinity/selector") {
		t.Errorf("PodScheduled = %+v, want Unschedulable with a message", c)
	}
	if got.Spec.NodeName != "" || got.Status.Phase != corev1.PodPending {
		t.Errorf("nodeName %q phase %s, want unbound and Pending", got.Spec.NodeName, got.Status.Phase)
	}
	// A later pod runs to completion, so the stand-in has long been past the unschedulable one.
	after := e.pod("after-nowhere", "true", nil)
	e.create(t, after)
	e.waitPod(t, after.Name, 60*time.Second, terminal)
	got, err := e.cs.CoreV1().Pods(e.ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.NodeName != "" || got.Status.Phase != corev1.PodPending || len(got.Status.ContainerStatuses) != 0 {
		t.Errorf("unschedulable pod changed: nodeName %q phase %s statuses %+v", got.Spec.NodeName, got.Status.Phase, got.Status.ContainerStatuses)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the unschedulable pod's command ran (%s exists)", marker)
	}
	if _, err := e.si.Logs(e.ns, pod.Name); err == nil {
		t.Error("Logs has output of the unschedulable pod")
	}
}

func (e *env) testSecret(t *testing.T) {
	ctx := context.Background()
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "push", Namespace: e.ns}, Data: map[string][]byte{"password": []byte("s3cret")}}
	if _, err := e.cs.CoreV1().Secrets(e.ns).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	script := `cat ` + hostSecretPath + `/password > /dev/termination-log
if touch ` + hostSecretPath + `/new 2>/dev/null; then echo WRITABLE; exit 1; fi
if echo x >> ` + hostSecretPath + `/password 2>/dev/null; then echo WRITABLE; exit 1; fi
echo read-only ok`
	pod := e.pod("secret", script, func(p *corev1.Pod) {
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "push", MountPath: hostSecretPath, ReadOnly: true}}
		p.Spec.Volumes = []corev1.Volume{{Name: "push", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "push"}}}}
	})
	e.create(t, pod)
	got := e.waitPod(t, pod.Name, 60*time.Second, terminal)
	term := mainTerminated(t, got)
	if got.Status.Phase != corev1.PodSucceeded || term.Message != "s3cret" {
		t.Fatalf("phase %s, terminated %+v; want Succeeded with the secret as message; logs:\n%s", got.Status.Phase, term, e.logs(pod.Name))
	}
	if logs := e.logs(pod.Name); !strings.Contains(logs, "read-only ok") {
		t.Errorf("logs:\n%s", logs)
	}
	if _, err := os.Lstat("/run/mosb-standin-secret"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("host path /run/mosb-standin-secret exists (lstat: %v)", err)
	}
}

func (e *env) testInitAndRestart(t *testing.T) {
	script := `cat ` + hostDataPath + `/from-init
if [ -f ` + hostDataPath + `/once ]; then echo second run; exit 0; fi
touch ` + hostDataPath + `/once; echo first run; exit 1`
	pod := e.pod("init-restart", script, func(p *corev1.Pod) {
		p.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
		mount := []corev1.VolumeMount{{Name: "data", MountPath: hostDataPath}}
		p.Spec.Containers[0].VolumeMounts = mount
		p.Spec.InitContainers = []corev1.Container{{
			Name: "prep", Image: "busybox", Command: []string{"sh", "-c", "echo written by $(CONTAINER) > " + hostDataPath + "/from-init"},
			Env:          []corev1.EnvVar{{Name: "CONTAINER", Value: "init"}},
			VolumeMounts: mount,
		}}
		p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	})
	e.create(t, pod)
	got := e.waitPod(t, pod.Name, 60*time.Second, terminal)
	if got.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("phase %s, want Succeeded; logs:\n%s", got.Status.Phase, e.logs(pod.Name))
	}
	if n := len(got.Status.InitContainerStatuses); n != 1 || got.Status.InitContainerStatuses[0].State.Terminated == nil || got.Status.InitContainerStatuses[0].State.Terminated.ExitCode != 0 {
		t.Errorf("init container status %+v", got.Status.InitContainerStatuses)
	}
	cs := got.Status.ContainerStatuses[0]
	if cs.RestartCount != 1 || cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != 1 {
		t.Errorf("restartCount %d lastState %+v, want one restart after exit 1", cs.RestartCount, cs.LastTerminationState)
	}
	logs := e.logs(pod.Name)
	for _, want := range []string{"--- container prep (run 0) ---", "--- container main (run 0) ---\nwritten by init\nfirst run", "--- container main (run 1) ---\nwritten by init\nsecond run"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	last, err := e.si.ContainerLogs(e.ns, pod.Name, "main")
	if err != nil || last != "written by init\nsecond run\n" {
		t.Errorf("ContainerLogs(main) = %q, %v", last, err)
	}
}

func (e *env) testInitFails(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "main-ran")
	pod := e.pod("init-fails", "touch "+marker, func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "prep", Image: "busybox", Command: []string{"sh", "-c", "echo no; exit 2"}}}
	})
	e.create(t, pod)
	got := e.waitPod(t, pod.Name, 60*time.Second, terminal)
	if got.Status.Phase != corev1.PodFailed {
		t.Fatalf("phase %s, want Failed", got.Status.Phase)
	}
	if it := got.Status.InitContainerStatuses[0].State.Terminated; it == nil || it.ExitCode != 2 {
		t.Errorf("init container state %+v, want terminated with exit 2", got.Status.InitContainerStatuses[0].State)
	}
	if c := condition(got, corev1.PodInitialized); c == nil || c.Status != corev1.ConditionFalse {
		t.Errorf("Initialized = %+v, want False", c)
	}
	if term := mainTerminated(t, got); !strings.Contains(term.Message, `init container "prep" failed`) {
		t.Errorf("main container state %+v, want a message saying it never started because prep failed", term)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Error("the main container ran after its init container failed")
	}
}

func (e *env) testUnknownCommand(t *testing.T) {
	pod := e.pod("unknown-command", "", func(p *corev1.Pod) {
		p.Spec.Containers[0].Command = []string{"no-such-tool", "--flag"}
	})
	e.create(t, pod)
	got := e.waitPod(t, pod.Name, 60*time.Second, terminal)
	term := mainTerminated(t, got)
	if got.Status.Phase != corev1.PodFailed || term.Reason != "StartError" || term.ExitCode != 128 || !strings.Contains(term.Message, `"no-such-tool"`) {
		t.Errorf("phase %s terminated %+v, want Failed with StartError naming the command", got.Status.Phase, term)
	}
}

func (e *env) testTopLevel(t *testing.T) {
	pod := e.pod("top-level", "true", func(p *corev1.Pod) {
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "d", MountPath: "/mosb-standin-toplevel/x"}}
		p.Spec.Volumes = []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	})
	e.create(t, pod)
	got := e.waitPod(t, pod.Name, 60*time.Second, terminal)
	term := mainTerminated(t, got)
	if got.Status.Phase != corev1.PodFailed || term.Reason != "StartError" || !strings.Contains(term.Message, "/mosb-standin-toplevel") {
		t.Errorf("phase %s terminated %+v, want Failed with StartError about the new top-level directory", got.Status.Phase, term)
	}
}

func (e *env) testWaitsForConfigMap(t *testing.T) {
	ctx := context.Background()
	pod := e.pod("late-configmap", "cat "+hostCMPath+"/v > /dev/termination-log", func(p *corev1.Pod) {
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "late", MountPath: hostCMPath}}
		p.Spec.Volumes = []corev1.Volume{{Name: "late", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "late"}}}}}
	})
	e.create(t, pod)
	poll(t, 30*time.Second, func() bool {
		evs, err := e.cs.CoreV1().Events(e.ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod.Name + ",reason=FailedMount"})
		return err == nil && len(evs.Items) > 0 && strings.Contains(evs.Items[0].Message, `configmap "late" not found`)
	})
	got, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != corev1.PodPending || len(got.Status.ContainerStatuses) != 1 || got.Status.ContainerStatuses[0].State.Waiting == nil ||
		got.Status.ContainerStatuses[0].State.Waiting.Reason != "ContainerCreating" {
		t.Errorf("while its ConfigMap is missing: phase %s statuses %+v, want Pending and waiting in ContainerCreating", got.Status.Phase, got.Status.ContainerStatuses)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "late", Namespace: e.ns}, Data: map[string]string{"v": "arrived"}}
	if _, err := e.cs.CoreV1().ConfigMaps(e.ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got = e.waitPod(t, pod.Name, 60*time.Second, terminal)
	if term := mainTerminated(t, got); got.Status.Phase != corev1.PodSucceeded || term.Message != "arrived" {
		t.Errorf("phase %s terminated %+v, want Succeeded with the late ConfigMap's value", got.Status.Phase, term)
	}
}

func (e *env) testRunAsUser(t *testing.T) {
	uid, fsGroup := int64(1000), int64(2000)
	script := `id -u > /dev/termination-log
echo "groups=$(id -G)"
touch ` + hostDataPath + `/made && stat -c 'file-group=%g' ` + hostDataPath + `/made`
	pod := e.pod("run-as-user", script, func(p *corev1.Pod) {
		p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: &uid, FSGroup: &fsGroup}
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: hostDataPath}}
		p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	})
	e.create(t, pod)
	got := e.waitPod(t, pod.Name, 60*time.Second, terminal)
	if term := mainTerminated(t, got); got.Status.Phase != corev1.PodSucceeded || term.Message != "1000\n" {
		t.Fatalf("phase %s terminated %+v, want Succeeded with uid 1000; logs:\n%s", got.Status.Phase, term, e.logs(pod.Name))
	}
	if logs := e.logs(pod.Name); !strings.Contains(logs, "groups=0 2000") || !strings.Contains(logs, "file-group=2000") {
		t.Errorf("want primary group 0, supplementary fsGroup 2000 and the emptyDir's files in group 2000; logs:\n%s", logs)
	}
}

// testCordoned cordons the node before a pod is created: the pod stays Pending and Unschedulable, in
// kube-scheduler's words, while a pod tolerating the cordon still runs there; uncordoning the node
// is what gets the first pod bound and run.
func (e *env) testCordoned(t *testing.T) {
	e.patchNode(t, `{"spec":{"unschedulable":true}}`, func(n *corev1.Node) bool { return n.Spec.Unschedulable })
	t.Cleanup(func() {
		e.patchNode(t, `{"spec":{"unschedulable":false}}`, func(n *corev1.Node) bool { return !n.Spec.Unschedulable })
	})

	pod := e.pod("on-cordoned-node", "echo ran", nil)
	e.create(t, pod)
	got := e.waitPod(t, pod.Name, 30*time.Second, unschedulable)
	if c, want := condition(got, corev1.PodScheduled), "0/1 nodes are available: 1 node(s) were unschedulable."; c.Message != want {
		t.Errorf("PodScheduled message %q, want %q", c.Message, want)
	}
	if got.Spec.NodeName != "" || got.Status.Phase != corev1.PodPending {
		t.Errorf("nodeName %q phase %s on a cordoned node, want unbound and Pending", got.Spec.NodeName, got.Status.Phase)
	}

	tolerant := e.pod("tolerates-cordon", "true", func(p *corev1.Pod) {
		p.Spec.Tolerations = []corev1.Toleration{{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	})
	e.create(t, tolerant)
	if got := e.waitPod(t, tolerant.Name, 60*time.Second, terminal); got.Status.Phase != corev1.PodSucceeded || got.Spec.NodeName != nodeName {
		t.Errorf("pod tolerating the cordon: phase %s nodeName %q, want Succeeded on %s", got.Status.Phase, got.Spec.NodeName, nodeName)
	}

	e.patchNode(t, `{"spec":{"unschedulable":false}}`, func(n *corev1.Node) bool { return !n.Spec.Unschedulable })
	got = e.waitPod(t, pod.Name, 60*time.Second, terminal)
	if got.Status.Phase != corev1.PodSucceeded || got.Spec.NodeName != nodeName {
		t.Fatalf("after uncordoning: phase %s nodeName %q, want Succeeded on %s; logs:\n%s", got.Status.Phase, got.Spec.NodeName, nodeName, e.logs(pod.Name))
	}
	if c := condition(got, corev1.PodScheduled); c == nil || c.Status != corev1.ConditionTrue {
		t.Errorf("PodScheduled = %+v after binding, want True", c)
	}
	if logs := e.logs(pod.Name); logs != "ran\n" {
		t.Errorf("logs %q, want %q", logs, "ran\n")
	}
}

// testNodeLabelAdded: a pod whose nodeSelector names a label the node lacks is Unschedulable until
// the label is added to the node; then it is bound and runs.
func (e *env) testNodeLabelAdded(t *testing.T) {
	const label = "mosb.dev/added-later"
	pod := e.pod("needs-later-label", "echo ran", func(p *corev1.Pod) { p.Spec.NodeSelector[label] = "yes" })
	e.create(t, pod)
	got := e.waitPod(t, pod.Name, 30*time.Second, unschedulable)
	if c, want := condition(got, corev1.PodScheduled), "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."; c.Message != want {
		t.Errorf("PodScheduled message %q, want %q", c.Message, want)
	}
	if got.Spec.NodeName != "" || got.Status.Phase != corev1.PodPending {
		t.Errorf("nodeName %q phase %s without the label, want unbound and Pending", got.Spec.NodeName, got.Status.Phase)
	}

	e.patchNode(t, `{"metadata":{"labels":{"`+label+`":"yes"}}}`, func(n *corev1.Node) bool { return n.Labels[label] == "yes" })
	t.Cleanup(func() {
		e.patchNode(t, `{"metadata":{"labels":{"`+label+`":null}}}`, func(n *corev1.Node) bool { _, has := n.Labels[label]; return !has })
	})
	got = e.waitPod(t, pod.Name, 60*time.Second, terminal)
	if got.Status.Phase != corev1.PodSucceeded || got.Spec.NodeName != nodeName {
		t.Fatalf("after labelling the node: phase %s nodeName %q, want Succeeded on %s; logs:\n%s", got.Status.Phase, got.Spec.NodeName, nodeName, e.logs(pod.Name))
	}
}

// patchNode merge-patches the stand-in's node and waits until the stand-in's own node cache shows the
// change (seen), so that whatever the test does next is decided against the changed node.
func (e *env) patchNode(t *testing.T, patch string, seen func(*corev1.Node) bool) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.cs.CoreV1().Nodes().Patch(ctx, nodeName, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("patching node %s with %s: %v", nodeName, patch, err)
	}
	harness.Eventually(ctx, t, 50*time.Millisecond, 10*time.Second, "the stand-in's node cache to show "+patch, func(context.Context) (bool, error) {
		n, err := e.si.nodeLister.Get(nodeName)
		if err != nil {
			return false, err
		}
		return seen(n), nil
	})
}

// testStop stops the stand-in with a pod running: the process is killed and the pod keeps the status
// last written (the stand-in does not invent an ending).
func (e *env) testStop(t *testing.T) {
	pod := e.pod("at-stop", `echo "pid=$$$$"; exec sleep 300`, nil)
	e.create(t, pod)
	e.waitPod(t, pod.Name, 60*time.Second, func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil
	})
	var pid int
	poll(t, 10*time.Second, func() bool {
		logs, _ := e.si.Logs(e.ns, pod.Name)
		_, after, ok := strings.Cut(logs, "pid=")
		pid, _ = strconv.Atoi(strings.TrimSpace(after))
		return ok && pid > 0
	})
	e.si.Stop()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("Stop returned but process %d is still there (kill -0: %v)", pid, err)
	}
	got, err := e.cs.CoreV1().Pods(e.ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != corev1.PodRunning {
		t.Errorf("phase %s after Stop, want the last reported Running", got.Status.Phase)
	}
}

// pod is a one-container pod running `sh -c script` with restartPolicy Never.
func (e *env) pod(name, script string, mutate func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			NodeSelector:  map[string]string{corev1.LabelArchStable: runtime.GOARCH},
			Containers:    []corev1.Container{{Name: "main", Image: "busybox", Command: []string{"sh", "-c", script}}},
		},
	}
	if mutate != nil {
		mutate(p)
	}
	return p
}

func (e *env) create(t *testing.T, p *corev1.Pod) {
	t.Helper()
	if _, err := e.cs.CoreV1().Pods(e.ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) logs(pod string) string {
	l, err := e.si.Logs(e.ns, pod)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return l
}

// waitPod polls the pod until ok holds, failing the test at the deadline.
func (e *env) waitPod(t *testing.T, name string, timeout time.Duration, ok func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var last *corev1.Pod
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		p, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = p
		return ok(p), nil
	})
	if err != nil {
		if last != nil {
			t.Fatalf("pod %s: condition not reached within %s; last status: %+v\nlogs:\n%s", name, timeout, last.Status, e.logs(name))
		}
		t.Fatalf("pod %s: not found within %s", name, timeout)
	}
	return last
}

func poll(t *testing.T, timeout time.Duration, ok func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) { return ok(), nil })
	if err != nil {
		t.Fatalf("condition not reached within %s", timeout)
	}
}

// unschedulable: the scheduler has said the pod fits no node.
func unschedulable(p *corev1.Pod) bool {
	c := condition(p, corev1.PodScheduled)
	return c != nil && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable
}

func terminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

func condition(p *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == t {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func mainTerminated(t *testing.T, p *corev1.Pod) *corev1.ContainerStateTerminated {
	t.Helper()
	if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Terminated == nil {
		t.Fatalf("pod %s: no terminated container state: %+v", p.Name, p.Status.ContainerStatuses)
	}
	return p.Status.ContainerStatuses[0].State.Terminated
}
