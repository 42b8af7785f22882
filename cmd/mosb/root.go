package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
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
	root.AddCommand(newVersionCommand())
	return root
}

func execute() int {
	err := newRootCommand().Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(os.Stderr, "mosb:", err)
	if errors.Is(err, errInvalidInput) {
		return exitInvalidInput
	}
	return exitFailed
}
