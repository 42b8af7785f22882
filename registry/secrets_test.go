package registry

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const knownPassword = "Tr0ub4dor&3-very-secret"

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func secret(typ corev1.SecretType, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "mosb-system", Name: "build-push"}, Type: typ}
	if data != nil {
		s.Data = map[string][]byte{}
		for k, v := range data {
			s.Data[k] = []byte(v)
		}
	}
	return s
}

func TestParseSecretForms(t *testing.T) {
	auth := b64("robot:" + knownPassword)
	tests := []struct {
		name   string
		secret *corev1.Secret
		want   map[string]string // lookup target → username
	}{
		{"dockerconfigjson", secret(corev1.SecretTypeDockerConfigJson, map[string]string{
			".dockerconfigjson": `{"auths":{"quay.io":{"auth":"` + auth + `"}}}`}), map[string]string{"quay.io": "robot", "quay.io/ns/repo": "robot"}},
		{"dockercfg", secret(corev1.SecretTypeDockercfg, map[string]string{
			".dockercfg": `{"registry.example.com:5000":{"auth":"` + auth + `","email":"x@y"}}`}), map[string]string{"registry.example.com:5000": "robot"}},
		{"username and password fields", secret(corev1.SecretTypeDockerConfigJson, map[string]string{
			".dockerconfigjson": `{"auths":{"quay.io":{"username":"u","password":"` + knownPassword + `"}}}`}), map[string]string{"quay.io": "u"}},
		{"legacy docker hub key", secret(corev1.SecretTypeDockerConfigJson, map[string]string{
			".dockerconfigjson": `{"auths":{"https://index.docker.io/v1/":{"auth":"` + auth + `"}}}`}), map[string]string{"docker.io": "robot", "index.docker.io": "robot", "registry-1.docker.io/library/x": "robot"}},
		{"url keys and case", secret(corev1.SecretTypeDockerConfigJson, map[string]string{
			".dockerconfigjson": `{"auths":{"HTTPS://Quay.IO/v2/":{"auth":"` + auth + `"},"reg.local/v1/":{"auth":"` + b64("v1user:p") + `"}}}`}), map[string]string{"quay.io": "robot", "reg.local": "v1user"}},
		{"namespace-scoped key wins", secret(corev1.SecretTypeDockerConfigJson, map[string]string{
			".dockerconfigjson": `{"auths":{"quay.io":{"auth":"` + b64("host:p") + `"},"quay.io/team":{"auth":"` + b64("team:p") + `"}}}`}),
			map[string]string{"quay.io/other/x": "host", "quay.io/team/x": "team", "quay.io/team": "team", "quay.io/teamx/y": "host"}},
		{"password with colon", secret(corev1.SecretTypeDockerConfigJson, map[string]string{
			".dockerconfigjson": `{"auths":{"quay.io":{"auth":"` + b64("u:a:b") + `"}}}`}), map[string]string{"quay.io": "u"}},
		{"canonical key wins a fold", secret(corev1.SecretTypeDockerConfigJson, map[string]string{
			".dockerconfigjson": `{"auths":{"https://quay.io":{"auth":"` + b64("url:p") + `"},"quay.io":{"auth":"` + b64("plain:p") + `"}}}`}), map[string]string{"quay.io": "plain"}},
		{"string data", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "n", Name: "s"}, Type: corev1.SecretTypeDockerConfigJson,
			StringData: map[string]string{".dockerconfigjson": `{"auths":{"quay.io":{"auth":"` + auth + `"}}}`}}, map[string]string{"quay.io": "robot"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ParseSecret(tt.secret)
			if err != nil {
				t.Fatal(err)
			}
			for target, user := range tt.want {
				c, ok := a.Lookup(target)
				if !ok || c.Username != user {
					t.Errorf("Lookup(%q) = %q, %v; want %q", target, c.Username, ok, user)
				}
			}
			if _, ok := a.Lookup("other.example.com"); ok {
				t.Error("a registry without an entry must not resolve")
			}
		})
	}
}

func TestParseSecretPasswordOfAuth(t *testing.T) {
	a, err := ParseSecret(secret(corev1.SecretTypeDockerConfigJson, map[string]string{
		".dockerconfigjson": `{"auths":{"quay.io":{"auth":"` + b64("robot:"+knownPassword) + `"}}}`}))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := a.Lookup("quay.io")
	if c.Password() != knownPassword {
		t.Fatalf("password = %q", c.Password())
	}
}

