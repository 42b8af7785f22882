package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	configv1 "github.com/openshift/api/config/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/test/harness"
)

const buildTimeout = 3 * time.Minute

func (e *env) newMOSC(name, content string) *mosbv1.MachineOSConfig {
	m := harness.MachineOSConfig(name, poolName, "", e.reg.Host+"/os/"+name+":latest")
	if content != "" {
		m.Spec.BuildInputs.Containerfile = []mosbv1.MachineOSContainerfile{{Content: content}}
	}
	return m
}

func (e *env) get(name string) *mosbv1.MachineOSConfig {
	m := &mosbv1.MachineOSConfig{}
	if err := e.c.Get(e.t.Context(), client.ObjectKey{Name: name}, m); err != nil {
		e.t.Fatal(err)
	}
	return m
}

func (e *env) builds(ctx context.Context, mosc string) []mosbv1.MachineOSBuild {
	list := &mosbv1.MachineOSBuildList{}
	if err := e.c.List(ctx, list, client.MatchingLabels{pipeline.LabelMachineOSConfig: mosc}); err != nil {
		e.t.Fatal(err)
	}
	return list.Items
}

// waitReady waits until the MachineOSConfig's status holds the image of its current generation.
func (e *env) waitReady(name string) *mosbv1.MachineOSConfig {
	e.t.Helper()
	var m *mosbv1.MachineOSConfig
	eventually(e.t, buildTimeout, "MachineOSConfig "+name+" Ready with an image", func(ctx context.Context) (bool, error) {
		m = &mosbv1.MachineOSConfig{}
		if err := e.c.Get(ctx, client.ObjectKey{Name: name}, m); err != nil {
			return false, err
		}
		// A Degraded condition may predate the change being waited for: report it only on timeout.
		var degraded error
		if c := meta.FindStatusCondition(m.Status.Conditions, mosbv1.MachineOSConfigDegraded); c != nil && c.Status == metav1.ConditionTrue {
			degraded = fmt.Errorf("Degraded: %s: %s", c.Reason, c.Message)
		}
		return meta.IsStatusConditionTrue(m.Status.Conditions, mosbv1.MachineOSConfigReady) &&
			m.Status.ObservedGeneration == m.Generation && m.Status.CurrentImagePullspec != "", degraded
	})
	return m
}

// servedDigest is the digest the registry serves for a pullspec.
func (e *env) servedDigest(spec string) string {
	ref, err := name.ParseReference(spec)
	if err != nil {
		e.t.Fatal(err)
	}
	desc, err := remote.Head(ref, remote.WithAuth(e.reg.Auth()), remote.WithTransport(e.reg.Transport()), remote.WithContext(e.t.Context()))
	if err != nil {
		e.t.Fatalf("the registry does not serve %s: %v", spec, err)
	}
	return desc.Digest.String()
}

func TestMachineOSConfigIsBuiltOnceAndKeptCurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	m := e.newMOSC("worker", "RUN echo first > /etc/first")
	if err := e.c.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	m = e.waitReady("worker")

	target := e.reg.Host + "/os/worker:latest"
	if want := e.reg.Host + "/os/worker@" + e.servedDigest(target); string(m.Status.CurrentImagePullspec) != want {
		t.Errorf("status.currentImagePullspec = %s, the registry serves %s", m.Status.CurrentImagePullspec, want)
	}
	if m.Spec.BuildInputs.ReleaseVersion != "4.16.0-e2e" {
		t.Errorf("releaseVersion was not populated from machine-config-osimageurl: %q", m.Spec.BuildInputs.ReleaseVersion)
	}
	builds := e.builds(ctx, "worker")
	if len(builds) != 1 {
		t.Fatalf("%d MachineOSBuilds, want 1", len(builds))
	}
	b := builds[0]
	if !strings.HasPrefix(b.Name, "worker-") || b.Spec.BaseOSImagePullspec != e.base || b.Spec.RenderedMachineConfig != renderedName || b.Spec.ReleaseVersion != "4.16.0-e2e" {
		t.Errorf("the MachineOSBuild does not record its inputs: %+v", b.Spec)
	}
	if pipeline.Phase(&b) != pipeline.PhaseSucceeded || b.Status.DigestedImagePushspec != string(m.Status.CurrentImagePullspec) || len(b.Status.Architectures) != 1 || b.Status.Architectures[0].PodName == "" {
		t.Errorf("MachineOSBuild status: %+v", b.Status)
	}

	// Re-applying the same spec and restarting the controller start no build.
	m.Labels = map[string]string{"touched": "yes"}
	if err := e.c.Update(ctx, m); err != nil {
		t.Fatal(err)
	}
	e.ctrl.restart()
	e.assertBuildsStay("worker", 1, 10*time.Second)

	// Changing the user content starts exactly one build.
	m = e.get("worker")
	m.Spec.BuildInputs.Containerfile[0].Content = "RUN echo second > /etc/second"
	if err := e.c.Update(ctx, m); err != nil {
		t.Fatal(err)
	}
	before := m.Status.CurrentImagePullspec
	eventually(t, buildTimeout, "a new image in status", func(ctx context.Context) (bool, error) {
		m := &mosbv1.MachineOSConfig{}
		if err := e.c.Get(ctx, client.ObjectKey{Name: "worker"}, m); err != nil {
			return false, err
		}
		return m.Status.CurrentImagePullspec != before && m.Status.ObservedGeneration == m.Generation &&
			meta.IsStatusConditionTrue(m.Status.Conditions, mosbv1.MachineOSConfigReady), nil
	})
	if n := len(e.builds(ctx, "worker")); n != 2 {
		t.Errorf("%d MachineOSBuilds after one change, want 2", n)
	}
	e.assertNoBuildPods("worker")
}

