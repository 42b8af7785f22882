package builder

import (
	"errors"

	nettypes "go.podman.io/common/libnetwork/types"
)

// errNoNetworks is what a build would get if buildah ever asked for a container network.
var errNoNetworks = errors.New("mosb builds share the network of the host or pod they run in: there are no container networks")

// hostNetwork is the engine's network backend. With chroot isolation a RUN step always uses the
// network it runs in, so buildah never sets up or tears down a network; but without a backend of
// its own, it asks containers/common for netavark or CNI, which refuses to start unless their
// binaries are installed — and the mosb image has neither, nor any use for them.
type hostNetwork struct{}

var _ nettypes.ContainerNetwork = hostNetwork{}

func (hostNetwork) NetworkCreate(nettypes.Network, *nettypes.NetworkCreateOptions) (nettypes.Network, error) {
	return nettypes.Network{}, errNoNetworks
}
func (hostNetwork) NetworkUpdate(string, nettypes.NetworkUpdateOptions) error { return errNoNetworks }
func (hostNetwork) NetworkRemove(string) error                                { return errNoNetworks }
func (hostNetwork) NetworkList(...nettypes.FilterFunc) ([]nettypes.Network, error) {
	return nil, nil
}
func (hostNetwork) NetworkInspect(string) (nettypes.Network, error) {
	return nettypes.Network{}, errNoNetworks
}
func (hostNetwork) Setup(string, nettypes.SetupOptions) (map[string]nettypes.StatusBlock, error) {
	return nil, errNoNetworks
}
func (hostNetwork) Teardown(string, nettypes.TeardownOptions) error { return errNoNetworks }
func (hostNetwork) RunInRootlessNetns(func() error) error           { return errNoNetworks }
func (hostNetwork) RootlessNetnsInfo() (*nettypes.RootlessNetnsInfo, error) {
	return nil, errNoNetworks
}
func (hostNetwork) Drivers() []string          { return nil }
func (hostNetwork) DefaultNetworkName() string { return "" }
func (hostNetwork) NetworkInfo() nettypes.NetworkInfo {
	return nettypes.NetworkInfo{Backend: "none"}
}
