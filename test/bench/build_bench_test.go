package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sys/unix"

	"github.com/mosb-dev/mosb/test/harness"
)

// Environment of the benchmark.
const (
	// envBench must be 1 for the benchmark to run at all: it takes minutes.
	envBench = "MOSB_BENCH"
	// envRuns is how many times each scenario runs (default 3); the table shows the median.
	envRuns = "MOSB_BENCH_RUNS"
	// envBin is the mosb binary to measure (`make bench` passes bin/mosb); without it the
	// benchmark builds one.
	envBin = "MOSB_BIN"
	// envBuildah is the buildah CLI to compare with (default: buildah on PATH).
	envBuildah = "MOSB_BENCH_BUILDAH"
)

// goTags are the Makefile's GOTAGS, for building mosb when MOSB_BIN is not given.
const goTags = "containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper"

// The scenarios, in the order the table lists them.
const (
	mosbCold      = "mosb build, cold (fresh root)"
	buildahCold   = "buildah bud + buildah push, cold (fresh root)"
	mosbWarm      = "mosb build, warm (same root, last line changed)"
	mosbCacheFill = "mosb build --cache-repo, cold (fresh root, fills the cache)"
	mosbCacheWarm = "mosb build --cache-repo, fresh root, last line changed"
)

var scenarios = []string{mosbCold, buildahCold, mosbWarm, mosbCacheFill, mosbCacheWarm}

// snippet is the user's containerFile content: a couple of RUN steps, the second making a layer of
// about 2 MB (a copy of busybox), and a last line that differs between variants, so that a rebuild
// of the other variant can reuse every earlier layer.
func snippet(variant string) string {
	return "RUN mkdir -p /usr/share/mosb-bench && echo one > /usr/share/mosb-bench/one\n" +
		"RUN cp /bin/busybox /usr/share/mosb-bench/payload && sha256sum /usr/share/mosb-bench/payload > /usr/share/mosb-bench/payload.sha256\n" +
		"RUN echo " + variant + " > /usr/share/mosb-bench/variant\n"
}

// sample is one measured run of a scenario.
type sample struct {
	// total is the wall time from starting the first process to the exit of the last one.
	total time.Duration
	// build and push split total: for mosb what it reports itself ("built in", "pushed in"), for
	// buildah the wall times of `buildah bud` and `buildah push`.
	build, push time.Duration
	// maxRSS is the largest resident set of any process of the run (bytes), children included.
	maxRSS int64
	// cached is how many build steps were taken from the layer cache ("--> Using cache").
	cached int
	// pushedBytes went from the tool to the registry (measured where a counting proxy sits
	// between them); disk is what its storage root holds after the run.
	pushedBytes, disk int64
}

type bench struct {
	mosb, buildah string
	arch          string
	nofile        string // buildah's --ulimit for open files: the limit mosb's engine asks for
	samples       map[string][]sample
	images        []imageInfo
}

// benchRuns skips unless the benchmarks were asked for, and says how many runs each figure is
// the median of (MOSB_BENCH_RUNS, default 3).
func benchRuns(t *testing.T) int {
	t.Helper()
	if os.Getenv(envBench) != "1" {
		t.Skipf("a benchmark of several minutes: run it with `make bench` (or %s=1)", envBench)
	}
	runs := 3
	if v := os.Getenv(envRuns); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number of runs", envRuns, v)
		}
		runs = n
	}
	return runs
}

