package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	configv1 "github.com/openshift/api/config/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/containerfiles"
	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/test/harness"
)

const (
	renderSource = "source.example.com:5000"
	renderBase   = renderSource + "/os/base@sha256:5eed0000000000000000000000000000000000000000000000000000000000c0"
	renderTarget = "push.example.com/os/worker:latest"
)

// renderFixture is the build fixture's files without its registry: render never contacts one.
// The auth file holds credentials for hosts that do not exist.
func renderFixture(t *testing.T) *buildFixture {
	t.Helper()
	f := &buildFixture{dir: t.TempDir(), base: map[string]string{"amd64": renderBase}}
	f.clusterDir = filepath.Join(f.dir, "cluster")
	if err := os.MkdirAll(f.clusterDir, 0o755); err != nil {
		t.Fatal(err)
	}
	f.authFile = filepath.Join(f.dir, "auth.json")
	write(t, f.authFile, string(dockerConfig(renderSource, "render-user", "render-password")))
	return f
}

func TestRenderPrintsTheContainerfile(t *testing.T) {
	f := renderFixture(t)
	mc := filepath.Join(f.dir, "mc.yaml")
	write(t, mc, `apiVersion: machineconfiguration.openshift.io/v1
kind: MachineConfig
metadata:
  name: rendered-worker-render
spec:
  config:
    ignition:
      version: 3.4.0
`)
	mosc := f.mosc(t, "render", renderTarget, map[string]string{
		"":      "RUN echo noarch-content > /etc/noarch",
		"arm64": "RUN echo arm64-content > /etc/arm64",
	})

	t.Run("default architecture", func(t *testing.T) {
		res := runCLI(t, "render", "-f", mosc, "--machineconfig", mc, "--authfile", f.authFile, "--arch", "amd64")
		if res.code != 0 {
			t.Fatalf("exit %d:\n%s", res.code, res.stderr)
		}
		for _, want := range []string{
			"FROM " + renderBase + " AS configs",
			"sha256:5eed0000000000000000000000000000000000000000000000000000000000c0",
			"RUN echo noarch-content > /etc/noarch",
			"/etc/machine-config-daemon/currentconfig",
			`"rendered-worker-render"`,
		} {
			if !strings.Contains(res.stdout, want) {
				t.Errorf("Containerfile lacks %q:\n%s", want, res.stdout)
			}
		}
		if strings.Contains(res.stdout, "arm64-content") {
			t.Errorf("the amd64 Containerfile has the arm64 entry:\n%s", res.stdout)
		}
	})

	t.Run("--arch picks the entry", func(t *testing.T) {
		res := runCLI(t, "render", "-f", mosc, "--authfile", f.authFile, "--arch", "aarch64")
		if res.code != 0 {
			t.Fatalf("exit %d:\n%s", res.code, res.stderr)
		}
		if !strings.Contains(res.stdout, "RUN echo arm64-content > /etc/arm64") || strings.Contains(res.stdout, "noarch-content") {
			t.Errorf("the arm64 Containerfile does not hold exactly the arm64 entry:\n%s", res.stdout)
		}
	})

	t.Run("--show identity", func(t *testing.T) {
		var ids []string
		for i := 0; i < 2; i++ {
			res := runCLI(t, "render", "-f", mosc, "--authfile", f.authFile, "--arch", "amd64", "--show", "identity")
			if res.code != 0 {
				t.Fatalf("exit %d:\n%s", res.code, res.stderr)
			}
			ids = append(ids, strings.TrimSpace(res.stdout))
			// What counts is said beside it, not in it.
			if !strings.Contains(res.stderr, "the build identity hashes") || !strings.Contains(res.stderr, "kernelArguments") {
				t.Errorf("--show identity does not explain what counts on stderr:\n%s", res.stderr)
			}
		}
		if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(ids[0]) || ids[0] != ids[1] {
			t.Errorf("identities %q: want the same SHA-256 twice", ids)
		}
		res := runCLI(t, "render", "-f", mosc, "--authfile", f.authFile, "--arch", "arm64", "--show", "identity")
		if strings.TrimSpace(res.stdout) == ids[0] {
			t.Error("another architecture has the same identity")
		}
	})
}

