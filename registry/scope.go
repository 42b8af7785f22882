package registry

import (
	"strings"
)

// ForPulls returns the part of c that pulls of refs use, so that what a build gets (and what its
// identity hashes) changes only when something that build pulls is configured differently.
//
// The image policy is kept whole: allowed, blocked and insecure registries, CAs and the
// unqualified-search registries. Of the mirror rules only these are kept:
//
//   - for each ref, the rule ruleFor picks (so the scoped Config answers CheckPull and
//     PullSources for refs exactly as c does), with only the mirrors that serve the kinds of pull
//     it is used for: digest mirrors (ImageDigestMirrorSet, ImageContentPolicy) for digest refs,
//     tag mirrors (ImageTagMirrorSet, ImageContentPolicy with allowMirrorByTags) for tag refs. A
//     rule whose mirrors all serve the other kind stays, without mirrors: its entry in
//     registries.conf still hides less specific sources, and its NeverContactSource still blocks;
//   - for each ref, the rule whose registries.conf entry containers/image picks, when that is
//     another one (the two differ only in corner cases of prefix matching; see confEntryRule);
//   - for each mirror a kept rule sends ref to, the rule whose entry containers/image consults
//     for that mirror's own name, without its mirrors: containers/image refuses a mirror whose own
//     entry is blocked (another source's NeverContactSource) and takes its TLS setting from it.
//
// So the scoped PullRegistriesConf makes containers/image try exactly what c's does for every
// ref, and leaves unmirrored what no kept rule covers. The result is deterministic: rules keep
// c's order and mirrors their merged order. ForPulls of a nil Config is nil.
func (c *Config) ForPulls(refs []Reference) *Config {
	if c == nil {
		return nil
	}
	type use struct{ digest, tag bool }
	uses := map[*mirrorRule]*use{}
	mark := func(r *mirrorRule) *use {
		u := uses[r]
		if u == nil {
			u = &use{}
			uses[r] = u
		}
		return u
	}
	skip := func(location string) bool { return !c.Policy().permitsLocation(location) }
	for _, ref := range refs {
		for _, r := range []*mirrorRule{c.Mirrors().ruleFor(ref), c.confEntryRule(matchName(ref))} {
			if r == nil {
				continue
			}
			u := mark(r)
			if ref.IsDigest() {
				u.digest = true
			} else {
				u.tag = true
			}
			for _, s := range r.mirrorSources(ref, skip) {
				if own := c.confEntryRule(matchName(s.Reference)); own != nil {
					mark(own)
				}
			}
		}
	}
	scoped := &MirrorSet{}
	for _, r := range c.Mirrors().rulesOrNil() {
		u := uses[r]
		if u == nil {
			continue
		}
		kept := &mirrorRule{source: r.source, neverContactSource: r.neverContactSource, origins: r.origins}
		for _, ep := range r.mirrors {
			if (u.digest && ep.byDigest) || (u.tag && ep.byTag) {
				kept.mirrors = append(kept.mirrors, ep)
			}
		}
		scoped.rules = append(scoped.rules, kept)
	}
	return &Config{mirrors: scoped, policy: c.policy}
}

// PullCandidates are the references a pull of image, as a Containerfile writes it (FROM,
// COPY --from, RUN --mount=from=), may fetch. A fully qualified name — its first path element
// has a '.' or ':', is "localhost", or has upper-case letters, as containers/image decides — is
// that image; a short name ("fedora:40", "library/busybox") is tried on each
// unqualified-search registry in turn, and has no candidate when there is none (buildah then
// refuses it). Without tag or digest the tag is "latest". The error is the pullspec grammar's
// when a candidate does not parse (tag and digest together, for instance).
func (c *Config) PullCandidates(image string) ([]Reference, error) {
	if !strings.Contains(image, "@") {
		if colon := strings.LastIndexByte(image, ':'); colon <= strings.LastIndexByte(image, '/') {
			image += ":latest"
		}
	}
	if qualifiedName(image) {
		ref, err := ParsePullspec(image)
		if err != nil {
			return nil, err
		}
		return []Reference{ref}, nil
	}
	var out []Reference
	for _, registry := range c.Policy().SearchRegistries() {
		ref, err := ParsePullspec(registry + "/" + image)
		if err != nil {
			return nil, err
		}
		out = append(out, ref)
	}
	return out, nil
}

// qualifiedName says whether an image name starts with a registry host, by the rule Docker and
// containers/image use for names written without one.
func qualifiedName(image string) bool {
	first, _, hasSlash := strings.Cut(image, "/")
	if !hasSlash {
		return false
	}
	return strings.ContainsAny(first, ".:") || first == "localhost" || strings.ToLower(first) != first
}

// confEntryRule is the mirror rule that owns the [[registry]] entry containers/image picks for
// name (host[:port]/repository, as matchName spells it) in the rendered pull registries.conf; nil
// when the entry it picks is a policy entry (blocked or insecure registry) or there is none.
//
// containers/image takes the longest matching prefix, the first in file order (sorted) among
// equally long ones, and matches wildcard and plain prefixes alike by length. That differs from
// ruleFor in corner cases: "*.ab.com" beats an equally long "x.ab.com", and "example.com" also
// matches "example.com:5000/…". ForPulls keeps both answers, so the scoped file resolves as the
// whole one does.
func (c *Config) confEntryRule(name string) *mirrorRule {
	var best string
	var owner *mirrorRule
	consider := func(prefix string, r *mirrorRule) {
		if !confPrefixMatches(name, prefix) {
			return
		}
		switch {
		case len(prefix) > len(best), len(prefix) == len(best) && prefix < best:
			best, owner = prefix, r
		case prefix == best && r != nil:
			owner = r // a mirror source and a policy entry with one prefix are one entry: the rule's
		}
	}
	for _, r := range c.Mirrors().rulesOrNil() {
		consider(r.source, r)
	}
	for _, p := range c.Policy().blockedOrNil() {
		consider(p.text, nil)
	}
	for _, p := range c.Policy().insecureOrNil() {
		consider(p.text, nil)
	}
	return owner
}

// confPrefixMatches is registries.conf's prefix rule: a plain prefix matches the name itself or
// the name continued with '/', ':' or '@' (so "example.com" covers "example.com:5000/x" too); a
// "*.domain" prefix matches where ".domain" first occurs in the name, if that is in the host and
// ends it (or is followed by the port).
func confPrefixMatches(name, prefix string) bool {
	boundary := func(rest string) bool { return rest == "" || strings.ContainsRune("/:@", rune(rest[0])) }
	if domain, ok := strings.CutPrefix(prefix, "*"); ok && strings.HasPrefix(domain, ".") {
		at := strings.Index(name, domain)
		return at >= 0 && !strings.Contains(name[:at], "/") && boundary(name[at+len(domain):])
	}
	return strings.HasPrefix(name, prefix) && boundary(name[len(prefix):])
}