// TestBuildSpeed compares `mosb build` with the buildah CLI on the same Containerfile, and a cold
// mosb build with cache-warm rebuilds, and prints a table of medians. `make bench` runs it.
func TestBuildSpeed(t *testing.T) {
	runs := benchRuns(t)
	if runtime.GOOS != "linux" {
		t.Skip("buildah builds need Linux")
	}
	b := &bench{arch: runtime.GOARCH, samples: map[string][]sample{}}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	// As root, buildah raises RLIMIT_NOFILE to 1048576, which fails without CAP_SYS_RESOURCE; mosb's
	// engine asks for what it has, and so does the CLI here.
	b.nofile = fmt.Sprintf("nofile=%d:%d", lim.Cur, lim.Max)
	b.buildah = os.Getenv(envBuildah)
	if b.buildah == "" {
		var err error
		if b.buildah, err = exec.LookPath("buildah"); err != nil {
			t.Fatal("the buildah CLI is not installed: run `make deps`")
		}
	}
	for _, tool := range []string{"unshare", "mount", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (util-linux / a shell): it keeps the buildah CLI off /var/lib/containers", tool)
		}
	}
	b.mosb = mosbBinary(t)
	hostBefore := snapshotTree(hostContainersDir)
	loadBefore := loadAverage()

	for i := 0; i < runs; i++ {
		if !t.Run(fmt.Sprintf("round-%d", i+1), func(t *testing.T) { b.round(t, i) }) {
			t.FailNow()
		}
	}

	b.report(os.Stdout, runs, loadBefore, loadAverage(), snapshotTree(hostContainersDir) == hostBefore)
}

// round runs every scenario once, against a registry of its own, so that no run finds layers a
// previous one pushed. Odd rounds run buildah before mosb so neither always goes first.
func (b *bench) round(t *testing.T, i int) {
	f := newFixture(t, b.arch)
	cold := func() {
		s, pullspec := b.mosbBuild(t, f, f.mosc["mosb-a"], filepath.Join(f.dir, "mosb-root"), "")
		b.add(t, mosbCold, s)
		if i == 0 {
			b.images = append(b.images, inspect(t, f, "mosb", pullspec))
		}
		s, _ = b.mosbBuild(t, f, f.mosc["mosb-b"], filepath.Join(f.dir, "mosb-root"), "")
		b.add(t, mosbWarm, s)
	}
	baseline := func() {
		s, pullspec := b.buildahBuild(t, f)
		b.add(t, buildahCold, s)
		if i == 0 {
			b.images = append(b.images, inspect(t, f, "buildah", pullspec))
		}
	}
	if i%2 == 0 {
		cold()
		baseline()
	} else {
		baseline()
		cold()
	}
	cacheRepo := f.reg.Host + "/os/cache"
	s, _ := b.mosbBuild(t, f, f.mosc["cache-a"], filepath.Join(f.dir, "cache-root-1"), cacheRepo)
	b.add(t, mosbCacheFill, s)
	s, _ = b.mosbBuild(t, f, f.mosc["cache-b"], filepath.Join(f.dir, "cache-root-2"), cacheRepo)
	b.add(t, mosbCacheWarm, s)
}

// add records a sample, after checking that the run reused as many steps as the scenario says:
// a "warm" figure without cache hits would measure a cold build.
func (b *bench) add(t *testing.T, scenario string, s sample) {
	t.Helper()
	t.Logf("%-62s %8s  (build %s, push %s, peak RSS %s, %d steps from cache)", scenario, sec(s.total), sec(s.build), sec(s.push), mib(s.maxRSS), s.cached)
	want := 0
	if scenario == mosbWarm || scenario == mosbCacheWarm {
		want = reusableSteps
	}
	if s.cached != want {
		t.Fatalf("%s: %d steps came from the cache, want %d", scenario, s.cached, want)
	}
	b.samples[scenario] = append(b.samples[scenario], s)
}

// reusableSteps are the snippet's steps before its last line: a rebuild of the other variant
// takes them from the cache.
const reusableSteps = 2

var usingCache = regexp.MustCompile(`(?m)^--> Using cache `)

func cachedSteps(progress string) int { return len(usingCache.FindAllString(progress, -1)) }

