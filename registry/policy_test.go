package registry

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"maps"
	"math/big"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	configv1 "github.com/openshift/api/config/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testCAPEM(t testing.TB) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func imageConfig(rs configv1.RegistrySources, caName string) *configv1.Image {
	img := &configv1.Image{ObjectMeta: metav1.ObjectMeta{Name: "cluster"}}
	img.Spec.RegistrySources = rs
	img.Spec.AdditionalTrustedCA.Name = caName
	return img
}

func caConfigMap(name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "openshift-config", Name: name}, Data: data}
}

func TestImagePolicyValidation(t *testing.T) {
	ca := string(testCAPEM(t))
	tests := []struct {
		name  string
		img   *configv1.Image
		cm    *corev1.ConfigMap
		field string
	}{
		{"both lists", imageConfig(configv1.RegistrySources{AllowedRegistries: []string{"quay.io"}, BlockedRegistries: []string{"docker.io"}}, ""), nil, "spec.registrySources"},
		{"bad blocked entry", imageConfig(configv1.RegistrySources{BlockedRegistries: []string{"quay.io", "quay.io/Upper"}}, ""), nil, "spec.registrySources.blockedRegistries[1]"},
		{"wildcard in the middle", imageConfig(configv1.RegistrySources{AllowedRegistries: []string{"quay.*.io"}}, ""), nil, "spec.registrySources.allowedRegistries[0]"},
		{"bad insecure entry", imageConfig(configv1.RegistrySources{InsecureRegistries: []string{"http://x"}}, ""), nil, "spec.registrySources.insecureRegistries[0]"},
		{"search with path", imageConfig(configv1.RegistrySources{ContainerRuntimeSearchRegistries: []string{"quay.io/ns"}}, ""), nil, "spec.registrySources.containerRuntimeSearchRegistries[0]"},
		{"CA map missing", imageConfig(configv1.RegistrySources{}, "user-ca"), nil, "spec.additionalTrustedCA.name"},
		{"CA map not named", imageConfig(configv1.RegistrySources{}, ""), caConfigMap("user-ca", nil), "spec.additionalTrustedCA.name"},
		{"CA map other name", imageConfig(configv1.RegistrySources{}, "user-ca"), caConfigMap("other", nil), "spec.additionalTrustedCA.name"},
		{"CA key not a host", imageConfig(configv1.RegistrySources{}, "user-ca"), caConfigMap("user-ca", map[string]string{"reg.local..5000..1": ca}), "data key"},
		{"CA key with a path", imageConfig(configv1.RegistrySources{}, "user-ca"), caConfigMap("user-ca", map[string]string{"reg_local": ca}), "data key"},
		{"CA not PEM", imageConfig(configv1.RegistrySources{}, "user-ca"), caConfigMap("user-ca", map[string]string{"reg.local": "not a cert"}), "data key"},
		{"CA broken cert", imageConfig(configv1.RegistrySources{}, "user-ca"), caConfigMap("user-ca", map[string]string{"reg.local": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}), "data key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewImagePolicy(tt.img, tt.cm)
			var ce *ConfigError
			if !errors.As(err, &ce) || !errors.Is(err, ErrInvalidClusterConfig) {
				t.Fatalf("want *ConfigError, got %v", err)
			}
			if ce.Field != tt.field {
				t.Errorf("field %q, want %q: %v", ce.Field, tt.field, err)
			}
		})
	}
}

func TestImagePolicyCAsSearchInsecure(t *testing.T) {
	ca := testCAPEM(t)
	cm := caConfigMap("user-ca", map[string]string{"reg.local..5000": string(ca)})
	cm.BinaryData = map[string][]byte{"other.local": ca}
	p, err := NewImagePolicy(imageConfig(configv1.RegistrySources{
		InsecureRegistries:               []string{"insecure.local:5000", "*.lab.example.com", "quay.io/ns"},
		ContainerRuntimeSearchRegistries: []string{"quay.io", "registry.example.com:5000", "quay.io"},
	}, "user-ca"), cm)
	if err != nil {
		t.Fatal(err)
	}
	cas := p.RegistryCAs()
	if len(cas) != 2 || string(cas["reg.local:5000"]) != string(ca) || string(cas["other.local"]) != string(ca) {
		t.Fatalf("CA dirs: %v", slices.Sorted(maps.Keys(cas)))
	}
	cas["reg.local:5000"][0] = 'X' // a copy: the policy must not change
	if string(p.RegistryCAs()["reg.local:5000"]) != string(ca) {
		t.Fatal("RegistryCAs returned shared bytes")
	}
	if got := p.SearchRegistries(); !reflect.DeepEqual(got, []string{"quay.io", "registry.example.com:5000"}) {
		t.Errorf("search registries %q", got)
	}
	for host, want := range map[string]bool{
		"insecure.local:5000": true, "insecure.local": false, "a.lab.example.com": true, "a.lab.example.com:8443": true,
		"lab.example.com": false, "quay.io": true /* path-scoped entry: TLS is per host */, "docker.io": false,
	} {
		if got := p.InsecureHost(host); got != want {
			t.Errorf("InsecureHost(%s) = %v, want %v", host, got, want)
		}
	}
	var nilPolicy *ImagePolicy
	if nilPolicy.InsecureHost("x") || len(nilPolicy.RegistryCAs()) != 0 || nilPolicy.SearchRegistries() != nil {
		t.Error("a nil policy must be empty")
	}
}

