package bench

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sys/unix"

	"github.com/mosb-dev/mosb/test/harness"
)

// envVFSRuns is how many rounds measure vfs (default 1, 0: none): a cold vfs build of the
// realistic base takes five to ten minutes and ~45 GB of disk, per tool.
const envVFSRuns = "MOSB_BENCH_VFS_RUNS"

// envMosbEnv is extra environment for the mosb runs only ("GOGC=100 GODEBUG=..."): experiments
// that must not touch the buildah CLI, also a Go program.
const envMosbEnv = "MOSB_BENCH_MOSB_ENV"

// envSnippets limits the overlay rounds to the first n snippets (profiling one case).
const envSnippets = "MOSB_BENCH_SNIPPETS"

// envTrace, when 1, logs each mosb run's output with the time since it started on every line:
// where a build spends its time.
const envTrace = "MOSB_BENCH_TRACE"

// The realistic-base snippets: what users layer on an OS image. Each is preceded by a line naming
// the variant, so that a warm build (the other variant on the same storage) reuses the base and
// nothing else: no step comes from the layer cache.
var realSnippets = []struct{ name, content string }{
	{"config file + systemctl enable", "RUN printf '[Unit]\\nDescription=mosb bench\\n[Service]\\nType=oneshot\\nExecStart=/bin/true\\n[Install]\\nWantedBy=multi-user.target\\n' > /etc/systemd/system/mosb-bench.service && " +
		"mkdir -p /etc/mosb && echo 'interval = 30' > /etc/mosb/agent.conf && systemctl enable mosb-bench.service\n"},
	{"apt-get install (as dnf install)", "RUN apt-get update && apt-get install -y --no-install-recommends tcpdump && apt-get clean && rm -rf /var/lib/apt/lists/*\n"},
	{"a 50 MB file", "RUN mkdir -p /usr/share/mosb-bench && head -c 52428800 /dev/urandom > /usr/share/mosb-bench/blob\n"},
}

func realSnippet(i int, variant string) string {
	return "RUN echo " + variant + " > /etc/mosb-bench-variant\n" + realSnippets[i].content
}

// The scenarios of the realistic-base table, per snippet. Warm: the same storage root, which holds
// the base from the cold build, builds the other variant.
const (
	rbMosbCold       = "mosb build, overlay, cold"
	rbMosbWarm       = "mosb build, overlay, warm"
	rbBuildahCold    = "buildah, overlay, cold"
	rbBuildahWarm    = "buildah, overlay, warm"
	rbMosbVFSCold    = "mosb build, vfs, cold"
	rbMosbVFSWarm    = "mosb build, vfs, warm"
	rbBuildahVFSCold = "buildah, vfs, cold"
	rbBuildahVFSWarm = "buildah, vfs, warm"
	// The in-pod path: a build pod's init container puts the base into the node image store
	// (mosb worker --prepare-store), then the build container builds over it on an empty emptyDir.
	// Warm: the store holds the base already; the emptyDir is new, as every pod's is.
	rbWorkerCold = "mosb worker, node store, cold"
	rbWorkerWarm = "mosb worker, node store, warm"
)

var rbScenarios = []string{rbMosbCold, rbMosbWarm, rbWorkerCold, rbWorkerWarm, rbBuildahCold, rbBuildahWarm, rbMosbVFSCold, rbMosbVFSWarm, rbBuildahVFSCold, rbBuildahVFSWarm}

type rbKey struct {
	snippet  int
	scenario string
}

type realBench struct {
	bench
	shape   harness.RealisticBaseShape
	samples map[rbKey][]sample
	// newBytes is, per snippet and tool, what the pushed image has that the base has not: its
	// new layers, its config and its manifest.
	newBytes map[rbKey]int64
}

