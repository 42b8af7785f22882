package pipeline_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	configv1 "github.com/openshift/api/config/v1"
	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/containerfiles"
	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/registry"
	"github.com/mosb-dev/mosb/test/harness"
)

const (
	ns           = "mosb-system"
	moscName     = "worker-os"
	pullName     = "base-pull"
	pushName     = "build-push"
	pullRegistry = "quay.example.com"
	pushRegistry = "registry.example.com:5000"
	baseImage    = pullRegistry + "/openshift/os@sha256:1111111111111111111111111111111111111111111111111111111111111111"
	extImage     = pullRegistry + "/openshift/ext@sha256:2222222222222222222222222222222222222222222222222222222222222222"
	otherBase    = pullRegistry + "/openshift/os@sha256:3333333333333333333333333333333333333333333333333333333333333333"
	thirdBase    = pullRegistry + "/openshift/os@sha256:4444444444444444444444444444444444444444444444444444444444444444"
	target       = pushRegistry + "/os/worker:latest"
	pullPassword = "pull-pw-Zq7xK2"
	pushPassword = "push-pw-Jr4mN8"
	userContent  = "RUN echo hello-from-the-user > /etc/motd"
)

// testCAs are two distinct CA certificates (PEM), made once: generating keys is not free.
var testCAs = func() [2][]byte {
	var out [2][]byte
	for i := range out {
		ca, err := harness.NewCA(fmt.Sprintf("pipeline test CA %d", i))
		if err != nil {
			panic(err)
		}
		out[i] = ca.PEM
	}
	return out
}()

func dockerSecret(name, host, user, password string) *corev1.Secret {
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	raw, _ := json.Marshal(map[string]any{"auths": map[string]any{host: map[string]string{"auth": auth}}})
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: raw},
	}
}

func validMOSC() *mosbv1.MachineOSConfig {
	return &mosbv1.MachineOSConfig{
		ObjectMeta: metav1.ObjectMeta{Name: moscName},
		Spec: mosbv1.MachineOSConfigSpec{
			MachineConfigPool: mosbv1.MachineConfigPoolReference{Name: "worker"},
			BuildInputs: mosbv1.BuildInputs{
				BaseOSImagePullspec:     baseImage,
				BaseImagePullSecret:     mosbv1.ImageSecretObjectReference{Name: pullName},
				ImageBuilder:            mosbv1.MachineOSImageBuilder{ImageBuilderType: mosbv1.PodImageBuilder},
				RenderedImagePushSecret: mosbv1.ImageSecretObjectReference{Name: pushName},
				RenderedImagePushspec:   target,
				Containerfile:           []mosbv1.MachineOSContainerfile{{ContainerfileArch: mosbv1.NoArch, Content: userContent}},
			},
		},
	}
}

// validInputs are inputs Prepare accepts: no cluster configuration, one noarch entry.
func validInputs() pipeline.Inputs {
	return pipeline.Inputs{
		MachineOSConfig: validMOSC(),
		PullSecret:      dockerSecret(pullName, pullRegistry, "puller", pullPassword),
		PushSecret:      dockerSecret(pushName, pushRegistry, "pusher", pushPassword),
		Namespace:       ns,
		DefaultArch:     "amd64",
		BuilderVersion:  "mosb-test-1",
	}
}

func mustPrepare(t *testing.T, in pipeline.Inputs) *pipeline.Plan {
	t.Helper()
	plan, err := pipeline.Prepare(in)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	return plan
}

func imageConfig(mutate func(*configv1.ImageSpec)) *configv1.Image {
	img := &configv1.Image{ObjectMeta: metav1.ObjectMeta{Name: "cluster"}}
	mutate(&img.Spec)
	return img
}

