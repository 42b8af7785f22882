package e2e

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	configv1 "github.com/openshift/api/config/v1"
	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/test/harness"
)

// The cluster's image configuration (Image "cluster", its trusted CAs, ImageDigestMirrorSets,
// ImageTagMirrorSets and ImageContentPolicies) changes what real builds do: these tests run the
// controller process against real registries and look at what the builds pulled and pushed,
// and at the request each build pod got.

const checkContent = "RUN grep -q 'mosb test OS' /etc/os-release"

// An ImageDigestMirrorSet and an ImageContentPolicy each send the base image pull to a mirror
// while the registry the base image is named by is down; two mirror sets for one source merge
// their mirror order as the seed says (a,b,c + c,d,e → a,b,c,d,e), in the registries.conf the
// pod got; each pod's registries.conf has the mirrors of what its build pulls and not the
// others'; containerRuntimeSearchRegistries reach it too; and `mosb render` on the same objects
// prints that registries.conf byte for byte.
func TestMirrorSetsServeTheBaseWhileItsRegistryIsDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	ca := e.reg.CA
	mirror := harness.StartRegistry(t, harness.WithCA(ca), harness.NoAuth())
	digest := digestOf(harness.PushBaseImage(t, mirror, "os/base", "amd64"))
	// The registries the base image is named by: they never held it, and they are down.
	srcIDMS := harness.StartRegistry(t, harness.WithCA(ca), harness.NoAuth())
	srcICP := harness.StartRegistry(t, harness.WithCA(ca), harness.NoAuth())
	srcIDMS.Stop()
	srcICP.Stop()
	// ImageContentPolicy's CRD wants host names that start with a letter: localhost:port.
	icpSource, icpMirror := localhostAlias(srcICP.Host), localhostAlias(mirror.Host)
	a, b, d, f := deadLocation(t), deadLocation(t), deadLocation(t), deadLocation(t)

	e.trustCA(mirror)
	e.trustCAUnder(icpMirror, ca.PEM)
	e.updateImage(func(img *configv1.Image) {
		img.Spec.RegistrySources.ContainerRuntimeSearchRegistries = []string{mirror.Host, "search.example.com"}
	})
	src := srcIDMS.Host + "/os"
	e.create(
		// The seed's example: mirrors a, b, c and c, d, e are used as a, b, c, d, e. Only c
		// (the mirror) serves; the others refuse connections.
		idms("seed-a", digestMirrors(src, "", a+"/os", b+"/os", mirror.Host+"/os")),
		idms("seed-b", digestMirrors(src, "", mirror.Host+"/os", d+"/os", f+"/os")),
		&configv1.ImageContentPolicy{ObjectMeta: metav1.ObjectMeta{Name: "icp"},
			Spec: configv1.ImageContentPolicySpec{RepositoryDigestMirrors: []configv1.RepositoryDigestMirrors{{
				Source: icpSource + "/os", Mirrors: []configv1.Mirror{configv1.Mirror(icpMirror + "/os")},
			}}}},
	)
	e.settle()
	rc := e.captureRequests()
	viaIDMS := e.mosc("viaidms", checkContent, src+"/base@"+digest, "")
	viaICP := e.mosc("viaicp", checkContent, icpSource+"/os/base@"+digest, "")
	e.create(viaIDMS, viaICP)

	builtIDMS := e.waitBuilt("viaidms", 1)
	builtICP := e.waitBuilt("viaicp", 1)
	for _, bld := range []*mosbv1.MachineOSBuild{builtIDMS, builtICP} {
		if !strings.HasPrefix(bld.Status.DigestedImagePushspec, e.reg.Host+"/os/"+bld.Spec.MachineOSConfig.Name+"@sha256:") {
			t.Errorf("%s pushed %s, not to its pushspec's repository", bld.Name, bld.Status.DigestedImagePushspec)
		}
	}

	req := rc.request(builtIDMS.Name)
	t.Logf("the registries.conf of %s's pod:\n%s", builtIDMS.Name, req.Registry.RegistriesConf)
	conf := parseRegistriesConf(t, req.Registry.RegistriesConf)
	want := []string{a + "/os", b + "/os", mirror.Host + "/os", d + "/os", f + "/os"}
	if got, blocked, ok := conf.mirrorsOf(src); !ok || strings.Join(got, ",") != strings.Join(want, ",") || blocked {
		t.Errorf("the pod's registries.conf has mirrors %v (entry found: %v, blocked: %v) for %s, want the merged order %v:\n%s",
			got, ok, blocked, src, want, req.Registry.RegistriesConf)
	}
	// Each build's registries.conf holds the mirrors of what that build pulls, and only those: the
	// ImageContentPolicy's source is in viaicp's and not in viaidms's, the ImageDigestMirrorSets'
	// source the other way round.
	reqICP := rc.request(builtICP.Name)
	confICP := parseRegistriesConf(t, reqICP.Registry.RegistriesConf)
	if got, _, ok := confICP.mirrorsOf(icpSource + "/os"); !ok || len(got) != 1 || got[0] != icpMirror+"/os" {
		t.Errorf("viaicp's pod's registries.conf has mirrors %v (entry found: %v) for the ImageContentPolicy source %s, want [%s/os]:\n%s",
			got, ok, icpSource+"/os", icpMirror, reqICP.Registry.RegistriesConf)
	}
	if got, _, ok := conf.mirrorsOf(icpSource + "/os"); ok {
		t.Errorf("viaidms's pod's registries.conf has an entry (mirrors %v) for the ImageContentPolicy source %s, which covers nothing viaidms pulls:\n%s",
			got, icpSource+"/os", req.Registry.RegistriesConf)
	}
	if got, _, ok := confICP.mirrorsOf(src); ok {
		t.Errorf("viaicp's pod's registries.conf has an entry (mirrors %v) for %s, which covers nothing viaicp pulls:\n%s",
			got, src, reqICP.Registry.RegistriesConf)
	}
	if got := strings.Join(confICP.UnqualifiedSearchRegistries, ","); got != mirror.Host+",search.example.com" {
		t.Errorf("viaicp: unqualified-search-registries = %q, want %s,search.example.com", got, mirror.Host)
	}
	if got := strings.Join(conf.UnqualifiedSearchRegistries, ","); got != mirror.Host+",search.example.com" {
		t.Errorf("unqualified-search-registries = %q, want containerRuntimeSearchRegistries in order (%s,search.example.com)", got, mirror.Host)
	}
	for _, host := range []string{mirror.Host, icpMirror, e.reg.Host} {
		if !bytes.Equal(req.Registry.CAs[host], ca.PEM) {
			t.Errorf("the pod did not get the CA for %s (has CAs for %v)", host, slices.Sorted(maps.Keys(req.Registry.CAs)))
		}
	}

	// `mosb render` on the same objects, as files, prints exactly what the pod got.
	dir := t.TempDir()
	var objs []client.Object
	for _, o := range []client.Object{
		&configv1.Image{ObjectMeta: metav1.ObjectMeta{Name: "cluster"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "openshift-config", Name: "registry-cas"}},
		&configv1.ImageDigestMirrorSet{ObjectMeta: metav1.ObjectMeta{Name: "seed-a"}},
		&configv1.ImageDigestMirrorSet{ObjectMeta: metav1.ObjectMeta{Name: "seed-b"}},
		&configv1.ImageContentPolicy{ObjectMeta: metav1.ObjectMeta{Name: "icp"}},
	} {
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o)
	}
	writeManifests(t, filepath.Join(dir, "cluster"), e.c.Scheme(), objs...)
	writeManifests(t, filepath.Join(dir, "mosc"), e.c.Scheme(), e.get("viaidms"))
	moscFile := filepath.Join(dir, "mosc", "00-machineosconfig-viaidms.yaml")
	for show, podGot := range map[string][]byte{"registries.conf": req.Registry.RegistriesConf, "policy.json": req.Registry.PolicyJSON} {
		out := render(t, "-f", moscFile, "--cluster-config", filepath.Join(dir, "cluster"), "--show", show)
		if !bytes.Equal(out, podGot) {
			t.Errorf("mosb render --show %s differs from what the pod got.\nrender:\n%s\npod:\n%s", show, out, podGot)
		}
	}
}

