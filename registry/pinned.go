package registry

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
)

// MaxPinnedImages is the API's limit of images in one PinnedImageSet.
const MaxPinnedImages = 500

// pinnedNamePattern is the name rule of the PinnedImageSet CRD that openshift/api ships
// (machineconfiguration/v1 ImageDigestFormat, applied to the part before '@'). It is narrower
// than the seed grammar in places — the host needs a dot, the port 2–5 digits, at most one
// namespace level — so an image can be a valid pullspec and still be refused by the API server
// in a PinnedImageSet. Checking it here turns that into an error naming the image, before any
// API call.
const pinnedNamePattern = `^([a-zA-Z0-9-]+\.)+[a-zA-Z0-9-]+(:[0-9]{2,5})?/([a-zA-Z0-9-_]{0,61}/)?[a-zA-Z0-9-_.]*?$`

var pinnedNameRE = regexp.MustCompile(pinnedNamePattern)

// ErrTooManyPinnedImages: more than MaxPinnedImages distinct images.
var ErrTooManyPinnedImages = errors.New("too many pinned images")

// ErrNotPinnable: a valid digest pullspec that the PinnedImageSet API refuses.
var ErrNotPinnable = errors.New("image reference is not accepted by the PinnedImageSet API")

// PinnedImageError names the offending entry.
type PinnedImageError struct {
	// Index is the entry's position in the input.
	Index int
	Image string
	Err   error
}

func (e *PinnedImageError) Error() string {
	return fmt.Sprintf("pinned image %d %s: %v", e.Index, quoteShort(e.Image), e.Err)
}

func (e *PinnedImageError) Unwrap() error { return e.Err }

// NewPinnedImageSetSpec builds a PinnedImageSet spec from digest pullspecs: each is validated
// (ValidateDigestPullspec, then the PinnedImageSet API's own name rule), duplicates are dropped,
// and the result is sorted, so the same images always give the same object.
func NewPinnedImageSetSpec(images []string) (mcfgv1.PinnedImageSetSpec, error) {
	seen := map[string]bool{}
	var names []string
	for i, img := range images {
		if err := validatePinnedImage(img); err != nil {
			return mcfgv1.PinnedImageSetSpec{}, &PinnedImageError{Index: i, Image: img, Err: err}
		}
		if !seen[img] {
			seen[img] = true
			names = append(names, img)
		}
	}
	if len(names) == 0 {
		return mcfgv1.PinnedImageSetSpec{}, fmt.Errorf("a PinnedImageSet needs at least one image")
	}
	if len(names) > MaxPinnedImages {
		return mcfgv1.PinnedImageSetSpec{}, fmt.Errorf("%w: %d distinct images, the limit is %d; split them over several PinnedImageSets",
			ErrTooManyPinnedImages, len(names), MaxPinnedImages)
	}
	sort.Strings(names)
	spec := mcfgv1.PinnedImageSetSpec{PinnedImages: make([]mcfgv1.PinnedImageRef, len(names))}
	for i, n := range names {
		spec.PinnedImages[i] = mcfgv1.PinnedImageRef{Name: mcfgv1.ImageDigestFormat(n)}
	}
	return spec, nil
}

// ValidatePinnedImageSetSpec checks an existing spec the way NewPinnedImageSetSpec builds one;
// a duplicate is an error here because the API keys the list by name.
func ValidatePinnedImageSetSpec(spec mcfgv1.PinnedImageSetSpec) error {
	if len(spec.PinnedImages) == 0 {
		return fmt.Errorf("a PinnedImageSet needs at least one image")
	}
	if len(spec.PinnedImages) > MaxPinnedImages {
		return fmt.Errorf("%w: %d images, the limit is %d", ErrTooManyPinnedImages, len(spec.PinnedImages), MaxPinnedImages)
	}
	seen := map[string]int{}
	for i, p := range spec.PinnedImages {
		img := string(p.Name)
		if err := validatePinnedImage(img); err != nil {
			return &PinnedImageError{Index: i, Image: img, Err: err}
		}
		if j, dup := seen[img]; dup {
			return &PinnedImageError{Index: i, Image: img, Err: fmt.Errorf("duplicate of entry %d; list each image once", j)}
		}
		seen[img] = i
	}
	return nil
}

func validatePinnedImage(img string) error {
	if err := ValidateDigestPullspec(img); err != nil {
		return err
	}
	name := img[:strings.LastIndexByte(img, '@')]
	if !pinnedNameRE.MatchString(name) {
		return fmt.Errorf("%w: machineconfiguration.openshift.io/v1 PinnedImageSet requires host.domain[:port]/[namespace/]name (a dotted host, a 2–5 digit port, at most one namespace level); pin the image under such a name (e.g. a mirror)", ErrNotPinnable)
	}
	return nil
}
