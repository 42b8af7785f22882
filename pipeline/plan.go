package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/containerfiles"
	"github.com/mosb-dev/mosb/containerfiles/ignitionlayer"
	"github.com/mosb-dev/mosb/registry"
)

// OSImageURLConfigMap is the ConfigMap (in the build namespace) whose keys default an empty base
// image, extensions image and release version, as the MachineOSConfig API describes.
const OSImageURLConfigMap = "machine-config-osimageurl"

// Keys of the machine-config-osimageurl ConfigMap.
const (
	OSImageURLBaseKey       = "baseOSContainerImage"
	OSImageURLExtensionsKey = "baseOSExtensionsContainerImage"
	OSImageURLReleaseKey    = "releaseVersion"
)

// Inputs are everything a build is made from, already read from the cluster or from files.
type Inputs struct {
	MachineOSConfig *mosbv1.MachineOSConfig
	// RenderedMachineConfig is the pool's rendered MachineConfig; nil when there is none (no
	// MachineConfig API, or a CI build without a cluster).
	RenderedMachineConfig *mcfgv1.MachineConfig
	// OSImageURL is the data of the machine-config-osimageurl ConfigMap; nil when absent.
	OSImageURL map[string]string
	// Pool is the MachineOSConfig's MachineConfigPool (nil without the API, or in a CI build):
	// its conditions can hold builds back (PoolHold).
	Pool *mcfgv1.MachineConfigPool
	// PullSecret and PushSecret are the secrets the spec names; nil when not found.
	PullSecret, PushSecret *corev1.Secret
	// Namespace is where the secrets live, for messages.
	Namespace string
	// Cluster is the registry configuration (Image config, its CA ConfigMap, mirror sets).
	Cluster registry.ConfigSources
	// Arches are the architectures to build (any spelling users write). Empty: those the
	// containerFile entries name, else DefaultArch.
	Arches []string
	// DefaultArch is the architecture to build when nothing else names one (the controller's own).
	DefaultArch string
	// BuilderVersion is part of the identity: a new builder may build a different image.
	BuilderVersion string
	// CredentialsOptional lets a missing secret mean "no credentials" instead of SecretNotFound:
	// for `mosb render`, which neither pulls nor pushes.
	CredentialsOptional bool
	// BuildResources are the build pods' default requests and limits (the controller's flags),
	// which the MachineOSConfig's annotations override key by key (ResolveBuildResources).
	BuildResources BuildResources
	// RunMounts are the entitlement Secret and repository ConfigMaps of the build namespace that
	// exist (RunMountsFor): RUN steps see them, no layer holds them, the identity ignores them.
	RunMounts []buildpod.RunMount
}

// ArchPlan is one architecture's build.
type ArchPlan struct {
	Arch string
	// Selection is the containerFile entry used (own, noarch, or none).
	Selection containerfiles.Selection
	Build     buildpod.ArchBuild
}

// Plan is a build that can start.
type Plan struct {
	// Identity is the SHA-256 of every input that changes the image.
	Identity string
	// Target is the pushspec.
	Target          string
	BaseImage       string
	ExtensionsImage string
	ReleaseVersion  string
	// RenderedMachineConfig is the rendered MachineConfig's name, empty when there is none.
	RenderedMachineConfig string
	// MachineConfigLayer is what the rendered MachineConfig's Ignition config lays into the image
	// and what it skips; nil when there is no rendered MachineConfig.
	MachineConfigLayer *ignitionlayer.Layer
	Arches             []ArchPlan
	// Registry is what the build's pulls use: registries.conf (with the mirror rules of what the
	// build pulls, see pullScope), policy.json, CAs, pull auth file.
	Registry buildpod.RegistryConfig
	// Config is the whole cluster registry configuration, for mosb's own registry calls and
	// checks. The build's registries.conf holds only the part of it that the build's pulls use.
	Config *registry.Config
	// PullAuths and PushAuths are the parsed secrets; push credentials go to the push only.
	PullAuths, PushAuths registry.Auths
	// PullSecretName and PushSecretName are the secrets' names in the build namespace.
	PullSecretName, PushSecretName string
	// RunMounts are what RUN steps see and no layer holds; Proxy is the cluster's proxy, for the
	// build's pulls, push and RUN steps. Neither is part of the identity: they change how the
	// build reaches its inputs, not the image.
	RunMounts []buildpod.RunMount
	Proxy     registry.Proxy
	// Resources are the build pods' requests and limits (not part of the identity: they do not
	// change the image). Where StorageFromBase, the controller sizes ephemeral storage from the
	// base image when it makes a pod.
	Resources corev1.ResourceRequirements
}