// NeverContactSource with the only mirror down fails the build although the source holds the
// image, and the failure names the image and the mirror that was tried.
func TestNeverContactSourceWithTheMirrorDownFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ca := e.reg.CA
	source := harness.StartRegistry(t, harness.WithCA(ca), harness.NoAuth())
	base := harness.PushBaseImage(t, source, "os/base", "amd64")
	mirror := harness.StartRegistry(t, harness.WithCA(ca), harness.NoAuth())
	harness.PushBaseImage(t, mirror, "os/base", "amd64")
	mirror.Stop()
	e.trustCA(source, mirror)
	e.create(idms("never", digestMirrors(source.Host+"/os", configv1.NeverContactSource, mirror.Host+"/os")))
	// Control: the source serves the image, so only the policy can make the pull fail.
	if !hasManifest(t, source, base) {
		t.Fatalf("the source does not serve %s", base)
	}

	e.create(e.mosc("never", checkContent, base, ""))
	failed, msg := e.waitBuildFailed("never")
	t.Logf("%s failed as it must: %s", failed.Name, msg)
	for _, want := range []string{
		digestOf(base),                             // the image
		source.Host + "/os/base",                   // as the user named it
		mirror.Host + "/os/base@" + digestOf(base), // the mirror that was tried
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the failure does not name %q:\n%s", want, msg)
		}
	}
	if c := degradedCondition(e, "never"); c == nil || !strings.Contains(c.Message, mirror.Host) {
		t.Errorf("the MachineOSConfig's Degraded condition does not carry the failure: %+v", c)
	}
}

