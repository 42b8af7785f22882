package builder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"go.podman.io/common/libimage"
	"go.podman.io/storage"
	storagetypes "go.podman.io/storage/types"
	"golang.org/x/sys/unix"
	"k8s.io/utils/clock"

	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/registry/bounds"
)

// The node image store.
//
// A build pod's own storage starts empty, so without help every build on a node would download
// and extract its 1.5 GB base again. The node store is one containers/storage overlay graph root
// per node (a hostPath, <dir>/storage) that builds share:
//
//   - Before the build, mosb's own code (the build pod's init container, which runs nothing of the
//     user's) pulls the base images into it, under containers/storage's own locks (two pods pulling
//     at once are safe), records their use and evicts what was used least recently while the store
//     is over its budget. A base already there is neither downloaded nor extracted.
//   - The build itself reads the store as a read-only additional image store: the base's layers are
//     the lower layers of the build's overlay mounts as they are; everything the build writes (its
//     containers, new layers, the image) goes to the pod's own storage. The build container mounts
//     the store read-only.
//   - While a build reads an image, it holds a shared lock on the image's use file
//     (<dir>/used/<image ID>); eviction takes that lock exclusively or leaves the image alone.
const (
	storeGraphDir = "storage"
	storeUsedDir  = "used"
	// DefaultStoreGrace: an image used more recently than this is never evicted, even over budget
	// (a build between the init container and its own start holds no lock yet).
	DefaultStoreGrace = 10 * time.Minute
)

// ImageStore is a node's image store.
type ImageStore struct {
	// Dir is the store's directory on the node (a hostPath in a build pod).
	Dir string
	// Budget is how many bytes of uncompressed layers the store keeps before it evicts the images
	// used least recently; 0 keeps everything.
	Budget int64
	// Grace protects recently used images from eviction (0: DefaultStoreGrace).
	Grace time.Duration
	Clock clock.PassiveClock
	// Bounds hold the pulls' registry traffic (zero fields: the defaults).
	Bounds bounds.Bounds
}

// GraphRoot is the containers/storage graph root an engine reads as its image store.
func (s ImageStore) GraphRoot() string { return filepath.Join(s.Dir, storeGraphDir) }

// StoreReport is what Prepare did.
type StoreReport struct {
	// Present are the images that were in the store already (not pulled, not extracted).
	Present []string `json:"present,omitempty"`
	// Pulled are the images pulled into the store now.
	Pulled []string `json:"pulled,omitempty"`
	// IDs are the storage IDs of the images, for Hold.
	IDs []string `json:"ids,omitempty"`
	// Evicted are the images removed to keep the store within its budget.
	Evicted []string `json:"evicted,omitempty"`
	// Size is the store's size afterwards (bytes of uncompressed layers).
	Size int64 `json:"size"`
}

// Prepare makes sure the store holds images (for arch), pulled with the build's registries.conf,
// policy, CAs and pull credentials. scratch is a directory private to this build: the credentials
// and the run state go there, never into the store.
func (s ImageStore) Prepare(ctx context.Context, scratch string, images []string, arch string, rc buildpod.RegistryConfig, out io.Writer) (*StoreReport, error) {
	if s.Clock == nil {
		s.Clock = clock.RealClock{}
	}
	for _, d := range []string{s.GraphRoot(), filepath.Join(s.Dir, storeUsedDir), filepath.Join(scratch, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("node image store: %w", err)
		}
	}
	store, err := storage.GetStore(storagetypes.StoreOptions{
		GraphRoot:          s.GraphRoot(),
		RunRoot:            filepath.Join(scratch, "run"),
		GraphDriverName:    DriverOverlay,
		GraphDriverOptions: []string{"overlay.skip_mount_home=true"},
	})
	if err != nil {
		return nil, fmt.Errorf("opening the node image store %s: %w", s.Dir, err)
	}
	defer func() { _, _ = store.Shutdown(false) }()
	sys, policy, err := writeSystemContext(filepath.Join(scratch, "sys"), scratch, arch, rc, nil)
	if err != nil {
		return nil, err
	}
	guard, err := bounds.NewGuard(s.Bounds)
	if err != nil {
		return nil, err
	}
	defer guard.Close()
	sys.DockerProxy = guard.Proxy
	rt, err := libimage.RuntimeFromStore(store, &libimage.RuntimeOptions{SystemContext: sys})
	if err != nil {
		return nil, fmt.Errorf("opening the node image store %s: %w", s.Dir, err)
	}
	report := &StoreReport{}
	for _, name := range images {
		if img, _, err := rt.LookupImage(name, &libimage.LookupImageOptions{Architecture: arch, OS: "linux"}); err == nil {
			report.Present = append(report.Present, name)
			report.IDs = append(report.IDs, img.ID())
			fmt.Fprintf(out, "mosb: %s is in the node image store already: not pulled, not extracted\n", name)
			continue
		}
		start := s.Clock.Now()
		opts := libimage.CopyOptions{SystemContext: sys, SignaturePolicyPath: policy, Writer: out, Architecture: arch, OS: "linux"}
		if err := pullWatched(ctx, rt, name, opts, s.Bounds, guard, out); err != nil {
			return report, fmt.Errorf("node image store: %w", err)
		}
		pulled, _, err := rt.LookupImage(name, &libimage.LookupImageOptions{Architecture: arch, OS: "linux"})
		if err != nil {
			return report, fmt.Errorf("%s was pulled into the node image store but is not found there: %w", name, err)
		}
		report.Pulled = append(report.Pulled, name)
		report.IDs = append(report.IDs, pulled.ID())
		fmt.Fprintf(out, "mosb: pulled %s into the node image store in %s\n", name, s.Clock.Since(start).Round(10*time.Millisecond))
	}
	for _, id := range report.IDs {
		if err := s.markUsed(id); err != nil {
			return report, err
		}
	}
	if report.Evicted, report.Size, err = s.evict(store, report.IDs, out); err != nil {
		return report, err
	}
	return report, nil
}

