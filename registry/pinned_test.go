package registry

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
)

func TestNewPinnedImageSetSpec(t *testing.T) {
	spec, err := NewPinnedImageSetSpec([]string{
		"quay.io/os/worker@" + dgB,
		"quay.io/openshift-release-dev/ocp-release@" + dgA,
		"quay.io/os/worker@" + dgB,
		"registry.example.com:5000/os@" + dgA,
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range spec.PinnedImages {
		got = append(got, string(p.Name))
	}
	want := []string{"quay.io/openshift-release-dev/ocp-release@" + dgA, "quay.io/os/worker@" + dgB, "registry.example.com:5000/os@" + dgA}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("got %q, want %q (deduplicated, sorted)", got, want)
	}
	if err := ValidatePinnedImageSetSpec(spec); err != nil {
		t.Fatalf("a built spec must validate: %v", err)
	}
}

func TestPinnedImageErrorsNameTheEntry(t *testing.T) {
	tests := []struct {
		name   string
		images []string
		index  int
		want   error
	}{
		{"tag", []string{"quay.io/a@" + dgA, "quay.io/os:latest"}, 1, RuleNotByDigest},
		{"uppercase digest", []string{"quay.io/os@sha256:" + strings.ToUpper(hexA)}, 0, RuleDigestUppercase},
		{"short digest", []string{"quay.io/os@sha256:abc"}, 0, RuleDigestLength},
		{"empty", []string{"quay.io/a@" + dgA, ""}, 1, RuleEmpty},
		{"too long", []string{"quay.io/" + strings.Repeat("a", 440) + "@" + dgA}, 0, RuleTooLong},
		// Valid pullspecs that the PinnedImageSet API refuses.
		{"no dot in host", []string{"localhost:5000/os@" + dgA}, 0, ErrNotPinnable},
		{"two namespace levels", []string{"quay.io/a/b/c@" + dgA}, 0, ErrNotPinnable},
		{"one-digit port", []string{"reg.example.com:5/os@" + dgA}, 0, ErrNotPinnable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewPinnedImageSetSpec(tt.images)
			var pe *PinnedImageError
			if !errors.As(err, &pe) || !errors.Is(err, tt.want) {
				t.Fatalf("want %v in a *PinnedImageError, got %v", tt.want, err)
			}
			if pe.Index != tt.index || pe.Image != tt.images[tt.index] || !strings.Contains(err.Error(), fmt.Sprintf("pinned image %d", tt.index)) {
				t.Errorf("error does not name entry %d: %v", tt.index, err)
			}
		})
	}
}

func TestPinnedImageLimits(t *testing.T) {
	var images []string
	for i := 0; i <= MaxPinnedImages; i++ {
		images = append(images, fmt.Sprintf("quay.io/os/img%d@%s", i, dgA))
	}
	if _, err := NewPinnedImageSetSpec(images[:MaxPinnedImages]); err != nil {
		t.Fatalf("%d images must be fine: %v", MaxPinnedImages, err)
	}
	if _, err := NewPinnedImageSetSpec(images); !errors.Is(err, ErrTooManyPinnedImages) {
		t.Fatalf("%d images: %v", len(images), err)
	}
	// Duplicates do not count against the limit.
	dup := append(append([]string(nil), images[:MaxPinnedImages]...), images[0])
	if _, err := NewPinnedImageSetSpec(dup); err != nil {
		t.Fatalf("duplicates counted: %v", err)
	}
	if _, err := NewPinnedImageSetSpec(nil); err == nil {
		t.Fatal("an empty set must be refused (the API requires one image)")
	}
}

func TestValidatePinnedImageSetSpec(t *testing.T) {
	ref := func(s string) mcfgv1.PinnedImageRef { return mcfgv1.PinnedImageRef{Name: mcfgv1.ImageDigestFormat(s)} }
	tests := []struct {
		name string
		spec mcfgv1.PinnedImageSetSpec
		ok   bool
	}{
		{"valid", mcfgv1.PinnedImageSetSpec{PinnedImages: []mcfgv1.PinnedImageRef{ref("quay.io/a@" + dgA), ref("quay.io/b@" + dgA)}}, true},
		{"empty", mcfgv1.PinnedImageSetSpec{}, false},
		{"duplicate", mcfgv1.PinnedImageSetSpec{PinnedImages: []mcfgv1.PinnedImageRef{ref("quay.io/a@" + dgA), ref("quay.io/a@" + dgA)}}, false},
		{"tag", mcfgv1.PinnedImageSetSpec{PinnedImages: []mcfgv1.PinnedImageRef{ref("quay.io/a:latest")}}, false},
	}
	for _, tt := range tests {
		if err := ValidatePinnedImageSetSpec(tt.spec); (err == nil) != tt.ok {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	many := mcfgv1.PinnedImageSetSpec{}
	for i := 0; i <= MaxPinnedImages; i++ {
		many.PinnedImages = append(many.PinnedImages, ref(fmt.Sprintf("quay.io/os/i%d@%s", i, dgA)))
	}
	if err := ValidatePinnedImageSetSpec(many); !errors.Is(err, ErrTooManyPinnedImages) {
		t.Errorf("too many: %v", err)
	}
}
