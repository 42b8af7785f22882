package harness

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// MosbDeployment is mosb installed in a KubeletCluster the way a user installs it: the mosb image
// (built by `mosb build`) in the node's containerd, and `kubectl apply -k` of deploy/local with
// this cluster's specifics layered on top.
type MosbDeployment struct {
	// Namespace and Name are the controller Deployment's.
	Namespace, Name string
	// Image is the mosb image's tag reference: the controller runs it, and so do build pods.
	Image string
	// Kustomization is the directory `kubectl apply -k` applies.
	Kustomization string
}

// DeployMosb builds the mosb image from mosbBin, pushes it to reg, imports it into the node's
// containerd, applies deploy/local over it and waits for the controller to be ready.
func (c *KubeletCluster) DeployMosb(t T, reg *Registry, mosbBin string) *MosbDeployment {
	t.Helper()
	image, _ := BuildMosbImage(t, reg, mosbBin, "dev")
	c.ImportImage(t, image, func(path string) { SaveImageArchive(t, reg, image, path) })
	ref, err := name.NewTag(image)
	if err != nil {
		t.Fatal(err)
	}
	// The API server's address: without kube-proxy the in-cluster service address leads nowhere,
	// and on the host's network 127.0.0.1 is the API server's own.
	server, err := url.Parse(c.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	host, port := server.Hostname(), server.Port()
	d := &MosbDeployment{Namespace: "mosb-system", Name: "mosb-controller", Image: image, Kustomization: t.TempDir()}
	// kustomize takes no absolute path to a base.
	overlay, err := filepath.Rel(d.Kustomization, filepath.Join(RepoRoot(), "deploy", "local"))
	if err != nil {
		t.Fatal(err)
	}
	// On the node's network the controller's ports are the host's: deploy/base's 8080 and 8081
	// may be taken on a developer's machine or a CI runner, so free ones are used (the later
	// flags win).
	metricsPort, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	probesPort, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	kustomization := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- %s
images:
- name: mosb
  newName: %s
  newTag: %s
patches:
- target: {kind: Deployment, name: %s}
  patch: |-
    - op: add
      path: /spec/template/spec/containers/0/env/-
      value: {name: KUBERNETES_SERVICE_HOST, value: %q}
    - op: add
      path: /spec/template/spec/containers/0/env/-
      value: {name: KUBERNETES_SERVICE_PORT, value: %q}
    - op: add
      path: /spec/template/spec/containers/0/args/-
      value: --metrics-bind-address=:%d
    - op: add
      path: /spec/template/spec/containers/0/args/-
      value: --health-probe-bind-address=:%d
    - op: add
      path: /spec/template/spec/containers/0/args/-
      value: --node-store=%s
    - op: replace
      path: /spec/template/spec/containers/0/ports/0
      value: {name: metrics, containerPort: %d}
    - op: replace
      path: /spec/template/spec/containers/0/ports/1
      value: {name: probes, containerPort: %d}
`, overlay, ref.Context().Name(), ref.TagStr(), d.Name, host, port, metricsPort, probesPort, c.NodeStore(), metricsPort, probesPort)
	if err := os.WriteFile(filepath.Join(d.Kustomization, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Apply(t, d)
	return d
}

// NodeStore is the node image store of this cluster's node: under the cluster's directory, so that
// it goes with the cluster rather than stay in the host's /var/lib/mosb/store.
func (c *KubeletCluster) NodeStore() string { return filepath.Join(c.Dir, "node-store") }

// Apply applies the deployment (`kubectl apply -k`) and waits until the controller is ready.
func (c *KubeletCluster) Apply(t T, d *MosbDeployment) {
	t.Helper()
	out, err := c.Kubectl("apply", "-k", d.Kustomization)
	if err != nil {
		t.Fatal(err)
	}
	var applied []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		// kubectl warns about objects the harness created before (namespaces, CRDs): noise.
		if !strings.HasPrefix(line, "Warning: ") {
			applied = append(applied, line)
		}
	}
	t.Logf("kubectl apply -k deploy/local:\n%s", strings.Join(applied, "\n"))
	if _, err := c.Kubectl("-n", d.Namespace, "rollout", "status", "deployment/"+d.Name, "--timeout=3m"); err != nil {
		pods, _ := c.Kubectl("-n", d.Namespace, "describe", "pods")
		logs, _ := c.Kubectl("-n", d.Namespace, "logs", "deployment/"+d.Name, "--tail=40")
		t.Fatalf("%v\n%s\ncontroller log:\n%s", err, pods, logs)
	}
}
