package pipeline

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Where a build pod runs. A pod builds one architecture; it goes to a node of that architecture
// (kubernetes.io/arch) when the cluster has a schedulable one. Without one, and only when the
// controller runs with --allow-emulation, it goes to a node that says it runs that architecture's
// binaries under emulation (qemu binfmt) by the label EmulationLabel(arch)=true. Otherwise it
// keeps the native selector and waits, Pending, for such a node to join (a cluster autoscaler
// acts on exactly such pods): no node is not a build failure.

// EmulationLabelPrefix begins the node label EmulationLabel.
const EmulationLabelPrefix = "emulation.mosb.dev/"

// LabelEmulated is on a build pod placed on a node that emulates its architecture.
const LabelEmulated = "mosb.dev/emulated"

// Reasons of the placement's Events on a MachineOSBuild.
const (
	ReasonEmulated          = "Emulated"
	ReasonNoSchedulableNode = "NoSchedulableNode"
	ReasonPodMoved          = "PodMoved"
)

// EmulationLabel is the node label (value "true") by which a node advertises that it runs arch
// binaries under emulation: emulation.mosb.dev/<arch>. Admins set it; mosb only reads it.
func EmulationLabel(arch string) string { return EmulationLabelPrefix + arch }

// Placement is where one architecture's build pod goes.
type Placement struct {
	Arch string
	// NodeSelector is the build pod's.
	NodeSelector map[string]string
	// Emulated: the pod goes to a node labelled EmulationLabel(Arch)=true, not to an Arch node.
	Emulated bool
	// Waiting: no schedulable node can take the pod now; it waits with the native selector.
	Waiting bool
	// Message says why the pod is emulated or waiting, for the MachineOSBuild's status; empty
	// for a native build.
	Message string
}

// Place decides where arch's build pod goes among the cluster's nodes. allowEmulation is the
// controller's --allow-emulation.
func Place(arch string, nodes []corev1.Node, allowEmulation bool) Placement {
	native := map[string]string{corev1.LabelArchStable: arch}
	var cordonedNative, cordonedEmulating []string
	emulating := false
	for i := range nodes {
		n := &nodes[i]
		ok := schedulable(n)
		if n.Labels[corev1.LabelArchStable] == arch {
			if ok {
				return Placement{Arch: arch, NodeSelector: native}
			}
			cordonedNative = append(cordonedNative, n.Name)
		}
		if n.Labels[EmulationLabel(arch)] == "true" {
			if ok {
				emulating = true
			} else {
				cordonedEmulating = append(cordonedEmulating, n.Name)
			}
		}
	}
	label := EmulationLabel(arch) + "=true"
	if allowEmulation && emulating {
		return Placement{
			Arch: arch, NodeSelector: map[string]string{EmulationLabel(arch): "true"}, Emulated: true,
			Message: emulatedMessage(arch, ""),
		}
	}

	why := "the cluster has none"
	if len(cordonedNative) > 0 {
		names, verb := nodeList(cordonedNative)
		why = names + " " + verb + " unschedulable (cordoned or being deleted)"
	}
	var fix string
	switch {
	case !allowEmulation:
		fix = fmt.Sprintf("add one (the pod is scheduled as soon as one can take it), or run the controller with --allow-emulation and label a node that runs %s binaries under qemu binfmt %s", arch, label)
	case len(cordonedEmulating) == 0:
		fix = fmt.Sprintf("add one (the pod is scheduled as soon as one can take it), or label a node that runs %s binaries under qemu binfmt %s", arch, label)
	default:
		// Emulation is on and nodes carry the label: telling the user to label one would not help.
		names, verb := nodeList(cordonedEmulating)
		why += fmt.Sprintf(", and %s, labelled %s, %s unschedulable too", names, label, verb)
		fix = "add one or make one of them schedulable (the pod is scheduled as soon as one can take it)"
	}
	return Placement{Arch: arch, NodeSelector: native, Waiting: true,
		Message: fmt.Sprintf("waiting for a schedulable %s node: %s; %s", arch, why, fix)}
}

// emulatedMessage is the status message of an emulated build, on node when it is known.
func emulatedMessage(arch, node string) string {
	on := ""
	if node != "" {
		on = " (" + node + ")"
	}
	return fmt.Sprintf("built under emulation on a node labelled %s=true%s: there was no schedulable %s node", EmulationLabel(arch), on, arch)
}

// PodEmulated says whether a build pod of arch was placed on an emulating node: its node
// selector says so, whoever created it and with whatever flags.
func PodEmulated(pod *corev1.Pod, arch string) bool {
	return pod != nil && pod.Spec.NodeSelector[EmulationLabel(arch)] == "true"
}

// PlacementMessage is the status message of an existing build pod of arch. The pod's own selector
// says how it was placed (a pod is adopted as it is, whatever this controller would decide now);
// now is today's decision, which says why a pod no node has taken yet is waiting.
func PlacementMessage(pod *corev1.Pod, arch string, now Placement) string {
	switch {
	case pod == nil:
		return ""
	case PodEmulated(pod, arch):
		return emulatedMessage(arch, pod.Spec.NodeName)
	case pod.Spec.NodeName == "" && now.Waiting && maps.Equal(pod.Spec.NodeSelector, now.NodeSelector):
		return now.Message
	}
	return ""
}

// Unscheduled is a live build pod that no node has taken yet: nothing of it has run.
func Unscheduled(pod *corev1.Pod) bool {
	return pod != nil && pod.Spec.NodeName == "" && pod.DeletionTimestamp.IsZero() &&
		(pod.Status.Phase == corev1.PodPending || pod.Status.Phase == "")
}

// Replace says whether a build pod gives way to a new pod placed as p: only a pod no node has
// taken yet (nothing of it ran), placed otherwise than p, and only for a placement that can run
// now. So a pod waiting for a native node moves to an emulating node once the controller may
// emulate and a node carries the label, and a pod waiting for an emulating node moves to a native
// node that joined; a pod that waits either way stays as it is.
func Replace(pod *corev1.Pod, p Placement) bool {
	return Unscheduled(pod) && !p.Waiting && !maps.Equal(pod.Spec.NodeSelector, p.NodeSelector)
}

// NodeChangeMovesPods reports whether a Node update can change where a build pod goes: its labels
// (architecture, emulation) or whether new pods may land on it. Heartbeats and other status
// updates cannot, and are most of a Node's updates.
func NodeChangeMovesPods(old, updated *corev1.Node) bool {
	return !maps.Equal(old.Labels, updated.Labels) || schedulable(old) != schedulable(updated)
}

// schedulable: the scheduler may put new pods on the node.
func schedulable(n *corev1.Node) bool {
	return !n.Spec.Unschedulable && n.DeletionTimestamp.IsZero()
}

// nodeList names at most three nodes, sorted, and the verb that agrees: "node a", "is";
// "nodes a, b", "are".
func nodeList(names []string) (string, string) {
	names = slices.Sorted(slices.Values(names))
	if len(names) == 1 {
		return "node " + names[0], "is"
	}
	const most = 3
	more := ""
	if len(names) > most {
		more = fmt.Sprintf(" and %d more", len(names)-most)
		names = names[:most]
	}
	return "nodes " + strings.Join(names, ", ") + more, "are"
}