// ShortIdentity is the part of the identity in a MachineOSBuild's name.
func (p *Plan) ShortIdentity() string { return p.Identity[:10] }

// MachineOSBuildName is <machineosconfig>-<short identity>.
func (p *Plan) MachineOSBuildName(mosc string) string { return mosc + "-" + p.ShortIdentity() }

// BuildRequest is what an architecture's build pod is to build: the build fields of its request,
// the same for the controller's pods and for `mosb render --request-dir`. The pull credentials stay
// out: a pod reads them from its pull secret's volume.
func (p *Plan) BuildRequest(a ArchPlan) buildpod.Request {
	rc := p.Registry
	rc.PullAuth = nil
	return buildpod.Request{Build: a.Build, Target: p.Target, Untagged: len(p.Arches) > 1, Registry: rc, Prefetch: p.prefetch(),
		RunMounts: slices.Clone(p.RunMounts), Proxy: p.Proxy}
}

// prefetch are the images a build's node image store is to hold first: the base and extensions
// images, by digest only (a tag could name another image by the time the build pulls it).
func (p *Plan) prefetch() []string {
	var out []string
	for _, img := range []string{p.BaseImage, p.ExtensionsImage} {
		if img != "" && registry.ValidateDigestPullspec(img) == nil {
			out = append(out, img)
		}
	}
	return out
}

// ArchNames are the planned architectures, sorted.
func (p *Plan) ArchNames() []string {
	out := make([]string, 0, len(p.Arches))
	for _, a := range p.Arches {
		out = append(out, a.Arch)
	}
	return out
}

