package kubelet_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/test/harness"
)

// testRelease does what the README tells a user who installs mosb: `make image` pushes the mosb
// image (every architecture of the index) to a registry, `make release` writes the one file, and
// `kubectl apply -f` of that file installs mosb, whose controller and build pods the node pulls
// from the registry. The harness's single-node specifics (no pod network: deploy/local's
// component; its addresses) are layered on the file, as on deploy/local.
func testRelease(t *testing.T, c *cluster) {
	arches := []string{runtime.GOARCH}
	if c.emulation {
		arches = []string{"amd64", "arm64"}
	} else {
		t.Log("SKIPPED in part: no qemu-aarch64 binfmt handler here (make deps registers it): the image is made for amd64 alone")
	}
	// A development registry as the README's example: plain HTTP, anonymous.
	rel := harness.StartRegistry(t, harness.PlainHTTP(), harness.NoAuth())
	c.PullFrom(t, rel)
	img := rel.Host + "/mosb/mosb:release"
	file := filepath.Join(t.TempDir(), "mosb.yaml")
	digestRef := strings.TrimSpace(makeRelease(t, t.TempDir(), "IMG="+img, "INSECURE=1", "ARCHES="+strings.Join(arches, " "), "RELEASE="+file))

	// The registry serves under the tag what make image says it pushed, with every architecture.
	tag, err := name.NewTag(img, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(tag, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	if want := tag.Context().Name() + "@" + desc.Digest.String(); digestRef != want {
		t.Fatalf("make image printed %q; the registry serves %s under the tag", digestRef, want)
	}
	images, err := harness.IndexImages(digestRef, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("%s is not an index: %v", digestRef, err)
	}
	for _, arch := range arches {
		if images[arch] == "" {
			t.Errorf("the index %s has no %s image: %v", digestRef, arch, images)
		}
	}
	if c.emulation {
		runsUnderQemu(t, images["arm64"])
	}

	// One file: what a cluster needs of mosb, the image by digest.
	kinds, deployImage := releaseContents(t, file)
	for _, want := range []string{"CustomResourceDefinition/machineosconfigs.machineconfiguration.openshift.io",
		"CustomResourceDefinition/machineosbuilds.machineconfiguration.openshift.io", "Namespace/mosb-system",
		"Namespace/openshift-config", "ServiceAccount/mosb", "ClusterRole/", "ClusterRoleBinding/", "Deployment/mosb-controller"} {
		if !slices.ContainsFunc(kinds, func(k string) bool { return strings.HasPrefix(k, want) }) {
			t.Errorf("%s has no %s; it has %v", file, want, kinds)
		}
	}
	if deployImage != digestRef {
		t.Fatalf("the Deployment in %s runs %q, want the pushed image by digest %s", file, deployImage, digestRef)
	}

	c.mosb = c.DeployRelease(t, file, digestRef)
	pods := &corev1.PodList{}
	if err := c.Client.List(t.Context(), pods, client.InNamespace(namespace), client.MatchingLabels{"app.kubernetes.io/component": "controller"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Spec.Containers[0].Image != digestRef {
			t.Errorf("controller pod %s runs %s, want %s", p.Name, p.Spec.Containers[0].Image, digestRef)
		}
	}

	// The installed controller builds, in a build pod running the same image.
	name := "released"
	logs := c.followBuildPods(t, name)
	m := c.newMOSC(name, []mosbv1.MachineOSContainerfile{{ContainerfileArch: mosbv1.NoArch, Content: "RUN echo installed from the release > /etc/released"}})
	if err := c.Client.Create(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	m = c.waitReady(t, name)
	b := c.onlyBuild(t, name)
	for _, a := range b.Status.Architectures {
		if got := logs.of(t, a.PodName).image; got != digestRef {
			t.Errorf("build pod %s ran %q, want the released image %s", a.PodName, got, digestRef)
		}
	}
	if got := strings.TrimSpace(c.fileIn(t, string(m.Status.CurrentImagePullspec), "etc/released")); got != "installed from the release" {
		t.Errorf("the built image's /etc/released: %q", got)
	}
}

// makeRelease runs `make release` in the repository with args and IMAGE_DIR=imageDir, and returns
// the pushed image's pullspec by digest (make image's last line, kept in imageDir).
func makeRelease(t *testing.T, imageDir string, args ...string) string {
	t.Helper()
	args = append(args, "IMAGE_DIR="+imageDir)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", append([]string{"--no-print-directory", "release"}, args...)...)
	cmd.Dir = harness.RepoRoot()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("make release %s: %v\n%s", strings.Join(args, " "), err, tail(out.String(), 60))
	}
	t.Logf("make release %s (%s):\n%s", strings.Join(args, " "), time.Since(start).Round(time.Second), tail(out.String(), 8))
	raw, err := os.ReadFile(filepath.Join(imageDir, "digest"))
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// releaseContents lists the objects of the release file (Kind/name) and the image of the
// controller Deployment.
func releaseContents(t *testing.T, file string) (kinds []string, image string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		var obj struct {
			Kind     string
			Metadata struct{ Name string }
			Spec     struct {
				Template struct {
					Spec corev1.PodSpec
				}
			}
		}
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("%s: %v", file, err)
		}
		kinds = append(kinds, obj.Kind+"/"+obj.Metadata.Name)
		if obj.Kind == "Deployment" && len(obj.Spec.Template.Spec.Containers) > 0 {
			image = obj.Spec.Template.Spec.Containers[0].Image
		}
	}
	return kinds, image
}

// runsUnderQemu unpacks the image (an architecture this machine emulates) and runs its mosb in
// it: the loader and libraries the image carries are the ones its binary needs.
func runsUnderQemu(t *testing.T, ref string) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	// The flattened filesystem (whiteouts applied), unpacked by tar as root: owners and modes kept.
	untar := exec.CommandContext(t.Context(), "tar", "-x", "-C", root)
	untar.Stdin = mutate.Extract(img)
	if out, err := untar.CombinedOutput(); err != nil {
		t.Fatalf("unpacking %s: %v\n%s", ref, err, out)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), "chroot", root, harness.MosbImageBinary, "version")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s in %s (under qemu): %v\n%s%s", harness.MosbImageBinary, ref, err, out, stderr.String())
	}
	t.Logf("%s runs under qemu: %s", ref, strings.TrimSpace(string(out)))
}
