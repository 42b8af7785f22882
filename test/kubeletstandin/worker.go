package kubeletstandin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
)

type stopKind int

const (
	stopDeleted stopKind = iota + 1
	stopDeadline
	stopGone
	stopStandIn
)

// stopCause is why a pod's processes are being ended.
type stopCause struct {
	kind  stopKind
	grace time.Duration
	msg   string
}

func (c *stopCause) Error() string { return c.msg }

const (
	deadlineReason  = "DeadlineExceeded"
	deadlineMessage = "Pod was active on the node longer than the specified deadline"
	longRun         = 10 * time.Minute // a run this long resets the restart back-off, as with the kubelet
	standInGrace    = time.Second
	volumeRetryMax  = 10 * time.Second
)

var errPodGone = errors.New("the pod is gone")

// podWorker runs one pod (one UID) from start to its end, in its own goroutine.
type podWorker struct {
	s           *StandIn
	key         string
	uid         types.UID
	log         logr.Logger
	dir         string
	alloc       corev1.ResourceList
	utsHostname string // "" with hostNetwork: the process keeps the host's UTS namespace
	envHostname string

	notifyCh chan struct{}
	goneCh   chan struct{}
	goneOnce sync.Once
	killNow  chan struct{}
	killOnce sync.Once
	term     context.Context // ends when the pod's processes must stop; its cause is a *stopCause
	stop     context.CancelCauseFunc
	finished chan struct{}

	mu           sync.Mutex
	pod          *corev1.Pod      // the latest version seen
	status       corev1.PodStatus // what the stand-in reports; conditions: only those it owns
	volumes      map[string]string
	sandboxReady bool
	deleted      bool
	gone         bool
	unsupported  string
	notStarted   string // why containers that never ran did not
}

func newPodWorker(s *StandIn, key string, pod *corev1.Pod) *podWorker {
	w := &podWorker{
		s:        s,
		key:      key,
		uid:      pod.UID,
		log:      s.log.WithValues("pod", key, "uid", pod.UID),
		dir:      filepath.Join(s.opts.WorkDir, "pods", fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID)),
		notifyCh: make(chan struct{}, 1),
		goneCh:   make(chan struct{}),
		killNow:  make(chan struct{}),
		finished: make(chan struct{}),
		pod:      pod,
	}
	w.term, w.stop = context.WithCancelCause(context.Background())
	if n, err := s.nodeLister.Get(pod.Spec.NodeName); err == nil {
		w.alloc = n.Status.Allocatable.DeepCopy() // the cache's map must not be shared with the run
	}
	if pod.Spec.HostNetwork {
		w.envHostname, _ = os.Hostname()
	} else {
		h := pod.Spec.Hostname
		if h == "" {
			h = pod.Name
		}
		if len(h) > 63 {
			h = strings.TrimRight(h[:63], "-.")
		}
		w.utsHostname, w.envHostname = h, h
	}
	return w
}

// notify tells the worker that the pod changed in the API.
func (w *podWorker) notify() {
	select {
	case w.notifyCh <- struct{}{}:
	default:
	}
}

// markGone tells the worker that its pod no longer exists in the API.
func (w *podWorker) markGone() { w.goneOnce.Do(func() { close(w.goneCh) }) }

func (w *podWorker) forceKill() { w.killOnce.Do(func() { close(w.killNow) }) }

// terminate ends the pod's processes for a reason. A later reason with a shorter grace period (a
// forced deletion after a deadline, say) kills them at once.
func (w *podWorker) terminate(kind stopKind, grace time.Duration, msg string) {
	if w.term.Err() == nil {
		w.stop(&stopCause{kind: kind, grace: grace, msg: msg})
		return
	}
	var c *stopCause
	if errors.As(context.Cause(w.term), &c) && grace < c.grace {
		w.forceKill()
	}
}

func (w *podWorker) cause() *stopCause {
	var c *stopCause
	if w.term.Err() != nil && errors.As(context.Cause(w.term), &c) {
		return c
	}
	return nil
}

func (w *podWorker) currentPod() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod
}

// sleep waits d unless the pod is terminated first; it reports whether the full time passed.
func (w *podWorker) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.term.Done():
		return false
	}
}

func (w *podWorker) run(ctx context.Context) {
	defer close(w.finished)
	pod := w.currentPod()
	w.log.Info("running pod", "node", pod.Spec.NodeName)
	w.begin(pod)
	go w.monitor(ctx)
	w.execute(pod)
	w.finish()
}

