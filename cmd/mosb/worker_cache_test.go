package main

import (
	"os/exec"
	"strings"
	"testing"
)

// In the build pod's confinement (read-only root filesystem, only the pod's capabilities and
// volumes) and with no netavark anywhere, a second pod, with storage of its own, takes the steps
// the first one built from the cache repository, and neither says the cache cannot be read.
func TestWorkerInThePodsConfinementTakesStepsFromTheCacheRepository(t *testing.T) {
	for _, tool := range []string{"setpriv", "unshare", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPED LOUDLY: %s (util-linux) is missing", tool)
		}
	}
	f := newBuildFixture(t, "amd64")
	cache := f.reg.Host + "/os/worker-cache"
	content := "RUN echo one > /one\nRUN echo two > /two"
	var hits []int
	for _, pod := range []string{"first", "second"} {
		w := f.workerPod(t, workerPodOptions{target: f.reg.Host + "/os/worker-cached:latest", content: content, cacheRepo: cache})
		stderr, err := w.runConfined(t, "")
		if err != nil {
			t.Fatalf("the %s pod failed: %v\n%s", pod, err, stderr)
		}
		if strings.Contains(stderr, "could not be read") {
			t.Errorf("the %s pod could not read the cache repository:\n%s", pod, stderr)
		}
		hits = append(hits, strings.Count(stderr, "Using cache"))
		if pod == "second" && hits[1] < 2 {
			t.Errorf("the second pod took %d steps from %s, want both RUN steps:\n%s", hits[1], cache, stderr)
		}
	}
	t.Logf("steps taken from the cache: first pod %d, second pod %d", hits[0], hits[1])
}
