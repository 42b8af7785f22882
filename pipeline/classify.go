package pipeline

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/mosb-dev/mosb/builder/buildpod"
)

// Reasons of pod-level failures (the worker reports its own: BuildFailed, PushFailed, …).
const (
	ReasonOutOfMemory             = "OutOfMemory"
	ReasonPodEvicted              = "PodEvicted"
	ReasonInterrupted             = buildpod.ReasonInterrupted
	ReasonBuilderImageUnavailable = "BuilderImageUnavailable"
	ReasonTimeout                 = "Timeout"
	ReasonInvalidResult           = "InvalidResult"
)

// Outcome is what one architecture's build pod says.
type Outcome struct {
	// Done: the pod finished (or failed in a way that will not change).
	Done   bool
	Failed bool
	// Reason is CamelCase, for conditions; Retryable says another attempt may succeed.
	Reason    string
	Retryable bool
	Message   string
	Result    buildpod.Result
	// Recheck, when set, is when the pod's status means something else without any change to
	// it (the end of the builder image's grace period): look again then.
	Recheck time.Duration
}

// interrupted is the outcome of a build someone stopped from outside (a deleted pod or Job):
// another attempt may succeed.
func interrupted(msg string) Outcome {
	return Outcome{Done: true, Failed: true, Reason: ReasonInterrupted, Retryable: true, Message: msg}
}

// ClassifyPod decides what a build pod's status means (a pod that is gone is ClassifyJob's to
// judge). imagePullGrace is how long a builder image may fail to pull before the build gives up on
// it.
func ClassifyPod(pod *corev1.Pod, now time.Time, imagePullGrace time.Duration) Outcome {
	// A pod someone deleted under a running build failed because of that, whatever its exit (a Job's
	// pod stays, Failed, under its finalizer until the Job controller counts it); eviction and the
	// deadline say more.
	if !pod.DeletionTimestamp.IsZero() && pod.Status.Phase != corev1.PodSucceeded &&
		pod.Status.Reason != "Evicted" && pod.Status.Reason != "DeadlineExceeded" {
		return interrupted(fmt.Sprintf("build pod %s is being deleted while it was building", pod.Name))
	}
	term := terminated(pod)
	switch pod.Status.Phase {
	case corev1.PodSucceeded:
		msg := ""
		if term != nil {
			msg = term.Message
		}
		res, err := buildpod.ParseResult(msg)
		if err != nil {
			return Outcome{Done: true, Failed: true, Reason: ReasonInvalidResult,
				Message: fmt.Sprintf("build pod %s succeeded but its termination message is not a build result: %v", pod.Name, err)}
		}
		return Outcome{Done: true, Result: res}
	case corev1.PodFailed:
		return classifyFailed(pod, term)
	}
	// The init container that fills the node image store runs the same image: it is the first to
	// fail to pull it.
	for _, cs := range append(slices.Clone(pod.Status.InitContainerStatuses), pod.Status.ContainerStatuses...) {
		w := cs.State.Waiting
		if w == nil || !imagePullProblem(w.Reason) {
			continue
		}
		since := pod.CreationTimestamp.Time
		if left := imagePullGrace - now.Sub(since); left > 0 {
			// kubelet may keep backing off without a status change: the grace ends on time anyway.
			return Outcome{Recheck: left}
		}
		return Outcome{Done: true, Failed: true, Reason: ReasonBuilderImageUnavailable,
			Message: fmt.Sprintf("build pod %s cannot pull the builder image %s for %s (%s: %s); check the controller's --builder-image and the node's access to it",
				pod.Name, builderImage(pod), now.Sub(since).Round(time.Second), w.Reason, w.Message)}
	}
	return Outcome{}
}

