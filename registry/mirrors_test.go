package registry

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	configv1 "github.com/openshift/api/config/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Small builders keep the tables readable.

func idms(name string, entries ...configv1.ImageDigestMirrors) configv1.ImageDigestMirrorSet {
	return configv1.ImageDigestMirrorSet{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: configv1.ImageDigestMirrorSetSpec{ImageDigestMirrors: entries}}
}

func digestMirrors(source string, mirrors ...string) configv1.ImageDigestMirrors {
	e := configv1.ImageDigestMirrors{Source: source}
	for _, m := range mirrors {
		e.Mirrors = append(e.Mirrors, configv1.ImageMirror(m))
	}
	return e
}

func neverContact(e configv1.ImageDigestMirrors) configv1.ImageDigestMirrors {
	e.MirrorSourcePolicy = configv1.NeverContactSource
	return e
}

func itms(name string, entries ...configv1.ImageTagMirrors) configv1.ImageTagMirrorSet {
	return configv1.ImageTagMirrorSet{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: configv1.ImageTagMirrorSetSpec{ImageTagMirrors: entries}}
}

func tagMirrors(source string, mirrors ...string) configv1.ImageTagMirrors {
	e := configv1.ImageTagMirrors{Source: source}
	for _, m := range mirrors {
		e.Mirrors = append(e.Mirrors, configv1.ImageMirror(m))
	}
	return e
}

func icp(name string, entries ...configv1.RepositoryDigestMirrors) configv1.ImageContentPolicy {
	return configv1.ImageContentPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: configv1.ImageContentPolicySpec{RepositoryDigestMirrors: entries}}
}

func repoMirrors(source string, byTags bool, mirrors ...string) configv1.RepositoryDigestMirrors {
	e := configv1.RepositoryDigestMirrors{Source: source, AllowMirrorByTags: byTags}
	for _, m := range mirrors {
		e.Mirrors = append(e.Mirrors, configv1.Mirror(m))
	}
	return e
}