// mosb render needs no credentials: it neither pulls nor pushes.
func TestRenderWithoutCredentials(t *testing.T) {
	f := renderFixture(t)
	mosc := f.mosc(t, "nocreds", renderTarget, map[string]string{"": "RUN true"})
	res := runCLI(t, "render", "-f", mosc)
	if res.code != 0 {
		t.Fatalf("exit %d:\n%s", res.code, res.stderr)
	}
	if !strings.Contains(res.stdout, "FROM "+renderBase) {
		t.Errorf("no Containerfile printed:\n%s", res.stdout)
	}
}

func TestRenderRegistriesConfHasTheMirrors(t *testing.T) {
	f := renderFixture(t)
	write(t, filepath.Join(f.clusterDir, "idms.yaml"), `apiVersion: config.openshift.io/v1
kind: ImageDigestMirrorSet
metadata:
  name: os-mirrors
spec:
  imageDigestMirrors:
  - source: `+renderSource+`/os
    mirrors:
    - mirror-a.example.com/os
    - mirror-b.example.com:5000/copies/os
    mirrorSourcePolicy: NeverContactSource
`)
	write(t, filepath.Join(f.clusterDir, "icp.yaml"), `apiVersion: config.openshift.io/v1
kind: ImageContentPolicy
metadata:
  name: legacy
spec:
  repositoryDigestMirrors:
  - source: quay.example.com/openshift
    mirrors:
    - mirror-c.example.com/openshift
    allowMirrorByTags: true
`)
	// The build pulls the base image and, through the content, an image the ImageContentPolicy
	// covers: the registries.conf has the mirrors of both (and only of what the build pulls).
	mosc := f.mosc(t, "mirrors", renderTarget, map[string]string{"": "COPY --from=quay.example.com/openshift/os:4.16 /etc/os-release /etc/upstream-os-release"})
	res := runCLI(t, "render", "-f", mosc, "--cluster-config", f.clusterDir, "--authfile", f.authFile, "--show", "registries.conf")
	if res.code != 0 {
		t.Fatalf("exit %d:\n%s", res.code, res.stderr)
	}
	sys := registriesConf(t, res.stdout)

	reg, err := sysregistriesv2.FindRegistry(sys, renderBase)
	if err != nil || reg == nil {
		t.Fatalf("no registries.conf entry for %s (%v):\n%s", renderBase, err, res.stdout)
	}
	var mirrors []string
	for _, m := range reg.Mirrors {
		mirrors = append(mirrors, m.Location)
		if m.PullFromMirror != sysregistriesv2.MirrorByDigestOnly {
			t.Errorf("mirror %s of an ImageDigestMirrorSet has pull-from-mirror %q, want %q", m.Location, m.PullFromMirror, sysregistriesv2.MirrorByDigestOnly)
		}
	}
	if want := []string{"mirror-a.example.com/os", "mirror-b.example.com:5000/copies/os"}; !slices.Equal(mirrors, want) {
		t.Errorf("mirrors of %s: %v, want %v", renderSource+"/os", mirrors, want)
	}
	if !reg.Blocked {
		t.Error("NeverContactSource: the source is not blocked")
	}
	// What containers/image will try for the base image, in order: the mirrors, then the source,
	// whose client it refuses to create because the entry is blocked.
	named, err := reference.ParseNormalizedNamed(renderBase)
	if err != nil {
		t.Fatal(err)
	}
	sources, err := reg.PullSourcesFromReference(named)
	if err != nil {
		t.Fatal(err)
	}
	var tried []string
	for _, s := range sources {
		tried = append(tried, s.Reference.String())
	}
	digest := renderBase[strings.Index(renderBase, "@"):]
	mirrorRefs := []string{"mirror-a.example.com/os/base" + digest, "mirror-b.example.com:5000/copies/os/base" + digest}
	if want := append(slices.Clone(mirrorRefs), renderBase); !slices.Equal(tried, want) {
		t.Errorf("pull sources %v, want %v", tried, want)
	}
	for _, m := range mirrorRefs {
		if r, err := sysregistriesv2.FindRegistry(sys, m); err != nil || (r != nil && r.Blocked) {
			t.Errorf("the mirror %s is blocked (%v): NeverContactSource must block the source only", m, err)
		}
	}

	icp, err := sysregistriesv2.FindRegistry(sys, "quay.example.com/openshift/os:4.16")
	if err != nil || icp == nil {
		t.Fatalf("no entry for the ImageContentPolicy source (%v):\n%s", err, res.stdout)
	}
	if len(icp.Mirrors) != 1 || icp.Mirrors[0].Location != "mirror-c.example.com/openshift" || icp.Mirrors[0].PullFromMirror != sysregistriesv2.MirrorAll {
		t.Errorf("ImageContentPolicy mirrors %+v, want mirror-c.example.com/openshift for digests and tags", icp.Mirrors)
	}
	if icp.Blocked {
		t.Error("the ImageContentPolicy source is blocked")
	}
	// The push target has no mirrors and is not blocked.
	if push, err := sysregistriesv2.FindRegistry(sys, renderTarget); err != nil || (push != nil && (len(push.Mirrors) > 0 || push.Blocked)) {
		t.Errorf("push target entry %+v (%v)", push, err)
	}

	// A build that pulls nothing from quay.example.com/openshift gets no entry for it.
	plain := f.mosc(t, "plain", renderTarget, map[string]string{"": "RUN true"})
	res = runCLI(t, "render", "-f", plain, "--cluster-config", f.clusterDir, "--authfile", f.authFile, "--show", "registries.conf")
	if res.code != 0 {
		t.Fatalf("exit %d:\n%s", res.code, res.stderr)
	}
	if icp, err := sysregistriesv2.FindRegistry(registriesConf(t, res.stdout), "quay.example.com/openshift/os:4.16"); err != nil || icp != nil {
		t.Errorf("a build that pulls nothing the ImageContentPolicy covers has its entry %+v (%v):\n%s", icp, err, res.stdout)
	}
	if reg, err := sysregistriesv2.FindRegistry(registriesConf(t, res.stdout), renderBase); err != nil || reg == nil || len(reg.Mirrors) != 2 {
		t.Errorf("the base image's entry %+v (%v), want its two mirrors", reg, err)
	}
}

