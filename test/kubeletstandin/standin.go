package kubeletstandin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
)

// Node is a node the stand-in pretends to be.
type Node struct {
	// Name of the Node object; also its kubernetes.io/hostname label.
	Name string
	// Arch is the kubernetes.io/arch label and status.nodeInfo.architecture; runtime.GOARCH when empty.
	// Claiming another architecture emulates nothing: the processes still run natively here.
	Arch string
	// Labels are added to the well-known ones (and may override them).
	Labels map[string]string
	// Taints are the node's taints; pods must tolerate the NoSchedule/NoExecute ones to be scheduled here.
	Taints []corev1.Taint
	// Capacity is reported as capacity and allocatable; missing cpu, memory and pods are taken from
	// this machine (pods: 110). The stand-in never enforces it.
	Capacity corev1.ResourceList
}

// Options configure a stand-in.
type Options struct {
	// Nodes it pretends to be; one node named "kubelet-standin" of runtime.GOARCH when empty.
	Nodes []Node
	// Namespaces whose pods it schedules and runs; every namespace when empty.
	Namespaces []string
	// Commands maps a container's command[0] to the absolute path of a local executable, e.g.
	// "mosb" → a freshly built bin/mosb, "sh" → /bin/sh. A container whose command[0] is not here fails
	// with reason StartError.
	Commands map[string]string
	// WorkDir holds the pods' volumes, the containers' logs and termination-message files. Required.
	WorkDir string
	// Log receives the stand-in's own structured log lines (nil: discarded). Logger, when set, wins.
	Log io.Writer
	// Logger, when it has a sink, is used instead of Log.
	Logger logr.Logger
	// ContainerOutput, when set, also receives every line the containers print, prefixed with
	// "[namespace/pod/container] ".
	ContainerOutput io.Writer
	// Env is added to every container's environment before the pod's own env.
	Env map[string]string
	// RestartBackoff is the first delay before a container is restarted under restartPolicy
	// OnFailure/Always; it doubles up to five minutes, as the kubelet's does. Default 10s.
	RestartBackoff time.Duration
}

const (
	defaultNodeName   = "kubelet-standin"
	maxRestartBackoff = 5 * time.Minute
	component         = "mosb-kubelet-standin"
	nodeIP            = "127.0.0.1"
)

// StandIn is a running kubelet (and scheduler) stand-in. Create it with Start; Stop it.
type StandIn struct {
	opts       Options
	cs         kubernetes.Interface
	log        logr.Logger
	helper     string   // the binary re-executed to set up each container's mount namespace
	nodes      []string // the names of its nodes, in the order of Options.Nodes: the scheduler's preference
	output     *lockedWriter
	ctx        context.Context
	cancel     context.CancelFunc
	queue      workqueue.TypedRateLimitingInterface[string]
	events     record.EventBroadcaster
	record     record.EventRecorder
	listers    map[string]listersv1.PodLister // by namespace; "" = all namespaces
	nodeLister listersv1.NodeLister           // the current Node objects, which tests may relabel, taint or cordon
	facts      []informers.SharedInformerFactory

	mu       sync.Mutex
	stopped  bool
	workers  map[types.UID]*podWorker
	finished map[types.UID]string  // pods whose run is over (their key), so a stale cache never reruns them
	pods     map[string]*podRecord // by namespace/name: the latest pod of that name, for Logs

	workerWG sync.WaitGroup // pod workers
	queueWG  sync.WaitGroup // queue consumers
	stopOnce sync.Once
}

// podRecord remembers where a pod's container runs wrote their output.
type podRecord struct {
	uid  types.UID
	runs []runRecord
}

type runRecord struct {
	container string
	attempt   int
	log       string
}

