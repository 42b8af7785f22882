package registry

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"

	configv1 "github.com/openshift/api/config/v1"
)

var (
	// locationRE is a mirror or source location: host[:port][/namespace…][/repo].
	locationRE = regexp.MustCompile(`^` + HostPattern + `(` + PortPattern + `)?(/` + PathComponentPattern + `)*$`)
	// wildcardRE is a "*.domain" source: any subdomain of domain.
	wildcardRE = regexp.MustCompile(`^\*\.` + HostPattern + `$`)
)

// PullSource is one place to try when pulling an image.
type PullSource struct {
	// Reference is the image at that place: the mirror-rewritten name, or the original.
	Reference Reference
	// Mirror is false for the source (the registry the image was named by).
	Mirror bool
}

// MirrorSet is the merged mirror configuration of a cluster: ImageDigestMirrorSets and
// ImageContentPolicies for digest pulls, ImageTagMirrorSets and ImageContentPolicy entries with
// allowMirrorByTags for tag pulls. It applies to pulls only; there is no way to ask it about a
// push. A nil *MirrorSet has no mirrors.
type MirrorSet struct {
	rules []*mirrorRule // sorted by source
}

// mirrorRule is everything configured for one source.
type mirrorRule struct {
	source             string
	mirrors            []mirrorEndpoint // merged order
	neverContactSource bool
	origins            []string // kind/name of the objects that configure this source
}

type mirrorEndpoint struct {
	location        string
	byDigest, byTag bool
}

func (r *mirrorRule) wildcard() bool { return strings.HasPrefix(r.source, "*.") }

// mirrorList is one list of mirrors as one object entry wrote it.
type mirrorList struct {
	source          string
	mirrors         []string
	byDigest, byTag bool
	never           bool
	origin          string
}

// NewMirrorSet validates and merges the mirror objects. The order of the objects in the slices
// does not matter: they are taken sorted by name, so the same objects always give the same merge.
func NewMirrorSet(idms []configv1.ImageDigestMirrorSet, itms []configv1.ImageTagMirrorSet, icps []configv1.ImageContentPolicy) (*MirrorSet, error) {
	var lists []mirrorList

	for _, o := range sortedByName(idms, func(o configv1.ImageDigestMirrorSet) string { return o.Name }) {
		obj := "ImageDigestMirrorSet/" + o.Name
		for i, e := range o.Spec.ImageDigestMirrors {
			l, err := newMirrorList(obj, fmt.Sprintf("spec.imageDigestMirrors[%d]", i), e.Source, imageMirrors(e.Mirrors), e.MirrorSourcePolicy)
			if err != nil {
				return nil, err
			}
			l.byDigest = true
			lists = append(lists, l)
		}
	}
	for _, o := range sortedByName(icps, func(o configv1.ImageContentPolicy) string { return o.Name }) {
		obj := "ImageContentPolicy/" + o.Name
		for i, e := range o.Spec.RepositoryDigestMirrors {
			ms := make([]string, len(e.Mirrors))
			for j, m := range e.Mirrors {
				ms[j] = string(m)
			}
			l, err := newMirrorList(obj, fmt.Sprintf("spec.repositoryDigestMirrors[%d]", i), e.Source, ms, "")
			if err != nil {
				return nil, err
			}
			l.byDigest, l.byTag = true, e.AllowMirrorByTags
			lists = append(lists, l)
		}
	}
	for _, o := range sortedByName(itms, func(o configv1.ImageTagMirrorSet) string { return o.Name }) {
		obj := "ImageTagMirrorSet/" + o.Name
		for i, e := range o.Spec.ImageTagMirrors {
			l, err := newMirrorList(obj, fmt.Sprintf("spec.imageTagMirrors[%d]", i), e.Source, imageMirrors(e.Mirrors), e.MirrorSourcePolicy)
			if err != nil {
				return nil, err
			}
			l.byTag = true
			lists = append(lists, l)
		}
	}
	return mergeMirrorLists(lists), nil
}

