package builder_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/mosb-dev/mosb/builder"
	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/test/harness"
)

func needRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs buildah, overlay and a registry")
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: overlay storage needs root")
	}
}

// pushOther pushes an amd64 image of random content, no layer shared with the tiny base.
func pushOther(t *testing.T, reg *harness.Registry, repo string) string {
	t.Helper()
	img, err := random.Image(1<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(reg.Host + "/" + repo + ":latest")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(reg.Auth()), remote.WithTransport(reg.Transport()), remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return reg.Host + "/" + repo + "@" + d.String()
}

// TestNodeStoreServesTheBaseWithoutPullingIt: the store pulls a base once; a build that reads the
// store neither pulls nor extracts it, and makes the same image as a build that pulls it.
func TestNodeStoreServesTheBaseWithoutPullingIt(t *testing.T) {
	needRoot(t)
	reg := harness.StartRegistry(t)
	base := harness.PushBaseImage(t, reg, "os/base", "amd64")
	rc := buildpod.RegistryConfig{PullAuth: reg.DockerConfigJSON(), CAs: map[string][]byte{reg.Host: reg.CA.PEM}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	store := builder.ImageStore{Dir: t.TempDir()}

	first, log := prepareStore(ctx, t, store, []string{base}, rc)
	if len(first.Pulled) != 1 || len(first.Present) != 0 || len(first.IDs) != 1 {
		t.Fatalf("first prepare: %+v, want the base pulled\n%s", first, log)
	}
	second, log := prepareStore(ctx, t, store, []string{base}, rc)
	if len(second.Present) != 1 || len(second.Pulled) != 0 || second.IDs[0] != first.IDs[0] {
		t.Fatalf("second prepare: %+v, want the base there already", second)
	}
	if !strings.Contains(log, "in the node image store already: not pulled, not extracted") {
		t.Errorf("the second prepare does not say the base was there:\n%s", log)
	}
	if strings.Contains(log, "Copying blob") {
		t.Errorf("the second prepare copied blobs:\n%s", log)
	}

	cf := fmt.Sprintf("FROM %s\nRUN echo hello > /etc/hello\n", base)
	build := func(opts ...builder.Option) (string, string, builder.StorageChoice) {
		return buildOnce(ctx, t, rc, cf, opts...)
	}
	release := store.Hold(first.IDs)
	defer release()
	withStore, progress, choice := build(builder.WithImageStore(store.GraphRoot()))
	if choice.Driver != builder.DriverOverlay || choice.ImageStore != store.GraphRoot() || choice.ImageStoreUnused != "" {
		t.Fatalf("storage %+v, want overlay over the node store", choice)
	}
	for _, pulled := range []string{"Trying to pull", "Copying blob"} {
		if strings.Contains(progress, pulled) {
			t.Errorf("the build over the node store pulled its base (%q):\n%s", pulled, progress)
		}
	}
	without, progress, _ := build()
	if !strings.Contains(progress, "Copying blob") {
		t.Errorf("a build without the store should pull its base; the check above cannot tell:\n%s", progress)
	}
	if withStore != without {
		t.Errorf("built over the node store: %s; pulled: %s; want one image", withStore, without)
	}
}

// TestNodeStoreEvictsLeastRecentlyUsedUnlessHeld: over its budget, the store evicts the image used
// least recently, never one a build holds.
func TestNodeStoreEvictsLeastRecentlyUsedUnlessHeld(t *testing.T) {
	needRoot(t)
	reg := harness.StartRegistry(t)
	base := harness.PushBaseImage(t, reg, "os/base", "amd64")
	other := pushOther(t, reg, "os/other")
	rc := buildpod.RegistryConfig{PullAuth: reg.DockerConfigJSON(), CAs: map[string][]byte{reg.Host: reg.CA.PEM}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	prepare := func(budget int64, img string) (*builder.StoreReport, string) {
		t.Helper()
		s := builder.ImageStore{Dir: dir, Budget: budget, Grace: time.Nanosecond}
		return prepareStore(ctx, t, s, []string{img}, rc)
	}
	a, _ := prepare(0, base)
	both, _ := prepare(0, other)
	// A budget that holds other alone: the base has to go.
	budget := both.Size - a.Size

	release := builder.ImageStore{Dir: dir}.Hold(a.IDs)
	held, log := prepare(budget, other)
	release()
	if len(held.Evicted) != 0 {
		t.Fatalf("evicted %v while a build held the base\n%s", held.Evicted, log)
	}
	if !strings.Contains(log, "over its budget") {
		t.Errorf("the store does not say it stays over budget:\n%s", log)
	}

	after, log := prepare(budget, other)
	if len(after.Evicted) != 1 || after.Evicted[0] != a.IDs[0] {
		t.Fatalf("evicted %v, want the base %s (used least recently)\n%s", after.Evicted, a.IDs[0], log)
	}
	if after.Size > budget {
		t.Errorf("size after eviction %d, over the budget %d", after.Size, budget)
	}
	again, _ := prepare(0, base)
	if len(again.Pulled) != 1 {
		t.Errorf("the evicted base was not pulled again: %+v", again)
	}
}

// TestABuildCannotTamperWithTheNodeStore: a Containerfile that tries what it can to write into the
// store (the lower directories its mount names, remounting, /proc/1/root) changes nothing there,
// and the next build over the store makes the image a build from the registry makes.
func TestABuildCannotTamperWithTheNodeStore(t *testing.T) {
	needRoot(t)
	reg := harness.StartRegistry(t)
	base := harness.PushBaseImage(t, reg, "os/base", "amd64")
	rc := buildpod.RegistryConfig{PullAuth: reg.DockerConfigJSON(), CAs: map[string][]byte{reg.Host: reg.CA.PEM}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	store := builder.ImageStore{Dir: t.TempDir()}
	prepared, _ := prepareStore(ctx, t, store, []string{base}, rc)
	before := treeDigest(t, store.GraphRoot())

	attack := `RUN set +e; \
for d in $(grep -o 'lowerdir=[^,]*' /proc/self/mountinfo | cut -d= -f2 | tr ':' ' '); do \
  echo "lower $d"; echo tampered > "$d/bin/busybox"; echo tampered > "$d/etc/passwd"; \
done; \
mount -o remount,rw / ; echo "remount: $?"; \
mount -t overlay overlay -o lowerdir=/etc /mnt ; echo "overlay: $?"; \
ls /proc/1/root/ ; echo "proc1: $?"; \
echo tampered > /proc/1/root` + store.GraphRoot() + `/x ; echo "via proc1: $?"; \
echo tampered > /etc/passwd; true
`
	build := func(cf string, opts ...builder.Option) (string, string) {
		digest, progress, _ := buildOnce(ctx, t, rc, cf, opts...)
		return digest, progress
	}
	release := store.Hold(prepared.IDs)
	_, progress := build("FROM "+base+"\n"+attack, builder.WithImageStore(store.GraphRoot()))
	release()
	t.Logf("the attack's output:\n%s", progress)
	if !strings.Contains(progress, "lower ") {
		t.Errorf("the attack did not find the lower directories it tries to write to:\n%s", progress)
	}
	if after := treeDigest(t, store.GraphRoot()); after != before {
		t.Errorf("the node store changed under a build's RUN step")
	}
	clean := "FROM " + base + "\nRUN echo hello > /etc/hello\n"
	overStore, _ := build(clean, builder.WithImageStore(store.GraphRoot()))
	fromRegistry, _ := build(clean)
	if overStore != fromRegistry {
		t.Errorf("after the attack, a build over the store makes %s, a build from the registry %s", overStore, fromRegistry)
	}
}

// buildOnce builds cf for amd64 on a fresh root and returns its digest, its output and its storage.
func buildOnce(ctx context.Context, t *testing.T, rc buildpod.RegistryConfig, cf string, opts ...builder.Option) (string, string, builder.StorageChoice) {
	t.Helper()
	var progress bytes.Buffer
	e, err := builder.New(t.TempDir(), append(opts, builder.WithProgress(&progress))...)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	b, err := e.BuildImage(ctx, buildpod.ArchBuild{Arch: "amd64", Containerfile: []byte(cf)}, rc, nil, builder.RunEnvironment{})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	defer b.Release()
	return b.Digest.String(), progress.String(), e.Storage()
}

// treeDigest hashes the content, mode and owner of every layer file in a store (the diff
// directories), not its bookkeeping (locks, JSON), which reads may touch.
func treeDigest(t *testing.T, graphRoot string) string {
	t.Helper()
	h := sha256.New()
	diffs, err := filepath.Glob(filepath.Join(graphRoot, "overlay", "*", "diff"))
	if err != nil || len(diffs) == 0 {
		t.Fatalf("no layers in the store %s (%v)", graphRoot, err)
	}
	for _, d := range diffs {
		err := filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := e.Info()
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%s %v %d\n", p, info.Mode(), info.Size())
			if info.Mode().IsRegular() {
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				defer f.Close()
				if _, err := io.Copy(h, f); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}
