package registry

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// The ways a pull or push secret can be unusable. Every error returned by the Parse* functions
// wraps exactly one of them (test with errors.Is) inside a *SecretError.
var (
	ErrSecretEmpty         = errors.New("secret is empty")
	ErrSecretWrongType     = errors.New("secret has the wrong type")
	ErrSecretMissingKey    = errors.New("secret lacks the data key of its type")
	ErrSecretMalformedJSON = errors.New("secret data is not valid JSON")
	ErrSecretBadBase64     = errors.New("auth field is not valid base64")
	ErrSecretAuthNoColon   = errors.New("auth field has no colon between username and password")
	ErrSecretUsernameColon = errors.New("username contains a colon")
	ErrSecretNoEntries     = errors.New("secret has no registry entries")
	ErrSecretNoCredentials = errors.New("registry entry has no credentials")
	ErrSecretBadRegistry   = errors.New("registry key is not a registry")
)

// SecretError explains why a secret cannot be used. Its message names the secret and the fix and
// never contains a credential: JSON decoder messages are not passed through because they quote
// input (a numeric password would appear in "cannot unmarshal number 1234…").
type SecretError struct {
	// Source is "namespace/name" for a Secret, or what the caller named raw bytes (a file path).
	Source string
	// Registry is the registry key of the faulty entry, when the problem is in one entry.
	Registry string
	// Err is one of the ErrSecret* values.
	Err error
	msg string
}

func (e *SecretError) Error() string {
	if e.Registry != "" {
		return fmt.Sprintf("secret %s, registry %s: %s", e.Source, quoteShort(e.Registry), e.msg)
	}
	return fmt.Sprintf("secret %s: %s", e.Source, e.msg)
}

func (e *SecretError) Unwrap() error { return e.Err }

const recreateHint = "recreate it with `kubectl create secret docker-registry NAME --docker-server=HOST --docker-username=USER --docker-password=PASSWORD`"

// ParseSecret reads a pull or push secret of type kubernetes.io/dockerconfigjson (key
// .dockerconfigjson, {"auths":{…}}) or the legacy kubernetes.io/dockercfg (key .dockercfg, the
// bare auths map).
func ParseSecret(s *corev1.Secret) (Auths, error) {
	if s == nil {
		return Auths{}, &SecretError{Source: "<none>", Err: ErrSecretEmpty, msg: "no secret was given; " + recreateHint}
	}
	source := s.Namespace + "/" + s.Name
	var key string
	var parse func(string, []byte) (Auths, error)
	switch s.Type {
	case corev1.SecretTypeDockerConfigJson:
		key, parse = corev1.DockerConfigJsonKey, ParseDockerConfigJSON
	case corev1.SecretTypeDockercfg:
		key, parse = corev1.DockerConfigKey, ParseDockercfg
	default:
		return Auths{}, &SecretError{Source: source, Err: ErrSecretWrongType, msg: fmt.Sprintf(
			"it has %s; a registry secret must have type %s (or the legacy %s): %s, or add --type=%s when creating it from a file",
			secretTypeInWords(s.Type), corev1.SecretTypeDockerConfigJson, corev1.SecretTypeDockercfg, recreateHint, corev1.SecretTypeDockerConfigJson)}
	}
	if len(s.Data) == 0 && len(s.StringData) == 0 {
		return Auths{}, &SecretError{Source: source, Err: ErrSecretEmpty, msg: "it has no data; " + recreateHint}
	}
	data, ok := s.Data[key]
	if !ok {
		// StringData is write-only on a server, but objects built locally (CLI, tests) carry it.
		str, sok := s.StringData[key]
		if !sok {
			return Auths{}, &SecretError{Source: source, Err: ErrSecretMissingKey, msg: fmt.Sprintf(
				"a secret of type %s must hold its config under key %s, but it only has keys %s; %s",
				s.Type, key, strings.Join(secretKeys(s), ", "), recreateHint)}
		}
		data = []byte(str)
	}
	return parse(source, data)
}