// Start registers the nodes, starts watching pods and returns once the pod caches are in sync.
// The stand-in runs until Stop is called or ctx ends.
func Start(ctx context.Context, cfg *rest.Config, opts Options) (*StandIn, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("kubelet stand-in: must run as root (containers run in private mount namespaces)")
	}
	if opts.WorkDir == "" {
		return nil, errors.New("kubelet stand-in: Options.WorkDir is required")
	}
	work, err := filepath.Abs(opts.WorkDir)
	if err != nil {
		return nil, err
	}
	opts.WorkDir = work
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, fmt.Errorf("kubelet stand-in: work dir: %w", err)
	}
	for name, path := range opts.Commands {
		if !filepath.IsAbs(path) {
			return nil, fmt.Errorf("kubelet stand-in: command %q maps to %q, which is not an absolute path", name, path)
		}
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("kubelet stand-in: command %q: %w", name, err)
		}
		if fi.IsDir() || fi.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("kubelet stand-in: command %q maps to %s, which is not an executable file", name, path)
		}
	}
	if opts.RestartBackoff <= 0 {
		opts.RestartBackoff = 10 * time.Second
	}
	if len(opts.Nodes) == 0 {
		opts.Nodes = []Node{{Name: defaultNodeName}}
	}
	seen := map[string]bool{}
	for _, n := range opts.Nodes {
		if n.Name == "" || seen[n.Name] {
			return nil, fmt.Errorf("kubelet stand-in: node names must be set and unique (got %q)", n.Name)
		}
		seen[n.Name] = true
	}
	helper, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("kubelet stand-in: locating its own binary for re-exec: %w", err)
	}

	log := opts.Logger
	if log.GetSink() == nil {
		if opts.Log != nil {
			lw := &lockedWriter{w: opts.Log}
			log = funcr.New(func(prefix, args string) {
				if prefix != "" {
					_, _ = fmt.Fprintf(lw, "%s %s\n", prefix, args)
					return
				}
				_, _ = fmt.Fprintln(lw, args)
			}, funcr.Options{Verbosity: 1})
		} else {
			log = logr.Discard()
		}
	}
	log = log.WithName("kubelet-standin")

	c := rest.CopyConfig(cfg)
	c.UserAgent = component
	cs, err := kubernetes.NewForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("kubelet stand-in: client: %w", err)
	}

	s := &StandIn{
		opts:     opts,
		cs:       cs,
		log:      log,
		helper:   helper,
		listers:  map[string]listersv1.PodLister{},
		workers:  map[types.UID]*podWorker{},
		finished: map[types.UID]string{},
		pods:     map[string]*podRecord{},
	}
	if opts.ContainerOutput != nil {
		s.output = &lockedWriter{w: opts.ContainerOutput}
	}
	for _, n := range opts.Nodes {
		if err := s.registerNode(ctx, n); err != nil {
			return nil, err
		}
		s.nodes = append(s.nodes, n.Name)
	}

	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.events = record.NewBroadcaster(record.WithContext(s.ctx))
	s.events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	s.record = s.events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: component, Host: s.nodes[0]})
	s.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "kubelet-standin-pods"})

	namespaces := opts.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    s.enqueue,
		UpdateFunc: func(_, obj interface{}) { s.enqueue(obj) },
		DeleteFunc: s.enqueue,
	}
	var synced []cache.InformerSynced
	for _, ns := range namespaces {
		f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
		inf := f.Core().V1().Pods()
		if _, err := inf.Informer().AddEventHandler(handler); err != nil {
			s.shutdown()
			return nil, err
		}
		s.listers[ns] = inf.Lister()
		synced = append(synced, inf.Informer().HasSynced)
		s.facts = append(s.facts, f)
		f.Start(s.ctx.Done())
	}
	// Nodes are watched after the pod listers exist: a node event re-enqueues the pods they list.
	nodeFactory := informers.NewSharedInformerFactory(cs, 0)
	nodeInformer := nodeFactory.Core().V1().Nodes()
	if _, err := nodeInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj interface{}) {
			if n, ok := obj.(*corev1.Node); ok && s.ownsNode(n.Name) {
				s.requeuePending()
			}
		},
		UpdateFunc: func(oldObj, newObj interface{}) {
			old, okOld := oldObj.(*corev1.Node)
			cur, okCur := newObj.(*corev1.Node)
			if okOld && okCur && s.ownsNode(cur.Name) && schedulingChanged(old, cur) {
				s.requeuePending()
			}
		},
	}); err != nil {
		s.shutdown()
		return nil, err
	}
	s.nodeLister = nodeInformer.Lister()
	synced = append(synced, nodeInformer.Informer().HasSynced)
	s.facts = append(s.facts, nodeFactory)
	nodeFactory.Start(s.ctx.Done())

	syncCtx, cancelSync := context.WithTimeout(s.ctx, time.Minute)
	defer cancelSync()
	if !cache.WaitForCacheSync(syncCtx.Done(), synced...) {
		s.Stop()
		return nil, errors.New("kubelet stand-in: pod and node caches did not sync within a minute")
	}
	for i := 0; i < 2; i++ {
		s.queueWG.Add(1)
		go s.consume()
	}
	context.AfterFunc(ctx, s.Stop)
	s.log.Info("started", "nodes", s.nodes, "namespaces", opts.Namespaces, "workDir", work)
	return s, nil
}

