package main

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/serializer"

	"github.com/mosb-dev/mosb/test/harness"
)

// FuzzInputFiles gives arbitrary bytes to every decoder of the files mosb build and render read:
// the MachineOSConfig (-f), the MachineConfig (--machineconfig), a --cluster-config folder and a
// credentials file. None panics, and no decoding error quotes the input ($S in a seed becomes a
// secret-looking marker that no such message may hold).
func FuzzInputFiles(f *testing.F) {
	dir := f.TempDir()
	valid := filepath.Join(dir, "valid-mosc.yaml")
	if err := os.WriteFile(valid, harness.BuildMachineOSConfig("fuzz", "registry.example.com/os/base@sha256:"+strings.Repeat("0", 64), "registry.example.com/os/fuzz:latest", "4.16.0", map[string]string{"": "RUN true"}), 0o600); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"auths": {"registry.example.com": {"auth": "$S"}}}`), "dXNlcjpwYXNz")
	f.Add([]byte("auths:\n  r:\n    password: $S\n"), "hunter2")
	f.Add([]byte("apiVersion: v1\nkind: Secret\nmetadata:\n  name: pull\ntype: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{\"auths\":{\"r\":{\"auth\":\"$S\"}}}'\n"), "x")
	f.Add([]byte("apiVersion: v1\nkind: Secret\nmetadata: `$S`\n"), "y")
	f.Add(harness.BuildMachineOSConfig("fuzz", "registry.example.com/os/base@sha256:"+strings.Repeat("1", 64), "r.example.com/os/x:1", "4.16.0", map[string]string{"amd64": "RUN echo $S"}), "z")
	f.Add([]byte("apiVersion: machineconfiguration.openshift.io/v1\nkind: MachineOSConfig\nmetadata:\n  name: worker\nspec:\n  machineConfigPool:\n    name: worker\n  imageBuilder:\n    imageBuilderType: Job\n  renderedImagePushSecret:\n    name: p\n  renderedImagePushSpec: r.example.com/os/w:1\n  containerFile:\n  - containerfileArch: NoArch\n    content: RUN true\n"), "")
	f.Add([]byte("apiVersion: machineconfiguration.openshift.io/v1\nkind: MachineConfig\nmetadata:\n  name: rendered-worker-1\nspec:\n  config:\n    ignition:\n      version: 3.4.0\n"), "")
	f.Add([]byte("apiVersion: config.openshift.io/v1\nkind: Image\nmetadata:\n  name: cluster\nspec:\n  registrySources:\n    insecureRegistries: [\"$S\"]\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"), "")
	f.Fuzz(func(t *testing.T, raw []byte, secret string) {
		marker := "Pw" + hex.EncodeToString([]byte(secret)) + "Z"
		data := bytes.ReplaceAll(raw, []byte("$S"), []byte(marker))
		work := t.TempDir()
		file := filepath.Join(work, "input.yaml")
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cluster := filepath.Join(work, "cluster")
		if err := os.Mkdir(cluster, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cluster, "objects.yaml"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		scheme, err := newScheme()
		if err != nil {
			t.Fatal(err)
		}
		codecs := serializer.NewCodecFactory(scheme, serializer.EnableStrict)
		if _, err := decodeFile(codecs, file); err != nil && strings.Contains(err.Error(), marker) {
			t.Fatalf("a decoding error quotes the input: %v", err)
		}
		// Credentials errors may name a registry (a key of the file), where the fuzzer may put the
		// marker too: registry.FuzzParseSecret checks their secrets with that in mind.
		_, _ = secretFromFile(codecs, "--pull-secret", file, "pull", "ns")
		for _, in := range []fileInputs{
			{machineOSConfig: file},
			{machineOSConfig: valid, machineConfig: file},
			{machineOSConfig: valid, clusterConfig: cluster},
			{machineOSConfig: valid, pullSecret: file, pushSecret: file},
		} {
			_, _ = prepare(&in, false)
		}
	})
}
