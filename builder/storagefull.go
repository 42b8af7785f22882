package builder

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/mosb-dev/mosb/builder/buildpod"
)

// Where a build was when its storage filled up (StorageFullError.Phase).
const (
	PhasePull   = "pull"   // pulling an image (the base, or one a COPY --from names)
	PhaseRun    = "run"    // a RUN step
	PhaseCommit = "commit" // committing a step's changes as a layer
	PhaseWrite  = "write"  // writing the built image out as an OCI layout
	PhaseStep   = "step"   // another instruction (COPY, ADD, …)
)

// StorageFullError is a build that ran out of space in its build storage.
type StorageFullError struct {
	// Root is the build root whose filesystem filled up.
	Root string
	// Driver is the containers/storage driver of the build (overlay or vfs).
	Driver string
	// Image is the image being pulled (PhasePull before the build's steps), when known.
	Image string
	// Phase is where the build was (PhasePull, …); empty when unknown.
	Phase string
	// Step is the instruction the build was at as buildah numbers it in the build output
	// ("STEP 3/4: RUN dd if=/dev/zero of=/big"); empty when unknown.
	Step string
	// Said is the line of the step's output that says it ran out of space ("dd: error writing
	// '/big': No space left on device"); empty when the output said nothing.
	Said string
	// FSSize and FSFree are the bytes of the root's filesystem and those free to the build,
	// read when the error was returned (after buildah removed the failed step's container); 0
	// when they could not be read.
	FSSize, FSFree uint64
	// BaseSize is the unpacked size of the base image in the build storage; 0 when unknown (the
	// pull itself failed, or the base is not in the storage).
	BaseSize int64
	Err      error
}

func (e *StorageFullError) Error() string {
	var b strings.Builder
	inPod := strings.HasPrefix(e.Root, buildpod.WorkDir+"/")
	if inPod {
		b.WriteString("the build pod's volume at " + buildpod.WorkDir + ", the build root " + e.Root)
	} else {
		b.WriteString("the build root " + e.Root)
	}
	var about []string
	if e.Driver != "" {
		about = append(about, e.Driver+" storage")
	}
	if e.FSSize > 0 {
		about = append(about, fmt.Sprintf("a %s filesystem, %s free once the failed build cleaned up", byteSize(e.FSSize), byteSize(e.FSFree)))
	}
	if len(about) > 0 {
		b.WriteString(" (" + strings.Join(about, ", ") + ")")
	}
	b.WriteString(" ran out of space " + e.where())
	if e.Said != "" {
		b.WriteString(": it printed " + strconv.Quote(e.Said))
	}
	if e.BaseSize > 0 {
		fmt.Fprintf(&b, "; the base image alone takes %s unpacked", byteSize(uint64(e.BaseSize)))
	}
	// The annotations are pipeline.AnnotationBuildRequests and AnnotationBuildLimits, spelled out
	// to keep the Kubernetes packages out of builder (cmd/mosb's tests check they agree).
	const podFix = "raise the build's ephemeral-storage in the MachineOSConfig's build resources (annotations mosb.dev/build-requests and mosb.dev/build-limits, e.g. ephemeral-storage=20Gi) or the controller's --build-requests and --build-limits"
	if inPod {
		b.WriteString(". Give the build more space: " + podFix)
	} else {
		b.WriteString(". Give the build more space: free space there or point --root at a bigger filesystem; for builds in the cluster, " + podFix)
	}
	if e.Driver == DriverVFS {
		b.WriteString("; and build with overlay instead of vfs where this machine allows it (--storage-driver overlay): vfs copies the whole base image for every step")
	}
	b.WriteString(".")
	if e.Err != nil {
		b.WriteString(" Error: " + cleanStepDumps(e.Err.Error()))
	}
	return b.String()
}

// where is the phase and step in words: "while committing step 3 of 4 ("RUN dd …")".
func (e *StorageFullError) where() string {
	step := stepInWords(e.Step)
	at := ""
	if step != "" {
		at = " " + step
	}
	switch e.Phase {
	case PhasePull:
		if step != "" {
			return "while pulling and unpacking an image for" + at
		}
		if e.Image != "" {
			return "while pulling and unpacking " + e.Image
		}
		return "while pulling and unpacking the base image"
	case PhaseRun:
		if step != "" {
			return "in the RUN of" + at
		}
		return "in a RUN step"
	case PhaseCommit:
		if step != "" {
			return "while committing" + at + " as a layer"
		}
		return "while committing a step as a layer"
	case PhaseWrite:
		return "while writing the built image out"
	}
	if step != "" {
		return "at" + at
	}
	return "during the build"
}

