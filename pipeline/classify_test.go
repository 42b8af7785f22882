package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/registry/bounds"
)

// Pod statuses as kubelet records them for each way a build pod ends.
func TestClassifyPodOverRecordedStatuses(t *testing.T) {
	now := time.Unix(10_000, 0)
	created := metav1.NewTime(now.Add(-10 * time.Minute))
	deadline := int64(3600)
	okResult := `{"arch":"amd64","pullspec":"r.example.com/os/w@sha256:` + strings.Repeat("a", 64) + `","digest":"sha256:` + strings.Repeat("a", 64) + `","platform":{"architecture":"amd64","os":"linux"}}`
	pushFailure, _ := buildpod.Failure{Reason: buildpod.ReasonPushFailed, Retryable: false, Message: "registry r refused the credentials (HTTP 401)"}.Marshal()
	unreachable, _ := buildpod.Failure{Reason: buildpod.ReasonPushFailed, Retryable: true, Message: "registry r unreachable"}.Marshal()
	term := func(code int32, reason, msg string) corev1.PodStatus {
		phase := corev1.PodFailed
		if code == 0 {
			phase = corev1.PodSucceeded
		}
		return corev1.PodStatus{Phase: phase, ContainerStatuses: []corev1.ContainerStatus{{Name: "build",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, Message: msg}}}}}
	}
	waiting := func(reason string) corev1.PodStatus {
		return corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: "build",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "Back-off pulling image"}}}}}
	}
	cases := []struct {
		name      string
		pod       *corev1.Pod
		done      bool
		failed    bool
		reason    string
		retryable bool
		says      string
	}{
		{"running", &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning}}, false, false, "", false, ""},
		{"succeeded", &corev1.Pod{Status: term(0, "Completed", okResult)}, true, false, "", false, ""},
		{"succeeded without a result", &corev1.Pod{Status: term(0, "Completed", "done")}, true, true, ReasonInvalidResult, false, "not a build result"},
		{"non-zero exit, log tail", &corev1.Pod{Status: term(1, "Error", "STEP 3/4: RUN false\nerror building at STEP")}, true, true, buildpod.ReasonBuildFailed, false, "exit code 1"},
		{"worker: push refused", &corev1.Pod{Status: term(1, "Error", string(pushFailure))}, true, true, buildpod.ReasonPushFailed, false, "credentials"},
		{"worker: registry unreachable", &corev1.Pod{Status: term(1, "Error", string(unreachable))}, true, true, buildpod.ReasonPushFailed, true, "unreachable"},
		{"OOMKilled", &corev1.Pod{Status: term(137, "OOMKilled", "")}, true, true, ReasonOutOfMemory, false, "memory limit with the annotation mosb.dev/build-limits"},
		{"evicted", &corev1.Pod{Spec: corev1.PodSpec{NodeName: "n1"}, Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted",
			Message: "The node was low on resource: ephemeral-storage."}}, true, true, ReasonPodEvicted, true, "ephemeral-storage"},
		{"deadline exceeded", &corev1.Pod{Spec: corev1.PodSpec{ActiveDeadlineSeconds: &deadline}, Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "DeadlineExceeded",
			Message: "Pod was active on the node longer than the specified deadline"}}, true, true, ReasonTimeout, false, "--build-timeout"},
		{"image pull back-off past the grace", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: created},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Image: "quay.example.com/mosb:missing"}}}, Status: waiting("ImagePullBackOff")},
			true, true, ReasonBuilderImageUnavailable, false, "quay.example.com/mosb:missing"},
		{"image pull back-off within the grace", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(now.Add(-time.Minute))},
			Status: waiting("ErrImagePull")}, false, false, "", false, ""},
		{"being deleted", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", DeletionTimestamp: &created}, Status: corev1.PodStatus{Phase: corev1.PodRunning}},
			true, true, ReasonInterrupted, true, "being deleted"},
		{"being deleted, its process killed", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", DeletionTimestamp: &created}, Status: term(143, "Error", "")},
			true, true, ReasonInterrupted, true, "being deleted"},
		{"evicted, then being deleted", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", DeletionTimestamp: &created}, Spec: corev1.PodSpec{NodeName: "n1"},
			Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "The node was low on resource: memory."}}, true, true, ReasonPodEvicted, true, "evicted"},
	}
	rechecks := map[string]time.Duration{"image pull back-off within the grace": 4 * time.Minute}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ClassifyPod(tc.pod, now, 5*time.Minute)
			if got.Done != tc.done || got.Failed != tc.failed || got.Reason != tc.reason || got.Retryable != tc.retryable {
				t.Errorf("got done=%v failed=%v reason=%q retryable=%v, want %v %v %q %v (%s)",
					got.Done, got.Failed, got.Reason, got.Retryable, tc.done, tc.failed, tc.reason, tc.retryable, got.Message)
			}
			if !strings.Contains(got.Message, tc.says) {
				t.Errorf("message %q does not say %q", got.Message, tc.says)
			}
			// Without a recheck at the end of the grace, the build would fail only at the pod's
			// next status change, which a kubelet backing off may not make for minutes.
			if want := rechecks[tc.name]; got.Recheck != want {
				t.Errorf("recheck in %s, want %s", got.Recheck, want)
			}
			if tc.done && !tc.failed && got.Result.Digest == "" {
				t.Error("a succeeded pod without its result")
			}
		})
	}
}

