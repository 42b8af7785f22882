package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	configv1 "github.com/openshift/api/config/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/builder"
	"github.com/mosb-dev/mosb/containerfiles"
	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/registry"
	"github.com/mosb-dev/mosb/test/harness"
)

// TestMirrorServesTheBaseImage builds, with real buildah, a MachineOSConfig whose base image names
// a registry that cannot serve it, through the registries.conf mosb renders from an
// ImageDigestMirrorSet: the base comes from the mirror. With NeverContactSource and the mirror
// down, the build must fail even though the source could then serve the image.
func TestMirrorServesTheBaseImage(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs docker-registry and buildah (run without -short)")
	}
	ca, err := harness.NewCA("mosb mirror test CA")
	if err != nil {
		t.Fatal(err)
	}
	source := harness.StartRegistry(t, harness.WithCA(ca))
	mirror := harness.StartRegistry(t, harness.WithCA(ca))
	mirrored := harness.PushBaseImage(t, mirror, "os/base", "amd64")
	digest := mirrored[strings.LastIndex(mirrored, "@")+1:]
	base := source.Host + "/os/base@" + digest
	m := mirrorFixture{source: source, mirror: mirror, base: base}

	// The source holds nothing and is down: only the mirror can serve the base image.
	source.Stop()
	target := mirror.Host + "/os/mirrored:latest"
	res, log, err := m.build(t, target, "")
	if err != nil {
		t.Fatalf("build through the mirror failed: %v\n%s", err, log)
	}
	if !strings.HasPrefix(res.Pullspec, mirror.Host+"/os/mirrored@sha256:") {
		t.Errorf("pullspec %q is not the target by digest", res.Pullspec)
	}
	labels, served := m.pushedLabels(t, target)
	if want := strings.TrimPrefix(res.Pullspec, mirror.Host+"/os/mirrored@"); served != want {
		t.Errorf("the target tag serves %s, the build reported %s", served, want)
	}
	// The image records the base as the user named it, not where its bytes came from.
	if got := labels[containerfiles.LabelBaseImage]; got != base {
		t.Errorf("label %s = %q, want %q", containerfiles.LabelBaseImage, got, base)
	}
	if got := labels["org.example.mirror-test"]; got != "built" {
		t.Errorf("the user content's label is %q: the user content did not run", got)
	}

	// Now the source can serve the image and the mirror is down.
	if err := source.Start(); err != nil {
		t.Fatal(err)
	}
	if got := harness.PushBaseImage(t, source, "os/base", "amd64"); got != base {
		t.Fatalf("the source holds %s, want %s", got, base)
	}
	mirror.Stop()

	// Control: allowed to contact the source, the build falls back to it and succeeds. Without
	// this, the failure below could have any cause.
	if _, log, err := m.build(t, source.Host+"/os/fallback:latest", ""); err != nil {
		t.Fatalf("with the mirror down and the source allowed, the build failed: %v\n%s", err, log)
	}

	// NeverContactSource: the mirror is the only place to pull from, and it is down.
	_, log, err = m.build(t, source.Host+"/os/never:latest", configv1.NeverContactSource)
	if err == nil {
		t.Fatalf("with NeverContactSource and the mirror down, the build succeeded (it pulled from the source):\n%s", log)
	}
	msg := err.Error()
	t.Logf("the build failed as it must: %s", msg)
	for _, want := range []string{
		digest,                             // the image
		source.Host + "/os/base",           // as the user named it
		mirror.Host + "/os/base@" + digest, // the mirror that was tried
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not name %q:\n%s", want, msg)
		}
	}
}

type mirrorFixture struct {
	source, mirror *harness.Registry
	base           string
}

