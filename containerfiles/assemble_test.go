package containerfiles

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	docker "github.com/fsouza/go-dockerclient"
	"github.com/openshift/imagebuilder"

	"github.com/mosb-dev/mosb/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const (
	testBaseImage       = "registry.example.com/os/rhcos@sha256:1111111111111111111111111111111111111111111111111111111111111111"
	testExtensionsImage = "registry.example.com/os/rhcos-extensions@sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

var testRenderedConfig = []byte(`{"apiVersion":"machineconfiguration.openshift.io/v1","kind":"MachineConfig","metadata":{"name":"rendered-worker-0123"}}`)

func baseInput(list []v1alpha1.MachineOSContainerfile) Input {
	return Input{
		MachineOSConfig:              "worker-os",
		Pool:                         "worker",
		BaseImage:                    testBaseImage,
		RenderedMachineConfig:        "rendered-worker-0123",
		RenderedMachineConfigContent: testRenderedConfig,
		Entries:                      list,
	}
}

type goldenCase struct {
	name string
	arch Arch
	in   Input
	// wantSource is the entry the case must use.
	wantSource Source
}

func goldenCases() []goldenCase {
	perArch := entries(
		"x86_64", "RUN echo amd64 > /etc/arch-note\n",
		"aarch64", "RUN echo arm64 > /etc/arch-note\n",
		"noarch", "RUN echo other > /etc/arch-note\n",
	)
	withExtensions := baseInput(entries("noarch", strings.Join([]string{
		"COPY --from=extensions /usr/share/rpm-ostree/extensions/ /var/lib/extensions/",
		"RUN --mount=type=bind,from=extensions,source=/,target=/run/extensions \\",
		"    ls /run/extensions > /etc/extensions-list",
	}, "\n")))
	withExtensions.ExtensionsImage = testExtensionsImage
	withoutMachineConfig := baseInput(entries("noarch", "RUN echo hello > /etc/hello\n"))
	withoutMachineConfig.RenderedMachineConfig, withoutMachineConfig.RenderedMachineConfigContent = "", nil
	withRelease := baseInput(entries("noarch", "RUN echo hello > /etc/hello\n"))
	withRelease.ReleaseVersion = "4.16.0-0.nightly-2024-04-03-065948"
	multiStage := baseInput(entries("noarch", strings.Join([]string{
		"ARG GREETING=hello",
		"ARG HELPER=configs",
		"FROM ${HELPER} AS helper",
		"RUN echo built > /tmp/artefact",
		"",
		"FROM configs AS final",
		"ARG GREETING",
		"COPY --from=helper /tmp/artefact /etc/artefact",
		"RUN <<EOF",
		"echo \"$GREETING\" > /etc/greeting",
		"EOF",
	}, "\n")))

	withMachineConfigLayer := baseInput(entries("noarch", "RUN echo hello > /etc/hello\n"))
	withMachineConfigLayer.MachineConfigLayer = []byte("a gzip tar")
	withMachineConfigLayer.TrustedCABundle = []byte("-----BEGIN CERTIFICATE-----\n")

	return []goldenCase{
		{name: "noarch-only", arch: AMD64, in: baseInput(entries("noarch", "RUN echo hello > /etc/hello\n")), wantSource: SourceNoArch},
		{name: "per-arch", arch: ARM64, in: baseInput(perArch), wantSource: SourceOwn},
		{name: "fallback-to-noarch", arch: PPC64LE, in: baseInput(perArch), wantSource: SourceNoArch},
		{name: "no-user-content", arch: S390X, in: baseInput(entries("amd64", "RUN true\n")), wantSource: SourceNone},
		{name: "with-extensions", arch: AMD64, in: withExtensions, wantSource: SourceNoArch},
		{name: "without-rendered-machineconfig", arch: AMD64, in: withoutMachineConfig, wantSource: SourceNoArch},
		{name: "with-release-version", arch: AMD64, in: withRelease, wantSource: SourceNoArch},
		{name: "multi-stage", arch: AMD64, in: multiStage, wantSource: SourceNoArch},
		{name: "with-machineconfig-layer-and-trusted-ca", arch: AMD64, in: withMachineConfigLayer, wantSource: SourceNoArch},
	}
}