// Mirror sets apply to pulls only: with digest and tag mirror sets (NeverContactSource) for the
// push repository, the image is pushed where the pushspec says, the mirror gets nothing, and the
// controller finds its image there (no rebuild loop).
func TestMirrorsNeverRedirectThePush(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pushMirror := harness.StartRegistry(t, harness.WithCA(e.reg.CA), harness.NoAuth())
	e.trustCA(pushMirror)
	repo := e.reg.Host + "/os/pushed"
	e.create(
		idms("push-repo", digestMirrors(repo, configv1.NeverContactSource, pushMirror.Host+"/os/pushed")),
		&configv1.ImageTagMirrorSet{ObjectMeta: metav1.ObjectMeta{Name: "push-repo"},
			Spec: configv1.ImageTagMirrorSetSpec{ImageTagMirrors: []configv1.ImageTagMirrors{{
				Source: repo, Mirrors: []configv1.ImageMirror{configv1.ImageMirror(pushMirror.Host + "/os/pushed")},
				MirrorSourcePolicy: configv1.NeverContactSource,
			}}}},
	)
	e.create(e.mosc("pushed", checkContent, "", repo+":latest"))
	var built *mosbv1.MachineOSBuild
	eventually(t, buildTimeout, "a succeeded build of pushed", func(ctx context.Context) (bool, error) {
		built = newestBuild(e.builds(ctx, "pushed"))
		return built != nil && pipeline.Phase(built) == pipeline.PhaseSucceeded, nil
	})
	pushed := built.Status.DigestedImagePushspec
	if !strings.HasPrefix(pushed, repo+"@") {
		t.Fatalf("the build reports %s, want an image in %s", pushed, repo)
	}
	// The controller checks that the image it reports exists before status says Ready: it must
	// look where the image was pushed, not through the mirror sets.
	eventually(t, time.Minute, "pushed Ready with "+pushed, func(ctx context.Context) (bool, error) {
		b := &mosbv1.MachineOSBuild{}
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(built), b); apierrors.IsNotFound(err) || (err == nil && b.UID != built.UID) {
			t.Fatalf("the controller deleted MachineOSBuild %s after it succeeded, to build %s again: it looked for the image through the mirror set and did not find it",
				built.Name, pushed)
		} else if err != nil {
			return false, err
		}
		m := &mosbv1.MachineOSConfig{}
		if err := e.c.Get(ctx, client.ObjectKey{Name: "pushed"}, m); err != nil {
			return false, err
		}
		return string(m.Status.CurrentImagePullspec) == pushed && meta.IsStatusConditionTrue(m.Status.Conditions, mosbv1.MachineOSConfigReady), nil
	})
	if got := e.servedDigest(repo + ":latest"); got != digestOf(pushed) {
		t.Errorf("%s:latest serves %s, the build pushed %s", repo, got, digestOf(pushed))
	}
	for _, ref := range []string{pushMirror.Host + "/os/pushed:latest", pushMirror.Host + "/os/pushed@" + digestOf(pushed)} {
		if hasManifest(t, pushMirror, ref) {
			t.Errorf("the push went to the mirror: it serves %s", ref)
		}
	}
	if n, ok := e.holdsBuildCount("pushed", 1, 10*time.Second); !ok {
		t.Errorf("pushed has %d MachineOSBuilds after its build succeeded, want 1: the controller does not find the image it pushed", n)
	}
}

