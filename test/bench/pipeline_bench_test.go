package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
)

// manyMachineOSConfigs is how many MachineOSConfigs the reconcile figures use.
const manyMachineOSConfigs = 200

// Names the controller uses (pipeline.ReasonSecretNotFound, pipeline.LabelMachineOSConfig), spelled
// out so that the benchmark does not link the build engine.
const (
	reasonSecretNotFound = "SecretNotFound"
	labelMachineOSConfig = "mosb.dev/machineosconfig"
	// labelScaleRound marks the MachineOSConfigs of one round of the reconcile figures.
	labelScaleRound = "mosb-bench/scale-round"
)

// The phases of the reconcile figures, in the order the table lists them.
const (
	phaseIdle    = "controller started, no MachineOSConfig: process start → workers"
	phaseCreate  = "200 created → all 200 Degraded (a status write each)"
	phaseFanOut  = "pull secret updated → 200 reconciled (nothing to write)"
	phaseRestart = "controller restarted → all 200 reconciled (nothing to write)"
)

var phases = []string{phaseIdle, phaseCreate, phaseFanOut, phaseRestart}

// pipeSample is one build, through the pipeline or the CLI.
type pipeSample struct {
	// total: MachineOSConfig created → its digest in status (pipeline); process start → exit (CLI).
	total time.Duration
	// build and push are what the worker (pipeline) or `mosb build` (CLI) report themselves.
	build, push time.Duration
	// before is MachineOSConfig created → the build pod's worker printed its first line; after is
	// the worker reported its push → the digest was seen in status. Pipeline only.
	before, after time.Duration
}

// scaleSample is one phase of one round of the reconcile figures.
type scaleSample struct {
	wall time.Duration
	// reconciles, reconcileErrors and reconcileTime (seconds, summed) are the build controller's
	// over the phase.
	reconciles, reconcileErrors, reconcileTime float64
	// rss is the controller's VmHWM at the end of the phase, heap its Go heap in use.
	rss, heap int64
	// creates is how long the 200 creates took the benchmark's client; latency the median of
	// created → seen Degraded, slowest its maximum (create phase only).
	creates, latency, slowest time.Duration
	// readyz is process start → /readyz answered 200 (idle phase only).
	readyz time.Duration
}

type pipelineBench struct {
	mosb, arch string
	f          *fixture
	c          *cluster
	pipeline   []pipeSample
	cli        []pipeSample
	scale      map[string][]scaleSample
	// workers is the build controller's worker count, from its "Starting workers" line.
	workers string
}

// TestPipelineSpeed measures the controller: a MachineOSConfig applied → digest in status against
// the same build through `mosb build`, and the controller's reconcile throughput and memory with
// 200 MachineOSConfigs. `make bench` runs it after TestBuildSpeed.
func TestPipelineSpeed(t *testing.T) {
	runs := benchRuns(t)
	if runtime.GOOS != "linux" {
		t.Skip("buildah builds and /proc/<pid>/status need Linux")
	}
	b := &pipelineBench{mosb: mosbBinary(t), arch: runtime.GOARCH, scale: map[string][]scaleSample{}}
	b.f = newFixture(t, b.arch)
	b.c = newCluster(t, b.f, b.mosb, b.arch)
	loadBefore := loadAverage()

	// 1. One controller for every build, as in a cluster.
	ctl := startController(t, b.mosb, b.c.cp.Kubeconfig)
	ctl.waitReady(t)
	for i := 0; i < runs; i++ {
		if !t.Run(fmt.Sprintf("build-round-%d", i+1), func(t *testing.T) { b.buildRound(t, i) }) {
			t.FailNow()
		}
	}
	ctl.kill()
	b.removeBuilt(t, runs)

	// 2. A fresh controller per round.
	for i := 0; i < runs; i++ {
		if !t.Run(fmt.Sprintf("reconcile-round-%d", i+1), func(t *testing.T) { b.scaleRound(t, i) }) {
			t.FailNow()
		}
	}
	b.report(os.Stdout, runs, loadBefore, loadAverage())
}

