package pipeline

import (
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/builder/buildpod"
)

func TestJobName(t *testing.T) {
	if got := JobName("worker-0123456789", "amd64", 2); got != "worker-0123456789-amd64-2" {
		t.Errorf("a short name is kept as it is: got %s", got)
	}
	long := strings.Repeat("pool.", 12) + "worker-0123456789abcdef"
	a, b := JobName(long, "ppc64le", 12), JobName(long+"0", "ppc64le", 12)
	for _, n := range []string{a, b} {
		if len(n) > 63 || !strings.HasSuffix(n, "-ppc64le-12") {
			t.Errorf("%s (%d chars): want at most 63, ending with the arch and attempt", n, len(n))
		}
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
			t.Errorf("%s: %v", n, errs)
		}
		if errs := validation.IsValidLabelValue(n); len(errs) > 0 {
			t.Errorf("%s: %v", n, errs)
		}
	}
	if a == b {
		t.Errorf("two long builds share the Job name %s", a)
	}
	if JobName(long, "ppc64le", 12) != a {
		t.Error("JobName is not deterministic")
	}
}

func TestJobPodIsTheNewestTheJobControls(t *testing.T) {
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "b-amd64-1", UID: "job-1"}}
	yes := true
	pod := func(name, owner string, age time.Duration) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(time.Unix(1000, 0).Add(-age)),
			OwnerReferences: []metav1.OwnerReference{{UID: types.UID(owner), Controller: &yes}}}}
	}
	pods := []corev1.Pod{pod("old", "job-1", time.Hour), pod("other-job", "job-0", 0), pod("new", "job-1", time.Minute)}
	if got := JobPod(job, pods); got == nil || got.Name != "new" {
		t.Errorf("got %v, want the newest pod of the Job", got)
	}
	if got := JobPod(job, pods[1:2]); got != nil {
		t.Errorf("a pod of another Job (an earlier one of the same name) was taken: %s", got.Name)
	}
}