func mustRef(t testing.TB, s string) Reference {
	t.Helper()
	r, err := ParsePullspec(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func sourceStrings(ss []PullSource) []string {
	out := []string{}
	for _, s := range ss {
		out = append(out, s.Reference.String())
	}
	return out
}

func TestMirrorResolution(t *testing.T) {
	tests := []struct {
		name string
		idms []configv1.ImageDigestMirrorSet
		itms []configv1.ImageTagMirrorSet
		icps []configv1.ImageContentPolicy
		ref  string
		want []string
	}{
		{
			name: "no mirrors: the source",
			ref:  "quay.io/libpod/busybox@" + dgA,
			want: []string{"quay.io/libpod/busybox@" + dgA},
		},
		{
			// Seed (IDMS): objects with quay.io/libpod and quay.io/libpod/busybox as source:
			// only the quay.io/libpod/busybox ones apply to quay.io/libpod/busybox.
			name: "seed: most specific source wins",
			idms: []configv1.ImageDigestMirrorSet{
				idms("ns", digestMirrors("quay.io/libpod", "ns-mirror.local/libpod")),
				idms("repo", digestMirrors("quay.io/libpod/busybox", "repo-mirror.local/busybox")),
			},
			ref:  "quay.io/libpod/busybox@" + dgA,
			want: []string{"repo-mirror.local/busybox@" + dgA, "quay.io/libpod/busybox@" + dgA},
		},
		{
			name: "less specific source applies to other repositories",
			idms: []configv1.ImageDigestMirrorSet{
				idms("ns", digestMirrors("quay.io/libpod", "ns-mirror.local/libpod")),
				idms("repo", digestMirrors("quay.io/libpod/busybox", "repo-mirror.local/busybox")),
			},
			ref:  "quay.io/libpod/alpine@" + dgA,
			want: []string{"ns-mirror.local/libpod/alpine@" + dgA, "quay.io/libpod/alpine@" + dgA},
		},
		{
			name: "host source beats wildcard; sources match at '/' boundaries only",
			idms: []configv1.ImageDigestMirrorSet{
				idms("a", digestMirrors("*.io", "wild.local"), digestMirrors("quay.io", "host.local/q"), digestMirrors("quay.io/lib", "lib.local")),
			},
			ref:  "quay.io/libpod/x@" + dgA,
			want: []string{"host.local/q/libpod/x@" + dgA, "quay.io/libpod/x@" + dgA},
		},
		{
			// Seed (IDMS): policy A a,b,c and policy B c,d,e → a,b,c,d,e.
			name: "seed: merged preserving relative order",
			idms: []configv1.ImageDigestMirrorSet{
				idms("policy-b", digestMirrors("quay.io/ns/repo", "c.local/r", "d.local/r", "e.local/r")),
				idms("policy-a", digestMirrors("quay.io/ns/repo", "a.local/r", "b.local/r", "c.local/r")),
			},
			ref: "quay.io/ns/repo@" + dgA,
			want: []string{"a.local/r@" + dgA, "b.local/r@" + dgA, "c.local/r@" + dgA, "d.local/r@" + dgA, "e.local/r@" + dgA,
				"quay.io/ns/repo@" + dgA},
		},
		{
			// Seed (ImageContentPolicy) gives the same merge example.
			name: "seed: ImageContentPolicy merge",
			icps: []configv1.ImageContentPolicy{
				icp("a", repoMirrors("quay.io/ns/repo", false, "a.local/r", "b.local/r", "c.local/r")),
				icp("b", repoMirrors("quay.io/ns/repo", false, "c.local/r", "d.local/r", "e.local/r")),
			},
			ref: "quay.io/ns/repo@" + dgA,
			want: []string{"a.local/r@" + dgA, "b.local/r@" + dgA, "c.local/r@" + dgA, "d.local/r@" + dgA, "e.local/r@" + dgA,
				"quay.io/ns/repo@" + dgA},
		},
		{
			name: "IDMS and ImageContentPolicy entries for one source merge",
			idms: []configv1.ImageDigestMirrorSet{idms("i", digestMirrors("quay.io/ns", "b.local/ns", "c.local/ns"))},
			icps: []configv1.ImageContentPolicy{icp("p", repoMirrors("quay.io/ns", false, "a.local/ns", "b.local/ns"))},
			ref:  "quay.io/ns/x@" + dgA,
			// b,c + a,b: a must come before b, b before c.
			want: []string{"a.local/ns/x@" + dgA, "b.local/ns/x@" + dgA, "c.local/ns/x@" + dgA, "quay.io/ns/x@" + dgA},
		},
		{
			// Seed (IDMS): (source, mirror) = (*.redhat.io, mirror.local/redhat) maps
			// registry.redhat.io/product/repo to mirror.local/redhat/product/repo.
			name: "seed: wildcard source",
			idms: []configv1.ImageDigestMirrorSet{idms("rh", digestMirrors("*.redhat.io", "mirror.local/redhat"))},
			ref:  "registry.redhat.io/product/repo@" + dgA,
			want: []string{"mirror.local/redhat/product/repo@" + dgA, "registry.redhat.io/product/repo@" + dgA},
		},
		{
			name: "wildcard does not match the bare domain",
			idms: []configv1.ImageDigestMirrorSet{idms("rh", digestMirrors("*.redhat.io", "mirror.local/redhat"))},
			ref:  "redhat.io/product/repo@" + dgA,
			want: []string{"redhat.io/product/repo@" + dgA},
		},
		{
			name: "longer wildcard is more specific",
			idms: []configv1.ImageDigestMirrorSet{idms("w", digestMirrors("*.io", "short.local"), digestMirrors("*.redhat.io", "long.local"))},
			ref:  "registry.redhat.io/p/r@" + dgA,
			want: []string{"long.local/p/r@" + dgA, "registry.redhat.io/p/r@" + dgA},
		},
		{
			// Seed: "If the mirrors is not specified, the image will continue to be pulled
			// from the specified repository".
			name: "source without mirrors",
			idms: []configv1.ImageDigestMirrorSet{idms("empty", digestMirrors("quay.io/ns"))},
			ref:  "quay.io/ns/x@" + dgA,
			want: []string{"quay.io/ns/x@" + dgA},
		},
		{
			name: "NeverContactSource: the source is not tried",
			idms: []configv1.ImageDigestMirrorSet{idms("n", neverContact(digestMirrors("quay.io/ns", "m1.local/ns", "m2.local:5000/ns")))},
			ref:  "quay.io/ns/x@" + dgA,
			want: []string{"m1.local/ns/x@" + dgA, "m2.local:5000/ns/x@" + dgA},
		},
		{
			name: "one NeverContactSource among several objects is enough",
			idms: []configv1.ImageDigestMirrorSet{
				idms("a", digestMirrors("quay.io/ns", "m1.local/ns")),
				idms("b", neverContact(digestMirrors("quay.io/ns", "m2.local/ns"))),
			},
			ref:  "quay.io/ns/x@" + dgA,
			want: []string{"m1.local/ns/x@" + dgA, "m2.local/ns/x@" + dgA},
		},
		{
			// Seed: IDMS mirrors serve digest pulls only.
			name: "IDMS does not apply to tag pulls",
			idms: []configv1.ImageDigestMirrorSet{idms("d", digestMirrors("quay.io/ns", "m.local/ns"))},
			ref:  "quay.io/ns/x:latest",
			want: []string{"quay.io/ns/x:latest"},
		},
		{
			name: "ITMS applies to tag pulls",
			itms: []configv1.ImageTagMirrorSet{itms("t", tagMirrors("quay.io/ns", "t.local/ns"))},
			ref:  "quay.io/ns/x:latest",
			want: []string{"t.local/ns/x:latest", "quay.io/ns/x:latest"},
		},
		{
			name: "ITMS does not apply to digest pulls",
			itms: []configv1.ImageTagMirrorSet{itms("t", tagMirrors("quay.io/ns", "t.local/ns"))},
			ref:  "quay.io/ns/x@" + dgA,
			want: []string{"quay.io/ns/x@" + dgA},
		},
		{
			name: "ITMS NeverContactSource",
			itms: []configv1.ImageTagMirrorSet{itms("t", configv1.ImageTagMirrors{Source: "quay.io/ns", Mirrors: []configv1.ImageMirror{"t.local/ns"}, MirrorSourcePolicy: configv1.NeverContactSource})},
			ref:  "quay.io/ns/x:latest",
			want: []string{"t.local/ns/x:latest"},
		},
		{
			// Seed (ImageContentPolicy): mirrors serve tag pulls only with allowMirrorByTags.
			name: "ImageContentPolicy without allowMirrorByTags: digest only",
			icps: []configv1.ImageContentPolicy{icp("p", repoMirrors("quay.io/ns", false, "m.local/ns"))},
			ref:  "quay.io/ns/x:latest",
			want: []string{"quay.io/ns/x:latest"},
		},
		{
			name: "ImageContentPolicy with allowMirrorByTags: tag pulls too",
			icps: []configv1.ImageContentPolicy{icp("p", repoMirrors("quay.io/ns", true, "m.local/ns"))},
			ref:  "quay.io/ns/x:latest",
			want: []string{"m.local/ns/x:latest", "quay.io/ns/x:latest"},
		},
		{
			name: "digest and tag mirrors of one source are filtered by pull kind",
			idms: []configv1.ImageDigestMirrorSet{idms("d", digestMirrors("quay.io/ns", "d.local/ns", "both.local/ns"))},
			itms: []configv1.ImageTagMirrorSet{itms("t", tagMirrors("quay.io/ns", "both.local/ns", "t.local/ns"))},
			ref:  "quay.io/ns/x:v1",
			want: []string{"both.local/ns/x:v1", "t.local/ns/x:v1", "quay.io/ns/x:v1"},
		},
		{
			// Across kinds the most specific source wins, as registries.conf decides.
			name: "a more specific digest-only source hides a tag source",
			idms: []configv1.ImageDigestMirrorSet{idms("d", digestMirrors("quay.io/ns/x", "d.local/x"))},
			itms: []configv1.ImageTagMirrorSet{itms("t", tagMirrors("quay.io/ns", "t.local/ns"))},
			ref:  "quay.io/ns/x:v1",
			want: []string{"quay.io/ns/x:v1"},
		},
		{
			// Seed: each source is treated independently.
			name: "sources do not interact",
			idms: []configv1.ImageDigestMirrorSet{idms("d", digestMirrors("quay.io/a", "a.local/a"), neverContact(digestMirrors("quay.io/b", "b.local/b")))},
			ref:  "quay.io/a/x@" + dgA,
			want: []string{"a.local/a/x@" + dgA, "quay.io/a/x@" + dgA},
		},
		{
			name: "mirror formats: host, host:port/namespace, full repository",
			idms: []configv1.ImageDigestMirrorSet{idms("f", digestMirrors("quay.io/ns/repo", "host.local", "host.local:5000/deep/ns", "other.local/renamed"))},
			ref:  "quay.io/ns/repo@" + dgA,
			// "host.local" alone cannot hold a repository name: it is skipped, not tried.
			want: []string{"host.local:5000/deep/ns@" + dgA, "other.local/renamed@" + dgA, "quay.io/ns/repo@" + dgA},
		},
		{
			name: "docker hub names are matched as containers spells them",
			idms: []configv1.ImageDigestMirrorSet{idms("hub", digestMirrors("docker.io/library", "hub.local/lib"))},
			ref:  "docker.io/busybox@" + dgA,
			want: []string{"hub.local/lib/busybox@" + dgA, "docker.io/busybox@" + dgA},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := NewMirrorSet(tt.idms, tt.itms, tt.icps)
			if err != nil {
				t.Fatal(err)
			}
			got := sourceStrings(set.PullSources(mustRef(t, tt.ref)))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("pull sources\n got: %q\nwant: %q", got, tt.want)
			}
		})
	}
}