func (e *StorageFullError) Unwrap() error { return e.Err }

// CleanMessage is err's message without the Go struct dumps buildah puts in some of its errors: a
// step such as {Env:[…] Command:run Args:[…] … Original:RUN dd …} becomes "RUN dd …".
func CleanMessage(err error) string {
	if err == nil {
		return ""
	}
	return cleanStepDumps(err.Error())
}

// stepLine is buildah's line for each instruction: "STEP 3/4: RUN …", "[1/2] STEP 2/3: COPY …".
var stepLine = regexp.MustCompile(`^(?:\[(\d+)/(\d+)\] )?STEP (\d+)(?:/(\d+))?: (.*)$`)

// stepInWords is buildah's step line in words: `step 3 of 4 ("RUN dd …")`.
func stepInWords(line string) string {
	m := stepLine.FindStringSubmatch(line)
	if m == nil {
		return ""
	}
	s := "step " + m[3]
	if m[4] != "" {
		s += " of " + m[4]
	}
	if m[1] != "" {
		s += " of stage " + m[1] + " of " + m[2]
	}
	return s + " (" + quoteInstruction(m[5]) + ")"
}

// noSpaceWatch passes a build's output through and notes whether a step said it ran out of space:
// a RUN that fills the disk fails with its command's exit status, the only trace is its output.
// It also keeps the step buildah last announced (STEP n/m: …) and the base image (the first FROM).
type noSpaceWatch struct {
	// mu: buildah may write the output and the errors of a step from different goroutines.
	mu sync.Mutex
	w  io.Writer
	// saw: the current step's output says "No space left on device"; said is the first line
	// that says it (when it fits maxWatchedLine).
	saw  bool
	said string
	// carry is the end of the output so far, shorter than the phrase: the phrase may be split
	// across writes.
	carry []byte
	// line is the start of the current output line (at most maxWatchedLine bytes).
	line []byte
	// step is the last step line; from is the image of the first FROM.
	step, from string
}

const (
	noSpacePhrase  = "no space left on device"
	maxWatchedLine = 1024
)

func newNoSpaceWatch(w io.Writer) *noSpaceWatch { return &noSpaceWatch{w: w} }

func (n *noSpaceWatch) Write(p []byte) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.watchLines(p)
	if !n.saw {
		// The phrase split across this write and the ones before: look in the carry and this
		// write's beginning together; then in this write alone.
		head := p[:min(len(p), len(noSpacePhrase)-1)]
		joined := append(append(make([]byte, 0, len(n.carry)+len(head)), n.carry...), head...)
		n.saw = containsFold(joined, noSpacePhrase) || containsFold(p, noSpacePhrase)
	}
	keep := len(noSpacePhrase) - 1
	if len(p) >= keep {
		n.carry = append(n.carry[:0], p[len(p)-keep:]...)
	} else {
		n.carry = append(n.carry, p...)
		if over := len(n.carry) - keep; over > 0 {
			n.carry = append(n.carry[:0], n.carry[over:]...)
		}
	}
	return n.w.Write(p)
}

// watchLines follows the output line by line for buildah's step lines. A new step starts over:
// a message about space in the output of a step that went on to succeed is not this failure.
func (n *noSpaceWatch) watchLines(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := maxWatchedLine - len(n.line); room > 0 {
			n.line = append(n.line, chunk[:min(room, len(chunk))]...)
		}
		if i < 0 {
			return
		}
		n.endLine()
		p = p[i+1:]
	}
}

func (n *noSpaceWatch) endLine() {
	line := strings.TrimRight(string(n.line), "\r")
	n.line = n.line[:0]
	if n.said == "" && containsFold([]byte(line), noSpacePhrase) {
		// The first: what the step's command printed, before buildah's own complaints while
		// cleaning up on the full disk.
		n.said = oneLine(line)
	}
	m := stepLine.FindStringSubmatch(line)
	if m == nil {
		return
	}
	n.step, n.saw, n.said = line, false, ""
	if f := strings.Fields(m[5]); n.from == "" && len(f) > 1 && strings.EqualFold(f[0], "FROM") {
		for _, a := range f[1:] {
			if !strings.HasPrefix(a, "--") {
				n.from = a
				break
			}
		}
	}
}

// containsFold says whether p contains the lower-case ASCII needle, ignoring ASCII case.
func containsFold(p []byte, needle string) bool {
	for i := 0; i+len(needle) <= len(p); i++ {
		j := 0
		for j < len(needle) && lowerASCII(p[i+j]) == needle[j] {
			j++
		}
		if j == len(needle) {
			return true
		}
	}
	return false
}