// Job and pod statuses as the Job controller and kubelet record them for each way a build ends.
func TestClassifyJob(t *testing.T) {
	now := time.Unix(10_000, 0)
	okResult := `{"arch":"amd64","pullspec":"r.example.com/os/w@sha256:` + strings.Repeat("a", 64) + `","digest":"sha256:` + strings.Repeat("a", 64) + `","platform":{"architecture":"amd64","os":"linux"}}`
	job := func(conds ...batchv1.JobCondition) *batchv1.Job {
		return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(now.Add(-time.Second))}, Status: batchv1.JobStatus{Conditions: conds}}
	}
	old := func(j *batchv1.Job) *batchv1.Job {
		j.CreationTimestamp = metav1.NewTime(now.Add(-2 * time.Minute))
		return j
	}
	cond := func(t batchv1.JobConditionType, reason string) batchv1.JobCondition {
		return batchv1.JobCondition{Type: t, Status: corev1.ConditionTrue, Reason: reason, Message: "the Job says " + reason}
	}
	pod := func(phase corev1.PodPhase, exit int32, msg string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "b-amd64-1-x7k2p"}, Status: corev1.PodStatus{Phase: phase}}
		if phase == corev1.PodSucceeded || phase == corev1.PodFailed {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "build", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exit, Message: msg}}}}
		}
		return p
	}
	deadlined := func(p *corev1.Pod) *corev1.Pod {
		p.Status.Reason = "DeadlineExceeded"
		return p
	}
	deleted := func(p *corev1.Pod) *corev1.Pod {
		ts := metav1.NewTime(now)
		p.DeletionTimestamp = &ts
		return p
	}
	cases := []struct {
		name      string
		job       *batchv1.Job
		pod       *corev1.Pod
		done      bool
		reason    string
		retryable bool
		says      string
	}{
		{"no pod yet", job(), nil, false, "", false, ""},
		{"running", job(), pod(corev1.PodRunning, 0, ""), false, "", false, ""},
		{"complete", job(cond(batchv1.JobSuccessCriteriaMet, "CompletionsReached"), cond(batchv1.JobComplete, "CompletionsReached")), pod(corev1.PodSucceeded, 0, okResult), true, "", false, ""},
		{"pod succeeded, Job not yet complete", job(), pod(corev1.PodSucceeded, 0, okResult), true, "", false, ""},
		{"complete, pod gone with the result", job(cond(batchv1.JobComplete, "CompletionsReached")), nil, true, ReasonInterrupted, true, "termination message holds the result"},
		{"failed: the pod says why", job(cond(batchv1.JobFailed, batchv1.JobReasonBackoffLimitExceeded)), pod(corev1.PodFailed, 1, "STEP 2/3: RUN false"), true, buildpod.ReasonBuildFailed, false, "RUN false"},
		{"pod failed, Job not yet failed", job(), pod(corev1.PodFailed, 1, "STEP 2/3: RUN false"), true, buildpod.ReasonBuildFailed, false, "exit code 1"},
		{"failed: the pod was deleted and is gone", job(cond(batchv1.JobFailed, batchv1.JobReasonBackoffLimitExceeded)), nil, true, ReasonInterrupted, true, "was deleted while it was building"},
		{"the pod is being deleted, its process killed", job(), deleted(pod(corev1.PodFailed, 143, "")), true, ReasonInterrupted, true, "build pod b-amd64-1-x7k2p is being deleted while it was building"},
		{"the pod is being deleted, still running", job(), deleted(pod(corev1.PodRunning, 0, "")), true, ReasonInterrupted, true, "build pod b-amd64-1-x7k2p is being deleted"},
		{"no pod for a minute", old(job()), nil, false, "", false, "kubectl describe job b-amd64-1"},
		{"the pod's deadline", job(cond(batchv1.JobFailed, batchv1.JobReasonBackoffLimitExceeded)), deadlined(pod(corev1.PodFailed, 137, "")), true, ReasonTimeout, false, "--build-timeout"},
		{"the pod's deadline, pod being deleted", job(), deleted(deadlined(pod(corev1.PodFailed, 137, ""))), true, ReasonTimeout, false, "--build-timeout"},
		{"failed by a pod failure policy, pod not terminal", job(cond(batchv1.JobFailed, batchv1.JobReasonPodFailurePolicy)), pod(corev1.PodRunning, 0, ""), true, buildpod.ReasonBuildFailed, false, "PodFailurePolicy"},
		{"Job deleted", nil, nil, true, ReasonInterrupted, true, "build Job b-amd64-1 was deleted"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := ClassifyJob(c.job, c.pod, "b-amd64-1", now, time.Minute)
			if out.Done != c.done || out.Reason != c.reason || out.Retryable != c.retryable || (c.reason != "") != out.Failed {
				t.Fatalf("got done=%v failed=%v reason=%q retryable=%v (%s); want done=%v reason=%q retryable=%v", out.Done, out.Failed, out.Reason, out.Retryable, out.Message, c.done, c.reason, c.retryable)
			}
			if !strings.Contains(out.Message, c.says) {
				t.Errorf("message %q does not say %q", out.Message, c.says)
			}
			if c.name == "no pod yet" && (out.Recheck <= 0 || out.Recheck > time.Minute || out.Message != "") {
				t.Errorf("a Job without a pod for a second: recheck in %s, message %q; want a look again within the minute, nothing said yet", out.Recheck, out.Message)
			}
			if c.reason == "" && c.done && out.Result.Pullspec == "" {
				t.Error("a complete build without its result")
			}
		})
	}
}

func TestBuilderReferenceNamesTheFirstJob(t *testing.T) {
	s := &mosbv1.MachineOSBuildStatus{}
	if BuilderReference(s, "ns") != nil {
		t.Error("a build with no Job yet has no builder")
	}
	s.Architectures = []mosbv1.ArchitectureBuild{{Architecture: "amd64", JobName: "b-amd64-2"}, {Architecture: "arm64", JobName: "b-arm64-2"}}
	got := BuilderReference(s, "mosb-system")
	want := mosbv1.ObjectReference{Group: "batch", Resource: "jobs", Namespace: "mosb-system", Name: "b-amd64-2"}
	if got == nil || got.ImageBuilderType != "Job" || got.Job == nil || *got.Job != want {
		t.Errorf("got %+v, want a Job builder naming %+v", got, want)
	}
}
