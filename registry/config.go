package registry

import (
	"fmt"
	"strings"

	configv1 "github.com/openshift/api/config/v1"
	corev1 "k8s.io/api/core/v1"
)

// ConfigSources are the cluster objects that decide how the build reaches registries. Every
// field may be empty.
type ConfigSources struct {
	// Image is image.config.openshift.io/cluster.
	Image *configv1.Image
	// AdditionalTrustedCA is the ConfigMap (in openshift-config) that Image names in
	// spec.additionalTrustedCA.
	AdditionalTrustedCA   *corev1.ConfigMap
	ImageDigestMirrorSets []configv1.ImageDigestMirrorSet
	ImageTagMirrorSets    []configv1.ImageTagMirrorSet
	ImageContentPolicies  []configv1.ImageContentPolicy
	// Proxy is the cluster-wide proxy (config.openshift.io/v1 Proxy cluster); nil: none.
	Proxy *configv1.Proxy
	// ProxyTrustedCA is the ConfigMap (in openshift-config) that Proxy names in spec.trustedCA:
	// the cluster's user CA bundle, under the key ca-bundle.crt.
	ProxyTrustedCA *corev1.ConfigMap
}

// Config is the cluster's registry configuration as one value: mirrors and image policy
// combined, so that the checks, our own registry calls and the files rendered for buildah all
// come from the same decisions. A nil *Config means no mirrors and no restrictions.
type Config struct {
	mirrors *MirrorSet
	policy  *ImagePolicy
	proxy   Proxy
	// trustedCA is the cluster's user CA bundle (Proxy spec.trustedCA), trusted for every host.
	trustedCA []byte
}

// NewConfig validates and combines the cluster objects.
func NewConfig(src ConfigSources) (*Config, error) {
	policy, err := NewImagePolicy(src.Image, src.AdditionalTrustedCA)
	if err != nil {
		return nil, err
	}
	mirrors, err := NewMirrorSet(src.ImageDigestMirrorSets, src.ImageTagMirrorSets, src.ImageContentPolicies)
	if err != nil {
		return nil, err
	}
	proxy, err := ProxyFromCluster(src.Proxy)
	if err != nil {
		return nil, err
	}
	trustedCA, err := proxyTrustedCA(src.Proxy, src.ProxyTrustedCA)
	if err != nil {
		return nil, err
	}
	return &Config{mirrors: mirrors, policy: policy, proxy: proxy, trustedCA: trustedCA}, nil
}

// ProxyTrustedCAKey is the key of the trusted CA ConfigMap that holds the bundle.
const ProxyTrustedCAKey = "ca-bundle.crt"

func proxyTrustedCA(proxy *configv1.Proxy, cm *corev1.ConfigMap) ([]byte, error) {
	if proxy == nil || proxy.Spec.TrustedCA.Name == "" {
		return nil, nil
	}
	name := proxy.Spec.TrustedCA.Name
	if cm == nil || cm.Name != name {
		return nil, fmt.Errorf("the cluster Proxy names trustedCA ConfigMap %s, which is not there: create it in openshift-config or clear spec.trustedCA", name)
	}
	bundle := []byte(cm.Data[ProxyTrustedCAKey])
	if len(bundle) == 0 {
		// The network operator creates the ConfigMap before anyone fills it: an empty bundle
		// trusts nothing more.
		return nil, nil
	}
	if err := checkPEMCertificates(bundle); err != nil {
		return nil, fmt.Errorf("the cluster Proxy's trustedCA ConfigMap %s key %s %w", name, ProxyTrustedCAKey, err)
	}
	return bundle, nil
}

// WithNetworkOf is a copy of c that reaches registries as other does: through other's proxy,
// trusting other's trusted CA. A configuration rebuilt from a build request (PushConfig), which
// carries neither, gets them back from the cluster's.
func (c *Config) WithNetworkOf(other *Config) *Config {
	out := &Config{}
	if c != nil {
		*out = *c
	}
	out.proxy, out.trustedCA = other.Proxy(), other.TrustedCA()
	return out
}

// TrustedCA is the cluster's user CA bundle (Proxy spec.trustedCA; nil: none). mosb's own calls
// trust it for every host, and the image gets it in its trust anchors.
func (c *Config) TrustedCA() []byte {
	if c == nil {
		return nil
	}
	return c.trustedCA
}

// Proxy is the cluster's proxy (nil-safe; zero: none). mosb's own registry calls go through it,
// and so do the build's pulls, pushes and RUN steps.
func (c *Config) Proxy() Proxy {
	if c == nil {
		return Proxy{}
	}
	return c.proxy
}

// Mirrors is the merged mirror configuration (nil-safe).
func (c *Config) Mirrors() *MirrorSet {
	if c == nil {
		return nil
	}
	return c.mirrors
}

