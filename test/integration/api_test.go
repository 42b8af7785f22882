package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/test/harness"
)

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func validMOSC(name string) *mosbv1.MachineOSConfig {
	return harness.MachineOSConfig(name, "worker", "quay.io/openshift/os@"+digest, "registry.example.com:5000/os/worker:latest")
}

func TestMachineOSConfigEveryFieldRoundTrips(t *testing.T) {
	cp := controlPlane(t)
	ctx := testContext(t)
	in := validMOSC("roundtrip")
	in.Spec.BuildInputs.BaseOSExtensionsImagePullspec = "quay.io/openshift/ext@" + digest
	in.Spec.BuildInputs.ReleaseVersion = "4.16.0-0.nightly-2024-04-03-065948"
	in.Spec.BuildInputs.Containerfile = []mosbv1.MachineOSContainerfile{
		{ContainerfileArch: mosbv1.NoArch, Content: "RUN echo all"},
		{ContainerfileArch: mosbv1.ArchAArch64, Content: "RUN echo arm"},
		{ContainerfileArch: mosbv1.ArchX86_64, Content: "RUN echo x86"},
		{ContainerfileArch: mosbv1.ArchPPC64LE, Content: "RUN echo ppc"},
		{ContainerfileArch: mosbv1.ArchS390X, Content: "RUN echo z"},
	}
	in.Spec.BuildOutputs.CurrentImagePullSecret = &mosbv1.ImageSecretObjectReference{Name: "current-pull"}
	want := in.Spec.DeepCopy()
	if err := create(ctx, t, cp.Client, in); err != nil {
		t.Fatalf("create: %v", err)
	}

	got := &mosbv1.MachineOSConfig{}
	if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(in), got); err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(*want, got.Spec) {
		t.Errorf("spec did not round-trip:\nwant %+v\ngot  %+v", *want, got.Spec)
	}

	// status is a subresource: written through /status, every field kept.
	got.Status = mosbv1.MachineOSConfigStatus{
		ObservedGeneration:   got.Generation,
		CurrentImagePullspec: mosbv1.ImageDigestFormat("registry.example.com:5000/os/worker@" + digest),
		Conditions: []metav1.Condition{{
			Type: mosbv1.MachineOSConfigReady, Status: metav1.ConditionTrue, Reason: "BuildSucceeded",
			Message: "image built", LastTransitionTime: metav1.Now(), ObservedGeneration: got.Generation,
		}},
	}
	wantStatus := got.Status.DeepCopy()
	if err := cp.Client.Status().Update(ctx, got); err != nil {
		t.Fatalf("status update: %v", err)
	}
	again := &mosbv1.MachineOSConfig{}
	if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(in), again); err != nil {
		t.Fatal(err)
	}
	// metav1.Time is second-precision on the wire.
	wantStatus.Conditions[0].LastTransitionTime = again.Status.Conditions[0].LastTransitionTime
	if !equality.Semantic.DeepEqual(*wantStatus, again.Status) {
		t.Errorf("status did not round-trip:\nwant %+v\ngot  %+v", *wantStatus, again.Status)
	}
}

func TestMinimalExampleIsAcceptedAndDefaulted(t *testing.T) {
	cp := controlPlane(t)
	ctx := testContext(t)
	raw, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "examples", "machineosconfig.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := &mosbv1.MachineOSConfig{}
	if err := yaml.Unmarshal(raw, m); err != nil {
		t.Fatal(err)
	}
	m.Name = "minimal"
	m.Spec.BuildInputs.Containerfile = []mosbv1.MachineOSContainerfile{{Content: "RUN true"}}
	if err := create(ctx, t, cp.Client, m); err != nil {
		t.Fatalf("the minimal example was refused: %v", err)
	}
	if got := m.Spec.BuildInputs.Containerfile[0].ContainerfileArch; got != mosbv1.NoArch {
		t.Errorf("containerfileArch defaulted to %q, want noarch", got)
	}
}