// TestRealBaseSpeed compares mosb with the buildah CLI on the realistic OS base (hack/realistic-base.sh:
// ~50 layers, ~1.3 GB), cold and warm, for three snippets, and prints a table of medians with
// the targets. `make bench` runs it.
func TestRealBaseSpeed(t *testing.T) {
	runs := benchRuns(t)
	vfsRuns := 1
	if v := os.Getenv(envVFSRuns); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			t.Fatalf("%s=%q: want a number of runs (0: none)", envVFSRuns, v)
		}
		vfsRuns = n
	}
	if runtime.GOOS != "linux" {
		t.Skip("buildah builds need Linux")
	}
	b := &realBench{bench: bench{arch: runtime.GOARCH}, samples: map[rbKey][]sample{}, newBytes: map[rbKey]int64{}}
	b.shape = harness.RealisticBaseInfo(t)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	b.nofile = fmt.Sprintf("nofile=%d:%d", lim.Cur, lim.Max)
	if b.buildah = os.Getenv(envBuildah); b.buildah == "" {
		var err error
		if b.buildah, err = exec.LookPath("buildah"); err != nil {
			t.Fatal("the buildah CLI is not installed: run `make deps`")
		}
	}
	b.mosb = mosbBinary(t)
	loadBefore := loadAverage()
	for i := 0; i < runs; i++ {
		if !t.Run(fmt.Sprintf("round-%d", i+1), func(t *testing.T) { b.round(t, i, false) }) {
			t.FailNow()
		}
	}
	for i := 0; i < vfsRuns; i++ {
		if !t.Run(fmt.Sprintf("vfs-round-%d", i+1), func(t *testing.T) { b.round(t, i, true) }) {
			t.FailNow()
		}
	}
	b.report(os.Stdout, runs, vfsRuns, loadBefore, loadAverage())
}

// rbFixture is one round's registry (behind a proxy that counts what is pushed), the base pushed
// there, and the tools' configuration for the proxy's address.
type rbFixture struct {
	reg        *harness.Registry
	host       string // the counting proxy, host:port: every pullspec names it
	pushed     func() int64
	base       string
	dir        string
	clusterDir string
	authFile   string
	certDir    string
	policy     string
}

func (b *realBench) newFixture(t *testing.T) *rbFixture {
	t.Helper()
	f := &rbFixture{reg: harness.StartRegistry(t), dir: t.TempDir()}
	f.host, f.pushed = startPushCounter(t, f.reg)
	base := harness.RealisticBase(t, f.reg, "os/base")
	f.base = f.host + strings.TrimPrefix(base, f.reg.Host)
	f.clusterDir = filepath.Join(f.dir, "cluster")
	f.authFile = filepath.Join(f.dir, "auth.json")
	harness.WriteClusterConfig(t, f.clusterDir, f.reg, f.host)
	harness.WriteAuthFile(t, f.authFile, f.reg, f.host)
	f.certDir = filepath.Join(f.reg.CertsDir, f.reg.Host) // the same CA signs for any port
	f.policy = filepath.Join(f.dir, "policy.json")
	writeFile(t, f.policy, `{"default":[{"type":"insecureAcceptAnything"}]}`)
	return f
}

// round builds every snippet cold then warm with each tool, each tool on storage of its own;
// odd rounds run buildah first. A vfs round builds the first snippet only (not the worker path:
// with a node store, a pod's build is overlay or the store goes unused).
func (b *realBench) round(t *testing.T, i int, vfs bool) {
	f := b.newFixture(t)
	driver, scen := "overlay", [4]string{rbMosbCold, rbMosbWarm, rbBuildahCold, rbBuildahWarm}
	snippets := len(realSnippets)
	if n, err := strconv.Atoi(os.Getenv(envSnippets)); err == nil && n > 0 && n < snippets {
		snippets = n
	}
	if vfs {
		driver, scen, snippets = "vfs", [4]string{rbMosbVFSCold, rbMosbVFSWarm, rbBuildahVFSCold, rbBuildahVFSWarm}, 1
	}
	for s := range snippets {
		mosb := func() {
			root := filepath.Join(f.dir, fmt.Sprintf("mosb-%d", s))
			b.add(t, rbKey{s, scen[0]}, b.mosbBuild(t, f, s, "variant-a", root, driver))
			b.add(t, rbKey{s, scen[1]}, b.mosbBuild(t, f, s, "variant-b", root, driver))
			removeAll(t, root)
		}
		worker := func() {
			if vfs {
				return
			}
			store := filepath.Join(f.dir, fmt.Sprintf("store-%d", s))
			b.add(t, rbKey{s, rbWorkerCold}, b.workerBuild(t, f, s, "variant-a", store))
			b.add(t, rbKey{s, rbWorkerWarm}, b.workerBuild(t, f, s, "variant-b", store))
			removeAll(t, store)
		}
		buildah := func() {
			dir := filepath.Join(f.dir, fmt.Sprintf("buildah-%d", s))
			b.add(t, rbKey{s, scen[2]}, b.buildahBuild(t, f, s, "variant-a", dir, driver))
			b.add(t, rbKey{s, scen[3]}, b.buildahBuild(t, f, s, "variant-b", dir, driver))
			removeAll(t, dir)
		}
		if i%2 == 0 {
			mosb()
			worker()
			buildah()
		} else {
			buildah()
			worker()
			mosb()
		}
	}
}

