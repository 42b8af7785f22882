package containerfiles

import (
	"errors"
	"strings"
	"testing"

	"github.com/mosb-dev/mosb/api/v1alpha1"
)

func TestNormalizeArch(t *testing.T) {
	tests := []struct {
		name    string
		want    Arch
		wantErr bool
	}{
		{"amd64", AMD64, false},
		{"x86_64", AMD64, false},
		{"arm64", ARM64, false},
		{"aarch64", ARM64, false},
		{"ppc64le", PPC64LE, false},
		{"s390x", S390X, false},
		{"noarch", NoArch, false},
		{"", "", true},
		{"AMD64", "", true},
		{"x86-64", "", true},
		{"mips", "", true},
		{"arm", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeArch(tt.name)
			if tt.wantErr {
				var unknown *UnknownArchError
				if !errors.As(err, &unknown) || unknown.Arch != tt.name {
					t.Fatalf("NormalizeArch(%q) error = %v, want *UnknownArchError naming it", tt.name, err)
				}
				for _, valid := range ValidArchNames() {
					if !strings.Contains(err.Error(), valid) {
						t.Errorf("error %q does not list %s", err, valid)
					}
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("NormalizeArch(%q) = %q, %v; want %q", tt.name, got, err, tt.want)
			}
		})
	}
}

func TestNormalizeBuildArch(t *testing.T) {
	for _, name := range []string{"noarch", "mips", ""} {
		if _, err := NormalizeBuildArch(name); err == nil {
			t.Errorf("NormalizeBuildArch(%q) accepted a non-build architecture", name)
		}
	}
	if _, err := NormalizeBuildArch("noarch"); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("NormalizeBuildArch(noarch) = %v, want ErrInvalidInput", err)
	}
	for _, arch := range BuildArches() {
		if got, err := NormalizeBuildArch(string(arch)); err != nil || got != arch {
			t.Errorf("NormalizeBuildArch(%q) = %q, %v", arch, got, err)
		}
	}
}

func entries(archAndContent ...string) []v1alpha1.MachineOSContainerfile {
	var list []v1alpha1.MachineOSContainerfile
	for i := 0; i+1 < len(archAndContent); i += 2 {
		list = append(list, v1alpha1.MachineOSContainerfile{
			ContainerfileArch: v1alpha1.ContainerfileArch(archAndContent[i]),
			Content:           archAndContent[i+1],
		})
	}
	return list
}

func TestCheckArchitectures(t *testing.T) {
	tests := []struct {
		name         string
		entries      []v1alpha1.MachineOSContainerfile
		wantConflict *ConflictingEntriesError
		wantUnknown  string
	}{
		{name: "none", entries: nil},
		{name: "one of each", entries: entries("amd64", "a", "aarch64", "b", "ppc64le", "c", "s390x", "d", "noarch", "e")},
		{name: "x86_64 and amd64", entries: entries("x86_64", "a", "arm64", "b", "amd64", "c"),
			wantConflict: &ConflictingEntriesError{Arch: AMD64, FirstIndex: 0, SecondIndex: 2, FirstName: "x86_64", SecondName: "amd64"}},
		{name: "aarch64 and arm64", entries: entries("arm64", "a", "aarch64", "b"),
			wantConflict: &ConflictingEntriesError{Arch: ARM64, FirstIndex: 0, SecondIndex: 1, FirstName: "arm64", SecondName: "aarch64"}},
		{name: "two amd64", entries: entries("amd64", "a", "amd64", "b"),
			wantConflict: &ConflictingEntriesError{Arch: AMD64, FirstIndex: 0, SecondIndex: 1, FirstName: "amd64", SecondName: "amd64"}},
		{name: "omitted arch and noarch", entries: entries("", "a", "noarch", "b"),
			wantConflict: &ConflictingEntriesError{Arch: NoArch, FirstIndex: 0, SecondIndex: 1, FirstName: "noarch", SecondName: "noarch"}},
		{name: "unknown arch", entries: entries("amd64", "a", "riscv64", "b"), wantUnknown: "riscv64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckArchitectures(tt.entries)
			switch {
			case tt.wantConflict != nil:
				var conflict *ConflictingEntriesError
				if !errors.As(err, &conflict) {
					t.Fatalf("error = %v, want *ConflictingEntriesError", err)
				}
				if *conflict != *tt.wantConflict {
					t.Errorf("conflict = %+v, want %+v", *conflict, *tt.wantConflict)
				}
				for _, part := range []string{tt.wantConflict.FirstName, tt.wantConflict.SecondName, "containerFile[" + string(rune('0'+tt.wantConflict.SecondIndex)) + "]"} {
					if !strings.Contains(err.Error(), part) {
						t.Errorf("error %q does not name %q", err, part)
					}
				}
				if !errors.Is(err, ErrInvalidContainerfile) {
					t.Errorf("error does not match ErrInvalidContainerfile")
				}
			case tt.wantUnknown != "":
				var unknown *UnknownArchError
				if !errors.As(err, &unknown) || unknown.Arch != tt.wantUnknown {
					t.Fatalf("error = %v, want unknown architecture %q", err, tt.wantUnknown)
				}
				if !strings.Contains(err.Error(), "containerFile[arch=riscv64]") || !errors.Is(err, ErrInvalidContainerfile) {
					t.Errorf("error %q does not name the entry or does not match ErrInvalidContainerfile", err)
				}
			default:
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
			}
		})
	}
}