func TestRetryBackoffGrowsAndIsBounded(t *testing.T) {
	prev := time.Duration(0)
	for n := 2; n < 20; n++ {
		d := retryBackoff(n)
		if d < prev || d > 5*time.Minute {
			t.Fatalf("backoff before attempt %d = %s (previous %s)", n, d, prev)
		}
		prev = d
	}
	if retryBackoff(2) != 10*time.Second || retryBackoff(20) != 5*time.Minute {
		t.Errorf("backoff starts at %s and ends at %s", retryBackoff(2), retryBackoff(20))
	}
}

// kubelet's eviction messages (pkg/kubelet/eviction) for a pod over one of its own storage limits
// say the build outgrew its storage: BuildStorageFull, not retried (the same limit fills again),
// with the pod, the volume or container and the limit kubelet named, and the setting to raise.
// A node short of disk is another matter: PodEvicted, retried.
func TestStorageEvictionIsBuildStorageFull(t *testing.T) {
	cases := []struct {
		name, message, reason string
		retryable             bool
		says                  []string
	}{
		{"emptyDir over its size limit", `Usage of EmptyDir volume "work" exceeds the limit "64Mi". `, buildpod.ReasonBuildStorageFull, false,
			[]string{`volume "work"`, "size limit 64Mi", "ephemeral-storage=128Mi"}},
		{"container over its ephemeral-storage limit", `Container build exceeded its local ephemeral storage limit "2Gi". `, buildpod.ReasonBuildStorageFull, false,
			[]string{"container build", "ephemeral-storage limit 2Gi", "ephemeral-storage=4Gi"}},
		{"pod over its containers' total limit", "Pod ephemeral local storage usage exceeds the total limit of containers 10G. ", buildpod.ReasonBuildStorageFull, false,
			[]string{"ephemeral-storage limit 10G", "ephemeral-storage=20G"}},
		{"node short of disk", "The node was low on resource: ephemeral-storage. Threshold quantity: 10Gi, available: 5Gi. Container build was using 12Gi, request is 10Gi, has larger consumption of ephemeral-storage. ",
			ReasonPodEvicted, true, []string{"evicted from node n1", "low on resource: ephemeral-storage"}},
		{"node short of memory", "The node was low on resource: memory. ", ReasonPodEvicted, true, []string{"low on resource: memory"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "worker-build-amd64"}, Spec: corev1.PodSpec{NodeName: "n1"},
				Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: tc.message}}
			got := ClassifyPod(pod, time.Unix(10_000, 0), 5*time.Minute)
			if !got.Done || !got.Failed || got.Reason != tc.reason || got.Retryable != tc.retryable {
				t.Errorf("got done=%v failed=%v reason=%q retryable=%v, want reason %q retryable %v (%s)",
					got.Done, got.Failed, got.Reason, got.Retryable, tc.reason, tc.retryable, got.Message)
			}
			says := append([]string{"worker-build-amd64", "n1"}, tc.says...)
			if tc.reason == buildpod.ReasonBuildStorageFull {
				says = append(says, AnnotationBuildLimits, "--build-limits", strings.TrimSpace(tc.message))
			}
			for _, s := range says {
				if !strings.Contains(got.Message, s) {
					t.Errorf("the message does not say %q: %s", s, got.Message)
				}
			}
		})
	}
}

// A controller's registry call cut by the registry bounds says RegistryUnresponsive with the
// registry, the operation and the bound; one cut by --registry-timeout names that flag; any other
// error is a RegistryError.
func TestRegistryProblem(t *testing.T) {
	r := &BuildReconciler{}
	cut := &bounds.UnresponsiveError{Registry: "reg.example:5000", Op: "checking reg.example:5000/os/x@sha256:ab", Phase: bounds.PhaseResponse, Waited: 3 * time.Second}
	for _, tc := range []struct {
		name         string
		err          error
		reason, says string
	}{
		{"a registry bound", fmt.Errorf("checking the image: %w", cut), ReasonRegistryUnresponsive, "registry reg.example:5000 is unresponsive: no answer within 3s while checking"},
		{"the overall timeout", fmt.Errorf("checking the image: %w", context.DeadlineExceeded), ReasonRegistryUnresponsive, "--registry-timeout"},
		{"an answer", errors.New("HTTP 500"), ReasonRegistryError, "HTTP 500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason, msg := r.registryProblem(tc.err)
			if reason != tc.reason || !strings.Contains(msg, tc.says) {
				t.Errorf("%s: %q, want %s saying %q", reason, msg, tc.reason, tc.says)
			}
		})
	}
}
