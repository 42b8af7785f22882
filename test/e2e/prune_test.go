package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/test/harness"
)

// inRegistry says whether the registry still serves a digest pullspec's manifest.
func (e *env) inRegistry(pullspec string) bool {
	e.t.Helper()
	ref, err := name.ParseReference(pullspec)
	if err != nil {
		e.t.Fatal(err)
	}
	_, err = remote.Head(ref, remote.WithAuth(e.reg.Auth()), remote.WithTransport(e.reg.Transport()), remote.WithContext(e.t.Context()))
	var terr *transport.Error
	switch {
	case err == nil:
		return true
	case errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound:
		return false
	default:
		e.t.Fatalf("asking the registry for %s: %v", pullspec, err)
		return false
	}
}

// rebuild changes the MachineOSConfig's entries (by architecture) and waits for the new image.
func (e *env) rebuild(name string, content map[mosbv1.ContainerfileArch]string) *mosbv1.MachineOSBuild {
	e.t.Helper()
	e.updateMOSC(name, func(m *mosbv1.MachineOSConfig) {
		for i, c := range m.Spec.BuildInputs.Containerfile {
			if s, ok := content[c.ContainerfileArch]; ok {
				m.Spec.BuildInputs.Containerfile[i].Content = s
			}
		}
	})
	m := e.waitReady(name)
	for _, b := range e.builds(e.t.Context(), name) {
		if b.Status.DigestedImagePushspec == string(m.Status.CurrentImagePullspec) {
			return &b
		}
	}
	e.t.Fatalf("no MachineOSBuild of %s has its image %s", name, m.Status.CurrentImagePullspec)
	return nil
}

// waitEvent waits for an Event with reason about a MachineOSConfig and returns its message.
func (e *env) waitEvent(mosc, reason string) string {
	e.t.Helper()
	var msg string
	eventually(e.t, buildTimeout, "Event "+reason+" on MachineOSConfig "+mosc, func(ctx context.Context) (bool, error) {
		events, err := eventsFor(ctx, e.c, "MachineOSConfig", mosc)
		if err != nil {
			return false, err
		}
		var seen []string
		for _, ev := range events {
			if ev.Reason == reason {
				msg = ev.Message
				return true, nil
			}
			seen = append(seen, ev.Reason)
		}
		return false, fmt.Errorf("events: %v", seen)
	})
	return msg
}

// Two architectures, history limit 0: the build that goes takes its index and the image of the
// architecture that changed; the image of the one that did not, shared with the build that stays,
// stays, as does that build's index. (Emulated arm64 builds are the slow ones: two suffice here;
// the history limit 1 case is TestPruningSparesImagesInUse's.)
func TestBuildImagesArePrunedWithTheirBuilds(t *testing.T) {
	t.Parallel()
	e := emulationEnv(t, "--allow-emulation", "--succeeded-history", "0")
	ctx := t.Context()
	m := e.twoArchMOSC("prune")
	if err := e.c.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	first := e.waitBuilt("prune", 1)
	second := e.rebuild("prune", map[mosbv1.ContainerfileArch]string{mosbv1.ArchARM64: "RUN echo 2 > /etc/n"})
	amd, arm := archEntry(first, "amd64").DigestedImagePushspec, archEntry(first, "arm64").DigestedImagePushspec
	if archEntry(second, "amd64").DigestedImagePushspec != amd {
		t.Fatalf("the amd64 image changed though its input did not: %s, then %s", amd, archEntry(second, "amd64").DigestedImagePushspec)
	}

	msg := e.waitEvent("prune", pipeline.ReasonImagesPruned)
	eventually(t, buildTimeout, "the first build gone", func(ctx context.Context) (bool, error) {
		err := e.c.Get(ctx, client.ObjectKeyFromObject(first), &mosbv1.MachineOSBuild{})
		return apierrors.IsNotFound(err), err
	})
	if e.inRegistry(first.Status.DigestedImagePushspec) || e.inRegistry(arm) {
		t.Errorf("the first build's index or arm64 image is still in the registry: %s", msg)
	}
	for _, img := range []string{amd, second.Status.DigestedImagePushspec, archEntry(second, "arm64").DigestedImagePushspec} {
		if !e.inRegistry(img) {
			t.Errorf("%s is gone, though the build that stays refers to it (%s)", img, msg)
		}
	}
	if !strings.Contains(msg, first.Name) || !strings.Contains(msg, amd+" (used by MachineOSBuild "+second.Name+")") {
		t.Errorf("the Event does not say which build went and what stayed and why: %s", msg)
	}
}