// Editing a mirror set changes the registries.conf of the builds it applies to, and with it their
// identity: the affected MachineOSConfig is built exactly once more; one whose images the mirror
// set does not cover is not. Deleting the mirror set does the same.
func TestEditingOrDeletingAMirrorSetRebuildsOnlyTheAffected(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	ca := e.reg.CA
	mirror := harness.StartRegistry(t, harness.WithCA(ca), harness.NoAuth())
	digest := digestOf(harness.PushBaseImage(t, mirror, "os/base", "amd64"))
	source := harness.StartRegistry(t, harness.WithCA(ca), harness.NoAuth())
	source.Stop()
	e.trustCA(mirror, source)
	src := source.Host + "/os"
	e.create(idms("edit-me", digestMirrors(src, "", mirror.Host+"/os")))
	e.settle()
	rc := e.captureRequests()
	e.create(e.mosc("affected", checkContent, src+"/base@"+digest, ""), e.mosc("other", checkContent, "", ""))
	e.waitBuilt("affected", 1)
	e.waitBuilt("other", 1)

	// Edit: a second mirror after the one that serves.
	dead := deadLocation(t)
	set := &configv1.ImageDigestMirrorSet{}
	if err := e.c.Get(ctx, client.ObjectKey{Name: "edit-me"}, set); err != nil {
		t.Fatal(err)
	}
	set.Spec.ImageDigestMirrors[0].Mirrors = append(set.Spec.ImageDigestMirrors[0].Mirrors, configv1.ImageMirror(dead+"/os"))
	if err := e.c.Update(ctx, set); err != nil {
		t.Fatal(err)
	}
	edited := e.waitBuilt("affected", 2)
	if got, _, _ := parseRegistriesConf(t, rc.request(edited.Name).Registry.RegistriesConf).mirrorsOf(src); strings.Join(got, ",") != mirror.Host+"/os,"+dead+"/os" {
		t.Errorf("after the edit the build's registries.conf has mirrors %v for %s, want [%s/os %s/os]", got, src, mirror.Host, dead)
	}
	if n, ok := e.holdsBuildCount("affected", 2, 5*time.Second); !ok {
		t.Errorf("affected has %d MachineOSBuilds after one edit, want 2", n)
	}
	if n := e.buildCount("other"); n != 1 {
		t.Errorf("other, whose images no mirror set covers, has %d MachineOSBuilds after the edit, want 1: "+
			"the build identity hashes the whole registries.conf, so any mirror set change rebuilds every MachineOSConfig", n)
	}

	// Delete: the source is back with the image, and the build pulls it from there.
	if err := source.Start(); err != nil {
		t.Fatal(err)
	}
	if got := harness.PushBaseImage(t, source, "os/base", "amd64"); digestOf(got) != digest {
		t.Fatalf("the source holds %s, want digest %s", got, digest)
	}
	if err := e.c.Delete(ctx, set); err != nil {
		t.Fatal(err)
	}
	deleted := e.waitBuilt("affected", 3)
	if _, _, ok := parseRegistriesConf(t, rc.request(deleted.Name).Registry.RegistriesConf).mirrorsOf(src); ok {
		t.Errorf("after the mirror set was deleted, the build's registries.conf still has an entry for %s", src)
	}
	if n, ok := e.holdsBuildCount("affected", 3, 5*time.Second); !ok {
		t.Errorf("affected has %d MachineOSBuilds after the deletion, want 3", n)
	}
	if n := e.buildCount("other"); n != 1 {
		t.Errorf("other has %d MachineOSBuilds after the mirror set was edited and deleted, want 1", n)
	}
}

