package registry

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func FuzzParsePullspec(f *testing.F) {
	for _, s := range []string{
		"quay.io/openshift/os@" + dgA, "localhost:5000/os:latest", "quay.io/os:4.16@" + dgA,
		"busybox@" + dgA, "quay.io//os:x", "Reg.Example.com:1/a_b/c-d:_t", "quay.io/os@sha256:" + strings.ToUpper(hexA),
		"a/b:c", "a:1/b@sha256:", "\x00/\xff:x", "ü.io/os:x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkForm(t, s, "digest", ParseDigestPullspec, celAcceptsDigest)
		checkForm(t, s, "tag", ParseTagPushspec, celAcceptsTag)
		if ref, err := ParsePullspec(s); err == nil && ref.String() != s {
			t.Fatalf("ParsePullspec(%q) round-trips to %q", s, ref.String())
		}
		_ = WithDigest(s, dgA)
		_, _ = RegistryHost(s)
	})
}

func checkForm(t *testing.T, s, form string, parse func(string) (Reference, error), cel func(string) bool) {
	t.Helper()
	ref, err := parse(s)
	if (err == nil) != cel(s) {
		t.Fatalf("%s form of %q: package err=%v, CRD rules accept=%v", form, s, err, cel(s))
	}
	if err != nil {
		var pe *PullspecError
		if !errors.As(err, &pe) || pe.Rule == RuleMalformed {
			t.Fatalf("%s form of %q: error without a specific rule: %v", form, s, err)
		}
		return
	}
	if ref.String() != s {
		t.Fatalf("%s form of %q round-trips to %q", form, s, ref.String())
	}
	if _, err := parse(ref.String()); err != nil {
		t.Fatalf("%s form: accepted %q but not its own rendering: %v", form, s, err)
	}
}

// fuzzSecret builds a secret around a password that cannot occur by chance in our messages.
type fuzzSecret struct {
	host, user, password string
}

func (fs fuzzSecret) secrets() []string {
	auth := base64.StdEncoding.EncodeToString([]byte(fs.user + ":" + fs.password))
	return []string{fs.password, auth, base64.StdEncoding.EncodeToString([]byte(fs.password))}
}

func (fs fuzzSecret) data(mode uint8) ([]byte, corev1.SecretType) {
	enc := func(v any) []byte { b, _ := json.Marshal(v); return b }
	entry := map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(fs.user + ":" + fs.password))}
	switch mode % 7 {
	case 0:
		return enc(map[string]any{"auths": map[string]any{fs.host: entry}}), corev1.SecretTypeDockerConfigJson
	case 1:
		return enc(map[string]any{"auths": map[string]any{fs.host: map[string]string{"username": fs.user, "password": fs.password}}}), corev1.SecretTypeDockerConfigJson
	case 2:
		return enc(map[string]any{fs.host: entry}), corev1.SecretTypeDockercfg
	case 3: // no colon
		return enc(map[string]any{"auths": map[string]any{fs.host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(fs.user + fs.password))}}}), corev1.SecretTypeDockerConfigJson
	case 4: // not base64: the raw password where base64 belongs
		return enc(map[string]any{"auths": map[string]any{fs.host: map[string]string{"auth": "*" + fs.password}}}), corev1.SecretTypeDockerConfigJson
	case 5: // the legacy form in a dockerconfigjson secret
		return enc(map[string]any{fs.host: entry}), corev1.SecretTypeDockerConfigJson
	default: // wrong type
		return enc(map[string]any{"auths": map[string]any{fs.host: entry}}), corev1.SecretTypeOpaque
	}
}

func mangle(data []byte, m uint16) []byte {
	if m == 0 || len(data) == 0 {
		return data
	}
	out := append([]byte(nil), data...)
	i := int(m>>2) % len(out)
	switch m & 3 {
	case 1:
		return out[:i]
	case 2:
		out[i] ^= 0x20
	case 3:
		out[i] = '"'
	}
	return out
}

func FuzzParseSecret(f *testing.F) {
	f.Add("quay.io", "robot", "s3cret", uint8(0), uint16(0), []byte(`{"auths":{}}`))
	f.Add("https://index.docker.io/v1/", "me", "pass:word", uint8(1), uint16(9), []byte(`{"a":{"auth":"!!"}}`))
	f.Add("registry:5000", "u", "12345678", uint8(4), uint16(30), []byte(`[`))
	f.Add("quay.io/ns", "", "x", uint8(3), uint16(7), []byte(`{"auths":{"q":{"auth":1}}}`))
	f.Fuzz(func(t *testing.T, host, user, pw string, mode uint8, m uint16, raw []byte) {
		// Arbitrary bytes: only "never panics".
		_, _ = ParseAuthFile("fuzz", raw)
		_, _ = ParseSecret(&corev1.Secret{Type: corev1.SecretTypeDockercfg, Data: map[string][]byte{corev1.DockerConfigKey: raw}})

		fs := fuzzSecret{host: host, user: user, password: "Pw" + hex.EncodeToString([]byte(pw)) + "Z"}
		data, typ := fs.data(mode)
		data = mangle(data, m)
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "push"}, Type: typ}
		sec.Data = map[string][]byte{corev1.DockerConfigJsonKey: data, corev1.DockerConfigKey: data}
		for _, parse := range []func() (Auths, error){
			func() (Auths, error) { return ParseSecret(sec) },
			func() (Auths, error) { return ParseAuthFile("file", data) },
		} {
			auths, err := parse()
			for _, secret := range fs.secrets() {
				if strings.Contains(host, secret) || strings.Contains(user, secret) {
					continue // the input put the secret where names go; nothing to assert
				}
				if err != nil && strings.Contains(err.Error(), secret) {
					t.Fatalf("error leaks a secret: %v", err)
				}
				if err == nil {
					shown := fmt.Sprintf("%v %+v %#v %s %q", auths, auths, auths, auths, auths)
					for _, k := range auths.Registries() {
						c, _ := auths.Lookup(k)
						shown += fmt.Sprintf("%v %+v %#v %s", c, c, c, c)
					}
					if strings.Contains(shown, secret) {
						t.Fatalf("formatting leaks a secret: %s", shown)
					}
				}
			}
			if err != nil {
				var se *SecretError
				if !errors.As(err, &se) {
					t.Fatalf("error is not a *SecretError: %T %v", err, err)
				}
				continue
			}
			// Anything accepted survives the trip through the auth file written for buildah.
			file, err := auths.AuthFile()
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseAuthFile("authfile", file)
			if err != nil {
				t.Fatalf("auth file does not parse back: %v", err)
			}
			for _, k := range auths.Registries() {
				a, _ := auths.Lookup(k)
				b, ok := back.Lookup(k)
				if !ok || a.Username != b.Username || a.Password() != b.Password() {
					t.Fatalf("registry %s lost in the auth file round trip", k)
				}
			}
		}
	})
}
