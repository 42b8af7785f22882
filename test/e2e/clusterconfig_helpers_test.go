package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/go-logr/logr/testr"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	configv1 "github.com/openshift/api/config/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/test/harness"
)

// failTimeout covers a build that fails after the controller's retries of a transient failure
// (three retries with 10 s, 20 s and 40 s backoff, each attempt a pod).
const failTimeout = 5 * time.Minute

// ---- the build requests the pods got ----

// requestCapture records every build pod and request ConfigMap the API server sees from the
// moment it starts. The controller deletes both when a build ends, so they are caught by a watch
// rather than read afterwards; the ConfigMap is immutable, so what the watch sees is what the
// kubelet stand-in mounted.
type requestCapture struct {
	t    *testing.T
	mu   sync.Mutex
	cms  map[string]*corev1.ConfigMap
	pods map[string]*corev1.Pod
}

func (e *env) captureRequests() *requestCapture {
	e.t.Helper()
	rc := &requestCapture{t: e.t, cms: map[string]*corev1.ConfigMap{}, pods: map[string]*corev1.Pod{}}
	cs, err := kubernetes.NewForConfig(e.cp.Config)
	if err != nil {
		e.t.Fatal(err)
	}
	sel := labels.NewSelector()
	req, err := labels.NewRequirement(pipeline.LabelMachineOSConfig, selection.Exists, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	sel = sel.Add(*req)
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)

	cmList, err := cs.CoreV1().ConfigMaps(buildNamespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		e.t.Fatal(err)
	}
	podList, err := cs.CoreV1().Pods(buildNamespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		e.t.Fatal(err)
	}
	for i := range cmList.Items {
		rc.cms[cmList.Items[i].Name] = &cmList.Items[i]
	}
	for i := range podList.Items {
		rc.pods[podList.Items[i].Name] = &podList.Items[i]
	}
	start := func(rv string, w func(context.Context, metav1.ListOptions) (watch.Interface, error), record func(runtime.Object)) {
		rw, err := watchtools.NewRetryWatcherWithContext(ctx, rv, &cache.ListWatch{
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				o.LabelSelector = sel.String()
				return w(ctx, o)
			},
		})
		if err != nil {
			e.t.Fatal(err)
		}
		go func() {
			defer rw.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case ev, ok := <-rw.ResultChan():
					if !ok {
						return
					}
					if ev.Type == watch.Added || ev.Type == watch.Modified {
						record(ev.Object)
					}
				}
			}
		}()
	}
	start(cmList.ResourceVersion, cs.CoreV1().ConfigMaps(buildNamespace).Watch, func(o runtime.Object) {
		if cm, ok := o.(*corev1.ConfigMap); ok {
			rc.mu.Lock()
			if _, seen := rc.cms[cm.Name]; !seen {
				rc.cms[cm.Name] = cm.DeepCopy()
			}
			rc.mu.Unlock()
		}
	})
	start(podList.ResourceVersion, cs.CoreV1().Pods(buildNamespace).Watch, func(o runtime.Object) {
		if p, ok := o.(*corev1.Pod); ok {
			rc.mu.Lock()
			if _, seen := rc.pods[p.Name]; !seen {
				rc.pods[p.Name] = p.DeepCopy()
			}
			rc.mu.Unlock()
		}
	})
	return rc
}

// request is the build request the pod of a MachineOSBuild got, read the way the worker reads
// it: the ConfigMap laid out as the pod's request volume (its items) and read back with
// buildpod.ReadRequest.
func (rc *requestCapture) request(build string) buildpod.Request {
	rc.t.Helper()
	var pod *corev1.Pod
	var cm *corev1.ConfigMap
	eventually(rc.t, 30*time.Second, "the build pod and request ConfigMap of "+build, func(context.Context) (bool, error) {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		var names []string
		for n, p := range rc.pods {
			if p.Labels[pipeline.LabelMachineOSBuild] == build {
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			return false, nil
		}
		sort.Strings(names)
		pod = rc.pods[names[0]]
		for _, v := range pod.Spec.Volumes {
			if v.ConfigMap != nil {
				cm = rc.cms[v.ConfigMap.Name]
			}
		}
		return cm != nil, nil
	})
	var items []corev1.KeyToPath
	for _, v := range pod.Spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
			items = v.ConfigMap.Items
		}
	}
	payload := map[string][]byte{}
	for _, it := range items {
		if d, ok := cm.Data[it.Key]; ok {
			payload[it.Path] = []byte(d)
		} else if d, ok := cm.BinaryData[it.Key]; ok {
			payload[it.Path] = d
		} else {
			rc.t.Fatalf("pod %s mounts key %s, which ConfigMap %s does not have", pod.Name, it.Key, cm.Name)
		}
	}
	dir := rc.t.TempDir()
	harness.WriteAtomicVolume(rc.t, dir, payload)
	req, err := buildpod.ReadRequest(dir)
	if err != nil {
		rc.t.Fatalf("the request of pod %s does not read back: %v", pod.Name, err)
	}
	return req
}

