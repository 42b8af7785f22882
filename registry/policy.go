package registry

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	configv1 "github.com/openshift/api/config/v1"
	corev1 "k8s.io/api/core/v1"
)

const imageConfigObject = "image.config.openshift.io/cluster"

// hostPortRE is a registry host with an optional port, nothing else.
var hostPortRE = regexp.MustCompile(`^` + HostPattern + `(` + PortPattern + `)?$`)

// registryPattern is one entry of allowedRegistries, blockedRegistries or insecureRegistries:
// "host[:port][/path…]" (the registry, or a namespace/repository in it) or "*.domain".
type registryPattern struct {
	text string // as written, host lower-cased
}

func parseRegistryPattern(field, s string) (registryPattern, error) {
	host, rest, hasPath := strings.Cut(s, "/")
	host = strings.ToLower(host)
	text := host
	if hasPath {
		text += "/" + rest
	}
	if wildcardRE.MatchString(text) || locationRE.MatchString(text) {
		return registryPattern{text: text}, nil
	}
	return registryPattern{}, &ConfigError{Object: imageConfigObject, Field: field, Value: s,
		Problem: "must be host[:port], host[:port]/namespace… or *.domain"}
}

func (p registryPattern) wildcard() bool { return strings.HasPrefix(p.text, "*.") }

// matches says whether the image name (host lower-cased, docker.io normalised) falls under the
// pattern, with the scoping rules of policy.json's "docker" transport: a host[:port] pattern
// matches that exact host and port, a path pattern matches at '/' boundaries, and "*.domain"
// matches any subdomain whatever its port.
func (p registryPattern) matches(name string) bool {
	if p.wildcard() {
		return strings.HasSuffix(hostnameOf(name), p.text[1:])
	}
	return name == p.text || strings.HasPrefix(name, p.text+"/")
}

// coversHost says whether the pattern names this host[:port] at all, at any path: TLS settings
// are per host, so a path-scoped insecure entry makes the whole host insecure for our client.
func (p registryPattern) coversHost(host string) bool {
	host = strings.ToLower(host)
	if p.wildcard() {
		return strings.HasSuffix(hostnameOf(host), p.text[1:])
	}
	h, _, _ := strings.Cut(p.text, "/")
	return h == host
}

func hostnameOf(name string) string {
	host, _, _ := strings.Cut(name, "/")
	hostname, _, _ := strings.Cut(host, ":")
	return hostname
}

// policyName is the name the image policy judges: as containers spells it, host lower-cased
// (host names are case-insensitive; lower-casing can only make the check stricter than buildah).
func policyName(ref Reference) string {
	name := matchName(ref)
	host, rest, _ := strings.Cut(name, "/")
	return strings.ToLower(host) + "/" + rest
}

// ImagePolicy is what the cluster Image config (image.config.openshift.io/cluster) says about
// registries. A nil *ImagePolicy permits everything and trusts no extra CA.
type ImagePolicy struct {
	allowed  []registryPattern // nil: no allow-list
	blocked  []registryPattern
	insecure []registryPattern
	search   []string
	cas      map[string][]byte // certs.d directory name (host[:port]) → PEM
}

// NewImagePolicy reads the Image config and the ConfigMap its spec.additionalTrustedCA names
// (from openshift-config; the caller fetches it). Either may be nil when absent, but a
// ConfigMap that the Image does not name, or a named one that is missing, is an error so that
// wiring mistakes surface.
func NewImagePolicy(img *configv1.Image, trustedCA *corev1.ConfigMap) (*ImagePolicy, error) {
	p := &ImagePolicy{cas: map[string][]byte{}}
	var spec configv1.ImageSpec
	if img != nil {
		spec = img.Spec
	}
	rs := spec.RegistrySources
	if len(rs.AllowedRegistries) > 0 && len(rs.BlockedRegistries) > 0 {
		return nil, &ConfigError{Object: imageConfigObject, Field: "spec.registrySources",
			Problem: "only one of allowedRegistries and blockedRegistries may be set; remove one of them"}
	}
	var err error
	if p.allowed, err = parsePatterns("spec.registrySources.allowedRegistries", rs.AllowedRegistries); err != nil {
		return nil, err
	}
	if p.blocked, err = parsePatterns("spec.registrySources.blockedRegistries", rs.BlockedRegistries); err != nil {
		return nil, err
	}
	if p.insecure, err = parsePatterns("spec.registrySources.insecureRegistries", rs.InsecureRegistries); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i, s := range rs.ContainerRuntimeSearchRegistries {
		if !hostPortRE.MatchString(s) {
			return nil, &ConfigError{Object: imageConfigObject, Field: fmt.Sprintf("spec.registrySources.containerRuntimeSearchRegistries[%d]", i),
				Value: s, Problem: "must be a registry host[:port] (no path, no wildcard)"}
		}
		if !seen[s] { // order matters for search; a repeat adds nothing
			seen[s] = true
			p.search = append(p.search, s)
		}
	}
	if err := p.readTrustedCA(spec.AdditionalTrustedCA.Name, trustedCA); err != nil {
		return nil, err
	}
	return p, nil
}