func TestPrepareRefusesInvalidInput(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*pipeline.Inputs)
		reason string
		// want are substrings the message must have: the object, the field or value, the fix.
		want []string
		// secret is a value that must not reach the message.
		secret string
	}{
		{
			name: "pushspec without a tag",
			mutate: func(in *pipeline.Inputs) {
				in.MachineOSConfig.Spec.BuildInputs.RenderedImagePushspec = pushRegistry + "/os/worker"
			},
			reason: pipeline.ReasonInvalidPushspec,
			want:   []string{"MachineOSConfig " + moscName, "spec.buildInputs.renderedImagePushspec", `"` + pushRegistry + `/os/worker"`, "set it to host[:port][/namespace]/name:<tag>"},
		},
		{
			name: "pushspec by digest",
			mutate: func(in *pipeline.Inputs) {
				in.MachineOSConfig.Spec.BuildInputs.RenderedImagePushspec = mosbv1.ImageTagPushspec(pushRegistry + "/os/worker@sha256:" + strings.Repeat("a", 64))
			},
			reason: pipeline.ReasonInvalidPushspec,
			want:   []string{"MachineOSConfig " + moscName, "spec.buildInputs.renderedImagePushspec", ":<tag>"},
		},
		{
			name:   "pull secret not found",
			mutate: func(in *pipeline.Inputs) { in.PullSecret = nil },
			reason: pipeline.ReasonSecretNotFound,
			want:   []string{"MachineOSConfig " + moscName, "secret " + pullName, "namespace " + ns, "spec.buildInputs.baseImagePullSecret", "create it there"},
		},
		{
			name:   "push secret not found",
			mutate: func(in *pipeline.Inputs) { in.PushSecret = nil },
			reason: pipeline.ReasonSecretNotFound,
			want:   []string{"MachineOSConfig " + moscName, "secret " + pushName, "namespace " + ns, "spec.buildInputs.renderedImagePushSecret", "create it there"},
		},
		{
			name: "pull secret of the wrong type",
			mutate: func(in *pipeline.Inputs) {
				in.PullSecret.Type = corev1.SecretTypeOpaque
			},
			reason: pipeline.ReasonInvalidSecret,
			want:   []string{"MachineOSConfig " + moscName, "spec.buildInputs.baseImagePullSecret", ns + "/" + pullName, "type Opaque", "kubernetes.io/dockerconfigjson"},
			secret: pullPassword,
		},
		{
			name: "push secret with malformed JSON",
			mutate: func(in *pipeline.Inputs) {
				// Cut short right after the password: a decoder quoting its input would leak it.
				in.PushSecret.Data[corev1.DockerConfigJsonKey] = []byte(`{"auths":{"` + pushRegistry + `":{"username":"pusher","password":"` + pushPassword + `"`)
			},
			reason: pipeline.ReasonInvalidSecret,
			want:   []string{"MachineOSConfig " + moscName, "spec.buildInputs.renderedImagePushSecret", ns + "/" + pushName, "not valid JSON", `{"auths":`},
			secret: pushPassword,
		},
		{
			name: "push secret with a number where a string belongs",
			mutate: func(in *pipeline.Inputs) {
				in.PushSecret.Data[corev1.DockerConfigJsonKey] = []byte(`{"auths":{"` + pushRegistry + `":{"username":"pusher","password":90817263544}}}`)
			},
			reason: pipeline.ReasonInvalidSecret,
			want:   []string{"MachineOSConfig " + moscName, "spec.buildInputs.renderedImagePushSecret", ns + "/" + pushName},
			secret: "90817263544",
		},
		{
			name: "base image in blockedRegistries",
			mutate: func(in *pipeline.Inputs) {
				in.Cluster.Image = imageConfig(func(s *configv1.ImageSpec) { s.RegistrySources.BlockedRegistries = []string{pullRegistry} })
			},
			reason: pipeline.ReasonRegistryBlocked,
			want:   []string{"MachineOSConfig " + moscName, "base image", baseImage, "blockedRegistries", "remove it there or choose another registry"},
		},
		{
			name: "push target not in allowedRegistries",
			mutate: func(in *pipeline.Inputs) {
				in.Cluster.Image = imageConfig(func(s *configv1.ImageSpec) { s.RegistrySources.AllowedRegistries = []string{pullRegistry} })
			},
			reason: pipeline.ReasonRegistryBlocked,
			want:   []string{"MachineOSConfig " + moscName, "push target", target, "allowedRegistries", "add it there"},
		},
		{
			name: "no base image anywhere",
			mutate: func(in *pipeline.Inputs) {
				in.MachineOSConfig.Spec.BuildInputs.BaseOSImagePullspec = ""
				in.OSImageURL = map[string]string{pipeline.OSImageURLReleaseKey: "4.16.0"}
			},
			reason: pipeline.ReasonBaseImageNotSet,
			want:   []string{"MachineOSConfig " + moscName, "spec.buildInputs.baseOSImagePullspec", ns + "/" + pipeline.OSImageURLConfigMap, pipeline.OSImageURLBaseKey, "by digest"},
		},
		{
			name: "base image from machine-config-osimageurl by tag",
			mutate: func(in *pipeline.Inputs) {
				in.MachineOSConfig.Spec.BuildInputs.BaseOSImagePullspec = ""
				in.OSImageURL = map[string]string{pipeline.OSImageURLBaseKey: pullRegistry + "/openshift/os:4.16"}
			},
			reason: pipeline.ReasonBaseImageNotByDigest,
			want:   []string{"MachineOSConfig " + moscName, `"` + pullRegistry + `/openshift/os:4.16"`, "@sha256:<digest>"},
		},
		{
			name: "user content with an unknown instruction",
			mutate: func(in *pipeline.Inputs) {
				in.MachineOSConfig.Spec.BuildInputs.Containerfile = []mosbv1.MachineOSContainerfile{
					{ContainerfileArch: mosbv1.ArchAArch64, Content: "RUN true\nFROBNICATE now\n"},
				}
			},
			reason: pipeline.ReasonInvalidContainerfile,
			want:   []string{"MachineOSConfig " + moscName, "spec.buildInputs.containerFile[arch=aarch64] line 2", "FROBNICATE"},
		},
		{
			name: "containerFile entry for an unknown architecture",
			mutate: func(in *pipeline.Inputs) {
				in.MachineOSConfig.Spec.BuildInputs.Containerfile = []mosbv1.MachineOSContainerfile{{ContainerfileArch: "mips64", Content: "RUN true"}}
			},
			reason: pipeline.ReasonInvalidContainerfile,
			want:   []string{"MachineOSConfig " + moscName, "containerFile[arch=mips64]", `unknown architecture "mips64"`, "valid are"},
		},
		{
			name:   "unknown build architecture",
			mutate: func(in *pipeline.Inputs) { in.Arches = []string{"amd64", "mips64"} },
			reason: pipeline.ReasonInvalidArchitecture,
			want:   []string{"MachineOSConfig " + moscName, `"mips64"`, "amd64, arm64, ppc64le, s390x"},
		},
		{
			name:   "noarch is not a build architecture",
			mutate: func(in *pipeline.Inputs) { in.Arches = []string{"noarch"} },
			reason: pipeline.ReasonInvalidArchitecture,
			want:   []string{"MachineOSConfig " + moscName, `"noarch"`, "use one of amd64, arm64, ppc64le, s390x"},
		},
		{
			name: "allowedRegistries and blockedRegistries both set",
			mutate: func(in *pipeline.Inputs) {
				in.Cluster.Image = imageConfig(func(s *configv1.ImageSpec) {
					s.RegistrySources.AllowedRegistries = []string{pullRegistry, pushRegistry}
					s.RegistrySources.BlockedRegistries = []string{"docker.io"}
				})
			},
			reason: pipeline.ReasonInvalidClusterConfig,
			want:   []string{"MachineOSConfig " + moscName, "image.config.openshift.io/cluster", "allowedRegistries", "blockedRegistries", "remove one of them"},
		},
		{
			name: "NeverContactSource without mirrors",
			mutate: func(in *pipeline.Inputs) {
				in.Cluster.ImageDigestMirrorSets = []configv1.ImageDigestMirrorSet{{
					ObjectMeta: metav1.ObjectMeta{Name: "no-mirrors"},
					Spec: configv1.ImageDigestMirrorSetSpec{ImageDigestMirrors: []configv1.ImageDigestMirrors{
						{Source: pullRegistry, MirrorSourcePolicy: configv1.NeverContactSource},
					}},
				}}
			},
			reason: pipeline.ReasonInvalidClusterConfig,
			want:   []string{"MachineOSConfig " + moscName, "ImageDigestMirrorSet/no-mirrors", "spec.imageDigestMirrors[0].mirrorSourcePolicy", "add mirrors or remove the policy"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := validInputs()
			tc.mutate(&in)
			plan, err := pipeline.Prepare(in)
			if err == nil {
				t.Fatalf("Prepare accepted it (identity %s)", plan.Identity)
			}
			if plan != nil {
				t.Error("Prepare returned a plan with its error")
			}
			var f *pipeline.Failure
			if !errors.As(err, &f) {
				t.Fatalf("error is %T, not a *pipeline.Failure: %v", err, err)
			}
			t.Logf("%s: %s", f.Reason, f.Message)
			if f.Reason != tc.reason {
				t.Errorf("reason %s, want %s (message: %s)", f.Reason, tc.reason, f.Message)
			}
			if err.Error() != f.Message {
				t.Errorf("Error() = %q, Message = %q", err.Error(), f.Message)
			}
			for _, w := range tc.want {
				if !strings.Contains(f.Message, w) {
					t.Errorf("message does not contain %q:\n%s", w, f.Message)
				}
			}
			if tc.secret != "" && strings.Contains(f.Message, tc.secret) {
				t.Errorf("message leaks the secret value %q:\n%s", tc.secret, f.Message)
			}
		})
	}
}

