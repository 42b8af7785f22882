package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/registry"
	"github.com/mosb-dev/mosb/test/harness"
)

// workerPod is a build pod as kubelet would start it, without kubelet: the controller's plan
// turned into PodObjects, every volume laid out in a directory of its own, and the container's
// command rewritten to point at those directories.
type workerPod struct {
	cm   *corev1.ConfigMap
	pod  *corev1.Pod
	root string
	// dirs maps each mount path of the build container to where it was laid out.
	dirs map[string]string
	// fixed are mount paths the command does not name (paths buildah writes to whatever it is told).
	fixed []string
	// args is the container's command after "mosb", with its paths mapped into dirs.
	args           []string
	terminationLog string
}

type workerPodOptions struct {
	target   string
	content  string
	untagged bool
	// pushSecret is the push Secret's .dockerconfigjson; nil: the fixture's credentials.
	pushSecret []byte
	// cacheRepo is the request's cache repository (none when empty).
	cacheRepo string
}

func (f *buildFixture) workerPod(t *testing.T, o workerPodOptions) *workerPod {
	t.Helper()
	mc := f.renderedMachineConfig(t)
	// Planned exactly as the controller plans: validation, assembly, registry configuration.
	plan, err := prepare(&fileInputs{
		machineOSConfig: f.mosc(t, "worker", o.target, map[string]string{"": o.content}),
		machineConfig:   mc, clusterConfig: f.clusterDir, authFile: f.authFile,
		arches: []string{"amd64"}, namespace: "mosb-system",
	}, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Arches) != 1 {
		t.Fatalf("planned %d architectures", len(plan.Arches))
	}
	if _, ok := plan.Arches[0].Build.ContextFiles["machineconfig/currentconfig"]; !ok {
		t.Fatalf("the plan's context has no nested path to carry: %v", plan.Arches[0].Build.ContextFiles)
	}
	deadline := int64(600)
	cm, pod, err := buildpod.Objects(buildpod.Request{
		Name: "worker-0123456789-amd64", Namespace: "mosb-system",
		Owner: metav1.OwnerReference{APIVersion: "machineconfiguration.openshift.io/v1alpha1", Kind: "MachineOSBuild", Name: "worker-0123456789", UID: "uid-1"},
		Build: plan.Arches[0].Build, Target: plan.Target, Untagged: o.untagged, Registry: plan.Registry,
		PullSecret: "pull", PushSecret: "push", BuilderImage: "example.com/mosb:test", ActiveDeadlineSeconds: &deadline,
		CacheRepo: o.cacheRepo,
	})
	if err != nil {
		t.Fatal(err)
	}
	push := o.pushSecret
	if push == nil {
		push = f.reg.DockerConfigJSON()
	}
	secrets := map[string]*corev1.Secret{
		"pull": {Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: f.reg.DockerConfigJSON()}},
		"push": {Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: push}},
	}

	w := &workerPod{cm: cm, pod: pod, root: t.TempDir(), dirs: map[string]string{}}
	c := pod.Spec.Containers[0]
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		vols[v.Name] = v
	}
	laidOut := map[string]bool{}
	for _, m := range c.VolumeMounts {
		dir := filepath.Join(w.root, m.Name)
		w.dirs[m.MountPath] = filepath.Join(dir, m.SubPath)
		if laidOut[m.Name] {
			continue
		}
		laidOut[m.Name] = true
		v := vols[m.Name]
		switch {
		case v.ConfigMap != nil:
			if v.ConfigMap.Name != cm.Name {
				t.Fatalf("volume %s is ConfigMap %s, not the request", m.Name, v.ConfigMap.Name)
			}
			data := map[string][]byte{}
			for k, s := range cm.Data {
				data[k] = []byte(s)
			}
			for k, b := range cm.BinaryData {
				data[k] = b
			}
			kubeletWrite(t, dir, data, v.ConfigMap.Items)
		case v.Secret != nil:
			s, ok := secrets[v.Secret.SecretName]
			if !ok {
				t.Fatalf("the pod mounts secret %q", v.Secret.SecretName)
			}
			kubeletWrite(t, dir, s.Data, v.Secret.Items)
		case v.EmptyDir != nil:
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("volume %s of an unexpected kind", m.Name)
		}
	}
	for _, m := range c.VolumeMounts {
		// kubelet creates a subPath in its volume when it is missing.
		if err := os.MkdirAll(w.dirs[m.MountPath], 0o755); err != nil && m.SubPath != "" {
			t.Fatal(err)
		}
	}
	w.terminationLog = filepath.Join(w.root, "termination-log")
	named := map[string]bool{}
	mapPath := func(p string) string {
		if p == "" {
			return p
		}
		if p == c.TerminationMessagePath {
			return w.terminationLog
		}
		for mount, dir := range w.dirs {
			if p == mount || strings.HasPrefix(p, mount+"/") {
				named[mount] = true
				return dir + strings.TrimPrefix(p, mount)
			}
		}
		t.Fatalf("the pod's command names %s, which is in no volume", p)
		return ""
	}
	if len(c.Command) < 2 || c.Command[0] != "mosb" || c.Command[1] != "worker" {
		t.Fatalf("command %q", c.Command)
	}
	w.args = []string{"worker"}
	for _, a := range c.Command[2:] {
		flag, val, ok := strings.Cut(a, "=")
		if !ok {
			t.Fatalf("command argument %q is not --flag=value", a)
		}
		w.args = append(w.args, flag+"="+mapPath(val))
	}
	for _, e := range c.Env {
		t.Setenv(e.Name, mapPath(e.Value))
	}
	for mount := range w.dirs {
		if !named[mount] {
			w.fixed = append(w.fixed, mount)
		}
	}
	sort.Strings(w.fixed)
	return w
}