func TestNewerInputsSupersedeARunningBuild(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	m := e.newMOSC("slow", "RUN sleep 30")
	if err := e.c.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	var first string
	eventually(t, time.Minute, "the first build's pod running", func(ctx context.Context) (bool, error) {
		pods := &corev1.PodList{}
		if err := e.c.List(ctx, pods, client.InNamespace(buildNamespace), client.MatchingLabels{pipeline.LabelMachineOSConfig: "slow"}); err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				first = p.Labels[pipeline.LabelMachineOSBuild]
				return true, nil
			}
		}
		return false, nil
	})
	m = e.get("slow")
	m.Spec.BuildInputs.Containerfile[0].Content = "RUN echo fast > /etc/fast"
	if err := e.c.Update(ctx, m); err != nil {
		t.Fatal(err)
	}
	m = e.waitReady("slow")
	var superseded, latest *mosbv1.MachineOSBuild
	for _, b := range e.builds(ctx, "slow") {
		b := b
		if b.Name == first {
			superseded = &b
		} else {
			latest = &b
		}
	}
	if superseded == nil || latest == nil {
		t.Fatalf("want the first and the latest build, got %v", e.builds(ctx, "slow"))
	}
	c := meta.FindStatusCondition(superseded.Status.Conditions, mosbv1.MachineOSBuildInterrupted)
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != pipeline.ReasonSuperseded {
		t.Errorf("the first build is not Interrupted/Superseded: %+v", superseded.Status.Conditions)
	}
	if superseded.Status.DigestedImagePushspec != "" {
		t.Errorf("the superseded build recorded an image: %s", superseded.Status.DigestedImagePushspec)
	}
	if string(m.Status.CurrentImagePullspec) != latest.Status.DigestedImagePushspec {
		t.Errorf("status holds %s, the latest build made %s", m.Status.CurrentImagePullspec, latest.Status.DigestedImagePushspec)
	}
	e.assertNoBuildPods("slow")
}

