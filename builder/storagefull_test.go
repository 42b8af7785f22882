package builder

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"testing"

	"github.com/openshift/imagebuilder"
	"golang.org/x/sys/unix"

	"github.com/mosb-dev/mosb/builder/buildpod"
)

// The output of a RUN that filled its disk, as dd prints it inside buildah's output.
const ddOutput = "STEP 1/3: FROM 127.0.0.1:5000/os/base@sha256:0123\n" +
	"STEP 2/3: RUN dd if=/dev/zero of=/big bs=1M count=200\n" +
	"dd: error writing '/big': No space left on device\n" +
	"61+0 records in\n60+0 records out\n"

func TestNoSpaceWatchSeesThePhraseSplitAcrossWrites(t *testing.T) {
	out := []byte(ddOutput)
	// Every split of the output in two writes, then one byte per write.
	var splits [][][]byte
	for i := 0; i <= len(out); i++ {
		splits = append(splits, [][]byte{out[:i], out[i:]})
	}
	var bytewise [][]byte
	for i := range out {
		bytewise = append(bytewise, out[i:i+1])
	}
	splits = append(splits, bytewise)
	for _, writes := range splits {
		var got bytes.Buffer
		w := newNoSpaceWatch(&got)
		for _, p := range writes {
			if n, err := w.Write(p); n != len(p) || err != nil {
				t.Fatalf("Write(%q) = %d, %v", p, n, err)
			}
		}
		if !w.saw {
			t.Fatalf("written as %q: the phrase was not seen", writes)
		}
		if got.String() != ddOutput {
			t.Fatalf("written as %q: passed through %q", writes, got.String())
		}
		if w.step != "STEP 2/3: RUN dd if=/dev/zero of=/big bs=1M count=200" || w.from != "127.0.0.1:5000/os/base@sha256:0123" ||
			w.said != "dd: error writing '/big': No space left on device" {
			t.Fatalf("written as %q: step %q, base %q, said %q", writes, w.step, w.from, w.said)
		}
	}
}

func TestNoSpaceWatchIgnoresOtherOutput(t *testing.T) {
	cases := map[string]struct {
		writes []string
		saw    bool
	}{
		"upper case":                   {[]string{"write error: NO SPACE LEFT ON DEVICE\n"}, true},
		"no such phrase":               {[]string{"STEP 2/2: RUN true\n", "no space left on the device\n"}, false},
		"interrupted by other output":  {[]string{"No space left on ", "\n", "device\n"}, false},
		"said by a step that went on":  {[]string{"STEP 2/3: RUN df || echo no space left on device\n", "no space left on device\n", "STEP 3/3: RUN false\n"}, false},
		"said again by the next step":  {[]string{"STEP 2/3: RUN a\n", "no space left on device\n", "STEP 3/3: RUN b\n", "No space left on device\n"}, true},
		"a stage's step line":          {[]string{"[1/2] STEP 2/3: RUN b\n", "No space left on device\n"}, true},
		"split across a long carry":    {[]string{strings.Repeat("x", 5000) + "No space le", "ft on device"}, true},
		"short writes then the phrase": {[]string{"N", "o", " ", "spa", "ce left on devic", "e"}, true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var got bytes.Buffer
			w := newNoSpaceWatch(&got)
			for _, p := range tc.writes {
				_, _ = w.Write([]byte(p))
			}
			if w.saw != tc.saw {
				t.Errorf("saw %v, want %v", w.saw, tc.saw)
			}
			if got.String() != strings.Join(tc.writes, "") {
				t.Errorf("the output was changed")
			}
		})
	}
}