func (b *realBench) add(t *testing.T, k rbKey, s sample) {
	t.Helper()
	t.Logf("%-32s %-26s %8s  (build %s, push %s, peak RSS %s, storage %s, pushed %s)", realSnippets[k.snippet].name, k.scenario,
		sec(s.total), sec(s.build), sec(s.push), mib(s.maxRSS), mib(s.disk), size(s.pushedBytes))
	// A warm figure that took steps from the layer cache would not measure a build over a held base.
	if s.cached != 0 {
		t.Fatalf("%s: %d steps came from the layer cache, want none", k.scenario, s.cached)
	}
	b.samples[k] = append(b.samples[k], s)
}

func (b *realBench) mosbBuild(t *testing.T, f *rbFixture, snippet int, variant, root, driver string) sample {
	t.Helper()
	target := fmt.Sprintf("%s/os/mosb-%d:latest", f.host, snippet)
	mosc := filepath.Join(f.dir, fmt.Sprintf("mosb-%d-%s.yaml", snippet, variant))
	writeFile(t, mosc, string(harness.BuildMachineOSConfig("bench", f.base, target, releaseVersion, map[string]string{"": realSnippet(snippet, variant)})))
	before := f.pushed()
	p := runMeasured(t, append(scratchEnv(t, f.dir), strings.Fields(os.Getenv(envMosbEnv))...), b.mosb, "build", "-f", mosc, "--cluster-config", f.clusterDir,
		"--authfile", f.authFile, "--root", root, "--storage-driver", driver)
	if os.Getenv(envTrace) == "1" {
		t.Logf("mosb build, %s, %s: wall %s, CPU %s:\n%s", realSnippets[snippet].name, variant, sec(p.wall), sec(p.cpu), p.stamped)
	}
	s := sample{total: p.wall, maxRSS: p.maxRSS, build: reported(t, p.stderr, builtIn), push: reported(t, p.stderr, pushedIn),
		cached: cachedSteps(p.stderr), pushedBytes: f.pushed() - before, disk: diskUsage(t, root)}
	if !strings.Contains(p.stderr, "mosb: storage: "+driver+"\n") {
		t.Fatalf("mosb build did not build with plain %s storage:\n%s", driver, tail(p.stderr, 30))
	}
	pullspec := lastLine(p.stdout)
	if !strings.HasPrefix(pullspec, f.host+"/") || !strings.Contains(pullspec, "@sha256:") {
		t.Fatalf("mosb build printed %q as its last line, not the digested pullspec:\n%s", pullspec, tail(p.stderr, 30))
	}
	b.noteNewBytes(t, f, rbKey{snippet, "mosb"}, pullspec)
	return s
}

var workerBuilt = regexp.MustCompile(`(?m)^mosb worker: \S+ built in (\S+), pushed in (\S+): `)