// begin reports the pod Pending with its start time and its containers waiting.
func (w *podWorker) begin(pod *corev1.Pod) {
	start := metav1.Now()
	if pod.Status.StartTime != nil {
		start = *pod.Status.StartTime
	}
	mainReason := "ContainerCreating"
	if len(pod.Spec.InitContainers) > 0 {
		mainReason = "PodInitializing"
	}
	waiting := func(c corev1.Container, reason string) corev1.ContainerStatus {
		f := false
		return corev1.ContainerStatus{Name: c.Name, Image: c.Image, Started: &f,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.status = corev1.PodStatus{
		Phase:     corev1.PodPending,
		StartTime: &start,
		HostIP:    nodeIP,
		HostIPs:   []corev1.HostIP{{IP: nodeIP}},
		PodIP:     nodeIP,
		PodIPs:    []corev1.PodIP{{IP: nodeIP}},
	}
	for _, c := range pod.Spec.InitContainers {
		w.status.InitContainerStatuses = append(w.status.InitContainerStatuses, waiting(c, "PodInitializing"))
	}
	for _, c := range pod.Spec.Containers {
		w.status.ContainerStatuses = append(w.status.ContainerStatuses, waiting(c, mainReason))
	}
	w.refreshConditionsLocked()
	w.pushLocked(false)
}

// execute materialises the volumes and runs the init containers, then the main containers.
func (w *podWorker) execute(pod *corev1.Pod) {
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			w.mu.Lock()
			w.unsupported = fmt.Sprintf("init container %q has restartPolicy Always (a sidecar): the kubelet stand-in does not run sidecars", c.Name)
			w.mu.Unlock()
			return
		}
	}
	vols := w.prepareVolumes(pod)
	if vols == nil {
		return
	}
	w.update(func(*corev1.PodStatus) {
		w.volumes = vols
		w.sandboxReady = true
	})
	for i := range pod.Spec.InitContainers {
		name := pod.Spec.InitContainers[i].Name
		res, ran := w.runWithRestarts(pod, &pod.Spec.InitContainers[i], true)
		if w.term.Err() != nil || !ran || res.exitCode != 0 {
			if w.term.Err() == nil {
				w.mu.Lock()
				w.notStarted = fmt.Sprintf("init container %q failed (exit code %d)", name, res.exitCode)
				w.mu.Unlock()
			}
			return
		}
	}
	w.update(func(st *corev1.PodStatus) {
		for i := range st.ContainerStatuses {
			if wt := st.ContainerStatuses[i].State.Waiting; wt != nil {
				wt.Reason = "ContainerCreating"
			}
		}
	})
	var wg sync.WaitGroup
	for i := range pod.Spec.Containers {
		wg.Add(1)
		go func(c *corev1.Container) {
			defer wg.Done()
			w.runWithRestarts(pod, c, false)
		}(&pod.Spec.Containers[i])
	}
	wg.Wait()
}

// prepareVolumes writes the pod's volumes, retrying (as the kubelet does) while a ConfigMap, Secret
// or key is missing. nil: the pod was terminated first, or a volume is unsupported.
func (w *podWorker) prepareVolumes(pod *corev1.Pod) map[string]string {
	backoff := 500 * time.Millisecond
	last := ""
	for {
		vols, err := materialiseVolumes(w.s.ctx, w.s.cs, pod, filepath.Join(w.dir, "volumes"), w.alloc)
		if err == nil {
			return vols
		}
		var u *unsupportedError
		if errors.As(err, &u) {
			w.mu.Lock()
			w.unsupported = u.msg
			w.mu.Unlock()
			return nil
		}
		if w.term.Err() != nil {
			return nil
		}
		if msg := err.Error(); msg != last {
			last = msg
			w.log.Info("volume not ready; retrying", "error", msg)
			w.s.record.Event(pod, corev1.EventTypeWarning, "FailedMount", msg)
		}
		if !w.sleep(backoff) {
			return nil
		}
		backoff = min(2*backoff, volumeRetryMax)
	}
}

