package e2e

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/pipeline"
)

// A controller whose cache has not yet seen its own status write (the MachineOSBuild recording
// the Job it made) must not take a deleted Job for one it never made: it would make it again as
// the same attempt, and the interruption would be lost. The cache is held behind on purpose: while
// the test holds it, a transform puts the last MachineOSBuild that recorded no Job into the cache
// in place of the one that does. No kubelet runs the build namespace, so the pods stay Pending.
func TestACacheBehindItsOwnStatusNeverRecreatesADeletedJob(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOptions{noController: true, standinNamespaces: []string{"no-builds-here"}})
	ctx := t.Context()

	var mu sync.Mutex
	holding := true
	stale := map[string]*mosbv1.MachineOSBuild{} // by name: the last version that recorded no Job
	held := make(chan string, 1)                 // the name of the build held back
	stall := func(obj any) (any, error) {
		b, ok := obj.(*mosbv1.MachineOSBuild)
		if !ok {
			return obj, nil
		}
		mu.Lock()
		defer mu.Unlock()
		recordsJob := len(b.Status.Architectures) > 0 && b.Status.Architectures[0].JobName != ""
		switch {
		case !holding:
		case !recordsJob:
			stale[b.Name] = b.DeepCopy()
		case stale[b.Name] != nil:
			select {
			case held <- b.Name:
			default:
			}
			return stale[b.Name].DeepCopy(), nil
		}
		return obj, nil
	}
	startBuildController(t, e, cache.Options{ByObject: map[client.Object]cache.ByObject{
		&mosbv1.MachineOSBuild{}: {Transform: stall},
	}})

	e.create(e.newMOSC("stale", "RUN true"))
	var name string
	select {
	case name = <-held:
	case <-time.After(buildTimeout):
		t.Fatal("the controller never recorded a build Job in a MachineOSBuild's status")
	}
	b := &mosbv1.MachineOSBuild{}
	if err := e.c.Get(ctx, client.ObjectKey{Name: name}, b); err != nil {
		t.Fatal(err)
	}
	first := b.Status.Architectures[0].JobName
	job := &batchv1.Job{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: buildNamespace, Name: first}, job); err != nil {
		t.Fatal(err)
	}
	// The Job goes at once (its pod after it, in the background); the deletion wakes the controller.
	if err := e.c.Delete(ctx, job, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
		t.Fatal(err)
	}
	// What is checked is that something does not happen: watched for a while.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		again := &batchv1.Job{}
		err := e.c.Get(ctx, client.ObjectKey{Namespace: buildNamespace, Name: first}, again)
		if err == nil {
			t.Fatalf("Job %s was made again (uid %s, was %s) while the controller's cache did not know it had made it", first, again.UID, job.UID)
		}
		if !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}

	// Let the cache catch up: the next event of the build brings it as it is.
	mu.Lock()
	holding = false
	mu.Unlock()
	patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"e2e.mosb.dev/poke":"1"}}}`))
	if err := e.c.Patch(ctx, &mosbv1.MachineOSBuild{ObjectMeta: metav1.ObjectMeta{Name: name}}, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, buildTimeout, "the deletion counted as an interrupted attempt", func(ctx context.Context) (bool, error) {
		b := &mosbv1.MachineOSBuild{}
		if err := e.c.Get(ctx, client.ObjectKey{Name: name}, b); err != nil {
			return false, err
		}
		if b.Status.Attempt != 2 || len(b.Status.FailedAttempts) != 1 || b.Status.FailedAttempts[0].Reason != pipeline.ReasonInterrupted {
			return false, fmt.Errorf("attempt %d, failed attempts %+v", b.Status.Attempt, b.Status.FailedAttempts)
		}
		return true, nil
	})
}

// startBuildController runs the build controller in this process, with cache options of the test's.
func startBuildController(t *testing.T, e *env, cacheOpts cache.Options) {
	t.Helper()
	startManager(t, e.cp, "build", cacheOpts, func(mgr ctrl.Manager) error {
		r := &pipeline.BuildReconciler{
			Client:       mgr.GetClient(),
			APIReader:    mgr.GetAPIReader(),
			Namespace:    buildNamespace,
			BuilderImage: "mosb:e2e",
			DefaultArch:  runtime.GOARCH,
			MaxRetries:   3,
			Workers:      2,
		}
		return r.SetupWithManager(t.Context(), mgr)
	})
}
