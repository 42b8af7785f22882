package builder_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/containers/buildah"

	"github.com/mosb-dev/mosb/builder"
	"github.com/mosb-dev/mosb/builder/buildpod"
)

// envPrepareStore makes the test binary a node store's preparer (see prepareStore).
const envPrepareStore = "MOSB_TEST_PREPARE_STORE"

func TestMain(m *testing.M) {
	// chroot isolation re-executes the test binary; the child must not run the tests.
	if buildah.InitReexec() {
		return
	}
	if job := os.Getenv(envPrepareStore); job != "" {
		os.Exit(runPrepareStore(job))
	}
	os.Exit(m.Run())
}

type prepareJob struct {
	Store   builder.ImageStore
	Scratch string
	Images  []string
	RC      buildpod.RegistryConfig
}

func runPrepareStore(raw string) int {
	var job prepareJob
	if err := json.Unmarshal([]byte(raw), &job); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, err := job.Store.Prepare(ctx, job.Scratch, job.Images, "amd64", job.RC, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		return 1
	}
	return 0
}

// prepareStore fills a node store in a process of its own, as a build pod's init container does:
// containers/storage keeps one lock per path and process, read-write or read-only, so the builds
// that read the store read-only must not share a process with its writer.
func prepareStore(ctx context.Context, t *testing.T, s builder.ImageStore, images []string, rc buildpod.RegistryConfig) (*builder.StoreReport, string) {
	t.Helper()
	job, err := json.Marshal(prepareJob{Store: builder.ImageStore{Dir: s.Dir, Budget: s.Budget, Grace: s.Grace}, Scratch: t.TempDir(), Images: images, RC: rc})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), envPrepareStore+"="+string(job))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("preparing the node store: %v\n%s", err, stderr.String())
	}
	var r builder.StoreReport
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("the node store's report: %v\n%s", err, stdout.String())
	}
	return &r, stderr.String()
}
