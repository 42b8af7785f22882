package containerfiles

import (
	"fmt"
	"strings"

	"github.com/mosb-dev/mosb/api/v1alpha1"
)

// Arch is a normalised architecture: what mosb builds for (AMD64, ARM64, PPC64LE, S390X) or NoArch,
// the entry that applies to every architecture without one of its own. The values are the OCI/Go
// architecture names, so an Arch can be used as-is in a platform (linux/<arch>) or a node selector
// (kubernetes.io/arch).
type Arch string

// The normalised architectures.
const (
	AMD64   Arch = "amd64"
	ARM64   Arch = "arm64"
	PPC64LE Arch = "ppc64le"
	S390X   Arch = "s390x"
	NoArch  Arch = "noarch"
)

// archAliases maps every name a user may write to its normalised architecture. The spellings
// follow the MachineOSConfig CRD enum exactly (no case folding) so that `mosb build -f` accepts
// what the API server accepts, and nothing more.
var archAliases = map[string]Arch{
	"amd64":   AMD64,
	"x86_64":  AMD64,
	"arm64":   ARM64,
	"aarch64": ARM64,
	"ppc64le": PPC64LE,
	"s390x":   S390X,
	"noarch":  NoArch,
}

// validArchNames is archAliases' keys in the order error messages list them: the canonical names
// first, then the aliases.
var validArchNames = []string{"amd64", "arm64", "ppc64le", "s390x", "noarch", "x86_64", "aarch64"}

// BuildArches returns the architectures mosb can build an image for, in a fixed order.
func BuildArches() []Arch {
	return []Arch{AMD64, ARM64, PPC64LE, S390X}
}

// ValidArchNames returns every architecture name a containerFile entry may use.
func ValidArchNames() []string {
	return append([]string(nil), validArchNames...)
}

// IsBuildArch reports whether a is an architecture an image can be built for (not NoArch, not an alias).
func (a Arch) IsBuildArch() bool {
	switch a {
	case AMD64, ARM64, PPC64LE, S390X:
		return true
	}
	return false
}

// UnknownArchError is an architecture name mosb does not know.
type UnknownArchError struct {
	Arch string
}

func (e *UnknownArchError) Error() string {
	return fmt.Sprintf("unknown architecture %q: valid are %s", e.Arch, strings.Join(validArchNames, ", "))
}

// NormalizeArch maps what a user writes (x86_64, aarch64, amd64, …) to its normalised Arch.
func NormalizeArch(name string) (Arch, error) {
	if arch, ok := archAliases[name]; ok {
		return arch, nil
	}
	return "", &UnknownArchError{Arch: name}
}

// NormalizeBuildArch is NormalizeArch restricted to architectures an image can be built for.
func NormalizeBuildArch(name string) (Arch, error) {
	arch, err := NormalizeArch(name)
	if err != nil {
		return "", fmt.Errorf("%w: build architecture: %w", ErrInvalidInput, err)
	}
	if !arch.IsBuildArch() {
		return "", fmt.Errorf("%w: %q is not an architecture an image can be built for: use one of amd64, arm64, ppc64le, s390x", ErrInvalidInput, name)
	}
	return arch, nil
}

// entryArchName is the architecture of a containerFile entry as the user wrote it; an omitted
// architecture is noarch (the CRD default).
func entryArchName(entry v1alpha1.MachineOSContainerfile) string {
	if entry.ContainerfileArch == "" {
		return string(NoArch)
	}
	return string(entry.ContainerfileArch)
}

// ConflictingEntriesError is two containerFile entries for one architecture.
type ConflictingEntriesError struct {
	// Arch is the normalised architecture both entries are for.
	Arch Arch
	// FirstIndex and SecondIndex are the entries' positions in spec.buildInputs.containerFile.
	FirstIndex, SecondIndex int
	// FirstName and SecondName are the entries' containerfileArch as written (noarch when omitted).
	FirstName, SecondName string
}

