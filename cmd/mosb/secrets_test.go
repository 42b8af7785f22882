package main

import (
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"
)

// No output of mosb quotes a secret-bearing file, whichever flag it is given to and however it is
// malformed: an auth file or a Secret manifest passed where a manifest, a MachineConfig or the
// cluster configuration belongs, or given as credentials with a syntax error after the secret.
func TestNoOutputQuotesASecret(t *testing.T) {
	f := renderFixture(t)
	const password = "hunter2-S3CR3T-do-not-print"
	auth := base64.StdEncoding.EncodeToString([]byte("builder:" + password))
	secretsIn := map[string]string{
		"auth file":                 `{"auths": {"registry.example.com": {"auth": "` + auth + `"}}}`,
		"auth file (YAML-looking)":  "auths:\n  registry.example.com:\n    auth: " + auth + "\n",
		"legacy auth file":          `{"registry.example.com": {"auth": "` + auth + `"}}`,
		"auth file cut short":       `{"auths": {"registry.example.com": {"auth": "` + auth + `"}`,
		"auth file with a password": `{"auths": {"registry.example.com": {"username": "builder", "password": "` + password + `"}}}`,
		"Secret manifest": `apiVersion: v1
kind: Secret
metadata:
  name: push-secret
type: kubernetes.io/dockerconfigjson
stringData:
  .dockerconfigjson: '{"auths": {"registry.example.com": {"auth": "` + auth + `"}}}'
`,
		"Secret manifest with an unknown field": `apiVersion: v1
kind: Secret
metadata:
  name: push-secret
type: kubernetes.io/dockerconfigjson
strinData:
  .dockerconfigjson: '{"auths": {"registry.example.com": {"auth": "` + auth + `"}}}'
`,
		"a password as a YAML value of the wrong type": "apiVersion: v1\nkind: Secret\nmetadata: `" + password + "`\n",
		"a bare password": password + "\n",
	}
	mosc := f.mosc(t, "secrets", renderTarget, map[string]string{"": "RUN true"})
	for what, content := range secretsIn {
		file := filepath.Join(t.TempDir(), "input.yaml")
		write(t, file, content)
		clusterDir := t.TempDir()
		write(t, filepath.Join(clusterDir, "pull-secret.yaml"), content)
		for flag, args := range map[string][]string{
			"-f":               {"-f", file, "--authfile", f.authFile},
			"--machineconfig":  {"-f", mosc, "--machineconfig", file, "--authfile", f.authFile},
			"--cluster-config": {"-f", mosc, "--cluster-config", clusterDir, "--authfile", f.authFile},
			"--authfile":       {"-f", mosc, "--authfile", file},
			"--pull-secret":    {"-f", mosc, "--pull-secret", file, "--push-secret", f.authFile},
			"--push-secret":    {"-f", mosc, "--pull-secret", f.authFile, "--push-secret", file},
		} {
			for _, command := range []string{"render", "build"} {
				argv := append([]string{command}, args...)
				if command == "build" {
					// Never gets as far as pulling: the registry of the target does not exist.
					argv = append(argv, "--root", t.TempDir())
				}
				res := runCLI(t, argv...)
				out := res.stdout + res.stderr
				for _, secret := range []string{password, auth, auth[:16]} {
					if strings.Contains(out, secret) {
						t.Errorf("%s given to mosb %s %s: the output quotes the secret:\n%s", what, command, flag, out)
						break
					}
				}
			}
		}
	}
}
