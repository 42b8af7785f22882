package buildpod_test

import (
	"strings"
	"testing"

	"github.com/mosb-dev/mosb/builder/buildpod"
)

func TestFailureFitsATerminationMessage(t *testing.T) {
	long := strings.Repeat("log line\n", 2000) + "the last line"
	raw, err := buildpod.Failure{Reason: buildpod.ReasonBuildFailed, Message: long}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) > 4096 {
		t.Errorf("failure is %d bytes; kubelet keeps 4096", len(raw))
	}
	f, ok := buildpod.ParseFailure(string(raw))
	if !ok || f.Reason != buildpod.ReasonBuildFailed || !strings.HasSuffix(f.Message, "the last line") {
		t.Errorf("round trip lost the reason or the end of the log: %+v", f)
	}
	if _, ok := buildpod.ParseFailure("STEP 1/2: FROM x\nerror"); ok {
		t.Error("a log tail parsed as a failure")
	}
}