// kubeletWrite lays a ConfigMap or Secret volume out as kubelet's atomic writer does: the
// projected keys (items, or every key) in a timestamped directory, "..data" linking to it, and a
// symlink per top-level name into "..data".
func kubeletWrite(t *testing.T, dir string, data map[string][]byte, items []corev1.KeyToPath) {
	t.Helper()
	payload := map[string][]byte{}
	if len(items) == 0 {
		payload = data
	}
	for _, it := range items {
		d, ok := data[it.Key]
		if !ok {
			t.Fatalf("kubelet would not mount %s: key %q is missing", dir, it.Key)
		}
		payload[it.Path] = d
	}
	harness.WriteAtomicVolume(t, dir, payload)
}

func (w *workerPod) result(t *testing.T) (buildpod.Result, bool) {
	t.Helper()
	raw, err := os.ReadFile(w.terminationLog)
	if os.IsNotExist(err) || (err == nil && len(raw) == 0) {
		return buildpod.Result{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, failed := buildpod.ParseFailure(string(raw)); failed {
		return buildpod.Result{}, false
	}
	res, err := buildpod.ParseResult(string(raw))
	if err != nil {
		t.Fatalf("the termination log holds no worker result: %v\n%s", err, raw)
	}
	return res, true
}

// failure is the failure the worker wrote to its termination log.
func (w *workerPod) failure(t *testing.T) buildpod.Failure {
	t.Helper()
	raw, err := os.ReadFile(w.terminationLog)
	if err != nil {
		t.Fatalf("no termination log after a failure: %v", err)
	}
	f, ok := buildpod.ParseFailure(string(raw))
	if !ok {
		t.Fatalf("the termination log holds no failure:\n%s", raw)
	}
	return f
}

func TestWorkerBuildsPushesAndReportsInTheTerminationLog(t *testing.T) {
	f := newBuildFixture(t, "amd64")
	target := f.reg.Host + "/os/worker:latest"
	// The snippet looks for anything credential-like the build could see and keeps it.
	leak := "RUN (env; find / -xdev \\( -name '*auth*' -o -name '.docker*' \\) 2>/dev/null; cat /run/secrets/* /var/run/secrets/mosb/*/* 2>/dev/null) > /leak.txt || true"
	w := f.workerPod(t, workerPodOptions{target: target, content: leak + "\nRUN uname -m > /etc/built-on", untagged: true})

	res := runCLI(t, w.args...)
	if res.code != 0 {
		t.Fatalf("worker exited %d:\n%s", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, "STEP") {
		t.Errorf("no build progress on stderr:\n%s", res.stderr)
	}
	got, ok := w.result(t)
	if !ok {
		t.Fatal("the termination log is empty")
	}
	if line := res.lastLine(); line != mustJSON(t, got) {
		t.Errorf("the last stdout line %q is not the result %q", line, mustJSON(t, got))
	}
	if got.Arch != "amd64" || got.Platform.OS != "linux" || got.Platform.Architecture != "amd64" {
		t.Errorf("result %+v", got)
	}
	if !strings.HasPrefix(got.Pullspec, f.reg.Host+"/os/worker@sha256:") {
		t.Errorf("pullspec %q is not in the target's repository by digest", got.Pullspec)
	}
	img, served := f.pull(t, got.Pullspec)
	if served != got.Digest {
		t.Errorf("the registry serves %s for %s", served, got.Pullspec)
	}
	files := imageFiles(t, img)
	if files["etc/built-on"] != "x86_64\n" {
		t.Errorf("RUN uname -m wrote %q", files["etc/built-on"])
	}
	if !strings.Contains(files["etc/machine-config-daemon/currentconfig"], "rendered-worker-abc") {
		t.Errorf("the rendered MachineConfig (a nested context path) is not in the image: %q", files["etc/machine-config-daemon/currentconfig"])
	}
	if strings.Contains(files["leak.txt"], f.reg.Password) || strings.Contains(res.stdout+res.stderr, f.reg.Password) {
		t.Error("a registry password reached the build or the output")
	}
	// Untagged: the controller tags (or pushes the index) once every architecture is in.
	ref, err := name.ParseReference(target)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Head(ref, remote.WithAuth(f.reg.Auth()), remote.WithTransport(f.reg.Transport()), remote.WithContext(t.Context())); err == nil {
		t.Errorf("an untagged build created tag %s", target)
	}
}

func TestWorkerMalformedRequestExitsTwo(t *testing.T) {
	f := newBuildFixture(t)
	for name, tc := range map[string]struct {
		pushSecret []byte
		corrupt    func(t *testing.T, w *workerPod)
		says       string
	}{
		"request of another layout version": {corrupt: func(t *testing.T, w *workerPod) {
			p, err := filepath.EvalSymlinks(filepath.Join(w.dirs[buildpod.RequestDir], "request.json"))
			if err != nil {
				t.Fatal(err)
			}
			replaceFile(t, p, `{"version":99}`)
		}, says: "version"},
		"no request": {corrupt: func(t *testing.T, w *workerPod) {
			if err := os.RemoveAll(w.dirs[buildpod.RequestDir]); err != nil {
				t.Fatal(err)
			}
		}, says: "request"},
		"push secret not JSON": {pushSecret: []byte("user:password"), says: "JSON"},
		"push secret of another type": {corrupt: func(t *testing.T, w *workerPod) {
			dir := w.dirs[buildpod.PushSecretDir]
			if err := os.Rename(filepath.Join(dir, ".dockerconfigjson"), filepath.Join(dir, "config.json")); err != nil {
				t.Fatal(err)
			}
		}, says: ".dockerconfigjson"},
	} {
		t.Run(name, func(t *testing.T) {
			w := f.workerPod(t, workerPodOptions{target: "registry.example.com/os/x:latest", content: "RUN true", pushSecret: tc.pushSecret})
			if tc.corrupt != nil {
				tc.corrupt(t, w)
			}
			res := runCLI(t, w.args...)
			if res.code != 2 {
				t.Fatalf("exit %d, want 2:\n%s", res.code, res.stderr)
			}
			if last := lastLine(res.stderr); !strings.Contains(last, tc.says) {
				t.Errorf("the last stderr line does not say %q: %s", tc.says, last)
			}
			if _, ok := w.result(t); ok {
				t.Error("a failed worker wrote a result")
			}
			if f := w.failure(t); f.Reason != buildpod.ReasonInvalidRequest || f.Retryable {
				t.Errorf("failure %+v, want InvalidRequest, not retryable", f)
			}
		})
	}
}

func TestWorkerWrongPushCredentialsExitsOne(t *testing.T) {
	f := newBuildFixture(t, "amd64")
	w := f.workerPod(t, workerPodOptions{
		target: f.reg.Host + "/os/creds:latest", content: "RUN true",
		pushSecret: dockerConfig(f.reg.Host, f.reg.Username, "not-the-password"),
	})
	res := runCLI(t, w.args...)
	if res.code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", res.code, res.stderr)
	}
	last := lastLine(res.stderr)
	for _, want := range []string{"mosb:", "credentials", "push secret", f.reg.Host} {
		if !strings.Contains(last, want) {
			t.Errorf("the last stderr line (the termination message under FallbackToLogsOnError) does not say %q: %s", want, last)
		}
	}
	if strings.Contains(res.stdout+res.stderr, "not-the-password") {
		t.Error("the password reached the output")
	}
	if _, ok := w.result(t); ok {
		t.Error("a failed worker wrote a result")
	}
	fail := w.failure(t)
	if fail.Reason != buildpod.ReasonPushFailed || fail.Retryable || !strings.Contains(fail.Message, "credentials") || !strings.Contains(fail.Message, f.reg.Host) {
		t.Errorf("failure %+v: want PushFailed, not retryable, saying credentials and naming %s", fail, f.reg.Host)
	}
	if strings.Contains(fail.Message, "not-the-password") {
		t.Error("the password reached the termination log")
	}
}

func TestWorkerFailedRunReportsBuildFailedWithTheLogTail(t *testing.T) {
	f := newBuildFixture(t, "amd64")
	w := f.workerPod(t, workerPodOptions{target: f.reg.Host + "/os/fails:latest", content: "RUN echo about-to-fail && false"})
	res := runCLI(t, w.args...)
	if res.code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", res.code, res.stderr)
	}
	fail := w.failure(t)
	if fail.Reason != buildpod.ReasonBuildFailed || fail.Retryable {
		t.Errorf("failure %+v, want BuildFailed, not retryable", fail)
	}
	for _, want := range []string{"about-to-fail", "RUN echo about-to-fail && false", "the Containerfile did not build"} {
		if !strings.Contains(fail.Message, want) {
			t.Errorf("the failure message lacks %q (the log tail):\n%s", want, fail.Message)
		}
	}
}

// TestWorkerBuildsWithOnlyThePodsCapabilities runs the worker as the pod's securityContext
// would: as root with only the capabilities it adds (as the bounding set, so nothing can gain
// more), no_new_privs when allowPrivilegeEscalation is false, and a read-only root filesystem
// where only the pod's volumes are writable, each at its mount path. It then takes each
// capability away in turn, to show that every one of them is needed. It does not reproduce the
// runtime's seccomp or AppArmor profiles.
func TestWorkerBuildsWithOnlyThePodsCapabilities(t *testing.T) {
	for _, tool := range []string{"setpriv", "unshare", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPED LOUDLY: %s (util-linux) is missing", tool)
		}
	}
	f := newBuildFixture(t, "amd64")
	// Unpacking a layer, COPY, a RUN as root that chowns, and a RUN as another user.
	content := "RUN /bin/busybox touch /owned && /bin/busybox chown 1234:1234 /owned\nUSER 1234\nRUN /bin/busybox id -u > /tmp/uid\nUSER 0"
	build := func(t *testing.T, drop corev1.Capability) (*workerPod, string, error) {
		w := f.workerPod(t, workerPodOptions{target: f.reg.Host + "/os/caps:latest", content: content})
		stderr, err := w.runConfined(t, drop)
		return w, stderr, err
	}
	w, stderr, err := build(t, "")
	if err != nil {
		t.Fatalf("the worker failed in the pod's security context: %v\n%s", err, stderr)
	}
	got, ok := w.result(t)
	if !ok {
		t.Fatalf("no result:\n%s", stderr)
	}
	img, _ := f.pull(t, got.Pullspec)
	if uid := imageFiles(t, img)["tmp/uid"]; uid != "1234\n" {
		t.Errorf("RUN as USER 1234 wrote uid %q", uid)
	}
	for _, c := range w.pod.Spec.Containers[0].SecurityContext.Capabilities.Add {
		t.Run("without "+string(c), func(t *testing.T) {
			_, stderr, err := build(t, c)
			if err == nil {
				t.Fatalf("the build succeeded without %s: the pod need not add it", c)
			}
			// The worker itself ran and reports a failed build, not a broken test set-up.
			if last := lastLine(stderr); !strings.HasPrefix(last, "mosb: building amd64 image") {
				t.Errorf("the worker did not fail building: %s", last)
			} else {
				t.Log(last)
			}
		})
	}
}

