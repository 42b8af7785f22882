package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mosb-dev/mosb/test/harness"
)

// v1alpha1MOSC is the MachineOSConfig resource in mosb's own version, for kubectl.
const v1alpha1MOSC = "machineosconfigs.v1alpha1.machineconfiguration.openshift.io"

// TestKeptDemo is `make demo KEEP=1` as a newcomer uses it: the command returns with the cluster up
// and says how to use it; the kubectl commands it prints work, and the change it suggests builds a
// second image; `make demo-down` then leaves no process, mount, cgroup or directory behind.
func TestKeptDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster (run without -short)")
	}
	if pid, ok := keptPID(); ok {
		t.Skipf("SKIPPED: a kept demo already runs here (pid %d); `make demo-down` first", pid)
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run with `make test`")
	}
	mosb := harness.MosbBinary(t)
	demoBin := filepath.Join(t.TempDir(), "demo")
	build := exec.Command("go", "build", "-tags", harness.GoTags, "-o", demoBin, "./test/demo")
	build.Dir = harness.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./test/demo: %v\n%s", err, out)
	}
	down := func() (string, error) {
		out, err := exec.Command(demoBin, "-down").CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		if _, ok := keptPID(); ok {
			if out, err := down(); err != nil {
				t.Errorf("demo -down: %v\n%s", err, out)
			}
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var out bytes.Buffer
	start := exec.CommandContext(ctx, demoBin, "-mosb", mosb, "-keep")
	start.Dir = harness.RepoRoot()
	start.Stdout, start.Stderr = &out, &out
	if err := start.Run(); err != nil {
		t.Fatalf("demo -keep: %v\n%s", err, out.String())
	}
	for _, want := range []string{readyLine, "export KUBECONFIG=" + filepath.Join(keptDir, "kubeconfig"), "kubectl patch " + v1alpha1MOSC + " worker", "make demo-down"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the demo's output does not say %q:\n%s", want, out.String())
		}
	}
	if _, ok := keptPID(); !ok {
		t.Fatalf("the demo did not stay up:\n%s", out.String())
	}

	kubectl := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, filepath.Join(assets, "kubectl"), args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(keptDir, "kubeconfig"))
		b, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(b)), err
	}
	// kubectl reads v1, the group's preferred version, unless the resource names v1alpha1, the
	// form the demo's MachineOSConfig and these field names are in.
	const image = "{.status.currentImagePullspec}"
	first, err := kubectl("get", v1alpha1MOSC, "worker", "-o", "jsonpath="+image)
	if err != nil || !strings.Contains(first, "@sha256:") {
		t.Fatalf("no image in status after the demo: %q %v", first, err)
	}
	// The change the demo suggests, as it prints it.
	if out, err := kubectl("patch", v1alpha1MOSC, "worker", "--type", "merge", "-p", `{"spec":{"buildInputs":{"containerFile":[{"content":"RUN echo changed > /etc/motd"}]}}}`); err != nil {
		t.Fatalf("kubectl patch: %v\n%s", err, out)
	}
	harness.Eventually(ctx, t, time.Second, 5*time.Minute, "a second image in status", func(ctx context.Context) (bool, error) {
		got, err := kubectl("get", v1alpha1MOSC, "worker", "-o", `jsonpath=`+image+` {.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil {
			return false, err
		}
		return strings.HasSuffix(got, " True") && !strings.HasPrefix(got, first+" "), fmt.Errorf("status: %s", got)
	})
	builds, err := kubectl("get", "machineosbuilds", "-o", "name")
	if err != nil || len(strings.Fields(builds)) != 2 {
		t.Errorf("want two MachineOSBuilds, got %q (%v)", builds, err)
	}

	if out, err := down(); err != nil {
		t.Fatalf("demo -down: %v\n%s", err, out)
	}
	if pid, ok := keptPID(); ok {
		t.Errorf("the kept demo (pid %d) still runs", pid)
	}
	for _, pattern := range []string{keptDir, "/var/tmp/" + harness.KubeletClusterDirPrefix + "*", "/tmp/mosb-demo-*"} {
		if left, _ := filepath.Glob(pattern); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
	}
	if mounts, err := os.ReadFile("/proc/self/mounts"); err == nil && bytes.Contains(mounts, []byte(harness.KubeletClusterDirPrefix)) {
		t.Errorf("mounts left behind:\n%s", mounts)
	}
	if procs, _ := exec.Command("pgrep", "-af", "mosb-demo-|"+harness.KubeletClusterDirPrefix).Output(); len(procs) > 0 {
		t.Errorf("processes left behind:\n%s", procs)
	}
}