func (e *ConflictingEntriesError) Error() string {
	if e.FirstName == e.SecondName {
		return fmt.Sprintf("containerFile[%d] and containerFile[%d] are both for architecture %s: keep one",
			e.FirstIndex, e.SecondIndex, e.FirstName)
	}
	return fmt.Sprintf("containerFile[%d] (%s) and containerFile[%d] (%s) are both for architecture %s: %s and %s name the same architecture, keep one",
		e.FirstIndex, e.FirstName, e.SecondIndex, e.SecondName, e.Arch, e.FirstName, e.SecondName)
}

// Is makes conflicting entries match ErrInvalidContainerfile.
func (e *ConflictingEntriesError) Is(target error) bool { return target == ErrInvalidContainerfile }

// CheckArchitectures checks the architectures of a MachineOSConfig's containerFile entries: every
// one must be known, and no two may name the same architecture (x86_64 and amd64 do, aarch64 and
// arm64 do, an omitted architecture and noarch do). It does not look at the content.
func CheckArchitectures(entries []v1alpha1.MachineOSContainerfile) error {
	_, err := indexEntries(entries)
	return err
}

// indexEntries maps each normalised architecture to the position of its entry.
func indexEntries(entries []v1alpha1.MachineOSContainerfile) (map[Arch]int, error) {
	byArch := make(map[Arch]int, len(entries))
	for i, entry := range entries {
		arch, err := NormalizeArch(entryArchName(entry))
		if err != nil {
			return nil, &InvalidContainerfileError{Arch: entryArchName(entry), Reason: err.Error(), Err: err}
		}
		if first, seen := byArch[arch]; seen {
			return nil, &ConflictingEntriesError{
				Arch:        arch,
				FirstIndex:  first,
				SecondIndex: i,
				FirstName:   entryArchName(entries[first]),
				SecondName:  entryArchName(entry),
			}
		}
		byArch[arch] = i
	}
	return byArch, nil
}

// Source says where the user content of one architecture's image comes from.
type Source string

const (
	// SourceOwn: the architecture has an entry of its own.
	SourceOwn Source = "own"
	// SourceNoArch: the architecture has no entry of its own and uses the noarch entry.
	SourceNoArch Source = "noarch"
	// SourceNone: neither exists; the image is built without user content.
	SourceNone Source = "none"
)

// Selection is the containerFile entry chosen for one build architecture.
type Selection struct {
	// Arch is the build architecture the selection is for.
	Arch Arch
	// Source says which entry was chosen.
	Source Source
	// Index is the entry's position in spec.buildInputs.containerFile, -1 for SourceNone.
	Index int
	// EntryArch is the chosen entry's normalised architecture (Arch or NoArch), empty for SourceNone.
	// It is what MachineOSBuild status.architectures[].containerfileArch records.
	EntryArch Arch
	// EntryName is the chosen entry's containerfileArch as the user wrote it (noarch when omitted),
	// empty for SourceNone; error messages use it so the user finds the entry.
	EntryName string
	// Content is the chosen entry's content, empty for SourceNone.
	Content string
}

// SelectEntry picks the containerFile entry for a build architecture: its own entry if there is
// one, else the noarch entry, else none. It fails when the entries' architectures are invalid
// (see CheckArchitectures) or arch is not a build architecture.
func SelectEntry(entries []v1alpha1.MachineOSContainerfile, arch Arch) (Selection, error) {
	buildArch, err := NormalizeBuildArch(string(arch))
	if err != nil {
		return Selection{}, err
	}
	byArch, err := indexEntries(entries)
	if err != nil {
		return Selection{}, err
	}
	pick := func(source Source, index int) Selection {
		entry := entries[index]
		entryArch, _ := NormalizeArch(entryArchName(entry)) // indexEntries accepted it
		return Selection{
			Arch:      buildArch,
			Source:    source,
			Index:     index,
			EntryArch: entryArch,
			EntryName: entryArchName(entry),
			Content:   entry.Content,
		}
	}
	if index, ok := byArch[buildArch]; ok {
		return pick(SourceOwn, index), nil
	}
	if index, ok := byArch[NoArch]; ok {
		return pick(SourceNoArch, index), nil
	}
	return Selection{Arch: buildArch, Source: SourceNone, Index: -1}, nil
}
