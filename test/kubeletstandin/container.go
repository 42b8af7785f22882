package kubeletstandin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	defaultTerminationMessagePath = "/dev/termination-log"
	maxTerminationMessage         = 4096 // bytes read from terminationMessagePath, as the kubelet does
	fallbackLines                 = 80   // FallbackToLogsOnError: the last 80 lines …
	fallbackBytes                 = 2048 // … and at most 2048 bytes of the output
	startErrorExitCode            = 128
	outputDrainTimeout            = 2 * time.Second
)

// runResult is what one run of a container did.
type runResult struct {
	containerID string
	startedAt   metav1.Time
	finishedAt  metav1.Time
	exitCode    int32
	signal      int32
	reason      string
	message     string
}

func (r runResult) terminated() *corev1.ContainerStateTerminated {
	return &corev1.ContainerStateTerminated{
		ExitCode: r.exitCode, Signal: r.signal, Reason: r.reason, Message: r.message,
		StartedAt: r.startedAt, FinishedAt: r.finishedAt, ContainerID: r.containerID,
	}
}

func startError(id, format string, args ...any) runResult {
	now := metav1.Now()
	return runResult{containerID: id, startedAt: now, finishedAt: now, exitCode: startErrorExitCode, reason: "StartError", message: fmt.Sprintf(format, args...)}
}

