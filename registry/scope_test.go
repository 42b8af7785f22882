package registry

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	configv1 "github.com/openshift/api/config/v1"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/types"
)

// describeRules lists a configuration's mirror rules as "source[ never]: mirror(kinds) …".
func describeRules(c *Config) []string {
	out := []string{}
	for _, r := range c.Mirrors().rulesOrNil() {
		s := r.source
		if r.neverContactSource {
			s += " never"
		}
		s += ":"
		for _, ep := range r.mirrors {
			s += " " + ep.location + "(" + pullFromMirror(ep) + ")"
		}
		out = append(out, s)
	}
	return out
}

func mustRefs(t testing.TB, specs ...string) []Reference {
	t.Helper()
	out := make([]Reference, len(specs))
	for i, s := range specs {
		out[i] = mustRef(t, s)
	}
	return out
}

func TestForPullsKeepsOnlyTheRulesThatApply(t *testing.T) {
	cfg, err := NewConfig(renderSources(t))
	if err != nil {
		t.Fatal(err)
	}
	const ocp = "quay.io/openshift-release-dev/ocp-release"
	tests := []struct {
		name string
		refs []string
		want []string
		// notMirrored are references that the whole configuration mirrors and the scoped one
		// must not.
		notMirrored []string
	}{
		{
			name:        "nothing pulled: no rules",
			want:        []string{},
			notMirrored: []string{ocp + "@" + dgA, "quay.io/other/x@" + dgA, "access.redhat.com/x/y@" + dgA},
		},
		{
			name:        "digest pull: the digest mirrors of the most specific source, in merged order",
			refs:        []string{ocp + "@" + dgA},
			want:        []string{"quay.io/openshift-release-dev: a.mirror.local/ocp(digest-only) b.mirror.local/ocp(all) c.mirror.local/ocp(digest-only) d.mirror.local/ocp(digest-only)"},
			notMirrored: []string{"quay.io/other/x@" + dgA, "docker.io/library/busybox:1", "access.redhat.com/x/y@" + dgA},
		},
		{
			name:        "tag pull: the tag mirrors",
			refs:        []string{ocp + ":4.16"},
			want:        []string{"quay.io/openshift-release-dev: tags.mirror.local/ocp(tag-only) b.mirror.local/ocp(all)"},
			notMirrored: []string{"quay.io/other/x@" + dgA},
		},
		{
			name: "digest and tag pulls of one source: all of its mirrors",
			refs: []string{ocp + ":4.16", ocp + "@" + dgA},
			want: []string{"quay.io/openshift-release-dev: a.mirror.local/ocp(digest-only) tags.mirror.local/ocp(tag-only) b.mirror.local/ocp(all) c.mirror.local/ocp(digest-only) d.mirror.local/ocp(digest-only)"},
		},
		{
			name:        "less specific source for another repository",
			refs:        []string{"quay.io/other/x@" + dgA},
			want:        []string{"quay.io: whole.mirror.local/quay(digest-only)"},
			notMirrored: []string{"docker.io/library/busybox:1", "access.redhat.com/x/y@" + dgA},
		},
		{
			name: "NeverContactSource stays, with its mirrors (the policy's drop happens when rendering)",
			refs: []string{"registry.redhat.io/rhel9/base@" + dgA},
			want: []string{"registry.redhat.io/rhel9 never: insecure.local:5000/rhel9(digest-only) blocked.io/rhel9(digest-only)"},
		},
		{
			name: "NeverContactSource with no mirror for the kind of pull: the rule stays, blocked, without mirrors",
			refs: []string{"registry.redhat.io/rhel9/base:9"},
			want: []string{"registry.redhat.io/rhel9 never:"},
		},
		{
			name:        "wildcard source",
			refs:        []string{"access.redhat.com/x/y@" + dgA},
			want:        []string{"*.redhat.com: mirror.local/rh(digest-only)"},
			notMirrored: []string{"registry.redhat.io/rhel9/base@" + dgA},
		},
		{
			name: "ImageContentPolicy with allowMirrorByTags, Docker Hub spelling",
			refs: []string{"docker.io/busybox:1"},
			want: []string{"docker.io/library: hub.mirror.local/library(all)"},
		},
		{
			name:        "an image no source covers",
			refs:        []string{"elsewhere.example.com/a/b@" + dgA},
			want:        []string{},
			notMirrored: []string{ocp + "@" + dgA},
		},
	}
	full, _ := loadPullConf(t, cfg)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			scoped := cfg.ForPulls(mustRefs(t, tc.refs...))
			if got := describeRules(scoped); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("kept rules\n got: %q\nwant: %q", got, tc.want)
			}
			sys, _ := loadPullConf(t, scoped)
			for _, r := range tc.refs {
				if got, want := resolveWithContainers(sys, r), resolveWithContainers(full, r); !reflect.DeepEqual(got, want) {
					t.Errorf("%s: containers/image tries %q with the scoped registries.conf, %q with the whole one", r, got, want)
				}
				if got, want := scoped.PullSources(mustRef(t, r)), cfg.PullSources(mustRef(t, r)); !reflect.DeepEqual(got, want) {
					t.Errorf("%s: PullSources %v scoped, %v whole", r, got, want)
				}
			}
			for _, r := range tc.notMirrored {
				if got := resolveWithContainers(full, r); len(got) < 2 {
					t.Fatalf("%s: the whole configuration does not mirror it (%q); the case proves nothing", r, got)
				}
				if got := resolveWithContainers(sys, r); len(got) != 1 {
					t.Errorf("%s is not pulled, but the scoped registries.conf still mirrors it: %q", r, got)
				}
				if got := scoped.PullSources(mustRef(t, r)); len(got) != 1 || got[0].Mirror {
					t.Errorf("%s is not pulled, but the scoped configuration still mirrors it: %v", r, got)
				}
			}
			// The image policy is untouched.
			for name, render := range map[string]func(*Config) ([]byte, error){"policy.json": (*Config).PolicyJSON, "push registries.conf": (*Config).PushRegistriesConf} {
				a, _ := render(cfg)
				b, _ := render(scoped)
				if string(a) != string(b) {
					t.Errorf("%s differs in the scoped configuration", name)
				}
			}
			if !reflect.DeepEqual(scoped.RegistryCAs(), cfg.RegistryCAs()) || !reflect.DeepEqual(scoped.Policy().SearchRegistries(), cfg.Policy().SearchRegistries()) {
				t.Error("the scoped configuration has other CAs or search registries")
			}
		})
	}
}