// steps parses a Containerfile with imagebuilder as buildah does and returns each instruction's
// step and parser node as buildah's errors print them (%+v).
func steps(t *testing.T, containerfile string) (stepDumps, nodeDumps []string) {
	t.Helper()
	node, err := imagebuilder.ParseDockerfile(strings.NewReader(containerfile))
	if err != nil {
		t.Fatal(err)
	}
	b := imagebuilder.NewBuilder(nil)
	for _, child := range node.Children {
		step := b.Step()
		if err := step.Resolve(child); err != nil {
			t.Fatal(err)
		}
		if step.Command == "env" {
			for i := 0; i+1 < len(step.Args); i += 2 {
				b.Env = append(b.Env, step.Args[i]+"="+step.Args[i+1])
			}
		}
		stepDumps = append(stepDumps, fmt.Sprintf("%+v", *step))
		nodeDumps = append(nodeDumps, fmt.Sprintf("%+v", *child))
	}
	return stepDumps, nodeDumps
}

func TestCleanStepDumps(t *testing.T) {
	cf := "FROM registry.example.com/os/base:1\n" +
		"ENV A=\"[x{\" B=}\n" + // 1: brackets and braces in Env, and an Original ending in a brace
		"RUN dd if=/dev/zero of=/big bs=1M count=200\n" + // 2
		"RUN awk '{print $1}' /etc/passwd > /x\n" + // 3: braces that balance
		"RUN echo '}: x' > /y\n" + // 4: a brace followed by ": " inside the instruction
		"RUN <<EOF\necho {\nEOF\n" + // 5: a heredoc with a lone brace
		"RUN a \\\n   && b\n" + // 6: a continuation line
		"RUN [\"sh\", \"-c\", \"echo hi\"]\n" + // 7: exec form
		"RUN --mount=type=tmpfs,target=/t echo ${A}\n" + // 8: a flag and a variable
		"RUN [\"sh\", \"-c\", \"echo {a}: b\"]\n" // 9: exec form (Original is not Message) with a brace and colon inside
	step, node := steps(t, cf)
	const tail = `: copying layers and metadata for container "4f2a": writing blob: storing blob to file "/root/tmp/buildah123/layer": write /root/tmp/buildah123/layer: no space left on device`
	cases := []struct {
		name, in, want string
	}{
		{"commit of a RUN", "building amd64 image: committing container for step " + step[2] + tail,
			`building amd64 image: committing container for step "RUN dd if=/dev/zero of=/big bs=1M count=200"` + tail},
		{"ENV with brackets and braces", "committing container for step " + step[1] + tail,
			`committing container for step "ENV A=\"[x{\" B=}"` + tail},
		{"balanced braces", "committing container for step " + step[3] + tail,
			`committing container for step "RUN awk '{print $1}' /etc/passwd > /x"` + tail},
		{"a brace and colon inside", "committing container for step " + step[4] + tail,
			`committing container for step "RUN echo '}: x' > /y"` + tail},
		{"heredoc", "committing container for step " + step[5] + tail,
			`committing container for step "RUN <<EOF"` + tail},
		{"continuation", "committing container for step " + step[6] + tail,
			`committing container for step "RUN a && b"` + tail},
		{"exec form", "committing container for step " + step[7] + tail,
			`committing container for step "RUN [\"sh\", \"-c\", \"echo hi\"]"` + tail},
		{"flag and variable", "committing final squash step " + step[8] + tail,
			`committing final squash step "RUN --mount=type=tmpfs,target=/t echo ${A}"` + tail},
		{"exec form with a brace and colon inside", "committing container for step " + step[9] + tail,
			`committing container for step "RUN [\"sh\", \"-c\", \"echo {a}: b\"]"` + tail},
		{"at the end", "error at " + step[2], `error at "RUN dd if=/dev/zero of=/big bs=1M count=200"`},
		{"two dumps", "a " + step[2] + ": b " + step[3] + ": c",
			`a "RUN dd if=/dev/zero of=/big bs=1M count=200": b "RUN awk '{print $1}' /etc/passwd > /x": c`},
		{"parser node", "resolving step " + node[4] + ": bad substitution",
			`resolving step "RUN echo '}: x' > /y": bad substitution`},
		{"parser node with a heredoc", "resolving step " + node[5] + ": x", `resolving step "RUN <<EOF": x`},
		{"no dump", `building at STEP "RUN dd if=/dev/zero of=/big": while running runtime: exit status 1`,
			`building at STEP "RUN dd if=/dev/zero of=/big": while running runtime: exit status 1`},
		{"other braces and maps", "config {Env:x} map[a:b] {Value:1} [x]", "config {Env:x} map[a:b] {Value:1} [x]"},
		{"a cut dump", "step {Env:[] Command:run Args:[x] Flags:[]", "step {Env:[] Command:run Args:[x] Flags:[]"},
		{"long instruction", "step " + steps1(t, "FROM x\nRUN "+strings.Repeat("y", 300)+"\n") + ": z",
			`step "RUN ` + strings.Repeat("y", 196) + `…": z`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := cleanStepDumps(tc.in); got != tc.want {
				t.Errorf("cleanStepDumps(%q)\n = %q\nwant %q", tc.in, got, tc.want)
			}
		})
	}
	if got := CleanMessage(fmt.Errorf("building: %w", errors.New("committing container for step "+step[2]+tail))); strings.Contains(got, "{Env:") {
		t.Errorf("CleanMessage left a dump: %s", got)
	}
	if CleanMessage(nil) != "" {
		t.Error("CleanMessage(nil) is not empty")
	}
}