func lowerASCII(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

// storageFull returns err as a *StorageFullError when it (or the build output) says the build
// storage ran out of space, err otherwise.
func (e *Engine) storageFull(err error, out *noSpaceWatch) error {
	if err == nil {
		return nil
	}
	var saw bool
	var step, said, from string
	if out != nil {
		out.mu.Lock()
		saw, step, said, from = out.saw, out.step, out.said, out.from
		if saw && said == "" && containsFold(out.line, noSpacePhrase) {
			// The last line, not ended yet.
			said = oneLine(string(out.line))
		}
		out.mu.Unlock()
	}
	msg := err.Error()
	if !errors.Is(err, syscall.ENOSPC) && !saw && !saysLocalNoSpace(msg) {
		return err
	}
	full := &StorageFullError{Root: e.root, Driver: e.storage.Driver, Step: step, Err: err}
	if saw {
		full.Said = said
	}
	var st unix.Statfs_t
	if unix.Statfs(e.root, &st) == nil {
		full.FSSize, full.FSFree = st.Blocks*uint64(st.Bsize), st.Bavail*uint64(st.Bsize)
	}
	full.Phase = storagePhase(msg, saw)
	if m := pulledImage.FindStringSubmatch(msg); full.Phase == PhasePull && m != nil {
		full.Image = m[1]
	}
	if full.Phase == PhaseWrite {
		// The step lines are those of the build before; the whole image is being written.
		full.Step = ""
	}
	if full.Phase != PhasePull && from != "" {
		full.BaseSize = e.imageSize(from)
	}
	return full
}

// pulledImage finds the image the engine's own pull (before buildah's steps) was pulling.
var pulledImage = regexp.MustCompile(`pulling image (\S+): `)

// saysLocalNoSpace says whether an error's text (some of buildah's errors carry a child process's
// output as text, such as unpacking a layer) says this machine ran out of space, rather than a
// registry whose own storage is full answering a cache push.
func saysLocalNoSpace(msg string) bool {
	lower := strings.ToLower(msg)
	if !strings.Contains(lower, noSpacePhrase) {
		return false
	}
	for _, remote := range []string{"pushing cache", "http status", "status code"} {
		if strings.Contains(lower, remote) {
			return false
		}
	}
	return true
}

// storagePhase says from buildah's error (and whether the step's output said it ran out of
// space) where the build was.
func storagePhase(msg string, runSaid bool) string {
	lower := strings.ToLower(msg)
	has := func(s ...string) bool {
		for _, x := range s {
			if strings.Contains(lower, x) {
				return true
			}
		}
		return false
	}
	switch {
	case has("oci layout"):
		return PhaseWrite
	case has("committing container for step", "committing final squash step", "committing base container"):
		return PhaseCommit
	case has("creating build container", "pulling image", "initializing source", "copying system image", "trying to pull"):
		return PhasePull
	case runSaid || has("while running runtime"):
		return PhaseRun
	case has("building at step"):
		return PhaseStep
	}
	return ""
}

// imageSize is the unpacked size of the image ref in the build storage, 0 when unknown.
func (e *Engine) imageSize(ref string) int64 {
	id := ""
	if img, err := e.store.Image(ref); err == nil {
		id = img.ID
	} else if _, digest, ok := strings.Cut(ref, "@"); ok {
		images, err := e.store.Images()
		if err != nil {
			return 0
		}
		for _, img := range images {
			if img.Digest.String() == digest {
				id = img.ID
				break
			}
			for _, d := range img.Digests {
				if d.String() == digest {
					id = img.ID
				}
			}
		}
	}
	if id == "" {
		return 0
	}
	size, err := e.store.ImageSize(id)
	if err != nil || size < 0 {
		return 0
	}
	return size
}

// byteSize is n in binary units: "64 MiB", "1.5 GiB", "512 B".
func byteSize(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	v, u := float64(n), 0
	for v >= 1024 && u < len(units)-1 {
		v /= 1024
		u++
	}
	if u == 0 || v >= 10 || v == float64(uint64(v)) {
		return fmt.Sprintf("%.0f %s", v, units[u])
	}
	return fmt.Sprintf("%.1f %s", v, units[u])
}

// maxInstruction bounds an instruction quoted in a message.
const maxInstruction = 200

// oneLine is s with its runs of white space as one space, cut when long.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > maxInstruction {
		s = string(r[:maxInstruction]) + "…"
	}
	return s
}

