package registry

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	configv1 "github.com/openshift/api/config/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
)

// renderSources is a configuration that exercises every part of the rendering.
func renderSources(t testing.TB) ConfigSources {
	return ConfigSources{
		Image: imageConfig(configv1.RegistrySources{
			BlockedRegistries:                []string{"blocked.io", "*.evil.com", "quay.io/secret"},
			InsecureRegistries:               []string{"insecure.local:5000", "*.lab.local"},
			ContainerRuntimeSearchRegistries: []string{"registry.example.com", "quay.io"},
		}, ""),
		ImageDigestMirrorSets: []configv1.ImageDigestMirrorSet{
			idms("b-release", digestMirrors("quay.io/openshift-release-dev", "c.mirror.local/ocp", "d.mirror.local/ocp")),
			idms("a-release", digestMirrors("quay.io/openshift-release-dev", "a.mirror.local/ocp", "b.mirror.local/ocp", "c.mirror.local/ocp")),
			idms("never", neverContact(digestMirrors("registry.redhat.io/rhel9", "insecure.local:5000/rhel9", "blocked.io/rhel9"))),
			idms("wild", digestMirrors("*.redhat.com", "mirror.local/rh")),
			idms("quay", digestMirrors("quay.io", "whole.mirror.local/quay")),
		},
		ImageTagMirrorSets: []configv1.ImageTagMirrorSet{
			itms("tags", tagMirrors("quay.io/openshift-release-dev", "tags.mirror.local/ocp", "b.mirror.local/ocp")),
		},
		ImageContentPolicies: []configv1.ImageContentPolicy{
			icp("legacy", repoMirrors("docker.io/library", true, "hub.mirror.local/library")),
		},
	}
}

// loadPullConf renders cfg's pull registries.conf and loads it as containers/image would.
func loadPullConf(t *testing.T, cfg *Config) (*types.SystemContext, []byte) {
	t.Helper()
	conf, err := cfg.PullRegistriesConf()
	if err != nil {
		t.Fatal(err)
	}
	return loadRegistriesConf(t, conf), conf
}

func loadRegistriesConf(t *testing.T, conf []byte) *types.SystemContext {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "registries.conf")
	if err := os.WriteFile(path, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	// An empty drop-in directory: nothing from this machine's /etc/containers leaks in.
	sys := &types.SystemContext{SystemRegistriesConfPath: path, SystemRegistriesConfDirPath: filepath.Join(dir, "none")}
	if _, err := sysregistriesv2.GetRegistries(sys); err != nil {
		t.Fatalf("containers/image rejects the rendered registries.conf: %v\n%s", err, conf)
	}
	return sys
}

// containersPullSources is what buildah would try for ref with this registries.conf: the pull
// sources of the longest matching prefix, minus attempts whose own registry entry is blocked
// (docker_client.go refuses those).
func containersPullSources(t *testing.T, sys *types.SystemContext, ref string) []string {
	t.Helper()
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := sysregistriesv2.FindRegistry(sys, named.Name())
	if err != nil {
		t.Fatal(err)
	}
	if reg == nil {
		return []string{ref}
	}
	sources, err := reg.PullSourcesFromReference(named)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, s := range sources {
		own, err := sysregistriesv2.FindRegistry(sys, s.Reference.Name())
		if err != nil {
			t.Fatal(err)
		}
		if own != nil && own.Blocked {
			continue
		}
		out = append(out, s.Reference.String())
	}
	return out
}

// TestPullRegistriesConfAgreesWithContainers loads the rendered file with containers/image and
// checks that buildah would try exactly what Config.PullSources says, for many references.
func TestPullRegistriesConfAgreesWithContainers(t *testing.T) {
	cfg, err := NewConfig(renderSources(t))
	if err != nil {
		t.Fatal(err)
	}
	sys, _ := loadPullConf(t, cfg)
	refs := []string{
		"quay.io/openshift-release-dev/ocp-release@" + dgA,
		"quay.io/openshift-release-dev/ocp-release:4.16",
		"quay.io/other/x@" + dgA,
		"quay.io/other/x:1",
		"registry.redhat.io/rhel9/base@" + dgA,
		"registry.redhat.io/rhel9/base:9",
		"registry.redhat.io/ubi/base@" + dgA,
		"access.redhat.com/x/y@" + dgA,
		"docker.io/library/busybox:1",
		"docker.io/busybox@" + dgA,
		"elsewhere.example.com/a/b@" + dgA,
		"a.lab.local/x@" + dgA,
	}
	for _, r := range refs {
		t.Run(r, func(t *testing.T) {
			ours := sourceStrings(cfg.PullSources(mustRef(t, r)))
			theirs := containersPullSources(t, sys, r)
			// An empty list (NeverContactSource, no mirror for this kind of pull) must be empty
			// for buildah too.
			// containers/image spells Docker Hub names in full; compare in its spelling.
			for i, s := range ours {
				n, err := reference.ParseNormalizedNamed(s)
				if err != nil {
					t.Fatal(err)
				}
				ours[i] = n.String()
			}
			if !reflect.DeepEqual(ours, theirs) {
				t.Errorf("sources differ\n ours: %q\n containers: %q", ours, theirs)
			}
		})
	}
}