// Stop kills every container process the stand-in started (SIGTERM, SIGKILL a second later), waits for
// them and its own goroutines, and stops watching. Pods keep the status last written. Safe to call twice.
func (s *StandIn) Stop() {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.stopped = true
		s.mu.Unlock()
		s.shutdown()
		s.log.Info("stopped")
	})
}

func (s *StandIn) shutdown() {
	s.cancel()
	if s.queue != nil {
		s.queue.ShutDown()
	}
	s.workerWG.Wait()
	s.queueWG.Wait()
	for _, f := range s.facts {
		f.Shutdown()
	}
	if s.events != nil {
		s.events.Shutdown()
	}
}

// NodeNames are the names of the nodes the stand-in pretends to be.
func (s *StandIn) NodeNames() []string { return slices.Clone(s.nodes) }

// currentNodes are the informer's copies of the stand-in's nodes, in the order of Options.Nodes; a
// node that no longer exists is left out. They are the cache's objects: read them, never change them.
func (s *StandIn) currentNodes() []*corev1.Node {
	var out []*corev1.Node
	for _, name := range s.nodes {
		if n, err := s.nodeLister.Get(name); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// schedulingChanged: the node differs in something the scheduler decides on (labels, taints,
// spec.unschedulable, being deleted). Status updates alone are not worth a pass over the pending pods.
func schedulingChanged(old, cur *corev1.Node) bool {
	return !maps.Equal(old.Labels, cur.Labels) ||
		!equality.Semantic.DeepEqual(old.Spec.Taints, cur.Spec.Taints) ||
		old.Spec.Unschedulable != cur.Spec.Unschedulable ||
		(old.DeletionTimestamp == nil) != (cur.DeletionTimestamp == nil)
}

// requeuePending puts every pod still waiting for a node back on the queue: after a node change it may
// fit, just as kube-scheduler moves its unschedulable pods back to the active queue on node events.
func (s *StandIn) requeuePending() {
	for _, l := range s.listers {
		pods, err := l.List(labels.Everything())
		if err != nil {
			s.log.Error(err, "cannot list pods to retry scheduling after a node change")
			continue
		}
		for _, p := range pods {
			if p.Spec.NodeName == "" && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				s.enqueue(p)
			}
		}
	}
}

// Logs returns the output of every container run of the latest pod of that name, init containers
// first, in the order they started. A single run's output is returned as it is; several runs are each
// preceded by a line "--- container NAME (run N) ---".
func (s *StandIn) Logs(namespace, pod string) (string, error) {
	runs, err := s.runs(namespace, pod)
	if err != nil {
		return "", err
	}
	if len(runs) == 1 {
		b, err := os.ReadFile(runs[0].log)
		return string(b), err
	}
	var sb strings.Builder
	for _, r := range runs {
		b, err := os.ReadFile(r.log)
		if err != nil {
			return sb.String(), err
		}
		fmt.Fprintf(&sb, "--- container %s (run %d) ---\n", r.container, r.attempt)
		sb.Write(b)
		if len(b) > 0 && b[len(b)-1] != '\n' {
			sb.WriteByte('\n')
		}
	}
	return sb.String(), nil
}

// RanPods lists, as namespace/name and sorted, every pod of which a container has run here: what
// a test reports when it fails.
func (s *StandIn) RanPods() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.pods))
}

