// Command mosb is the MachineOSConfig image-build pipeline: the controller, the CI build, the
// renderer and the worker that runs inside build pods, in one binary.
package main

import (
	"context"
	"os"
	"runtime/debug"

	"github.com/containers/buildah"
)

func main() {
	// buildah re-executes this binary for chroot isolation; the child must stop here.
	if buildah.InitReexec() {
		return
	}
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// buildGCPercent is the GC target of the commands that build (mosb build, mosb worker). Their heap
// is mostly short-lived copy buffers; half Go's default headroom lowered the peak RSS of a build on
// the realistic OS base by about 10 MiB (make bench) at no measurable cost in time.
const buildGCPercent = 50

// tightenGC applies buildGCPercent unless the user set GOGC.
func tightenGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(buildGCPercent)
	}
}