func TestImagePolicyCheck(t *testing.T) {
	blocked := imageConfig(configv1.RegistrySources{BlockedRegistries: []string{"blocked.io", "quay.io/bad", "*.evil.com", "reg.local:5000"}}, "")
	allowed := imageConfig(configv1.RegistrySources{AllowedRegistries: []string{"quay.io/good", "*.corp.com", "registry.example.com"}}, "")
	tests := []struct {
		name   string
		img    *configv1.Image
		ref    string
		reason DecisionReason
	}{
		{"no config", nil, "anything.io/x@" + dgA, ReasonAllowed},
		{"blocked host", blocked, "blocked.io/x/y@" + dgA, ReasonRegistryBlocked},
		{"blocked host, upper case", blocked, "BLOCKED.io/x/y@" + dgA, ReasonRegistryBlocked},
		{"blocked namespace", blocked, "quay.io/bad/y:v1", ReasonRegistryBlocked},
		{"namespace boundary", blocked, "quay.io/badger/y:v1", ReasonAllowed},
		{"other namespace", blocked, "quay.io/ok/y:v1", ReasonAllowed},
		{"blocked wildcard", blocked, "a.b.evil.com/x:v1", ReasonRegistryBlocked},
		{"blocked wildcard with port", blocked, "a.evil.com:8443/x:v1", ReasonRegistryBlocked},
		{"wildcard is not the domain", blocked, "evil.com/x:v1", ReasonAllowed},
		{"blocked with port", blocked, "reg.local:5000/x:v1", ReasonRegistryBlocked},
		{"other port", blocked, "reg.local:5001/x:v1", ReasonAllowed},
		{"no port", blocked, "reg.local/x:v1", ReasonAllowed},
		{"allowed namespace", allowed, "quay.io/good/x@" + dgA, ReasonAllowed},
		{"not allowed namespace", allowed, "quay.io/other/x@" + dgA, ReasonRegistryNotAllowed},
		{"allowed wildcard", allowed, "r.corp.com/x@" + dgA, ReasonAllowed},
		{"allowed host", allowed, "registry.example.com/a/b:c", ReasonAllowed},
		{"not allowed host", allowed, "docker.io/library/busybox:1", ReasonRegistryNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewImagePolicy(tt.img, nil)
			if err != nil {
				t.Fatal(err)
			}
			d := p.check(mustRef(t, tt.ref), "pull")
			if d.Reason != tt.reason || d.Allowed != (tt.reason == ReasonAllowed) {
				t.Fatalf("got %s (%v): %s", d.Reason, d.Allowed, d.Message)
			}
			if d.Allowed {
				if d.Err() != nil {
					t.Fatal("allowed decision with an error")
				}
				return
			}
			ref := mustRef(t, tt.ref)
			for _, want := range []string{ref.Host, "image.config.openshift.io/cluster", "spec.registrySources."} {
				if !strings.Contains(d.Message, want) {
					t.Errorf("message lacks %q: %s", want, d.Message)
				}
			}
			if !errors.Is(d.Err(), ErrNotPermitted) {
				t.Errorf("Err() = %v", d.Err())
			}
		})
	}
}

func TestBlockedMessageIsActionable(t *testing.T) {
	p, _ := NewImagePolicy(imageConfig(configv1.RegistrySources{BlockedRegistries: []string{"quay.io"}}, ""), nil)
	d := p.check(mustRef(t, "quay.io/os/worker:latest"), "push to")
	want := `cannot push to quay.io/os/worker:latest: registry quay.io is in image.config.openshift.io/cluster spec.registrySources.blockedRegistries (entry "quay.io"); remove it there or choose another registry`
	if d.Message != want {
		t.Fatalf("message\n got: %s\nwant: %s", d.Message, want)
	}
}