func TestAssembleGolden(t *testing.T) {
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Assemble(tc.in, tc.arch)
			if err != nil {
				t.Fatal(err)
			}
			if got.Selection.Source != tc.wantSource || got.Arch != tc.arch {
				t.Errorf("selection %+v for %s, want source %s", got.Selection, got.Arch, tc.wantSource)
			}
			again, err := Assemble(tc.in, tc.arch)
			if err != nil || again.Text != got.Text {
				t.Fatalf("a second Assemble differs (err %v)", err)
			}
			path := filepath.Join("testdata", tc.name+".containerfile")
			if *update {
				if err := os.WriteFile(path, []byte(got.Text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run the test with -update to write it)", err)
			}
			if got.Text != string(want) {
				t.Errorf("Containerfile differs from %s (rerun with -update if the change is intended):\n%s", path, got.Text)
			}
			if err := CheckContainerfile(got.Text); err != nil {
				t.Errorf("CheckContainerfile: %v", err)
			}
		})
	}
}

// finalStage runs a Containerfile's final stage through imagebuilder's evaluator, as buildah would,
// and records what it would do.
type finalStage struct {
	name   string
	image  string
	labels map[string]string
	copies []imagebuilder.Copy
	runs   []imagebuilder.Run
	stages int
}

type recordingExecutor struct {
	imagebuilder.Executor
	copies []imagebuilder.Copy
	runs   []imagebuilder.Run
}

func (r *recordingExecutor) Copy(_ []string, copies ...imagebuilder.Copy) error {
	r.copies = append(r.copies, copies...)
	return nil
}

func (r *recordingExecutor) Run(run imagebuilder.Run, _ docker.Config) error {
	r.runs = append(r.runs, run)
	return nil
}