// registriesConf writes a rendered registries.conf where containers/image reads it from.
func registriesConf(t *testing.T, conf string) *types.SystemContext {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "registries.conf")
	write(t, path, conf)
	sys := &types.SystemContext{SystemRegistriesConfPath: path, SystemRegistriesConfDirPath: filepath.Join(dir, "registries.conf.d")}
	if _, err := sysregistriesv2.GetRegistries(sys); err != nil {
		t.Fatalf("containers/image refuses the registries.conf: %v\n%s", err, conf)
	}
	return sys
}

func TestRenderPolicyJSON(t *testing.T) {
	tests := []struct {
		name      string
		sources   string // the Image's spec.registrySources
		allowed   []string
		forbidden []string
	}{
		{
			name:      "blockedRegistries",
			sources:   "blockedRegistries: [blocked.example.com]",
			allowed:   []string{renderBase, "elsewhere.example.com/os/x:latest"},
			forbidden: []string{"blocked.example.com/os/base:latest"},
		},
		{
			name:      "allowedRegistries",
			sources:   "allowedRegistries: [" + renderSource + ", push.example.com]",
			allowed:   []string{renderBase, "push.example.com/os/worker:latest"},
			forbidden: []string{"elsewhere.example.com/os/x:latest"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := renderFixture(t)
			write(t, filepath.Join(f.clusterDir, "image.yaml"), `apiVersion: config.openshift.io/v1
kind: Image
metadata:
  name: cluster
spec:
  registrySources:
    `+tc.sources+`
`)
			mosc := f.mosc(t, "policy", renderTarget, map[string]string{"": "RUN true"})
			res := runCLI(t, "render", "-f", mosc, "--cluster-config", f.clusterDir, "--authfile", f.authFile, "--show", "policy.json")
			if res.code != 0 {
				t.Fatalf("exit %d:\n%s", res.code, res.stderr)
			}
			policy, err := signature.NewPolicyFromBytes([]byte(res.stdout))
			if err != nil {
				t.Fatalf("containers/image refuses the policy.json: %v\n%s", err, res.stdout)
			}
			pc, err := signature.NewPolicyContext(policy)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = pc.Destroy() }()
			for _, img := range tc.allowed {
				if ok, err := pc.IsRunningImageAllowed(context.Background(), dockerImage(t, img)); !ok {
					t.Errorf("%s is refused: %v\n%s", img, err, res.stdout)
				}
			}
			for _, img := range tc.forbidden {
				if ok, _ := pc.IsRunningImageAllowed(context.Background(), dockerImage(t, img)); ok {
					t.Errorf("%s is accepted:\n%s", img, res.stdout)
				}
			}
		})
	}
}