// workerBuild runs a build as a build pod does, from the request the controller would hand it
// (mosb render --request-dir): `mosb worker --prepare-store` (the init container) fills the node
// image store, then `mosb worker` builds over it on a new, empty root (the pod's emptyDir).
func (b *realBench) workerBuild(t *testing.T, f *rbFixture, snippet int, variant, store string) sample {
	t.Helper()
	target := fmt.Sprintf("%s/os/worker-%d:latest", f.host, snippet)
	name := fmt.Sprintf("worker-%d-%s", snippet, variant)
	mosc := filepath.Join(f.dir, name+".yaml")
	writeFile(t, mosc, string(harness.BuildMachineOSConfig("bench", f.base, target, releaseVersion, map[string]string{"": realSnippet(snippet, variant)})))
	request := filepath.Join(f.dir, name+"-request")
	runMeasured(t, scratchEnv(t, f.dir), b.mosb, "render", "-f", mosc, "--cluster-config", f.clusterDir, "--authfile", f.authFile, "--request-dir", request)
	secret := filepath.Join(f.dir, name+"-secret")
	auth, err := os.ReadFile(f.authFile)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(secret, ".dockerconfigjson"), string(auth)) // an auth file is a .dockerconfigjson
	pod := filepath.Join(f.dir, name+"-emptydir")
	env := append(scratchEnv(t, f.dir), "HOME="+filepath.Join(pod, "home"), "TMPDIR="+filepath.Join(pod, "tmp"))
	env = append(env, strings.Fields(os.Getenv(envMosbEnv))...)
	common := []string{"worker", "--request", request, "--pull-secret", secret, "--root", filepath.Join(pod, "build"),
		"--store", store, "--store-report", filepath.Join(pod, "node-store.json")}
	before := f.pushed()
	prep := runMeasured(t, env, b.mosb, append(common, "--prepare-store")...)
	build := runMeasured(t, env, b.mosb, append(common, "--push-secret", secret, "--termination-log", filepath.Join(pod, "termination-log"))...)
	if os.Getenv(envTrace) == "1" {
		t.Logf("mosb worker, %s, %s: wall %s + %s, CPU %s + %s:\n%s\n%s", realSnippets[snippet].name, variant,
			sec(prep.wall), sec(build.wall), sec(prep.cpu), sec(build.cpu), prep.stamped, build.stamped)
	}
	if !strings.Contains(build.stderr, "mosb worker: storage: overlay, node image store") || strings.Contains(build.stderr, "node image store not used") {
		t.Fatalf("mosb worker did not build on overlay over the node image store:\n%s\n%s", tail(prep.stderr, 10), tail(build.stderr, 30))
	}
	m := workerBuilt.FindStringSubmatch(build.stderr)
	if m == nil {
		t.Fatalf("mosb worker did not say how long it built and pushed:\n%s", tail(build.stderr, 30))
	}
	builtIn, err1 := time.ParseDuration(m[1])
	pushedIn, err2 := time.ParseDuration(m[2])
	if err1 != nil || err2 != nil {
		t.Fatalf("mosb worker said %q", m[0])
	}
	s := sample{total: prep.wall + build.wall, maxRSS: max(prep.maxRSS, build.maxRSS), build: builtIn, push: pushedIn,
		cached: cachedSteps(build.stderr), pushedBytes: f.pushed() - before,
		// What the node holds during the build: the store and the pod's emptyDir.
		disk: diskUsage(t, store) + diskUsage(t, pod)}
	var res struct{ Pullspec string }
	if err := json.Unmarshal([]byte(lastLine(build.stdout)), &res); err != nil || !strings.HasPrefix(res.Pullspec, f.host+"/") {
		t.Fatalf("mosb worker's result %q: %v", lastLine(build.stdout), err)
	}
	b.noteNewBytes(t, f, rbKey{snippet, "worker"}, res.Pullspec)
	// The pod's emptyDir goes with the pod.
	removeAll(t, pod)
	return s
}

func (b *realBench) buildahBuild(t *testing.T, f *rbFixture, snippet int, variant, dir, driver string) sample {
	t.Helper()
	mosc := filepath.Join(f.dir, fmt.Sprintf("buildah-%d-%s.yaml", snippet, variant))
	// The target only names where mosb would push; buildah pushes where it is told below.
	writeFile(t, mosc, string(harness.BuildMachineOSConfig("bench", f.base, f.host+"/os/unused:latest", releaseVersion, map[string]string{"": realSnippet(snippet, variant)})))
	render := runMeasured(t, scratchEnv(t, f.dir), b.mosb, "render", "-f", mosc, "--cluster-config", f.clusterDir, "--authfile", f.authFile)
	s, pullspec := buildahCLI{bin: b.buildah, arch: b.arch, nofile: b.nofile, driver: driver}.run(t, buildahRun{
		dir: dir, scratch: f.dir, containerfile: render.stdout, authFile: f.authFile, certDir: f.certDir, policy: f.policy,
		target: fmt.Sprintf("%s/os/buildah-%d:latest", f.host, snippet), pushedBytes: f.pushed,
	})
	s.disk = diskUsage(t, filepath.Join(dir, "root"))
	b.noteNewBytes(t, f, rbKey{snippet, "buildah"}, pullspec)
	return s
}