// runConfined runs the pod's command in a mount namespace of its own, confined as the build
// container's securityContext says, less one capability (drop) when given.
func (w *workerPod) runConfined(t *testing.T, drop corev1.Capability) (string, error) {
	t.Helper()
	c := w.pod.Spec.Containers[0]
	sc := c.SecurityContext
	caps := []string{"-all"}
	for _, cp := range sc.Capabilities.Add {
		if cp != drop {
			caps = append(caps, "+"+strings.ToLower(string(cp)))
		}
	}
	worker := []string{"setpriv", "--bounding-set=" + strings.Join(caps, ","), "--inh-caps=-all"}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		worker = append(worker, "--no-new-privs")
	}
	worker = append(worker, os.Args[0], "-test.run=^TestWorkerHelperProcess$")

	if err := os.WriteFile(w.terminationLog, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	script := "set -e\n"
	bind := func(src, dst string, ro bool) {
		script += "mount --bind " + src + " " + dst + "\n"
		if ro {
			script += "mount -o remount,bind,ro " + dst + "\n"
		}
	}
	fixed := map[string]bool{}
	for _, p := range w.fixed {
		fixed[p] = true
	}
	for _, m := range c.VolumeMounts {
		dir := w.dirs[m.MountPath]
		if !fixed[m.MountPath] {
			// The command names it (mapped to dir): a mount of its own, writable or not.
			bind(dir, dir, m.ReadOnly)
			continue
		}
		// A path buildah writes to whatever it is told: mount it where the pod has it. Only
		// standard writable directories qualify, since the mount point is made on this host.
		if !strings.HasPrefix(m.MountPath, "/run/") && m.MountPath != "/var/tmp" {
			t.Fatalf("the pod mounts %s, which this test does not create on the host", m.MountPath)
		}
		script += "mkdir -p " + m.MountPath + "\n"
		bind(dir, m.MountPath, m.ReadOnly)
	}
	bind(w.terminationLog, w.terminationLog, false)
	if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		// "bind" makes the remount change this namespace's mount only, never the host's.
		script += "mount -o remount,bind,ro /\n"
		script += "if mountpoint -q /tmp; then mount -o remount,bind,ro /tmp; fi\n"
		script += "if mountpoint -q /run; then mount -o remount,bind,ro /run; fi\n"
	}
	script += `exec "$@"` + "\n"
	args := append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "sh"}, worker...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", args...)
	cmd.Env = append(os.Environ(), "MOSB_WORKER_HELPER_ARGS="+strings.Join(w.args, "\x1f"))
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	err := cmd.Run()
	return stderr.String(), err
}