func parsePatterns(field string, entries []string) ([]registryPattern, error) {
	var out []registryPattern
	for i, s := range entries {
		p, err := parseRegistryPattern(fmt.Sprintf("%s[%d]", field, i), s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// readTrustedCA turns the CA ConfigMap into certs.d directories. Its keys are "host" or
// "host..port": ':' is not allowed in ConfigMap keys, so ".." stands for it.
func (p *ImagePolicy) readTrustedCA(name string, cm *corev1.ConfigMap) error {
	switch {
	case name == "" && cm == nil:
		return nil
	case name == "":
		return &ConfigError{Object: imageConfigObject, Field: "spec.additionalTrustedCA.name",
			Problem: fmt.Sprintf("is empty but ConfigMap %s/%s was given as the trusted CA; set the name or pass no ConfigMap", cm.Namespace, cm.Name)}
	case cm == nil:
		return &ConfigError{Object: imageConfigObject, Field: "spec.additionalTrustedCA.name", Value: name,
			Problem: "names a ConfigMap that was not found; create it in namespace openshift-config or clear the field"}
	case cm.Name != name:
		return &ConfigError{Object: imageConfigObject, Field: "spec.additionalTrustedCA.name", Value: name,
			Problem: fmt.Sprintf("does not name the ConfigMap given (%s)", cm.Name)}
	}
	obj := "ConfigMap/" + cm.Namespace + "/" + cm.Name
	data := map[string][]byte{}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for _, key := range slices.Sorted(maps.Keys(data)) {
		dir := strings.Replace(key, "..", ":", 1)
		if !hostPortRE.MatchString(dir) {
			return &ConfigError{Object: obj, Field: "data key", Value: key,
				Problem: "must be a registry host, or host..port for a registry on a port (e.g. registry.example.com..5000)"}
		}
		if err := checkPEMCertificates(data[key]); err != nil {
			return &ConfigError{Object: obj, Field: "data key", Value: key, Problem: err.Error()}
		}
		p.cas[dir] = data[key]
	}
	return nil
}

func checkPEMCertificates(b []byte) error {
	n := 0
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("holds a CERTIFICATE block that does not parse (%v); put the PEM of the registry's CA there", err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("holds no PEM certificate; put the PEM (-----BEGIN CERTIFICATE-----…) of the registry's CA there")
	}
	return nil
}

// RegistryCAs returns the extra CAs per registry, keyed by the certs.d directory name
// (host or host:port): write each as <certs.d>/<key>/ca.crt for buildah. The map is a copy.
func (p *ImagePolicy) RegistryCAs() map[string][]byte {
	out := map[string][]byte{}
	if p == nil {
		return out
	}
	for k, v := range p.cas {
		out[k] = append([]byte(nil), v...)
	}
	return out
}

// SearchRegistries is containerRuntimeSearchRegistries, in order.
func (p *ImagePolicy) SearchRegistries() []string {
	if p == nil {
		return nil
	}
	return append([]string(nil), p.search...)
}

// InsecureHost says whether TLS verification is off (and plain HTTP allowed) for host[:port].
func (p *ImagePolicy) InsecureHost(host string) bool {
	if p == nil {
		return false
	}
	for _, pat := range p.insecure {
		if pat.coversHost(host) {
			return true
		}
	}
	return false
}

// insecureName says whether a name (registries.conf location) is insecure, path-aware as
// registries.conf prefixes are.
func (p *ImagePolicy) insecureName(name string) bool {
	if p == nil {
		return false
	}
	for _, pat := range p.insecure {
		if pat.matches(strings.ToLower(name)) {
			return true
		}
	}
	return false
}

// DecisionReason is the machine-readable outcome of a policy check; the controller can use it
// as (or map it to) a condition reason.
type DecisionReason string

// The outcomes of a policy check.
const (
	ReasonAllowed DecisionReason = "Allowed"
	// ReasonRegistryBlocked: the registry is in blockedRegistries.
	ReasonRegistryBlocked DecisionReason = "RegistryBlocked"
	// ReasonRegistryNotAllowed: allowedRegistries is set and the registry is not in it.
	ReasonRegistryNotAllowed DecisionReason = "RegistryNotAllowed"
	// ReasonNoPullSource: the source must not be contacted (NeverContactSource) and no mirror
	// is left to pull from: none serves this kind of pull, or the policy forbids them all.
	ReasonNoPullSource DecisionReason = "NoPullSource"
)

// Decision answers "may this build pull / push this image?".
type Decision struct {
	Allowed bool
	Reason  DecisionReason
	// Registry is the host[:port] the decision is about.
	Registry string
	// Message names the registry, the rule and the fix; empty when allowed without remarks.
	Message string
	// SkippedMirrors are mirrors of a permitted pull that the policy forbids: they are never
	// contacted (worth an event, not a failure).
	SkippedMirrors []string
}

// Err is nil when allowed, otherwise a *DecisionError (errors.Is(err, ErrNotPermitted)).
func (d Decision) Err() error {
	if d.Allowed {
		return nil
	}
	return &DecisionError{Decision: d}
}

// ErrNotPermitted is wrapped by every refusal of the image policy.
var ErrNotPermitted = fmt.Errorf("not permitted by the cluster image policy")

// DecisionError is a refused Decision as an error.
type DecisionError struct{ Decision Decision }

func (e *DecisionError) Error() string { return e.Decision.Message }

func (e *DecisionError) Unwrap() error { return ErrNotPermitted }

// judge checks one image name against allowed/blocked registries.
func (p *ImagePolicy) judge(name string) (DecisionReason, string) {
	if p == nil {
		return ReasonAllowed, ""
	}
	for _, pat := range p.blocked {
		if pat.matches(name) {
			return ReasonRegistryBlocked, pat.text
		}
	}
	if p.allowed == nil {
		return ReasonAllowed, ""
	}
	for _, pat := range p.allowed {
		if pat.matches(name) {
			return ReasonAllowed, pat.text
		}
	}
	return ReasonRegistryNotAllowed, ""
}

// permitsLocation says whether the policy lets the build contact a registries.conf location
// (host[:port][/path]) as a whole: with an allow-list some entry must cover the location itself,
// so that every image under it is allowed too.
func (p *ImagePolicy) permitsLocation(location string) bool {
	host, rest, hasPath := strings.Cut(location, "/")
	name := strings.ToLower(host)
	if hasPath {
		name += "/" + rest
	}
	reason, _ := p.judge(name)
	return reason == ReasonAllowed
}

// check judges an image reference by its own name, ignoring mirrors: this is the push check,
// and the first half of the pull check. action ("pull", "push to") goes into the message.
func (p *ImagePolicy) check(ref Reference, action string) Decision {
	name := policyName(ref)
	reason, entry := p.judge(name)
	d := Decision{Allowed: reason == ReasonAllowed, Reason: reason, Registry: ref.Host}
	switch reason {
	case ReasonRegistryBlocked:
		d.Message = fmt.Sprintf("cannot %s %s: registry %s is in %s spec.registrySources.blockedRegistries (entry %q); remove it there or choose another registry",
			action, ref.String(), ref.Host, imageConfigObject, entry)
	case ReasonRegistryNotAllowed:
		list := make([]string, len(p.allowed))
		for i, pat := range p.allowed {
			list[i] = pat.text
		}
		d.Message = fmt.Sprintf("cannot %s %s: registry %s is not in %s spec.registrySources.allowedRegistries (%s); add it there or choose an allowed registry",
			action, ref.String(), ref.Host, imageConfigObject, strings.Join(list, ", "))
	}
	return d
}
