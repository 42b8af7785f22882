package pipeline

import (
	"maps"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// node is a Node named name with the given labels ("k=v"); cordoned sets spec.unschedulable.
func node(name string, cordoned bool, labels ...string) corev1.Node {
	n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		n.Labels[k] = v
	}
	n.Spec.Unschedulable = cordoned
	return n
}

func TestEmulationLabel(t *testing.T) {
	if got := EmulationLabel("arm64"); got != "emulation.mosb.dev/arm64" {
		t.Errorf("EmulationLabel(arm64) = %q", got)
	}
}

func TestPlace(t *testing.T) {
	native := map[string]string{"kubernetes.io/arch": "arm64"}
	emulated := map[string]string{"emulation.mosb.dev/arm64": "true"}
	deleting := node("arm-going", false, "kubernetes.io/arch=arm64")
	now := metav1.Now()
	deleting.DeletionTimestamp = &now
	for _, tc := range []struct {
		name     string
		nodes    []corev1.Node
		allow    bool
		selector map[string]string
		emulated bool
		waiting  bool
		// message holds every one of these; without lists what it must not say.
		message, without []string
	}{
		{
			name:     "a schedulable arm64 node: native",
			nodes:    []corev1.Node{node("amd", false, "kubernetes.io/arch=amd64", "emulation.mosb.dev/arm64=true"), node("arm", false, "kubernetes.io/arch=arm64")},
			allow:    true,
			selector: native,
		},
		{
			name:     "native wins over emulation, whatever the node order",
			nodes:    []corev1.Node{node("arm", false, "kubernetes.io/arch=arm64"), node("amd", false, "kubernetes.io/arch=amd64", "emulation.mosb.dev/arm64=true")},
			allow:    true,
			selector: native,
		},
		{
			name:     "a schedulable arm64 node, emulation off: native",
			nodes:    []corev1.Node{node("arm", false, "kubernetes.io/arch=arm64")},
			selector: native,
		},
		{
			name:     "no arm64 node, a labelled node, emulation on: emulated",
			nodes:    []corev1.Node{node("amd", false, "kubernetes.io/arch=amd64", "emulation.mosb.dev/arm64=true")},
			allow:    true,
			selector: emulated, emulated: true,
			message: []string{"built under emulation on a node labelled emulation.mosb.dev/arm64=true"},
		},
		{
			name: "the only arm64 node cordoned, a labelled node, emulation on: emulated",
			nodes: []corev1.Node{
				node("arm", true, "kubernetes.io/arch=arm64"),
				node("amd", false, "kubernetes.io/arch=amd64", "emulation.mosb.dev/arm64=true"),
			},
			allow:    true,
			selector: emulated, emulated: true,
		},
		{
			name:     "no arm64 node, a labelled node, emulation off: waits, says how to turn it on",
			nodes:    []corev1.Node{node("amd", false, "kubernetes.io/arch=amd64", "emulation.mosb.dev/arm64=true")},
			selector: native, waiting: true,
			message: []string{"waiting for a schedulable arm64 node", "the cluster has none", "add one", "--allow-emulation", "emulation.mosb.dev/arm64=true"},
		},
		{
			name:     "no node at all, emulation off: waits",
			selector: native, waiting: true,
			message: []string{"waiting for a schedulable arm64 node: the cluster has none", "--allow-emulation and label a node"},
		},
		{
			name:     "no arm64 node, emulation on, no labelled node: waits, says to label one",
			nodes:    []corev1.Node{node("amd", false, "kubernetes.io/arch=amd64")},
			allow:    true,
			selector: native, waiting: true,
			message: []string{"the cluster has none", "add one", "label a node that runs arm64 binaries under qemu binfmt emulation.mosb.dev/arm64=true"},
			without: []string{"--allow-emulation"},
		},
		{
			name:     "the label must say true",
			nodes:    []corev1.Node{node("amd", false, "kubernetes.io/arch=amd64", "emulation.mosb.dev/arm64=false")},
			allow:    true,
			selector: native, waiting: true,
			message: []string{"label a node"},
		},
		{
			name:     "another architecture's label does not count",
			nodes:    []corev1.Node{node("amd", false, "kubernetes.io/arch=amd64", "emulation.mosb.dev/s390x=true")},
			allow:    true,
			selector: native, waiting: true,
		},
		{
			name: "arm64 nodes cordoned or being deleted: waits, names them",
			nodes: []corev1.Node{
				node("arm-b", true, "kubernetes.io/arch=arm64"), node("arm-a", true, "kubernetes.io/arch=arm64"), deleting,
				node("amd", false, "kubernetes.io/arch=amd64"),
			},
			selector: native, waiting: true,
			message: []string{"nodes arm-a, arm-b, arm-going are unschedulable", "--allow-emulation"},
		},
		{
			name: "emulation on, the labelled node cordoned: waits, does not ask for a label it has",
			nodes: []corev1.Node{
				node("amd", true, "kubernetes.io/arch=amd64", "emulation.mosb.dev/arm64=true"),
			},
			allow:    true,
			selector: native, waiting: true,
			message: []string{"the cluster has none", "node amd, labelled emulation.mosb.dev/arm64=true, is unschedulable too", "make one of them schedulable"},
			without: []string{"--allow-emulation", "label a node"},
		},
		{
			name: "a cordoned labelled node does not count, a schedulable one does",
			nodes: []corev1.Node{
				node("amd-1", true, "kubernetes.io/arch=amd64", "emulation.mosb.dev/arm64=true"),
				node("amd-2", false, "kubernetes.io/arch=amd64", "emulation.mosb.dev/arm64=true"),
			},
			allow:    true,
			selector: emulated, emulated: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Place("arm64", tc.nodes, tc.allow)
			if !maps.Equal(p.NodeSelector, tc.selector) || p.Emulated != tc.emulated || p.Waiting != tc.waiting || p.Arch != "arm64" {
				t.Fatalf("Place = %+v; want selector %v, emulated %v, waiting %v", p, tc.selector, tc.emulated, tc.waiting)
			}
			if !tc.emulated && !tc.waiting && p.Message != "" {
				t.Errorf("a native build has a message: %q", p.Message)
			}
			if (tc.emulated || tc.waiting) && p.Message == "" {
				t.Error("no message")
			}
			for _, s := range tc.message {
				if !strings.Contains(p.Message, s) {
					t.Errorf("message %q does not say %q", p.Message, s)
				}
			}
			for _, s := range tc.without {
				if strings.Contains(p.Message, s) {
					t.Errorf("message %q says %q", p.Message, s)
				}
			}
		})
	}
}