func classifyFailed(pod *corev1.Pod, term *corev1.ContainerStateTerminated) Outcome {
	failed := func(reason string, retryable bool, msg string) Outcome {
		return Outcome{Done: true, Failed: true, Reason: reason, Retryable: retryable, Message: msg}
	}
	switch pod.Status.Reason {
	case "Evicted":
		if msg, ok := storageEviction(pod); ok {
			// The same build under the same limit fills it again.
			return failed(buildpod.ReasonBuildStorageFull, false, msg)
		}
		return failed(ReasonPodEvicted, true, fmt.Sprintf("build pod %s was evicted from node %s: %s", pod.Name, pod.Spec.NodeName, pod.Status.Message))
	case "DeadlineExceeded":
		deadline := int64(0)
		if pod.Spec.ActiveDeadlineSeconds != nil {
			deadline = *pod.Spec.ActiveDeadlineSeconds
		}
		return failed(ReasonTimeout, false, fmt.Sprintf("build pod %s ran longer than its deadline of %ds and was stopped; raise the controller's --build-timeout if builds need longer", pod.Name, deadline))
	}
	if term == nil {
		return failed(buildpod.ReasonBuildFailed, false, fmt.Sprintf("build pod %s failed: %s %s", pod.Name, pod.Status.Reason, pod.Status.Message))
	}
	if term.Reason == "OOMKilled" {
		return failed(ReasonOutOfMemory, false, fmt.Sprintf("build pod %s ran out of memory (exit code %d); raise its memory limit with the annotation %s on the MachineOSConfig (e.g. memory=8Gi) or the controller's --build-limits", pod.Name, term.ExitCode, AnnotationBuildLimits))
	}
	if f, ok := buildpod.ParseFailure(term.Message); ok {
		return failed(f.Reason, f.Retryable, fmt.Sprintf("build pod %s failed with exit code %d: %s", pod.Name, term.ExitCode, f.Message))
	}
	return failed(buildpod.ReasonBuildFailed, false, fmt.Sprintf("build pod %s failed with exit code %d (%s): %s", pod.Name, term.ExitCode, term.Reason, tail(term.Message, 1024)))
}

// kubelet's messages when it evicts a pod over one of its own storage limits (not for a node
// short of disk): an emptyDir over its sizeLimit, a container or the whole pod over its
// ephemeral-storage limit (pkg/kubelet/eviction).
var (
	emptyDirEviction  = regexp.MustCompile(`Usage of EmptyDir volume "([^"]*)" exceeds the limit "([^"]*)"`)
	containerEviction = regexp.MustCompile(`Container (\S+) exceeded its local ephemeral storage limit "([^"]*)"`)
	podEviction       = regexp.MustCompile(`Pod ephemeral local storage usage exceeds the total limit of containers ([0-9.]+[A-Za-z]*)`)
)

// storageEviction is the message for a build pod evicted because the build outgrew its storage
// limit, ok false when the eviction was for something else.
func storageEviction(pod *corev1.Pod) (msg string, ok bool) {
	var what, limit string
	if m := emptyDirEviction.FindStringSubmatch(pod.Status.Message); m != nil {
		what, limit = fmt.Sprintf("its volume %q outgrew its size limit %s", m[1], m[2]), m[2]
	} else if m := containerEviction.FindStringSubmatch(pod.Status.Message); m != nil {
		what, limit = fmt.Sprintf("its container %s outgrew its ephemeral-storage limit %s", m[1], m[2]), m[2]
	} else if m := podEviction.FindStringSubmatch(pod.Status.Message); m != nil {
		what, limit = fmt.Sprintf("it outgrew its ephemeral-storage limit %s", m[1]), m[1]
	} else {
		return "", false
	}
	example := "ephemeral-storage=20Gi"
	if q, err := resource.ParseQuantity(limit); err == nil && q.Sign() > 0 {
		example = "ephemeral-storage=" + resource.NewQuantity(2*q.Value(), q.Format).String()
	}
	return fmt.Sprintf("build pod %s ran out of build storage and was evicted from node %s: %s (kubelet: %s); "+
		"give the build more with ephemeral-storage in the MachineOSConfig's build resources, the annotations %s and %s (e.g. %s), or the controller's --build-requests and --build-limits",
		pod.Name, pod.Spec.NodeName, what, strings.TrimSpace(pod.Status.Message), AnnotationBuildLimits, AnnotationBuildRequests, example), true
}

// terminated is how the build container ended or, when it never ran, how an init container failed.
func terminated(pod *corev1.Pod) *corev1.ContainerStateTerminated {
	for i := range pod.Status.ContainerStatuses {
		if t := pod.Status.ContainerStatuses[i].State.Terminated; t != nil {
			return t
		}
	}
	for i := range pod.Status.InitContainerStatuses {
		if t := pod.Status.InitContainerStatuses[i].State.Terminated; t != nil && t.ExitCode != 0 {
			return t
		}
	}
	return nil
}

func imagePullProblem(reason string) bool {
	switch reason {
	case "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull":
		return true
	}
	return false
}

func builderImage(pod *corev1.Pod) string {
	if len(pod.Spec.Containers) > 0 {
		return pod.Spec.Containers[0].Image
	}
	return ""
}

func tail(s string, max int) string {
	s = strings.TrimSpace(s)
	if len(s) > max {
		return "…" + s[len(s)-max:]
	}
	return s
}