// ContainerLogs returns the output of the latest run of one container of the latest pod of that name.
func (s *StandIn) ContainerLogs(namespace, pod, container string) (string, error) {
	runs, err := s.runs(namespace, pod)
	if err != nil {
		return "", err
	}
	for i := len(runs) - 1; i >= 0; i-- {
		if runs[i].container == container {
			b, err := os.ReadFile(runs[i].log)
			return string(b), err
		}
	}
	return "", fmt.Errorf("kubelet stand-in: container %q of pod %s/%s has not run", container, namespace, pod)
}

func (s *StandIn) runs(namespace, pod string) ([]runRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.pods[namespace+"/"+pod]
	if rec == nil || len(rec.runs) == 0 {
		return nil, fmt.Errorf("kubelet stand-in: no container of pod %s/%s has run here", namespace, pod)
	}
	return append([]runRecord(nil), rec.runs...), nil
}

func (s *StandIn) addRun(key string, uid types.UID, r runRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.pods[key]
	if rec == nil || rec.uid != uid {
		rec = &podRecord{uid: uid}
		s.pods[key] = rec
	}
	rec.runs = append(rec.runs, r)
}

func (s *StandIn) enqueue(obj interface{}) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		s.log.Error(err, "cannot key pod event")
		return
	}
	s.queue.Add(key)
}

func (s *StandIn) consume() {
	defer s.queueWG.Done()
	for {
		key, quit := s.queue.Get()
		if quit {
			return
		}
		err := s.sync(s.ctx, key)
		switch {
		case err == nil:
			s.queue.Forget(key)
		case s.ctx.Err() != nil:
		default:
			s.log.Error(err, "sync failed; retrying", "pod", key)
			s.queue.AddRateLimited(key)
		}
		s.queue.Done(key)
	}
}

func (s *StandIn) lister(namespace string) listersv1.PodLister {
	if l, ok := s.listers[metav1.NamespaceAll]; ok {
		return l
	}
	return s.listers[namespace]
}

// cachedPod is the informer's view of a pod, or nil when it has none.
func (s *StandIn) cachedPod(key string) *corev1.Pod {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	l := s.lister(ns)
	if l == nil {
		return nil
	}
	p, err := l.Pods(ns).Get(name)
	if err != nil {
		return nil
	}
	return p
}

func (s *StandIn) ownsNode(name string) bool { return slices.Contains(s.nodes, name) }

// sync brings one pod key forward: schedule it, start its worker, tell its worker what changed, or
// remove a deleted pod nobody is running.
func (s *StandIn) sync(ctx context.Context, key string) error {
	pod := s.cachedPod(key)
	s.mu.Lock()
	// Workers of pods of this name that no longer exist (deleted, or replaced by a new UID) are told so.
	for uid, w := range s.workers {
		if w.key == key && (pod == nil || pod.UID != uid) {
			w.markGone()
		}
	}
	if pod == nil {
		for uid, k := range s.finished {
			if k == key {
				delete(s.finished, uid)
			}
		}
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()

	if pod.Spec.NodeName == "" {
		return s.schedule(ctx, pod)
	}
	if !s.ownsNode(pod.Spec.NodeName) {
		return nil
	}

	s.mu.Lock()
	if w := s.workers[pod.UID]; w != nil {
		w.notify()
		s.mu.Unlock()
		return nil
	}
	_, done := s.finished[pod.UID]
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	if pod.DeletionTimestamp != nil {
		s.mu.Unlock()
		// Nothing of it runs here (any more): confirm the deletion as a kubelet does.
		return s.forceDelete(ctx, pod)
	}
	if done || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		s.mu.Unlock()
		return nil
	}
	w := newPodWorker(s, key, pod)
	s.workers[pod.UID] = w
	s.workerWG.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.workerWG.Done()
		w.run(s.ctx)
		s.mu.Lock()
		delete(s.workers, pod.UID)
		s.finished[pod.UID] = key
		s.mu.Unlock()
		s.queue.Add(key) // a deletion that raced with the end of the run is confirmed by the next sync
	}()
	return nil
}

