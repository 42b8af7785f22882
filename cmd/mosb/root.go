package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/mosb-dev/mosb/pipeline"
)

// Exit codes: scripts in CI tell bad input from a failed build.
const (
	exitOK           = 0
	exitFailed       = 1 // the build, the push or the cluster failed
	exitInvalidInput = 2 // the input can never work as given; fix it
)

// errInvalidInput marks errors that exit with exitInvalidInput.
var errInvalidInput = errors.New("invalid input")

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "mosb",
		Short:         "Build layered OS images from MachineOSConfigs",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// A flag that does not parse is bad input like any other: exit 2 with its reason.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return invalid(pipeline.ReasonInvalidFlag, "%v (see --help)", err)
	})
	root.AddCommand(newVersionCommand(), newRenderCommand(), newBuildCommand(), newControllerCommand(), newWorkerCommand())
	return root
}

// run executes one mosb command line and returns its exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "mosb:", err)
	if errors.Is(err, errInvalidInput) {
		return exitInvalidInput
	}
	return exitFailed
}