// registriesConf is the part of a registries.conf (v2) the tests look at.
type registriesConf struct {
	UnqualifiedSearchRegistries []string `toml:"unqualified-search-registries"`
	Registries                  []struct {
		Prefix   string `toml:"prefix"`
		Location string `toml:"location"`
		Insecure bool   `toml:"insecure"`
		Blocked  bool   `toml:"blocked"`
		Mirrors  []struct {
			Location       string `toml:"location"`
			Insecure       bool   `toml:"insecure"`
			PullFromMirror string `toml:"pull-from-mirror"`
		} `toml:"mirror"`
	} `toml:"registry"`
}

func parseRegistriesConf(t *testing.T, raw []byte) registriesConf {
	t.Helper()
	var c registriesConf
	if _, err := toml.Decode(string(raw), &c); err != nil {
		t.Fatalf("registries.conf is not TOML: %v\n%s", err, raw)
	}
	return c
}

// mirrorsOf lists the mirror locations of the [[registry]] entry for prefix (nil, false: no entry).
func (c registriesConf) mirrorsOf(prefix string) ([]string, bool, bool) {
	for _, r := range c.Registries {
		if r.Prefix == prefix || (r.Prefix == "" && r.Location == prefix) {
			var out []string
			for _, m := range r.Mirrors {
				out = append(out, m.Location)
			}
			return out, r.Blocked, true
		}
	}
	return nil, false, false
}

// ---- cluster objects ----

// settle makes the controller plan from the cluster configuration created just before. Its
// informers are fed kind by kind with no order between kinds, so a MachineOSConfig created right
// after a mirror set can be planned without it, built, and superseded when the set arrives — as
// with any controller. Tests that count builds are not about that race, so they restart the
// controller: a fresh process lists everything before its workers start.
func (e *env) settle() {
	e.t.Helper()
	const started = `"Starting workers" controller="build"`
	before := strings.Count(e.ctrl.logs(), started)
	e.ctrl.restart()
	eventually(e.t, 2*time.Minute, "the restarted controller's build workers", func(context.Context) (bool, error) {
		return strings.Count(e.ctrl.logs(), started) > before, nil
	})
}

// updateImage changes image.config.openshift.io/cluster.
func (e *env) updateImage(change func(*configv1.Image)) {
	e.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		img := &configv1.Image{}
		if err := e.c.Get(e.t.Context(), client.ObjectKey{Name: "cluster"}, img); err != nil {
			return err
		}
		change(img)
		return e.c.Update(e.t.Context(), img)
	})
	if err != nil {
		e.t.Fatalf("updating the Image config: %v", err)
	}
}

// updateMOSC changes a MachineOSConfig, on a fresh copy and again on a conflict: the controller
// writes it too.
func (e *env) updateMOSC(name string, change func(*mosbv1.MachineOSConfig)) {
	e.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		m := &mosbv1.MachineOSConfig{}
		if err := e.c.Get(e.t.Context(), client.ObjectKey{Name: name}, m); err != nil {
			return err
		}
		change(m)
		return e.c.Update(e.t.Context(), m)
	})
	if err != nil {
		e.t.Fatalf("updating MachineOSConfig %s: %v", name, err)
	}
}