// resolveWithContainers is what containers/image does to pull ref with this registries.conf: the
// pull sources of the registry entry it picks, each with "(refused)" when the source's own entry
// is blocked (the docker client refuses it), or the error it fails with.
func resolveWithContainers(sys *types.SystemContext, ref string) []string {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return []string{"parse error: " + err.Error()}
	}
	reg, err := sysregistriesv2.FindRegistry(sys, named.Name())
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	if reg == nil {
		return []string{named.String()}
	}
	sources, err := reg.PullSourcesFromReference(named)
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	var out []string
	for _, s := range sources {
		own, err := sysregistriesv2.FindRegistry(sys, s.Reference.Name())
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		entry := s.Reference.String()
		if own != nil && own.Blocked {
			entry += " (refused)"
		}
		if own != nil && own.Insecure {
			entry += " (insecure)"
		}
		if s.Endpoint.Insecure {
			entry += " (insecure endpoint)"
		}
		out = append(out, entry)
	}
	return out
}

// edgeSources adds to renderSources the corners where containers/image's registries.conf lookup
// and ruleFor part ways, and where a mirror's own entry matters.
func edgeSources(t testing.TB) ConfigSources {
	src := renderSources(t)
	src.Image.Spec.RegistrySources.InsecureRegistries = append(src.Image.Spec.RegistrySources.InsecureRegistries, "pol.local/ns/r")
	src.ImageDigestMirrorSets = append(src.ImageDigestMirrorSets,
		// An equally long wildcard and host: containers/image takes the wildcard (file order),
		// ruleFor the host.
		idms("tie", digestMirrors("x.ab.com", "m1.local/x"), digestMirrors("*.ab.com", "m2.local/w")),
		// "ab.com" also matches "ab.com:5000/…" for containers/image, not for ruleFor.
		idms("port", digestMirrors("ab.com", "m3.local/ab")),
		// A mirror that is itself a NeverContactSource source: containers/image refuses it.
		idms("chain", digestMirrors("src.local/os", "chain.local/os", "m4.local/os")),
		idms("chained", neverContact(digestMirrors("chain.local", "m5.local/c"))),
		// A digest source hidden, for digest pulls, by a more specific tag-only source.
		idms("shadowed", digestMirrors("sh.local", "m6.local/sh")),
		// An insecure entry more specific than a mirror source: containers/image picks it.
		idms("policy", digestMirrors("pol.local/ns", "m8.local/ns")),
	)
	src.ImageTagMirrorSets = append(src.ImageTagMirrorSets, itms("shadow", tagMirrors("sh.local/ns", "m7.local/ns")))
	return src
}

