// Command demo runs mosb's main job on an embedded local default: a single-node cluster (kube-apiserver
// + etcd, kube-scheduler, kube-controller-manager, a kubelet with containerd + runc), a
// docker-registry with authentication and TLS, the tiny base OS image, and mosb deployed from
// deploy/local: its controller a Deployment running the mosb image, its builds real pods. It applies
// examples/demo, waits for the digest in status, prints `kubectl get machineosconfigs -o wide`, and
// tears everything down. Where this machine cannot run a kubelet it says so and runs the controller
// as a process, with build pods run by the kubelet stand-in.
//
// With -keep the demo runs detached (its own session) and stays up after the build, so one can
// explore the cluster with kubectl: the command returns once it is ready, after printing how to
// use it (also in /var/tmp/mosb-demo/README). -down ends it (SIGTERM: it tears itself down), then
// removes whatever an interrupted demo or test left.
//
//	go run ./test/demo -mosb bin/mosb          (make demo)
//	go run ./test/demo -mosb bin/mosb -keep    (make demo KEEP=1)
//	go run ./test/demo -down                   (make demo-down)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/test/harness"
	"github.com/mosb-dev/mosb/test/kubeletstandin"
)

const namespace = "openshift-machine-config-operator"

func main() {
	mosbBin := flag.String("mosb", "bin/mosb", "the mosb binary (make build)")
	timeout := flag.Duration("timeout", 10*time.Minute, "how long to wait for the image")
	standIn := flag.Bool("standin", false, "run build pods with the kubelet stand-in even where a real kubelet can run")
	down := flag.Bool("down", false, "end a demo left running by -keep, remove what an interrupted demo or test left (kubelet cluster processes, mounts, cgroups, directories) and exit")
	keep := flag.Bool("keep", false, "leave the cluster running after the build (detached); -down ends it")
	flag.Parse()
	if *down {
		if err := stopKept(2 * time.Minute); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		dirs, err := harness.CleanKubeletClusters()
		for _, d := range dirs {
			fmt.Println("removed", d)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if *keep && os.Getenv(keptEnv) == "" {
		os.Exit(startKept(*timeout))
	}
	d := &demo{Program: harness.Program{TempPrefix: "mosb-demo-"}, keep: *keep}
	code := 0
	if err := d.run(*mosbBin, *timeout, *standIn); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		code = 1
	}
	d.teardown()
	os.Exit(code)
}

// demo runs as a harness.Program: failures end the demo, cleanups run at the end.
type demo struct {
	harness.Program
	keep bool
}

func (d *demo) teardown() {
	fmt.Println("==> tearing down (processes, mounts and ports go with it)")
	d.Teardown()
}

func step(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func (d *demo) run(mosbBin string, timeout time.Duration, standIn bool) error {
	return d.Run(func() error { return d.runDemo(mosbBin, timeout, standIn) })
}

func (d *demo) runDemo(mosbBin string, timeout time.Duration, standIn bool) error {
	ctrllog.SetLogger(klog.NewKlogr().V(4))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bin, err := filepath.Abs(mosbBin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: run `make build` first", bin)
	}

	why := harness.KubeletUnsupported()
	if standIn {
		why = "-standin was given"
	}
	var cp *harness.ControlPlane
	var kc *harness.KubeletCluster
	ns := namespace
	if why == "" {
		step("starting a single-node cluster: kube-apiserver + etcd, kube-scheduler, kube-controller-manager, kubelet, containerd + runc")
		kc = harness.StartKubeletCluster(d)
		cp = kc.ControlPlane
		ns = "mosb-system" // deploy/'s
	} else {
		fmt.Printf("==> NOTE: no real kubelet here (%s): build pods run on the kubelet stand-in\n", why)
		step("starting kube-apiserver + etcd (with mosb's and the OpenShift CRDs)")
		cp = harness.StartControlPlane(d)
		cp.StartJobController(d)
	}
	c := cp.Client
	step("starting a docker-registry with htpasswd authentication and TLS")
	reg := harness.StartRegistry(d)
	step("pushing the tiny base OS image")
	base := harness.PushBaseImage(d, reg, "os/base", "amd64")
	d.Logf("base image: %s", base)

	step("creating the cluster objects a MachineOSConfig needs: secrets, CA, pool, rendered MachineConfig, machine-config-osimageurl")
	for _, o := range (harness.Cluster{Namespace: ns, Registry: reg, BaseImage: base, ReleaseVersion: "4.16.0-demo",
		PullSecret: "base-pull", PushSecret: "build-push", RenderedConfig: "rendered-worker-demo"}).Objects() {
		if err := c.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}

	var ctrlLog func() string
	var ctrlLogPath string
	if kc != nil {
		step("making the node a worker: the pool's node selector picks it")
		if _, err := kc.Kubectl("label", "node", kc.NodeName, harness.WorkerRoleLabel+"="); err != nil {
			return err
		}
		step("building the mosb image with `mosb build`, importing it into containerd, kubectl apply -k deploy/local")
		dep := kc.DeployMosb(d, reg, bin)
		ctrlLog = func() string {
			out, _ := kc.Kubectl("-n", dep.Namespace, "logs", "deployment/"+dep.Name, "--tail=40")
			return out
		}
	} else {
		ctrlLog, ctrlLogPath = d.startStandIn(ctx, cp, bin)
	}

	step("kubectl apply -f examples/demo/machineosconfig.yaml")
	raw, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "examples", "demo", "machineosconfig.yaml"))
	if err != nil {
		return err
	}
	kubectl := func(args ...string) *exec.Cmd {
		k := exec.CommandContext(ctx, filepath.Join(cp.Assets, "kubectl"), append([]string{"--kubeconfig", cp.Kubeconfig}, args...)...)
		k.Stdout, k.Stderr = os.Stdout, os.Stderr
		return k
	}
	apply := kubectl("apply", "-f", "-")
	apply.Stdin = strings.NewReader(strings.ReplaceAll(string(raw), "${REGISTRY}", reg.Host))
	if err := apply.Run(); err != nil {
		return err
	}

	step("waiting for the image digest in status (a real buildah build and push)")
	deadline := time.Now().Add(timeout)
	for {
		m := &mosbv1.MachineOSConfig{}
		if err := c.Get(ctx, client.ObjectKey{Name: "worker"}, m); err != nil {
			return err
		}
		if meta.IsStatusConditionTrue(m.Status.Conditions, mosbv1.MachineOSConfigReady) && m.Status.CurrentImagePullspec != "" {
			break
		}
		if c := meta.FindStatusCondition(m.Status.Conditions, mosbv1.MachineOSConfigDegraded); c != nil && c.Status == metav1.ConditionTrue {
			return fmt.Errorf("MachineOSConfig worker is Degraded: %s: %s", c.Reason, c.Message)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no image after %s; controller log:\n%s", timeout, ctrlLog())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	step("kubectl get machineosbuilds")
	_ = kubectl("get", "machineosbuilds").Run()
	if kc != nil {
		step("kubectl get pods -n mosb-system -o wide (the controller; finished build pods are cleaned up)")
		_ = kubectl("get", "pods", "-n", ns, "-o", "wide").Run()
	}
	step("kubectl get machineosconfigs -o wide")
	if err := kubectl("get", "machineosconfigs", "-o", "wide").Run(); err != nil || !d.keep {
		return err
	}
	logHint := "kubectl -n " + ns + " logs deploy/mosb-controller"
	if kc == nil {
		logHint = "(a process here) " + ctrlLogPath
	}
	return d.stayUp(ctx, cp, reg, ns, logHint)
}

// startStandIn runs build pods with the kubelet stand-in and `mosb controller` as a process; it
// returns a way to read the controller's log, and its file.
func (d *demo) startStandIn(ctx context.Context, cp *harness.ControlPlane, bin string) (func() string, string) {
	step("starting the kubelet stand-in (one amd64 worker node; build pods run as real processes)")
	ki, err := kubeletstandin.Start(ctx, cp.Config, kubeletstandin.Options{
		Nodes:    []kubeletstandin.Node{{Name: "demo-node", Labels: map[string]string{"kubernetes.io/arch": "amd64", harness.WorkerRoleLabel: ""}}},
		Commands: map[string]string{"mosb": bin},
		WorkDir:  d.TempDir(),
	})
	if err != nil {
		d.Fatal(err)
	}
	d.Cleanup(ki.Stop)

	step("starting mosb controller")
	logf, err := os.Create(filepath.Join(d.TempDir(), "controller.log"))
	if err != nil {
		d.Fatal(err)
	}
	args := []string{"controller", "--kubeconfig", cp.Kubeconfig, "--namespace", namespace, "--builder-image", "mosb:demo",
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--node-store", filepath.Join(d.TempDir(), "node-store")}
	// v1 reads (kubectl get machineosconfigs.v1.machineconfiguration.openshift.io) work too.
	cmd := exec.Command(bin, append(args, harness.ConversionWebhookArgs(d)...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		d.Fatal(err)
	}
	d.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM); _ = cmd.Wait() })
	return func() string {
		raw, _ := os.ReadFile(logf.Name())
		return string(raw)
	}, logf.Name()
}