// sortedByName returns a sorted copy: the caller's slice is not reordered.
func sortedByName[T any](in []T, name func(T) string) []T {
	out := slices.Clone(in)
	sort.SliceStable(out, func(i, j int) bool { return name(out[i]) < name(out[j]) })
	return out
}

func imageMirrors(ms []configv1.ImageMirror) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = string(m)
	}
	return out
}

func newMirrorList(obj, field, source string, mirrors []string, policy configv1.MirrorSourcePolicy) (mirrorList, error) {
	if !locationRE.MatchString(source) && !wildcardRE.MatchString(source) {
		return mirrorList{}, &ConfigError{Object: obj, Field: field + ".source", Value: source,
			Problem: "must be host[:port][/namespace…][/repo] or *.domain"}
	}
	for j, m := range mirrors {
		if !locationRE.MatchString(m) {
			return mirrorList{}, &ConfigError{Object: obj, Field: fmt.Sprintf("%s.mirrors[%d]", field, j), Value: m,
				Problem: "must be host[:port][/namespace…][/repo] (no wildcard, tag or digest)"}
		}
	}
	l := mirrorList{source: source, mirrors: mirrors, origin: obj}
	switch policy {
	case "", configv1.AllowContactingSource:
	case configv1.NeverContactSource:
		if len(mirrors) == 0 {
			// The API documents mirrorSourcePolicy as valid only with mirrors; without any the
			// image could not be pulled at all.
			return mirrorList{}, &ConfigError{Object: obj, Field: field + ".mirrorSourcePolicy", Value: string(policy),
				Problem: "NeverContactSource needs at least one mirror; add mirrors or remove the policy"}
		}
		l.never = true
	default:
		return mirrorList{}, &ConfigError{Object: obj, Field: field + ".mirrorSourcePolicy", Value: string(policy),
			Problem: "must be NeverContactSource or AllowContactingSource"}
	}
	return l, nil
}

// mergeMirrorLists groups lists by source and merges each group's mirrors.
func mergeMirrorLists(lists []mirrorList) *MirrorSet {
	bySource := map[string][]mirrorList{}
	for _, l := range lists {
		bySource[l.source] = append(bySource[l.source], l)
	}
	set := &MirrorSet{}
	for _, source := range slices.Sorted(maps.Keys(bySource)) {
		group := bySource[source]
		rule := &mirrorRule{source: source}
		var orders [][]string
		digest, tag := map[string]bool{}, map[string]bool{}
		origins := map[string]bool{}
		for _, l := range group {
			orders = append(orders, l.mirrors)
			for _, m := range l.mirrors {
				digest[m] = digest[m] || l.byDigest
				tag[m] = tag[m] || l.byTag
			}
			// One NeverContactSource is enough: registries.conf has a single "blocked" flag per
			// source, and a source someone said must not be contacted is not contacted.
			rule.neverContactSource = rule.neverContactSource || l.never
			origins[l.origin] = true
		}
		for _, m := range mergeOrdered(orders) {
			rule.mirrors = append(rule.mirrors, mirrorEndpoint{location: m, byDigest: digest[m], byTag: tag[m]})
		}
		rule.origins = slices.Sorted(maps.Keys(origins))
		set.rules = append(set.rules, rule)
	}
	return set
}

// mergeOrdered merges lists into one order that keeps every list's relative order where the
// lists agree (a,b,c + c,d,e → a,b,c,d,e). It is a topological sort that, among the mirrors free
// to go next, takes the one seen first; a conflict (a,b + b,a) is broken the same way, so the
// result is always deterministic even when the seed calls the order "unspecified".
func mergeOrdered(lists [][]string) []string {
	var nodes []string
	seen := map[string]bool{}
	succ := map[string][]string{}
	edge := map[[2]string]bool{}
	indeg := map[string]int{}
	for _, l := range lists {
		prev := ""
		inList := map[string]bool{}
		for _, m := range l {
			if inList[m] {
				continue // a repeat inside one list adds no order
			}
			inList[m] = true
			if !seen[m] {
				seen[m] = true
				nodes = append(nodes, m)
			}
			if prev != "" && !edge[[2]string{prev, m}] {
				edge[[2]string{prev, m}] = true
				succ[prev] = append(succ[prev], m)
				indeg[m]++
			}
			prev = m
		}
	}
	out := make([]string, 0, len(nodes))
	done := map[string]bool{}
	for len(out) < len(nodes) {
		pick := ""
		for _, n := range nodes {
			if !done[n] && indeg[n] <= 0 {
				pick = n
				break
			}
		}
		if pick == "" { // a cycle: the first-seen mirror still waiting goes next
			for _, n := range nodes {
				if !done[n] {
					pick = n
					break
				}
			}
		}
		done[pick] = true
		out = append(out, pick)
		for _, s := range succ[pick] {
			indeg[s]--
		}
	}
	return out
}

