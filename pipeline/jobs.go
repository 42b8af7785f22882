package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/builder/buildpod"
)

// Each architecture of each attempt of a build runs as one batch/v1 Job (buildpod.JobObjects):
// `kubectl get jobs` shows the builds, the Job controller makes and tracks the pod, and v1's
// status.builder names a real Job. The controller reads the pod the Job made, as it did when it made
// the pods itself: the pod's termination message is the build's result.

// BuilderTypeJob is what status.builder.imageBuilderType says: every build runs as Jobs, whichever
// version of the API asked for it (v1alpha1's PodImageBuilder names the pods those Jobs make).
const BuilderTypeJob = "Job"

// maxJobName: the Job controller labels its pods with the Job's name (a label value).
const maxJobName = 63

// JobName names the Job (and its request ConfigMap) of an architecture's attempt of a build:
// <build>-<arch>-<attempt>, with the build's name shortened and a hash of the whole in its place
// when that would exceed 63 characters. Deterministic: a restarted controller finds its Jobs.
func JobName(build, arch string, attempt int32) string {
	suffix := fmt.Sprintf("-%s-%d", arch, attempt)
	name := build + suffix
	if len(name) <= maxJobName {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	hash := hex.EncodeToString(sum[:])[:10]
	keep := maxJobName - len(suffix) - len(hash) - 1
	head := strings.TrimRight(build[:max(keep, 0)], "-.")
	return head + "-" + hash + suffix
}

// JobPod is the pod of a Job among pods (those of the build's namespace with the Job's
// controller-uid label, or more): the newest one the Job controls, nil when it has made none yet.
func JobPod(job *batchv1.Job, pods []corev1.Pod) *corev1.Pod {
	if job == nil {
		return nil
	}
	var mine []*corev1.Pod
	for i := range pods {
		if metav1.IsControlledBy(&pods[i], job) {
			mine = append(mine, &pods[i])
		}
	}
	if len(mine) == 0 {
		return nil
	}
	sort.SliceStable(mine, func(i, j int) bool {
		a, b := mine[i].CreationTimestamp, mine[j].CreationTimestamp
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return mine[i].Name < mine[j].Name
	})
	return mine[len(mine)-1]
}

// ClassifyJob decides what an architecture's build Job and its pod say. job is nil when the Job is
// gone although it was created (someone deleted it); pod is nil while the Job controller has not
// made the pod, or when it is gone. The pod, when there is one, says more than the Job (the
// worker's result and failure, eviction, memory, its deadline), so it decides; the Job tells a pod
// that went missing from one not made yet.
func ClassifyJob(job *batchv1.Job, pod *corev1.Pod, jobName string, now time.Time, imagePullGrace time.Duration) Outcome {
	if job == nil {
		return interrupted(fmt.Sprintf("build Job %s was deleted while it was building", jobName))
	}
	switch {
	case jobFailed(job):
		if pod != nil && pod.Status.Phase == corev1.PodFailed {
			return ClassifyPod(pod, now, imagePullGrace)
		}
		if pod == nil {
			return interrupted(fmt.Sprintf("the pod of build Job %s was deleted while it was building", jobName))
		}
		c := jobCondition(job, batchv1.JobFailed, batchv1.JobFailureTarget)
		return Outcome{Done: true, Failed: true, Reason: buildpod.ReasonBuildFailed,
			Message: fmt.Sprintf("build Job %s failed (%s: %s)", jobName, c.Reason, c.Message)}
	case jobSucceeded(job):
		if pod != nil && pod.Status.Phase == corev1.PodSucceeded {
			return ClassifyPod(pod, now, imagePullGrace)
		}
		return interrupted(fmt.Sprintf("build Job %s completed, but its pod, whose termination message holds the result, is gone", jobName))
	case pod == nil:
		if wait := noPodGrace - now.Sub(job.CreationTimestamp.Time); wait > 0 {
			return Outcome{Recheck: wait}
		}
		return Outcome{Message: noPodYet(jobName)}
	}
	return ClassifyPod(pod, now, imagePullGrace)
}

// noPodGrace is how long a Job may have no pod before the build's status says so.
const noPodGrace = time.Minute

// noPodYet is an architecture's note while its Job has had no pod for noPodGrace: a pod that
// admission refuses or a quota holds back never comes, and only the Job's Events say why.
func noPodYet(jobName string) string {
	return fmt.Sprintf("Job %s has no pod yet; if that lasts, `kubectl describe job %s` says why (admission, a quota)", jobName, jobName)
}

func jobCondition(job *batchv1.Job, types ...batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range job.Status.Conditions {
		c := &job.Status.Conditions[i]
		for _, t := range types {
			if c.Type == t && c.Status == corev1.ConditionTrue {
				return c
			}
		}
	}
	return nil
}

func jobFailed(job *batchv1.Job) bool {
	return jobCondition(job, batchv1.JobFailed, batchv1.JobFailureTarget) != nil
}

func jobSucceeded(job *batchv1.Job) bool {
	return jobCondition(job, batchv1.JobComplete, batchv1.JobSuccessCriteriaMet) != nil
}

// BuilderReference is v1's status.builder of a build whose architectures run as the Jobs named in
// its status: the first architecture's Job (v1 names one; each architecture's is in
// status.architectures), nil before any was made.
func BuilderReference(s *mosbv1.MachineOSBuildStatus, namespace string) *mosbv1.MachineOSBuilderReference {
	for _, a := range s.Architectures {
		if a.JobName != "" {
			return &mosbv1.MachineOSBuilderReference{ImageBuilderType: BuilderTypeJob,
				Job: &mosbv1.ObjectReference{Group: batchv1.GroupName, Resource: "jobs", Namespace: namespace, Name: a.JobName}}
		}
	}
	return nil
}
