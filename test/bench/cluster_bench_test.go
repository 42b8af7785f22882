package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/test/harness"
	"github.com/mosb-dev/mosb/test/kubeletstandin"
)

// The cluster objects a MachineOSConfig needs, as test/e2e creates them.
const (
	buildNamespace = "openshift-machine-config-operator"
	poolName       = "worker"
	renderedName   = "rendered-worker-1"
	// releaseVersion is the one fixture.writeMachineOSConfig writes for the CLI.
	releaseVersion = "4.16.0-bench"
	renderedConfig = `{"ignition":{"version":"3.4.0"}}`
)

// cluster is a control plane holding everything a MachineOSConfig needs, the fixture's registry
// (htpasswd + TLS, its CA trusted through the Image config), and one node of this machine's
// architecture whose pods the kubelet stand-in runs as real `mosb worker` processes.
type cluster struct {
	cp *harness.ControlPlane
	c  client.Client
	// wc watches, for precise "every MachineOSConfig got there" times without polling lists.
	wc client.WithWatch
	f  *fixture
	// machineConfig is the pool's rendered MachineConfig as a manifest, for `mosb build --machineconfig`.
	machineConfig string
	workers       *workerOutput
}

func newCluster(t *testing.T, f *fixture, mosb, arch string) *cluster {
	t.Helper()
	cp := harness.StartControlPlane(t)
	cp.StartJobController(t)
	wc, err := client.NewWithWatch(cp.Config, client.Options{Scheme: harness.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{cp: cp, c: cp.Client, wc: wc, f: f, workers: &workerOutput{pods: map[string]*workerRun{}}}
	objs := harness.Cluster{Namespace: buildNamespace, Registry: f.reg, BaseImage: f.base, ReleaseVersion: releaseVersion,
		Pool: poolName, RenderedConfig: renderedName, RenderedConfigJSON: renderedConfig}.Objects()
	for _, o := range objs {
		if err := c.c.Create(t.Context(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
	c.machineConfig = filepath.Join(f.dir, renderedName+".yaml")
	writeFile(t, c.machineConfig, fmt.Sprintf(`apiVersion: machineconfiguration.openshift.io/v1
kind: MachineConfig
metadata:
  name: %s
spec:
  config: %s
`, renderedName, renderedConfig))

	ki, err := kubeletstandin.Start(t.Context(), cp.Config, kubeletstandin.Options{
		Nodes: []kubeletstandin.Node{{Name: "node-" + arch, Arch: arch,
			Labels: map[string]string{"kubernetes.io/arch": arch, "node-role.kubernetes.io/worker": ""}}},
		Namespaces:      []string{buildNamespace},
		Commands:        map[string]string{"mosb": mosb},
		WorkDir:         t.TempDir(),
		ContainerOutput: c.workers,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ki.Stop)
	return c
}

// machineOSConfig is the cluster's twin of fixture.writeMachineOSConfig's file: same pool, secrets,
// base image, release version and snippet. pushSecret names the push secret ("push" exists).
func (c *cluster) machineOSConfig(name, target, content, pushSecret string) *mosbv1.MachineOSConfig {
	m := harness.MachineOSConfig(name, poolName, c.f.base, target)
	m.Spec.BuildInputs.ReleaseVersion = releaseVersion
	m.Spec.BuildInputs.RenderedImagePushSecret.Name = pushSecret
	if content != "" {
		m.Spec.BuildInputs.Containerfile = []mosbv1.MachineOSContainerfile{{Content: content}}
	}
	return m
}

// workerOutput receives the build pods' output from the stand-in, one "[namespace/pod/container] "
// line per write, and notes when each pod's worker started talking and what it reported.
type workerOutput struct {
	mu   sync.Mutex
	pods map[string]*workerRun
	last []string
}

// workerRun is what one build pod's `mosb worker` said, and when.
type workerRun struct {
	// first is when its first line arrived; done when its "built in …, pushed in …" line did.
	first, done time.Time
	build, push time.Duration
}

var workerDone = regexp.MustCompile(`mosb worker: \S+ built in (\S+), pushed in (\S+): `)

func (w *workerOutput) Write(b []byte) (int, error) {
	now := time.Now()
	line := strings.TrimRight(string(b), "\n")
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last = append(w.last, line); len(w.last) > 200 {
		w.last = w.last[len(w.last)-100:]
	}
	key, text, ok := strings.Cut(line, "] ")
	if !ok || !strings.HasPrefix(key, "[") {
		return len(b), nil
	}
	// key is [namespace/pod/container]
	parts := strings.Split(strings.TrimPrefix(key, "["), "/")
	if len(parts) != 3 {
		return len(b), nil
	}
	r := w.pods[parts[1]]
	if r == nil {
		r = &workerRun{first: now}
		w.pods[parts[1]] = r
	}
	if m := workerDone.FindStringSubmatch(text); m != nil {
		r.done = now
		r.build, _ = time.ParseDuration(m[1])
		r.push, _ = time.ParseDuration(m[2])
	}
	return len(b), nil
}

// run is the finished worker run of the pod whose name starts with prefix.
func (w *workerOutput) run(prefix string) (workerRun, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for name, r := range w.pods {
		if strings.HasPrefix(name, prefix) && !r.done.IsZero() {
			return *r, true
		}
	}
	return workerRun{}, false
}

func (w *workerOutput) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.last, "\n")
}

// controllerProc is `mosb controller` as a process, serving /metrics and /readyz on loopback.
type controllerProc struct {
	cmd         *exec.Cmd
	done        chan struct{}
	started     time.Time
	metricsAddr string
	probeAddr   string
	log         *procLog
}

func startController(t *testing.T, bin, kubeconfig string) *controllerProc {
	t.Helper()
	p := &controllerProc{metricsAddr: harness.FreeLoopbackAddr(t), probeAddr: harness.FreeLoopbackAddr(t), log: &procLog{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "controller", "--kubeconfig", kubeconfig, "--namespace", buildNamespace,
		"--builder-image", "mosb:bench", "--build-timeout", "10m",
		"--metrics-bind-address", p.metricsAddr, "--health-probe-bind-address", p.probeAddr, "--node-store", t.TempDir(), "--webhook-port", "0")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting mosb controller: %v", err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("controller log (tail):\n%s", tail(p.log.String(), 60))
		}
	})
	return p
}

// kill ends the controller as a crash would; running builds are left to the next one.
func (p *controllerProc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// waitReady polls /readyz (ready once the caches have synced) and returns how long after the
// process started it first answered 200.
func (p *controllerProc) waitReady(t *testing.T) time.Duration {
	t.Helper()
	var at time.Time
	poll(t, 2*time.Minute, "the controller's /readyz", func(ctx context.Context) (bool, error) {
		select {
		case <-p.done:
			return false, fmt.Errorf("the controller exited: %s", tail(p.log.String(), 20))
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.probeAddr+"/readyz", nil)
		if err != nil {
			return false, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		at = time.Now()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("/readyz: %s", resp.Status)
	})
	return at.Sub(p.started)
}

// waitWorkers waits for the build controller's "Starting workers" line: its watches have synced
// and it reconciles from then on. It returns how long after the process started that was, and
// how many workers it started.
func (p *controllerProc) waitWorkers(t *testing.T) (time.Duration, string) {
	t.Helper()
	var at time.Time
	var workers string
	poll(t, 2*time.Minute, "the build controller's workers", func(context.Context) (bool, error) {
		select {
		case <-p.done:
			return false, fmt.Errorf("the controller exited: %s", tail(p.log.String(), 20))
		default:
		}
		at, workers = p.log.workers()
		return !at.IsZero(), nil
	})
	return at.Sub(p.started), workers
}

// scrape reads the controller's /metrics.
func (p *controllerProc) scrape(ctx context.Context) (promText, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.metricsAddr+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("/metrics: %s", resp.Status)
	}
	return promText(body), nil
}

func (p *controllerProc) mustScrape(t *testing.T) promText {
	t.Helper()
	m, err := p.scrape(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// peakRSS is the kernel's high-water mark of the controller's resident set (VmHWM), in bytes.
func (p *controllerProc) peakRSS(t *testing.T) int64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("reading the controller's /proc status: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb * 1024
		}
	}
	t.Fatal("no VmHWM in the controller's /proc status")
	return 0
}

// promText is a Prometheus text exposition.
type promText string

// sum adds up the samples of one metric whose labels include every name="value" given.
func (p promText) sum(metric string, labels ...string) float64 {
	var total float64
	for _, line := range strings.Split(string(p), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		series, value, ok := cutLast(line, " ")
		if !ok {
			continue
		}
		name, lbls, _ := strings.Cut(series, "{")
		if name != metric {
			continue
		}
		match := true
		for _, l := range labels {
			match = match && strings.Contains(lbls, l)
		}
		if !match {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			total += v
		}
	}
	return total
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// The build controller's figures, as controller-runtime exports them.
const (
	buildController = `controller="build"`
	buildQueue      = `name="build"`
)

// reconciles the build controller has finished, whatever their result.
func reconciles(m promText) float64 {
	return m.sum("controller_runtime_reconcile_total", buildController)
}

func reconcileErrors(m promText) float64 {
	return m.sum("controller_runtime_reconcile_errors_total", buildController)
}

// reconcileSeconds is the time spent in Reconcile, summed.
func reconcileSeconds(m promText) float64 {
	return m.sum("controller_runtime_reconcile_time_seconds_sum", buildController)
}

func queueDepth(m promText) float64 { return m.sum("workqueue_depth", buildQueue) }

func heapInUse(m promText) int64 { return int64(m.sum("go_memstats_heap_inuse_bytes")) }

// degradedWatch watches MachineOSConfigs from before they are created and notes when each was
// first seen Degraded with a reason.
type degradedWatch struct {
	mu     sync.Mutex
	seen   map[string]time.Time
	reason string
	err    error
	cancel context.CancelFunc
	done   chan struct{}
}

func (c *cluster) watchDegraded(t *testing.T, reason string) *degradedWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	w := &degradedWatch{seen: map[string]time.Time{}, reason: reason, cancel: cancel, done: make(chan struct{})}
	rv, err := w.list(ctx, c.wc)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			next, err := w.follow(ctx, c.wc, rv)
			if err == nil {
				rv = next
				continue
			}
			// The watch broke (say, its resource version expired): list again, then resume.
			if rv, err = w.list(ctx, c.wc); err != nil && ctx.Err() == nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
				return
			}
		}
	}()
	t.Cleanup(w.stop)
	return w
}