// PullSources answers "to pull ref, which references are tried, in order": the mirrors that
// apply to this kind of pull (digest or tag) in merged order, then the source itself unless a
// NeverContactSource policy forbids it. It knows nothing of the cluster image policy; use
// Config.PullSources, which also drops mirrors the policy forbids.
func (m *MirrorSet) PullSources(ref Reference) []PullSource {
	rule := m.ruleFor(ref)
	if rule == nil {
		return []PullSource{{Reference: ref}}
	}
	out := rule.mirrorSources(ref, nil)
	if !rule.neverContactSource {
		out = append(out, PullSource{Reference: ref})
	}
	return out
}

// mirrorSources rewrites ref onto each applicable mirror; skip drops mirrors (policy).
func (r *mirrorRule) mirrorSources(ref Reference, skip func(location string) bool) []PullSource {
	var out []PullSource
	seen := map[string]bool{}
	name := matchName(ref)
	for _, ep := range r.mirrors {
		if (ref.IsDigest() && !ep.byDigest) || (!ref.IsDigest() && !ep.byTag) {
			continue
		}
		if skip != nil && skip(ep.location) {
			continue
		}
		mref, err := ParsePullspec(r.rewrite(name, ep.location) + refSuffix(ref))
		if err != nil || seen[mref.String()] {
			continue // a mirror that cannot hold this name (e.g. host only) is never tried
		}
		seen[mref.String()] = true
		out = append(out, PullSource{Reference: mref, Mirror: true})
	}
	return out
}

func refSuffix(ref Reference) string {
	if ref.IsDigest() {
		return "@" + ref.Digest
	}
	return ":" + ref.Tag
}

// rewrite replaces the part of name that the source matched with the mirror location.
func (r *mirrorRule) rewrite(name, location string) string {
	if r.wildcard() {
		// Like containers/image: the wildcard matched the host name only; a port stays.
		return location + name[len(hostnameOf(name)):]
	}
	return location + name[len(r.source):]
}

// ruleFor finds the most specific source matching ref: the longest non-wildcard source that is
// the name or a '/'-bounded prefix of it; failing that, the longest matching "*.domain".
func (m *MirrorSet) ruleFor(ref Reference) *mirrorRule {
	if m == nil {
		return nil
	}
	name := matchName(ref)
	var best *mirrorRule
	for _, r := range m.rules {
		if !r.matches(name) {
			continue
		}
		if best == nil || moreSpecific(r, best) {
			best = r
		}
	}
	return best
}

func moreSpecific(a, b *mirrorRule) bool {
	if a.wildcard() != b.wildcard() {
		return !a.wildcard()
	}
	return len(a.source) > len(b.source)
}

func (r *mirrorRule) matches(name string) bool {
	if r.wildcard() {
		return strings.HasSuffix(hostnameOf(name), r.source[1:])
	}
	return name == r.source || strings.HasPrefix(name, r.source+"/")
}

// matchName is the name that sources are compared with. It is spelled as containers/image
// spells it (reference.Named.Name()), so our answers agree with buildah's reading of the
// rendered registries.conf: Docker Hub's aliases fold into docker.io, and a one-element Docker
// Hub path gets its implicit "library/".
func matchName(ref Reference) string {
	host, repo := ref.Host, ref.Repository
	if host == "index.docker.io" {
		host = "docker.io"
	}
	if host == "docker.io" && !strings.Contains(repo, "/") {
		repo = "library/" + repo
	}
	return host + "/" + repo
}