// A base image or push target in blockedRegistries, or outside allowedRegistries, is refused
// before any pod with RegistryBlocked; lifting the rule lets the build proceed. The allow-list
// build runs with the policy.json mosb renders for it.
func TestImagePolicyRefusesRegistriesBeforeAnyPod(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := harness.StartRegistry(t, harness.WithCA(e.reg.CA), harness.NoAuth())
	otherBase := harness.PushBaseImage(t, other, "os/base", "amd64")
	e.trustCA(other)
	e.updateImage(func(img *configv1.Image) { img.Spec.RegistrySources.BlockedRegistries = []string{other.Host} })
	e.create(
		e.mosc("blockedbase", checkContent, otherBase, ""),
		e.mosc("blockedpush", checkContent, "", other.Host+"/os/blockedpush:latest"),
	)
	what := map[string]string{"blockedbase": "base image", "blockedpush": "push target"}
	for name, thing := range what {
		msg := e.waitDegraded(name, pipeline.ReasonRegistryBlocked)
		for _, want := range []string{"MachineOSConfig " + name, thing, other.Host, "blockedRegistries"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: the message does not say %q: %s", name, want, msg)
			}
		}
	}
	for name := range what {
		if n, ok := e.holdsBuildCount(name, 0, 5*time.Second); !ok {
			t.Errorf("%s: %d MachineOSBuilds while its registry is blocked, want 0", name, n)
		}
		e.noPodsFor(name)
	}

	e.updateImage(func(img *configv1.Image) { img.Spec.RegistrySources.BlockedRegistries = nil })
	for name := range what {
		e.waitBuilt(name, 1)
	}
	if !hasManifest(t, other, other.Host+"/os/blockedpush:latest") {
		t.Errorf("blockedpush did not push to %s once unblocked", other.Host)
	}

	e.updateImage(func(img *configv1.Image) { img.Spec.RegistrySources.AllowedRegistries = []string{e.reg.Host} })
	for name, thing := range what {
		msg := e.waitDegraded(name, pipeline.ReasonRegistryBlocked)
		for _, want := range []string{thing, other.Host, "allowedRegistries"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: the message does not say %q: %s", name, want, msg)
			}
		}
	}
	for name := range what {
		if n, ok := e.holdsBuildCount(name, 1, 5*time.Second); !ok {
			t.Errorf("%s: %d MachineOSBuilds while its registry is not allowed, want still 1", name, n)
		}
		e.noPodsFor(name)
	}

	e.updateImage(func(img *configv1.Image) {
		img.Spec.RegistrySources.AllowedRegistries = []string{e.reg.Host, other.Host}
	})
	for name := range what {
		e.waitBuilt(name, 2)
	}
}

// insecureRegistries lets a build pull from a plain-HTTP registry; without it the same build
// fails saying the registry answered HTTP to an HTTPS client.
func TestInsecureRegistriesLetABuildUsePlainHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	plain := harness.StartRegistry(t, harness.PlainHTTP(), harness.NoAuth())
	base := harness.PushBaseImage(t, plain, "os/base", "amd64")
	rc := e.captureRequests()
	e.create(e.mosc("plain", checkContent, base, ""))
	_, msg := e.waitBuildFailed("plain")
	t.Logf("without insecureRegistries: %s", msg)
	lower := strings.ToLower(msg)
	if !strings.Contains(lower, plain.Host) || !(strings.Contains(lower, "https") || strings.Contains(lower, "tls")) {
		t.Errorf("the failure does not say that %s was reached over HTTPS/TLS and answered otherwise:\n%s", plain.Host, msg)
	}

	e.updateImage(func(img *configv1.Image) { img.Spec.RegistrySources.InsecureRegistries = []string{plain.Host} })
	built := e.waitBuilt("plain", 2)
	conf := parseRegistriesConf(t, rc.request(built.Name).Registry.RegistriesConf)
	insecure := false
	for _, r := range conf.Registries {
		insecure = insecure || ((r.Prefix == plain.Host || r.Location == plain.Host) && r.Insecure)
	}
	if !insecure {
		t.Errorf("the pod's registries.conf does not mark %s insecure", plain.Host)
	}
}