// A base image by tag that came from the machine-config-osimageurl ConfigMap must be fixed there,
// not in the MachineOSConfig (whose field is empty): the message has to say where the value is.
func TestBaseImageNotByDigestNamesTheConfigMap(t *testing.T) {
	in := validInputs()
	in.MachineOSConfig.Spec.BuildInputs.BaseOSImagePullspec = ""
	in.OSImageURL = map[string]string{pipeline.OSImageURLBaseKey: pullRegistry + "/openshift/os:4.16"}
	_, err := pipeline.Prepare(in)
	var f *pipeline.Failure
	if !errors.As(err, &f) || f.Reason != pipeline.ReasonBaseImageNotByDigest {
		t.Fatalf("want a BaseImageNotByDigest failure, got %v", err)
	}
	if !strings.Contains(f.Message, ns+"/"+pipeline.OSImageURLConfigMap) || !strings.Contains(f.Message, pipeline.OSImageURLBaseKey) {
		t.Errorf("the message does not name ConfigMap %s/%s key %s: %s", ns, pipeline.OSImageURLConfigMap, pipeline.OSImageURLBaseKey, f.Message)
	}
}

func TestPrepareRefusesNoMachineOSConfig(t *testing.T) {
	in := validInputs()
	in.MachineOSConfig = nil
	_, err := pipeline.Prepare(in)
	var f *pipeline.Failure
	if !errors.As(err, &f) || f.Reason != pipeline.ReasonInvalidMachineOSConfig {
		t.Fatalf("want an InvalidMachineOSConfig failure, got %v", err)
	}
}

// A Failure keeps its cause for errors.Is, without the cause's text having to be parsed.
func TestFailureUnwrapsToTheCause(t *testing.T) {
	in := validInputs()
	in.PullSecret.Type = corev1.SecretTypeOpaque
	_, err := pipeline.Prepare(in)
	if !errors.Is(err, registry.ErrSecretWrongType) {
		t.Errorf("errors.Is(err, ErrSecretWrongType) is false: %v", err)
	}
	in = validInputs()
	in.MachineOSConfig.Spec.BuildInputs.Containerfile[0].Content = "FROBNICATE"
	_, err = pipeline.Prepare(in)
	if !errors.Is(err, containerfiles.ErrInvalidContainerfile) {
		t.Errorf("errors.Is(err, ErrInvalidContainerfile) is false: %v", err)
	}
}