func TestInvalidMachineOSConfigsAreRejectedByTheAPIServer(t *testing.T) {
	cp := controlPlane(t)
	ctx := testContext(t)
	cases := []struct {
		name   string
		mutate func(*mosbv1.MachineOSConfig)
		// every fragment must appear in the API server's message
		want []string
	}{
		{"pushspec without a tag", func(m *mosbv1.MachineOSConfig) {
			m.Spec.BuildInputs.RenderedImagePushspec = "registry.example.com/os/worker"
		}, []string{"spec.buildInputs.renderedImagePushspec", "must end with a tag"}},
		{"pushspec by digest", func(m *mosbv1.MachineOSConfig) {
			m.Spec.BuildInputs.RenderedImagePushspec = mosbv1.ImageTagPushspec("registry.example.com/os/worker@" + digest)
		}, []string{"spec.buildInputs.renderedImagePushspec", "not a digest"}},
		{"base image by tag", func(m *mosbv1.MachineOSConfig) {
			m.Spec.BuildInputs.BaseOSImagePullspec = "quay.io/openshift/os:latest"
		}, []string{"spec.buildInputs.baseOSImagePullspec", "by digest"}},
		{"extensions image by tag", func(m *mosbv1.MachineOSConfig) {
			m.Spec.BuildInputs.BaseOSExtensionsImagePullspec = "quay.io/openshift/ext:latest"
		}, []string{"spec.buildInputs.baseOSExtensionsImagePullspec", "by digest"}},
		{"digest too short", func(m *mosbv1.MachineOSConfig) {
			m.Spec.BuildInputs.BaseOSImagePullspec = mosbv1.ImageDigestFormat("quay.io/openshift/os@" + digest[:len(digest)-1])
		}, []string{"spec.buildInputs.baseOSImagePullspec", "exactly 64 lowercase hexadecimal"}},
		{"digest with uppercase hex", func(m *mosbv1.MachineOSConfig) {
			m.Spec.BuildInputs.BaseOSImagePullspec = mosbv1.ImageDigestFormat("quay.io/openshift/os@" + strings.ToUpper(digest[:8]) + digest[8:])
		}, []string{"spec.buildInputs.baseOSImagePullspec", "lowercase hexadecimal"}},
		{"base image without a registry host", func(m *mosbv1.MachineOSConfig) {
			m.Spec.BuildInputs.BaseOSImagePullspec = mosbv1.ImageDigestFormat("@" + digest)
		}, []string{"spec.buildInputs.baseOSImagePullspec", "host[:port][/namespace]/name"}},
		{"missing machineConfigPool", func(m *mosbv1.MachineOSConfig) {
			m.Spec.MachineConfigPool.Name = ""
		}, []string{"spec.machineConfigPool.name"}},
		{"missing renderedImagePushSecret", func(m *mosbv1.MachineOSConfig) {
			m.Spec.BuildInputs.RenderedImagePushSecret.Name = ""
		}, []string{"spec.buildInputs.renderedImagePushSecret.name"}},
		{"unknown imageBuilderType", func(m *mosbv1.MachineOSConfig) {
			m.Spec.BuildInputs.ImageBuilder.ImageBuilderType = "Job"
		}, []string{"spec.buildInputs.imageBuilder.imageBuilderType", "PodImageBuilder"}},
		{"unknown containerfileArch", func(m *mosbv1.MachineOSConfig) {
			m.Spec.BuildInputs.Containerfile = []mosbv1.MachineOSContainerfile{{ContainerfileArch: "riscv64", Content: "RUN true"}}
		}, []string{"spec.buildInputs.containerFile[0].containerfileArch", "riscv64"}},
		{"two entries for the same arch", func(m *mosbv1.MachineOSConfig) {
			m.Spec.BuildInputs.Containerfile = []mosbv1.MachineOSContainerfile{
				{ContainerfileArch: mosbv1.ArchARM64, Content: "RUN true"},
				{ContainerfileArch: mosbv1.ArchARM64, Content: "RUN false"},
			}
		}, []string{"spec.buildInputs.containerFile[1]", "Duplicate value"}},
		{"arm64 and aarch64 together", func(m *mosbv1.MachineOSConfig) {
			m.Spec.BuildInputs.Containerfile = []mosbv1.MachineOSContainerfile{
				{ContainerfileArch: mosbv1.ArchARM64, Content: "RUN true"},
				{ContainerfileArch: mosbv1.ArchAArch64, Content: "RUN false"},
			}
		}, []string{"spec.buildInputs.containerFile", "arm64 and aarch64 are the same"}},
		{"amd64 and x86_64 together", func(m *mosbv1.MachineOSConfig) {
			m.Spec.BuildInputs.Containerfile = []mosbv1.MachineOSContainerfile{
				{ContainerfileArch: mosbv1.ArchAMD64, Content: "RUN true"},
				{ContainerfileArch: mosbv1.ArchX86_64, Content: "RUN false"},
			}
		}, []string{"spec.buildInputs.containerFile", "amd64 and x86_64 are the same"}},
		{"empty containerFile content", func(m *mosbv1.MachineOSConfig) {
			m.Spec.BuildInputs.Containerfile = []mosbv1.MachineOSContainerfile{{Content: ""}}
		}, []string{"spec.buildInputs.containerFile[0].content"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := validMOSC("invalid-" + strings.ReplaceAll(strings.ToLower(tc.name), " ", "-"))
			tc.mutate(m)
			err := cp.Client.Create(ctx, m)
			if err == nil {
				t.Fatalf("case %d: the API server accepted %s", i, tc.name)
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			for _, frag := range tc.want {
				if !strings.Contains(err.Error(), frag) {
					t.Errorf("message does not name %q:\n%v", frag, err)
				}
			}
		})
	}
	// The same object with nothing wrong is accepted: the cases above fail for their own reason.
	if err := create(ctx, t, cp.Client, validMOSC("invalid-control")); err != nil {
		t.Fatalf("the valid control object was refused: %v", err)
	}
}

func TestPushspecForms(t *testing.T) {
	cp := controlPlane(t)
	ctx := testContext(t)
	for i, spec := range []string{
		"registry.example.com/os/worker:latest",
		"registry.example.com:5000/os/worker:4.16",
		"localhost:5000/worker:v1",
		"127.0.0.1:5000/a/b/c:tag_1.2-3",
		"image-registry.openshift-image-registry.svc:5000/openshift-machine-config-operator/os-image:latest",
	} {
		m := validMOSC("pushspec-" + string(rune('a'+i)))
		m.Spec.BuildInputs.RenderedImagePushspec = mosbv1.ImageTagPushspec(spec)
		if err := create(ctx, t, cp.Client, m); err != nil {
			t.Errorf("pushspec %q refused: %v", spec, err)
		}
	}
}

func TestMachineOSBuildSpecIsImmutableAndStatusRoundTrips(t *testing.T) {
	cp := controlPlane(t)
	ctx := testContext(t)
	b := &mosbv1.MachineOSBuild{
		ObjectMeta: metav1.ObjectMeta{Name: "worker-0123abcd"},
		Spec: mosbv1.MachineOSBuildSpec{
			MachineOSConfig:       mosbv1.MachineOSConfigReference{Name: "worker"},
			RenderedMachineConfig: "rendered-worker-1",
			BuildIdentity:         "0123abcd",
			RenderedImagePushspec: "registry.example.com/os/worker:latest",
			BaseOSImagePullspec:   "quay.io/openshift/os@" + digest,
			ReleaseVersion:        "4.16.0",
			Architectures:         []string{"amd64", "arm64"},
		},
	}
	if err := create(ctx, t, cp.Client, b); err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	b.Status = mosbv1.MachineOSBuildStatus{
		Conditions: []metav1.Condition{{Type: mosbv1.MachineOSBuildSucceeded, Status: metav1.ConditionTrue, Reason: "Pushed", LastTransitionTime: now}},
		Architectures: []mosbv1.ArchitectureBuild{
			{Architecture: "amd64", PodName: "p1", ContainerfileArch: "noarch", DigestedImagePushspec: "registry.example.com/os/worker@" + digest},
			{Architecture: "arm64", PodName: "p2", Message: "built without user content: no arm64 or noarch containerFile entry"},
		},
		DigestedImagePushspec: "registry.example.com/os/worker@" + digest,
		BuildStart:            &now,
		BuildEnd:              &now,
	}
	if err := cp.Client.Status().Update(ctx, b); err != nil {
		t.Fatal(err)
	}
	got := &mosbv1.MachineOSBuild{}
	if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(b), got); err != nil {
		t.Fatal(err)
	}
	if len(got.Status.Architectures) != 2 || got.Status.Architectures[1].Message == "" || got.Status.DigestedImagePushspec == "" || got.Status.BuildEnd == nil {
		t.Errorf("status lost fields: %+v", got.Status)
	}
	got.Spec.BuildIdentity = "ffff0000"
	err := cp.Client.Update(ctx, got)
	if err == nil || !strings.Contains(err.Error(), "immutable") {
		t.Errorf("changing a MachineOSBuild's spec: want an immutable error, got %v", err)
	}
}