// runContainer runs one container once and waits for it. A *configError (or an API error while
// reading its configuration) comes back as an error and the caller retries; everything else, including
// a process that never started, is a runResult. onStart is called once the command has been exec'd.
func (w *podWorker) runContainer(pod *corev1.Pod, c *corev1.Container, attempt int, onStart func(startedAt metav1.Time, containerID string)) (runResult, error) {
	s := w.s
	containerID := fmt.Sprintf("standin://%s-%s-%d", shortUID(pod.UID), c.Name, attempt)
	who, err := containerIdentity(pod, c)
	if err != nil {
		return runResult{}, err
	}
	env, err := containerEnv(s.ctx, s.cs, pod, c, s.opts.Env, w.alloc, w.envHostname, who.uid)
	if err != nil {
		return runResult{}, err
	}
	if len(c.Command) == 0 {
		return startError(containerID, "container %q has no command: the kubelet stand-in has no image to take an entrypoint from", c.Name), nil
	}
	argv := make([]string, 0, len(c.Command)+len(c.Args))
	for _, a := range append(append([]string(nil), c.Command...), c.Args...) {
		argv = append(argv, expand(a, env.lookup))
	}
	bin, ok := s.opts.Commands[argv[0]]
	if !ok {
		return startError(containerID, "kubelet stand-in: command[0] %q of container %q has no local binary (Options.Commands knows %s); the container was not run",
			argv[0], c.Name, strings.Join(slices.Sorted(maps.Keys(s.opts.Commands)), ", ")), nil
	}

	runDir := filepath.Join(w.dir, "containers", c.Name, strconv.Itoa(attempt))
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return startError(containerID, "creating %s: %v", runDir, err), nil
	}
	logPath := filepath.Join(runDir, "output.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return startError(containerID, "creating the log: %v", err), nil
	}
	defer logFile.Close()
	s.addRun(w.key, w.uid, runRecord{container: c.Name, attempt: attempt, log: logPath})

	termPath := filepath.Join(runDir, "termination-log")
	if err := os.WriteFile(termPath, nil, 0o666); err != nil {
		return startError(containerID, "creating the termination-message file: %v", err), nil
	}
	if err := os.Chmod(termPath, 0o666); err != nil { // any user the container runs as may write it
		return startError(containerID, "creating the termination-message file: %v", err), nil
	}

	wants, err := w.mountWants(c, env, termPath)
	if err != nil {
		return startError(containerID, "%v", err), nil
	}
	workingDir := "/"
	if c.WorkingDir != "" {
		workingDir = c.WorkingDir
		wants = append(wants, mountWant{what: "workingDir", target: c.WorkingDir, dir: true})
	}
	shadows, binds, err := planMounts(wants, runDir)
	if err != nil {
		return startError(containerID, "kubelet stand-in: %v", err), nil
	}
	hostNS, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return startError(containerID, "reading the mount namespace: %v", err), nil
	}
	plan := execPlan{
		HostMountNS: hostNS, Shadows: shadows, Binds: binds, Hostname: w.utsHostname,
		WorkingDir: workingDir, Path: bin, Args: argv, Env: env.environ(),
	}
	if who.set() {
		plan.SetIdentity = true
		if who.uid != nil {
			plan.UID = *who.uid
		}
		if who.gid != nil {
			plan.GID = *who.gid
		}
		plan.Groups = who.groups
	}
	planJSON, err := json.MarshalIndent(plan, "", "  ")
	if err != nil {
		return startError(containerID, "%v", err), nil
	}
	planPath := filepath.Join(runDir, "plan.json")
	if err := os.WriteFile(planPath, planJSON, 0o600); err != nil {
		return startError(containerID, "writing the exec plan: %v", err), nil
	}

	outR, outW, err := os.Pipe()
	if err != nil {
		return startError(containerID, "%v", err), nil
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return startError(containerID, "%v", err), nil
	}
	flags := uintptr(syscall.CLONE_NEWNS)
	if w.utsHostname != "" {
		flags |= syscall.CLONE_NEWUTS
	}
	cmd := &exec.Cmd{
		Path:        s.helper,
		Args:        []string{helperArg0},
		Env:         []string{helperEnv + "=" + planPath},
		Stdout:      outW,
		Stderr:      outW,
		ExtraFiles:  []*os.File{statusW},
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Unshareflags: flags},
	}
	err = cmd.Start()
	outW.Close()
	statusW.Close()
	if err != nil {
		outR.Close()
		statusR.Close()
		return startError(containerID, "starting the process: %v", err), nil
	}
	pgid := cmd.Process.Pid
	log := w.log.WithValues("container", c.Name, "run", attempt, "pid", pgid)

	drained := make(chan struct{})
	go func() {
		defer close(drained)
		var out io.Writer = logFile
		var pw *prefixWriter
		if s.output != nil {
			pw = &prefixWriter{w: s.output, prefix: fmt.Sprintf("[%s/%s] ", w.key, c.Name)}
			out = io.MultiWriter(logFile, pw)
		}
		_, _ = io.Copy(out, outR)
		if pw != nil {
			pw.flush()
		}
	}()

	exited := make(chan struct{})
	killerDone := make(chan struct{})
	go func() {
		defer close(killerDone)
		w.killOnTerminate(pgid, exited, log)
	}()

	setupErr, _ := io.ReadAll(statusR)
	statusR.Close()
	started := len(setupErr) == 0
	var startedAt metav1.Time
	if started {
		startedAt = metav1.Now()
		log.Info("container started", "command", argv)
		onStart(startedAt, containerID)
	}
	waitErr := cmd.Wait()
	finishedAt := metav1.Now()
	close(exited)
	<-killerDone
	// Whatever the command left running in its process group ends with it, as with a container.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-drained:
	case <-time.After(outputDrainTimeout):
		// A process that left the group still holds the output pipe; stop reading it.
		outR.Close()
		<-drained
	}
	outR.Close()

	if !started {
		log.Info("container could not start", "error", string(setupErr))
		return startError(containerID, "kubelet stand-in: %s", setupErr), nil
	}
	res := runResult{containerID: containerID, startedAt: startedAt, finishedAt: finishedAt}
	var ws syscall.WaitStatus
	if cmd.ProcessState != nil {
		ws, _ = cmd.ProcessState.Sys().(syscall.WaitStatus)
	}
	switch {
	case cmd.ProcessState == nil:
		res.exitCode, res.reason, res.message = startErrorExitCode, "Error", fmt.Sprintf("waiting for the process: %v", waitErr)
	case ws.Signaled():
		res.signal = int32(ws.Signal())
		res.exitCode = 128 + res.signal
	default:
		res.exitCode = int32(ws.ExitStatus())
	}
	if res.reason == "" {
		res.reason = "Completed"
		if res.exitCode != 0 {
			res.reason = "Error"
		}
	}
	if msg := readCapped(termPath, maxTerminationMessage); msg != "" {
		res.message = msg
	} else if c.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError && res.exitCode != 0 {
		res.message = tailLog(logPath, fallbackLines, fallbackBytes)
	}
	log.Info("container ended", "exitCode", res.exitCode, "signal", res.signal, "reason", res.reason)
	return res, nil
}