func TestPrepareDefaultsFromOSImageURL(t *testing.T) {
	const release = "4.16.0-0.nightly-2024-04-03-065948"
	osImageURL := map[string]string{
		pipeline.OSImageURLBaseKey:       baseImage,
		pipeline.OSImageURLExtensionsKey: extImage,
		pipeline.OSImageURLReleaseKey:    release,
	}

	t.Run("empty spec fields take the ConfigMap's values", func(t *testing.T) {
		in := validInputs()
		bi := &in.MachineOSConfig.Spec.BuildInputs
		bi.BaseOSImagePullspec, bi.BaseOSExtensionsImagePullspec, bi.ReleaseVersion = "", "", ""
		in.OSImageURL = osImageURL
		plan := mustPrepare(t, in)
		if plan.BaseImage != baseImage || plan.ExtensionsImage != extImage || plan.ReleaseVersion != release {
			t.Errorf("plan has base %q, extensions %q, release %q; want the ConfigMap's", plan.BaseImage, plan.ExtensionsImage, plan.ReleaseVersion)
		}
		cf := string(plan.Arches[0].Build.Containerfile)
		for _, want := range []string{
			"FROM " + baseImage + " AS configs",
			"FROM " + extImage + " AS extensions",
			`"` + containerfiles.LabelReleaseVersion + `"="` + release + `"`,
		} {
			if !strings.Contains(cf, want) {
				t.Errorf("Containerfile lacks %q:\n%s", want, cf)
			}
		}
	})

	t.Run("spec fields win over the ConfigMap", func(t *testing.T) {
		in := validInputs()
		bi := &in.MachineOSConfig.Spec.BuildInputs
		bi.BaseOSImagePullspec, bi.ReleaseVersion = otherBase, "4.17.1"
		in.OSImageURL = osImageURL
		plan := mustPrepare(t, in)
		if plan.BaseImage != otherBase || plan.ReleaseVersion != "4.17.1" {
			t.Errorf("plan has base %q, release %q; want the spec's", plan.BaseImage, plan.ReleaseVersion)
		}
		if plan.ExtensionsImage != extImage {
			t.Errorf("extensions image %q, want the ConfigMap's (the spec leaves it empty)", plan.ExtensionsImage)
		}
	})

	t.Run("no ConfigMap and no extensions or release", func(t *testing.T) {
		plan := mustPrepare(t, validInputs())
		if plan.ExtensionsImage != "" || plan.ReleaseVersion != "" {
			t.Errorf("extensions %q, release %q; want both empty", plan.ExtensionsImage, plan.ReleaseVersion)
		}
		if cf := string(plan.Arches[0].Build.Containerfile); strings.Contains(cf, "AS extensions") {
			t.Errorf("an extensions stage without an extensions image:\n%s", cf)
		}
	})
}

func TestPrepareArchitectures(t *testing.T) {
	entry := func(arch mosbv1.ContainerfileArch, content string) mosbv1.MachineOSContainerfile {
		return mosbv1.MachineOSContainerfile{ContainerfileArch: arch, Content: content}
	}
	tests := []struct {
		name      string
		requested []string
		entries   []mosbv1.MachineOSContainerfile
		def       string
		want      []string
		// sources is the Selection.Source per planned architecture.
		sources map[string]containerfiles.Source
	}{
		{
			name:      "requested, in any spelling, deduplicated and sorted",
			requested: []string{"x86_64", "aarch64", "amd64"},
			entries:   []mosbv1.MachineOSContainerfile{entry(mosbv1.NoArch, "RUN echo all")},
			def:       "s390x",
			want:      []string{"amd64", "arm64"},
			sources:   map[string]containerfiles.Source{"amd64": containerfiles.SourceNoArch, "arm64": containerfiles.SourceNoArch},
		},
		{
			name:    "from the containerFile entries, noarch not counted",
			entries: []mosbv1.MachineOSContainerfile{entry(mosbv1.NoArch, "RUN echo all"), entry(mosbv1.ArchX86_64, "RUN echo x86"), entry(mosbv1.ArchS390X, "RUN echo z")},
			def:     "ppc64le",
			want:    []string{"amd64", "s390x"},
			sources: map[string]containerfiles.Source{"amd64": containerfiles.SourceOwn, "s390x": containerfiles.SourceOwn},
		},
		{
			name:    "only noarch: the default",
			entries: []mosbv1.MachineOSContainerfile{entry("", "RUN echo all")},
			def:     "ppc64le",
			want:    []string{"ppc64le"},
			sources: map[string]containerfiles.Source{"ppc64le": containerfiles.SourceNoArch},
		},
		{
			name:    "no entries: the default",
			def:     "arm64",
			want:    []string{"arm64"},
			sources: map[string]containerfiles.Source{"arm64": containerfiles.SourceNone},
		},
		{
			name:      "requested arch without own or noarch entry",
			requested: []string{"amd64", "arm64"},
			entries:   []mosbv1.MachineOSContainerfile{entry(mosbv1.ArchARM64, "RUN echo arm")},
			want:      []string{"amd64", "arm64"},
			sources:   map[string]containerfiles.Source{"amd64": containerfiles.SourceNone, "arm64": containerfiles.SourceOwn},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := validInputs()
			in.MachineOSConfig.Spec.BuildInputs.Containerfile = tc.entries
			in.Arches, in.DefaultArch = tc.requested, tc.def
			plan := mustPrepare(t, in)
			if got := plan.ArchNames(); !slices.Equal(got, tc.want) {
				t.Fatalf("architectures %v, want %v", got, tc.want)
			}
			for _, a := range plan.Arches {
				if a.Build.Arch != a.Arch {
					t.Errorf("%s: build request is for %q", a.Arch, a.Build.Arch)
				}
				if a.Selection.Source != tc.sources[a.Arch] {
					t.Errorf("%s: selection source %q, want %q", a.Arch, a.Selection.Source, tc.sources[a.Arch])
				}
				cf := string(a.Build.Containerfile)
				if a.Selection.Source == containerfiles.SourceNone {
					for _, e := range tc.entries {
						if strings.Contains(cf, e.Content) {
							t.Errorf("%s has no entry of its own, yet its Containerfile has %q:\n%s", a.Arch, e.Content, cf)
						}
					}
				} else if !strings.Contains(cf, a.Selection.Content) || a.Selection.Content == "" {
					t.Errorf("%s: Containerfile lacks the selected content %q:\n%s", a.Arch, a.Selection.Content, cf)
				}
			}
		})
	}
}

