package main

import (
	"os"
	"testing"

	"github.com/containers/buildah"
)

func TestMain(m *testing.M) {
	// chroot isolation re-executes the test binary; the child must not run the tests.
	if buildah.InitReexec() {
		return
	}
	os.Exit(m.Run())
}