func TestMergeOrdered(t *testing.T) {
	tests := []struct {
		lists [][]string
		want  []string
	}{
		{[][]string{{"a", "b", "c"}, {"c", "d", "e"}}, []string{"a", "b", "c", "d", "e"}},
		{[][]string{{"c", "d", "e"}, {"a", "b", "c"}}, []string{"a", "b", "c", "d", "e"}},
		{[][]string{{"a", "c"}, {"b", "c"}}, []string{"a", "b", "c"}},
		{[][]string{{"a", "b"}, {"b", "a"}}, []string{"a", "b"}}, // conflict: deterministic, nothing lost
		{[][]string{{"a", "b", "a"}}, []string{"a", "b"}},
		{[][]string{{"x"}, {}, {"y", "x"}}, []string{"y", "x"}},
		{nil, []string{}},
	}
	for _, tt := range tests {
		if got := mergeOrdered(tt.lists); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("mergeOrdered(%q) = %q, want %q", tt.lists, got, tt.want)
		}
	}
}

func TestMirrorSetIsIndependentOfObjectOrder(t *testing.T) {
	a := idms("a", digestMirrors("quay.io/ns", "x.local/ns", "y.local/ns"))
	b := idms("b", digestMirrors("quay.io/ns", "y.local/ns", "x.local/ns"))
	in1 := []configv1.ImageDigestMirrorSet{a, b}
	in2 := []configv1.ImageDigestMirrorSet{b, a}
	s1, _ := NewMirrorSet(in1, nil, nil)
	s2, _ := NewMirrorSet(in2, nil, nil)
	ref := mustRef(t, "quay.io/ns/r@"+dgA)
	if !reflect.DeepEqual(s1.PullSources(ref), s2.PullSources(ref)) {
		t.Fatal("the object order changed the result")
	}
	if in2[0].Name != "b" {
		t.Fatal("NewMirrorSet reordered the caller's slice")
	}
}