// ParseDockerConfigJSON reads {"auths":{"host":{"auth":"…"}}} (a .dockerconfigjson, a docker
// config.json, a containers auth.json). source names the input in errors.
func ParseDockerConfigJSON(source string, data []byte) (Auths, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return Auths{}, &SecretError{Source: source, Err: ErrSecretEmpty, msg: "the config is empty; " + recreateHint}
	}
	var cfg struct {
		Auths map[string]authEntry `json:"auths"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return Auths{}, jsonError(source, err)
	}
	if len(cfg.Auths) == 0 {
		return Auths{}, &SecretError{Source: source, Err: ErrSecretNoEntries, msg: `the config has no registries under "auths"; ` +
			`it must look like {"auths":{"quay.io":{"auth":"<base64 of user:password>"}}} (a legacy .dockercfg has no "auths" level and belongs in a secret of type kubernetes.io/dockercfg)`}
	}
	return authsFromEntries(source, cfg.Auths)
}

// ParseDockercfg reads the legacy .dockercfg form: the bare {"host":{"auth":"…"}} map.
func ParseDockercfg(source string, data []byte) (Auths, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return Auths{}, &SecretError{Source: source, Err: ErrSecretEmpty, msg: "the config is empty; " + recreateHint}
	}
	var entries map[string]authEntry
	if err := json.Unmarshal(data, &entries); err != nil {
		return Auths{}, jsonError(source, err)
	}
	if len(entries) == 0 {
		return Auths{}, &SecretError{Source: source, Err: ErrSecretNoEntries, msg: `the config has no registries; it must look like {"quay.io":{"auth":"<base64 of user:password>"}}`}
	}
	return authsFromEntries(source, entries)
}

// ParseAuthFile reads either form, for the CLI's files: {"auths":…} when that key is present,
// the bare map otherwise.
func ParseAuthFile(source string, data []byte) (Auths, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err == nil {
		if _, ok := top["auths"]; ok {
			return ParseDockerConfigJSON(source, data)
		}
		return ParseDockercfg(source, data)
	}
	return ParseDockerConfigJSON(source, data)
}

type authEntry struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
}

func authsFromEntries(source string, entries map[string]authEntry) (Auths, error) {
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the first error reported must not depend on map order
	a := Auths{entries: map[string]Credential{}}
	canonical := map[string]bool{}
	for _, k := range keys {
		e := entries[k]
		nk, err := normalizeAuthKey(k)
		if err != nil {
			return Auths{}, &SecretError{Source: source, Registry: k, Err: ErrSecretBadRegistry, msg: "the key must be a registry host[:port] or host[:port]/namespace, e.g. quay.io or registry.example.com:5000"}
		}
		c, err := credentialFromEntry(source, k, e)
		if err != nil {
			return Auths{}, err
		}
		a.add(k, nk, c, canonical)
	}
	return a, nil
}

func credentialFromEntry(source, key string, e authEntry) (Credential, error) {
	if auth := strings.TrimSpace(e.Auth); auth != "" {
		raw, err := base64.StdEncoding.DecodeString(auth)
		if err != nil {
			return Credential{}, &SecretError{Source: source, Registry: key, Err: ErrSecretBadBase64,
				msg: `its "auth" field is not valid base64; set it to the base64 of username:password (echo -n 'user:password' | base64 -w0)`}
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return Credential{}, &SecretError{Source: source, Registry: key, Err: ErrSecretAuthNoColon,
				msg: `its "auth" field decodes to text without ':'; it must be the base64 of username:password`}
		}
		return NewCredential(user, pass), nil
	}
	if e.Username != "" || e.Password != "" {
		if strings.Contains(e.Username, ":") {
			// Basic authentication sends user:password; the first ':' ends the user (RFC 7617).
			return Credential{}, &SecretError{Source: source, Registry: key, Err: ErrSecretUsernameColon,
				msg: `its "username" contains ':', which HTTP basic authentication cannot carry (the registry would read the part after it as the password); check the field`}
		}
		return NewCredential(e.Username, e.Password), nil
	}
	msg := `it has neither "auth" nor "username"/"password"; credentials kept by a credential helper (credsStore) are not in the file — log in with --authfile or ` + recreateHint
	if e.IdentityToken != "" {
		msg = `it only has an "identitytoken", which mosb does not support; use a username and password or robot-account token`
	}
	return Credential{}, &SecretError{Source: source, Registry: key, Err: ErrSecretNoCredentials, msg: msg}
}

// secretTypeInWords names a Secret's type when it is one Kubernetes defines; any other text is
// not repeated: a Secret's fields are its owner's to fill, and this message ends up in logs.
func secretTypeInWords(t corev1.SecretType) string {
	switch t {
	case "":
		return "no type (Opaque)"
	case corev1.SecretTypeOpaque, corev1.SecretTypeServiceAccountToken, corev1.SecretTypeBasicAuth,
		corev1.SecretTypeSSHAuth, corev1.SecretTypeTLS, corev1.SecretTypeBootstrapToken:
		return "type " + string(t)
	}
	return "a type that is not a registry secret's"
}

// jsonError describes a decoding failure by position and field only: the decoder's own message
// may quote the input, which can be a credential.
func jsonError(source string, err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	msg := "it is not valid JSON"
	switch {
	case errors.As(err, &syntax):
		msg = fmt.Sprintf("it is not valid JSON (syntax error near byte %d)", syntax.Offset)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "the top level"
		}
		msg = fmt.Sprintf("it is valid JSON but %s should be %s", quoteShort(field), jsonKind(typ.Type.Kind().String()))
	}
	return &SecretError{Source: source, Err: ErrSecretMalformedJSON, msg: msg + `; the expected shape is {"auths":{"quay.io":{"auth":"<base64 of user:password>"}}}; ` + recreateHint}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "map", "struct":
		return "an object"
	case "string":
		return "a string"
	default:
		return "a " + goKind
	}
}

func secretKeys(s *corev1.Secret) []string {
	seen := map[string]bool{}
	for k := range s.Data {
		seen[k] = true
	}
	for k := range s.StringData {
		seen[k] = true
	}
	keys := slices.Sorted(maps.Keys(seen))
	for i, k := range keys {
		keys[i] = quoteShort(k)
	}
	return keys
}