// fixture is one round's registry, base image and input files.
type fixture struct {
	reg        *harness.Registry
	base       string
	dir        string
	clusterDir string
	authFile   string
	// mosc are MachineOSConfig files: mosb-a/-b push to os/mosb, cache-a/-b to os/mosb-cache;
	// -a and -b differ in the last line of the snippet only.
	mosc map[string]string
	// containerfile is what `mosb render` assembles for mosb-a: the buildah CLI builds it.
	containerfile string
	// policy is the signature policy for the buildah CLI (mosb writes the same one for itself).
	policy string
}

func newFixture(t *testing.T, arch string) *fixture {
	t.Helper()
	f := &fixture{reg: harness.StartRegistry(t), dir: t.TempDir(), mosc: map[string]string{}}
	f.base = harness.PushBaseImage(t, f.reg, "os/base", arch)
	f.clusterDir = filepath.Join(f.dir, "cluster")
	f.authFile = filepath.Join(f.dir, "auth.json")
	harness.WriteClusterConfig(t, f.clusterDir, f.reg)
	harness.WriteAuthFile(t, f.authFile, f.reg)
	f.policy = filepath.Join(f.dir, "policy.json")
	writeFile(t, f.policy, `{"default":[{"type":"insecureAcceptAnything"}]}`)
	for key, spec := range map[string]struct{ repo, variant string }{
		"mosb-a": {"os/mosb", "variant-a"}, "mosb-b": {"os/mosb", "variant-b"},
		"cache-a": {"os/mosb-cache", "variant-a"}, "cache-b": {"os/mosb-cache", "variant-b"},
	} {
		f.mosc[key] = f.writeMachineOSConfig(t, key, f.reg.Host+"/"+spec.repo+":latest", snippet(spec.variant))
	}
	return f
}

func (f *fixture) writeMachineOSConfig(t *testing.T, name, target, content string) string {
	t.Helper()
	p := filepath.Join(f.dir, name+".yaml")
	writeFile(t, p, string(harness.BuildMachineOSConfig("bench", f.base, target, "4.16.0-bench", map[string]string{"": content})))
	return p
}

// mosbBuild runs `mosb build` and returns its figures and the digested pullspec it printed.
func (b *bench) mosbBuild(t *testing.T, f *fixture, mosc, root, cacheRepo string) (sample, string) {
	t.Helper()
	args := []string{"build", "-f", mosc, "--cluster-config", f.clusterDir, "--authfile", f.authFile, "--root", root}
	if cacheRepo != "" {
		args = append(args, "--cache-repo", cacheRepo)
	}
	p := runMeasured(t, scratchEnv(t, f.dir), b.mosb, args...)
	s := sample{total: p.wall, maxRSS: p.maxRSS, build: reported(t, p.stderr, builtIn), push: reported(t, p.stderr, pushedIn),
		cached: cachedSteps(p.stderr)}
	pullspec := lastLine(p.stdout)
	if !strings.HasPrefix(pullspec, f.reg.Host+"/") || !strings.Contains(pullspec, "@sha256:") {
		t.Fatalf("mosb build printed %q as its last line, not the digested pullspec:\n%s", pullspec, tail(p.stderr, 30))
	}
	return s, pullspec
}

var (
	builtIn  = regexp.MustCompile(`(?m)^mosb: \S+ built in (\S+): `)
	pushedIn = regexp.MustCompile(`(?m)^mosb: pushed in (\S+)$`)
)

func reported(t *testing.T, stderr string, re *regexp.Regexp) time.Duration {
	t.Helper()
	m := re.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("mosb build did not report %q:\n%s", re.String(), tail(stderr, 30))
	}
	d, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatalf("mosb build reported %q: %v", m[0], err)
	}
	return d
}

// hostContainersDir is buildah's default home as root. The CLI has no flag for its blob-info cache
// (/var/lib/containers/cache), so it runs in a private mount namespace with a scratch directory
// mounted there; the benchmark never writes to the host's.
const hostContainersDir = "/var/lib/containers"