// steps1 is the dump of the second instruction of a Containerfile.
func steps1(t *testing.T, cf string) string {
	s, _ := steps(t, cf)
	return s[1]
}

func TestStorageFullMessage(t *testing.T) {
	step, _ := steps(t, "FROM b\nRUN head -c 40000000 /dev/zero > /fill\n")
	commitErr := fmt.Errorf("building amd64 image: committing container for step %s: storing layer: %w", step[1], &fs.PathError{Op: "write", Path: "/r/storage/x", Err: syscall.ENOSPC})
	e := &StorageFullError{Root: "/mnt/small", Driver: DriverOverlay, Phase: PhaseCommit, Step: "STEP 2/2: RUN head -c 40000000 /dev/zero > /fill",
		FSSize: 64 << 20, FSFree: 60 << 20, BaseSize: 1536 << 10, Err: commitErr}
	msg := e.Error()
	for _, want := range []string{
		"/mnt/small", "overlay", "64 MiB filesystem", "60 MiB free",
		`while committing step 2 of 2 ("RUN head -c 40000000 /dev/zero > /fill") as a layer`,
		"1.5 MiB unpacked", "--root", "ephemeral-storage", "mosb.dev/build-limits", "no space left on device",
		`committing container for step "RUN head -c 40000000 /dev/zero > /fill"`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the message does not say %q:\n%s", want, msg)
		}
	}
	for _, not := range []string{"{Env:", "vfs", "Original:"} {
		if strings.Contains(msg, not) {
			t.Errorf("the message says %q:\n%s", not, msg)
		}
	}
	if !strings.Contains(msg, "the build root /mnt/small (") || strings.Contains(msg, "build pod's volume") {
		t.Errorf("outside a build pod, the message names the root alone:\n%s", msg)
	}
	inPod := *e
	inPod.Root = buildpod.StorageRoot
	if msg := inPod.Error(); !strings.Contains(msg, "the build pod's volume at "+buildpod.WorkDir+", the build root "+buildpod.StorageRoot) || strings.Contains(msg, "--root") {
		t.Errorf("in a build pod, the message names the pod's volume and not --root:\n%s", msg)
	}
	e.Driver, e.Phase, e.Step = DriverVFS, PhaseRun, "[1/2] STEP 3/4: RUN dd if=/dev/zero of=/big"
	msg = e.Error()
	for _, want := range []string{`in the RUN of step 3 of 4 of stage 1 of 2 ("RUN dd if=/dev/zero of=/big")`, "overlay instead of vfs", "copies the whole base image"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the message does not say %q:\n%s", want, msg)
		}
	}
	for phase, want := range map[string]string{PhasePull: "pulling and unpacking the base image", PhaseWrite: "writing the built image", "": "during the build"} {
		e := &StorageFullError{Root: "/r", Phase: phase, Err: errors.New("x")}
		if msg := e.Error(); !strings.Contains(msg, want) {
			t.Errorf("phase %q: the message does not say %q: %s", phase, want, msg)
		}
	}
	if reason, retryable := ClassifyError(fmt.Errorf("arch amd64: %w", e)); reason != buildpod.ReasonBuildStorageFull || retryable {
		t.Errorf("classified %s (retryable %v)", reason, retryable)
	}
}