// Policy is the image policy (nil-safe).
func (c *Config) Policy() *ImagePolicy {
	if c == nil {
		return nil
	}
	return c.policy
}

// CheckPush decides whether the build may push to ref. Mirrors play no part in a push.
func (c *Config) CheckPush(ref Reference) Decision {
	return c.Policy().check(ref, "push to")
}

// CheckPull decides whether the build may pull ref.
//
// The image is judged by the name it is written with, as buildah's policy.json judges it: a
// blocked (or not allowed) registry is refused even when one of its mirrors is permitted —
// mirrors change where bytes come from, not which image the user asked for, and an admin who
// blocked a registry should not see builds from it succeed. To build from a mirror of a
// forbidden registry, write the mirror's name in the spec. Mirrors the policy forbids are
// skipped (listed in SkippedMirrors); if the source must not be contacted (NeverContactSource)
// and no mirror is left, the pull is refused with ReasonNoPullSource.
func (c *Config) CheckPull(ref Reference) Decision {
	d := c.Policy().check(ref, "pull")
	rule := c.Mirrors().ruleFor(ref)
	if rule == nil {
		return d
	}
	applicable := rule.mirrorSources(ref, nil)
	if !d.Allowed {
		if len(applicable) > 0 {
			d.Message += fmt.Sprintf("; its mirrors (%s, from %s) are not used to get around that, because the policy judges an image by the name it is written with: write a mirror's name in the spec, or permit the registry",
				joinRefs(applicable), strings.Join(rule.origins, ", "))
		}
		return d
	}
	kept := c.PullSources(ref)
	keptSet := map[string]bool{}
	for _, s := range kept {
		keptSet[s.Reference.String()] = true
	}
	for _, s := range applicable {
		if !keptSet[s.Reference.String()] {
			d.SkippedMirrors = append(d.SkippedMirrors, s.Reference.String())
		}
	}
	if len(kept) == 0 {
		d.Allowed, d.Reason = false, ReasonNoPullSource
		kind := "digest"
		if !ref.IsDigest() {
			kind = "tag"
		}
		if len(applicable) == 0 {
			d.Message = fmt.Sprintf("cannot pull %s: its source may not be contacted (mirrorSourcePolicy NeverContactSource in %s) and none of its mirrors serves pulls by %s; pull by digest, add a mirror for %s pulls, or allow contacting the source",
				ref.String(), strings.Join(rule.origins, ", "), kind, kind)
		} else {
			d.Message = fmt.Sprintf("cannot pull %s: its source may not be contacted (mirrorSourcePolicy NeverContactSource in %s) and %s spec.registrySources forbids all of its mirrors (%s); permit one of the mirrors or allow contacting the source",
				ref.String(), strings.Join(rule.origins, ", "), imageConfigObject, strings.Join(d.SkippedMirrors, ", "))
		}
		return d
	}
	if len(d.SkippedMirrors) > 0 {
		d.Message = fmt.Sprintf("pulling %s skips mirrors that %s spec.registrySources forbids: %s",
			ref.String(), imageConfigObject, strings.Join(d.SkippedMirrors, ", "))
	}
	return d
}

// PullSources answers "to pull ref, which references does the build try, in order": permitted
// mirrors in merged order, then the source unless NeverContactSource. It is empty when the pull
// is not permitted (see CheckPull for why). There is deliberately no push counterpart: a push
// goes to the pushspec and nowhere else.
func (c *Config) PullSources(ref Reference) []PullSource {
	policy := c.Policy()
	if !policy.check(ref, "pull").Allowed {
		return nil
	}
	rule := c.Mirrors().ruleFor(ref)
	if rule == nil {
		return []PullSource{{Reference: ref}}
	}
	var out []PullSource
	for _, s := range rule.mirrorSources(ref, func(loc string) bool { return !policy.permitsLocation(loc) }) {
		// A blocked entry deeper than the mirror location still blocks this one image, as
		// registries.conf's blocked entries make buildah skip it.
		if policy.check(s.Reference, "pull").Allowed {
			out = append(out, s)
		}
	}
	if !rule.neverContactSource {
		out = append(out, PullSource{Reference: ref})
	}
	return out
}

// InsecureHost says whether the build talks to host[:port] without TLS verification (and may
// use plain HTTP).
func (c *Config) InsecureHost(host string) bool { return c.Policy().InsecureHost(host) }

// RegistryCAs returns extra CAs per certs.d directory name (host or host:port).
func (c *Config) RegistryCAs() map[string][]byte { return c.Policy().RegistryCAs() }

func joinRefs(ss []PullSource) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.Reference.String()
	}
	return strings.Join(out, ", ")
}
