package pipeline

import (
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
)

const pruneRepo = "registry.example.com/os/worker"

func pdigest(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }
func pimg(c byte) string    { return pruneRepo + "@" + pdigest(c) }

// pbuild is a build whose result is result, with one image per architecture ("amd64=a").
func pbuild(name string, result byte, arches ...string) mosbv1.MachineOSBuild {
	b := mosbv1.MachineOSBuild{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if result != 0 {
		b.Status.DigestedImagePushspec = pimg(result)
	}
	for _, a := range arches {
		arch, d, _ := strings.Cut(a, "=")
		b.Status.Architectures = append(b.Status.Architectures, mosbv1.ArchitectureBuild{Architecture: arch, DigestedImagePushspec: pimg(d[0])})
	}
	return b
}

func TestPlanImagePrune(t *testing.T) {
	tests := []struct {
		name         string
		doomed       []mosbv1.MachineOSBuild
		others       []mosbv1.MachineOSBuild // kept builds
		kept         []KeptImage             // besides the kept builds' images
		wantDelete   []string
		wantSparedBy map[string]string
	}{
		{
			name:       "a single-architecture build nothing refers to",
			doomed:     []mosbv1.MachineOSBuild{pbuild("old", 'a', "amd64=a")},
			wantDelete: []string{pimg('a')},
		},
		{
			name:   "a pre-built image adopted by annotation is not mosb's to delete",
			doomed: []mosbv1.MachineOSBuild{preBuiltBuild(pbuild("adopted", 'a', "amd64=a"))},
		},
		{
			name:       "an index goes before its images",
			doomed:     []mosbv1.MachineOSBuild{pbuild("old", 'i', "amd64=a", "arm64=b")},
			wantDelete: []string{pimg('i'), pimg('a'), pimg('b')},
		},
		{
			name:         "an architecture image the current build shares stays",
			doomed:       []mosbv1.MachineOSBuild{pbuild("old", 'i', "amd64=a", "arm64=b")},
			others:       []mosbv1.MachineOSBuild{pbuild("current", 'j', "amd64=a", "arm64=c")},
			wantDelete:   []string{pimg('i'), pimg('b')},
			wantSparedBy: map[string]string{pimg('a'): "MachineOSBuild current"},
		},
		{
			name:         "the same image rebuilt (same digest) stays for the newer build",
			doomed:       []mosbv1.MachineOSBuild{pbuild("old", 'a', "amd64=a")},
			others:       []mosbv1.MachineOSBuild{pbuild("rebuilt", 'a', "amd64=a")},
			wantSparedBy: map[string]string{pimg('a'): "MachineOSBuild rebuilt"},
		},
		{
			name:         "an image a node runs stays",
			doomed:       []mosbv1.MachineOSBuild{pbuild("old", 'a', "amd64=a"), pbuild("older", 'b', "amd64=b")},
			kept:         []KeptImage{{Pullspec: pimg('b'), By: "node n1 (currentImage)"}},
			wantDelete:   []string{pimg('a')},
			wantSparedBy: map[string]string{pimg('b'): "node n1 (currentImage)"},
		},
		{
			name:         "a pinned index stays with its images",
			doomed:       []mosbv1.MachineOSBuild{pbuild("old", 'i', "amd64=a", "arm64=b"), pbuild("older", 'c', "amd64=c")},
			kept:         []KeptImage{{Pullspec: pimg('i'), By: "PinnedImageSet p"}},
			wantDelete:   []string{pimg('c')},
			wantSparedBy: map[string]string{pimg('i'): "PinnedImageSet p", pimg('a'): "PinnedImageSet p, in its index", pimg('b'): "PinnedImageSet p, in its index"},
		},
		{
			name:       "two builds that pushed the same image: deleted once",
			doomed:     []mosbv1.MachineOSBuild{pbuild("old", 'a', "amd64=a"), pbuild("older", 'a', "amd64=a")},
			wantDelete: []string{pimg('a')},
		},
		{
			name:       "a superseded build that pushed architecture images but no index",
			doomed:     []mosbv1.MachineOSBuild{pbuild("superseded", 0, "amd64=a", "arm64=b")},
			wantDelete: []string{pimg('a'), pimg('b')},
		},
		{
			name:   "a build that pushed nothing",
			doomed: []mosbv1.MachineOSBuild{pbuild("failed", 0)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kept := slices.Clone(tc.kept)
			for i := range tc.others {
				for _, img := range BuildImages(&tc.others[i]) {
					kept = append(kept, KeptImage{Pullspec: img, By: "MachineOSBuild " + tc.others[i].Name})
				}
			}
			plan := PlanImagePrune(tc.doomed, kept, RecordedIndexChildren(append(slices.Clone(tc.doomed), tc.others...)))
			if !slices.Equal(plan.Delete, tc.wantDelete) {
				t.Errorf("delete %v, want %v", plan.Delete, tc.wantDelete)
			}
			spared := map[string]string{}
			for _, s := range plan.Spared {
				spared[s.Pullspec] = s.By
			}
			if len(spared) != len(tc.wantSparedBy) {
				t.Errorf("spared %v, want %v", spared, tc.wantSparedBy)
			}
			for img, by := range tc.wantSparedBy {
				if spared[img] != by {
					t.Errorf("%s spared by %q, want %q", img, spared[img], by)
				}
			}
		})
	}
}

func TestUnknownIndexes(t *testing.T) {
	doomed := []mosbv1.MachineOSBuild{pbuild("old", 'i', "amd64=a", "arm64=b")}
	current := pbuild("current", 'j', "amd64=a", "arm64=c")
	kept := []KeptImage{
		{Pullspec: pimg('j'), By: "MachineOSConfig worker"},                              // the current build's: known
		{Pullspec: pimg('e'), By: "node n1 (currentImage)"},                              // same repository, unknown: ask
		{Pullspec: pimg('e'), By: "node n2 (currentImage)"},                              // asked once
		{Pullspec: "quay.io/other/repo@" + pdigest('f'), By: "PinnedImageSet elsewhere"}, // another repository
	}
	got := UnknownIndexes(doomed, kept, append(slices.Clone(doomed), current))
	if want := []string{pimg('e')}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func preBuiltBuild(b mosbv1.MachineOSBuild) mosbv1.MachineOSBuild {
	if b.Labels == nil {
		b.Labels = map[string]string{}
	}
	b.Labels[LabelPreBuiltImage] = "true"
	return b
}
