package main

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/test/harness"
)

// Each fuzz target gives arbitrary bytes to one decoder of the files `mosb build` and `mosb render`
// read, through prepare as the commands call it: nothing may panic; no error of the decoders (the
// files read, parsed, checked against their CRD) may quote a value of the input; and, for a
// credentials file, no error at all. "$S" in a seed becomes a secret-looking marker; the fuzzer
// moves it around. Names are what messages must name (an object's name and kind, a field, a
// registry host in an auth file), so where the marker became part of a key or of a name, only "no
// panic" is asserted. (What the pipeline then refuses in a MachineOSConfig or a cluster's
// configuration names the offending pullspec or registry, as a condition does: those are not
// secrets.)

const fuzzBase = "registry.example.com/os/base@sha256:0000000000000000000000000000000000000000000000000000000000000000"

func FuzzMachineOSConfigFile(f *testing.F) {
	f.Add(harness.BuildMachineOSConfig("fuzz", fuzzBase, "r.example.com/os/x:1", "4.16.0", map[string]string{"amd64": "RUN echo $S"}), "z")
	f.Add([]byte("apiVersion: machineconfiguration.openshift.io/v1alpha1\nkind: MachineOSConfig\nmetadata:\n  name: w\nspec:\n  machineConfigPool:\n    name: worker\n  buildInputs:\n    imageBuilder:\n      imageBuilderType: $S\n"), "x")
	f.Add([]byte("apiVersion: machineconfiguration.openshift.io/v1\nkind: MachineOSConfig\nmetadata:\n  name: worker\nspec:\n  machineConfigPool:\n    name: worker\n  imageBuilder:\n    imageBuilderType: Job\n  renderedImagePushSecret:\n    name: p\n  renderedImagePushSpec: r.example.com/os/w:1\n  containerFile:\n  - containerfileArch: NoArch\n    content: RUN echo $S\n"), "")
	f.Add([]byte(`{"auths": {"registry.example.com": {"auth": "$S"}}}`), "dXNlcjpwYXNz")
	fuzzInputFile(f, false, func(file, _, _ string) fileInputs { return fileInputs{machineOSConfig: file} })
}

func FuzzMachineConfigFile(f *testing.F) {
	f.Add([]byte("apiVersion: machineconfiguration.openshift.io/v1\nkind: MachineConfig\nmetadata:\n  name: rendered-worker-1\nspec:\n  config:\n    ignition:\n      version: 3.4.0\n    passwd:\n      users:\n      - name: core\n        passwordHash: $S\n"), "")
	f.Add([]byte("apiVersion: machineconfiguration.openshift.io/v1\nkind: MachineConfig\nmetadata:\n  name: m\nspec:\n  osImageURL: $S\n  kernelArguments: [a]\n"), "k")
	f.Add([]byte("apiVersion: v1\nkind: Secret\nmetadata: `$S`\n"), "y")
	fuzzInputFile(f, false, func(file, _, valid string) fileInputs {
		return fileInputs{machineOSConfig: valid, machineConfig: file}
	})
}

func FuzzClusterConfigFolder(f *testing.F) {
	f.Add([]byte("apiVersion: config.openshift.io/v1\nkind: Image\nmetadata:\n  name: cluster\nspec:\n  registrySources:\n    insecureRegistries: [\"$S\"]\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"), "")
	f.Add([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: machine-config-osimageurl\ndata:\n  baseOSContainerImage: $S\n"), "b")
	f.Add([]byte("apiVersion: config.openshift.io/v1\nkind: ImageDigestMirrorSet\nmetadata:\n  name: m\nspec:\n  imageDigestMirrors:\n  - source: a.example.com/x\n    mirrors: [\"$S\"]\n"), "m")
	f.Add([]byte("auths:\n  r:\n    password: $S\n"), "hunter2")
	fuzzInputFile(f, false, func(_, cluster, valid string) fileInputs {
		return fileInputs{machineOSConfig: valid, clusterConfig: cluster}
	})
}

func FuzzCredentialsFile(f *testing.F) {
	f.Add([]byte(`{"auths": {"registry.example.com": {"auth": "$S"}}}`), "dXNlcjpwYXNz")
	f.Add([]byte("auths:\n  r:\n    password: $S\n"), "hunter2")
	f.Add([]byte(`{"registry.example.com": {"auth": "$S", "email": "e"}}`), "old")
	f.Add([]byte("apiVersion: v1\nkind: Secret\nmetadata:\n  name: pull\ntype: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{\"auths\":{\"r\":{\"auth\":\"$S\"}}}'\n"), "x")
	f.Add([]byte("apiVersion: v1\nkind: Secret\nmetadata:\n  name: pull\ntype: kubernetes.io/dockercfg\ndata:\n  .dockercfg: $S\n"), "x")
	fuzzInputFile(f, true, func(file, _, valid string) fileInputs {
		return fileInputs{machineOSConfig: valid, pullSecret: file, pushSecret: file}
	})
}

// fuzzInputFile runs load and then pipeline.Prepare (prepare's two steps) over the fuzzed bytes, written as a file and as a
// --cluster-config folder, given to the flags inputs sets; secret: every error is checked, not
// only load's.
func fuzzInputFile(f *testing.F, secret bool, inputs func(file, cluster, valid string) fileInputs) {
	dir := f.TempDir()
	valid := filepath.Join(dir, "valid-mosc.yaml")
	if err := os.WriteFile(valid, harness.BuildMachineOSConfig("fuzz", fuzzBase, "registry.example.com/os/fuzz:latest", "4.16.0", map[string]string{"": "RUN true"}), 0o600); err != nil {
		f.Fatal(err)
	}
	d, err := newDecoder()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte, value string) {
		marker := "Pw" + hex.EncodeToString([]byte(value)) + "Z"
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
		quotes := func(err error) bool {
			return err != nil && strings.Contains(err.Error(), marker) && !inIdentifier(data, marker)
		}
		in := inputs(file, cluster, valid)
		in.decoder = d
		loaded, err := in.load(false)
		if quotes(err) {
			t.Fatalf("a decoding error quotes a value of the input: %v", err)
		}
		if err != nil {
			return
		}
		// What prepare does after load.
		if _, err := pipeline.Prepare(loaded); secret && quotes(err) {
			t.Fatalf("an error about a credentials file quotes a value of it: %v", err)
		}
	})
}

// inIdentifier says whether marker is part of a key, or of the value of a "name", "kind" or
// "apiVersion" key (a message must say which kind it does not know), in any document of data that
// parses (an error about one that does not may not quote it either).
func inIdentifier(data []byte, marker string) bool {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var doc any
		if err := dec.Decode(&doc); err != nil {
			return false
		}
		if identifierHolds(doc, marker) {
			return true
		}
	}
}

func identifierHolds(v any, marker string) bool {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if strings.Contains(k, marker) {
				return true
			}
			// Kubernetes' decoder matches these keys whatever their case.
			isID := strings.EqualFold(k, "name") || strings.EqualFold(k, "kind") || strings.EqualFold(k, "apiVersion")
			if s, ok := x.(string); ok && isID && strings.Contains(s, marker) {
				return true
			}
			if identifierHolds(x, marker) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if identifierHolds(x, marker) {
				return true
			}
		}
	}
	return false
}
