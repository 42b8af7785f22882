package e2e

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/test/harness"
	"github.com/mosb-dev/mosb/test/kubeletstandin"
)

const (
	buildNamespace = "openshift-machine-config-operator"
	poolName       = "worker"
	renderedName   = "rendered-worker-1"
)

// mosbBinary is the mosb the controller and the build pods run.
func mosbBinary(t *testing.T) string { return harness.MosbBinary(t) }

// env is one cluster: control plane, registry, a node run by the kubelet stand-in, the cluster
// objects a MachineOSConfig needs, and the mosb controller as a process.
type env struct {
	t       *testing.T
	cp      *harness.ControlPlane
	c       client.Client
	reg     *harness.Registry
	base    string
	kubelet *kubeletstandin.StandIn
	ctrl    *controllerProcess
}

// newEnv starts a cluster whose worker pool has one node per architecture (default amd64); with
// several, the base image is a multi-arch index.
func newEnv(t *testing.T, arches ...string) *env {
	t.Helper()
	return newEnvWith(t, envOptions{}, arches...)
}

// envOptions change what newEnvWith starts.
type envOptions struct {
	// nodes replace the default nodes (one worker-pool node per architecture).
	nodes []kubeletstandin.Node
	// controllerArgs are added to the controller's flags.
	controllerArgs []string
	// namespace is the build namespace [openshift-machine-config-operator].
	namespace string
	// controlPlane adjusts the control plane before it starts.
	controlPlane []harness.ControlPlaneOption
	// controllerKubeconfig runs once the cluster objects exist and returns the kubeconfig the
	// controller runs with [the admin's].
	controllerKubeconfig func(e *env) string
	// noController: the test runs the controller itself (in this process, with its own options).
	noController bool
	// registry changes how the cluster's registry is served.
	registry []harness.RegistryOption
	// standinNamespaces limit the namespaces whose pods the kubelet stand-in schedules and runs
	// [all]: a test naming another one sees build pods that nothing but the controller touches.
	standinNamespaces []string
}

// newEnvWith is newEnv with options.
func newEnvWith(t *testing.T, o envOptions, arches ...string) *env {
	t.Helper()
	if len(arches) == 0 {
		arches = []string{"amd64"}
	}
	if testing.Short() {
		t.Skip("e2e: needs kube-apiserver, docker-registry and buildah")
	}
	bin := mosbBinary(t)
	e := &env{t: t, cp: harness.StartControlPlane(t, o.controlPlane...), reg: harness.StartRegistry(t, o.registry...)}
	// Builds run as Jobs: the Job controller makes their pods, which the stand-in runs.
	e.cp.StartJobController(t)
	e.c = e.cp.Client
	if len(arches) == 1 {
		e.base = harness.PushBaseImage(t, e.reg, "os/base", arches[0])
	} else {
		e.base = harness.PushBaseIndex(t, e.reg, "os/base", arches...)
	}
	ctx := t.Context()

	objs := harness.Cluster{Namespace: cmp.Or(o.namespace, buildNamespace), Registry: e.reg, BaseImage: e.base, ReleaseVersion: "4.16.0-e2e",
		Pool: poolName, RenderedConfig: renderedName}.Objects()
	for _, o := range objs {
		if err := e.c.Create(ctx, o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
	var nodes []kubeletstandin.Node
	for _, a := range arches {
		nodes = append(nodes, kubeletstandin.Node{Name: "node-" + a, Labels: map[string]string{"kubernetes.io/arch": a, harness.WorkerRoleLabel: ""}})
	}
	if o.nodes != nil {
		nodes = o.nodes
	}
	standinLog := &lockedBuffer{}
	ki, err := kubeletstandin.Start(ctx, e.cp.Config, kubeletstandin.Options{
		Nodes:      nodes,
		Commands:   map[string]string{"mosb": bin},
		WorkDir:    t.TempDir(),
		Log:        standinLog,
		Namespaces: o.standinNamespaces,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ki.Stop)
	t.Cleanup(func() {
		if t.Failed() {
			e.reportFailure(standinLog.String())
		}
	})
	e.kubelet = ki
	kubeconfig, args := e.cp.Kubeconfig, o.controllerArgs
	if o.controllerKubeconfig != nil {
		kubeconfig = o.controllerKubeconfig(e)
	}
	if o.namespace != "" {
		args = append([]string{"--namespace", o.namespace}, args...)
	}
	if !o.noController {
		e.ctrl = startController(t, bin, kubeconfig, args...)
	}
	return e
}

func dockerSecret(name string, cfg []byte) *corev1.Secret {
	return harness.DockerSecret(buildNamespace, name, cfg)
}

// controllerProcess is `mosb controller` running against the test cluster.
type controllerProcess struct {
	t    *testing.T
	args []string
	bin  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *bytes.Buffer
}

// startController starts `mosb controller` with the e2e flags and extra ones.
func startController(t *testing.T, bin, kubeconfig string, extra ...string) *controllerProcess {
	p := &controllerProcess{t: t, bin: bin, log: &bytes.Buffer{}, args: append([]string{
		"controller", "--kubeconfig", kubeconfig, "--namespace", buildNamespace, "--builder-image", "mosb:e2e",
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--build-timeout", "10m",
		// The node's image store: the test's own, not the host's /var/lib/mosb/store.
		"--node-store", t.TempDir(),
		// No conversion webhook unless a test asks for one (harness.ConversionWebhookArgs): the
		// tests of v1alpha1 need none, and two controllers of one cluster would point the CRDs
		// at two ports.
		"--webhook-port", "0",
	}, extra...)}
	p.start()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("controller log:\n%s", p.logs())
		}
	})
	return p
}

