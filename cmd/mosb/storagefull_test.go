package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/pipeline"
)

// smallFilesystem mounts a tmpfs of sizeMiB for a test and unmounts it when the test ends.
func smallFilesystem(t *testing.T, sizeMiB int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED LOUDLY: mounting a small filesystem for the build root needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.Itoa(sizeMiB)+"m,mode=0700"); err != nil {
		t.Skipf("SKIPPED LOUDLY: cannot mount a %d MiB tmpfs for the build root: %v", sizeMiB, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			// Something of the build still holds the root: a mount, an open file.
			t.Errorf("unmounting the build root %s: %v", dir, err)
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

// reasonPrefix is the reason mosb prints before a failure's message, when it prints one.
var reasonPrefix = regexp.MustCompile(`^mosb: ([A-Z][A-Za-z]+): `)

// A build whose storage fills up, in a RUN and while committing a step, exits 1 with a message
// that names the root, where the build was in words, and the fix; nothing of the build is left
// in the root but the storage and caches a build keeps.
func TestBuildRunsOutOfStorage(t *testing.T) {
	f := newBuildFixture(t, "amd64")
	cases := []struct {
		name                   string
		rootMiB                int
		snippet, driver, where string
	}{
		// dd fails inside the RUN: its output is the only trace.
		{"in a RUN", 64, "RUN dd if=/dev/zero of=/big bs=1M count=200", "",
			`in the RUN of step 2 of \d+ \("RUN dd if=/dev/zero of=/big bs=1M count=200"\): it printed "dd: error writing '/big': No space left on device"`},
		// 40 MB fit in the 64 MiB root, but committing them as a layer needs as much again.
		{"committing a step", 64, "RUN head -c 40000000 /dev/zero > /fill", "",
			`while committing step 2 of \d+ \("RUN head -c 40000000 /dev/zero > /fill"\) as a layer`},
		{"in a RUN under vfs", 64, "RUN dd if=/dev/zero of=/big bs=1M count=200", "vfs",
			`in the RUN of step 2 of \d+ .*overlay instead of vfs`},
		// The tiny base image takes about 2 MiB unpacked.
		{"pulling the base", 2, "RUN true", "", `while pulling and unpacking (` + regexp.QuoteMeta(f.base["amd64"]) + `|an image for step 1 of \d+ \("FROM ` + regexp.QuoteMeta(f.base["amd64"]) + `)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := smallFilesystem(t, tc.rootMiB)
			args := []string{"build", "-f", f.mosc(t, "full", f.reg.Host+"/os/full:latest", map[string]string{"": tc.snippet}),
				"--cluster-config", f.clusterDir, "--authfile", f.authFile, "--root", root}
			if tc.driver != "" {
				args = append(args, "--storage-driver", tc.driver)
			}
			res := runCLI(t, args...)
			if res.code != exitFailed {
				t.Fatalf("exit %d, want %d:\n%s", res.code, exitFailed, res.stderr)
			}
			msg := res.stderr[strings.LastIndex(res.stderr, "mosb:"):]
			// mosb build prints the reason before the message once it prints reasons at all.
			if m := reasonPrefix.FindStringSubmatch(msg); m != nil && m[1] != buildpod.ReasonBuildStorageFull {
				t.Errorf("reason %s, want %s:\n%s", m[1], buildpod.ReasonBuildStorageFull, msg)
			}
			if !regexp.MustCompile(tc.where).MatchString(msg) {
				t.Errorf("the message does not say where the build was (%s):\n%s", tc.where, msg)
			}
			for _, want := range []string{"the build root " + root + " (", "a " + strconv.Itoa(tc.rootMiB) + " MiB filesystem", "--root", "ephemeral-storage", pipeline.AnnotationBuildLimits, "no space left on device"} {
				if !strings.Contains(strings.ToLower(msg), strings.ToLower(want)) {
					t.Errorf("the message does not say %q:\n%s", want, msg)
				}
			}
			for _, not := range []string{"{Env:", "Original:", "the Containerfile did not build"} {
				if strings.Contains(msg, not) {
					t.Errorf("the message says %q:\n%s", not, msg)
				}
			}
			requireOnlyWhatABuildKeeps(t, root, tc.rootMiB)
		})
	}
}

// requireOnlyWhatABuildKeeps checks that a build root holds what any build leaves (the storage
// with its image cache, the blob-info cache, the run state) and nothing else: no build-*
// scratch directory, no temporary file, no container, and hardly any used space.
func requireOnlyWhatABuildKeeps(t *testing.T, root string, sizeMiB int) {
	t.Helper()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		switch e.Name() {
		case "storage", "run", "blob-info-cache", "tmp":
		default:
			t.Errorf("the root holds %s after the failed build", e.Name())
		}
	}
	if left, _ := os.ReadDir(filepath.Join(root, "tmp")); len(left) > 0 {
		t.Errorf("%s/tmp holds %d entries after the failed build, e.g. %s", root, len(left), left[0].Name())
	}
	lists, _ := filepath.Glob(filepath.Join(root, "storage", "*-containers", "*containers.json"))
	for _, p := range lists {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var containers []json.RawMessage
		if err := json.Unmarshal(data, &containers); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if len(containers) > 0 {
			t.Errorf("%s lists %d build containers after the failed build", p, len(containers))
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		t.Fatal(err)
	}
	// The tiny base image takes about 2 MiB; what the failed step wrote would take tens.
	if used := (st.Blocks - st.Bfree) * uint64(st.Bsize); used > 8<<20 {
		t.Errorf("%d MiB of the %d MiB root are still used after the failed build", used>>20, sizeMiB)
	}
}