// buildahBuild builds mosb's assembled Containerfile with the buildah CLI configured as mosb
// configures buildah and pushes it with `buildah push`.
func (b *bench) buildahBuild(t *testing.T, f *fixture) (sample, string) {
	t.Helper()
	dir := filepath.Join(f.dir, "buildah")
	render := runMeasured(t, scratchEnv(t, f.dir), b.mosb, "render", "-f", f.mosc["mosb-a"], "--cluster-config", f.clusterDir, "--authfile", f.authFile)
	return buildahCLI{bin: b.buildah, arch: b.arch, nofile: b.nofile, driver: "overlay"}.run(t, buildahRun{
		dir: dir, scratch: f.dir, containerfile: render.stdout, authFile: f.authFile,
		certDir: filepath.Join(f.reg.CertsDir, f.reg.Host), policy: f.policy,
		target: f.reg.Host + "/os/buildah:latest",
	})
}

// buildahCLI is the buildah CLI configured as mosb configures buildah: chroot isolation,
// intermediate layers kept, epoch timestamps, OCI format, no identity label, no /etc/hosts, the
// same open-files limit, and the given storage driver.
type buildahCLI struct {
	bin, arch, nofile string
	driver            string
}

// buildahRun is one `buildah bud && buildah push`. dir holds its storage root: a second run with
// the same dir is warm.
type buildahRun struct {
	dir, scratch      string
	containerfile     string
	authFile, certDir string
	policy            string
	target            string // where it pushes, a tag
	pushedBytes       func() int64
}

func (c buildahCLI) run(t *testing.T, r buildahRun) (sample, string) {
	t.Helper()
	dir := r.dir
	contextDir := filepath.Join(dir, "context")
	home := filepath.Join(dir, "var-lib-containers")
	for _, d := range []string{contextDir, home} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	containerfile := filepath.Join(dir, "Containerfile")
	writeFile(t, containerfile, r.containerfile)
	writeFile(t, filepath.Join(dir, "registries.conf"), "")
	writeFile(t, filepath.Join(dir, "containers.conf"), "")
	writeFile(t, filepath.Join(dir, "storage.conf"), "[storage]\ndriver = \""+c.driver+"\"\n")
	env := append(scratchEnv(t, r.scratch),
		"CONTAINERS_REGISTRIES_CONF="+filepath.Join(dir, "registries.conf"),
		"CONTAINERS_CONF="+filepath.Join(dir, "containers.conf"),
		"CONTAINERS_STORAGE_CONF="+filepath.Join(dir, "storage.conf"),
	)
	mountTarget := hostContainersDir
	if _, err := os.Stat(hostContainersDir); err != nil {
		// Mounting needs an existing directory; creating /var/lib/containers would be touching it.
		mountTarget = filepath.Dir(hostContainersDir)
		home = filepath.Dir(home)
	}
	global := []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"), "--storage-driver", c.driver}
	// --cert-dir is one registry's directory of *.crt, not a certs.d tree.
	reg := []string{"--authfile", r.authFile, "--cert-dir", r.certDir, "--signature-policy", r.policy}
	tag := "localhost/mosb-bench:latest"
	bud := append(append(append([]string{}, global...), "bud"), reg...)
	bud = append(bud, "--isolation", "chroot", "--layers", "--format", "oci", "--timestamp", "0",
		"--identity-label=false", "--no-hosts", "--arch", c.arch, "--os", "linux")
	// buildah 1.28 lowers its own RLIMIT_NPROC to its default (32768) before RUN steps and cannot
	// raise it again without CAP_SYS_RESOURCE: its default stays.
	bud = append(bud, "--ulimit", c.nofile)
	bud = append(bud, "-f", containerfile, "-t", tag, contextDir)
	digestFile := filepath.Join(dir, "digest")
	push := append(append(append([]string{}, global...), "push"), reg...)
	push = append(push, "--format", "oci", "--digestfile", digestFile, tag, "docker://"+r.target)

	// unshare execs sh, which execs buildah: the wall time and rusage are buildah's (plus a mount).
	wrap := func(args []string) []string {
		return append([]string{"--mount", "--propagation", "private", "--", "sh", "-c",
			`mount --bind "$1" "$2" && shift 2 && exec "$@"`, "sh", home, mountTarget, c.bin}, args...)
	}
	var before int64
	if r.pushedBytes != nil {
		before = r.pushedBytes()
	}
	built := runMeasured(t, env, "unshare", wrap(bud)...)
	if os.Getenv(envTrace) == "1" {
		t.Logf("buildah bud: wall %s, CPU %s:\n%s", sec(built.wall), sec(built.cpu), built.stamped)
	}
	pushed := runMeasured(t, env, "unshare", wrap(push)...)
	digest, err := os.ReadFile(digestFile)
	if err != nil {
		t.Fatalf("buildah push wrote no digest: %v\n%s", err, tail(pushed.stderr, 20))
	}
	s := sample{
		total:  built.wall + pushed.wall,
		build:  built.wall,
		push:   pushed.wall,
		maxRSS: max(built.maxRSS, pushed.maxRSS),
		cached: cachedSteps(built.stdout + built.stderr),
	}
	if r.pushedBytes != nil {
		s.pushedBytes = r.pushedBytes() - before
	}
	repo, _, _ := strings.Cut(r.target, ":latest")
	return s, repo + "@" + strings.TrimSpace(string(digest))
}