// forceDelete removes a pod whose processes are gone: delete with grace period 0, for this UID only.
func (s *StandIn) forceDelete(ctx context.Context, pod *corev1.Pod) error {
	zero := int64(0)
	uid := pod.UID
	err := s.cs.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      &metav1.Preconditions{UID: &uid},
	})
	if err == nil {
		s.log.Info("pod removed after its processes ended", "pod", pod.Namespace+"/"+pod.Name)
	}
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// registerNode creates (or updates) the Node object and reports it Ready.
func (s *StandIn) registerNode(ctx context.Context, n Node) error {
	arch := n.Arch
	if arch == "" {
		arch = runtime.GOARCH
	}
	nodeLabels := map[string]string{
		corev1.LabelArchStable:          arch,
		corev1.LabelOSStable:            "linux",
		corev1.LabelHostname:            n.Name,
		"kubelet-standin.mosb.dev/node": "true",
	}
	for k, v := range n.Labels {
		nodeLabels[k] = v
	}
	capacity := machineCapacity()
	for k, v := range n.Capacity {
		capacity[k] = v
	}
	nodes := s.cs.CoreV1().Nodes()
	want := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: nodeLabels},
		Spec:       corev1.NodeSpec{Taints: n.Taints},
	}
	if _, err := nodes.Create(ctx, want, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kubelet stand-in: creating node %s: %w", n.Name, err)
	}
	// The apiserver taints a new node not-ready; the node lifecycle controller (absent here) lifts that
	// once the node is Ready. Labels and taints are set to what was asked for.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := nodes.Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Labels = nodeLabels
		cur.Spec.Taints = n.Taints
		_, err = nodes.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("kubelet stand-in: setting labels and taints of node %s: %w", n.Name, err)
	}
	now := metav1.Now()
	kernel := ""
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		kernel = unix.ByteSliceToString(uts.Release[:])
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := nodes.Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cond := func(t corev1.NodeConditionType, st corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
			return corev1.NodeCondition{Type: t, Status: st, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
		}
		cur.Status = corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity,
			Phase:       corev1.NodeRunning,
			Conditions: []corev1.NodeCondition{
				cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "the kubelet stand-in does not measure memory pressure"),
				cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "the kubelet stand-in does not measure disk pressure"),
				cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "the kubelet stand-in does not measure PID pressure"),
				cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "mosb kubelet stand-in (test infrastructure) is running pods as local processes"),
			},
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: nodeIP},
				{Type: corev1.NodeHostName, Address: n.Name},
			},
			NodeInfo: corev1.NodeSystemInfo{
				Architecture:            arch,
				OperatingSystem:         "linux",
				KernelVersion:           kernel,
				OSImage:                 "host filesystem (mosb kubelet stand-in)",
				ContainerRuntimeVersion: "standin://local-processes",
				KubeletVersion:          "v0.0.0-mosb-kubelet-standin",
			},
		}
		_, err = nodes.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("kubelet stand-in: reporting node %s Ready: %w", n.Name, err)
	}
	return nil
}

// machineCapacity is this machine's cpu and memory, and the kubelet's default pod count.
func machineCapacity() corev1.ResourceList {
	rl := corev1.ResourceList{
		corev1.ResourceCPU:  *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI),
		corev1.ResourcePods: *resource.NewQuantity(110, resource.DecimalSI),
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) >= 2 && fields[0] == "MemTotal:" {
				if kb, err := strconv.ParseInt(fields[1], 10, 64); err == nil {
					rl[corev1.ResourceMemory] = *resource.NewQuantity(kb*1024, resource.BinarySI)
				}
			}
		}
	}
	return rl
}

// lockedWriter serialises writes from many goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