// richInputs are inputs using every part of the identity. reversed builds the same values with
// every map filled, and every list of objects written, in the opposite order.
func richInputs(reversed bool) pipeline.Inputs {
	in := validInputs()
	order := func(n int) []int {
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
			if reversed {
				idx[i] = n - 1 - i
			}
		}
		return idx
	}

	entries := []mosbv1.MachineOSContainerfile{
		{ContainerfileArch: mosbv1.NoArch, Content: userContent},
		{ContainerfileArch: mosbv1.ArchARM64, Content: "RUN echo arm > /etc/arm"},
	}
	in.MachineOSConfig.Spec.BuildInputs.Containerfile = nil
	for _, i := range order(len(entries)) {
		in.MachineOSConfig.Spec.BuildInputs.Containerfile = append(in.MachineOSConfig.Spec.BuildInputs.Containerfile, entries[i])
	}
	in.MachineOSConfig.Spec.BuildInputs.BaseOSImagePullspec = ""
	arches := []string{"amd64", "arm64"}
	for _, i := range order(len(arches)) {
		in.Arches = append(in.Arches, arches[i])
	}

	osKeys := [][2]string{
		{pipeline.OSImageURLBaseKey, baseImage},
		{pipeline.OSImageURLExtensionsKey, extImage},
		{pipeline.OSImageURLReleaseKey, "4.16.0"},
	}
	in.OSImageURL = map[string]string{}
	for _, i := range order(len(osKeys)) {
		in.OSImageURL[osKeys[i][0]] = osKeys[i][1]
	}

	in.RenderedMachineConfig = renderedMC()
	labels := [][2]string{{"machineconfiguration.openshift.io/role", "worker"}, {"example.com/team", "platform"}}
	in.RenderedMachineConfig.Labels = map[string]string{}
	for _, i := range order(len(labels)) {
		in.RenderedMachineConfig.Labels[labels[i][0]] = labels[i][1]
	}

	in.Cluster.Image = imageConfig(func(s *configv1.ImageSpec) {
		s.AdditionalTrustedCA.Name = "registry-cas"
		s.RegistrySources.InsecureRegistries = []string{"insecure.example.com"}
	})
	cas := [][2]string{{"registry.example.com..5000", string(testCAs[0])}, {"mirror.example.com", string(testCAs[1])}}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "registry-cas", Namespace: "openshift-config"}, Data: map[string]string{}}
	for _, i := range order(len(cas)) {
		cm.Data[cas[i][0]] = cas[i][1]
	}
	in.Cluster.AdditionalTrustedCA = cm

	sets := mirrorSets()
	for _, i := range order(len(sets)) {
		in.Cluster.ImageDigestMirrorSets = append(in.Cluster.ImageDigestMirrorSets, sets[i])
	}
	return in
}

func renderedMC() *mcfgv1.MachineConfig {
	return &mcfgv1.MachineConfig{
		ObjectMeta: metav1.ObjectMeta{Name: "rendered-worker-0123abcd"},
		Spec: mcfgv1.MachineConfigSpec{
			Config:          runtime.RawExtension{Raw: []byte(`{"ignition":{"version":"3.4.0"}}`)},
			KernelArguments: []string{"nosmt"},
		},
	}
}

func mirrorSets() []configv1.ImageDigestMirrorSet {
	return []configv1.ImageDigestMirrorSet{
		{
			ObjectMeta: metav1.ObjectMeta{Name: "a-os"},
			Spec: configv1.ImageDigestMirrorSetSpec{ImageDigestMirrors: []configv1.ImageDigestMirrors{
				{Source: pullRegistry + "/openshift", Mirrors: []configv1.ImageMirror{"mirror.example.com/openshift", "mirror2.example.com/openshift"}},
			}},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "b-os"},
			Spec: configv1.ImageDigestMirrorSetSpec{ImageDigestMirrors: []configv1.ImageDigestMirrors{
				{Source: pullRegistry + "/openshift", Mirrors: []configv1.ImageMirror{"mirror3.example.com/openshift"}},
			}},
		},
	}
}