// measured is one finished process.
type measured struct {
	wall           time.Duration
	maxRSS         int64
	stdout, stderr string
	stamped        string        // stderr with times (MOSB_BENCH_TRACE)
	cpu            time.Duration // user + system, the process and the children it waited for
}

// runMeasured runs a process to its end and fails the test if it fails. maxRSS is GNU time's %M:
// wait4's rusage of the process, which covers every descendant it waited for. Not this process's
// own wait4: Go starts children with vfork semantics, so a child's ru_maxrss starts at the peak
// RSS of the test process itself (Linux carries the parent's high-water mark across the exec),
// which would put a floor of ~90 MiB under every figure.
func runMeasured(t *testing.T, env []string, prog string, args ...string) measured {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	gnuTime, err := exec.LookPath("time")
	if err != nil {
		t.Fatal("GNU time is not installed (Debian package time): run `make deps`")
	}
	rssFile := filepath.Join(t.TempDir(), "maxrss")
	cmd := exec.CommandContext(ctx, gnuTime, append([]string{"-f", "%M", "-o", rssFile, "--", prog}, args...)...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	var stamped bytes.Buffer
	if os.Getenv(envTrace) == "1" {
		now := time.Now()
		cmd.Stdout = io.MultiWriter(&stdout, &stampedWriter{w: &stamped, start: now})
		cmd.Stderr = io.MultiWriter(&stderr, &stampedWriter{w: &stamped, start: now})
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	err = cmd.Run()
	wall := time.Since(start)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", prog, strings.Join(args, " "), err, tail(stderr.String(), 40))
	}
	m := measured{wall: wall, stdout: stdout.String(), stderr: stderr.String(), stamped: stamped.String()}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	raw, err := os.ReadFile(rssFile)
	if err != nil {
		t.Fatalf("GNU time wrote no peak RSS: %v", err)
	}
	kib, err := strconv.ParseInt(strings.TrimSpace(lastLine(string(raw))), 10, 64)
	if err != nil {
		t.Fatalf("GNU time's peak RSS %q: %v", raw, err)
	}
	m.maxRSS = kib * 1024
	return m
}

// stampedWriter prefixes every line with the time since start (MOSB_BENCH_TRACE).
type stampedWriter struct {
	w       io.Writer
	start   time.Time
	midLine bool
}

func (s *stampedWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.SplitAfter(p, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if !s.midLine {
			fmt.Fprintf(s.w, "[%6.2fs] ", time.Since(s.start).Seconds())
		}
		s.w.Write(line)
		s.midLine = line[len(line)-1] != '\n'
	}
	return len(p), nil
}

// scratchEnv is the benchmark's environment minus whatever would point containers tools at other
// configuration, with a fresh TMPDIR (both tools keep big temporary files there).
func scratchEnv(t *testing.T, dir string) []string {
	t.Helper()
	tmp, err := os.MkdirTemp(dir, "tmp-")
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "CONTAINERS_") || strings.HasPrefix(k, "BUILDAH_") || k == "REGISTRY_AUTH_FILE" || k == "TMPDIR" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "TMPDIR="+tmp)
}