// refOnly is an image known by its reference only: accept/reject requirements never read more.
type refOnly struct{ ref types.ImageReference }

func (r refOnly) Reference() types.ImageReference { return r.ref }

func (refOnly) Manifest(context.Context) ([]byte, string, error) {
	return nil, "", errors.New("the test image has no manifest")
}

func (refOnly) Signatures(context.Context) ([][]byte, error) {
	return nil, errors.New("the test image has no signatures")
}

func dockerImage(t *testing.T, spec string) types.UnparsedImage {
	t.Helper()
	ref, err := docker.ParseReference("//" + spec)
	if err != nil {
		t.Fatal(err)
	}
	return refOnly{ref: ref}
}

// Of objects the CRD accepts, the CLI refuses exactly what pipeline.Prepare refuses, with the same
// reason and message. (What the CRD refuses, the CLI refuses first as the API server does:
// test/integration's TestTheCLIAndTheAPIServerAgreeOnEveryMachineOSConfig.)
func TestRenderInvalidInputIsPrepareFailure(t *testing.T) {
	tests := []struct {
		name string
		// content is the noarch entry; target the pushspec.
		content, target string
		// baseFromConfigMap drops the spec's base image; machine-config-osimageurl then gives this.
		baseFromConfigMap string
		imageConfig       string // the Image's spec.registrySources, when set
		arch              string
		reason            string
	}{
		{name: "unknown instruction", content: "RUN true\nFROBNICATE now", target: renderTarget, reason: pipeline.ReasonInvalidContainerfile},
		{name: "base registry blocked", content: "RUN true", target: renderTarget, imageConfig: "blockedRegistries: [" + renderSource + "]", reason: pipeline.ReasonRegistryBlocked},
		{name: "push target not allowed", content: "RUN true", target: renderTarget, imageConfig: "allowedRegistries: [" + renderSource + "]", reason: pipeline.ReasonRegistryBlocked},
		{name: "base from machine-config-osimageurl by tag", content: "RUN true", target: renderTarget, baseFromConfigMap: renderSource + "/os/base:4.16", reason: pipeline.ReasonBaseImageNotByDigest},
		{name: "unknown architecture", content: "RUN true", target: renderTarget, arch: "sparc", reason: pipeline.ReasonInvalidArchitecture},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := renderFixture(t)
			mosc := f.mosc(t, "invalid", tc.target, map[string]string{"": tc.content})
			args := []string{"render", "-f", mosc, "--authfile", f.authFile}
			in := pipeline.Inputs{Namespace: "openshift-machine-config-operator", DefaultArch: hostArch(), BuilderVersion: builderVersion()}
			if tc.baseFromConfigMap != "" {
				raw, err := os.ReadFile(mosc)
				if err != nil {
					t.Fatal(err)
				}
				write(t, mosc, regexp.MustCompile(`(?m)^\s*baseOSImagePullspec:.*\n`).ReplaceAllString(string(raw), ""))
				write(t, filepath.Join(f.clusterDir, "osimageurl.yaml"), `apiVersion: v1
kind: ConfigMap
metadata:
  name: machine-config-osimageurl
  namespace: openshift-machine-config-operator
data:
  baseOSContainerImage: `+tc.baseFromConfigMap+`
`)
				in.OSImageURL = map[string]string{pipeline.OSImageURLBaseKey: tc.baseFromConfigMap}
			}
			if tc.imageConfig != "" {
				doc := `apiVersion: config.openshift.io/v1
kind: Image
metadata:
  name: cluster
spec:
  registrySources:
    ` + tc.imageConfig + `
`
				write(t, filepath.Join(f.clusterDir, "image.yaml"), doc)
				in.Cluster.Image = &configv1.Image{}
				if err := yaml.Unmarshal([]byte(doc), in.Cluster.Image); err != nil {
					t.Fatal(err)
				}
			}
			args = append(args, "--cluster-config", f.clusterDir)
			if tc.arch != "" {
				args = append(args, "--arch", tc.arch)
				in.Arches = []string{tc.arch}
			}

			// The direct call, with the inputs read independently of the CLI's loader.
			raw, err := os.ReadFile(mosc)
			if err != nil {
				t.Fatal(err)
			}
			in.MachineOSConfig = &mosbv1.MachineOSConfig{}
			if err := yaml.Unmarshal(raw, in.MachineOSConfig); err != nil {
				t.Fatal(err)
			}
			auth, err := os.ReadFile(f.authFile)
			if err != nil {
				t.Fatal(err)
			}
			secret := func(name string) *corev1.Secret {
				return &corev1.Secret{
					ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: in.Namespace},
					Type:       corev1.SecretTypeDockerConfigJson,
					Data:       map[string][]byte{corev1.DockerConfigJsonKey: auth},
				}
			}
			in.PullSecret, in.PushSecret = secret("pull"), secret("push")
			_, err = pipeline.Prepare(in)
			var failure *pipeline.Failure
			if !errors.As(err, &failure) {
				t.Fatalf("pipeline.Prepare: want a *Failure, got %v", err)
			}
			if failure.Reason != tc.reason {
				t.Fatalf("pipeline.Prepare: reason %s, want %s: %s", failure.Reason, tc.reason, failure.Message)
			}

			res := runCLI(t, args...)
			if res.code != exitInvalidInput {
				t.Fatalf("exit %d, want %d:\n%s", res.code, exitInvalidInput, res.stderr)
			}
			if res.stdout != "" {
				t.Errorf("something was rendered for invalid input:\n%s", res.stdout)
			}
			if want := failure.Reason + ": " + failure.Message; !strings.Contains(res.stderr, want) {
				t.Errorf("stderr does not give Prepare's reason and message\nstderr: %s\nwant:   %s", res.stderr, want)
			}
		})
	}
}