func evaluateFinalStage(t *testing.T, text string) finalStage {
	t.Helper()
	root, err := imagebuilder.ParseDockerfile(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	stages, err := imagebuilder.NewStages(root, imagebuilder.NewBuilder(nil))
	if err != nil {
		t.Fatal(err)
	}
	last := stages[len(stages)-1]
	builder := last.Builder
	image, err := builder.From(last.Node)
	if err != nil {
		t.Fatal(err)
	}
	executor := &recordingExecutor{Executor: imagebuilder.NoopExecutor}
	for _, node := range last.Node.Children {
		step := builder.Step()
		if err := step.Resolve(node); err != nil {
			t.Fatal(err)
		}
		if err := builder.Run(step, executor, false); err != nil {
			t.Fatal(err)
		}
	}
	return finalStage{name: last.Name, image: image, labels: builder.RunConfig.Labels, copies: executor.copies, runs: executor.runs, stages: len(stages)}
}

func TestAssembledFinalStage(t *testing.T) {
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Assemble(tc.in, tc.arch)
			if err != nil {
				t.Fatal(err)
			}
			stage := evaluateFinalStage(t, got.Text)

			wantLabels := map[string]string{
				LabelMachineOSConfig:   tc.in.MachineOSConfig,
				LabelPool:              tc.in.Pool,
				LabelBaseImage:         tc.in.BaseImage,
				LabelContainerfileArch: string(got.Selection.EntryArch),
			}
			if got.Selection.Source == SourceNone {
				wantLabels[LabelContainerfileArch] = "none"
			}
			if tc.in.RenderedMachineConfig != "" {
				wantLabels[LabelRenderedMachineConfig] = tc.in.RenderedMachineConfig
			}
			if tc.in.ExtensionsImage != "" {
				wantLabels[LabelExtensionsImage] = tc.in.ExtensionsImage
			}
			if tc.in.ReleaseVersion != "" {
				wantLabels[LabelReleaseVersion] = tc.in.ReleaseVersion
			}
			for key, value := range wantLabels {
				if stage.labels[key] != value {
					t.Errorf("label %s = %q, want %q", key, stage.labels[key], value)
				}
			}
			for key := range stage.labels {
				if _, ok := wantLabels[key]; !ok {
					t.Errorf("unexpected label %s", key)
				}
			}

			// The last copy of the final stage is mosb's currentconfig, from the build context.
			hasConfig := len(tc.in.RenderedMachineConfigContent) > 0
			var lastCopy *imagebuilder.Copy
			if n := len(stage.copies); n > 0 {
				lastCopy = &stage.copies[n-1]
			}
			isCurrentConfig := lastCopy != nil && lastCopy.Dest == CurrentConfigPath && lastCopy.From == "" &&
				len(lastCopy.Src) == 1 && lastCopy.Src[0] == ContextCurrentConfig
			if hasConfig != isCurrentConfig {
				t.Errorf("rendered MachineConfig present %v, final stage's last copy %+v", hasConfig, lastCopy)
			}
			if hasConfig && !bytes.Equal(got.Context[ContextCurrentConfig], tc.in.RenderedMachineConfigContent) {
				t.Errorf("build context %q = %q", ContextCurrentConfig, got.Context[ContextCurrentConfig])
			}
			if !bytes.Equal(got.Context[ContextMachineConfigLayer], tc.in.MachineConfigLayer) {
				t.Errorf("build context %q = %q, want the layer", ContextMachineConfigLayer, got.Context[ContextMachineConfigLayer])
			}
			if !bytes.Equal(got.Context[ContextTrustedCA], tc.in.TrustedCABundle) {
				t.Errorf("build context %q = %q, want the bundle", ContextTrustedCA, got.Context[ContextTrustedCA])
			}
			if !hasConfig && len(got.Context) != 0 {
				t.Errorf("build context %v without a rendered MachineConfig", got.ContextPaths())
			}

			// The last run is the ostree commit, in exec form so no user SHELL changes it.
			if len(stage.runs) == 0 {
				t.Fatal("the final stage runs nothing")
			}
			lastRun := stage.runs[len(stage.runs)-1]
			if lastRun.Shell || strings.Join(lastRun.Args, " ") != "/bin/sh -c "+ostreeCommitScript {
				t.Errorf("last run = %+v", lastRun)
			}

			wantStages := 1
			if tc.in.ExtensionsImage != "" {
				wantStages++
			}
			if tc.name == "multi-stage" {
				wantStages += 2
				if stage.name != "final" || stage.image != StageConfigs {
					t.Errorf("final stage %q FROM %q, want final FROM configs", stage.name, stage.image)
				}
			} else if stage.name != StageConfigs || stage.image != tc.in.BaseImage {
				t.Errorf("final stage %q FROM %q, want configs FROM the base image", stage.name, stage.image)
			}
			if stage.stages != wantStages {
				t.Errorf("%d stages, want %d", stage.stages, wantStages)
			}
		})
	}
}

func TestAssembleHoistsHeadingArgsForUserFrom(t *testing.T) {
	got, err := Assemble(goldenCases()[7].in, AMD64)
	if err != nil {
		t.Fatal(err)
	}
	root, err := imagebuilder.ParseDockerfile(strings.NewReader(got.Text))
	if err != nil {
		t.Fatal(err)
	}
	stages, err := imagebuilder.NewStages(root, imagebuilder.NewBuilder(nil))
	if err != nil {
		t.Fatal(err)
	}
	helper, ok := stages.ByName("helper")
	if !ok {
		t.Fatal("no helper stage")
	}
	image, err := helper.Builder.From(helper.Node)
	if err != nil || image != StageConfigs {
		t.Errorf("helper stage FROM ${HELPER} resolved to %q (%v), want %q", image, err, StageConfigs)
	}
}

func TestLabelValuesSurviveQuoting(t *testing.T) {
	hostile := []string{
		`4.16.0 "quoted" $HOME ${X} \n \\ 'single' space end`,
		`$`, `\`, `"`, `'`, `ünïcödé ✓`, `a\`, `$(id)`, "`id`",
	}
	for _, version := range hostile {
		in := baseInput(nil)
		in.ReleaseVersion = version
		got, err := Assemble(in, AMD64)
		if err != nil {
			t.Fatalf("release version %q: %v", version, err)
		}
		stage := evaluateFinalStage(t, got.Text)
		if stage.labels[LabelReleaseVersion] != version {
			t.Errorf("release version label = %q, want %q", stage.labels[LabelReleaseVersion], version)
		}
	}
}