// quoteInstruction is a Containerfile instruction on one line, in quotes, cut when long.
func quoteInstruction(s string) string { return strconv.Quote(oneLine(s)) }

// cleanStepDumps replaces each Go dump of an imagebuilder step (%+v of imagebuilder.Step, as in
// buildah's "committing container for step {Env:[…] Command:run … Original:RUN dd …}: …", or of
// its parser node, "{Value:run Next:0x… … Original:RUN dd … Flags:[] StartLine:3 EndLine:3}")
// with the step's instruction in quotes. Anything else is left as it is.
func cleanStepDumps(msg string) string {
	var b strings.Builder
	for {
		i, parse := nextDump(msg)
		if i < 0 {
			b.WriteString(msg)
			return b.String()
		}
		n, instruction, ok := parse(msg[i:])
		if !ok {
			b.WriteString(msg[:i+1])
			msg = msg[i+1:]
			continue
		}
		b.WriteString(msg[:i])
		b.WriteString(quoteInstruction(instruction))
		msg = msg[i+n:]
	}
}

type dumpParser func(s string) (n int, instruction string, ok bool)

// nextDump finds the earliest step or node dump in msg.
func nextDump(msg string) (int, dumpParser) {
	i, j := strings.Index(msg, "{Env:["), strings.Index(msg, "{Value:")
	switch {
	case i < 0 && j < 0:
		return -1, nil
	case j < 0 || (i >= 0 && i < j):
		return i, parseStepDump
	default:
		return j, parseNodeDump
	}
}

// stepFields are imagebuilder.Step's fields after Env, in order, as %+v prints them.
var stepFields = []string{" Command:", " Args:[", " Flags:[", " Attrs:map[", " Message:", " Heredocs:[", " Original:"}

// parseStepDump reads a dump of imagebuilder.Step at the start of s: how long it is and its
// instruction. The fields hold user text (ENV values, RUN commands, heredocs) with any brackets
// or braces, so the fields are found by their names in order rather than by nesting; Original,
// the last, ends at the closing brace that is followed by the end of the text or punctuation,
// preferring the one after which Original equals Message (the step as the parser saw it), then
// one after which Original's braces balance.
func parseStepDump(s string) (int, string, bool) {
	pos := make([]int, len(stepFields))
	at := len("{Env:[")
	for k, f := range stepFields {
		i := strings.Index(s[at:], f)
		if i < 0 {
			return 0, "", false
		}
		pos[k] = at + i
		at = pos[k] + len(f)
	}
	message := s[pos[4]+len(stepFields[4]) : pos[5]]
	start := at
	end := -1
	balanced := -1
	first := -1
	for i := start; i < len(s); i++ {
		if s[i] != '}' || !dumpEnds(s[i+1:]) {
			continue
		}
		original := s[start:i]
		if original == message {
			end = i
			break
		}
		if first < 0 {
			first = i
		}
		if balanced < 0 && strings.Count(original, "{") == strings.Count(original, "}") {
			balanced = i
		}
	}
	switch {
	case end >= 0:
	case balanced >= 0:
		end = balanced
	case first >= 0:
		end = first
	default:
		return 0, "", false
	}
	instruction := s[start:end]
	if strings.TrimSpace(instruction) == "" {
		instruction = message
	}
	return end + 1, instruction, true
}

// dumpEnds says whether what follows a closing brace can follow a whole dump.
func dumpEnds(rest string) bool {
	if rest == "" {
		return true
	}
	switch rest[0] {
	case ':', ' ', '\n', '\t', ')', ']', ',', ';', '"', '\'':
		return true
	}
	return false
}

var nodeDumpEnd = regexp.MustCompile(` StartLine:\d+ EndLine:\d+\}`)

// parseNodeDump reads a dump of imagebuilder's parser.Node at the start of s:
// {Value:… Next:… Children:[…] Heredocs:[…] Attributes:map[…] Original:… Flags:[…] StartLine:N EndLine:N}.
func parseNodeDump(s string) (int, string, bool) {
	loc := nodeDumpEnd.FindStringIndex(s)
	if loc == nil {
		return 0, "", false
	}
	body := s[:loc[0]]
	attrs := strings.Index(body, " Attributes:map[")
	if attrs < 0 {
		return 0, "", false
	}
	o := strings.Index(body[attrs:], " Original:")
	f := strings.LastIndex(body, " Flags:[")
	if o < 0 || f < attrs+o {
		return 0, "", false
	}
	return loc[1], body[attrs+o+len(" Original:") : f], true
}