// secretErrorCases reach every error path with the known password somewhere in the input.
func secretErrorCases() []struct {
	name   string
	secret *corev1.Secret
	want   error
} {
	auth := b64("robot:" + knownPassword)
	cfg := func(s string) *corev1.Secret {
		return secret(corev1.SecretTypeDockerConfigJson, map[string]string{".dockerconfigjson": s})
	}
	return []struct {
		name   string
		secret *corev1.Secret
		want   error
	}{
		{"nil", nil, ErrSecretEmpty},
		{"no data", secret(corev1.SecretTypeDockerConfigJson, nil), ErrSecretEmpty},
		{"empty value", cfg("  \n"), ErrSecretEmpty},
		{"wrong type", secret(corev1.SecretTypeOpaque, map[string]string{".dockerconfigjson": `{"auths":{"quay.io":{"auth":"` + auth + `"}}}`}), ErrSecretWrongType},
		{"basic-auth type", secret(corev1.SecretTypeBasicAuth, map[string]string{"password": knownPassword}), ErrSecretWrongType},
		{"missing key", secret(corev1.SecretTypeDockerConfigJson, map[string]string{".dockercfg": `{"quay.io":{"auth":"` + auth + `"}}`}), ErrSecretMissingKey},
		{"dockercfg missing key", secret(corev1.SecretTypeDockercfg, map[string]string{"config.json": knownPassword}), ErrSecretMissingKey},
		{"syntax error", cfg(`{"auths":{"quay.io":{"auth":"` + auth + `"`), ErrSecretMalformedJSON},
		{"syntax error at password", cfg(`{"auths":{"quay.io":{"password":` + knownPassword + `}}}`), ErrSecretMalformedJSON},
		{"numeric password", cfg(`{"auths":{"quay.io":{"username":"u","password":12345678901234567890}}}`), ErrSecretMalformedJSON},
		{"array top", cfg(`["` + knownPassword + `"]`), ErrSecretMalformedJSON},
		{"bad base64", cfg(`{"auths":{"quay.io":{"auth":"robot:` + knownPassword + `"}}}`), ErrSecretBadBase64},
		{"auth without colon", cfg(`{"auths":{"quay.io":{"auth":"` + b64("robot"+knownPassword) + `"}}}`), ErrSecretAuthNoColon},
		{"username with a colon", cfg(`{"auths":{"quay.io":{"username":"robot:x","password":"` + knownPassword + `"}}}`), ErrSecretUsernameColon},
		{"no auths", cfg(`{"quay.io":{"auth":"` + auth + `"}}`), ErrSecretNoEntries},
		{"empty auths", cfg(`{"auths":{}}`), ErrSecretNoEntries},
		{"empty dockercfg", secret(corev1.SecretTypeDockercfg, map[string]string{".dockercfg": `{}`}), ErrSecretNoEntries},
		{"entry without credentials", cfg(`{"auths":{"quay.io":{}},"credsStore":"` + knownPassword + `"}`), ErrSecretNoCredentials},
		{"identity token only", cfg(`{"auths":{"quay.io":{"identitytoken":"` + knownPassword + `"}}}`), ErrSecretNoCredentials},
		{"bad registry key", cfg(`{"auths":{"not a host":{"auth":"` + auth + `"}}}`), ErrSecretBadRegistry},
	}
}

func TestParseSecretErrors(t *testing.T) {
	for _, tt := range secretErrorCases() {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSecret(tt.secret)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			var se *SecretError
			if !errors.As(err, &se) {
				t.Fatalf("not a *SecretError: %T", err)
			}
			if tt.secret != nil && !strings.Contains(err.Error(), "mosb-system/build-push") {
				t.Errorf("message does not name the secret: %v", err)
			}
		})
	}
}

// TestSecretErrorsNeverContainSecrets feeds known passwords through every error path.
func TestSecretErrorsNeverContainSecrets(t *testing.T) {
	secrets := []string{knownPassword, b64("robot:" + knownPassword), b64("robot" + knownPassword), "12345678901234567890"}
	for _, tt := range secretErrorCases() {
		_, err := ParseSecret(tt.secret)
		if err == nil {
			t.Fatalf("%s: want an error", tt.name)
		}
		for _, s := range secrets {
			if strings.Contains(err.Error(), s) || strings.Contains(fmt.Sprintf("%+v %#v", err, err), s) {
				t.Errorf("%s: error contains a secret: %v", tt.name, err)
			}
		}
	}
}

func TestCredentialFormattingRedacts(t *testing.T) {
	a, err := NewAuths(map[string]Credential{"Quay.io": NewCredential("robot", knownPassword)})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := a.Lookup("quay.io")
	type holder struct {
		inner Credential // unexported: fmt reaches it by reflection, not through Format
		auths Auths
	}
	outputs := []string{
		fmt.Sprint(c), fmt.Sprintf("%v|%+v|%#v|%s|%q|%x", c, c, c, c, c, c),
		fmt.Sprintf("%v|%+v|%#v|%s", a, a, a, a), c.String(), c.GoString(), a.String(), a.GoString(),
		fmt.Sprintf("%v|%+v|%#v", holder{c, a}, holder{c, a}, &holder{c, a}),
		fmt.Sprintf("%v", []Credential{c}), fmt.Sprintf("%v", map[string]Credential{"x": c}),
	}
	for _, o := range outputs {
		if strings.Contains(o, knownPassword) {
			t.Fatalf("password shown: %s", o)
		}
	}
	if !strings.Contains(fmt.Sprint(c), "robot") || !strings.Contains(fmt.Sprint(c), "redacted") {
		t.Fatalf("redacted form should still show the username: %s", c)
	}
	if _, err := json.Marshal(c); err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(c); strings.Contains(string(b), knownPassword) {
		t.Fatalf("JSON of a credential shows the password: %s", b)
	}
}

