package registry

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

const redacted = "<redacted>"

// Credential is a username and password for one registry.
//
// The password sits behind a pointer on purpose: fmt prints nested pointers as addresses when it
// walks a value by reflection (for instance when a Credential is an unexported field of some
// caller's struct printed with %+v), so the secret cannot leak through fmt even where the
// Format method below is bypassed.
type Credential struct {
	Username string
	password *string
}

// NewCredential makes a credential.
func NewCredential(username, password string) Credential {
	return Credential{Username: username, password: &password}
}

// Password returns the secret.
func (c Credential) Password() string {
	if c.password == nil {
		return ""
	}
	return *c.password
}

// String never shows the password.
func (c Credential) String() string {
	return fmt.Sprintf("Credential{Username: %q, Password: %s}", c.Username, redacted)
}

// GoString never shows the password.
func (c Credential) GoString() string { return "registry." + c.String() }

// Format makes every fmt verb (%v, %+v, %#v, %s, %q, %x…) print the redacted form.
func (c Credential) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = fmt.Fprint(f, c.GoString())
		return
	}
	_, _ = fmt.Fprint(f, c.String())
}

// Auths is the one canonical form of registry credentials, whatever secret format they came
// from: registry key → credential. Keys are host[:port] or host[:port]/path (a credential scoped
// to a namespace or repository, as containers-auth.json allows), with the host in lower case and
// docker.io's aliases folded into "docker.io".
type Auths struct {
	entries map[string]Credential
}

// NewAuths builds Auths from registry → credential, normalising the keys like a secret's keys.
func NewAuths(byRegistry map[string]Credential) (Auths, error) {
	a := Auths{entries: map[string]Credential{}}
	canonical := map[string]bool{}
	for _, k := range slices.Sorted(maps.Keys(byRegistry)) {
		nk, err := normalizeAuthKey(k)
		if err != nil {
			return Auths{}, fmt.Errorf("registry key %s: %w", quoteShort(k), err)
		}
		a.add(k, nk, byRegistry[k], canonical)
	}
	return a, nil
}

// add records a credential under its normalised key. Two keys can fold into one
// ("https://quay.io" and "quay.io"); the key already written in canonical form wins, otherwise
// the first in sorted order does, so the outcome never depends on map iteration.
func (a Auths) add(key, normalized string, c Credential, canonical map[string]bool) {
	isCanonical := key == normalized
	if _, seen := a.entries[normalized]; seen && (canonical[normalized] || !isCanonical) {
		return
	}
	a.entries[normalized] = c
	canonical[normalized] = isCanonical
}

// Len is the number of registries with credentials.
func (a Auths) Len() int { return len(a.entries) }

// Registries lists the registry keys, sorted.
func (a Auths) Registries() []string { return slices.Sorted(maps.Keys(a.entries)) }

// Lookup finds the credential for a registry host or a repository name (host/path): the most
// specific key wins (host/ns/repo, then host/ns, then host), as in containers-auth.json.
func (a Auths) Lookup(target string) (Credential, bool) {
	t, err := normalizeAuthKey(target)
	if err != nil {
		return Credential{}, false
	}
	for {
		if c, ok := a.entries[t]; ok {
			return c, true
		}
		i := strings.LastIndexByte(t, '/')
		if i < 0 {
			return Credential{}, false
		}
		t = t[:i]
	}
}

// String never shows passwords.
func (a Auths) String() string {
	parts := make([]string, 0, len(a.entries))
	for _, k := range a.Registries() {
		parts = append(parts, fmt.Sprintf("%s: %s", k, a.entries[k]))
	}
	return "Auths{" + strings.Join(parts, ", ") + "}"
}

// GoString never shows passwords.
func (a Auths) GoString() string { return "registry." + a.String() }

// Format makes every fmt verb print the redacted form.
func (a Auths) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = fmt.Fprint(f, a.GoString())
		return
	}
	_, _ = fmt.Fprint(f, a.String())
}

// Keychain presents these credentials to go-containerregistry. Registries without an entry are
// accessed anonymously.
func (a Auths) Keychain() authn.Keychain { return keychain{auths: a} }

type keychain struct{ auths Auths }

func (k keychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	key := target.RegistryStr()
	// A repository lets a namespace-scoped key win over the host's key.
	if repo, ok := target.(name.Repository); ok {
		key = repo.RegistryStr() + "/" + repo.RepositoryStr()
	}
	c, ok := k.auths.Lookup(key)
	if !ok {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{Username: c.Username, Password: c.Password()}), nil
}

// AuthFile returns a containers-auth.json ({"auths":{"host":{"auth":"base64(user:pass)"}}}) for
// buildah's --authfile / SystemContext.AuthFilePath. The bytes hold secrets: write them with
// mode 0600 and never log them. The output is deterministic (keys sorted).
func (a Auths) AuthFile() ([]byte, error) {
	type entry struct {
		Auth string `json:"auth"`
	}
	file := struct {
		Auths map[string]entry `json:"auths"`
	}{Auths: map[string]entry{}}
	for k, c := range a.entries {
		file.Auths[k] = entry{Auth: base64.StdEncoding.EncodeToString([]byte(c.Username + ":" + c.Password()))}
	}
	b, err := json.MarshalIndent(file, "", "  ")
	if err != nil {
		// Unreachable for string maps; the message carries no secret because it is ours.
		return nil, fmt.Errorf("encoding the auth file failed")
	}
	return append(b, '\n'), nil
}

// dockerHubAliases are the names under which Docker Hub credentials are stored; containers and
// go-containerregistry each use a different one, so they all fold into one key.
var dockerHubAliases = map[string]bool{
	"docker.io": true, "index.docker.io": true, "registry-1.docker.io": true, "registry.hub.docker.com": true,
}

// normalizeAuthKey turns the many spellings of a registry key in docker config files
// ("https://index.docker.io/v1/", "quay.io/", "HTTP://Registry:5000") into host[:port][/path].
func normalizeAuthKey(key string) (string, error) {
	k := strings.TrimSpace(key)
	lower := strings.ToLower(k)
	hadScheme := false
	for _, scheme := range []string{"https://", "http://"} {
		if strings.HasPrefix(lower, scheme) {
			k = k[len(scheme):]
			hadScheme = true
			break
		}
	}
	host, path, _ := strings.Cut(k, "/")
	path = strings.Trim(path, "/")
	// With a scheme the key is a URL and its path is an API path (/v1/, /v2/), not a namespace.
	if hadScheme || path == "v1" || path == "v2" {
		path = ""
	}
	host = strings.ToLower(host)
	if dockerHubAliases[host] {
		host = "docker.io"
	}
	hostname, port, hasPort := strings.Cut(host, ":")
	if !hostRE.MatchString(hostname) || (hasPort && !portRE.MatchString(":"+port)) {
		return "", fmt.Errorf("not a registry host[:port][/path]")
	}
	if path == "" {
		return host, nil
	}
	for _, c := range strings.Split(path, "/") {
		if !pathComponentRE.MatchString(c) {
			return "", fmt.Errorf("not a registry host[:port][/path]")
		}
	}
	return host + "/" + path, nil
}