func TestRenderRefusesUnknownClusterObjects(t *testing.T) {
	tests := []struct{ name, file, doc, want string }{
		{
			name: "a kind mosb does not use",
			file: "pod.yaml",
			doc: `apiVersion: v1
kind: Pod
metadata:
  name: stray
spec:
  containers:
  - name: c
    image: ` + renderBase + `
`,
			want: "is not cluster registry configuration",
		},
		{
			name: "a kind nobody knows",
			file: "frob.yaml",
			doc: `apiVersion: example.com/v1
kind: Frobnicator
metadata:
  name: stray
`,
			want: "document 1",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := renderFixture(t)
			path := filepath.Join(f.clusterDir, tc.file)
			write(t, path, tc.doc)
			mosc := f.mosc(t, "stray", renderTarget, map[string]string{"": "RUN true"})
			res := runCLI(t, "render", "-f", mosc, "--cluster-config", f.clusterDir, "--authfile", f.authFile)
			if res.code != exitInvalidInput {
				t.Fatalf("exit %d, want %d:\n%s", res.code, exitInvalidInput, res.stderr)
			}
			for _, want := range []string{path, tc.want} {
				if !strings.Contains(res.stderr, want) {
					t.Errorf("stderr does not say %q:\n%s", want, res.stderr)
				}
			}
			if res.stdout != "" {
				t.Errorf("something was rendered:\n%s", res.stdout)
			}
		})
	}
}