// runWithRestarts runs a container until the restart policy is satisfied or the pod is terminated,
// and returns its last run (ran is false when it never got to run).
func (w *podWorker) runWithRestarts(pod *corev1.Pod, c *corev1.Container, init bool) (last runResult, ran bool) {
	backoff := w.s.opts.RestartBackoff
	attempt := 0
	for w.term.Err() == nil {
		res, err := w.runContainer(pod, c, attempt, func(at metav1.Time, id string) {
			w.update(func(st *corev1.PodStatus) {
				cs := containerStatus(st, init, c.Name)
				t := true
				cs.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at}}
				cs.Started = &t
				cs.Ready = !init // no probes: a running container is ready
				cs.ContainerID = id
				if !init && st.Phase == corev1.PodPending {
					st.Phase = corev1.PodRunning
				}
			})
			w.s.record.Eventf(pod, corev1.EventTypeNormal, "Started", "Started container %s (local process, kubelet stand-in)", c.Name)
		})
		if err != nil {
			msg := err.Error()
			w.log.Info("container configuration not ready; retrying", "container", c.Name, "error", msg)
			w.update(func(st *corev1.PodStatus) {
				containerStatus(st, init, c.Name).State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: msg}}
			})
			w.s.record.Eventf(pod, corev1.EventTypeWarning, "Failed", "Error: %s", msg)
			if !w.sleep(backoff) {
				break
			}
			backoff = min(2*backoff, maxRestartBackoff)
			continue
		}
		last, ran = res, true
		attempt++
		restart := false
		switch pod.Spec.RestartPolicy {
		case corev1.RestartPolicyAlways:
			restart = !init || res.exitCode != 0
		case corev1.RestartPolicyOnFailure:
			restart = res.exitCode != 0
		}
		if w.term.Err() != nil {
			restart = false
		}
		if res.reason == "StartError" {
			w.s.record.Eventf(pod, corev1.EventTypeWarning, "Failed", "Error: %s", res.message)
		}
		w.update(func(st *corev1.PodStatus) {
			cs := containerStatus(st, init, c.Name)
			f := false
			cs.Started = &f
			cs.Ready = init && res.exitCode == 0
			cs.ContainerID = res.containerID
			if !restart {
				cs.State = corev1.ContainerState{Terminated: res.terminated()}
				return
			}
			cs.LastTerminationState = corev1.ContainerState{Terminated: res.terminated()}
			cs.RestartCount = int32(attempt)
			cs.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
				Reason:  "CrashLoopBackOff",
				Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", backoff, c.Name, pod.Name, pod.Namespace, pod.UID),
			}}
		})
		if !restart {
			return last, ran
		}
		if res.finishedAt.Sub(res.startedAt.Time) >= longRun {
			backoff = w.s.opts.RestartBackoff
		}
		w.s.record.Eventf(pod, corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s in pod %s_%s(%s)", c.Name, pod.Name, pod.Namespace, pod.UID)
		if !w.sleep(backoff) {
			break
		}
		backoff = min(2*backoff, maxRestartBackoff)
	}
	return last, ran
}

// monitor turns API changes, the active deadline and the stand-in's stop into terminations.
func (w *podWorker) monitor(ctx context.Context) {
	var timer *time.Timer
	var timerC <-chan time.Time
	var armedFor time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	arm := func() {
		w.mu.Lock()
		ads, start := w.pod.Spec.ActiveDeadlineSeconds, w.status.StartTime
		w.mu.Unlock()
		if ads == nil || start == nil {
			if timer != nil {
				timer.Stop()
			}
			timerC, armedFor = nil, time.Time{}
			return
		}
		at := start.Add(time.Duration(*ads) * time.Second)
		if at.Equal(armedFor) {
			return
		}
		if timer != nil {
			timer.Stop()
		}
		timer = time.NewTimer(time.Until(at))
		timerC, armedFor = timer.C, at
	}
	arm()
	ctxDone, gone := ctx.Done(), w.goneCh
	for {
		select {
		case <-w.finished:
			return
		case <-ctxDone:
			ctxDone = nil
			w.terminate(stopStandIn, standInGrace, "the kubelet stand-in is stopping")
		case <-gone:
			gone = nil
			w.mu.Lock()
			w.gone = true
			w.mu.Unlock()
			w.terminate(stopGone, 0, "the pod was removed from the API")
			w.forceKill()
		case <-timerC:
			timerC = nil
			pod := w.currentPod()
			grace := time.Duration(corev1.DefaultTerminationGracePeriodSeconds) * time.Second
			if pod.Spec.TerminationGracePeriodSeconds != nil {
				grace = time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
			}
			w.log.Info("active deadline exceeded", "activeDeadlineSeconds", *pod.Spec.ActiveDeadlineSeconds)
			w.s.record.Event(pod, corev1.EventTypeNormal, deadlineReason, deadlineMessage)
			w.terminate(stopDeadline, grace, "activeDeadlineSeconds exceeded")
		case <-w.notifyCh:
			pod := w.s.cachedPod(w.key)
			if pod == nil || pod.UID != w.uid {
				continue
			}
			w.mu.Lock()
			w.pod = pod
			w.mu.Unlock()
			if pod.DeletionTimestamp != nil {
				grace := time.Duration(0)
				if pod.DeletionGracePeriodSeconds != nil {
					grace = time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
				}
				w.mu.Lock()
				first := !w.deleted
				w.deleted = true
				w.mu.Unlock()
				if first {
					w.log.Info("pod deleted; stopping its containers", "grace", grace.String())
					w.s.record.Eventf(pod, corev1.EventTypeNormal, "Killing", "Stopping the pod's containers (grace period %s)", grace)
				}
				w.terminate(stopDeleted, grace, "the pod was deleted")
			}
			arm()
		}
	}
}