func (p *controllerProcess) start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = syncWriter{p}, syncWriter{p}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("starting mosb controller: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
}

// kill ends the controller as a crash would (SIGKILL): nothing is cleaned up.
func (p *controllerProcess) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

func (p *controllerProcess) restart() { p.kill(); p.start() }

// restartWith restarts the controller with extra flags (later flags win).
func (p *controllerProcess) restartWith(args ...string) {
	p.kill()
	p.mu.Lock()
	p.args = append(p.args, args...)
	p.mu.Unlock()
	p.start()
}

func (p *controllerProcess) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

type syncWriter struct{ p *controllerProcess }

func (w syncWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.log.Write(b)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	harness.Eventually(t.Context(), t, 200*time.Millisecond, timeout, what, cond)
}

// reportFailure prints what a failed test needs to be understood without a rerun: every
// MachineOSBuild with its conditions, every pod with its state, the output of every pod
// the stand-in ran, and the stand-in's own log. It runs before the control plane stops.
func (e *env) reportFailure(standinLog string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(e.t.Context()), 30*time.Second)
	defer cancel()
	var sb strings.Builder
	builds := &mosbv1.MachineOSBuildList{}
	if err := e.c.List(ctx, builds); err != nil {
		fmt.Fprintf(&sb, "listing MachineOSBuilds: %v\n", err)
	}
	for _, b := range builds.Items {
		fmt.Fprintf(&sb, "MachineOSBuild %s (attempt %d, created %s):\n", b.Name, b.Status.Attempt, b.CreationTimestamp.Format(time.RFC3339))
		for _, c := range b.Status.Conditions {
			fmt.Fprintf(&sb, "  %s=%s %s: %s (%s)\n", c.Type, c.Status, c.Reason, c.Message, c.LastTransitionTime.Format(time.RFC3339))
		}
		for _, a := range b.Status.Architectures {
			fmt.Fprintf(&sb, "  %s: pod %s %s %s\n", a.Architecture, a.PodName, a.DigestedImagePushspec, a.Message)
		}
	}
	pods := &corev1.PodList{}
	if err := e.c.List(ctx, pods); err != nil {
		fmt.Fprintf(&sb, "listing pods: %v\n", err)
	}
	for _, p := range pods.Items {
		fmt.Fprintf(&sb, "pod %s/%s on %q: %s\n", p.Namespace, p.Name, p.Spec.NodeName, p.Status.Phase)
		for _, c := range p.Status.Conditions {
			fmt.Fprintf(&sb, "  %s=%s %s %s\n", c.Type, c.Status, c.Reason, c.Message)
		}
		for _, c := range p.Status.ContainerStatuses {
			fmt.Fprintf(&sb, "  container %s: %+v\n", c.Name, c.State)
		}
	}
	for _, key := range e.kubelet.RanPods() {
		ns, name, _ := strings.Cut(key, "/")
		out, err := e.kubelet.Logs(ns, name)
		if err != nil {
			out += fmt.Sprintf("(reading the log: %v)", err)
		}
		fmt.Fprintf(&sb, "--- output of pod %s ---\n%s\n", key, out)
	}
	e.t.Logf("cluster state at the failure:\n%s--- kubelet stand-in log ---\n%s", sb.String(), standinLog)
}

// lockedBuffer is a bytes.Buffer written from many goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