// mosb render --request-dir hands a controller's build to `mosb worker` on any machine: the node
// image store filled by --prepare-store, then the build from it, as a build pod's two containers.
func TestRenderRequestDirIsBuiltByTheWorker(t *testing.T) {
	f := newBuildFixture(t, "amd64")
	target := f.reg.Host + "/os/request-dir:latest"
	mosc := f.mosc(t, "request-dir", target, map[string]string{"": "RUN echo from-the-request > /etc/request-dir"})
	request := filepath.Join(f.dir, "request")
	res := runCLI(t, "render", "-f", mosc, "--machineconfig", f.renderedMachineConfig(t), "--cluster-config", f.clusterDir,
		"--authfile", f.authFile, "--request-dir", request)
	if res.code != 0 || res.stdout != "" {
		t.Fatalf("render --request-dir exited %d, stdout %q:\n%s", res.code, res.stdout, res.stderr)
	}
	err := filepath.WalkDir(request, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if strings.Contains(string(b), f.reg.Password) {
			t.Errorf("%s holds the registry password", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	req, err := buildpod.ReadRequest(request)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(req.Prefetch, []string{f.base["amd64"]}) || req.Target != target || req.Untagged {
		t.Errorf("request: prefetch %v, target %s, untagged %v", req.Prefetch, req.Target, req.Untagged)
	}

	secret := filepath.Join(f.dir, "secret")
	write(t, filepath.Join(secret, ".dockerconfigjson"), string(f.reg.DockerConfigJSON()))
	root, store, report, termLog := filepath.Join(f.dir, "root"), filepath.Join(f.dir, "store"), filepath.Join(f.dir, "store.json"), filepath.Join(f.dir, "termination-log")
	common := []string{"worker", "--request", request, "--pull-secret", secret, "--root", root, "--store", store, "--store-report", report}
	if res := runCLI(t, append(common, "--prepare-store")...); res.code != 0 || !strings.Contains(res.stderr, "1 pulled") {
		t.Fatalf("worker --prepare-store exited %d:\n%s", res.code, res.stderr)
	}
	res = runCLI(t, append(common, "--push-secret", secret, "--termination-log", termLog)...)
	if res.code != 0 {
		t.Fatalf("worker exited %d:\n%s", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, "node image store") {
		t.Errorf("the worker did not build over the node image store:\n%s", res.stderr)
	}
	got, err := buildpod.ParseResult(res.lastLine())
	if err != nil {
		t.Fatal(err)
	}
	img, _ := f.pull(t, got.Pullspec)
	files := imageFiles(t, img)
	if files["etc/request-dir"] != "from-the-request\n" || !strings.Contains(files["etc/machine-config-daemon/currentconfig"], "rendered-worker-abc") {
		t.Errorf("the image lacks the snippet's file or the MachineConfig: %q, %q", files["etc/request-dir"], files["etc/machine-config-daemon/currentconfig"])
	}
}

// A NUL byte in a containerFile entry is refused with the line, exit 2, before any library parses it
// (a scanner in the parser printed "<input>:1:11: invalid character NUL" straight to the process's
// stderr, and the content was accepted).
func TestRenderRefusesANULByte(t *testing.T) {
	f := renderFixture(t)
	mosc := f.mosc(t, "nul", renderTarget, map[string]string{"": "RUN true\nRUN echo a\x00b"})
	res := runCLI(t, "render", "-f", mosc, "--authfile", f.authFile, "--arch", "amd64")
	if res.code != exitInvalidInput || !strings.Contains(res.stderr, "NUL byte") {
		t.Fatalf("exit %d, want %d naming the NUL byte:\n%s", res.code, exitInvalidInput, res.stderr)
	}
	if lines := strings.Split(strings.TrimSpace(res.stderr), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "mosb: ") {
		t.Errorf("stderr holds more than mosb's message:\n%s", res.stderr)
	}
}

// The cluster Proxy in --cluster-config: its trusted CA goes into the image (the Containerfile
// copies it), its password nowhere mosb prints; a Proxy whose trusted CA is missing is refused.
func TestRenderTakesTheClusterProxy(t *testing.T) {
	f := renderFixture(t)
	const password = "render-pr0xy-pa55"
	ca, err := harness.NewCA("proxy trusted CA")
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(f.clusterDir, "proxy.yaml"), `apiVersion: config.openshift.io/v1
kind: Proxy
metadata:
  name: cluster
spec:
  httpProxy: http://mosb:`+password+`@proxy.example:3128
  trustedCA:
    name: user-ca-bundle
`)
	mosc := f.mosc(t, "proxied", renderTarget, map[string]string{"": "RUN true"})
	res := runCLI(t, "render", "-f", mosc, "--cluster-config", f.clusterDir, "--authfile", f.authFile)
	if res.code != exitInvalidInput || !strings.Contains(res.stderr, `trustedCA ConfigMap "user-ca-bundle"`) {
		t.Fatalf("without the trusted CA ConfigMap: exit %d:\n%s", res.code, res.stderr)
	}
	cm, err := yaml.Marshal(map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "user-ca-bundle", "namespace": "openshift-config"},
		"data":     map[string]string{"ca-bundle.crt": string(ca.PEM)}})
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(f.clusterDir, "user-ca-bundle.yaml"), string(cm))
	res = runCLI(t, "render", "-f", mosc, "--cluster-config", f.clusterDir, "--authfile", f.authFile)
	if res.code != 0 {
		t.Fatalf("exit %d:\n%s", res.code, res.stderr)
	}
	if !strings.Contains(res.stdout, "COPY --chmod=0644 "+containerfiles.ContextTrustedCA+" "+containerfiles.TrustedCAPath) {
		t.Errorf("the Containerfile does not copy the trusted CA:\n%s", res.stdout)
	}
	if strings.Contains(res.stdout+res.stderr, password) {
		t.Error("render printed the proxy password")
	}
}