func TestPlaceMessageCapsTheNodeList(t *testing.T) {
	var nodes []corev1.Node
	for _, n := range []string{"e", "d", "c", "b", "a"} {
		nodes = append(nodes, node("arm-"+n, true, "kubernetes.io/arch=arm64"))
	}
	p := Place("arm64", nodes, false)
	if !strings.Contains(p.Message, "nodes arm-a, arm-b, arm-c and 2 more are unschedulable") {
		t.Errorf("message %q", p.Message)
	}
}

// pod is a build pod of arm64 with selector, bound to nodeName ("" for none yet).
func pod(selector map[string]string, nodeName string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "b-arm64-1"},
		Spec:       corev1.PodSpec{NodeSelector: selector, NodeName: nodeName},
		Status:     corev1.PodStatus{Phase: phase},
	}
}

func TestPlacementMessageOfAnExistingPod(t *testing.T) {
	native := map[string]string{"kubernetes.io/arch": "arm64"}
	emulated := map[string]string{"emulation.mosb.dev/arm64": "true"}
	waiting := Place("arm64", nil, false)
	nativeNow := Place("arm64", []corev1.Node{node("arm", false, "kubernetes.io/arch=arm64")}, false)
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		now  Placement
		want string // a substring; "" wants no message
	}{
		{"no pod", nil, waiting, ""},
		{"native, running", pod(native, "arm", corev1.PodRunning), Placement{}, ""},
		{"native, no node yet, none there", pod(native, "", corev1.PodPending), waiting, "waiting for a schedulable arm64 node"},
		{"native, no node yet, one joined", pod(native, "", corev1.PodPending), nativeNow, ""},
		// Adopted as it is: a controller without --allow-emulation still says what it is.
		{"emulated, running, today's controller would not emulate", pod(emulated, "amd", corev1.PodRunning), Placement{}, "built under emulation on a node labelled emulation.mosb.dev/arm64=true (amd)"},
		{"emulated, no node yet", pod(emulated, "", corev1.PodPending), waiting, "built under emulation on a node labelled emulation.mosb.dev/arm64=true: "},
		{"emulated, failed", pod(emulated, "amd", corev1.PodFailed), Placement{}, "built under emulation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PlacementMessage(tc.pod, "arm64", tc.now)
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("PlacementMessage = %q, want %q", got, tc.want)
			}
		})
	}
	if PodEmulated(pod(native, "arm", corev1.PodRunning), "arm64") || !PodEmulated(pod(emulated, "", corev1.PodPending), "arm64") || PodEmulated(pod(emulated, "", corev1.PodPending), "s390x") {
		t.Error("PodEmulated does not read the selector")
	}
}

