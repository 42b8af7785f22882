package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// RepoRoot is the root of the mosb checkout the tests run from.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	assetsOnce sync.Once
	assetsDir  string
	assetsErr  error
)

// KubeAssets returns the directory holding etcd, kube-apiserver and kubectl: $KUBEBUILDER_ASSETS when
// set, otherwise what hack/kube-assets.sh builds (cached; the first build takes minutes).
func KubeAssets(t T) string {
	t.Helper()
	assetsOnce.Do(func() {
		if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
			assetsDir = dir
			return
		}
		assetsDir, assetsErr = runKubeAssets()
	})
	if assetsErr != nil {
		t.Fatalf("building kube-apiserver/etcd with hack/kube-assets.sh failed: %v (run `make kube-assets` to see why)", assetsErr)
	}
	return assetsDir
}

// GoModuleDir is where the Go toolchain keeps the source of a module this repository depends on.
func GoModuleDir(t T, module string) string {
	t.Helper()
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module)
	cmd.Dir = RepoRoot()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("locating module %s with `go list -m`: %v", module, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		t.Fatalf("module %s is not in the module cache; run `go mod download`", module)
	}
	return dir
}

// requireBinary fails the test with an install hint when a program the harness runs is missing.
func requireBinary(t T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: run `make deps` (hack/install-deps.sh)", name)
	}
	return p
}

// runKubeAssets runs hack/kube-assets.sh with args (its progress on stderr) and returns the
// directory it prints last.
func runKubeAssets(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(RepoRoot(), "hack", "kube-assets.sh"), args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", err
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}