// kubectl reads the preferred version, v1, through the conversion webhook: its columns are mosb's.
func TestKubectlPrintsPrinterColumns(t *testing.T) {
	cp := v1Plane(t)
	ctx := testContext(t)
	m := validMOSC("columns")
	if err := create(ctx, t, cp.Client, m); err != nil {
		t.Fatal(err)
	}
	m.Status.CurrentImagePullspec = mosbv1.ImageDigestFormat("registry.example.com:5000/os/worker@" + digest)
	m.Status.Conditions = []metav1.Condition{{Type: mosbv1.MachineOSConfigReady, Status: metav1.ConditionTrue, Reason: "BuildSucceeded", LastTransitionTime: metav1.Now()}}
	if err := cp.Client.Status().Update(ctx, m); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, filepath.Join(cp.Assets, "kubectl"), "--kubeconfig", cp.Kubeconfig,
		"get", "machineosconfigs", "columns").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 {
		t.Fatalf("kubectl printed:\n%s", out)
	}
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != "NAME POOL READY IMAGE AGE" {
		t.Errorf("header = %q, want NAME POOL READY IMAGE AGE", lines[0])
	}
	row := strings.Fields(lines[1])
	if len(row) < 4 || row[0] != "columns" || row[1] != "worker" || row[2] != "True" || row[3] != string(m.Status.CurrentImagePullspec) {
		t.Errorf("row = %q", lines[1])
	}
}
