package builder

import (
	"fmt"
	"path/filepath"
	"strings"

	"go.podman.io/storage"
	storagetypes "go.podman.io/storage/types"
)

// Storage drivers. overlay keeps one copy of each layer and mounts them as the lower layers of
// a build; vfs copies the whole root filesystem for every layer (a 1.2 GB OS image in 48 layers
// took 43 GB and five minutes). vfs is only the fallback where an overlay mount is impossible:
// a root on overlayfs itself, a kernel without overlay, a process that may not mount.
const (
	DriverOverlay = "overlay"
	DriverVFS     = "vfs"
	// DriverAuto is overlay, falling back to vfs (and saying why) where overlay cannot work.
	DriverAuto = ""
)

// StorageChoice is the driver an engine runs with, and why, when it is not the one asked for.
type StorageChoice struct {
	Driver string
	// Fallback says why overlay could not be used, when DriverAuto fell back to vfs.
	Fallback string
	// ImageStore is the node's shared, read-only image store the engine reads base images from
	// (empty: none).
	ImageStore string
	// ImageStoreUnused says why the image store given to the engine is not used.
	ImageStoreUnused string
}

// String is the line a build log or a status message says about storage.
func (c StorageChoice) String() string {
	s := "storage: " + c.Driver
	if c.Fallback != "" {
		s += " (overlay cannot mount here: " + c.Fallback + "; every layer is a full copy, so builds are slower and use far more disk)"
	}
	if c.ImageStore != "" {
		s += ", node image store " + c.ImageStore
	}
	if c.ImageStoreUnused != "" {
		s += "; node image store not used: " + c.ImageStoreUnused
	}
	return s
}

// openStore opens the containers/storage store under root with the driver o asks for. Both drivers
// keep their layers under one graph root (storage/overlay-layers, storage/vfs-layers), so moving
// between them loses nothing but the other driver's cache.
func openStore(root string, o engineOptions) (storage.Store, StorageChoice, error) {
	driver := o.driver
	if driver == DriverAuto {
		driver = DriverOverlay
	}
	if driver != DriverOverlay && driver != DriverVFS {
		return nil, StorageChoice{}, fmt.Errorf("storage driver %q: mosb builds with overlay or vfs", o.driver)
	}
	choice := StorageChoice{Driver: driver}
	if driver == DriverOverlay && o.imageStore != "" {
		choice.ImageStore = o.imageStore
	} else if o.imageStore != "" {
		choice.ImageStoreUnused = "it holds overlay layers and this build uses " + driver
	}
	store, err := storage.GetStore(storeOptions(root, choice))
	if err == nil || o.driver != DriverAuto {
		if err != nil {
			return nil, choice, fmt.Errorf("opening image storage under %s (driver %s): %w", root, driver, err)
		}
		return store, choice, nil
	}
	overlayErr := err
	if choice.ImageStore != "" {
		// The node store may be what failed (unreadable, half written): overlay without it is
		// still far better than vfs.
		noStore := StorageChoice{Driver: DriverOverlay, ImageStoreUnused: oneLineError(err)}
		if store, err := storage.GetStore(storeOptions(root, noStore)); err == nil {
			return store, noStore, nil
		}
	}
	choice = StorageChoice{Driver: DriverVFS, Fallback: oneLineError(overlayErr)}
	if o.imageStore != "" {
		choice.ImageStoreUnused = "it holds overlay layers and this build falls back to vfs"
	}
	store, err = storage.GetStore(storeOptions(root, choice))
	if err != nil {
		return nil, choice, fmt.Errorf("opening image storage under %s: overlay: %v; vfs: %w", root, overlayErr, err)
	}
	return store, choice, nil
}

func storeOptions(root string, c StorageChoice) storagetypes.StoreOptions {
	opts := storagetypes.StoreOptions{
		GraphRoot:       filepath.Join(root, "storage"),
		RunRoot:         filepath.Join(root, "run"),
		GraphDriverName: c.Driver,
	}
	if c.Driver == DriverOverlay {
		// Without this, overlay bind-mounts its home onto itself to make it private: a mount
		// left behind on the host by every `mosb build`.
		opts.GraphDriverOptions = append(opts.GraphDriverOptions, "overlay.skip_mount_home=true")
		if c.ImageStore != "" {
			opts.GraphDriverOptions = append(opts.GraphDriverOptions, "overlay.imagestore="+c.ImageStore)
		}
	}
	return opts
}

func oneLineError(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