// list notes every MachineOSConfig already Degraded and returns the list's resource version.
func (w *degradedWatch) list(ctx context.Context, wc client.WithWatch) (string, error) {
	list := &mosbv1.MachineOSConfigList{}
	if err := wc.List(ctx, list); err != nil {
		return "", err
	}
	for i := range list.Items {
		w.note(&list.Items[i])
	}
	return list.ResourceVersion, nil
}

// follow consumes one watch from rv until it ends, and returns where to resume.
func (w *degradedWatch) follow(ctx context.Context, wc client.WithWatch, rv string) (string, error) {
	wi, err := wc.Watch(ctx, &mosbv1.MachineOSConfigList{}, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
	if err != nil {
		return rv, err
	}
	defer wi.Stop()
	for ev := range wi.ResultChan() {
		switch ev.Type {
		case watch.Error:
			return rv, fmt.Errorf("watching MachineOSConfigs: %v", ev.Object)
		case watch.Added, watch.Modified, watch.Bookmark:
			m, ok := ev.Object.(*mosbv1.MachineOSConfig)
			if !ok {
				continue
			}
			rv = m.ResourceVersion
			if ev.Type != watch.Bookmark {
				w.note(m)
			}
		}
	}
	return rv, nil
}

func (w *degradedWatch) note(m *mosbv1.MachineOSConfig) {
	for _, c := range m.Status.Conditions {
		if c.Type == mosbv1.MachineOSConfigDegraded && c.Status == metav1.ConditionTrue && c.Reason == w.reason {
			w.mu.Lock()
			if _, ok := w.seen[m.Name]; !ok {
				w.seen[m.Name] = time.Now()
			}
			w.mu.Unlock()
		}
	}
}

// wait returns when every named MachineOSConfig was first seen Degraded.
func (w *degradedWatch) wait(t *testing.T, names []string, timeout time.Duration) map[string]time.Time {
	t.Helper()
	out := map[string]time.Time{}
	poll(t, timeout, fmt.Sprintf("%d MachineOSConfigs Degraded (%s)", len(names), w.reason), func(context.Context) (bool, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.err != nil {
			return false, w.err
		}
		for _, n := range names {
			if at, ok := w.seen[n]; ok {
				out[n] = at
			}
		}
		return len(out) == len(names), fmt.Errorf("%d of %d so far", len(out), len(names))
	})
	return out
}

func (w *degradedWatch) stop() {
	w.cancel()
	<-w.done
}

// poll checks cond every 20 ms until it holds or the deadline passes.
func poll(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	pollEvery(t, 20*time.Millisecond, timeout, what, cond)
}

// pollEvery checks cond every interval until it holds or the deadline passes.
func pollEvery(t *testing.T, interval, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	harness.Eventually(t.Context(), t, interval, timeout, what, cond)
}

// procLog keeps the controller's log and notes when the build controller started its workers.
type procLog struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	partial   []byte
	workersAt time.Time
	count     string
}

var startingWorkers = regexp.MustCompile(`"Starting workers".*controller="build".*worker count"?=(\d+)`)

func (b *procLog) Write(p []byte) (int, error) {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.partial = append(b.partial, p...)
	for {
		i := bytes.IndexByte(b.partial, '\n')
		if i < 0 {
			break
		}
		if m := startingWorkers.FindSubmatch(b.partial[:i]); m != nil && b.workersAt.IsZero() {
			b.workersAt, b.count = now, string(m[1])
		}
		b.partial = b.partial[i+1:]
	}
	return b.buf.Write(p)
}

func (b *procLog) workers() (time.Time, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.workersAt, b.count
}

func (b *procLog) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
