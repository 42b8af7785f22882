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
	d := &MosbDeployment{Namespace: "mosb-system", Name: "mosb-controller", Image: image, Kustomization: t.TempDir()}
	c.writeKustomization(t, d, fmt.Sprintf("resources:\n- %s\nimages:\n- name: mosb\n  newName: %s\n  newTag: %s\n",
		relativeTo(t, d.Kustomization, filepath.Join(RepoRoot(), "deploy", "local")), ref.Context().Name(), ref.TagStr()))
	c.Apply(t, d)
	return d
}

// DeployRelease installs mosb from release, the one file `make release` writes, as a user would
// (`kubectl apply -f`), with this cluster's specifics on top: the single-node component
// deploy/local uses (no pod network here) and the harness's addresses. image is the image the
// file names; the node pulls it (PullFrom makes its registry reachable).
func (c *KubeletCluster) DeployRelease(t T, release, image string) *MosbDeployment {
	t.Helper()
	d := &MosbDeployment{Namespace: "mosb-system", Name: "mosb-controller", Image: image, Kustomization: t.TempDir()}
	raw, err := os.ReadFile(release)
	if err != nil {
		t.Fatal(err)
	}
	// kustomize reads no file outside its directory.
	mustWrite(t, filepath.Join(d.Kustomization, "mosb.yaml"), raw)
	c.writeKustomization(t, d, fmt.Sprintf("resources:\n- mosb.yaml\ncomponents:\n- %s\n",
		relativeTo(t, d.Kustomization, filepath.Join(RepoRoot(), "deploy", "components", "single-node"))))
	c.Apply(t, d)
	return d
}

// relativeTo is target relative to dir: kustomize takes no absolute path to a base.
func relativeTo(t T, dir, target string) string {
	t.Helper()
	rel, err := filepath.Rel(dir, target)
	if err != nil {
		t.Fatal(err)
	}
	return rel
}

// writeKustomization writes d's kustomization: what it installs (sources: resources, components,
// images) and this cluster's specifics, layered last.
func (c *KubeletCluster) writeKustomization(t T, d *MosbDeployment, sources string) {
	t.Helper()
	// The API server's address: without kube-proxy the in-cluster service address leads nowhere,
	// and on the host's network 127.0.0.1 is the API server's own.
	server, err := url.Parse(c.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	host, port := server.Hostname(), server.Port()
	// On the node's network the controller's ports are the host's: deploy/base's 8080, 8081 and
	// 9443 may be taken on a developer's machine or a CI runner, and a new controller pod of a
	// rolling update could not start beside the old one, so free ones are used (the later flags
	// win; Service mosb-webhook follows the named port).
	metricsPort, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	probesPort, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	webhookPort, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	kustomization := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
%s
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
      value: --webhook-port=%d
    - op: add
      path: /spec/template/spec/containers/0/args/-
      value: --node-store=%s
    - op: replace
      path: /spec/template/spec/containers/0/ports/0
      value: {name: metrics, containerPort: %d}
    - op: replace
      path: /spec/template/spec/containers/0/ports/1
      value: {name: probes, containerPort: %d}
    - op: replace
      path: /spec/template/spec/containers/0/ports/2
      value: {name: webhook, containerPort: %d}
`, strings.TrimSpace(sources), d.Name, host, port, metricsPort, probesPort, webhookPort, c.NodeStore(), metricsPort, probesPort, webhookPort)
	mustWrite(t, filepath.Join(d.Kustomization, "kustomization.yaml"), []byte(kustomization))
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
	t.Logf("kubectl apply -k %s:\n%s", d.Kustomization, strings.Join(applied, "\n"))
	if _, err := c.Kubectl("-n", d.Namespace, "rollout", "status", "deployment/"+d.Name, "--timeout=3m"); err != nil {
		pods, _ := c.Kubectl("-n", d.Namespace, "describe", "pods")
		logs, _ := c.Kubectl("-n", d.Namespace, "logs", "deployment/"+d.Name, "--tail=40")
		t.Fatalf("%v\n%s\ncontroller log:\n%s", err, pods, logs)
	}
}
