package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/containers/buildah"
)

// asCLI, set in a child's environment, makes the test binary run mosb with its arguments instead
// of the tests: a build with a process of its own (its own $TMPDIR), as users run it.
const asCLI = "MOSB_TEST_AS_CLI"

func TestMain(m *testing.M) {
	// chroot isolation re-executes the test binary; the child must not run the tests.
	if buildah.InitReexec() {
		return
	}
	if os.Getenv(asCLI) == "1" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// runCLIProcess runs mosb in a process of its own, for builds that run side by side.
func runCLIProcess(t *testing.T, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), asCLI+"=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("running mosb %v: %v", args, err)
	}
	return cliResult{code: code, stdout: out.String(), stderr: errOut.String()}
}
