package registry

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// The seed grammar of image references. These are the exact regular expressions that the
// MachineOSConfig CRD (api/v1alpha1, types ImageDigestFormat and ImageTagPushspec) evaluates in
// CEL; TestCRDRegexesMatchPullspecGrammar reads the generated CRD and fails if they drift apart.
// CEL's matches() is RE2, the same engine as Go's regexp, so equal source means equal language.
const (
	// HostPattern is a registry host name: dot-separated DNS-like labels (upper case allowed).
	HostPattern = `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*`
	// PortPattern is the optional ":port" after the host.
	PortPattern = `:[0-9]{1,5}`
	// PathComponentPattern is one lowercase repository path component.
	PathComponentPattern = `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
	// NamePattern is host[:port] followed by one or more path components.
	NamePattern = HostPattern + `(` + PortPattern + `)?(/` + PathComponentPattern + `)+`
	// DigestPattern is the "@sha256:<64 lowercase hex>" suffix of a digest pullspec.
	DigestPattern = `@sha256:[a-f0-9]{64}`
	// TagPattern is a tag: up to 128 letters, digits, '_', '.', '-', not starting with '.' or '-'.
	TagPattern = `[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127}`
	// TaggedShapePattern is the CRD's coarse shape check of a pushspec: something, a '/', and a
	// trailing ":<tag>". The part before the last ':' must then match NamePattern.
	TaggedShapePattern = `[^/]+/.*:` + TagPattern

	// MaxPullspecLength is the longest pullspec or pushspec the API accepts, in characters.
	MaxPullspecLength = 447
)

var (
	hostRE          = regexp.MustCompile(`^` + HostPattern + `$`)
	portRE          = regexp.MustCompile(`^` + PortPattern + `$`)
	pathComponentRE = regexp.MustCompile(`^` + PathComponentPattern + `$`)
	nameRE          = regexp.MustCompile(`^` + NamePattern + `$`)
	digestSuffixRE  = regexp.MustCompile(`^` + DigestPattern + `$`)
	tagRE           = regexp.MustCompile(`^` + TagPattern + `$`)
	taggedShapeRE   = regexp.MustCompile(`^` + TaggedShapePattern + `$`)
)

// PullspecRule names the rule of the grammar that a pullspec broke. It is an error itself, so
// callers can test with errors.Is(err, registry.RuleTooLong) as well as read PullspecError.Rule.
type PullspecRule string

// The rules a pullspec or pushspec can break.
const (
	RuleEmpty            PullspecRule = "Empty"
	RuleTooLong          PullspecRule = "TooLong"
	RuleNotByDigest      PullspecRule = "NotByDigest"
	RuleNotByTag         PullspecRule = "NotByTag"
	RuleTagAndDigest     PullspecRule = "TagAndDigest"
	RuleDigestAlgorithm  PullspecRule = "DigestAlgorithm"
	RuleDigestNotHex     PullspecRule = "DigestNotHex"
	RuleDigestUppercase  PullspecRule = "DigestUppercase"
	RuleDigestLength     PullspecRule = "DigestLength"
	RuleNoRegistryHost   PullspecRule = "NoRegistryHost"
	RuleNoRepository     PullspecRule = "NoRepository"
	RuleBadHost          PullspecRule = "BadHost"
	RuleBadPort          PullspecRule = "BadPort"
	RuleBadPathComponent PullspecRule = "BadPathComponent"
	RuleNoTag            PullspecRule = "NoTag"
	RuleBadTag           PullspecRule = "BadTag"
	// RuleMalformed is a safety net: the spec passed every specific check but not the CRD's
	// regular expression. The fuzz target asserts it is unreachable.
	RuleMalformed PullspecRule = "Malformed"
)

func (r PullspecRule) Error() string { return "pullspec rule " + string(r) }

// PullspecError says which rule a pullspec broke and how to fix it.
type PullspecError struct {
	Spec   string
	Rule   PullspecRule
	Detail string
}

func (e *PullspecError) Error() string {
	return fmt.Sprintf("invalid image reference %s: %s", quoteShort(e.Spec), e.Detail)
}

// Unwrap lets errors.Is match the rule.
func (e *PullspecError) Unwrap() error { return e.Rule }

func pullspecErr(spec string, rule PullspecRule, format string, args ...any) error {
	return &PullspecError{Spec: spec, Rule: rule, Detail: fmt.Sprintf(format, args...)}
}

// quoteShort quotes s for a message, cutting very long input so that a message stays readable.
func quoteShort(s string) string {
	const max = 120
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return fmt.Sprintf("%q…", s[:cut])
	}
	return fmt.Sprintf("%q", s)
}

// Reference is a parsed, valid pullspec or pushspec. Exactly one of Tag and Digest is set.
type Reference struct {
	// Host is the registry host and optional port, exactly as written.
	Host string
	// Repository is the path after the host, e.g. "openshift/os".
	Repository string
	// Tag is set for tag references.
	Tag string
	// Digest is "sha256:<hex>" for digest references.
	Digest string
}

// Name is host[:port]/repository, without tag or digest.
func (r Reference) Name() string { return r.Host + "/" + r.Repository }

// String is the reference in its canonical text form.
func (r Reference) String() string {
	switch {
	case r.Digest != "":
		return r.Name() + "@" + r.Digest
	case r.Tag != "":
		return r.Name() + ":" + r.Tag
	default:
		return r.Name()
	}
}

// IsDigest says whether the reference names its image by digest.
func (r Reference) IsDigest() bool { return r.Digest != "" }

// WithDigest returns the same repository referenced by digest (the tag is dropped).
func (r Reference) WithDigest(digest string) Reference {
	return Reference{Host: r.Host, Repository: r.Repository, Digest: strings.TrimPrefix(digest, "@")}
}

// ValidateDigestPullspec checks s against the seed grammar of a digest pullspec:
// host[:port][/namespace]/name@sha256:<64 lowercase hex>, 1–447 characters.
func ValidateDigestPullspec(s string) error {
	_, err := ParseDigestPullspec(s)
	return err
}

// ValidateTagPushspec checks s against the seed grammar of a push spec:
// host[:port][/namespace]/name:<tag> (svc_name.namespace.svc[:port]/repository/name:<tag> is the
// same grammar with a cluster-service host), 1–447 characters.
func ValidateTagPushspec(s string) error {
	_, err := ParseTagPushspec(s)
	return err
}

// ParseDigestPullspec parses and validates a digest pullspec.
func ParseDigestPullspec(s string) (Reference, error) {
	if err := checkLength(s); err != nil {
		return Reference{}, err
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		hint := "add @sha256:<digest>"
		if looksTagged(s) {
			hint = "it names a tag; resolve the tag to its digest (for example with skopeo inspect) and write name@sha256:<digest>"
		}
		return Reference{}, pullspecErr(s, RuleNotByDigest,
			"the image must be referenced by digest (host[:port][/namespace]/name@sha256:<64 lowercase hex>); %s", hint)
	}
	name, digest := s[:at], s[at+1:]
	if err := checkDigest(s, digest); err != nil {
		return Reference{}, err
	}
	if looksTagged(name) {
		return Reference{}, pullspecErr(s, RuleTagAndDigest,
			"it has both a tag and a digest; drop the :<tag> part, the digest alone names the image")
	}
	host, repo, err := checkName(s, name)
	if err != nil {
		return Reference{}, err
	}
	if !nameRE.MatchString(name) || !digestSuffixRE.MatchString(s[at:]) {
		return Reference{}, pullspecErr(s, RuleMalformed, "it does not match %s%s", NamePattern, DigestPattern)
	}
	return Reference{Host: host, Repository: repo, Digest: digest}, nil
}

// ParseTagPushspec parses and validates a tag reference (push specs; also tag pulls).
func ParseTagPushspec(s string) (Reference, error) {
	if err := checkLength(s); err != nil {
		return Reference{}, err
	}
	if strings.Contains(s, "@") {
		return Reference{}, pullspecErr(s, RuleNotByTag,
			"a push target must name a tag (host[:port][/namespace]/name:<tag>), not a digest; the registry assigns the digest")
	}
	slash := strings.IndexByte(s, '/')
	if slash < 0 {
		name := s
		if colon := strings.LastIndexByte(s, ':'); colon >= 0 {
			name = s[:colon]
		}
		return Reference{}, noHostErr(s, name)
	}
	colon := strings.LastIndexByte(s, ':')
	if colon < strings.LastIndexByte(s, '/') {
		return Reference{}, pullspecErr(s, RuleNoTag,
			"it has no tag; add :<tag> at the end, e.g. %s:latest", s)
	}
	name, tag := s[:colon], s[colon+1:]
	if !tagRE.MatchString(tag) {
		return Reference{}, pullspecErr(s, RuleBadTag,
			"tag %s is not valid: use 1–128 letters, digits, '_', '.', '-', not starting with '.' or '-'", quoteShort(tag))
	}
	host, repo, err := checkName(s, name)
	if err != nil {
		return Reference{}, err
	}
	if !taggedShapeRE.MatchString(s) || !nameRE.MatchString(name) {
		return Reference{}, pullspecErr(s, RuleMalformed, "it does not match %s", TaggedShapePattern)
	}
	return Reference{Host: host, Repository: repo, Tag: tag}, nil
}

// ParsePullspec parses a reference to pull: by digest when it contains '@', by tag otherwise.
func ParsePullspec(s string) (Reference, error) {
	if strings.Contains(s, "@") {
		return ParseDigestPullspec(s)
	}
	return ParseTagPushspec(s)
}

// RegistryHost returns the registry host[:port] that a pullspec or pushspec belongs to, which is
// what the cluster image policy is checked against.
func RegistryHost(spec string) (string, error) {
	ref, err := ParsePullspec(spec)
	if err != nil {
		return "", err
	}
	return ref.Host, nil
}

// WithDigest turns a tag spec into the digest spec of the same repository:
// "host/repo:tag" + "sha256:…" → "host/repo@sha256:…". It is a plain text operation so that it
// cannot fail; validate the result with ValidateDigestPullspec when the input is not trusted.
func WithDigest(tagSpec, digest string) string {
	name := tagSpec
	if at := strings.IndexByte(name, '@'); at >= 0 {
		name = name[:at]
	}
	if colon := strings.LastIndexByte(name, ':'); colon > strings.LastIndexByte(name, '/') {
		name = name[:colon]
	}
	return name + "@" + strings.TrimPrefix(digest, "@")
}

func checkLength(s string) error {
	if s == "" {
		return pullspecErr(s, RuleEmpty, "it is empty; write host[:port][/namespace]/name with a tag or digest")
	}
	// The API counts characters, not bytes (OpenAPI maxLength).
	if n := utf8.RuneCountInString(s); n > MaxPullspecLength {
		return pullspecErr(s, RuleTooLong, "it is %d characters long; the limit is %d", n, MaxPullspecLength)
	}
	return nil
}

func checkDigest(spec, digest string) error {
	hex, ok := strings.CutPrefix(digest, "sha256:")
	if !ok {
		return pullspecErr(spec, RuleDigestAlgorithm,
			"the digest must start with sha256: (got %s); only sha256 digests are accepted", quoteShort(cutAt(digest, ':')))
	}
	upper := false
	for i := 0; i < len(hex); i++ {
		switch c := hex[i]; {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			upper = true
		default:
			return pullspecErr(spec, RuleDigestNotHex,
				"the digest has %s at position %d; it must be 64 hexadecimal characters 0-9, a-f", quoteShort(string(rune(c))), i+1)
		}
	}
	if upper {
		return pullspecErr(spec, RuleDigestUppercase,
			"the digest has upper-case hex; write it in lower case (a-f)")
	}
	if len(hex) != 64 {
		return pullspecErr(spec, RuleDigestLength,
			"the digest has %d hex characters; a sha256 digest has exactly 64", len(hex))
	}
	return nil
}

// checkName validates host[:port]/path and returns the host[:port] and the path.
func checkName(spec, name string) (host, repo string, err error) {
	slash := strings.IndexByte(name, '/')
	if slash < 0 {
		return "", "", noHostErr(spec, name)
	}
	host, repo = name[:slash], name[slash+1:]
	hostname, port, hasPort := strings.Cut(host, ":")
	if !hostRE.MatchString(hostname) {
		return "", "", pullspecErr(spec, RuleBadHost,
			"registry host %s is not a host name: use letters, digits and '-' in dot-separated labels that do not start or end with '-'", quoteShort(hostname))
	}
	if hasPort && !portRE.MatchString(":"+port) {
		return "", "", pullspecErr(spec, RuleBadPort,
			"port %s of registry %s must be 1 to 5 digits", quoteShort(port), quoteShort(hostname))
	}
	for i, c := range strings.Split(repo, "/") {
		if pathComponentRE.MatchString(c) {
			continue
		}
		why := "use lowercase letters and digits, separated by '.', '_', '__' or dashes"
		switch {
		case c == "":
			why = "it is empty (a doubled or trailing '/')"
		case strings.ToLower(c) != c && pathComponentRE.MatchString(strings.ToLower(c)):
			why = "repository names must be lower case"
		}
		return "", "", pullspecErr(spec, RuleBadPathComponent,
			"path component %d %s is not valid: %s", i+1, quoteShort(c), why)
	}
	return host, repo, nil
}

func noHostErr(spec, name string) error {
	if strings.ContainsAny(name, ".:") || name == "localhost" {
		return pullspecErr(spec, RuleNoRepository,
			"it names registry %s but no repository; write %s/<namespace>/<name>", quoteShort(name), name)
	}
	return pullspecErr(spec, RuleNoRegistryHost,
		"it has no registry host; write the full name, e.g. quay.io/<namespace>/%s (mosb never assumes docker.io)", name)
}

// looksTagged says whether the last path element of s carries a ":tag".
func looksTagged(s string) bool {
	slash := strings.LastIndexByte(s, '/')
	return slash >= 0 && strings.IndexByte(s[slash:], ':') >= 0
}

func cutAt(s string, sep byte) string {
	if i := strings.IndexByte(s, sep); i >= 0 {
		return s[:i]
	}
	return s
}