func digestMirrorSet(name, source string, mirrors ...string) configv1.ImageDigestMirrorSet {
	set := configv1.ImageDigestMirrorSet{ObjectMeta: metav1.ObjectMeta{Name: name}}
	entry := configv1.ImageDigestMirrors{Source: source}
	for _, m := range mirrors {
		entry.Mirrors = append(entry.Mirrors, configv1.ImageMirror(m))
	}
	set.Spec.ImageDigestMirrors = []configv1.ImageDigestMirrors{entry}
	return set
}

func tagMirrorSet(name, source string, policy configv1.MirrorSourcePolicy, mirrors ...string) configv1.ImageTagMirrorSet {
	set := configv1.ImageTagMirrorSet{ObjectMeta: metav1.ObjectMeta{Name: name}}
	entry := configv1.ImageTagMirrors{Source: source, MirrorSourcePolicy: policy}
	for _, m := range mirrors {
		entry.Mirrors = append(entry.Mirrors, configv1.ImageMirror(m))
	}
	set.Spec.ImageTagMirrors = []configv1.ImageTagMirrors{entry}
	return set
}

func identityOf(t *testing.T, in pipeline.Inputs) string {
	t.Helper()
	plan := mustPrepare(t, in)
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(plan.Identity) {
		t.Fatalf("identity %q is not a SHA-256 in hex", plan.Identity)
	}
	return plan.Identity
}

func TestIdentityIsStable(t *testing.T) {
	a := identityOf(t, richInputs(false))
	if b := identityOf(t, richInputs(false)); a != b {
		t.Errorf("the same inputs gave two identities: %s, %s", a, b)
	}
	if b := identityOf(t, richInputs(true)); a != b {
		t.Errorf("the same inputs built in another order gave another identity: %s, %s", a, b)
	}
	// Plans of equal inputs carry equal build requests too, not only equal hashes.
	p1, p2 := mustPrepare(t, richInputs(false)), mustPrepare(t, richInputs(true))
	for i := range p1.Arches {
		if !slices.Equal(p1.Arches[i].Build.Containerfile, p2.Arches[i].Build.Containerfile) {
			t.Errorf("%s: the Containerfiles differ", p1.Arches[i].Arch)
		}
	}
	if string(p1.Registry.RegistriesConf) != string(p2.Registry.RegistriesConf) || string(p1.Registry.PolicyJSON) != string(p2.Registry.PolicyJSON) {
		t.Error("the registry configuration differs")
	}
}

func TestIdentityChangesWithWhatChangesTheImage(t *testing.T) {
	base := identityOf(t, richInputs(false))
	changes := []struct {
		name   string
		mutate func(*pipeline.Inputs)
	}{
		{"user content", func(in *pipeline.Inputs) {
			bi := &in.MachineOSConfig.Spec.BuildInputs
			for i := range bi.Containerfile {
				if bi.Containerfile[i].ContainerfileArch == mosbv1.ArchARM64 {
					bi.Containerfile[i].Content = "RUN echo arm-changed > /etc/arm"
				}
			}
		}},
		{"base image in the spec", func(in *pipeline.Inputs) { in.MachineOSConfig.Spec.BuildInputs.BaseOSImagePullspec = otherBase }},
		{"base image in machine-config-osimageurl", func(in *pipeline.Inputs) { in.OSImageURL[pipeline.OSImageURLBaseKey] = thirdBase }},
		{"rendered MachineConfig spec", func(in *pipeline.Inputs) {
			in.RenderedMachineConfig.Spec.KernelArguments = append(in.RenderedMachineConfig.Spec.KernelArguments, "mitigations=off")
		}},
		{"rendered MachineConfig ignition config", func(in *pipeline.Inputs) {
			in.RenderedMachineConfig.Spec.Config.Raw = []byte(`{"ignition":{"version":"3.4.0"},"passwd":{"users":[{"name":"core"}]}}`)
		}},
		// Mirror sets count when they cover something the build pulls (here the base image).
		{"a mirror set for the base image's repository added", func(in *pipeline.Inputs) {
			in.Cluster.ImageDigestMirrorSets = append(in.Cluster.ImageDigestMirrorSets,
				digestMirrorSet("c-more", pullRegistry+"/openshift/os", "mirror4.example.com/os"))
		}},
		{"a mirror of the base image's source added", func(in *pipeline.Inputs) {
			set := &in.Cluster.ImageDigestMirrorSets[1].Spec.ImageDigestMirrors[0]
			set.Mirrors = append(set.Mirrors, "mirror5.example.com/openshift")
		}},
		{"a mirror set of the base image's source deleted", func(in *pipeline.Inputs) {
			in.Cluster.ImageDigestMirrorSets = in.Cluster.ImageDigestMirrorSets[1:]
		}},
		{"the base image's source made NeverContactSource by a tag mirror set", func(in *pipeline.Inputs) {
			in.Cluster.ImageTagMirrorSets = append(in.Cluster.ImageTagMirrorSets,
				tagMirrorSet("tags", pullRegistry+"/openshift", configv1.NeverContactSource, "tags.example.com/openshift"))
		}},
		{"a registry blocked", func(in *pipeline.Inputs) {
			in.Cluster.Image.Spec.RegistrySources.BlockedRegistries = []string{"evil.example.com"}
		}},
		{"a CA replaced", func(in *pipeline.Inputs) {
			in.Cluster.AdditionalTrustedCA.Data["registry.example.com..5000"] = string(testCAs[1])
		}},
		{"builder version", func(in *pipeline.Inputs) { in.BuilderVersion = "mosb-test-2" }},
		{"target tag", func(in *pipeline.Inputs) {
			in.MachineOSConfig.Spec.BuildInputs.RenderedImagePushspec = pushRegistry + "/os/worker:v2"
		}},
		{"target repository", func(in *pipeline.Inputs) {
			in.MachineOSConfig.Spec.BuildInputs.RenderedImagePushspec = pushRegistry + "/os/other:latest"
		}},
		{"architectures", func(in *pipeline.Inputs) { in.Arches = []string{"arm64"} }},
	}
	seen := map[string]string{base: "the unchanged inputs"}
	for _, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			in := richInputs(false)
			c.mutate(&in)
			id := identityOf(t, in)
			if prev, dup := seen[id]; dup {
				t.Errorf("identity %s is the same as for %s", id[:10], prev)
			}
			seen[id] = c.name
		})
	}
}