// finish writes the terminal status (unless the pod is gone or the stand-in is stopping), removes
// the volumes and, for a deleted pod, confirms the deletion.
func (w *podWorker) finish() {
	cause := w.cause()
	w.mu.Lock()
	if w.gone || w.s.ctx.Err() != nil || (cause != nil && cause.kind == stopStandIn) {
		w.mu.Unlock()
		w.log.Info("pod left without a final status", "why", causeText(cause))
		w.cleanup()
		return
	}
	st := &w.status
	why := "the pod ended before it started"
	switch {
	case w.unsupported != "":
		why = w.unsupported
	case w.notStarted != "":
		why = w.notStarted
	case cause != nil:
		why = "the pod was stopped before it started (" + cause.msg + ")"
	}
	for _, list := range [][]corev1.ContainerStatus{st.InitContainerStatuses, st.ContainerStatuses} {
		for i := range list {
			cs := &list[i]
			if cs.State.Terminated != nil {
				continue
			}
			f := false
			cs.Started, cs.Ready = &f, false
			if last := cs.LastTerminationState.Terminated; last != nil {
				cs.State = corev1.ContainerState{Terminated: last.DeepCopy()}
				continue
			}
			cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 137, Reason: "ContainerStatusUnknown", Message: "the container never started: " + why,
			}}
		}
	}
	st.Phase = corev1.PodSucceeded
	for _, list := range [][]corev1.ContainerStatus{st.InitContainerStatuses, st.ContainerStatuses} {
		for _, cs := range list {
			if cs.State.Terminated.ExitCode != 0 {
				st.Phase = corev1.PodFailed
			}
		}
	}
	switch {
	case w.unsupported != "":
		st.Phase, st.Reason, st.Message = corev1.PodFailed, reasonUnsupported, "kubelet stand-in: "+w.unsupported
	case cause != nil && cause.kind == stopDeadline:
		st.Phase, st.Reason, st.Message = corev1.PodFailed, deadlineReason, deadlineMessage
	}
	w.sandboxReady = false
	w.refreshConditionsLocked()
	w.pushLocked(true)
	phase, deleted, pod := st.Phase, w.deleted, w.pod
	w.mu.Unlock()
	w.log.Info("pod finished", "phase", phase, "reason", st.Reason)
	w.cleanup()
	if deleted {
		if err := w.s.forceDelete(w.s.ctx, pod); err != nil {
			w.log.Error(err, "removing the deleted pod; the next sync retries")
		}
	}
}

func causeText(c *stopCause) string {
	if c == nil {
		return "none"
	}
	return c.msg
}

// cleanup removes the pod's volumes (its Secrets among them); logs stay.
func (w *podWorker) cleanup() {
	vols := filepath.Join(w.dir, "volumes")
	entries, _ := os.ReadDir(vols)
	for _, e := range entries {
		unmountVolume(filepath.Join(vols, e.Name()))
	}
	if err := os.RemoveAll(vols); err != nil {
		w.log.Error(err, "removing volumes")
	}
}

// update changes the reported status and writes it.
func (w *podWorker) update(fn func(st *corev1.PodStatus)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fn(&w.status)
	w.refreshConditionsLocked()
	w.pushLocked(false)
}

func containerStatus(st *corev1.PodStatus, init bool, name string) *corev1.ContainerStatus {
	list := st.ContainerStatuses
	if init {
		list = st.InitContainerStatuses
	}
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	panic("kubelet stand-in: no status for container " + name) // statuses are made from the same spec
}

var ownedConditions = map[corev1.PodConditionType]bool{
	corev1.PodReadyToStartContainers: true,
	corev1.PodInitialized:            true,
	corev1.ContainersReady:           true,
	corev1.PodReady:                  true,
}

