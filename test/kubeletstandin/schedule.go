package kubeletstandin

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

const defaultSchedulerName = "default-scheduler"

// schedule binds a pending pod to the first stand-in node it fits, as that node is now, or marks it
// unschedulable; a change to one of the nodes brings it back here (requeuePending).
func (s *StandIn) schedule(ctx context.Context, pod *corev1.Pod) error {
	if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}
	if pod.Spec.SchedulerName != "" && pod.Spec.SchedulerName != defaultSchedulerName {
		return nil // another scheduler's pod
	}
	nodes := s.currentNodes()
	if len(nodes) == 0 {
		return s.markUnschedulable(ctx, pod, "no nodes available to schedule pods")
	}
	misfits := map[string]int{}
	for _, n := range nodes {
		why := fitError(pod, n)
		if why == "" {
			return s.bind(ctx, pod, n.Name)
		}
		misfits[why]++
	}
	var parts []string
	for _, why := range slices.Sorted(maps.Keys(misfits)) {
		parts = append(parts, fmt.Sprintf("%d node(s) %s", misfits[why], why))
	}
	msg := fmt.Sprintf("0/%d nodes are available: %s.", len(nodes), strings.Join(parts, ", "))
	return s.markUnschedulable(ctx, pod, msg)
}

func (s *StandIn) bind(ctx context.Context, pod *corev1.Pod, node string) error {
	err := s.cs.CoreV1().Pods(pod.Namespace).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node},
	}, metav1.CreateOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone or bound meanwhile; the informer brings the news
	}
	if err != nil {
		return fmt.Errorf("binding pod %s/%s to %s: %w", pod.Namespace, pod.Name, node, err)
	}
	s.log.Info("scheduled", "pod", pod.Namespace+"/"+pod.Name, "node", node)
	s.record.Eventf(pod, corev1.EventTypeNormal, "Scheduled", "Successfully assigned %s/%s to %s (kubelet stand-in)", pod.Namespace, pod.Name, node)
	return nil
}

func (s *StandIn) markUnschedulable(ctx context.Context, pod *corev1.Pod, msg string) error {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable && c.Message == msg {
			return nil // said so already
		}
	}
	pods := s.cs.CoreV1().Pods(pod.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != pod.UID || cur.Spec.NodeName != "" {
			return nil
		}
		setPodCondition(&cur.Status, corev1.PodCondition{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
			Reason: corev1.PodReasonUnschedulable, Message: msg,
		})
		_, err = pods.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("marking pod %s/%s unschedulable: %w", pod.Namespace, pod.Name, err)
	}
	s.log.Info("unschedulable", "pod", pod.Namespace+"/"+pod.Name, "message", msg)
	s.record.Event(pod, corev1.EventTypeWarning, "FailedScheduling", msg)
	return nil
}

// fitError says why the pod cannot go to the node ("" when it can), in the scheduler's words.
// Resources are not considered: the stand-in ignores requests and limits.
func fitError(pod *corev1.Pod, node *corev1.Node) string {
	if node.DeletionTimestamp != nil {
		return "were being deleted"
	}
	// A cordoned node, as kube-scheduler's NodeUnschedulable plugin sees it: only pods that tolerate
	// the taint a cordon stands for (the node lifecycle controller, absent here, would add it) fit.
	cordon := corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule}
	if node.Spec.Unschedulable && !tolerated(pod.Spec.Tolerations, cordon) {
		return "were unschedulable"
	}
	for k, v := range pod.Spec.NodeSelector {
		if got, ok := node.Labels[k]; !ok || got != v {
			return "didn't match Pod's node affinity/selector"
		}
	}
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		if !matchesNodeSelector(a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution, node) {
			return "didn't match Pod's node affinity/selector"
		}
	}
	for _, t := range node.Spec.Taints {
		if t.Effect != corev1.TaintEffectNoSchedule && t.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		if !tolerated(pod.Spec.Tolerations, t) {
			if t.Value != "" {
				return fmt.Sprintf("had untolerated taint {%s: %s}", t.Key, t.Value)
			}
			return fmt.Sprintf("had untolerated taint {%s: }", t.Key)
		}
	}
	return ""
}

// matchesNodeSelector: the terms are ORed; a term's requirements are ANDed; an empty term matches nothing.
func matchesNodeSelector(sel *corev1.NodeSelector, node *corev1.Node) bool {
	for _, term := range sel.NodeSelectorTerms {
		if len(term.MatchExpressions) == 0 && len(term.MatchFields) == 0 {
			continue
		}
		ok := true
		for _, r := range term.MatchExpressions {
			v, has := node.Labels[r.Key]
			if !requirementMatches(r, v, has) {
				ok = false
				break
			}
		}
		for _, r := range term.MatchFields {
			if !ok {
				break
			}
			if r.Key != "metadata.name" || !requirementMatches(r, node.Name, true) {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func requirementMatches(r corev1.NodeSelectorRequirement, v string, has bool) bool {
	switch r.Operator {
	case corev1.NodeSelectorOpIn:
		return has && contains(r.Values, v)
	case corev1.NodeSelectorOpNotIn:
		return !has || !contains(r.Values, v)
	case corev1.NodeSelectorOpExists:
		return has
	case corev1.NodeSelectorOpDoesNotExist:
		return !has
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if !has || len(r.Values) != 1 {
			return false
		}
		got, err1 := strconv.ParseInt(v, 10, 64)
		want, err2 := strconv.ParseInt(r.Values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if r.Operator == corev1.NodeSelectorOpGt {
			return got > want
		}
		return got < want
	}
	return false
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// tolerated: some toleration matches the taint's key (or tolerates every key), its effect (or every
// effect) and, with operator Equal, its value.
func tolerated(tols []corev1.Toleration, t corev1.Taint) bool {
	for _, tol := range tols {
		if tol.Effect != "" && tol.Effect != t.Effect {
			continue
		}
		if tol.Key == "" {
			if tol.Operator == corev1.TolerationOpExists {
				return true
			}
			continue
		}
		if tol.Key != t.Key {
			continue
		}
		switch tol.Operator {
		case corev1.TolerationOpExists:
			return true
		case corev1.TolerationOpEqual, "":
			if tol.Value == t.Value {
				return true
			}
		}
	}
	return false
}

// setPodCondition replaces the condition of that type, keeping lastTransitionTime when the status
// does not change; it reports whether anything changed.
func setPodCondition(st *corev1.PodStatus, c corev1.PodCondition) bool {
	for i := range st.Conditions {
		old := &st.Conditions[i]
		if old.Type != c.Type {
			continue
		}
		if old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message {
			return false
		}
		c.LastTransitionTime = old.LastTransitionTime
		if old.Status != c.Status || c.LastTransitionTime.IsZero() {
			c.LastTransitionTime = metav1.Now()
		}
		*old = c
		return true
	}
	if c.LastTransitionTime.IsZero() {
		c.LastTransitionTime = metav1.Now()
	}
	st.Conditions = append(st.Conditions, c)
	return true
}