// storageFull reads the root's filesystem (a real directory here) and the build's output.
func TestEngineStorageFullReadsTheRootAndTheOutput(t *testing.T) {
	root := t.TempDir()
	e := &Engine{root: root, storage: StorageChoice{Driver: DriverOverlay}}
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		t.Fatal(err)
	}
	step, _ := steps(t, "FROM b\nRUN x\n")
	commit := fmt.Errorf("building amd64 image: committing container for step %s: %w", step[1], &fs.PathError{Op: "write", Path: root + "/storage/l", Err: syscall.ENOSPC})
	var full *StorageFullError
	if !errors.As(e.storageFull(commit, newNoSpaceWatch(&bytes.Buffer{})), &full) {
		t.Fatal("ENOSPC while committing is not a StorageFullError")
	}
	if full.Phase != PhaseCommit || full.Root != root || full.Driver != DriverOverlay || full.FSSize != st.Blocks*uint64(st.Bsize) || full.FSFree == 0 {
		t.Errorf("got %+v", *full)
	}

	out := newNoSpaceWatch(&bytes.Buffer{})
	_, _ = out.Write([]byte("STEP 2/2: RUN dd if=/dev/zero of=/big\ndd: error writing '/big': No space left on device\n"))
	run := errors.New(`building amd64 image: building at STEP "RUN dd if=/dev/zero of=/big": while running runtime: exit status 1`)
	if !errors.As(e.storageFull(run, out), &full) {
		t.Fatal("a RUN whose output says no space is not a StorageFullError")
	}
	if full.Phase != PhaseRun || full.Step != "STEP 2/2: RUN dd if=/dev/zero of=/big" || full.Said != "dd: error writing '/big': No space left on device" {
		t.Errorf("got phase %q step %q said %q", full.Phase, full.Step, full.Said)
	}
	if msg := full.Error(); !strings.Contains(msg, `in the RUN of step 2 of 2 ("RUN dd if=/dev/zero of=/big"): it printed "dd: error writing '/big': No space left on device"`) {
		t.Errorf("the message does not quote the step's output: %s", msg)
	}

	write := fmt.Errorf("exporting amd64 image to an OCI layout: writing blob: %w", syscall.ENOSPC)
	if !errors.As(e.storageFull(write, nil), &full) || full.Phase != PhaseWrite {
		t.Errorf("writing the layout: %v", e.storageFull(write, nil))
	}

	unpack := errors.New(`building amd64 image: creating build container: unable to copy from source docker://r/os/base@sha256:0: writing blob: adding layer with blob "sha256:1": unpacking failed (error: exit status 1; output: write /bin/busybox: no space left on device)`)
	if !errors.As(e.storageFull(unpack, newNoSpaceWatch(&bytes.Buffer{})), &full) || full.Phase != PhasePull {
		t.Errorf("unpacking the base: %v", e.storageFull(unpack, nil))
	}
	registryFull := errors.New(`building amd64 image: failed pushing cache to "r/cache": writing blob: initiating layer upload to /v2/cache/blobs/uploads/ in r: received unexpected HTTP status: 500 Internal Server Error: filesystem: no space left on device`)
	if got := e.storageFull(registryFull, newNoSpaceWatch(&bytes.Buffer{})); got != registryFull {
		t.Errorf("a cache registry out of space became %v", got)
	}

	quiet := newNoSpaceWatch(&bytes.Buffer{})
	_, _ = quiet.Write([]byte("STEP 2/2: RUN false\n"))
	other := errors.New(`building at STEP "RUN false": while running runtime: exit status 1`)
	if got := e.storageFull(other, quiet); got != other {
		t.Errorf("a RUN that failed with space left became %v", got)
	}
}