// A registry with TLS from a private CA: without the CA in additionalTrustedCA the pull (in the
// build pod) and the push (mosb's own registry client in the worker) fail saying the certificate
// is not trusted; with it both builds succeed, and the controller's own check that the pushed
// image exists (which must pass before status says Ready) trusts it too.
func TestAdditionalTrustedCAReachesBuildsAndMosbsOwnCalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	private := harness.StartRegistry(t, harness.NoAuth()) // a CA of its own, trusted by nobody yet
	base := harness.PushBaseImage(t, private, "os/base", "amd64")
	rc := e.captureRequests()
	e.create(
		e.mosc("capull", checkContent, base, ""),
		e.mosc("capush", checkContent, "", private.Host+"/os/capush:latest"),
	)
	for _, name := range []string{"capull", "capush"} {
		_, msg := e.waitBuildFailed(name)
		t.Logf("%s without the CA: %s", name, msg)
		if !strings.Contains(msg, "certificate") || !strings.Contains(msg, "unknown authority") || !strings.Contains(msg, private.Host) {
			t.Errorf("%s: the failure does not say that %s's certificate is not trusted:\n%s", name, private.Host, msg)
		}
	}
	if hasManifest(t, private, private.Host+"/os/capush:latest") {
		t.Fatal("capush pushed without trusting the registry")
	}

	e.trustCA(private)
	for _, name := range []string{"capull", "capush"} {
		built := e.waitBuilt(name, 2)
		if got := rc.request(built.Name).Registry.CAs[private.Host]; !bytes.Equal(got, private.CA.PEM) {
			t.Errorf("%s: the build pod did not get %s's CA", name, private.Host)
		}
	}
	m := e.get("capush")
	if !strings.HasPrefix(string(m.Status.CurrentImagePullspec), private.Host+"/os/capush@") || !hasManifest(t, private, string(m.Status.CurrentImagePullspec)) {
		t.Errorf("capush's image %s is not on %s", m.Status.CurrentImagePullspec, private.Host)
	}
}

