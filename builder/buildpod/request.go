package buildpod

import (
	"fmt"
	"path/filepath"
)

// ArchBuild is what one architecture's image is built from.
type ArchBuild struct {
	// Arch is a GOARCH name: amd64, arm64, ppc64le, s390x.
	Arch string
	// Containerfile is the assembled Containerfile.
	Containerfile []byte
	// ContextFiles are the build-context files the Containerfile refers to, by relative path.
	ContextFiles map[string][]byte
}

// RegistryConfig is how the build reaches registries; every field may be empty.
type RegistryConfig struct {
	// RegistriesConf is a registries.conf (v2): mirrors, blocked and insecure registries, search registries.
	RegistriesConf []byte
	// PolicyJSON is a containers policy.json; empty accepts any image.
	PolicyJSON []byte
	// CAs maps a registry host[:port] to the PEM bundle it is trusted with.
	CAs map[string][]byte
	// PullAuth is a containers auth file (`{"auths":{...}}`) used to pull the base images.
	PullAuth []byte
}

// Validate reports a request the engine cannot build, before any work is done.
func (b ArchBuild) Validate() error {
	switch {
	case b.Arch == "":
		return fmt.Errorf("build request has no architecture")
	case len(b.Containerfile) == 0:
		return fmt.Errorf("build request for %s has an empty Containerfile", b.Arch)
	}
	for p := range b.ContextFiles {
		if !localPath(p) {
			return fmt.Errorf("build context file %q for %s must be a relative path inside the context", p, b.Arch)
		}
	}
	return nil
}

func localPath(p string) bool {
	return filepath.IsLocal(filepath.FromSlash(p))
}
