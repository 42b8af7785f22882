package builder

import (
	"errors"
	"io"
	"syscall"
)

// StorageFullError is a build that ran out of space in its build storage.
type StorageFullError struct {
	// Root is the build root whose filesystem filled up.
	Root string
	Err  error
}

func (e *StorageFullError) Error() string {
	return "the build storage " + e.Root + " is full: " + e.Err.Error()
}

func (e *StorageFullError) Unwrap() error { return e.Err }

// noSpaceWatch passes a build's output through and notes whether a step said it ran out of space:
// a RUN that fills the disk fails with its command's exit status, the only trace is its output.
type noSpaceWatch struct {
	w   io.Writer
	saw bool
}

func newNoSpaceWatch(w io.Writer) *noSpaceWatch { return &noSpaceWatch{w: w} }

func (n *noSpaceWatch) Write(p []byte) (int, error) { return n.w.Write(p) }

// storageFull returns err as a *StorageFullError when it (or the build output) says the build
// storage ran out of space, err otherwise.
func (e *Engine) storageFull(err error, out *noSpaceWatch) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.ENOSPC) || (out != nil && out.saw) {
		return &StorageFullError{Root: e.root, Err: err}
	}
	return err
}
