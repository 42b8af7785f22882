package builder

import (
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/types"
	clocktesting "k8s.io/utils/clock/testing"
)

// The pull's watch ends an attempt when a layer moves no byte for the stall bound, whether the
// silence is seen while it lasts (the tick) or only when bytes come again after it (containers/
// image reconnected by itself); steady progress never ends it.
func TestWatchLayers(t *testing.T) {
	const stall = 10 * time.Second
	layer := types.BlobInfo{Digest: digest.Digest("sha256:" + "ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12")}
	ev := func(e types.ProgressEvent, off uint64) types.ProgressProperties {
		return types.ProgressProperties{Event: e, Artifact: layer, Offset: off}
	}
	cases := []struct {
		name string
		// steps: between events, how far the clock moves
		steps     []time.Duration
		wantStall bool
	}{
		{"steady", []time.Duration{time.Second, time.Second, 9 * time.Second, time.Second}, false},
		{"resumes after a silence as long as the bound", []time.Duration{time.Second, stall, time.Second}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
			progress := make(chan types.ProgressProperties)
			cancelled := make(chan error, 1)
			cancel := func(err error) { cancelled <- err }
			result := make(chan error, 1)
			go func() {
				if u := watchLayers(progress, stall, "reg.example:5000/os/base:1", cancel, clk); u != nil {
					result <- u
				} else {
					result <- nil
				}
			}()
			progress <- ev(types.ProgressEventNewArtifact, 0)
			off := uint64(0)
			for _, step := range tc.steps {
				// A repeated offset is no progress: once it is taken, the event before it was handled.
				progress <- ev(types.ProgressEventRead, off)
				clk.SetTime(clk.Now().Add(step))
				off += 1000
				progress <- ev(types.ProgressEventRead, off)
			}
			progress <- ev(types.ProgressEventDone, off)
			close(progress)
			err := <-result
			if (err != nil) != tc.wantStall {
				t.Fatalf("stall: %v, want a stall: %v", err, tc.wantStall)
			}
			if tc.wantStall {
				if got := <-cancelled; got != err {
					t.Errorf("the attempt was cancelled with %v, want %v", got, err)
				}
				for _, want := range []string{"reg.example:5000", "pulling layer sha256:ab12cd34ef56 of reg.example:5000/os/base:1", "10s"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("%q does not say %q", err, want)
					}
				}
			}
		})
	}

	t.Run("a silence seen while it lasts", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
		progress := make(chan types.ProgressProperties)
		cancelled := make(chan error, 1)
		result := make(chan error, 1)
		go func() {
			u := watchLayers(progress, stall, "reg.example:5000/os/base:1", func(err error) { cancelled <- err }, clk)
			if u != nil {
				result <- u
				return
			}
			result <- nil
		}()
		progress <- ev(types.ProgressEventNewArtifact, 0)
		progress <- ev(types.ProgressEventRead, 500)
		progress <- ev(types.ProgressEventRead, 500) // the one before was handled
		deadline := time.After(30 * time.Second)
		for done := false; !done; {
			clk.Step(time.Second) // each step fires the watch's tick
			select {
			case <-cancelled:
				done = true
			case <-deadline:
				t.Fatal("a layer silent for longer than the bound was not given up on")
			case <-time.After(10 * time.Millisecond):
			}
		}
		close(progress)
		if err := <-result; err == nil {
			t.Fatal("no stall returned")
		}
	})
}