// inputs are what the controller would read: the MachineOSConfig, one auth file with both
// registries' credentials as pull and push secret, and the cluster configuration: an Image whose
// additionalTrustedCA trusts both registries, and an ImageDigestMirrorSet source → mirror.
func (m mirrorFixture) inputs(t *testing.T, target string, policy configv1.MirrorSourcePolicy) pipeline.Inputs {
	t.Helper()
	const ns = "mosb-mirror-test"
	auths := map[string]json.RawMessage{}
	for _, r := range []*harness.Registry{m.source, m.mirror} {
		var one struct {
			Auths map[string]json.RawMessage `json:"auths"`
		}
		if err := json.Unmarshal(harness.DockerConfigJSON(r.Host, r.Username, r.Password), &one); err != nil {
			t.Fatal(err)
		}
		for host, entry := range one.Auths {
			auths[host] = entry
		}
	}
	authFile, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		t.Fatal(err)
	}
	secret := func(name string) *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Type:       corev1.SecretTypeDockerConfigJson,
			Data:       map[string][]byte{corev1.DockerConfigJsonKey: authFile},
		}
	}

	cas := map[string]string{}
	for _, r := range []*harness.Registry{m.source, m.mirror} {
		host, port, _ := strings.Cut(r.Host, ":")
		cas[host+".."+port] = string(r.CA.PEM)
	}

	mosc := harness.MachineOSConfig("mirrored", "worker", m.base, target)
	mosc.Spec.BuildInputs.Containerfile = []mosbv1.MachineOSContainerfile{{
		Content: "RUN grep -q 'mosb test OS' /etc/os-release\nLABEL org.example.mirror-test=built",
	}}
	return pipeline.Inputs{
		MachineOSConfig: mosc,
		PullSecret:      secret("pull"),
		PushSecret:      secret("push"),
		Namespace:       ns,
		Cluster: registry.ConfigSources{
			Image: &configv1.Image{
				ObjectMeta: metav1.ObjectMeta{Name: "cluster"},
				Spec:       configv1.ImageSpec{AdditionalTrustedCA: configv1.ConfigMapNameReference{Name: "registry-cas"}},
			},
			AdditionalTrustedCA: &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: "registry-cas", Namespace: "openshift-config"},
				Data:       cas,
			},
			ImageDigestMirrorSets: []configv1.ImageDigestMirrorSet{{
				ObjectMeta: metav1.ObjectMeta{Name: "os-mirror"},
				Spec: configv1.ImageDigestMirrorSetSpec{ImageDigestMirrors: []configv1.ImageDigestMirrors{{
					Source:             m.source.Host + "/os",
					Mirrors:            []configv1.ImageMirror{configv1.ImageMirror(m.mirror.Host + "/os")},
					MirrorSourcePolicy: policy,
				}}},
			}},
		},
		Arches:         []string{"amd64"},
		DefaultArch:    "amd64",
		BuilderVersion: "mirror-test",
	}
}

// build plans and builds in-process exactly as `mosb build` does (cmd/mosb/build.go runBuild),
// in a fresh storage root so that no earlier build's copy of the base image is reused. It returns
// buildah's progress output for failure messages.
func (m mirrorFixture) build(t *testing.T, target string, policy configv1.MirrorSourcePolicy) (*builder.Result, string, error) {
	t.Helper()
	plan, err := pipeline.Prepare(m.inputs(t, target, policy))
	if err != nil {
		t.Fatalf("Prepare refused the inputs: %v", err)
	}
	var progress bytes.Buffer
	engine, err := builder.New(t.TempDir(), builder.WithProgress(&progress))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = engine.Close() }()
	req := builder.Request{Target: plan.Target, Registry: plan.Registry}
	for _, a := range plan.Arches {
		req.Builds = append(req.Builds, a.Build)
	}
	pusher := registry.NewClient(registry.WithKeychain(plan.PushAuths.Keychain()), registry.WithConfig(plan.Config))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := engine.Build(ctx, req, pusher)
	return res, fmt.Sprintf("registries.conf:\n%s\nbuild output:\n%s", plan.Registry.RegistriesConf, progress.String()), err
}

// pushedLabels reads the image the target tag names on the mirror registry.
func (m mirrorFixture) pushedLabels(t *testing.T, target string) (map[string]string, string) {
	t.Helper()
	ref, err := name.ParseReference(target)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref, remote.WithAuth(m.mirror.Auth()), remote.WithTransport(m.mirror.Transport()), remote.WithContext(testContext(t)))
	if err != nil {
		t.Fatalf("reading %s: %v", target, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Config.Labels, d.String()
}