func TestPullRegistriesConfFlags(t *testing.T) {
	cfg, err := NewConfig(renderSources(t))
	if err != nil {
		t.Fatal(err)
	}
	sys, _ := loadPullConf(t, cfg)
	find := func(ref string) *sysregistriesv2.Registry {
		t.Helper()
		reg, err := sysregistriesv2.FindRegistry(sys, ref)
		if err != nil || reg == nil {
			t.Fatalf("FindRegistry(%s) = %v, %v", ref, reg, err)
		}
		return reg
	}
	// NeverContactSource: the source is blocked, its permitted mirrors stay (blocked.io dropped).
	rhel := find("registry.redhat.io/rhel9/base")
	if !rhel.Blocked || len(rhel.Mirrors) != 1 || rhel.Mirrors[0].Location != "insecure.local:5000/rhel9" || !rhel.Mirrors[0].Insecure ||
		rhel.Mirrors[0].PullFromMirror != sysregistriesv2.MirrorByDigestOnly {
		t.Errorf("registry.redhat.io/rhel9 entry: %+v", rhel)
	}
	// Merged order and per-mirror pull kinds.
	ocp := find("quay.io/openshift-release-dev/x")
	var got []string
	for _, m := range ocp.Mirrors {
		got = append(got, m.Location+"="+m.PullFromMirror)
	}
	want := []string{"a.mirror.local/ocp=digest-only", "tags.mirror.local/ocp=tag-only", "b.mirror.local/ocp=all", "c.mirror.local/ocp=digest-only", "d.mirror.local/ocp=digest-only"}
	if !reflect.DeepEqual(got, want) || ocp.Blocked {
		t.Errorf("quay.io/openshift-release-dev mirrors\n got: %q\nwant: %q", got, want)
	}
	// Blocked registries, also under a more specific mirror source.
	for _, r := range []string{"blocked.io/x", "a.evil.com/x", "quay.io/secret/x"} {
		if !find(r).Blocked {
			t.Errorf("%s is not blocked", r)
		}
	}
	if find("quay.io/other").Blocked {
		t.Error("quay.io is blocked but only quay.io/secret should be")
	}
	for _, r := range []string{"insecure.local:5000/x", "a.lab.local/x"} {
		if !find(r).Insecure {
			t.Errorf("%s is not insecure", r)
		}
	}
	search, err := sysregistriesv2.UnqualifiedSearchRegistries(sys)
	if err != nil || !reflect.DeepEqual(search, []string{"registry.example.com", "quay.io"}) {
		t.Errorf("search registries %q, %v", search, err)
	}
}

func TestPushRegistriesConfHasNoMirrors(t *testing.T) {
	cfg, err := NewConfig(renderSources(t))
	if err != nil {
		t.Fatal(err)
	}
	conf, err := cfg.PushRegistriesConf()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(conf), "mirror") && strings.Contains(string(conf), "[[registry.mirror]]") {
		t.Fatalf("push registries.conf has mirrors:\n%s", conf)
	}
	sys := loadRegistriesConf(t, conf)
	regs, err := sysregistriesv2.GetRegistries(sys)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range regs {
		if len(r.Mirrors) > 0 {
			t.Errorf("%s has mirrors in the push configuration", r.Prefix)
		}
	}
	// A NeverContactSource source must stay pushable.
	if reg, _ := sysregistriesv2.FindRegistry(sys, "registry.redhat.io/rhel9/base"); reg != nil && reg.Blocked {
		t.Error("push to a NeverContactSource source would be refused by buildah")
	}
	if reg, _ := sysregistriesv2.FindRegistry(sys, "blocked.io/x"); reg == nil || !reg.Blocked {
		t.Error("blocked registry not blocked for push")
	}
}

func TestRenderingIsDeterministic(t *testing.T) {
	src := renderSources(t)
	cfg1, err := NewConfig(src)
	if err != nil {
		t.Fatal(err)
	}
	// The same objects listed in another order.
	rev := src
	rev.ImageDigestMirrorSets = append([]configv1.ImageDigestMirrorSet(nil), src.ImageDigestMirrorSets...)
	for i, j := 0, len(rev.ImageDigestMirrorSets)-1; i < j; i, j = i+1, j-1 {
		rev.ImageDigestMirrorSets[i], rev.ImageDigestMirrorSets[j] = rev.ImageDigestMirrorSets[j], rev.ImageDigestMirrorSets[i]
	}
	cfg2, err := NewConfig(rev)
	if err != nil {
		t.Fatal(err)
	}
	for name, render := range map[string]func(*Config) ([]byte, error){
		"pull": (*Config).PullRegistriesConf, "push": (*Config).PushRegistriesConf, "policy": (*Config).PolicyJSON,
	} {
		a, err := render(cfg1)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := render(cfg1)
		c, _ := render(cfg2)
		if string(a) != string(b) || string(a) != string(c) {
			t.Errorf("%s rendering is not deterministic", name)
		}
	}
}