func (s ImageStore) usedFile(id string) string { return filepath.Join(s.Dir, storeUsedDir, id) }

// markUsed sets the image's use file's modification time to now (creating it, readable by the
// build containers that lock it).
func (s ImageStore) markUsed(id string) error {
	p := s.usedFile(id)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("node image store: %w", err)
	}
	_ = f.Close()
	now := s.Clock.Now()
	return os.Chtimes(p, now, now)
}

// storedImage is what eviction knows of an image in the store.
type storedImage struct {
	ID       string
	LastUsed time.Time // zero: never recorded (evicted first)
}

// evictionOrder is the order in which images may go: least recently used first, never one in
// keep (the build's own) nor one used within grace.
func evictionOrder(images []storedImage, now time.Time, grace time.Duration, keep []string) []storedImage {
	var out []storedImage
	for _, img := range images {
		if slices.Contains(keep, img.ID) || now.Sub(img.LastUsed) < grace {
			continue
		}
		out = append(out, img)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].LastUsed.Equal(out[j].LastUsed) {
			return out[i].LastUsed.Before(out[j].LastUsed)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// evict removes images, least recently used first, while the store is over its budget. An image
// a build holds (its use file locked) stays.
func (s ImageStore) evict(store storage.Store, keep []string, out io.Writer) (evicted []string, size int64, err error) {
	size, err = storeSize(store)
	if err != nil || s.Budget <= 0 || size <= s.Budget {
		return nil, size, err
	}
	images, err := store.Images()
	if err != nil {
		return nil, size, err
	}
	var known []storedImage
	for _, img := range images {
		si := storedImage{ID: img.ID}
		if st, err := os.Stat(s.usedFile(img.ID)); err == nil {
			si.LastUsed = st.ModTime()
		}
		known = append(known, si)
	}
	grace := s.Grace
	if grace == 0 {
		grace = DefaultStoreGrace
	}
	for _, c := range evictionOrder(known, s.Clock.Now(), grace, keep) {
		if size <= s.Budget {
			break
		}
		gone, err := s.evictOne(store, c.ID)
		if err != nil {
			fmt.Fprintf(out, "mosb: node image store: could not evict image %s: %v\n", c.ID, err)
			continue
		}
		if !gone {
			continue
		}
		evicted = append(evicted, c.ID)
		if size, err = storeSize(store); err != nil {
			return evicted, size, err
		}
		fmt.Fprintf(out, "mosb: node image store over its budget of %d bytes: evicted image %s (least recently used); now %d bytes\n", s.Budget, c.ID, size)
	}
	if size > s.Budget {
		fmt.Fprintf(out, "mosb: node image store holds %d bytes, over its budget of %d: what is left is in use or used within the last %s\n", size, s.Budget, grace)
	}
	return evicted, size, nil
}

// evictOne deletes an image unless a build holds it; false: it was held.
func (s ImageStore) evictOne(store storage.Store, id string) (bool, error) {
	f, err := os.OpenFile(s.usedFile(id), os.O_CREATE|os.O_RDONLY, 0o644)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return false, nil
		}
		return false, err
	}
	if _, err := store.DeleteImage(id, true); err != nil && !errors.Is(err, storage.ErrImageUnknown) {
		return false, err
	}
	return true, os.Remove(s.usedFile(id))
}

// storeSize is the uncompressed size of every layer in the store.
func storeSize(store storage.Store) (int64, error) {
	layers, err := store.Layers()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, l := range layers {
		if l.UncompressedSize > 0 {
			n += l.UncompressedSize
		}
	}
	return n, nil
}

// Hold takes a shared lock on each image's use file, so that no eviction removes them while a
// build reads them; release drops the locks. It needs only read access to the store: a build
// container mounts it read-only. An image whose use file is gone was evicted meanwhile: the
// build pulls it itself.
func (s ImageStore) Hold(ids []string) (release func()) {
	var held []*os.File
	for _, id := range ids {
		f, err := os.Open(s.usedFile(id))
		if err != nil {
			continue
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
			_ = f.Close()
			continue
		}
		held = append(held, f)
	}
	return func() {
		for _, f := range held {
			_ = f.Close()
		}
	}
}

// WriteStoreReport and ReadStoreReport pass Prepare's report from the init container to the build
// container of a pod through their shared emptyDir.
func WriteStoreReport(path string, r *StoreReport) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// ReadStoreReport reads what WriteStoreReport wrote; a missing file is no report (nil, nil).
func ReadStoreReport(path string) (*StoreReport, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r StoreReport
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("the node image store report %s: %w", path, err)
	}
	return &r, nil
}