func TestAssembleKeepsUserContentVerbatim(t *testing.T) {
	content := "# a comment\r\nRUN echo one \\\r\n  two\r\n\r\nRUN <<EOF\r\necho three\r\nEOF\r\n"
	got, err := Assemble(baseInput(entries("noarch", content)), AMD64)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got.Text, content) {
		t.Errorf("the assembled Containerfile does not hold the content byte for byte:\n%q", got.Text)
	}
	if _, err := Assemble(baseInput(entries("noarch", "\uFEFFRUN echo bom")), AMD64); err != nil {
		t.Errorf("content with a byte order mark: %v", err)
	}
}

func TestAssembleDoesNotAliasInput(t *testing.T) {
	in := baseInput(entries("noarch", "RUN true"))
	got, err := Assemble(in, AMD64)
	if err != nil {
		t.Fatal(err)
	}
	in.RenderedMachineConfigContent[0] = 'X'
	defer func() { in.RenderedMachineConfigContent[0] = '{' }()
	if got.Context[ContextCurrentConfig][0] != '{' {
		t.Error("the build context shares memory with the input")
	}
	if paths := got.ContextPaths(); len(paths) != 1 || paths[0] != ContextCurrentConfig {
		t.Errorf("ContextPaths() = %v", paths)
	}
}