// refreshConditionsLocked derives the conditions a kubelet owns from the container statuses.
func (w *podWorker) refreshConditionsLocked() {
	st := &w.status
	terminal := st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed
	set := func(t corev1.PodConditionType, ok bool, reason, msg string) {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason, Message: msg}
		if ok {
			c = corev1.PodCondition{Type: t, Status: corev1.ConditionTrue}
		}
		setPodCondition(st, c)
	}
	set(corev1.PodReadyToStartContainers, w.sandboxReady && !terminal, "", "")

	var incomplete []string
	for _, cs := range st.InitContainerStatuses {
		if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
			incomplete = append(incomplete, cs.Name)
		}
	}
	set(corev1.PodInitialized, len(incomplete) == 0, "ContainersNotInitialized",
		fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(incomplete, " ")))

	var unready []string
	for _, cs := range st.ContainerStatuses {
		if !cs.Ready {
			unready = append(unready, cs.Name)
		}
	}
	reason, msg := "ContainersNotReady", fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
	if terminal {
		reason, msg = "PodCompleted", ""
	}
	ready := len(unready) == 0 && !terminal
	set(corev1.ContainersReady, ready, reason, msg)
	if ready && w.pod != nil {
		for _, g := range w.pod.Spec.ReadinessGates {
			found := false
			for _, c := range w.pod.Status.Conditions {
				if c.Type == g.ConditionType {
					found = true
					if c.Status != corev1.ConditionTrue {
						ready, reason, msg = false, "ReadinessGatesNotReady", fmt.Sprintf("the status of pod readiness gate %q is not \"True\", but %s", g.ConditionType, c.Status)
					}
				}
			}
			if !found {
				ready, reason, msg = false, "ReadinessGatesNotReady", fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist.", g.ConditionType)
			}
		}
	}
	set(corev1.PodReady, ready, reason, msg)
}

// pushLocked writes the reported status through the status subresource, keeping the conditions the
// stand-in does not own (PodScheduled, readiness gates, …). A final status is retried for a while.
func (w *podWorker) pushLocked(final bool) {
	ctx := w.s.ctx
	if ctx.Err() != nil {
		return
	}
	want := w.status.DeepCopy()
	ns, name, _ := strings.Cut(w.key, "/")
	pods := w.s.cs.CoreV1().Pods(ns)
	write := func(ctx context.Context) error {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := pods.Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return errPodGone
			}
			if err != nil {
				return err
			}
			if cur.UID != w.uid {
				return errPodGone
			}
			upd := cur.DeepCopy()
			mergeStatus(&upd.Status, want)
			if statusEqual(&upd.Status, &cur.Status) {
				return nil
			}
			_, err = pods.UpdateStatus(ctx, upd, metav1.UpdateOptions{})
			return err
		})
	}
	if !final {
		if err := write(ctx); err != nil && !errors.Is(err, errPodGone) && ctx.Err() == nil {
			w.log.Error(err, "writing pod status; a later update carries it")
		}
		return
	}
	var lastErr error
	err := wait.ExponentialBackoffWithContext(ctx, wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Steps: 9, Cap: 10 * time.Second},
		func(ctx context.Context) (bool, error) {
			lastErr = write(ctx)
			return lastErr == nil || errors.Is(lastErr, errPodGone), nil
		})
	if err != nil && ctx.Err() == nil {
		w.log.Error(lastErr, "writing the final pod status failed")
	}
}

// mergeStatus puts what the stand-in reports into an API pod status.
func mergeStatus(dst, src *corev1.PodStatus) {
	dst.Phase, dst.Reason, dst.Message = src.Phase, src.Reason, src.Message
	dst.StartTime = src.StartTime
	dst.HostIP, dst.HostIPs, dst.PodIP, dst.PodIPs = src.HostIP, src.HostIPs, src.PodIP, src.PodIPs
	dst.InitContainerStatuses = src.InitContainerStatuses
	dst.ContainerStatuses = src.ContainerStatuses
	for _, c := range src.Conditions {
		if !ownedConditions[c.Type] {
			continue
		}
		replaced := false
		for i := range dst.Conditions {
			if dst.Conditions[i].Type == c.Type {
				dst.Conditions[i] = c
				replaced = true
			}
		}
		if !replaced {
			dst.Conditions = append(dst.Conditions, c)
		}
	}
}

func statusEqual(a, b *corev1.PodStatus) bool {
	return equality.Semantic.DeepEqual(a, b)
}

func shortUID(uid types.UID) string {
	s := strings.ReplaceAll(string(uid), "-", "")
	if len(s) > 12 {
		s = s[:12]
	}
	return s
}
