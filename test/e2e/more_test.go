package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/test/harness"
)

// The rebuild annotation is a request by its presence, as the Machine Config Operator sets it
// (empty); each request builds once and is cleared: the same value set again is a new request, and
// one made while the controller is down, or taken just before it stopped, is answered once it is back.
func TestRebuildAnnotationBuildsAgainAndIsCleared(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{controllerArgs: []string{"--succeeded-history", "10"}})
	ctx := t.Context()
	if err := e.c.Create(ctx, e.newMOSC("again", "RUN echo again > /etc/again")); err != nil {
		t.Fatal(err)
	}
	first := e.waitReady("again")
	seen := map[string]bool{}
	for _, b := range e.builds(ctx, "again") {
		seen[b.Name] = true
	}
	set := func(annotations map[string]string) {
		t.Helper()
		e.updateMOSC("again", func(m *mosbv1.MachineOSConfig) { m.Annotations = annotations })
	}
	// answered waits for the request to be answered by exactly one new MachineOSBuild, succeeded,
	// and cleared from the MachineOSConfig.
	answered := func(what string) mosbv1.MachineOSBuild {
		t.Helper()
		var answer mosbv1.MachineOSBuild
		eventually(t, buildTimeout, what+": one new MachineOSBuild, succeeded, and the request cleared", func(ctx context.Context) (bool, error) {
			m := &mosbv1.MachineOSConfig{}
			if err := e.c.Get(ctx, client.ObjectKey{Name: "again"}, m); err != nil {
				return false, err
			}
			_, requested := m.Annotations[mosbv1.RebuildAnnotation]
			_, taken := m.Annotations[pipeline.AnnotationRebuildRequest]
			var added []mosbv1.MachineOSBuild
			for _, b := range e.builds(ctx, "again") {
				if !seen[b.Name] {
					added = append(added, b)
				}
			}
			if len(added) > 1 {
				return false, fmt.Errorf("%s: %d new MachineOSBuilds, want 1", what, len(added))
			}
			if requested || taken || len(added) == 0 || pipeline.Phase(&added[0]) != pipeline.PhaseSucceeded {
				return false, nil
			}
			answer = added[0]
			return true, nil
		})
		seen[answer.Name] = true
		e.assertBuildsStay("again", len(seen), 2*time.Second)
		return answer
	}

	set(map[string]string{mosbv1.RebuildAnnotation: ""})
	answered("an empty value")
	set(map[string]string{mosbv1.RebuildAnnotation: "true"})
	answered("true")
	set(map[string]string{mosbv1.RebuildAnnotation: "true"})
	answered("true again")

	e.ctrl.kill()
	set(map[string]string{mosbv1.RebuildAnnotation: ""})
	e.ctrl.start()
	answered("a request made while the controller was down")

	// Taken (the user's annotation replaced by the controller's token), then the controller
	// stopped before the build: the build starts when it is back, once.
	e.ctrl.kill()
	set(map[string]string{pipeline.AnnotationRebuildRequest: "taken-before-a-stop"})
	e.ctrl.start()
	if b := answered("a request taken before the controller stopped"); b.Annotations[pipeline.AnnotationRebuild] != "taken-before-a-stop" {
		t.Errorf("the build %s answers %q, not the request taken before the stop", b.Name, b.Annotations[pipeline.AnnotationRebuild])
	}
	e.ctrl.restart()
	e.assertBuildsStay("again", len(seen), 3*time.Second)

	// The same inputs rebuilt from scratch give the same image: mosb's builds are reproducible.
	again := e.waitReady("again")
	if again.Status.CurrentImagePullspec != first.Status.CurrentImagePullspec {
		t.Errorf("a rebuild of the same inputs gave %s, the first build %s", again.Status.CurrentImagePullspec, first.Status.CurrentImagePullspec)
	}
}

