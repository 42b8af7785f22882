package containerfiles

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/distribution/reference"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/mosb-dev/mosb/api/v1alpha1"
)

// Input is everything that goes into the Containerfiles of one MachineOSConfig. It holds plain
// values only: the caller resolves them (defaults from the machine-config-osimageurl ConfigMap, the
// pool's rendered MachineConfig) before assembling.
type Input struct {
	// MachineOSConfig is the MachineOSConfig's name (required).
	MachineOSConfig string
	// Pool is the MachineConfigPool's name (required).
	Pool string
	// BaseImage is the base OS image, by digest: host[:port][/namespace]/name@sha256:<hex> (required).
	BaseImage string
	// ExtensionsImage is the base OS extensions image, by digest; empty when there is none.
	ExtensionsImage string
	// RenderedMachineConfig is the name of the pool's rendered MachineConfig; empty when unknown
	// (for example in a CI build without a cluster).
	RenderedMachineConfig string
	// RenderedMachineConfigContent is that MachineConfig as the machine-config-daemon reads it from
	// /etc/machine-config-daemon/currentconfig (JSON); nil or empty when absent. It requires
	// RenderedMachineConfig.
	RenderedMachineConfigContent []byte
	// MachineConfigLayer is the rendered MachineConfig's Ignition content as a gzip-compressed tar
	// (ignitionlayer.FromMachineConfig), laid onto / after currentconfig; nil when it lays
	// nothing. It requires RenderedMachineConfigContent.
	MachineConfigLayer []byte
	// TrustedCABundle is the cluster's user CA bundle (PEM; the Proxy's spec.trustedCA), put in the
	// image's trust anchors before the user content; nil when none.
	TrustedCABundle []byte
	// ReleaseVersion is the OpenShift release the base image belongs to; empty when unknown.
	ReleaseVersion string
	// Entries are spec.buildInputs.containerFile.
	Entries []v1alpha1.MachineOSContainerfile
}

// InputFromMachineOSConfig copies what a MachineOSConfig's spec says into an Input. The caller
// still fills in the rendered MachineConfig and any defaults the spec leaves empty (base image,
// extensions image, release version).
func InputFromMachineOSConfig(mosc *v1alpha1.MachineOSConfig) Input {
	if mosc == nil {
		return Input{}
	}
	inputs := mosc.Spec.BuildInputs
	return Input{
		MachineOSConfig: mosc.Name,
		Pool:            mosc.Spec.MachineConfigPool.Name,
		BaseImage:       string(inputs.BaseOSImagePullspec),
		ExtensionsImage: string(inputs.BaseOSExtensionsImagePullspec),
		ReleaseVersion:  inputs.ReleaseVersion,
		Entries:         append([]v1alpha1.MachineOSContainerfile(nil), inputs.Containerfile...),
	}
}

// maxReleaseVersionBytes keeps the release version label on one reasonable line; real values are
// about 40 bytes.
const maxReleaseVersionBytes = 1024

// checkScalars checks every field of in except Entries.
func (in Input) checkScalars() error {
	if err := checkName("MachineOSConfig name", in.MachineOSConfig, true); err != nil {
		return err
	}
	if err := checkName("MachineConfigPool name", in.Pool, true); err != nil {
		return err
	}
	if err := checkName("rendered MachineConfig name", in.RenderedMachineConfig, false); err != nil {
		return err
	}
	if len(in.RenderedMachineConfigContent) > 0 && in.RenderedMachineConfig == "" {
		return fmt.Errorf("%w: the rendered MachineConfig's content is set but not its name", ErrInvalidInput)
	}
	if len(in.MachineConfigLayer) > 0 && len(in.RenderedMachineConfigContent) == 0 {
		return fmt.Errorf("%w: the rendered MachineConfig's layer is set but not its content", ErrInvalidInput)
	}
	if err := checkDigestPullspec("base OS image", in.BaseImage, true); err != nil {
		return err
	}
	if err := checkDigestPullspec("base OS extensions image", in.ExtensionsImage, false); err != nil {
		return err
	}
	return checkReleaseVersion(in.ReleaseVersion)
}

// checkName accepts Kubernetes object names (DNS-1123 subdomains), which are also safe to write
// unquoted into comments and quoted into labels.
func checkName(what, name string, required bool) error {
	if name == "" {
		if required {
			return fmt.Errorf("%w: the %s is empty", ErrInvalidInput, what)
		}
		return nil
	}
	if problems := validation.IsDNS1123Subdomain(name); len(problems) > 0 {
		return fmt.Errorf("%w: the %s %q is not a valid object name: %s", ErrInvalidInput, what, name, strings.Join(problems, "; "))
	}
	return nil
}

// checkDigestPullspec accepts an image reference by digest. Anything else could not be written
// into a FROM line safely (whitespace, $ expansion) and would break the promise that the same
// inputs give the same image.
func checkDigestPullspec(what, pullspec string, required bool) error {
	if pullspec == "" {
		if required {
			return fmt.Errorf("%w: the %s pullspec is empty", ErrInvalidInput, what)
		}
		return nil
	}
	ref, err := reference.ParseNormalizedNamed(pullspec)
	if err != nil {
		return fmt.Errorf("%w: the %s pullspec %q is not a valid image reference: %w", ErrInvalidInput, what, pullspec, err)
	}
	if _, byDigest := ref.(reference.Digested); !byDigest {
		return fmt.Errorf("%w: the %s pullspec %q is not by digest: use host[:port][/namespace]/name@sha256:<digest>", ErrInvalidInput, what, pullspec)
	}
	if _, tagged := ref.(reference.Tagged); tagged {
		return fmt.Errorf("%w: the %s pullspec %q has both a tag and a digest: keep only the digest", ErrInvalidInput, what, pullspec)
	}
	return nil
}

func checkReleaseVersion(version string) error {
	if len(version) > maxReleaseVersionBytes {
		return fmt.Errorf("%w: the release version is longer than %d bytes", ErrInvalidInput, maxReleaseVersionBytes)
	}
	if !utf8.ValidString(version) {
		return fmt.Errorf("%w: the release version %q is not valid UTF-8", ErrInvalidInput, version)
	}
	for _, r := range version {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: the release version %q contains a control character", ErrInvalidInput, version)
		}
	}
	return nil
}
