package harness

import (
	"os"
	"path/filepath"
	"strings"
)

// WriteAtomicVolume lays out a ConfigMap or Secret volume the way kubelet does: the files in a
// timestamped directory, a ..data symlink to it, and a symlink per top-level entry through ..data.
// Readers that work on this layout work on a real pod's mounts. payload maps item paths to content.
func WriteAtomicVolume(t T, dir string, payload map[string][]byte) {
	t.Helper()
	const ts = "..2026_01_02_03_04_05.000000001"
	top := map[string]bool{}
	for p, d := range payload {
		full := filepath.Join(dir, ts, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, d, 0o444); err != nil {
			t.Fatal(err)
		}
		first, _, _ := strings.Cut(p, "/")
		top[first] = true
	}
	if err := os.Symlink(ts, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range top {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}