// Prepare validates the inputs and plans the build. Its error is always a *Failure.
func Prepare(in Inputs) (*Plan, error) {
	m := in.MachineOSConfig
	if m == nil {
		return nil, fail(ReasonInvalidMachineOSConfig, nil, "no MachineOSConfig was given")
	}
	bi := m.Spec.BuildInputs
	obj := "MachineOSConfig " + m.Name

	target := string(bi.RenderedImagePushspec)
	if err := registry.ValidateTagPushspec(target); err != nil {
		return nil, fail(ReasonInvalidPushspec, err,
			"%s: spec.buildInputs.renderedImagePushspec %q: %v; set it to host[:port][/namespace]/name:<tag>", obj, target, err)
	}

	base, ext, release, f := defaults(obj, bi, in.OSImageURL, in.Namespace)
	if f != nil {
		return nil, f
	}

	pullAuths, f := parseSecret(obj, "spec.buildInputs.baseImagePullSecret", bi.BaseImagePullSecret.Name, in.PullSecret, in.Namespace, in.CredentialsOptional)
	if f != nil {
		return nil, f
	}
	pushAuths, f := parseSecret(obj, "spec.buildInputs.renderedImagePushSecret", bi.RenderedImagePushSecret.Name, in.PushSecret, in.Namespace, in.CredentialsOptional)
	if f != nil {
		return nil, f
	}

	cfg, err := registry.NewConfig(in.Cluster)
	if err != nil {
		return nil, fail(ReasonInvalidClusterConfig, err, "%s cannot be built: %v", obj, err)
	}
	for _, check := range []struct {
		what, spec string
		push       bool
	}{{"base image", base, false}, {"extensions image", ext, false}, {"push target", target, true}} {
		if check.spec == "" {
			continue
		}
		ref, err := registry.ParsePullspec(check.spec)
		if err != nil {
			return nil, fail(ReasonInvalidMachineOSConfig, err, "%s: %s %q: %v", obj, check.what, check.spec, err)
		}
		d := cfg.CheckPull(ref)
		if check.push {
			d = cfg.CheckPush(ref)
		}
		if err := d.Err(); err != nil {
			return nil, fail(ReasonRegistryBlocked, err, "%s: %s: %v", obj, check.what, err)
		}
	}

	cfInput := containerfiles.InputFromMachineOSConfig(m)
	cfInput.BaseImage, cfInput.ExtensionsImage, cfInput.ReleaseVersion = base, ext, release
	var renderedName string
	var machineConfigLayer *ignitionlayer.Layer
	if mc := in.RenderedMachineConfig; mc != nil {
		content, err := currentConfig(mc)
		if err != nil {
			return nil, fail(ReasonInvalidMachineOSConfig, err, "rendered MachineConfig %s cannot be encoded: %v", mc.Name, err)
		}
		layer, err := ignitionlayer.FromMachineConfig(content)
		if err != nil {
			return nil, fail(ReasonInvalidMachineConfig, err,
				"%s: the rendered MachineConfig %s cannot be laid into the image: %v; fix the MachineConfig it is rendered from", obj, mc.Name, err)
		}
		renderedName, machineConfigLayer = mc.Name, layer
		cfInput.RenderedMachineConfig, cfInput.RenderedMachineConfigContent, cfInput.MachineConfigLayer = mc.Name, content, layer.Archive
	}
	cfInput.TrustedCABundle = cfg.TrustedCA()
	if err := containerfiles.Validate(cfInput); err != nil {
		return nil, containerfileFailure(obj, err)
	}

	arches, f := buildArches(obj, in.Arches, bi.Containerfile, in.DefaultArch)
	if f != nil {
		return nil, f
	}
	resources, f := ResolveBuildResources(obj, in.BuildResources, m.Annotations)
	if f != nil {
		return nil, f
	}
	plan := &Plan{
		Target: target, BaseImage: base, ExtensionsImage: ext, ReleaseVersion: release,
		RenderedMachineConfig: renderedName, MachineConfigLayer: machineConfigLayer, Config: cfg, PullAuths: pullAuths, PushAuths: pushAuths,
		PullSecretName: bi.BaseImagePullSecret.Name, PushSecretName: bi.RenderedImagePushSecret.Name,
		Resources: resources, RunMounts: slices.Clone(in.RunMounts), Proxy: cfg.Proxy(),
	}
	for _, arch := range arches {
		cf, err := containerfiles.Assemble(cfInput, arch)
		if err != nil {
			return nil, containerfileFailure(obj, err)
		}
		plan.Arches = append(plan.Arches, ArchPlan{
			Arch:      string(arch),
			Selection: cf.Selection,
			Build:     buildpod.ArchBuild{Arch: string(arch), Containerfile: []byte(cf.Text), ContextFiles: cf.Context},
		})
	}

	if plan.Registry, err = buildRegistryConfig(cfg, pullScope(cfg, plan), pullAuths); err != nil {
		return nil, fail(ReasonInvalidClusterConfig, err, "%s: rendering the registry configuration: %v", obj, err)
	}
	if plan.Identity, err = identity(plan, in.BuilderVersion); err != nil {
		return nil, fail(ReasonInvalidMachineOSConfig, err, "%s: computing the build identity: %v", obj, err)
	}
	return plan, nil
}

