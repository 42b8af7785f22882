package main

import "runtime"

// hostArch is the architecture built when nothing names one: this machine's.
func hostArch() string { return runtime.GOARCH }