// Two rebuild requests in a row: the second one's build is the one that ends in status, even when
// both builds are created within one second.
func TestTwoRebuildRequestsInARowEndWithTheSecond(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.create(e.newMOSC("twice", "RUN echo twice > /etc/twice"))
	e.waitReady("twice")
	var answers []mosbv1.MachineOSBuild
	for range 2 {
		seen := map[string]bool{}
		for _, b := range e.builds(ctx, "twice") {
			seen[b.Name] = true
		}
		e.updateMOSC("twice", func(m *mosbv1.MachineOSConfig) {
			m.Annotations = map[string]string{mosbv1.RebuildAnnotation: ""}
		})
		eventually(t, time.Minute, "the rebuild request answered and cleared", func(ctx context.Context) (bool, error) {
			m := &mosbv1.MachineOSConfig{}
			if err := e.c.Get(ctx, client.ObjectKey{Name: "twice"}, m); err != nil {
				return false, err
			}
			_, requested := m.Annotations[mosbv1.RebuildAnnotation]
			_, taken := m.Annotations[pipeline.AnnotationRebuildRequest]
			if requested || taken {
				return false, nil
			}
			for _, b := range e.builds(ctx, "twice") {
				if !seen[b.Name] {
					answers = append(answers, b)
					return true, nil
				}
			}
			return false, nil
		})
	}
	a, b := answers[0], answers[1]
	t.Logf("first request: %s created %s; second request: %s created %s", a.Name, a.Annotations[pipeline.AnnotationCreated], b.Name, b.Annotations[pipeline.AnnotationCreated])

	m := e.waitReady("twice")
	final := answers[1]
	if err := e.c.Get(ctx, client.ObjectKeyFromObject(&final), &final); err != nil {
		t.Fatalf("the build answering the last request is gone: %v", err)
	}
	if pipeline.Phase(&final) != pipeline.PhaseSucceeded || string(m.Status.CurrentImagePullspec) != final.Status.DigestedImagePushspec {
		t.Errorf("the build answering the last request, %s, is %s (%s); status names %s", final.Name, pipeline.Phase(&final), conditionsText(final.Status.Conditions), m.Status.CurrentImagePullspec)
	}
	e.assertBuildsStay("twice", 3, 3*time.Second)
}

func TestPoolOfTwoArchitecturesGetsAnIndex(t *testing.T) {
	t.Parallel()
	needArm64Emulation(t)
	e := newEnv(t, "amd64", "arm64")
	ctx := t.Context()
	if err := e.c.Create(ctx, e.newMOSC("multi", "RUN uname -m > /etc/built-on")); err != nil {
		t.Fatal(err)
	}
	m := e.waitReady("multi")
	builds := e.builds(ctx, "multi")
	if len(builds) != 1 {
		t.Fatalf("%d MachineOSBuilds, want 1", len(builds))
	}
	b := builds[0]
	var arches []string
	for _, a := range b.Status.Architectures {
		arches = append(arches, a.Architecture)
		if a.PodName == "" || a.DigestedImagePushspec == "" {
			t.Errorf("%s: no pod or image recorded: %+v", a.Architecture, a)
		}
	}
	sort.Strings(arches)
	if strings.Join(arches, ",") != "amd64,arm64" {
		t.Fatalf("built %v, want the pool's node architectures amd64,arm64", arches)
	}

	images, err := harness.IndexImages(string(m.Status.CurrentImagePullspec), remote.WithAuth(e.reg.Auth()), remote.WithTransport(e.reg.Transport()), remote.WithContext(ctx))
	if err != nil {
		t.Fatalf("status does not name an index of one image per architecture: %v", err)
	}
	if len(images) != 2 {
		t.Fatalf("the index holds %v, want one amd64 and one arm64 image", images)
	}
	for _, a := range b.Status.Architectures {
		if images[a.Architecture] != a.DigestedImagePushspec {
			t.Errorf("the index's %s image is %q, the build pushed %s", a.Architecture, images[a.Architecture], a.DigestedImagePushspec)
		}
	}
	if served := e.servedDigest(e.reg.Host + "/os/multi:latest"); !strings.HasSuffix(string(m.Status.CurrentImagePullspec), served) {
		t.Errorf("the tag serves %s, status says %s", served, m.Status.CurrentImagePullspec)
	}
	for _, a := range b.Status.Architectures {
		logs, err := e.kubelet.Logs(buildNamespace, a.PodName)
		if err != nil {
			t.Errorf("no log for pod %s: %v", a.PodName, err)
			continue
		}
		if !strings.Contains(logs, "RUN uname -m") {
			t.Errorf("pod %s's log does not show its build:\n%s", a.PodName, logs)
		}
	}
}
