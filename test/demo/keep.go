package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mosb-dev/mosb/test/harness"
)

// A kept demo lives in keptDir: its pid, its log, and README (how to use it, with the
// kubeconfig and the registry's credentials next to it).
const (
	keptDir   = "/var/tmp/mosb-demo"
	keptEnv   = "MOSB_DEMO_KEPT"
	readyLine = "==> the demo cluster is up"
)

// startKept runs this demo again in a session of its own, so that it outlives the command, and
// follows its log until it is ready (exit 0, after printing how to use it) or has failed.
func startKept(timeout time.Duration) int {
	if pid, ok := keptPID(); ok {
		fmt.Fprintf(os.Stderr, "a kept demo already runs (pid %d): `make demo-down` ends it\n", pid)
		return 1
	}
	if err := os.MkdirAll(keptDir, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	logPath := filepath.Join(keptDir, "demo.log")
	logf, err := os.Create(logPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer logf.Close()
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), keptEnv+"=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.WriteFile(filepath.Join(keptDir, "pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// Follow the log as it grows, until the ready line, the child's end, or the deadline (the
	// build's timeout plus the cluster's start).
	in, err := os.Open(logPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer in.Close()
	r := bufio.NewReader(in)
	deadline := time.After(timeout + 10*time.Minute)
	for {
		line, err := r.ReadString('\n')
		if line != "" {
			fmt.Print(line)
			if strings.HasPrefix(line, readyLine) {
				rest, _ := io.ReadAll(r)
				fmt.Print(string(rest))
				return 0
			}
		}
		if err == nil {
			continue
		}
		select {
		case err := <-exited:
			rest, _ := io.ReadAll(r)
			fmt.Print(string(rest))
			fmt.Fprintf(os.Stderr, "the demo ended before it was ready: %v (log: %s)\n", err, logPath)
			_ = os.Remove(filepath.Join(keptDir, "pid"))
			return 1
		case <-deadline:
			fmt.Fprintf(os.Stderr, "the demo is not ready after %s; `make demo-down` ends it (log: %s)\n", timeout+10*time.Minute, logPath)
			return 1
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stayUp writes how to use the running demo, says it is ready, and waits for SIGTERM or SIGINT
// (`make demo-down`); the caller then tears it down.
func (d *demo) stayUp(ctx context.Context, cp *harness.ControlPlane, reg *harness.Registry, ns, controllerLog string) error {
	kubeconfig := filepath.Join(keptDir, "kubeconfig")
	raw, err := os.ReadFile(cp.Kubeconfig)
	if err != nil {
		return err
	}
	auth := filepath.Join(keptDir, "auth.json")
	for path, data := range map[string][]byte{kubeconfig: raw, auth: reg.DockerConfigJSON()} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return err
		}
	}
	kubectl := filepath.Join(cp.Assets, "kubectl")
	usage := fmt.Sprintf(`The demo cluster stays up until `+"`make demo-down`"+`.

  export KUBECONFIG=%[1]s
  alias kubectl=%[2]s
  kubectl get machineosconfigs,machineosbuilds -o wide
  kubectl -n %[3]s get pods                        # the controller; build pods while a build runs

Registry: %[4]s (TLS, CA %[5]s/%[4]s/ca.crt), credentials in %[6]s:
  skopeo inspect --authfile %[6]s --cert-dir %[5]s/%[4]s docker://%[4]s/os/worker:latest

A change of the MachineOSConfig builds a new image (a second MachineOSBuild, then the new digest in status).
kubectl reads v1, OpenShift's form, unless told v1alpha1, the form examples/demo is written in:
  kubectl patch machineosconfigs.v1alpha1.machineconfiguration.openshift.io worker --type merge -p '{"spec":{"buildInputs":{"containerFile":[{"content":"RUN echo changed > /etc/motd"}]}}}'
  kubectl get machineosbuilds -w
(or `+"`kubectl edit machineosconfig worker`"+`, in v1). The controller's log: %[7]s
`, kubeconfig, kubectl, ns, reg.Host, reg.CertsDir, auth, controllerLog)
	if err := os.WriteFile(filepath.Join(keptDir, "README"), []byte(usage), 0o600); err != nil {
		return err
	}
	d.Cleanup(func() {
		for _, f := range []string{"kubeconfig", "auth.json", "README", "pid"} {
			_ = os.Remove(filepath.Join(keptDir, f))
		}
	})
	fmt.Printf("%s (pid %d)\n\n%s", readyLine, os.Getpid(), usage)
	<-ctx.Done()
	return nil
}

// keptPID is the pid of a kept demo that still runs.
func keptPID() (int, bool) {
	raw, err := os.ReadFile(filepath.Join(keptDir, "pid"))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return 0, false
	}
	return pid, true
}

// stopKept ends a kept demo (it tears itself down on SIGTERM) and waits for it to be gone.
func stopKept(wait time.Duration) error {
	pid, ok := keptPID()
	if !ok {
		_ = os.RemoveAll(keptDir)
		return nil
	}
	fmt.Printf("ending the kept demo (pid %d)\n", pid)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			return os.RemoveAll(keptDir)
		}
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	return fmt.Errorf("the kept demo (pid %d) did not end within %s: killed; leftovers are removed next", pid, wait)
}
