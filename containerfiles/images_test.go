package containerfiles

import (
	"reflect"
	"strings"
	"testing"

	"github.com/mosb-dev/mosb/api/v1alpha1"
)

func TestPulledImages(t *testing.T) {
	const dg = "@sha256:1111111111111111111111111111111111111111111111111111111111111111"
	tests := []struct {
		name       string
		text       string
		images     []string
		unresolved []string
	}{
		{"one FROM", "FROM quay.io/os/base" + dg + "\nRUN true", []string{"quay.io/os/base" + dg}, nil},
		{"scratch pulls nothing", "FROM scratch\nCOPY --from=quay.io/x/y:1 / /", []string{"quay.io/x/y:1"}, nil},
		{"earlier stages are not images, in any case",
			"FROM quay.io/a/b:1 AS Build\nFROM build AS again\nFROM BUILD\nCOPY --from=again / /\nRUN --mount=type=bind,from=Build,target=/b true",
			[]string{"quay.io/a/b:1"}, nil},
		{"a stage named later is an image where it is used first",
			"FROM tools AS base\nFROM quay.io/a/b:1 AS tools\nFROM base",
			[]string{"tools", "quay.io/a/b:1"}, nil},
		{"COPY --from image and stage number",
			"FROM quay.io/a/b:1\nCOPY --from=docker.io/library/busybox:1.36 /bin/busybox /bin/\nCOPY --from=0 / /",
			[]string{"quay.io/a/b:1", "docker.io/library/busybox:1.36"}, nil},
		{"RUN --mount from= images, several mounts, any type",
			"FROM quay.io/a/b:1\nRUN --mount=type=bind,from=quay.io/t/u:2,target=/t --mount=type=cache,target=/c,from=quay.io/c/d:3 --mount=type=tmpfs,target=/x true",
			[]string{"quay.io/a/b:1", "quay.io/t/u:2", "quay.io/c/d:3"}, nil},
		{"each image once, in order of first use",
			"FROM quay.io/a/b:1 AS one\nFROM quay.io/a/b:1 AS two\nCOPY --from=quay.io/c/d:1 / /\nCOPY --from=quay.io/c/d:1 / /",
			[]string{"quay.io/a/b:1", "quay.io/c/d:1"}, nil},
		{"short names and flags as written",
			"FROM --platform=linux/amd64 busybox AS b\nFROM fedora:40",
			[]string{"busybox", "fedora:40"}, nil},
		{"ONBUILD is not run by this build",
			"FROM quay.io/a/b:1\nONBUILD COPY --from=quay.io/never/pulled:1 / /",
			[]string{"quay.io/a/b:1"}, nil},
		{"ARG in FROM: unresolved",
			"ARG BASE=quay.io/a/b:1\nFROM $BASE AS base\nFROM ${BASE}\nFROM base",
			nil, []string{"$BASE", "${BASE}"}},
		{"ARG in COPY --from and mount from=: unresolved",
			"FROM quay.io/a/b:1\nARG T=quay.io/t/u:1\nCOPY --from=$T / /\nRUN --mount=type=bind,from=${T},target=/t true",
			[]string{"quay.io/a/b:1"}, []string{"$T", "${T}"}},
		{"a variable standing for mount options: unresolved",
			"FROM quay.io/a/b:1\nARG M\nRUN --mount=$M true\nRUN --mount=type=cache,target=$DIR true",
			[]string{"quay.io/a/b:1"}, []string{"--mount=$M"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PulledImages(tc.text)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Images, tc.images) || !reflect.DeepEqual(got.Unresolved, tc.unresolved) {
				t.Errorf("PulledImages\n got: %q unresolved %q\nwant: %q unresolved %q", got.Images, got.Unresolved, tc.images, tc.unresolved)
			}
			if got.Complete() != (len(tc.unresolved) == 0) {
				t.Errorf("Complete() = %v with unresolved %q", got.Complete(), got.Unresolved)
			}
		})
	}
	if _, err := PulledImages("FROM quay.io/a/b:1\nRUN <<EOF\necho never closed\n"); err == nil {
		t.Error("an unparsable Containerfile gave no error")
	}
}

// On assembled Containerfiles: mosb's own stages (configs, extensions) are images once, then
// stages for the user content.
func TestPulledImagesOfAssembledContainerfiles(t *testing.T) {
	in := baseInput(entries("noarch", strings.Join([]string{
		"FROM quay.io/tools/builder:1 AS tools",
		"RUN --mount=type=bind,from=extensions,target=/ext ls /ext",
		"FROM configs AS final",
		"COPY --from=tools /usr/bin/tool /usr/bin/tool",
		"COPY --from=extensions / /ext",
	}, "\n")))
	in.ExtensionsImage = testExtensionsImage
	cf, err := Assemble(in, AMD64)
	if err != nil {
		t.Fatal(err)
	}
	got, err := PulledImages(cf.Text)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{testExtensionsImage, testBaseImage, "quay.io/tools/builder:1"}
	if !reflect.DeepEqual(got.Images, want) || !got.Complete() {
		t.Errorf("PulledImages = %+v, want %q, complete\n%s", got, want, cf.Text)
	}

	plain, err := Assemble(baseInput([]v1alpha1.MachineOSContainerfile{}), AMD64)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := PulledImages(plain.Text); !reflect.DeepEqual(got.Images, []string{testBaseImage}) || !got.Complete() {
		t.Errorf("without user content PulledImages = %+v, want only the base image", got)
	}
}