// defaults fills what the spec leaves empty from the machine-config-osimageurl ConfigMap. A bad
// value is reported where it lives: the spec field, or the ConfigMap key it came from.
func defaults(obj string, bi mosbv1.BuildInputs, osImageURL map[string]string, ns string) (base, ext, release string, f *Failure) {
	type source struct{ value, where string }
	pick := func(field, spec, key string) source {
		if spec != "" {
			return source{spec, obj + ": spec.buildInputs." + field}
		}
		return source{osImageURL[key], fmt.Sprintf("ConfigMap %s/%s key %s (the default for %s spec.buildInputs.%s)", ns, OSImageURLConfigMap, key, obj, field)}
	}
	b := pick("baseOSImagePullspec", string(bi.BaseOSImagePullspec), OSImageURLBaseKey)
	e := pick("baseOSExtensionsImagePullspec", string(bi.BaseOSExtensionsImagePullspec), OSImageURLExtensionsKey)
	release = bi.ReleaseVersion
	if release == "" {
		release = osImageURL[OSImageURLReleaseKey]
	}
	if b.value == "" {
		return "", "", "", fail(ReasonBaseImageNotSet, nil,
			"%s: spec.buildInputs.baseOSImagePullspec is empty and ConfigMap %s/%s has no %s; set one of them to the base OS image by digest",
			obj, ns, OSImageURLConfigMap, OSImageURLBaseKey)
	}
	for _, img := range []source{b, e} {
		if img.value == "" {
			continue
		}
		if err := registry.ValidateDigestPullspec(img.value); err != nil {
			return "", "", "", fail(ReasonBaseImageNotByDigest, err,
				"%s is %q: %v; reference the image as host[:port][/namespace]/name@sha256:<digest>", img.where, img.value, err)
		}
	}
	return b.value, e.value, release, nil
}

func parseSecret(obj, field, name string, s *corev1.Secret, ns string, optional bool) (registry.Auths, *Failure) {
	if s == nil && optional {
		return registry.Auths{}, nil
	}
	if s == nil {
		return registry.Auths{}, fail(ReasonSecretNotFound, nil,
			"%s: secret %s (%s) not found in namespace %s; create it there as a kubernetes.io/dockerconfigjson secret or fix %s.name",
			obj, name, field, ns, field)
	}
	auths, err := registry.ParseSecret(s)
	if err != nil {
		return registry.Auths{}, fail(ReasonInvalidSecret, err, "%s: %s: %v", obj, field, err)
	}
	return auths, nil
}

func containerfileFailure(obj string, err error) *Failure {
	var unknown *containerfiles.UnknownArchError
	switch {
	case errors.Is(err, containerfiles.ErrInvalidContainerfile):
		return fail(ReasonInvalidContainerfile, err, "%s: spec.buildInputs.%v", obj, err)
	case errors.As(err, &unknown):
		return fail(ReasonInvalidArchitecture, err, "%s: %v", obj, err)
	default:
		return fail(ReasonInvalidMachineOSConfig, err, "%s: %v", obj, err)
	}
}

