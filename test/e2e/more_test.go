package e2e

import (
	"context"
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

func TestRebuildAnnotationBuildsAgainAndIsCleared(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	if err := e.c.Create(ctx, e.newMOSC("again", "RUN echo again > /etc/again")); err != nil {
		t.Fatal(err)
	}
	first := e.waitReady("again")
	m := e.get("again")
	m.Annotations = map[string]string{mosbv1.RebuildAnnotation: "please"}
	if err := e.c.Update(ctx, m); err != nil {
		t.Fatal(err)
	}
	eventually(t, buildTimeout, "a second MachineOSBuild, succeeded, and the annotation cleared", func(ctx context.Context) (bool, error) {
		m := &mosbv1.MachineOSConfig{}
		if err := e.c.Get(ctx, client.ObjectKey{Name: "again"}, m); err != nil {
			return false, err
		}
		builds := e.builds(ctx, "again")
		if len(builds) != 2 || m.Annotations[mosbv1.RebuildAnnotation] != "" {
			return false, nil
		}
		for _, b := range builds {
			if b.Status.DigestedImagePushspec == "" {
				return false, nil
			}
		}
		return true, nil
	})
	// The same inputs rebuilt from scratch give the same image: mosb's builds are reproducible.
	again := e.waitReady("again")
	if again.Status.CurrentImagePullspec != first.Status.CurrentImagePullspec {
		t.Errorf("a rebuild of the same inputs gave %s, the first build %s", again.Status.CurrentImagePullspec, first.Status.CurrentImagePullspec)
	}
	e.assertBuildsStay("again", 2, 5e9)
}

// Two rebuild requests in a row: the second one's build is the one that ends in status, even when
// both builds are created within one second and the first's name sorts after the second's
// (builds are named by a hash of the request: "a" gives -rca9781, "b" -r3e23e8).
func TestTwoRebuildRequestsInARowEndWithTheSecond(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.create(e.newMOSC("twice", "RUN echo twice > /etc/twice"))
	e.waitReady("twice")
	for _, request := range []string{"a", "b"} {
		m := e.get("twice")
		m.Annotations = map[string]string{mosbv1.RebuildAnnotation: request}
		if err := e.c.Update(ctx, m); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Minute, "rebuild request "+request+" taken and cleared", func(ctx context.Context) (bool, error) {
			m := &mosbv1.MachineOSConfig{}
			if err := e.c.Get(ctx, client.ObjectKey{Name: "twice"}, m); err != nil {
				return false, err
			}
			return m.Annotations[mosbv1.RebuildAnnotation] == "", nil
		})
	}
	answered := map[string]mosbv1.MachineOSBuild{}
	for _, b := range e.builds(ctx, "twice") {
		answered[b.Annotations[pipeline.AnnotationRebuild]] = b
	}
	a, b := answered["a"], answered["b"]
	t.Logf("request a: %s created %s; request b: %s created %s", a.Name, a.Annotations[pipeline.AnnotationCreated], b.Name, b.Annotations[pipeline.AnnotationCreated])

	m := e.waitReady("twice")
	final := answered["b"]
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