// The controller's own registry calls trust the additionalTrustedCA too: for a pool of two
// architectures it pushes the OCI index itself, to a registry only that CA vouches for.
func TestAdditionalTrustedCAReachesTheIndexPush(t *testing.T) {
	t.Parallel()
	needArm64Emulation(t)
	e := newEnv(t, "amd64", "arm64")
	private := harness.StartRegistry(t, harness.NoAuth())
	e.trustCA(private)
	target := private.Host + "/os/multi:latest"
	e.create(e.mosc("multi", checkContent, "", target))
	built := e.waitBuilt("multi", 1)
	if len(built.Status.Architectures) != 2 {
		t.Fatalf("built %d architectures, want 2", len(built.Status.Architectures))
	}
	index := built.Status.DigestedImagePushspec
	if !strings.HasPrefix(index, private.Host+"/os/multi@") || !hasManifest(t, private, index) {
		t.Fatalf("the index %s is not on %s", index, private.Host)
	}
	for _, a := range built.Status.Architectures {
		if a.DigestedImagePushspec == index {
			t.Errorf("status names the %s image, not the index the controller pushed", a.Architecture)
		}
	}
	ref, err := name.ParseReference(target)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(ref, remote.WithTransport(private.Transport()), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	if !desc.MediaType.IsIndex() || desc.Digest.String() != digestOf(index) {
		t.Errorf("%s is a %s with digest %s, want the index %s", target, desc.MediaType, desc.Digest, digestOf(index))
	}
}

// With pinning on (the annotation here; --pin-images for all), a pool's PinnedImageSet lists the
// images of its succeeded builds and their base by digest, is labelled with the pool and
// referenced from the pool; images of builds that history cleanup deleted drop out; an image the
// PinnedImageSet rules refuse is left out with a Warning event; without pinning nothing is pinned.
func TestPinnedImageSetFollowsSuccessfulBuilds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	startPinner(t, &pipeline.PinnedImagesReconciler{}, e.cp)
	setName := pipeline.PinnedImageSetName(poolName)

	pinned := e.mosc("pinned", "RUN echo one > /etc/one", "", "")
	pinned.Annotations = map[string]string{pipeline.AnnotationPinImages: "true"}
	e.create(pinned, e.mosc("unpinned", "RUN echo unpinned > /etc/unpinned", "", ""))
	first := e.waitBuilt("pinned", 1).Status.DigestedImagePushspec
	e.waitBuilt("unpinned", 1)
	e.waitPinned(setName, first, e.base)

	m := e.get("pinned")
	m.Spec.BuildInputs.Containerfile[0].Content = "RUN echo two > /etc/two"
	if err := e.c.Update(ctx, m); err != nil {
		t.Fatal(err)
	}
	second := e.waitBuilt("pinned", 2)
	e.waitPinned(setName, first, second.Status.DigestedImagePushspec, e.base)

	// History cleanup deletes the first build: its image is no longer pinned.
	for _, b := range e.builds(ctx, "pinned") {
		if b.Name != second.Name {
			if err := e.c.Delete(ctx, &b); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.waitPinned(setName, second.Status.DigestedImagePushspec, e.base)

	// Two namespace levels: a valid pullspec that the PinnedImageSet API refuses.
	nested := e.mosc("nested", checkContent, "", e.reg.Host+"/a/b/c:latest")
	nested.Annotations = map[string]string{pipeline.AnnotationPinImages: "true"}
	e.create(nested)
	refused := e.waitBuilt("nested", 1).Status.DigestedImagePushspec
	eventually(t, time.Minute, "a "+pipeline.ReasonPinnedImageRefused+" event naming "+refused, func(ctx context.Context) (bool, error) {
		evs, err := eventsFor(ctx, e.c, "MachineOSConfig", "nested")
		if err != nil {
			return false, err
		}
		for _, ev := range evs {
			if ev.Type == corev1.EventTypeWarning && ev.Reason == pipeline.ReasonPinnedImageRefused && strings.Contains(ev.Message, refused) {
				return true, nil
			}
		}
		return false, nil
	})
	e.waitPinned(setName, second.Status.DigestedImagePushspec, e.base)

	// Pinning off for both: the set goes, and so does the pool's reference to it.
	for _, name := range []string{"pinned", "nested"} {
		m := e.get(name)
		m.Annotations[pipeline.AnnotationPinImages] = "false"
		if err := e.c.Update(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	e.waitNotPinned(setName)
}

// Without any build controller: 260 succeeded builds with an image and a base each (520 images)
// pin exactly 500, the newest; deleting builds frees room; the pool's other PinnedImageSet
// references stay; --pin-images pins a MachineOSConfig without the annotation and "false" opts out.
func TestPinnedImageSetNeverExceedsTheLimit(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("e2e: needs kube-apiserver")
	}
	cp := harness.StartControlPlane(t)
	ctx := t.Context()
	c := cp.Client
	const pool = "infra"
	for _, o := range []client.Object{
		&mcfgv1.MachineConfigPool{ObjectMeta: metav1.ObjectMeta{Name: pool},
			Spec: mcfgv1.MachineConfigPoolSpec{PinnedImageSets: []mcfgv1.PinnedImageSetRef{{Name: "admin-set"}}}},
		harness.MachineOSConfig("hist", pool, fmt.Sprintf("registry.example.com/os/base@sha256:%064x", 0), "registry.example.com/os/hist:latest"),
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	type fake struct{ name, image, base string }
	var fakes []fake
	start := time.Now().Add(-24 * time.Hour)
	for i := 0; i < 260; i++ {
		f := fake{fmt.Sprintf("hist-%03d", i),
			fmt.Sprintf("registry.example.com/os/hist@sha256:%064x", 2*i+1),
			fmt.Sprintf("registry.example.com/os/base@sha256:%064x", 2*i+2)}
		fakes = append(fakes, f)
		b := &mosbv1.MachineOSBuild{
			ObjectMeta: metav1.ObjectMeta{Name: f.name, Labels: map[string]string{pipeline.LabelMachineOSConfig: "hist"}},
			Spec: mosbv1.MachineOSBuildSpec{
				MachineOSConfig: mosbv1.MachineOSConfigReference{Name: "hist"}, BuildIdentity: fmt.Sprintf("%064x", i),
				RenderedImagePushspec: "registry.example.com/os/hist:latest", BaseOSImagePullspec: f.base,
			},
		}
		if err := c.Create(ctx, b); err != nil {
			t.Fatal(err)
		}
		b.Status.DigestedImagePushspec = f.image
		pipeline.SetBuildPhase(b, pipeline.PhaseSucceeded, pipeline.ReasonBuilt, "pushed "+f.image, metav1.NewTime(start.Add(time.Duration(i)*time.Minute)))
		if err := c.Status().Update(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	imagesOf := func(fs []fake) []string {
		var out []string
		for _, f := range fs {
			out = append(out, f.image, f.base)
		}
		return out
	}
	startPinner(t, &pipeline.PinnedImagesReconciler{PinAll: true}, cp)
	setName := pipeline.PinnedImageSetName(pool)
	waitPinnedSet(t, c, pool, setName, imagesOf(fakes[10:])...)
	if got := poolRefs(t, c, pool); got != "admin-set,"+setName {
		t.Errorf("pool references %s, want admin-set,%s", got, setName)
	}
	eventually(t, 30*time.Second, "a "+pipeline.ReasonPinnedImagesTruncated+" event on the pool", func(ctx context.Context) (bool, error) {
		evs, err := eventsFor(ctx, c, "MachineConfigPool", pool)
		for _, ev := range evs {
			if ev.Reason == pipeline.ReasonPinnedImagesTruncated && strings.Contains(ev.Message, "500") {
				return true, nil
			}
		}
		return false, err
	})

	// History cleanup deletes the ten newest builds: the ten oldest fit again.
	for _, f := range fakes[250:] {
		if err := c.Delete(ctx, &mosbv1.MachineOSBuild{ObjectMeta: metav1.ObjectMeta{Name: f.name}}); err != nil {
			t.Fatal(err)
		}
	}
	waitPinnedSet(t, c, pool, setName, imagesOf(fakes[:250])...)

	// Opting out removes the set and only mosb's reference.
	m := &mosbv1.MachineOSConfig{}
	if err := c.Get(ctx, client.ObjectKey{Name: "hist"}, m); err != nil {
		t.Fatal(err)
	}
	m.Annotations = map[string]string{pipeline.AnnotationPinImages: "false"}
	if err := c.Update(ctx, m); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "PinnedImageSet "+setName+" deleted and unreferenced", func(ctx context.Context) (bool, error) {
		err := c.Get(ctx, client.ObjectKey{Name: setName}, &mcfgv1.PinnedImageSet{})
		return apierrors.IsNotFound(err) && poolRefs(t, c, pool) == "admin-set", client.IgnoreNotFound(err)
	})
}

// ---- helpers of these tests ----

func (e *env) trustCAUnder(host string, pem []byte) {
	e.t.Helper()
	cm := &corev1.ConfigMap{}
	if err := e.c.Get(e.t.Context(), client.ObjectKey{Namespace: "openshift-config", Name: "registry-cas"}, cm); err != nil {
		e.t.Fatal(err)
	}
	cm.Data[caKey(host)] = string(pem)
	if err := e.c.Update(e.t.Context(), cm); err != nil {
		e.t.Fatal(err)
	}
}

func degradedCondition(e *env, name string) *metav1.Condition {
	m := e.get(name)
	for i := range m.Status.Conditions {
		if m.Status.Conditions[i].Type == mosbv1.MachineOSConfigDegraded {
			return &m.Status.Conditions[i]
		}
	}
	return nil
}

func (e *env) waitPinned(setName string, images ...string) {
	e.t.Helper()
	waitPinnedSet(e.t, e.c, poolName, setName, images...)
}

// waitPinnedSet waits until the pool's PinnedImageSet holds exactly images, is labelled with the
// pool, and the pool references it.
func waitPinnedSet(t *testing.T, c client.Client, pool, setName string, images ...string) {
	t.Helper()
	want := append([]string(nil), images...)
	sort.Strings(want)
	eventually(t, buildTimeout, fmt.Sprintf("PinnedImageSet %s with %d images, referenced from pool %s", setName, len(want), pool), func(ctx context.Context) (bool, error) {
		set := &mcfgv1.PinnedImageSet{}
		if err := c.Get(ctx, client.ObjectKey{Name: setName}, set); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		var got []string
		for _, p := range set.Spec.PinnedImages {
			got = append(got, string(p.Name))
		}
		sort.Strings(got)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			return false, fmt.Errorf("the set holds %d images: %v", len(got), got)
		}
		if set.Labels[pipeline.LabelPinnedPool] != pool {
			return false, fmt.Errorf("the set's labels are %v, want %s=%s", set.Labels, pipeline.LabelPinnedPool, pool)
		}
		return strings.Contains(","+poolRefs(t, c, pool)+",", ","+setName+","), nil
	})
}

func (e *env) waitNotPinned(setName string) {
	e.t.Helper()
	eventually(e.t, time.Minute, "PinnedImageSet "+setName+" deleted and unreferenced", func(ctx context.Context) (bool, error) {
		err := e.c.Get(ctx, client.ObjectKey{Name: setName}, &mcfgv1.PinnedImageSet{})
		return apierrors.IsNotFound(err) && !strings.Contains(poolRefs(e.t, e.c, poolName), setName), client.IgnoreNotFound(err)
	})
}

func poolRefs(t *testing.T, c client.Client, pool string) string {
	p := &mcfgv1.MachineConfigPool{}
	if err := c.Get(t.Context(), client.ObjectKey{Name: pool}, p); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range p.Spec.PinnedImageSets {
		names = append(names, r.Name)
	}
	return strings.Join(names, ",")
}