var edgeRefs = []string{
	"quay.io/openshift-release-dev/ocp-release@" + dgA,
	"quay.io/openshift-release-dev/ocp-release:4.16",
	"quay.io/other/x@" + dgA,
	"quay.io/other/x:1",
	"quay.io/secret/x@" + dgA,
	"registry.redhat.io/rhel9/base@" + dgA,
	"registry.redhat.io/rhel9/base:9",
	"registry.redhat.io/ubi/base@" + dgA,
	"access.redhat.com/x/y@" + dgA,
	"docker.io/library/busybox:1",
	"docker.io/busybox@" + dgA,
	"elsewhere.example.com/a/b@" + dgA,
	"a.lab.local/x@" + dgA,
	"x.ab.com/r@" + dgA,
	"y.ab.com/r@" + dgA,
	"ab.com/ns/r@" + dgA,
	"ab.com:5000/ns/r@" + dgA,
	"src.local/os/base@" + dgA,
	"src.local/os/base:1",
	"chain.local/os/base@" + dgA,
	"sh.local/ns/r@" + dgA,
	"sh.local/ns/r:1",
	"sh.local/other/r@" + dgA,
	"pol.local/ns/r@" + dgA,
	"pol.local/ns/q@" + dgA,
}

// For every reference alone, and for all of them at once, the scoped configuration makes
// containers/image (the rendered registries.conf) and mosb (PullSources, CheckPull) pull each
// listed reference exactly as the whole configuration does.
func TestForPullsResolvesAsTheWholeConfig(t *testing.T) {
	cfg, err := NewConfig(edgeSources(t))
	if err != nil {
		t.Fatal(err)
	}
	full, _ := loadPullConf(t, cfg)
	lists := [][]string{edgeRefs}
	for _, r := range edgeRefs {
		lists = append(lists, []string{r})
	}
	for _, list := range lists {
		name := "all"
		if len(list) == 1 {
			name = list[0]
		}
		t.Run(name, func(t *testing.T) {
			scoped := cfg.ForPulls(mustRefs(t, list...))
			sys, conf := loadPullConf(t, scoped)
			for _, r := range list {
				if got, want := resolveWithContainers(sys, r), resolveWithContainers(full, r); !reflect.DeepEqual(got, want) {
					t.Errorf("%s: containers/image\n scoped: %q\n  whole: %q\nscoped registries.conf:\n%s", r, got, want, conf)
				}
				ref := mustRef(t, r)
				if got, want := scoped.PullSources(ref), cfg.PullSources(ref); !reflect.DeepEqual(got, want) {
					t.Errorf("%s: PullSources\n scoped: %v\n  whole: %v", r, got, want)
				}
				if got, want := scoped.CheckPull(ref), cfg.CheckPull(ref); !reflect.DeepEqual(got, want) {
					t.Errorf("%s: CheckPull\n scoped: %+v\n  whole: %+v", r, got, want)
				}
			}
		})
	}
}

// The corner cases above are real: each keeps a rule ruleFor alone would not keep, or keeps a
// rule without its mirrors.
func TestForPullsCorners(t *testing.T) {
	cfg, err := NewConfig(edgeSources(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ref  string
		want []string
	}{
		// containers/image picks "*.ab.com" (as long as "x.ab.com", first in the file); mosb picks
		// x.ab.com: both are kept.
		{"x.ab.com/r@" + dgA, []string{"*.ab.com: m2.local/w(digest-only)", "x.ab.com: m1.local/x(digest-only)"}},
		{"ab.com:5000/ns/r@" + dgA, []string{"ab.com: m3.local/ab(digest-only)"}},
		// chain.local is kept for the NeverContactSource that makes containers/image refuse the
		// mirror chain.local/os, without its own mirrors.
		{"src.local/os/base@" + dgA, []string{"chain.local never:", "src.local/os: chain.local/os(digest-only) m4.local/os(digest-only)"}},
		// sh.local/ns has no digest mirror, but hides sh.local's for digest pulls.
		{"sh.local/ns/r@" + dgA, []string{"sh.local/ns:"}},
		{"sh.local/other/r@" + dgA, []string{"sh.local: m6.local/sh(digest-only)"}},
	}
	for _, tc := range tests {
		if got := describeRules(cfg.ForPulls(mustRefs(t, tc.ref))); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: kept rules\n got: %q\nwant: %q", tc.ref, got, tc.want)
		}
	}
}