func TestConfigPullAndPushDecisions(t *testing.T) {
	mirrorSets := []configv1.ImageDigestMirrorSet{
		idms("m",
			digestMirrors("blocked.io/os", "mirror.ok/os"),
			digestMirrors("quay.io/os", "mirror.bad/os", "mirror.ok/os"),
			neverContact(digestMirrors("quay.io/only-bad", "mirror.bad/only")),
			neverContact(digestMirrors("quay.io/digest-only", "mirror.ok/d")),
		),
	}
	cfg, err := NewConfig(ConfigSources{
		Image:                 imageConfig(configv1.RegistrySources{BlockedRegistries: []string{"blocked.io", "mirror.bad"}}, ""),
		ImageDigestMirrorSets: mirrorSets,
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		ref     string
		reason  DecisionReason
		sources []string
		skipped []string
		msg     string
	}{
		{
			// The decision this package makes: a blocked source stays blocked even when an
			// allowed mirror has the image; the message says how to use the mirror instead.
			name: "blocked source with an allowed mirror is refused", ref: "blocked.io/os/x@" + dgA,
			reason: ReasonRegistryBlocked, msg: "write a mirror's name in the spec",
		},
		{
			name: "the mirror's own name is fine", ref: "mirror.ok/os/x@" + dgA,
			reason: ReasonAllowed, sources: []string{"mirror.ok/os/x@" + dgA},
		},
		{
			name: "blocked mirror is skipped, never contacted", ref: "quay.io/os/x@" + dgA,
			reason: ReasonAllowed, sources: []string{"mirror.ok/os/x@" + dgA, "quay.io/os/x@" + dgA},
			skipped: []string{"mirror.bad/os/x@" + dgA}, msg: "skips mirrors",
		},
		{
			name: "NeverContactSource and every mirror blocked", ref: "quay.io/only-bad/x@" + dgA,
			reason: ReasonNoPullSource, skipped: []string{"mirror.bad/only/x@" + dgA}, msg: "forbids all of its mirrors",
		},
		{
			name: "NeverContactSource and no mirror for tag pulls", ref: "quay.io/digest-only/x:v1",
			reason: ReasonNoPullSource, msg: "serves pulls by tag",
		},
		{
			name: "no mirrors", ref: "quay.io/plain/x:v1",
			reason: ReasonAllowed, sources: []string{"quay.io/plain/x:v1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref := mustRef(t, tt.ref)
			d := cfg.CheckPull(ref)
			if d.Reason != tt.reason || d.Allowed != (tt.reason == ReasonAllowed) {
				t.Fatalf("got %s: %s", d.Reason, d.Message)
			}
			if !strings.Contains(d.Message, tt.msg) {
				t.Errorf("message lacks %q: %s", tt.msg, d.Message)
			}
			if !reflect.DeepEqual(d.SkippedMirrors, tt.skipped) {
				t.Errorf("skipped %q, want %q", d.SkippedMirrors, tt.skipped)
			}
			got := sourceStrings(cfg.PullSources(ref))
			if tt.sources == nil {
				tt.sources = []string{}
			}
			if !reflect.DeepEqual(got, tt.sources) {
				t.Errorf("sources %q, want %q", got, tt.sources)
			}
		})
	}

	// Pushes ignore mirrors: a NeverContactSource source can still be pushed to.
	if d := cfg.CheckPush(mustRef(t, "quay.io/only-bad/x:v1")); !d.Allowed {
		t.Errorf("push to a mirror source refused: %s", d.Message)
	}
	if d := cfg.CheckPush(mustRef(t, "blocked.io/os/x:v1")); d.Reason != ReasonRegistryBlocked || !strings.Contains(d.Message, "push to") {
		t.Errorf("push to a blocked registry: %+v", d)
	}
}

func TestConfigAllowListDropsMirrors(t *testing.T) {
	cfg, err := NewConfig(ConfigSources{
		Image: imageConfig(configv1.RegistrySources{AllowedRegistries: []string{"quay.io", "mirror.ok/deep/ns"}}, ""),
		ImageDigestMirrorSets: []configv1.ImageDigestMirrorSet{idms("m", digestMirrors("quay.io/os",
			"mirror.ok/deep", "mirror.ok/deep/ns", "elsewhere.io/os"))},
	})
	if err != nil {
		t.Fatal(err)
	}
	ref := mustRef(t, "quay.io/os/x@"+dgA)
	// Only a mirror location the allow-list covers as a whole is used.
	want := []string{"mirror.ok/deep/ns/x@" + dgA, "quay.io/os/x@" + dgA}
	if got := sourceStrings(cfg.PullSources(ref)); !reflect.DeepEqual(got, want) {
		t.Fatalf("sources %q, want %q", got, want)
	}
	var nilCfg *Config
	if d := nilCfg.CheckPull(ref); !d.Allowed {
		t.Fatal("nil config must allow")
	}
	if got := sourceStrings(nilCfg.PullSources(ref)); !reflect.DeepEqual(got, []string{ref.String()}) {
		t.Fatalf("nil config sources %q", got)
	}
}
