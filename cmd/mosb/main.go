// Command mosb is the MachineOSConfig image-build pipeline: the controller, the CI build, the
// renderer and the worker that runs inside build pods, in one binary.
package main

import (
	"context"
	"os"

	"github.com/containers/buildah"
)

func main() {
	// buildah re-executes this binary for chroot isolation; the child must stop here.
	if buildah.InitReexec() {
		return
	}
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