func TestReplaceOnlyAPodNoNodeHasTaken(t *testing.T) {
	native := map[string]string{"kubernetes.io/arch": "arm64"}
	emulated := map[string]string{"emulation.mosb.dev/arm64": "true"}
	labelled := node("amd", false, "kubernetes.io/arch=amd64", "emulation.mosb.dev/arm64=true")
	emulateNow := Place("arm64", []corev1.Node{labelled}, true)
	nativeNow := Place("arm64", []corev1.Node{labelled, node("arm", false, "kubernetes.io/arch=arm64")}, true)
	waitNow := Place("arm64", []corev1.Node{labelled}, false)
	gone := pod(native, "", corev1.PodPending)
	now := metav1.Now()
	gone.DeletionTimestamp = &now
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		now  Placement
		want bool
	}{
		{"waiting native pod, emulation now possible", pod(native, "", corev1.PodPending), emulateNow, true},
		{"waiting native pod, phase not yet written", pod(native, "", ""), emulateNow, true},
		{"waiting emulated pod, a native node joined", pod(emulated, "", corev1.PodPending), nativeNow, true},
		{"waiting native pod, still nothing to run it", pod(native, "", corev1.PodPending), waitNow, false},
		{"waiting emulated pod, emulation turned off and no native node", pod(emulated, "", corev1.PodPending), waitNow, false},
		{"waiting native pod, a native node joined: the scheduler takes it", pod(native, "", corev1.PodPending), nativeNow, false},
		{"native pod bound to a node", pod(native, "arm", corev1.PodPending), emulateNow, false},
		{"native pod running", pod(native, "arm", corev1.PodRunning), emulateNow, false},
		{"emulated pod running, a native node joined", pod(emulated, "amd", corev1.PodRunning), nativeNow, false},
		{"pod being deleted", gone, emulateNow, false},
		{"no pod", nil, emulateNow, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Replace(tc.pod, tc.now); got != tc.want {
				t.Errorf("Replace = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNodeChangeMovesPods(t *testing.T) {
	node := func(change func(*corev1.Node)) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"kubernetes.io/arch": "amd64"}}}
		change(n)
		return n
	}
	same := func(*corev1.Node) {}
	cordoned := func(n *corev1.Node) { n.Spec.Unschedulable = true }
	for _, tc := range []struct {
		name       string
		old, fresh func(*corev1.Node)
		want       bool
	}{
		{"heartbeat", same, func(n *corev1.Node) {
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
		}, false},
		{"emulation label added", same, func(n *corev1.Node) { n.Labels[EmulationLabel("arm64")] = "true" }, true},
		{"label removed", same, func(n *corev1.Node) { delete(n.Labels, "kubernetes.io/arch") }, true},
		{"cordoned", same, cordoned, true},
		{"uncordoned", cordoned, same, true},
		{"being deleted", same, func(n *corev1.Node) { n.DeletionTimestamp = &metav1.Time{Time: time.Unix(1, 0)} }, true},
		{"a taint", same, func(n *corev1.Node) {
			n.Spec.Taints = []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoSchedule}}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NodeChangeMovesPods(node(tc.old), node(tc.fresh)); got != tc.want {
				t.Errorf("NodeChangeMovesPods = %v, want %v", got, tc.want)
			}
		})
	}
}