// noteNewBytes records what the pushed image holds beyond the base: the bytes a push has to send.
func (b *realBench) noteNewBytes(t *testing.T, f *rbFixture, k rbKey, pullspec string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	opts := []remote.Option{remote.WithAuth(f.reg.Auth()), remote.WithTransport(f.reg.Transport()), remote.WithContext(ctx)}
	direct := f.reg.Host + strings.TrimPrefix(pullspec, f.host)
	read := func(spec string) (map[string]bool, int64) {
		ref, err := name.ParseReference(spec)
		if err != nil {
			t.Fatal(err)
		}
		img, err := remote.Image(ref, opts...)
		if err != nil {
			t.Fatalf("reading %s: %v", spec, err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := img.RawManifest()
		if err != nil {
			t.Fatal(err)
		}
		layers := map[string]bool{}
		for _, l := range m.Layers {
			layers[l.Digest.String()] = true
		}
		return layers, m.Config.Size + int64(len(raw))
	}
	baseLayers, _ := read(f.reg.Host + strings.TrimPrefix(f.base, f.host))
	ref, err := name.ParseReference(direct)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref, opts...)
	if err != nil {
		t.Fatalf("reading %s: %v", direct, err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	_, n := read(direct)
	for _, l := range m.Layers {
		if !baseLayers[l.Digest.String()] {
			n += l.Size
		}
	}
	b.newBytes[k] = n
}

// startPushCounter serves a TLS reverse proxy in front of the registry (its certificate from the
// registry's CA) and counts the request bodies that go through it: the bytes pushed. Pulls go
// through it too, so that a blob pulled from the base's repository can be mounted, not uploaded,
// into the target's.
func startPushCounter(t *testing.T, reg *harness.Registry) (string, func() int64) {
	t.Helper()
	upstream, err := url.Parse("https://" + reg.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	proxy.Transport = reg.Transport()
	var pushed atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = &countingBody{ReadCloser: r.Body, n: &pushed}
		}
		proxy.ServeHTTP(w, r)
	}))
	certPEM, keyPEM, err := reg.CA.ServingPair()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), pushed.Load
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// diskUsage is what du says dir takes on disk (hard links counted once), in bytes.
func diskUsage(t *testing.T, dir string) int64 {
	t.Helper()
	out, err := exec.Command("du", "-s", "-x", "-B1", dir).Output()
	if err != nil {
		t.Fatalf("du %s: %v", dir, err)
	}
	n, err := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
	if err != nil {
		t.Fatalf("du %s: %q", dir, out)
	}
	return n
}

// size is a byte count readable at any scale: a config snippet pushes kilobytes.
func size(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return mib(n)
}

// removeAll frees a storage root between scenarios; overlay and vfs roots of this base are GBs.
func removeAll(t *testing.T, dir string) {
	t.Helper()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatalf("removing %s: %v", dir, err)
	}
}