func TestSelectEntry(t *testing.T) {
	tests := []struct {
		name       string
		entries    []v1alpha1.MachineOSContainerfile
		arch       Arch
		wantSource Source
		wantIndex  int
		wantEntry  Arch
		wantName   string
		wantErr    error
	}{
		{name: "own entry", entries: entries("amd64", "A", "noarch", "N"), arch: AMD64, wantSource: SourceOwn, wantIndex: 0, wantEntry: AMD64, wantName: "amd64"},
		{name: "own entry by alias", entries: entries("noarch", "N", "aarch64", "R"), arch: ARM64, wantSource: SourceOwn, wantIndex: 1, wantEntry: ARM64, wantName: "aarch64"},
		{name: "build arch given as alias", entries: entries("amd64", "A"), arch: "x86_64", wantSource: SourceOwn, wantIndex: 0, wantEntry: AMD64, wantName: "amd64"},
		{name: "falls back to noarch", entries: entries("amd64", "A", "noarch", "N"), arch: PPC64LE, wantSource: SourceNoArch, wantIndex: 1, wantEntry: NoArch, wantName: "noarch"},
		{name: "falls back to omitted arch", entries: entries("", "N"), arch: S390X, wantSource: SourceNoArch, wantIndex: 0, wantEntry: NoArch, wantName: "noarch"},
		{name: "none", entries: entries("amd64", "A"), arch: S390X, wantSource: SourceNone, wantIndex: -1},
		{name: "no entries", entries: nil, arch: AMD64, wantSource: SourceNone, wantIndex: -1},
		{name: "conflict", entries: entries("amd64", "A", "x86_64", "B"), arch: ARM64, wantErr: ErrInvalidContainerfile},
		{name: "noarch is no build arch", entries: entries("amd64", "A"), arch: NoArch, wantErr: ErrInvalidInput},
		{name: "unknown build arch", entries: entries("amd64", "A"), arch: "mips", wantErr: ErrInvalidInput},
		{name: "unknown entry arch", entries: entries("amd64", "A", "mips", "M"), arch: AMD64, wantErr: ErrInvalidContainerfile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SelectEntry(tt.entries, tt.arch)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Source != tt.wantSource || got.Index != tt.wantIndex || got.EntryArch != tt.wantEntry || got.EntryName != tt.wantName {
				t.Errorf("got %+v, want source %s index %d entry %s name %s", got, tt.wantSource, tt.wantIndex, tt.wantEntry, tt.wantName)
			}
			if tt.wantIndex >= 0 && got.Content != tt.entries[tt.wantIndex].Content {
				t.Errorf("content = %q, want the chosen entry's", got.Content)
			}
			if tt.wantIndex < 0 && got.Content != "" {
				t.Errorf("content = %q for no entry", got.Content)
			}
			want, _ := NormalizeBuildArch(string(tt.arch))
			if got.Arch != want {
				t.Errorf("Arch = %s, want %s", got.Arch, want)
			}
		})
	}
}
