package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"

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

// cliProcess is mosb running in a process of its own (and a process group of its own).
type cliProcess struct {
	cmd         *exec.Cmd
	out, errOut bytes.Buffer
	err         error
	done        chan struct{}
}

func startCLIProcess(t *testing.T, ctx context.Context, args ...string) *cliProcess {
	t.Helper()
	p := &cliProcess{cmd: exec.CommandContext(ctx, os.Args[0], args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), asCLI+"=1")
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.errOut
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting mosb %v: %v", args, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	return p
}

// wait is the process's result once it has exited.
func (p *cliProcess) wait(t *testing.T) cliResult {
	t.Helper()
	<-p.done
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(p.err, &exit):
		code = exit.ExitCode()
	case p.err != nil:
		t.Fatalf("running mosb: %v", p.err)
	}
	return cliResult{code: code, stdout: p.out.String(), stderr: p.errOut.String()}
}