func TestIdentityIgnoresWhatDoesNotChangeTheImage(t *testing.T) {
	base := identityOf(t, richInputs(false))
	same := []struct {
		name   string
		mutate func(*pipeline.Inputs)
	}{
		{"secret passwords", func(in *pipeline.Inputs) {
			in.PullSecret = dockerSecret(pullName, pullRegistry, "puller", "another-pull-password")
			in.PushSecret = dockerSecret(pushName, pushRegistry, "pusher", "another-push-password")
		}},
		{"rendered MachineConfig server bookkeeping", func(in *pipeline.Inputs) {
			mc := in.RenderedMachineConfig
			mc.ResourceVersion = "918273"
			mc.CreationTimestamp = metav1.NewTime(time.Date(2024, 4, 3, 6, 59, 48, 0, time.UTC))
			mc.ManagedFields = []metav1.ManagedFieldsEntry{{
				Manager: "machine-config-controller", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "machineconfiguration.openshift.io/v1",
				FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{}}`)},
			}}
		}},
		{"order of the mirror sets", func(in *pipeline.Inputs) { slices.Reverse(in.Cluster.ImageDigestMirrorSets) }},
		// Mirror sets that cover nothing the build pulls do not count.
		{"a mirror set for images the build does not pull", func(in *pipeline.Inputs) {
			in.Cluster.ImageDigestMirrorSets = append(in.Cluster.ImageDigestMirrorSets,
				digestMirrorSet("c-more", "docker.io/library", "mirror.example.com/library"))
		}},
		{"a mirror set for another repository of the base image's registry", func(in *pipeline.Inputs) {
			in.Cluster.ImageDigestMirrorSets = append(in.Cluster.ImageDigestMirrorSets,
				digestMirrorSet("c-more", pullRegistry+"/openshift/other", "mirror.example.com/other"))
		}},
		{"a tag mirror for the base image's source (the build pulls by digest)", func(in *pipeline.Inputs) {
			in.Cluster.ImageTagMirrorSets = append(in.Cluster.ImageTagMirrorSets,
				tagMirrorSet("tags", pullRegistry+"/openshift", "", "tags.example.com/openshift"))
		}},
	}
	for _, s := range same {
		t.Run(s.name, func(t *testing.T) {
			in := richInputs(false)
			s.mutate(&in)
			if id := identityOf(t, in); id != base {
				t.Errorf("identity changed: %s, was %s", id[:10], base[:10])
			}
		})
	}
}

// The build's registries.conf, and so its identity, holds the mirror rules of what the build
// pulls: the base and extensions images and every image its Containerfile names (FROM, COPY
// --from, RUN --mount from=), short names on each search registry. When the pulls cannot be
// known statically (an image named through an ARG), every mirror set counts.
func TestIdentityFollowsTheMirrorsOfWhatTheBuildPulls(t *testing.T) {
	const tools = "quay.io/tools/builder@sha256:5555555555555555555555555555555555555555555555555555555555555555"
	idmsFor := func(source string) func(*pipeline.Inputs) {
		return func(in *pipeline.Inputs) {
			in.Cluster.ImageDigestMirrorSets = append(in.Cluster.ImageDigestMirrorSets, digestMirrorSet("added", source, "added.example.com/m"))
		}
	}
	itmsFor := func(source string) func(*pipeline.Inputs) {
		return func(in *pipeline.Inputs) {
			in.Cluster.ImageTagMirrorSets = append(in.Cluster.ImageTagMirrorSets, tagMirrorSet("added", source, "", "added.example.com/m"))
		}
	}
	tests := []struct {
		name    string
		content string
		search  []string
		add     func(*pipeline.Inputs)
		changes bool
	}{
		{"base image's repository, more specific than the existing source", userContent, nil, idmsFor(pullRegistry + "/openshift/os"), true},
		// quay.example.com/openshift, the source of mirrorSets, is more specific: buildah never
		// uses the new set for the base image.
		{"base image's registry, hidden by a more specific source", userContent, nil, idmsFor(pullRegistry), false},
		{"extensions image's repository", userContent, nil, idmsFor(pullRegistry + "/openshift/ext"), true},
		{"another repository", userContent, nil, idmsFor(pullRegistry + "/openshift/other"), false},
		{"another registry", userContent, nil, idmsFor("docker.io"), false},
		{"FROM image", "FROM " + tools + " AS tools\nFROM configs\nCOPY --from=tools /usr/bin/tool /usr/bin/tool", nil, idmsFor("quay.io/tools"), true},
		{"FROM image, unrelated set", "FROM " + tools + " AS tools\nFROM configs\nCOPY --from=tools /usr/bin/tool /usr/bin/tool", nil, idmsFor("quay.io/other"), false},
		{"COPY --from image by tag", "COPY --from=quay.io/tools/builder:1 /usr/bin/tool /usr/bin/tool", nil, itmsFor("quay.io/tools"), true},
		{"RUN --mount from= image by tag", "RUN --mount=type=bind,from=quay.io/tools/builder:1,target=/t ls /t", nil, itmsFor("quay.io/tools/builder"), true},
		{"short name on the search registry", "FROM tools:1 AS tools\nFROM configs\nCOPY --from=tools /usr/bin/tool /usr/bin/tool",
			[]string{"search.example.com"}, itmsFor("search.example.com/tools"), true},
		{"short name, another registry", "FROM tools:1 AS tools\nFROM configs\nCOPY --from=tools /usr/bin/tool /usr/bin/tool",
			[]string{"search.example.com"}, itmsFor("other.example.com/tools"), false},
		// The fallback: the build's pulls are not all known, so the whole configuration counts.
		{"image named through an ARG", "ARG TOOLS=" + tools + "\nFROM $TOOLS AS tools\nFROM configs\nCOPY --from=tools /usr/bin/tool /usr/bin/tool",
			nil, idmsFor("docker.io"), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inputs := func() pipeline.Inputs {
				in := validInputs()
				in.MachineOSConfig.Spec.BuildInputs.BaseOSExtensionsImagePullspec = extImage
				in.MachineOSConfig.Spec.BuildInputs.Containerfile[0].Content = tc.content
				in.Cluster.ImageDigestMirrorSets = mirrorSets()
				in.Cluster.Image = imageConfig(func(s *configv1.ImageSpec) { s.RegistrySources.ContainerRuntimeSearchRegistries = tc.search })
				return in
			}
			before := mustPrepare(t, inputs())
			in := inputs()
			tc.add(&in)
			after := mustPrepare(t, in)
			if changed := before.Identity != after.Identity; changed != tc.changes {
				t.Errorf("identity changed: %v, want %v\nregistries.conf before:\n%s\nafter:\n%s", changed, tc.changes,
					before.Registry.RegistriesConf, after.Registry.RegistriesConf)
			}
		})
	}
}

// Plan.Config stays the whole cluster configuration, for mosb's own registry calls and checks;
// only the build's registries.conf is scoped to what the build pulls.
func TestPlanConfigIsWholeButRegistriesConfIsScoped(t *testing.T) {
	in := validInputs()
	in.Cluster.ImageDigestMirrorSets = append(mirrorSets(), digestMirrorSet("unrelated", "docker.io/library", "hub.example.com/library"))
	plan := mustPrepare(t, in)
	busybox := mustParse(t, "docker.io/library/busybox@sha256:"+strings.Repeat("7", 64))
	if got := plan.Config.PullSources(busybox); len(got) != 2 || got[0].Reference.Host != "hub.example.com" {
		t.Errorf("Plan.Config pull sources of %s = %v, want the mirror then the source", busybox, got)
	}
	conf := string(plan.Registry.RegistriesConf)
	if strings.Contains(conf, "docker.io/library") || strings.Contains(conf, "hub.example.com") {
		t.Errorf("the build's registries.conf has the mirror set of an image it does not pull:\n%s", conf)
	}
	for _, want := range []string{pullRegistry + "/openshift", "mirror.example.com/openshift", "mirror2.example.com/openshift", "mirror3.example.com/openshift"} {
		if !strings.Contains(conf, `"`+want+`"`) {
			t.Errorf("the build's registries.conf lacks %s:\n%s", want, conf)
		}
	}
}

func mustParse(t *testing.T, s string) registry.Reference {
	t.Helper()
	ref, err := registry.ParsePullspec(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func TestMachineOSBuildName(t *testing.T) {
	plan := mustPrepare(t, richInputs(false))
	name := plan.MachineOSBuildName(moscName)
	if !regexp.MustCompile(`^` + moscName + `-[0-9a-f]{10}$`).MatchString(name) {
		t.Fatalf("MachineOSBuild name %q is not <mosc>-<10 hex>", name)
	}
	if want := moscName + "-" + plan.Identity[:10]; name != want {
		t.Errorf("name %q, want %q (the identity's first 10 digits)", name, want)
	}
	other := richInputs(false)
	other.BuilderVersion = "mosb-test-2"
	if mustPrepare(t, other).MachineOSBuildName(moscName) == name {
		t.Error("two identities gave one MachineOSBuild name")
	}
}

// Prepare must not change what it was given: the controller passes objects from its cache.
func TestPrepareDoesNotMutateItsInputs(t *testing.T) {
	in := richInputs(false)
	before := fmt.Sprintf("%#v|%#v|%#v|%v|%v", *in.MachineOSConfig, *in.RenderedMachineConfig, in.Cluster.ImageDigestMirrorSets, in.OSImageURL, in.Arches)
	mustPrepare(t, in)
	after := fmt.Sprintf("%#v|%#v|%#v|%v|%v", *in.MachineOSConfig, *in.RenderedMachineConfig, in.Cluster.ImageDigestMirrorSets, in.OSImageURL, in.Arches)
	if before != after {
		t.Error("Prepare changed its inputs")
	}
}