func TestMirrorSetValidation(t *testing.T) {
	tests := []struct {
		name  string
		idms  []configv1.ImageDigestMirrorSet
		itms  []configv1.ImageTagMirrorSet
		icps  []configv1.ImageContentPolicy
		field string
	}{
		{"bad source", []configv1.ImageDigestMirrorSet{idms("x", digestMirrors("quay.io/NS", "m.local"))}, nil, nil, "spec.imageDigestMirrors[0].source"},
		{"tag in source", []configv1.ImageDigestMirrorSet{idms("x", digestMirrors("quay.io/ns:tag", "m.local"))}, nil, nil, "spec.imageDigestMirrors[0].source"},
		{"wildcard mirror", []configv1.ImageDigestMirrorSet{idms("x", digestMirrors("quay.io", "m.local", "*.m.local"))}, nil, nil, "spec.imageDigestMirrors[0].mirrors[1]"},
		{"never without mirrors", []configv1.ImageDigestMirrorSet{idms("x", digestMirrors("quay.io"), neverContact(digestMirrors("quay.io/ns")))}, nil, nil, "spec.imageDigestMirrors[1].mirrorSourcePolicy"},
		{"unknown policy", nil, []configv1.ImageTagMirrorSet{itms("t", configv1.ImageTagMirrors{Source: "quay.io", Mirrors: []configv1.ImageMirror{"m.local"}, MirrorSourcePolicy: "Sometimes"})}, nil, "spec.imageTagMirrors[0].mirrorSourcePolicy"},
		{"bad ICP mirror", nil, nil, []configv1.ImageContentPolicy{icp("p", repoMirrors("quay.io", false, "m.local/x@sha256:abc"))}, "spec.repositoryDigestMirrors[0].mirrors[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewMirrorSet(tt.idms, tt.itms, tt.icps)
			var ce *ConfigError
			if !errors.As(err, &ce) || !errors.Is(err, ErrInvalidClusterConfig) {
				t.Fatalf("want a *ConfigError, got %v", err)
			}
			if ce.Field != tt.field || !strings.Contains(err.Error(), tt.field) {
				t.Errorf("field = %q, want %q (%v)", ce.Field, tt.field, err)
			}
		})
	}
}