func TestInvalidInputsGetTheirReasonAndNoPod(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	cases := []struct {
		name   string
		reason string
		break_ func(*mosbv1.MachineOSConfig)
		fix    func(*mosbv1.MachineOSConfig)
	}{
		{"nopool", pipeline.ReasonPoolNotFound,
			func(m *mosbv1.MachineOSConfig) { m.Spec.MachineConfigPool.Name = "infra" },
			func(m *mosbv1.MachineOSConfig) { m.Spec.MachineConfigPool.Name = poolName }},
		{"nosecret", pipeline.ReasonSecretNotFound,
			func(m *mosbv1.MachineOSConfig) { m.Spec.BuildInputs.RenderedImagePushSecret.Name = "missing" },
			func(m *mosbv1.MachineOSConfig) { m.Spec.BuildInputs.RenderedImagePushSecret.Name = "push" }},
		{"badcf", pipeline.ReasonInvalidContainerfile,
			func(m *mosbv1.MachineOSConfig) { m.Spec.BuildInputs.Containerfile[0].Content = "RUN true\nFROBNICATE" },
			func(m *mosbv1.MachineOSConfig) { m.Spec.BuildInputs.Containerfile[0].Content = "RUN true" }},
	}
	for _, tc := range cases {
		m := e.newMOSC(tc.name, "RUN true")
		tc.break_(m)
		if err := e.c.Create(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// The cluster's Image config blocks a registry: a push there is refused before any pod.
	img := &configv1.Image{}
	if err := e.c.Get(ctx, client.ObjectKey{Name: "cluster"}, img); err != nil {
		t.Fatal(err)
	}
	img.Spec.RegistrySources.BlockedRegistries = []string{"blocked.example.com"}
	if err := e.c.Update(ctx, img); err != nil {
		t.Fatal(err)
	}
	blocked := e.newMOSC("blocked", "RUN true")
	blocked.Spec.BuildInputs.RenderedImagePushspec = "blocked.example.com/os/blocked:latest"
	if err := e.c.Create(ctx, blocked); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, struct {
		name   string
		reason string
		break_ func(*mosbv1.MachineOSConfig)
		fix    func(*mosbv1.MachineOSConfig)
	}{"blocked", pipeline.ReasonRegistryBlocked, nil, func(m *mosbv1.MachineOSConfig) {
		m.Spec.BuildInputs.RenderedImagePushspec = mosbv1.ImageTagPushspec(e.reg.Host + "/os/blocked:latest")
	}})
	// A secret of the wrong type is InvalidSecret; fixing the secret (not the MachineOSConfig) clears it.
	bad := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: buildNamespace, Name: "opaque"}, Data: map[string][]byte{"x": []byte("y")}}
	if err := e.c.Create(ctx, bad); err != nil {
		t.Fatal(err)
	}
	m := e.newMOSC("opaquesecret", "RUN true")
	m.Spec.BuildInputs.BaseImagePullSecret.Name = "opaque"
	if err := e.c.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, struct {
		name   string
		reason string
		break_ func(*mosbv1.MachineOSConfig)
		fix    func(*mosbv1.MachineOSConfig)
	}{name: "opaquesecret", reason: pipeline.ReasonInvalidSecret})

	for _, tc := range cases {
		eventually(t, time.Minute, tc.name+" Degraded with "+tc.reason, func(ctx context.Context) (bool, error) {
			m := &mosbv1.MachineOSConfig{}
			if err := e.c.Get(ctx, client.ObjectKey{Name: tc.name}, m); err != nil {
				return false, err
			}
			c := meta.FindStatusCondition(m.Status.Conditions, mosbv1.MachineOSConfigDegraded)
			if c == nil || c.Status != metav1.ConditionTrue {
				return false, nil
			}
			if c.Reason != tc.reason {
				return false, fmt.Errorf("reason %s, want %s: %s", c.Reason, tc.reason, c.Message)
			}
			if !strings.Contains(c.Message, "MachineOSConfig "+tc.name) {
				t.Errorf("%s: the message does not name the object: %s", tc.name, c.Message)
			}
			return !meta.IsStatusConditionTrue(m.Status.Conditions, mosbv1.MachineOSConfigReady), nil
		})
	}
	for _, tc := range cases {
		e.assertBuildsStay(tc.name, 0, 0)
		e.assertNoBuildPods(tc.name)
	}

	// Fixing the input clears Degraded and the build proceeds, with no restart.
	for _, tc := range cases {
		if tc.fix == nil {
			continue
		}
		m := e.get(tc.name)
		tc.fix(m)
		if err := e.c.Update(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	s := dockerSecret("opaque", e.reg.DockerConfigJSON())
	if err := e.c.Delete(ctx, bad); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		m := e.waitReady(tc.name)
		if meta.IsStatusConditionTrue(m.Status.Conditions, mosbv1.MachineOSConfigDegraded) {
			t.Errorf("%s is still Degraded after the fix", tc.name)
		}
	}
}

// assertBuildsStay checks the count now and, for a while, that no build is added.
func (e *env) assertBuildsStay(mosc string, n int, watch time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(watch)
	for {
		if got := len(e.builds(e.t.Context(), mosc)); got != n {
			e.t.Fatalf("%s has %d MachineOSBuilds, want %d", mosc, got, n)
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (e *env) assertNoBuildPods(mosc string) {
	e.t.Helper()
	eventually(e.t, 30*time.Second, "no build pods left for "+mosc, func(ctx context.Context) (bool, error) {
		pods := &corev1.PodList{}
		if err := e.c.List(ctx, pods, client.InNamespace(buildNamespace), client.MatchingLabels{pipeline.LabelMachineOSConfig: mosc}); err != nil {
			return false, err
		}
		return len(pods.Items) == 0, nil
	})
}