func TestKeychainAndAuthFile(t *testing.T) {
	a, err := ParseSecret(secret(corev1.SecretTypeDockerConfigJson, map[string]string{".dockerconfigjson": `{"auths":{` +
		`"https://index.docker.io/v1/":{"auth":"` + b64("hub:hubpw") + `"},` +
		`"quay.io":{"auth":"` + b64("q:qpw") + `"},` +
		`"quay.io/team":{"auth":"` + b64("team:teampw") + `"},` +
		`"localhost:5000":{"username":"l","password":"lpw"}}}`}))
	if err != nil {
		t.Fatal(err)
	}
	kc := a.Keychain()
	for _, tt := range []struct{ ref, user, pass string }{
		{"busybox", "hub", "hubpw"}, // ggcr says index.docker.io/library/busybox
		{"quay.io/other/x", "q", "qpw"},
		{"quay.io/team/x", "team", "teampw"},
		{"localhost:5000/xy", "l", "lpw"},
		{"ghcr.io/xy/yz", "", ""},
	} {
		r, err := name.ParseReference(tt.ref)
		if err != nil {
			t.Fatal(err)
		}
		auth, err := authn.Resolve(t.Context(), kc, r.Context())
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := auth.Authorization()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Username != tt.user || cfg.Password != tt.pass {
			t.Errorf("%s: got %q/%q, want %q/%q", tt.ref, cfg.Username, cfg.Password, tt.user, tt.pass)
		}
	}
	// The registry itself (no repository) falls back to the host key.
	reg, _ := name.NewRegistry("quay.io")
	auth, _ := kc.Resolve(reg)
	if cfg, _ := auth.Authorization(); cfg.Username != "q" {
		t.Errorf("registry resource: got %q", cfg.Username)
	}

	file, err := a.AuthFile()
	if err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		Auths map[string]struct {
			Auth string `json:"auth"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(file, &parsed); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"docker.io": "hub:hubpw", "quay.io": "q:qpw", "quay.io/team": "team:teampw", "localhost:5000": "l:lpw"}
	if len(parsed.Auths) != len(want) {
		t.Fatalf("auth file has %d entries: %s", len(parsed.Auths), file)
	}
	for k, v := range want {
		if got := parsed.Auths[k].Auth; got != b64(v) {
			t.Errorf("auth file %s = %q, want base64 of %q", k, got, v)
		}
	}
	again, _ := a.AuthFile()
	if string(again) != string(file) {
		t.Error("auth file is not deterministic")
	}
}

func TestParseAuthFileDetectsForm(t *testing.T) {
	for _, data := range []string{
		`{"auths":{"quay.io":{"auth":"` + b64("u:p") + `"}}}`,
		`{"quay.io":{"auth":"` + b64("u:p") + `"}}`,
	} {
		a, err := ParseAuthFile("/tmp/auth.json", []byte(data))
		if err != nil {
			t.Fatal(err)
		}
		if c, ok := a.Lookup("quay.io"); !ok || c.Password() != "p" {
			t.Errorf("%s: lookup failed", data)
		}
	}
	_, err := ParseAuthFile("/tmp/auth.json", []byte(`nope`))
	if !errors.Is(err, ErrSecretMalformedJSON) || !strings.Contains(err.Error(), "/tmp/auth.json") {
		t.Fatalf("got %v", err)
	}
}

// A Secret's type is named when Kubernetes defines it, and not repeated otherwise: the field is
// its owner's to fill.
func TestWrongSecretTypeIsNotRepeated(t *testing.T) {
	for typ, want := range map[corev1.SecretType]string{
		corev1.SecretTypeOpaque:               "type Opaque",
		"":                                    "no type (Opaque)",
		"example.com/Pw73656372657421Z-token": "a type that is not a registry secret's",
	} {
		_, err := ParseSecret(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "pull"}, Type: typ,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)}})
		if !errors.Is(err, ErrSecretWrongType) || !strings.Contains(err.Error(), want) || (typ != "" && !strings.Contains(want, string(typ)) && strings.Contains(err.Error(), string(typ))) {
			t.Errorf("type %q: %v, want ErrSecretWrongType saying %q and nothing else of the type", typ, err, want)
		}
	}
}
