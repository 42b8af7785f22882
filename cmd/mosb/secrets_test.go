package main

import (
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mosb-dev/mosb/pipeline"
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

// Credentials given as files are refused with the reasons the same content gets as a Secret in the
// cluster (SecretNotFound, InvalidSecret), naming the flag and the file, exit 2.
func TestCredentialFileRefusalsCarryAReason(t *testing.T) {
	f := renderFixture(t)
	mosc := f.mosc(t, "creds", renderTarget, map[string]string{"": "RUN true"})
	dir := t.TempDir()
	files := map[string]string{
		"bad-base64.json": `{"auths": {"registry.example.com": {"auth": "!!not base64"}}}`,
		"configmap.yaml":  "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
		"garbage.txt":     "this is not a credential\n",
	}
	for name, content := range files {
		write(t, filepath.Join(dir, name), content)
	}
	for _, tc := range []struct {
		flag, file, reason string
	}{
		{"--pull-secret", "missing.json", pipeline.ReasonSecretNotFound},
		{"--push-secret", "bad-base64.json", pipeline.ReasonInvalidSecret},
		{"--pull-secret", "configmap.yaml", pipeline.ReasonInvalidSecret},
		{"--authfile", "garbage.txt", pipeline.ReasonInvalidSecret},
	} {
		t.Run(tc.flag+" "+tc.file, func(t *testing.T) {
			args := []string{"render", "-f", mosc, tc.flag, filepath.Join(dir, tc.file)}
			switch tc.flag {
			case "--pull-secret":
				args = append(args, "--push-secret", f.authFile)
			case "--push-secret":
				args = append(args, "--pull-secret", f.authFile)
			}
			res := runCLI(t, args...)
			if want := tc.reason + ": " + tc.flag; res.code != exitInvalidInput || !strings.Contains(res.stderr, want) {
				t.Errorf("exit %d, want %d saying %q:\n%s", res.code, exitInvalidInput, want, res.stderr)
			}
		})
	}
}