func TestRegistriesConfExactForm(t *testing.T) {
	cfg, err := NewConfig(ConfigSources{
		Image:                 imageConfig(configv1.RegistrySources{InsecureRegistries: []string{"reg.local:5000"}}, ""),
		ImageDigestMirrorSets: []configv1.ImageDigestMirrorSet{idms("a", neverContact(digestMirrors("quay.io/ns", "reg.local:5000/ns")))},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := cfg.PullRegistriesConf()
	if err != nil {
		t.Fatal(err)
	}
	want := `# Generated by mosb from the cluster's Image config and mirror sets. Do not edit.
short-name-mode = ""
additional-layer-store-auth-helper = ""

[[registry]]
  prefix = "quay.io/ns"
  location = "quay.io/ns"
  blocked = true

  [[registry.mirror]]
    location = "reg.local:5000/ns"
    insecure = true
    pull-from-mirror = "digest-only"

[[registry]]
  prefix = "reg.local:5000"
  location = "reg.local:5000"
  insecure = true
`
	if string(got) != want {
		t.Errorf("registries.conf\n got:\n%s\nwant:\n%s", got, want)
	}
}

// fakeImage is enough of an image for policy requirements that never read it (accept/reject).
type fakeImage struct {
	types.UnparsedImage
	ref types.ImageReference
}

func (f fakeImage) Reference() types.ImageReference { return f.ref }

type localRef struct {
	types.ImageReference
	transport string
}

func (r localRef) Transport() types.ImageTransport     { return localTransport{name: r.transport} }
func (r localRef) PolicyConfigurationIdentity() string { return "" }
func (r localRef) PolicyConfigurationNamespaces() []string {
	return nil
}

type localTransport struct {
	types.ImageTransport
	name string
}

func (t localTransport) Name() string { return t.name }

func policyAllows(t *testing.T, pc *signature.PolicyContext, ref types.ImageReference) bool {
	t.Helper()
	ok, err := pc.IsRunningImageAllowed(context.Background(), fakeImage{ref: ref})
	if ok != (err == nil) {
		t.Fatalf("inconsistent policy answer: %v, %v", ok, err)
	}
	return ok
}

// TestPolicyJSONAgreesWithCheck parses policy.json with containers/image's own parser and
// asks its PolicyContext about each reference: it must agree with ImagePolicy.Check.
func TestPolicyJSONAgreesWithCheck(t *testing.T) {
	refs := []string{
		"quay.io/good/x@" + dgA, "quay.io/bad/x@" + dgA, "quay.io/goodx/y:1", "r.corp.com/x:1", "r.corp.com:8443/x:1",
		"corp.com/x:1", "registry.example.com:5000/x:1", "registry.example.com/a/b:c", "docker.io/library/busybox:1",
		"docker.io/busybox:1", "blocked.io/x:1", "a.evil.com/x:1", "reg.local:5000/x:1", "reg.local/x:1",
	}
	for _, rs := range []configv1.RegistrySources{
		{},
		{AllowedRegistries: []string{"quay.io/good", "*.corp.com", "registry.example.com", "docker.io/library"}},
		{BlockedRegistries: []string{"blocked.io", "quay.io/bad", "*.evil.com", "reg.local:5000", "docker.io"}},
	} {
		cfg, err := NewConfig(ConfigSources{Image: imageConfig(rs, "")})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := cfg.PolicyJSON()
		if err != nil {
			t.Fatal(err)
		}
		pol, err := signature.NewPolicyFromBytes(raw)
		if err != nil {
			t.Fatalf("containers/image rejects policy.json: %v\n%s", err, raw)
		}
		pc, err := signature.NewPolicyContext(pol)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range refs {
			named, err := reference.ParseNormalizedNamed(r)
			if err != nil {
				t.Fatal(err)
			}
			dref, err := docker.NewReference(named)
			if err != nil {
				t.Fatal(err)
			}
			want := cfg.Policy().check(mustRef(t, r), "pull").Allowed
			if got := policyAllows(t, pc, dref); got != want {
				t.Errorf("%+v: policy.json allows %s = %v, Check says %v\n%s", rs, r, got, want, raw)
			}
		}
		// The build's own local copies are never refused.
		for _, tr := range localTransports {
			if !policyAllows(t, pc, localRef{transport: tr}) {
				t.Errorf("%+v: policy.json refuses transport %s", rs, tr)
			}
		}
		if err := pc.Destroy(); err != nil {
			t.Fatal(err)
		}
	}
}