// buildRound builds once through the pipeline and once through the CLI, each a new last line of
// the same snippet into a repository of its own. Odd rounds run the CLI first.
func (b *pipelineBench) buildRound(t *testing.T, i int) {
	pipe := func() {
		s := b.pipelineBuild(t, fmt.Sprintf("pipeline-%d", i+1))
		t.Logf("%-28s %8s  (worker: build %s, push %s; create → worker %s, pushed → status %s)", "pipeline", sec(s.total), sec(s.build), sec(s.push), sec(s.before), sec(s.after))
		b.pipeline = append(b.pipeline, s)
	}
	cli := func() {
		s := b.cliBuild(t, fmt.Sprintf("cli-%d", i+1))
		t.Logf("%-28s %8s  (build %s, push %s)", "mosb build", sec(s.total), sec(s.build), sec(s.push))
		b.cli = append(b.cli, s)
	}
	if i%2 == 0 {
		pipe()
		cli()
	} else {
		cli()
		pipe()
	}
}

// pipelineBuild creates a MachineOSConfig and waits for its digest in status.
func (b *pipelineBench) pipelineBuild(t *testing.T, name string) pipeSample {
	t.Helper()
	m := b.c.machineOSConfig(name, b.f.reg.Host+"/os/"+name+":latest", snippet(name), "push")
	start := time.Now()
	if err := b.c.c.Create(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	var seen time.Time
	poll(t, 10*time.Minute, "MachineOSConfig "+name+" Ready with its digest", func(ctx context.Context) (bool, error) {
		got := &mosbv1.MachineOSConfig{}
		if err := b.c.c.Get(ctx, client.ObjectKey{Name: name}, got); err != nil {
			return false, err
		}
		seen = time.Now()
		if c := meta.FindStatusCondition(got.Status.Conditions, mosbv1.MachineOSConfigDegraded); c != nil && c.Status == metav1.ConditionTrue {
			t.Fatalf("MachineOSConfig %s is Degraded: %s: %s\nbuild pods' output (tail):\n%s", name, c.Reason, c.Message, tail(b.c.workers.tail(), 30))
		}
		return meta.IsStatusConditionTrue(got.Status.Conditions, mosbv1.MachineOSConfigReady) &&
			got.Status.ObservedGeneration == got.Generation && got.Status.CurrentImagePullspec != "", nil
	})
	run, ok := b.c.workers.run(name + "-")
	if !ok {
		t.Fatalf("%s is Ready, but no build pod of it reported a build:\n%s", name, tail(b.c.workers.tail(), 30))
	}
	return pipeSample{total: seen.Sub(start), build: run.build, push: run.push, before: run.first.Sub(start), after: seen.Sub(run.done)}
}

// cliBuild runs `mosb build` on the twin of pipelineBuild's MachineOSConfig, rendered MachineConfig
// included, on a fresh root.
func (b *pipelineBench) cliBuild(t *testing.T, name string) pipeSample {
	t.Helper()
	f := b.f
	file := f.writeMachineOSConfig(t, name, f.reg.Host+"/os/"+name+":latest", snippet(name))
	p := runMeasured(t, scratchEnv(t, f.dir), b.mosb, "build", "-f", file, "--cluster-config", f.clusterDir,
		"--authfile", f.authFile, "--machineconfig", b.c.machineConfig, "--root", filepath.Join(f.dir, name+"-root"))
	if pullspec := lastLine(p.stdout); !strings.HasPrefix(pullspec, f.reg.Host+"/") || !strings.Contains(pullspec, "@sha256:") {
		t.Fatalf("mosb build printed %q as its last line, not the digested pullspec:\n%s", pullspec, tail(p.stderr, 30))
	}
	return pipeSample{total: p.wall, build: reported(t, p.stderr, builtIn), push: reported(t, p.stderr, pushedIn)}
}

// removeBuilt deletes the first part's MachineOSConfigs and MachineOSBuilds (the test cluster has
// no garbage collector), so that the reconcile figures start from none.
func (b *pipelineBench) removeBuilt(t *testing.T, runs int) {
	t.Helper()
	ctx := t.Context()
	for i := 0; i < runs; i++ {
		name := fmt.Sprintf("pipeline-%d", i+1)
		if err := b.c.c.DeleteAllOf(ctx, &mosbv1.MachineOSBuild{}, client.MatchingLabels{labelMachineOSConfig: name}); err != nil {
			t.Fatal(err)
		}
		if err := b.c.c.Delete(ctx, &mosbv1.MachineOSConfig{ObjectMeta: metav1.ObjectMeta{Name: name}}); client.IgnoreNotFound(err) != nil {
			t.Fatal(err)
		}
	}
	poll(t, time.Minute, "the built MachineOSConfigs and MachineOSBuilds gone", func(ctx context.Context) (bool, error) {
		moscs, builds := &mosbv1.MachineOSConfigList{}, &mosbv1.MachineOSBuildList{}
		if err := b.c.c.List(ctx, moscs); err != nil {
			return false, err
		}
		if err := b.c.c.List(ctx, builds); err != nil {
			return false, err
		}
		return len(moscs.Items) == 0 && len(builds.Items) == 0, fmt.Errorf("%d MachineOSConfigs, %d MachineOSBuilds left", len(moscs.Items), len(builds.Items))
	})
}

// scaleRound starts a controller with no MachineOSConfig, creates 200 that name a push secret that
// does not exist, touches the pull secret they all use, restarts the controller, and deletes them.
func (b *pipelineBench) scaleRound(t *testing.T, round int) {
	ctx := t.Context()
	ctl := startController(t, b.mosb, b.c.cp.Kubeconfig)
	ready := ctl.waitReady(t)
	started, workers := ctl.waitWorkers(t)
	b.workers = workers
	idle := ctl.mustScrape(t)
	b.addScale(t, phaseIdle, scaleSample{wall: started, readyz: ready, rss: ctl.peakRSS(t), heap: heapInUse(idle)})

	// Create: watch → queue → reconcile → Degraded written, 200 times.
	roundLabel := strconv.Itoa(round + 1)
	names := make([]string, manyMachineOSConfigs)
	for k := range names {
		names[k] = fmt.Sprintf("scale-%d-%03d", round+1, k)
	}
	w := b.c.watchDegraded(t, reasonSecretNotFound)
	created := make([]time.Time, len(names))
	errs := make([]error, len(names))
	work := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range 8 { // the apiserver, not the benchmark's client, should be what limits creation
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range work {
				m := b.c.machineOSConfig(names[k], fmt.Sprintf("%s/os/%s:latest", b.f.reg.Host, names[k]), "", "push-absent")
				m.Labels = map[string]string{labelScaleRound: roundLabel}
				errs[k] = b.c.c.Create(ctx, m)
				created[k] = time.Now()
			}
		}()
	}
	for k := range names {
		work <- k
	}
	close(work)
	wg.Wait()
	creates := time.Since(start)
	for _, err := range errs {
		if err != nil {
			t.Fatalf("creating the MachineOSConfigs: %v", err)
		}
	}
	seen := w.wait(t, names, 10*time.Minute)
	w.stop()
	var last time.Time
	lat := make([]time.Duration, len(names))
	for k, n := range names {
		last = later(last, seen[n])
		lat[k] = seen[n].Sub(created[k])
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	after := b.settle(t, ctl, reconciles(idle)+manyMachineOSConfigs)
	s := phaseSample(idle, after, last.Sub(start), ctl.peakRSS(t))
	s.creates, s.latency, s.slowest = creates, lat[len(lat)/2], lat[len(lat)-1]
	b.addScale(t, phaseCreate, s)

	// Fan-out: one Secret event maps to every MachineOSConfig that names it.
	before := ctl.mustScrape(t)
	pull := &corev1.Secret{}
	if err := b.c.c.Get(ctx, client.ObjectKey{Namespace: buildNamespace, Name: "pull"}, pull); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(pull.DeepCopy())
	if pull.Annotations == nil {
		pull.Annotations = map[string]string{}
	}
	pull.Annotations["mosb-bench/touched"] = roundLabel
	start = time.Now()
	if err := b.c.c.Patch(ctx, pull, patch); err != nil {
		t.Fatal(err)
	}
	after = b.settle(t, ctl, reconciles(before)+manyMachineOSConfigs)
	b.addScale(t, phaseFanOut, phaseSample(before, after, time.Since(start), ctl.peakRSS(t)))

	// Restart: a new process lists all 200 and reconciles each once.
	ctl.kill()
	ctl = startController(t, b.mosb, b.c.cp.Kubeconfig)
	after = b.settle(t, ctl, manyMachineOSConfigs)
	b.addScale(t, phaseRestart, phaseSample("", after, time.Since(ctl.started), ctl.peakRSS(t)))
	ctl.kill()

	if err := b.c.c.DeleteAllOf(ctx, &mosbv1.MachineOSConfig{}, client.MatchingLabels{labelScaleRound: roundLabel}); err != nil {
		t.Fatal(err)
	}
	poll(t, time.Minute, "round "+roundLabel+"'s MachineOSConfigs deleted", func(ctx context.Context) (bool, error) {
		list := &mosbv1.MachineOSConfigList{}
		if err := b.c.c.List(ctx, list, client.MatchingLabels{labelScaleRound: roundLabel}); err != nil {
			return false, err
		}
		return len(list.Items) == 0, fmt.Errorf("%d left", len(list.Items))
	})
}

// settle polls the controller's /metrics every 50 ms until the build controller has finished at
// least want reconciles in all and its queue is empty, and returns that scrape.
func (b *pipelineBench) settle(t *testing.T, ctl *controllerProc, want float64) promText {
	t.Helper()
	var m promText
	pollEvery(t, 50*time.Millisecond, 10*time.Minute, fmt.Sprintf("%.0f reconciles and an empty queue", want), func(ctx context.Context) (bool, error) {
		got, err := ctl.scrape(ctx)
		if err != nil {
			return false, err
		}
		m = got
		return reconciles(m) >= want && queueDepth(m) == 0, fmt.Errorf("%.0f reconciles, queue depth %.0f", reconciles(m), queueDepth(m))
	})
	return m
}

// phaseSample is the difference of two scrapes of one process ("" before: from its start).
func phaseSample(before, after promText, wall time.Duration, rss int64) scaleSample {
	return scaleSample{
		wall:            wall,
		reconciles:      reconciles(after) - reconciles(before),
		reconcileErrors: reconcileErrors(after) - reconcileErrors(before),
		reconcileTime:   reconcileSeconds(after) - reconcileSeconds(before),
		rss:             rss,
		heap:            heapInUse(after),
	}
}

func (b *pipelineBench) addScale(t *testing.T, phase string, s scaleSample) {
	t.Helper()
	t.Logf("%-64s %8s  %4.0f reconciles (%.0f/s, %.0f errors), peak RSS %s, heap %s", phase, sec(s.wall), s.reconciles, perSecond(s.reconciles, s.wall), s.reconcileErrors, mib(s.rss), mib(s.heap))
	b.scale[phase] = append(b.scale[phase], s)
}

func (b *pipelineBench) report(w io.Writer, runs int, loadBefore, loadAfter string) {
	fmt.Fprintf(w, "\nmosb pipeline benchmark: %s; kube-apiserver + etcd, `mosb controller` as a process, build pods run as real\n", b.arch)
	fmt.Fprintln(w, "`mosb worker` processes by the kubelet stand-in, docker-registry with htpasswd + TLS on 127.0.0.1 (its CA")
	fmt.Fprintln(w, "trusted through the Image config), tiny busybox base image.")
	fmt.Fprintf(w, "Each row: the median of %d runs [min … max].", runs)
	if runs < 3 {
		fmt.Fprintf(w, " (fewer than 3 runs: %s=%d; the figures are not medians of 3)", envRuns, runs)
	}
	fmt.Fprintf(w, "\nmosb %s. Load average before / after: %s / %s.\n", firstLine(b.mosb, "version"), loadBefore, loadAfter)

	fmt.Fprintln(w, "\n1. A MachineOSConfig applied → its digest in status, against the same build through `mosb build`.")
	fmt.Fprintln(w, "Both build TestBuildSpeed's 3-RUN snippet with a last line of their own per run (every run is a full cold")
	fmt.Fprintln(w, "build: a new build identity, an empty pod storage / a fresh --root), with the pool's rendered MachineConfig, the")
	fmt.Fprintln(w, "Image config's CA and pull/push credentials, into a repository of their own on the same registry.")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\ttotal\t[min … max]\tbuild\tpush\toutside build + push\t")
	row := func(label string, ss []pipeSample) {
		if len(ss) == 0 {
			return
		}
		total := medianBy(ss, func(s pipeSample) time.Duration { return s.total })
		lo, hi := ss[0].total, ss[0].total
		for _, s := range ss {
			lo, hi = min(lo, s.total), max(hi, s.total)
		}
		fmt.Fprintf(tw, "%s\t%s\t[%s … %s]\t%s\t%s\t%s\t\n", label, sec(total), sec(lo), sec(hi),
			sec(medianBy(ss, func(s pipeSample) time.Duration { return s.build })),
			sec(medianBy(ss, func(s pipeSample) time.Duration { return s.push })),
			sec(medianBy(ss, func(s pipeSample) time.Duration { return s.total - s.build - s.push })))
	}
	row("pipeline: MachineOSConfig created → digest in status", b.pipeline)
	row("mosb build (CLI), fresh root", b.cli)
	tw.Flush()
	if len(b.pipeline) > 0 {
		fmt.Fprintf(w, "pipeline, outside build + push: created → the worker's first line %s (controller: MachineOSBuild, ConfigMap, pod;\n",
			sec(medianBy(b.pipeline, func(s pipeSample) time.Duration { return s.before })))
		fmt.Fprintf(w, "stand-in: scheduling, volumes, exec), the worker's push reported → digest seen in status %s.\n",
			sec(medianBy(b.pipeline, func(s pipeSample) time.Duration { return s.after })))
	}
	if len(b.pipeline) > 0 && len(b.cli) > 0 {
		fmt.Fprintln(w, "\nratios of the medians (below 1: the pipeline is faster)")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, r := range []struct {
			label string
			f     func(pipeSample) time.Duration
		}{
			{"pipeline / mosb build, total", func(s pipeSample) time.Duration { return s.total }},
			{"pipeline / mosb build, build (as each reports it)", func(s pipeSample) time.Duration { return s.build }},
			{"pipeline / mosb build, push (as each reports it)", func(s pipeSample) time.Duration { return s.push }},
		} {
			if y := medianBy(b.cli, r.f); y > 0 {
				fmt.Fprintf(tw, "%s\t%.2f\t\n", r.label, float64(medianBy(b.pipeline, r.f))/float64(y))
			}
		}
		tw.Flush()
	}

	fmt.Fprintf(w, "\n2. Reconcile throughput and memory with %d MachineOSConfigs whose builds are cheap because they never start:\n", manyMachineOSConfigs)
	fmt.Fprintln(w, "each is valid but for its push secret, which does not exist. Its reconcile is the controller's whole loop up to")
	fmt.Fprintln(w, "validation: watch event → queue → every input read from the cache (pool, rendered MachineConfig, nodes,")
	fmt.Fprintln(w, "machine-config-osimageurl, both secrets, Image config and its CA, mirror sets) → validation → Degraded=True")
	fmt.Fprintln(w, "(SecretNotFound) → a status write when it changes, and a Warning Event. No Containerfile assembly, build identity,")
	fmt.Fprintln(w, "MachineOSBuild, pod or registry call: 200 real builds would be 200 buildah runs, a measure of buildah (part 1")
	fmt.Fprintln(w, "has the build path). A fresh controller process per round; the rows follow each other in one round.")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "phase\twall\t[min … max]\treconciles\treconciles/s\tmean reconcile\terrors\tpeak RSS (VmHWM)\tGo heap in use\t")
	med := map[string]scaleSample{}
	for _, ph := range phases {
		ss := b.scale[ph]
		if len(ss) == 0 {
			continue
		}
		m := scaleSample{
			wall:            medianBy(ss, func(s scaleSample) time.Duration { return s.wall }),
			reconciles:      float64(medianBy(ss, func(s scaleSample) int64 { return int64(s.reconciles) })),
			reconcileErrors: float64(medianBy(ss, func(s scaleSample) int64 { return int64(s.reconcileErrors) })),
			rss:             medianBy(ss, func(s scaleSample) int64 { return s.rss }),
			heap:            medianBy(ss, func(s scaleSample) int64 { return s.heap }),
			creates:         medianBy(ss, func(s scaleSample) time.Duration { return s.creates }),
			latency:         medianBy(ss, func(s scaleSample) time.Duration { return s.latency }),
			slowest:         medianBy(ss, func(s scaleSample) time.Duration { return s.slowest }),
			readyz:          medianBy(ss, func(s scaleSample) time.Duration { return s.readyz }),
		}
		med[ph] = m
		lo, hi := ss[0].wall, ss[0].wall
		for _, s := range ss {
			lo, hi = min(lo, s.wall), max(hi, s.wall)
		}
		rate, mean := "-", "-"
		if ph != phaseIdle {
			rate = fmt.Sprintf("%.1f", medianBy(ss, func(s scaleSample) float64 { return perSecond(s.reconciles, s.wall) }))
			mean = fmt.Sprintf("%.2f ms", 1000*medianBy(ss, func(s scaleSample) float64 {
				if s.reconciles == 0 {
					return 0
				}
				return s.reconcileTime / s.reconciles
			}))
		}
		fmt.Fprintf(tw, "%s\t%s\t[%s … %s]\t%.0f\t%s\t%s\t%.0f\t%s\t%s\t\n", ph, sec(m.wall), sec(lo), sec(hi), m.reconciles, rate, mean, m.reconcileErrors, mib(m.rss), mib(m.heap))
	}
	tw.Flush()
	if idle, ok := med[phaseIdle]; ok {
		fmt.Fprintf(w, "idle: the build controller started %s worker(s) (\"Starting workers\" in its log: its watches had synced);\n", b.workers)
		fmt.Fprintf(w, "its /readyz first answered 200 %s after the process started.\n", sec(idle.readyz))
	}
	if c, ok := med[phaseCreate]; ok {
		fmt.Fprintf(w, "create: the benchmark's 200 creates (8 concurrent clients) took %s; created → seen Degraded per MachineOSConfig:\n", sec(c.creates))
		fmt.Fprintf(w, "median %s, slowest %s.", sec(c.latency), sec(c.slowest))
		if idle, ok := med[phaseIdle]; ok {
			fmt.Fprintf(w, " Go heap in use grew by %.1f KiB per MachineOSConfig (after the creates minus idle, / %d).",
				float64(c.heap-idle.heap)/1024/manyMachineOSConfigs, manyMachineOSConfigs)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "wall: create from the first create to the last MachineOSConfig a watch saw Degraded; fan-out from the Secret")
	fmt.Fprintln(w, "update, restart from the new process's start, until /metrics (polled every 50 ms) counts 200 more reconciles")
	fmt.Fprintln(w, "and an empty queue (restart includes process start and cache sync). reconciles, errors, mean reconcile:")
	fmt.Fprintln(w, "controller_runtime_reconcile_total, _errors_total and _time_seconds of controller=\"build\" over the phase;")
	fmt.Fprintln(w, "reconciles/s = reconciles / wall. peak RSS: the controller process's VmHWM since it started (after the restart,")
	fmt.Fprintln(w, "the new process's). Go heap: go_memstats_heap_inuse_bytes at the end of the phase.")
}

// medianBy is the median of one figure of the samples (the mean of the middle two for an even count).
func medianBy[S any, T ~int64 | ~float64](ss []S, f func(S) T) T {
	v := make([]T, len(ss))
	for i, s := range ss {
		v[i] = f(s)
	}
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

func perSecond(n float64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return n / d.Seconds()
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