// confPrefixMatches agrees with containers/image on which registries.conf prefix a name gets.
func TestConfPrefixMatchesAgreesWithContainers(t *testing.T) {
	prefixes := []string{"ab.com", "x.ab.com", "*.ab.com", "*.b.com", "x.ab.com/ns", "x.ab.com:5000", "x.ab.com:5000/ns", "ab.com/ns", "ab.com/n"}
	names := []string{"ab.com/ns/r", "ab.com:5000/ns/r", "x.ab.com/r", "x.ab.com/ns/r", "x.ab.com/nsx/r", "x.ab.com:5000/ns/r",
		"y.x.ab.com/r", "xab.com/r", "ab.com.evil/r", "ab.com.ab.com/r", "q.b.com/ab.com/r", "ab.com/n/r"}
	var b strings.Builder
	b.WriteString("[[registry]]\nlocation = \"dummy.invalid\"\nprefix = \"dummy.invalid\"\n")
	for i, p := range prefixes {
		fmt.Fprintf(&b, "[[registry]]\nprefix = %q\nlocation = \"m%d.local\"\n", p, i)
	}
	sys := loadRegistriesConf(t, []byte(b.String()))
	for _, name := range names {
		reg, err := sysregistriesv2.FindRegistry(sys, name)
		if err != nil {
			t.Fatal(err)
		}
		want := ""
		if reg != nil {
			want = reg.Prefix
		}
		// The same choice from confPrefixMatches, longest first, file (sorted) order on ties.
		sorted := slices.Clone(prefixes)
		slices.Sort(sorted)
		got := ""
		for _, p := range sorted {
			if confPrefixMatches(name, p) && len(p) > len(got) {
				got = p
			}
		}
		if got != want {
			t.Errorf("%s: confPrefixMatches picks %q, containers/image %q", name, got, want)
		}
	}
}

func TestForPullsIsDeterministic(t *testing.T) {
	cfg, err := NewConfig(edgeSources(t))
	if err != nil {
		t.Fatal(err)
	}
	refs := mustRefs(t, edgeRefs...)
	a, err := cfg.ForPulls(refs).PullRegistriesConf()
	if err != nil {
		t.Fatal(err)
	}
	shuffled := slices.Clone(refs)
	slices.Reverse(shuffled)
	shuffled = append(shuffled, refs[:5]...)
	b, err := cfg.ForPulls(shuffled).PullRegistriesConf()
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Errorf("the order or repetition of the references changes the scoped registries.conf:\n%s\n---\n%s", a, b)
	}
}

func TestForPullsWithoutMirrors(t *testing.T) {
	if got := (*Config)(nil).ForPulls(mustRefs(t, "quay.io/x/y@"+dgA)); got != nil {
		t.Errorf("nil.ForPulls = %v, want nil", got)
	}
	cfg, err := NewConfig(ConfigSources{Image: imageConfig(configv1.RegistrySources{
		BlockedRegistries: []string{"blocked.io"}, ContainerRuntimeSearchRegistries: []string{"quay.io"},
	}, "")})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := cfg.PullRegistriesConf()
	b, _ := cfg.ForPulls(mustRefs(t, "quay.io/x/y@"+dgA)).PullRegistriesConf()
	if string(a) != string(b) {
		t.Errorf("without mirrors the scoped registries.conf differs:\n%s\n---\n%s", a, b)
	}
}

func TestPullCandidates(t *testing.T) {
	withSearch, err := NewConfig(ConfigSources{Image: imageConfig(configv1.RegistrySources{
		ContainerRuntimeSearchRegistries: []string{"search.example.com", "docker.io"},
	}, "")})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		cfg     *Config
		image   string
		want    []string
		wantErr bool
	}{
		{withSearch, "quay.io/ns/app@" + dgA, []string{"quay.io/ns/app@" + dgA}, false},
		{withSearch, "quay.io/ns/app:1", []string{"quay.io/ns/app:1"}, false},
		{withSearch, "quay.io/ns/app", []string{"quay.io/ns/app:latest"}, false},
		{withSearch, "localhost/app", []string{"localhost/app:latest"}, false},
		{withSearch, "reg.local:5000/app", []string{"reg.local:5000/app:latest"}, false},
		{withSearch, "Registry/app:1", []string{"Registry/app:1"}, false},
		{withSearch, "busybox", []string{"search.example.com/busybox:latest", "docker.io/busybox:latest"}, false},
		{withSearch, "library/busybox:1", []string{"search.example.com/library/busybox:1", "docker.io/library/busybox:1"}, false},
		{withSearch, "busybox@" + dgA, []string{"search.example.com/busybox@" + dgA, "docker.io/busybox@" + dgA}, false},
		{nil, "busybox", nil, false},
		{withSearch, "quay.io/ns/app:1@" + dgA, nil, true},
		{withSearch, "quay.io/ns/App:1", nil, true},
	}
	for _, tc := range tests {
		got, err := tc.cfg.PullCandidates(tc.image)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: error %v, want error %v", tc.image, err, tc.wantErr)
			continue
		}
		var s []string
		for _, r := range got {
			s = append(s, r.String())
		}
		if !reflect.DeepEqual(s, tc.want) {
			t.Errorf("%s: candidates %q, want %q", tc.image, s, tc.want)
		}
	}
}