// History limit 1, one architecture: an image a node runs stays, an image a PinnedImageSet of
// someone else's holds stays, one nothing refers to goes; deleting the MachineOSConfig takes the
// images of its builds before it goes, and leaves those in use.
func TestPruningSparesImagesInUse(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{controllerArgs: []string{"--succeeded-history", "1"}})
	ctx := t.Context()
	if err := e.c.Create(ctx, e.newMOSC("inuse", "RUN echo 1 > /etc/n")); err != nil {
		t.Fatal(err)
	}
	build := func(n int) string {
		return e.rebuild("inuse", map[mosbv1.ContainerfileArch]string{mosbv1.NoArch: fmt.Sprintf("RUN echo %d > /etc/n", n)}).Status.DigestedImagePushspec
	}
	img1 := e.waitBuilt("inuse", 1).Status.DigestedImagePushspec
	node := &corev1.Node{}
	if err := e.c.Get(ctx, client.ObjectKey{Name: "node-amd64"}, node); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(node.DeepCopy())
	metav1.SetMetaDataAnnotation(&node.ObjectMeta, pipeline.AnnotationNodeCurrentImage, img1)
	if err := e.c.Patch(ctx, node, patch); err != nil {
		t.Fatal(err)
	}
	img2 := build(2)
	img3 := build(3) // the first build goes: the node keeps its image
	if msg := e.waitEvent("inuse", pipeline.ReasonImagesPruned); !strings.Contains(msg, img1+" (used by node node-amd64 (currentImage))") {
		t.Errorf("the Event does not say the node keeps %s: %s", img1, msg)
	}
	pinned := &mcfgv1.PinnedImageSet{ObjectMeta: metav1.ObjectMeta{Name: "someone-elses"},
		Spec: mcfgv1.PinnedImageSetSpec{PinnedImages: []mcfgv1.PinnedImageRef{{Name: mcfgv1.ImageDigestFormat(img2)}}}}
	if err := e.c.Create(ctx, pinned); err != nil {
		t.Fatal(err)
	}
	build(4) // the second goes: the PinnedImageSet keeps its image
	img5 := build(5)
	eventually(t, buildTimeout, "two MachineOSBuilds left (history 1)", func(ctx context.Context) (bool, error) {
		n := len(e.builds(ctx, "inuse"))
		return n == 2, fmt.Errorf("%d builds", n)
	})
	for img, want := range map[string]bool{img1: true, img2: true, img3: false, img5: true} {
		if got := e.inRegistry(img); got != want {
			t.Errorf("%s in the registry: %v, want %v", img, got, want)
		}
	}

	if err := e.c.Delete(ctx, e.get("inuse")); err != nil {
		t.Fatal(err)
	}
	// Its builds then go by garbage collection, which this control plane does not run.
	eventually(t, buildTimeout, "the MachineOSConfig gone", func(ctx context.Context) (bool, error) {
		err := e.c.Get(ctx, client.ObjectKey{Name: "inuse"}, &mosbv1.MachineOSConfig{})
		return apierrors.IsNotFound(err), err
	})
	if e.inRegistry(img5) {
		t.Error("the deleted MachineOSConfig's last image is still in the registry")
	}
	if !e.inRegistry(img1) || !e.inRegistry(img2) {
		t.Error("deleting the MachineOSConfig took an image a node or a PinnedImageSet refers to")
	}
}

// A registry that does not delete (docker-registry's default): one Event says so, the image stays,
// the build history is pruned all the same.
func TestPruningOnARegistryThatRefusesDeletion(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{controllerArgs: []string{"--succeeded-history", "0"}, registry: []harness.RegistryOption{harness.WithoutDelete()}})
	ctx := t.Context()
	if err := e.c.Create(ctx, e.newMOSC("nodelete", "RUN echo 1 > /etc/n")); err != nil {
		t.Fatal(err)
	}
	first := e.waitBuilt("nodelete", 1)
	e.rebuild("nodelete", map[mosbv1.ContainerfileArch]string{mosbv1.NoArch: "RUN echo 2 > /etc/n"})
	msg := e.waitEvent("nodelete", pipeline.ReasonImagePruneRefused)
	if !strings.Contains(msg, "405") || !strings.Contains(msg, "storage.delete.enabled") || !strings.Contains(msg, first.Name) {
		t.Errorf("the Event does not say the registry refuses deletion, and of what: %s", msg)
	}
	eventually(t, buildTimeout, "the first build gone", func(ctx context.Context) (bool, error) {
		err := e.c.Get(ctx, client.ObjectKeyFromObject(first), &mosbv1.MachineOSBuild{})
		return apierrors.IsNotFound(err), err
	})
	if !e.inRegistry(first.Status.DigestedImagePushspec) {
		t.Error("the image is gone from a registry that does not delete")
	}
}
