package e2e

import (
	"os"
	"testing"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

func TestMain(m *testing.M) {
	// The controller under test logs from its own process; the test process's client needs none.
	ctrllog.SetLogger(logr.Discard())
	os.Exit(m.Run())
}