// buildArches: the requested ones, else those the containerFile entries name, else the default.
func buildArches(obj string, requested []string, entries []mosbv1.MachineOSContainerfile, def string) ([]containerfiles.Arch, *Failure) {
	names := requested
	if len(names) == 0 {
		for _, e := range entries {
			if e.ContainerfileArch != "" && e.ContainerfileArch != mosbv1.NoArch {
				names = append(names, string(e.ContainerfileArch))
			}
		}
	}
	if len(names) == 0 && def != "" {
		names = []string{def}
	}
	seen := map[containerfiles.Arch]bool{}
	var out []containerfiles.Arch
	for _, n := range names {
		a, err := containerfiles.NormalizeBuildArch(n)
		if err != nil {
			return nil, fail(ReasonInvalidArchitecture, err, "%s: cannot build for architecture %q: %v", obj, n, err)
		}
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, fail(ReasonInvalidArchitecture, nil, "%s: no architecture to build for", obj)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// currentConfig is the rendered MachineConfig as the machine-config-daemon reads it: the object
// with only what identifies and defines it, so server bookkeeping (resourceVersion, managedFields,
// timestamps) does not change the image.
func currentConfig(mc *mcfgv1.MachineConfig) ([]byte, error) {
	clean := mcfgv1.MachineConfig{
		TypeMeta:   metav1.TypeMeta{APIVersion: "machineconfiguration.openshift.io/v1", Kind: "MachineConfig"},
		ObjectMeta: metav1.ObjectMeta{Name: mc.Name, Labels: mc.Labels, Annotations: mc.Annotations},
		Spec:       mc.Spec,
	}
	return json.Marshal(clean)
}

// pullScope is the part of cfg that the build's pulls use (registry.Config.ForPulls): the images
// the assembled Containerfiles of every planned architecture pull, the base and extensions images
// among them. The build's registries.conf, and so its identity, is rendered from it, so that a
// mirror set changes the identity of the MachineOSConfigs that pull something it covers and of no
// other. When the pulls cannot all be known — an image named through a variable, a name mosb's
// pullspec grammar cannot read — it is cfg whole, and every mirror set counts, as it always did.
func pullScope(cfg *registry.Config, plan *Plan) *registry.Config {
	images := []string{plan.BaseImage}
	if plan.ExtensionsImage != "" {
		images = append(images, plan.ExtensionsImage)
	}
	for _, a := range plan.Arches {
		pulls, err := containerfiles.PulledImages(string(a.Build.Containerfile))
		if err != nil || !pulls.Complete() {
			return cfg
		}
		images = append(images, pulls.Images...)
	}
	var refs []registry.Reference
	for _, image := range images {
		candidates, err := cfg.PullCandidates(image)
		if err != nil {
			return cfg
		}
		refs = append(refs, candidates...)
	}
	return cfg.ForPulls(refs)
}

// buildRegistryConfig renders what the build gets. registries.conf comes from scoped, the part of
// the cluster configuration the build's pulls use (see pullScope). policy.json and the CAs come
// from cfg whole: they are policy rather than routing, small, and rarely change; and the CAs also
// serve the push to the target's registry, which scoped knows nothing of.
func buildRegistryConfig(cfg, scoped *registry.Config, pull registry.Auths) (buildpod.RegistryConfig, error) {
	conf, err := scoped.PullRegistriesConf()
	if err != nil {
		return buildpod.RegistryConfig{}, err
	}
	policy, err := cfg.PolicyJSON()
	if err != nil {
		return buildpod.RegistryConfig{}, err
	}
	auth, err := pull.AuthFile()
	if err != nil {
		return buildpod.RegistryConfig{}, err
	}
	return buildpod.RegistryConfig{RegistriesConf: conf, PolicyJSON: policy, CAs: cfg.RegistryCAs(), PullAuth: auth}, nil
}

// IdentityExplained says to a person what the identity hashes, and when the controller keeps an
// image although the identity changed (rebuildrules.go).
func (p *Plan) IdentityExplained() string {
	mc := "no rendered MachineConfig"
	if p.RenderedMachineConfig != "" {
		mc = "the rendered MachineConfig " + p.RenderedMachineConfig + " (its /etc/machine-config-daemon/currentconfig and the layer of its Ignition files and units)"
	}
	return fmt.Sprintf(`the build identity hashes what changes the image: for each of %s, the assembled Containerfile and its context, %s; the target, registries.conf, policy.json, the CAs and the builder version. Not: credentials, build resources, server bookkeeping.
the controller keeps the pool's image when a new rendered MachineConfig changes nothing but what the node applies itself (not osImageURL, kernelType, extensions or kernelArguments), unless %s is "true" or --rebuild-on-any-machineconfig-change; mosb build always builds.
`, strings.Join(p.ArchNames(), ", "), mc, AnnotationRebuildOnAnyChange)
}

// identity hashes everything that changes the image and nothing that does not: not the
// credentials, not the order of map keys.
func identity(p *Plan, builderVersion string) (string, error) {
	type archInput struct {
		Arch          string
		Containerfile string
		Context       map[string][]byte // encoding/json sorts map keys
	}
	doc := struct {
		Builder        string
		Target         string
		Arches         []archInput
		RegistriesConf []byte
		PolicyJSON     []byte
		CAs            map[string][]byte
	}{Builder: builderVersion, Target: p.Target, RegistriesConf: p.Registry.RegistriesConf, PolicyJSON: p.Registry.PolicyJSON, CAs: p.Registry.CAs}
	for _, a := range p.Arches {
		doc.Arches = append(doc.Arches, archInput{a.Arch, string(a.Build.Containerfile), a.Build.ContextFiles})
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), nil
}