// trustCA puts each registry's CA into the additionalTrustedCA ConfigMap under its host..port key.
func (e *env) trustCA(regs ...*harness.Registry) {
	e.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm := &corev1.ConfigMap{}
		if err := e.c.Get(e.t.Context(), client.ObjectKey{Namespace: "openshift-config", Name: "registry-cas"}, cm); err != nil {
			return err
		}
		for _, r := range regs {
			cm.Data[caKey(r.Host)] = string(r.CA.PEM)
		}
		return e.c.Update(e.t.Context(), cm)
	})
	if err != nil {
		e.t.Fatalf("updating the trusted CA ConfigMap: %v", err)
	}
}

// caKey is the ConfigMap key of a registry's CA: ':' is spelled "..".
func caKey(host string) string { return strings.Replace(host, ":", "..", 1) }

// localhostAlias names a 127.0.0.1 registry as localhost:port: ImageContentPolicy's CRD wants
// host names that start with a letter.
func localhostAlias(host string) string {
	_, port, _ := strings.Cut(host, ":")
	return "localhost:" + port
}

// deadLocation is a host:port nothing listens on: connections are refused at once.
func deadLocation(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func digestOf(pullspec string) string { return pullspec[strings.LastIndex(pullspec, "@")+1:] }

func (e *env) create(objs ...client.Object) {
	e.t.Helper()
	for _, o := range objs {
		if err := e.c.Create(e.t.Context(), o); err != nil {
			e.t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

func idms(name string, entries ...configv1.ImageDigestMirrors) *configv1.ImageDigestMirrorSet {
	return &configv1.ImageDigestMirrorSet{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: configv1.ImageDigestMirrorSetSpec{ImageDigestMirrors: entries}}
}

func digestMirrors(source string, policy configv1.MirrorSourcePolicy, mirrors ...string) configv1.ImageDigestMirrors {
	e := configv1.ImageDigestMirrors{Source: source, MirrorSourcePolicy: policy}
	for _, m := range mirrors {
		e.Mirrors = append(e.Mirrors, configv1.ImageMirror(m))
	}
	return e
}

// mosc is a MachineOSConfig on the worker pool with the base image and pushspec given (empty:
// the cluster default base, and the env registry's os/<name>:latest).
func (e *env) mosc(name, content, base, pushspec string) *mosbv1.MachineOSConfig {
	m := e.newMOSC(name, content)
	m.Spec.BuildInputs.BaseOSImagePullspec = mosbv1.ImageDigestFormat(base)
	if pushspec != "" {
		m.Spec.BuildInputs.RenderedImagePushspec = mosbv1.ImageTagPushspec(pushspec)
	}
	return m
}

// ---- waiting on outcomes ----

// newestBuild is the most recently created MachineOSBuild of a MachineOSConfig, by the
// controller's nanosecond stamp (pipeline.AnnotationCreated): creationTimestamp has whole seconds,
// and a build that fails at once shares its second with the next.
func newestBuild(builds []mosbv1.MachineOSBuild) *mosbv1.MachineOSBuild {
	var n *mosbv1.MachineOSBuild
	for i := range builds {
		b := &builds[i]
		if n == nil || createdAt(n).Before(createdAt(b)) {
			n = b
		}
	}
	return n
}

// createdAt is a build's pipeline.AnnotationCreated stamp; zero when it has none (waitBuilt
// refuses that).
func createdAt(b *mosbv1.MachineOSBuild) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, b.Annotations[pipeline.AnnotationCreated])
	return t
}

// waitBuildFailed waits for a MachineOSConfig Degraded by a failed build, and returns that
// build and its Failed condition's message.
func (e *env) waitBuildFailed(name string) (*mosbv1.MachineOSBuild, string) {
	e.t.Helper()
	var failed *mosbv1.MachineOSBuild
	var msg string
	eventually(e.t, failTimeout, "MachineOSConfig "+name+" Degraded by a failed build", func(ctx context.Context) (bool, error) {
		m := &mosbv1.MachineOSConfig{}
		if err := e.c.Get(ctx, client.ObjectKey{Name: name}, m); err != nil {
			return false, err
		}
		if meta.IsStatusConditionTrue(m.Status.Conditions, mosbv1.MachineOSConfigReady) {
			return false, fmt.Errorf("%s is Ready with %s, want a failed build", name, m.Status.CurrentImagePullspec)
		}
		degraded := meta.FindStatusCondition(m.Status.Conditions, mosbv1.MachineOSConfigDegraded)
		if degraded == nil || degraded.Status != metav1.ConditionTrue {
			return false, fmt.Errorf("%s is not Degraded: %s", name, conditionsText(m.Status.Conditions))
		}
		// Degraded names the failed build; the newest by creation time could be a build started
		// in the same second.
		builds := e.builds(ctx, name)
		for i := range builds {
			b := &builds[i]
			if pipeline.Phase(b) == pipeline.PhaseFailed && strings.HasPrefix(degraded.Message, "MachineOSBuild "+b.Name+": ") {
				failed, msg = b, meta.FindStatusCondition(b.Status.Conditions, mosbv1.MachineOSBuildFailed).Message
				return true, nil
			}
		}
		return false, fmt.Errorf("%s is Degraded (%s: %s) naming no failed build of %d", name, degraded.Reason, degraded.Message, len(builds))
	})
	return failed, msg
}

// waitDegraded waits for Degraded with a reason, and returns the condition's message.
func (e *env) waitDegraded(name, reason string) string {
	e.t.Helper()
	var msg string
	eventually(e.t, time.Minute, name+" Degraded with "+reason, func(ctx context.Context) (bool, error) {
		m := &mosbv1.MachineOSConfig{}
		if err := e.c.Get(ctx, client.ObjectKey{Name: name}, m); err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(m.Status.Conditions, mosbv1.MachineOSConfigDegraded)
		if c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != m.Generation {
			return false, nil
		}
		if c.Reason != reason {
			return false, fmt.Errorf("reason %s, want %s: %s", c.Reason, reason, c.Message)
		}
		msg = c.Message
		return !meta.IsStatusConditionTrue(m.Status.Conditions, mosbv1.MachineOSConfigReady), nil
	})
	return msg
}

// waitBuilt waits until a MachineOSConfig has n MachineOSBuilds, the newest succeeded, and the
// status holds its image; it returns that build.
func (e *env) waitBuilt(name string, n int) *mosbv1.MachineOSBuild {
	e.t.Helper()
	var newest *mosbv1.MachineOSBuild
	eventually(e.t, buildTimeout, fmt.Sprintf("%s built by MachineOSBuild #%d", name, n), func(ctx context.Context) (bool, error) {
		builds := e.builds(ctx, name)
		m := &mosbv1.MachineOSConfig{}
		if err := e.c.Get(ctx, client.ObjectKey{Name: name}, m); err != nil {
			return false, err
		}
		for _, b := range builds {
			if createdAt(&b).IsZero() {
				return false, fmt.Errorf("MachineOSBuild %s has no %s stamp: which build is newest cannot be told", b.Name, pipeline.AnnotationCreated)
			}
		}
		newest = newestBuild(builds)
		if len(builds) == n && pipeline.Phase(newest) == pipeline.PhaseSucceeded &&
			string(m.Status.CurrentImagePullspec) == newest.Status.DigestedImagePushspec &&
			meta.IsStatusConditionTrue(m.Status.Conditions, mosbv1.MachineOSConfigReady) {
			return true, nil
		}
		var seen []string
		for _, b := range builds {
			seen = append(seen, fmt.Sprintf("%s %s %s", b.Name, pipeline.Phase(&b), conditionsText(b.Status.Conditions)))
		}
		return false, fmt.Errorf("%s has %d MachineOSBuilds (want %d) [%s]; its status names %q: %s",
			name, len(builds), n, strings.Join(seen, "; "), m.Status.CurrentImagePullspec, conditionsText(m.Status.Conditions))
	})
	return newest
}

// buildCount is how many MachineOSBuilds a MachineOSConfig has.
func (e *env) buildCount(name string) int { return len(e.builds(e.t.Context(), name)) }

// holdsBuildCount reports whether a MachineOSConfig keeps n MachineOSBuilds for d (polled):
// the number it ended with otherwise.
func (e *env) holdsBuildCount(name string, n int, d time.Duration) (int, bool) {
	deadline := time.Now().Add(d)
	for {
		if got := e.buildCount(name); got != n {
			return got, false
		}
		if time.Now().After(deadline) {
			return n, true
		}
		select {
		case <-e.t.Context().Done():
			return n, false
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// noPodsFor checks no build pod exists for a MachineOSConfig (right now).
func (e *env) noPodsFor(name string) {
	e.t.Helper()
	pods := &corev1.PodList{}
	if err := e.c.List(e.t.Context(), pods, client.InNamespace(buildNamespace), client.MatchingLabels{pipeline.LabelMachineOSConfig: name}); err != nil {
		e.t.Fatal(err)
	}
	if len(pods.Items) > 0 {
		e.t.Errorf("%s has build pods although its input is refused: %s", name, pods.Items[0].Name)
	}
}

// ---- registries ----

// hasManifest says whether a registry serves a reference (false on 404; other errors fail).
func hasManifest(t *testing.T, r *harness.Registry, ref string) bool {
	t.Helper()
	var opts []name.Option
	if r.CA == nil {
		opts = append(opts, name.Insecure)
	}
	parsed, err := name.ParseReference(ref, opts...)
	if err != nil {
		t.Fatal(err)
	}
	_, err = remote.Head(parsed, remote.WithAuth(r.Auth()), remote.WithTransport(r.Transport()), remote.WithContext(t.Context()))
	if err == nil {
		return true
	}
	if te, ok := err.(*transport.Error); ok && te.StatusCode == 404 {
		return false
	}
	t.Fatalf("asking %s for %s: %v", r.Host, ref, err)
	return false
}

// ---- files for mosb render ----

// writeManifests writes objects as YAML files, one per object, with apiVersion and kind.
func writeManifests(t *testing.T, dir string, scheme *runtime.Scheme, objs ...client.Object) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, o := range objs {
		o = o.DeepCopyObject().(client.Object)
		gvk, err := apiutil.GVKForObject(o, scheme)
		if err != nil {
			t.Fatal(err)
		}
		o.GetObjectKind().SetGroupVersionKind(gvk)
		o.SetManagedFields(nil)
		raw, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, fmt.Sprintf("%02d-%s-%s.yaml", i, strings.ToLower(gvk.Kind), o.GetName()))
		if err := os.WriteFile(file, raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// render runs `mosb render` and returns its stdout.
func render(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), mosbBinary(t), append([]string{"render"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mosb render %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// ---- controllers in this process ----

var skipNameValidation = true

// startManager runs a controller-runtime manager in this process against the env's control plane,
// with what setup adds to it, until the test ends. The cache options are the test's.
func startManager(t *testing.T, cp *harness.ControlPlane, name string, cacheOpts crcache.Options, setup func(ctrl.Manager) error) {
	t.Helper()
	mgr, err := ctrl.NewManager(cp.Config, ctrl.Options{
		Scheme:                 harness.Scheme(),
		Logger:                 testr.NewWithOptions(t, testr.Options{LogTimestamp: true}),
		Cache:                  cacheOpts,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Every test starts its own manager in this process: the name is reused on purpose.
		Controller: ctrlconfig.Controller{SkipNameValidation: &skipNameValidation},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := setup(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the %s manager: %v", name, err)
		}
	})
}

// startPinner runs the pinnedimages controller alone in a manager of its own, next to the
// controller process that builds.
func startPinner(t *testing.T, cfg *pipeline.PinnedImagesReconciler, cp *harness.ControlPlane) {
	t.Helper()
	startManager(t, cp, "pinnedimages", crcache.Options{}, func(mgr ctrl.Manager) error {
		cfg.Client = mgr.GetClient()
		return cfg.SetupWithManager(t.Context(), mgr)
	})
}

// eventsFor lists the events about an object (by kind and name), oldest first.
func eventsFor(ctx context.Context, c client.Client, kind, objName string) ([]corev1.Event, error) {
	list := &corev1.EventList{}
	if err := c.List(ctx, list); err != nil {
		return nil, err
	}
	var out []corev1.Event
	for _, ev := range list.Items {
		if ev.InvolvedObject.Kind == kind && ev.InvolvedObject.Name == objName {
			out = append(out, ev)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreationTimestamp.Before(&out[j].CreationTimestamp) })
	return out, nil
}

// conditionsText is conditions as one line, for a test's report of what it saw.
func conditionsText(conds []metav1.Condition) string {
	var parts []string
	for _, c := range conds {
		parts = append(parts, fmt.Sprintf("%s=%s %s %q", c.Type, c.Status, c.Reason, c.Message))
	}
	return strings.Join(parts, "; ")
}