// killOnTerminate waits for the pod's termination (deletion, deadline, stand-in stop) and then ends
// the process group: SIGTERM, and SIGKILL after the grace period or at once when told to.
func (w *podWorker) killOnTerminate(pgid int, exited <-chan struct{}, log logr.Logger) {
	select {
	case <-exited:
		return
	case <-w.term.Done():
	}
	grace := time.Duration(0)
	var cause *stopCause
	if errors.As(context.Cause(w.term), &cause) {
		grace = cause.grace
	}
	log.Info("stopping container", "why", context.Cause(w.term).Error(), "grace", grace.String())
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-exited:
		return
	case <-t.C:
	case <-w.killNow:
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// mountWants lists the container's volume mounts and its termination-message file.
func (w *podWorker) mountWants(c *corev1.Container, env *envList, termPath string) ([]mountWant, error) {
	var wants []mountWant
	for _, m := range c.VolumeMounts {
		what := fmt.Sprintf("volumeMount %q", m.Name)
		src, ok := w.volumes[m.Name]
		if !ok {
			return nil, fmt.Errorf("%s names no volume of the pod", what)
		}
		sub := m.SubPath
		if m.SubPathExpr != "" {
			sub = expand(m.SubPathExpr, env.lookup)
		}
		if sub != "" {
			if !filepath.IsLocal(sub) {
				return nil, fmt.Errorf("%s: subPath %q leaves the volume", what, sub)
			}
			p := filepath.Join(src, sub)
			fi, err := os.Lstat(p)
			switch {
			case errors.Is(err, os.ErrNotExist):
				if err := makeInside(src, sub, true); err != nil {
					return nil, fmt.Errorf("%s: creating subPath %q: %w", what, sub, err)
				}
			case err != nil:
				return nil, err
			case fi.Mode()&os.ModeSymlink != 0:
				return nil, fmt.Errorf("%s: subPath %q is a symlink", what, sub)
			}
			src = p
		}
		fi, err := os.Stat(src)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		// ConfigMap, Secret, downward-API and projected volumes are always read-only, as with the kubelet.
		readOnly := m.ReadOnly || !w.writableVolume(m.Name)
		wants = append(wants, mountWant{what: what, target: m.MountPath, source: src, dir: fi.IsDir(), readOnly: readOnly})
	}
	tmp := c.TerminationMessagePath
	if tmp == "" {
		tmp = defaultTerminationMessagePath
	}
	wants = append(wants, mountWant{what: "terminationMessagePath", target: tmp, source: termPath})
	return wants, nil
}

// writableVolume: only emptyDir volumes may be mounted read-write.
func (w *podWorker) writableVolume(name string) bool {
	for _, v := range w.currentPod().Spec.Volumes {
		if v.Name == name {
			return v.EmptyDir != nil
		}
	}
	return false
}

// readCapped reads at most max bytes of a file ("" when it is missing).
func readCapped(path string, max int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, max))
	return string(b)
}

// tailLog is the last lines of the output, then at most maxBytes of those (the end is kept).
func tailLog(path string, lines, maxBytes int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const window = 256 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > window {
		if _, err := f.Seek(fi.Size()-window, io.SeekStart); err != nil {
			return ""
		}
	}
	b, _ := io.ReadAll(f)
	body := bytes.TrimSuffix(b, []byte("\n"))
	n := 0
	for i := len(body) - 1; i >= 0; i-- {
		if body[i] == '\n' {
			n++
			if n == lines {
				b = b[i+1:]
				break
			}
		}
	}
	if len(b) > maxBytes {
		b = b[len(b)-maxBytes:]
	}
	return string(b)
}

// prefixWriter writes whole lines, each with a prefix.
type prefixWriter struct {
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		_, _ = p.w.Write(append([]byte(p.prefix), p.buf[:i+1]...))
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

func (p *prefixWriter) flush() {
	if len(p.buf) > 0 {
		_, _ = p.w.Write(append(append([]byte(p.prefix), p.buf...), '\n'))
		p.buf = nil
	}
}