func (b *realBench) report(w io.Writer, runs, vfsRuns int, loadBefore, loadAfter string) {
	fmt.Fprintf(w, "\nrealistic OS base benchmark: %s, chroot isolation, docker-registry with htpasswd + TLS on 127.0.0.1 behind a\n", b.arch)
	fmt.Fprintf(w, "proxy counting the bytes pushed, one fresh registry per round, the base pushed there first. Base: %s.\n", b.shape)
	fmt.Fprintf(w, "Overlay rows: the median of %d runs [min … max], tools alternated; vfs rows: %d run(s) of the first snippet.\n", runs, vfsRuns)
	fmt.Fprintf(w, "mosb %s; %s. Load average before / after: %s / %s.\n\n", firstLine(b.mosb, "version"), firstLine(b.buildah, "--version"), loadBefore, loadAfter)

	med := map[rbKey]sample{}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "snippet\tscenario\twall\t[min … max]\tbuild\tpush\tpeak RSS\tstorage\tpushed\tnew bytes\t")
	for s := range realSnippets {
		for _, sc := range rbScenarios {
			k := rbKey{s, sc}
			ss := b.samples[k]
			if len(ss) == 0 {
				continue
			}
			m := sample{
				total:       medianBy(ss, func(s sample) time.Duration { return s.total }),
				build:       medianBy(ss, func(s sample) time.Duration { return s.build }),
				push:        medianBy(ss, func(s sample) time.Duration { return s.push }),
				maxRSS:      medianBy(ss, func(s sample) int64 { return s.maxRSS }),
				disk:        medianBy(ss, func(s sample) int64 { return s.disk }),
				pushedBytes: medianBy(ss, func(s sample) int64 { return s.pushedBytes }),
			}
			med[k] = m
			lo, hi := ss[0].total, ss[0].total
			for _, s := range ss {
				lo, hi = min(lo, s.total), max(hi, s.total)
			}
			tool := "buildah"
			switch {
			case strings.HasPrefix(sc, "mosb worker"):
				tool = "worker"
			case strings.HasPrefix(sc, "mosb"):
				tool = "mosb"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t[%s … %s]\t%s\t%s\t%s\t%s\t%s\t%s\t\n", realSnippets[s].name, sc, sec(m.total), sec(lo), sec(hi),
				sec(m.build), sec(m.push), mib(m.maxRSS), mib(m.disk), size(m.pushedBytes), size(b.newBytes[rbKey{s, tool}]))
		}
	}
	tw.Flush()

	fmt.Fprintln(w, "\nratios of the medians, against the issue's targets")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "snippet\tratio\tvalue\ttarget\t\t")
	check := func(s int, label string, x, y float64, target float64) {
		if x == 0 || y == 0 {
			return // a scenario that did not run
		}
		r := x / y
		verdict := "met"
		if r > target {
			verdict = "MISSED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t≤ %.2f\t%s\t\n", realSnippets[s].name, label, r, target, verdict)
	}
	wall := func(s int, sc string) float64 { return float64(med[rbKey{s, sc}].total) }
	for s := range realSnippets {
		check(s, "mosb / buildah, overlay, cold, wall", wall(s, rbMosbCold), wall(s, rbBuildahCold), 1.0)
		check(s, "mosb / buildah, overlay, warm, wall", wall(s, rbMosbWarm), wall(s, rbBuildahWarm), 0.8)
		check(s, "mosb warm / mosb cold, wall", wall(s, rbMosbWarm), wall(s, rbMosbCold), 0.15)
		check(s, "mosb storage after warm / base uncompressed", float64(med[rbKey{s, rbMosbWarm}].disk), float64(b.shape.Uncompressed), 1.3)
		check(s, "mosb / buildah, peak RSS, cold", float64(med[rbKey{s, rbMosbCold}].maxRSS), float64(med[rbKey{s, rbBuildahCold}].maxRSS), 1.2)
		check(s, "mosb pushed / new bytes, cold", float64(med[rbKey{s, rbMosbCold}].pushedBytes), float64(b.newBytes[rbKey{s, "mosb"}]), 1.05)
		check(s, "mosb worker / buildah, overlay, cold, wall", wall(s, rbWorkerCold), wall(s, rbBuildahCold), 1.0)
		check(s, "mosb worker / buildah, overlay, warm, wall", wall(s, rbWorkerWarm), wall(s, rbBuildahWarm), 0.8)
		check(s, "mosb worker warm / cold, wall", wall(s, rbWorkerWarm), wall(s, rbWorkerCold), 0.15)
		check(s, "mosb worker store + emptyDir, warm / base uncompressed", float64(med[rbKey{s, rbWorkerWarm}].disk), float64(b.shape.Uncompressed), 1.3)
		check(s, "mosb worker pushed / new bytes, cold", float64(med[rbKey{s, rbWorkerCold}].pushedBytes), float64(b.newBytes[rbKey{s, "worker"}]), 1.05)
		check(s, "mosb vfs / buildah vfs, cold, wall", wall(s, rbMosbVFSCold), wall(s, rbBuildahVFSCold), 1.0)
		check(s, "mosb overlay cold / mosb vfs cold, wall", wall(s, rbMosbCold), wall(s, rbMosbVFSCold), 1.0)
		check(s, "buildah pushed / new bytes, cold", float64(med[rbKey{s, rbBuildahCold}].pushedBytes), float64(b.newBytes[rbKey{s, "buildah"}]), 1.05)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nwall: start to exit of the process(es); for buildah `buildah bud` + `buildah push`. build / push: mosb's own")
	fmt.Fprintln(w, "\"built in\" / \"pushed in\", buildah's two wall times. peak RSS: GNU time's %M of the process and its children.")
	fmt.Fprintln(w, "storage: du of the storage root after the run (cold: base + build; warm: the same root after a second build).")
	fmt.Fprintln(w, "mosb worker: a build pod's two steps as processes, from `mosb render --request-dir`: --prepare-store (the init")
	fmt.Fprintln(w, "container) then the build on a new, empty root (the pod's emptyDir); wall and storage count both (store + emptyDir).")
	fmt.Fprintln(w, "pushed: request bodies that reached the registry during the run; new bytes: the pushed image's layers that the")
	fmt.Fprintln(w, "base has not, plus its config and manifest. Warm: the other variant (its first line differs) on the same root,")
	fmt.Fprintln(w, "so no step comes from the layer cache: what is reused is the base alone.")
}
