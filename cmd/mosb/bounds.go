package main

import (
	"errors"

	"github.com/spf13/pflag"

	"github.com/mosb-dev/mosb/builder"
	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/registry/bounds"
)

// addRegistryBoundFlags adds the three registry bounds; what tells what they hold.
func addRegistryBoundFlags(fl *pflag.FlagSet, b *bounds.Bounds, what string) {
	d := bounds.Default()
	fl.DurationVar(&b.Connect, "registry-connect-timeout", d.Connect, "the longest connecting to a registry may take, "+what)
	fl.DurationVar(&b.Response, "registry-response-timeout", d.Response, "the longest a registry may take to start answering a request, "+what)
	fl.DurationVar(&b.Stall, "registry-stall-timeout", d.Stall, "the longest a pull or push may go without moving a byte (not a limit on its length), "+what)
}

func checkRegistryBounds(b bounds.Bounds) error {
	if b.Connect <= 0 || b.Response <= 0 || b.Stall <= 0 {
		return invalid(pipeline.ReasonInvalidFlag, "--registry-connect-timeout, --registry-response-timeout and --registry-stall-timeout want positive durations, such as 30s (got %s)", b)
	}
	return nil
}

// buildFailure is a failed build or push, said with its reason first (the same reasons a build
// in the cluster reports): `mosb: RegistryUnresponsive: …`.
type buildFailure struct {
	reason string
	err    error
}

func newBuildFailure(err error) error {
	if err == nil || errors.Is(err, errInvalidInput) {
		return err
	}
	reason, _ := builder.ClassifyError(err)
	return &buildFailure{reason: reason, err: err}
}

func (f *buildFailure) Error() string { return f.reason + ": " + builder.Describe(f.reason, f.err) }

func (f *buildFailure) Unwrap() error { return f.err }
