package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// Bad resource flags stop the controller at start-up, before it reads a kubeconfig or reaches a
// cluster, with a message naming the flag, the entry and the syntax.
func TestControllerRefusesBadResourceFlags(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "no-such-kubeconfig")
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--build-limits=memory=lots"}, []string{"--build-limits", `"lots" is not a quantity`, "cpu=…,memory=…,ephemeral-storage=…"}},
		{[]string{"--build-requests=cpu=1,gpu=1"}, []string{"--build-requests", `"gpu"`}},
		{[]string{"--build-requests=memory=8Gi"}, []string{"--build-requests memory=8Gi is above --build-limits memory=4Gi"}},
	} {
		res := runCLI(t, append([]string{"controller", "--kubeconfig=" + kubeconfig, "--builder-image=mosb:test"}, tc.args...)...)
		if res.code != exitInvalidInput {
			t.Errorf("%v: exit %d, want %d; stderr: %s", tc.args, res.code, exitInvalidInput, res.stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(res.stderr, w) {
				t.Errorf("%v: stderr does not say %q: %s", tc.args, w, res.stderr)
			}
		}
		if strings.Contains(res.stderr, "kubeconfig") {
			t.Errorf("%v: the cluster configuration was read before the flags were checked: %s", tc.args, res.stderr)
		}
	}
}

// A flag that does not parse, or a value that cannot work, is bad input with its reason, on every
// command: exit 2, `invalid input: InvalidFlag: …`, the flag named.
func TestEveryCommandRefusesBadFlagsWithAReason(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"build", "--no-such-flag"}, "--no-such-flag"},
		{[]string{"render", "--registry-stall-timeout=soon"}, "--registry-stall-timeout"},
		{[]string{"controller", "--workers=0", "--builder-image=mosb:test"}, "--workers"},
		{[]string{"controller", "--webhook-url=http://127.0.0.1:9443/convert", "--builder-image=mosb:test"}, "--webhook-url"},
		{[]string{"controller", "--webhook-cert-validity=48h", "--webhook-ca-validity=24h", "--builder-image=mosb:test"}, "--webhook-ca-validity"},
		{[]string{"render", "-f", "x.yaml", "--show", "everything"}, "--show"},
		{[]string{"worker", "--prepare-store"}, "--prepare-store"},
	} {
		res := runCLI(t, tc.args...)
		if want := "invalid input: InvalidFlag: "; res.code != exitInvalidInput || !strings.Contains(res.stderr, want) || !strings.Contains(res.stderr, tc.flag) {
			t.Errorf("%v: exit %d, want %d with %q naming %s: %s", tc.args, res.code, exitInvalidInput, want, tc.flag, res.stderr)
		}
	}
}
