// Command demo runs mosb's main job on an embedded local default: a real kube-apiserver + etcd, a
// docker-registry with authentication and TLS, the tiny base OS image, the kubelet stand-in running
// build pods as real processes, and `mosb controller`. It applies examples/demo, waits for the
// digest in status, prints `kubectl get machineosconfigs -o wide`, and tears everything down.
//
//	go run ./test/demo -mosb bin/mosb    (make demo)
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
	flag.Parse()
	d := &demo{}
	code := 0
	if err := d.run(*mosbBin, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		code = 1
	}
	d.teardown()
	os.Exit(code)
}

// demo implements harness.T for a program: failures end the demo, cleanups run at the end.
type demo struct {
	cleanups []func()
	failed   error
}

type failure struct{ err error }

func (d *demo) Helper()                      {}
func (d *demo) Logf(f string, args ...any)   { fmt.Printf("  "+f+"\n", args...) }
func (d *demo) Cleanup(f func())             { d.cleanups = append(d.cleanups, f) }
func (d *demo) Fatal(args ...any)            { panic(failure{fmt.Errorf("%s", fmt.Sprint(args...))}) }
func (d *demo) Fatalf(f string, args ...any) { panic(failure{fmt.Errorf(f, args...)}) }
func (d *demo) Errorf(f string, args ...any) { fmt.Fprintf(os.Stderr, "  ERROR: "+f+"\n", args...) }
func (d *demo) TempDir() string {
	dir, err := os.MkdirTemp("", "mosb-demo-")
	if err != nil {
		d.Fatal(err)
	}
	d.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func (d *demo) teardown() {
	fmt.Println("==> tearing down (processes, mounts and ports go with it)")
	for i := len(d.cleanups) - 1; i >= 0; i-- {
		d.cleanups[i]()
	}
}

func step(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func (d *demo) run(mosbBin string, timeout time.Duration) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(failure)
			if !ok {
				panic(r)
			}
			err = f.err
		}
	}()
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

	step("starting kube-apiserver + etcd (with mosb's and the OpenShift CRDs)")
	cp := harness.StartControlPlane(d)
	c := cp.Client
	step("starting a docker-registry with htpasswd authentication and TLS")
	reg := harness.StartRegistry(d)
	step("pushing the tiny base OS image")
	base := harness.PushBaseImage(d, reg, "os/base", "amd64")
	d.Logf("base image: %s", base)

	step("creating the cluster objects a MachineOSConfig needs: secrets, CA, pool, rendered MachineConfig, machine-config-osimageurl")
	for _, o := range (harness.Cluster{Namespace: namespace, Registry: reg, BaseImage: base, ReleaseVersion: "4.16.0-demo",
		PullSecret: "base-pull", PushSecret: "build-push", RenderedConfig: "rendered-worker-demo"}).Objects() {
		if err := c.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}

	step("starting the kubelet stand-in (one amd64 worker node; build pods run as real processes)")
	ki, err := kubeletstandin.Start(ctx, cp.Config, kubeletstandin.Options{
		Nodes:    []kubeletstandin.Node{{Name: "demo-node", Labels: map[string]string{"kubernetes.io/arch": "amd64", harness.WorkerRoleLabel: ""}}},
		Commands: map[string]string{"mosb": bin},
		WorkDir:  d.TempDir(),
	})
	if err != nil {
		return err
	}
	d.Cleanup(ki.Stop)

	step("starting mosb controller")
	ctrlLog, err := os.Create(filepath.Join(d.TempDir(), "controller.log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "controller", "--kubeconfig", cp.Kubeconfig, "--namespace", namespace, "--builder-image", "mosb:demo",
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0")
	cmd.Stdout, cmd.Stderr = ctrlLog, ctrlLog
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	d.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM); _ = cmd.Wait() })

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
			log, _ := os.ReadFile(ctrlLog.Name())
			return fmt.Errorf("no image after %s; controller log:\n%s", timeout, log)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	step("kubectl get machineosbuilds")
	_ = kubectl("get", "machineosbuilds").Run()
	step("kubectl get machineosconfigs -o wide")
	return kubectl("get", "machineosconfigs", "-o", "wide").Run()
}