// mosbBinary is a private copy of $MOSB_BIN (a parallel `make build` may replace bin/mosb while the
// benchmark runs), or a fresh build of ./cmd/mosb.
func mosbBinary(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "mosb")
	if src := os.Getenv(envBin); src != "" {
		in, err := os.Open(src)
		if err != nil {
			t.Fatalf("%s: %v (run `make build`)", envBin, err)
		}
		defer in.Close()
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			t.Fatal(err)
		}
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
		return dst
	}
	cmd := exec.Command("go", "build", "-tags", goTags, "-o", dst, "./cmd/mosb")
	cmd.Dir = harness.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building mosb: %v\n%s", err, out)
	}
	return dst
}

// imageInfo describes a pushed image, to show that both tools did comparable work.
type imageInfo struct {
	tool, pullspec string
	layers         int
	size           int64    // compressed layers
	baseReused     bool     // the first layer is the base image's own blob, not a recompression
	diffIDs        []string // uncompressed layer digests: what each layer holds
}

func inspect(t *testing.T, f *fixture, tool, pullspec string) imageInfo {
	t.Helper()
	opts := []remote.Option{remote.WithAuth(f.reg.Auth()), remote.WithTransport(f.reg.Transport()), remote.WithContext(t.Context())}
	image := func(spec string) (layers []string, size int64, diffIDs []string) {
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
		for _, l := range m.Layers {
			layers = append(layers, l.Digest.String())
			size += l.Size
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range cfg.RootFS.DiffIDs {
			diffIDs = append(diffIDs, d.String())
		}
		return layers, size, diffIDs
	}
	layers, size, diffIDs := image(pullspec)
	base, _, _ := image(f.base)
	return imageInfo{tool: tool, pullspec: pullspec, layers: len(layers), size: size, diffIDs: diffIDs,
		baseReused: len(layers) > 0 && len(base) > 0 && layers[0] == base[0]}
}

func (b *bench) report(w io.Writer, runs int, loadBefore, loadAfter string, hostUntouched bool) {
	fmt.Fprintf(w, "\nmosb build benchmark: %s, overlay storage for both tools, chroot isolation, docker-registry with htpasswd + TLS on 127.0.0.1,\n", b.arch)
	fmt.Fprintf(w, "tiny busybox base image, a 3-RUN user snippet, one fresh registry per round. Each row: the median of %d runs [min … max].\n", runs)
	if runs < 3 {
		fmt.Fprintf(w, "(fewer than 3 runs: %s=%d; the figures are not medians of 3)\n", envRuns, runs)
	}
	fmt.Fprintf(w, "mosb %s; %s. Load average before / after: %s / %s.\n\n", firstLine(b.mosb, "version"), firstLine(b.buildah, "--version"), loadBefore, loadAfter)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\ttotal\t[min … max]\tbuild\tpush\tpeak RSS\tsteps from cache\t")
	med := map[string]sample{}
	for _, sc := range scenarios {
		ss := b.samples[sc]
		if len(ss) == 0 {
			continue
		}
		m := sample{
			total:  medianBy(ss, func(s sample) time.Duration { return s.total }),
			build:  medianBy(ss, func(s sample) time.Duration { return s.build }),
			push:   medianBy(ss, func(s sample) time.Duration { return s.push }),
			maxRSS: medianBy(ss, func(s sample) int64 { return s.maxRSS }),
		}
		med[sc] = m
		lo, hi := ss[0].total, ss[0].total
		for _, s := range ss {
			lo, hi = min(lo, s.total), max(hi, s.total)
		}
		fmt.Fprintf(tw, "%s\t%s\t[%s … %s]\t%s\t%s\t%s\t%d\t\n", sc, sec(m.total), sec(lo), sec(hi), sec(m.build), sec(m.push), mib(m.maxRSS), ss[0].cached)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nratios of the medians (below 1: the first is faster)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	ratio := func(label, a, b string, f func(sample) float64) {
		x, okA := med[a]
		y, okB := med[b]
		if !okA || !okB || f(y) == 0 {
			return
		}
		fmt.Fprintf(tw, "%s\t%.2f\t\n", label, f(x)/f(y))
	}
	total := func(s sample) float64 { return float64(s.total) }
	ratio("mosb / buildah, cold, total", mosbCold, buildahCold, total)
	ratio("mosb / buildah, cold, build", mosbCold, buildahCold, func(s sample) float64 { return float64(s.build) })
	ratio("mosb / buildah, cold, push", mosbCold, buildahCold, func(s sample) float64 { return float64(s.push) })
	ratio("mosb / buildah, peak RSS", mosbCold, buildahCold, func(s sample) float64 { return float64(s.maxRSS) })
	ratio("mosb warm (same root) / mosb cold", mosbWarm, mosbCold, total)
	ratio("mosb --cache-repo cold (fills it) / mosb cold", mosbCacheFill, mosbCold, total)
	ratio("mosb --cache-repo rebuild on a fresh root / mosb cold", mosbCacheWarm, mosbCold, total)
	tw.Flush()

	fmt.Fprintln(w, "\nwhat was pushed (round 1)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "tool\tlayers\tcompressed\tfirst layer is the base image's blob\t")
	for _, im := range b.images {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%v\t\n", im.tool, im.layers, mib(im.size), im.baseReused)
	}
	tw.Flush()
	if len(b.images) == 2 {
		x, y := b.images[0].diffIDs, b.images[1].diffIDs
		same := 0
		for i := range min(len(x), len(y)) {
			if x[i] == y[i] {
				same++
			}
		}
		fmt.Fprintf(w, "layers with identical content (diff ID), %s vs %s: %d of %d\n", b.images[0].tool, b.images[1].tool, same, max(len(x), len(y)))
	}
	fmt.Fprintln(w, "\ntotal: wall time of the process(es), start to exit (the ratios that matter). build / push: mosb's own")
	fmt.Fprintln(w, "\"built in\" (pull, RUN steps, commits, and the export to a gzip OCI layout, so layer compression counts")
	fmt.Fprintln(w, "as build) and \"pushed in\"; for buildah the wall times of `buildah bud` and `buildah push` (which compresses).")
	fmt.Fprintln(w, "peak RSS: the largest max RSS among the run's processes and their children (wait4 rusage).")
	fmt.Fprintln(w, "steps from cache: \"--> Using cache\" steps; warm rows must reuse the snippet's first two steps.")
	if hostUntouched {
		fmt.Fprintf(w, "%s was left untouched.\n", hostContainersDir)
	} else {
		fmt.Fprintf(w, "WARNING: %s changed while the benchmark ran (the benchmark itself never writes there: another process, or a regression in mosb).\n", hostContainersDir)
	}
}

// snapshotTree is every path under dir with its size and modification time ("" when dir is absent).
func snapshotTree(dir string) string {
	var b strings.Builder
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if info, err := d.Info(); err == nil {
			fmt.Fprintf(&b, "%s %d %d\n", p, info.Size(), info.ModTime().UnixNano())
		}
		return nil
	})
	return b.String()
}

func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	fields := strings.Fields(string(raw))
	if len(fields) < 3 {
		return "?"
	}
	return strings.Join(fields[:3], " ")
}

func firstLine(prog string, args ...string) string {
	out, err := exec.Command(prog, args...).Output()
	if err != nil {
		return filepath.Base(prog) + " (version unknown)"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

func sec(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