// TestWorkerHelperProcess is `mosb worker` in a process of its own, for the capability test.
func TestWorkerHelperProcess(t *testing.T) {
	args := os.Getenv("MOSB_WORKER_HELPER_ARGS")
	if args == "" {
		return
	}
	os.Exit(run(context.Background(), strings.Split(args, "\x1f"), os.Stdout, os.Stderr))
}

func replaceFile(t *testing.T, p, data string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o444); err != nil {
		t.Fatal(err)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWorkerCacheGetsOnlyTheCacheRepositorysCredential(t *testing.T) {
	push, err := registry.ParseDockerConfigJSON("push", []byte(`{"auths":{
		"registry.example.com:5000":{"auth":"`+base64.StdEncoding.EncodeToString([]byte("pusher:push-pass"))+`"},
		"other.example.com":{"auth":"`+base64.StdEncoding.EncodeToString([]byte("other:other-pass"))+`"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	c, err := cacheFor("registry.example.com:5000/os/cache", push)
	if err != nil {
		t.Fatal(err)
	}
	var file struct{ Auths map[string]json.RawMessage }
	if err := json.Unmarshal(c.Auth, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Auths) != 1 || file.Auths["registry.example.com:5000/os/cache"] == nil {
		t.Errorf("the cache's auth file holds %v, want the cache repository's entry only", keysOf(file.Auths))
	}
	if bytes.Contains(c.Auth, []byte(base64.StdEncoding.EncodeToString([]byte("other:other-pass")))) {
		t.Error("another registry's push credential reached buildah")
	}
	// No credential for the cache: buildah goes there anonymously.
	if c, err := cacheFor("elsewhere.example.com/cache", push); err != nil || c.Auth != nil {
		t.Errorf("cache without a credential: %v, %v", c, err)
	}
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