func TestAssembleRejectsInput(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Input)
		arch   Arch
		want   string
	}{
		{name: "base image missing", mutate: func(in *Input) { in.BaseImage = "" }, want: "base OS image pullspec is empty"},
		{name: "base image by tag", mutate: func(in *Input) { in.BaseImage = "registry.example.com/os/rhcos:4.16" }, want: "not by digest"},
		{name: "base image tag and digest", mutate: func(in *Input) {
			in.BaseImage = strings.Replace(testBaseImage, "@", ":4.16@", 1)
		}, want: "both a tag and a digest"},
		{name: "base image with a space", mutate: func(in *Input) { in.BaseImage = "registry.example.com/os rhcos@sha256:" + strings.Repeat("1", 64) }, want: "not a valid image reference"},
		{name: "base image with a newline", mutate: func(in *Input) { in.BaseImage = testBaseImage + "\nRUN evil" }, want: "not a valid image reference"},
		{name: "extensions image by tag", mutate: func(in *Input) { in.ExtensionsImage = "registry.example.com/os/ext:latest" }, want: "extensions image pullspec"},
		{name: "no MachineOSConfig name", mutate: func(in *Input) { in.MachineOSConfig = "" }, want: "MachineOSConfig name is empty"},
		{name: "bad pool name", mutate: func(in *Input) { in.Pool = "Worker Pool" }, want: "MachineConfigPool name"},
		{name: "bad rendered MachineConfig name", mutate: func(in *Input) { in.RenderedMachineConfig = "rendered\nLABEL x=y" }, want: "rendered MachineConfig name"},
		{name: "content without a name", mutate: func(in *Input) { in.RenderedMachineConfig = "" }, want: "content is set but not its name"},
		{name: "release version with a newline", mutate: func(in *Input) { in.ReleaseVersion = "4.16\nRUN evil" }, want: "control character"},
		{name: "release version not UTF-8", mutate: func(in *Input) { in.ReleaseVersion = "4.16\xff" }, want: "not valid UTF-8"},
		{name: "release version too long", mutate: func(in *Input) { in.ReleaseVersion = strings.Repeat("4", 1025) }, want: "longer than"},
		{name: "noarch build", mutate: func(*Input) {}, arch: NoArch, want: "not an architecture an image can be built for"},
		{name: "unknown build arch", mutate: func(*Input) {}, arch: "mips", want: `unknown architecture "mips"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := baseInput(entries("noarch", "RUN true"))
			tt.mutate(&in)
			arch := tt.arch
			if arch == "" {
				arch = AMD64
			}
			_, err := Assemble(in, arch)
			if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want ErrInvalidInput containing %q", err, tt.want)
			}
			if errors.Is(err, ErrInvalidContainerfile) {
				t.Errorf("an input error matches ErrInvalidContainerfile: %v", err)
			}
			if tt.arch == "" {
				if err := Validate(in); !errors.Is(err, ErrInvalidInput) {
					t.Errorf("Validate error = %v, want ErrInvalidInput", err)
				}
			}
		})
	}
}

func TestValidateChecksEveryEntry(t *testing.T) {
	in := baseInput(entries(
		"amd64", "RUN true",
		"aarch64", "RUN true\nFORM x",
		"noarch", "RUN \\",
	))
	// The amd64 build uses only the amd64 entry, which is fine.
	if _, err := Assemble(in, AMD64); err != nil {
		t.Fatalf("Assemble(amd64): %v", err)
	}
	err := Validate(in)
	if !errors.Is(err, ErrInvalidContainerfile) {
		t.Fatalf("Validate = %v, want ErrInvalidContainerfile", err)
	}
	for _, want := range []string{"containerFile[arch=aarch64] line 2", "containerFile[arch=noarch] line 1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error %q does not contain %q", err, want)
		}
	}
	if err := Validate(baseInput(entries("amd64", "RUN true", "x86_64", "RUN true"))); !errors.Is(err, ErrInvalidContainerfile) {
		t.Errorf("Validate with conflicting entries = %v", err)
	}
	if err := Validate(baseInput(entries("amd64", "RUN true", "noarch", "FROM configs AS final\nRUN true"))); err != nil {
		t.Errorf("Validate of valid entries: %v", err)
	}
}

func TestCheckContainerfile(t *testing.T) {
	tests := []struct {
		text    string
		wantErr string
	}{
		{text: "FROM busybox\nRUN true\n"},
		{text: "", wantErr: "no instructions"},
		{text: "RUN true\n", wantErr: "line 1"},
		{text: "FROM busybox\nFORM x\n", wantErr: `line 2: unknown instruction "FORM"`},
		{text: "FROM busybox\nCOPY --nope=1 a b\n", wantErr: "line 2"},
		{text: "FROM busybox\nRUN <<EOF\n", wantErr: "unterminated heredoc"},
	}
	for _, tt := range tests {
		err := CheckContainerfile(tt.text)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("CheckContainerfile(%q) = %v", tt.text, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("CheckContainerfile(%q) = %v, want an error containing %q", tt.text, err, tt.wantErr)
		}
	}
}

func TestInputFromMachineOSConfig(t *testing.T) {
	mosc := &v1alpha1.MachineOSConfig{}
	mosc.Name = "worker-os"
	mosc.Spec.MachineConfigPool.Name = "worker"
	mosc.Spec.BuildInputs.BaseOSImagePullspec = v1alpha1.ImageDigestFormat(testBaseImage)
	mosc.Spec.BuildInputs.BaseOSExtensionsImagePullspec = v1alpha1.ImageDigestFormat(testExtensionsImage)
	mosc.Spec.BuildInputs.ReleaseVersion = "4.16.0"
	mosc.Spec.BuildInputs.Containerfile = entries("noarch", "RUN true")
	in := InputFromMachineOSConfig(mosc)
	if in.MachineOSConfig != "worker-os" || in.Pool != "worker" || in.BaseImage != testBaseImage ||
		in.ExtensionsImage != testExtensionsImage || in.ReleaseVersion != "4.16.0" || len(in.Entries) != 1 {
		t.Errorf("InputFromMachineOSConfig = %+v", in)
	}
	in.Entries[0].Content = "changed"
	if mosc.Spec.BuildInputs.Containerfile[0].Content != "RUN true" {
		t.Error("the Input shares its entries with the MachineOSConfig")
	}
	if got := InputFromMachineOSConfig(nil); got.MachineOSConfig != "" {
		t.Errorf("InputFromMachineOSConfig(nil) = %+v", got)
	}
}
