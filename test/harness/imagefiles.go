package harness

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// WalkImage calls fn for every entry of img's layers, bottom layer first, with the entry's content.
func WalkImage(img v1.Image, fn func(h *tar.Header, content io.Reader) error) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		if err := func() error {
			rc, err := l.Uncompressed()
			if err != nil {
				return err
			}
			defer rc.Close()
			tr := tar.NewReader(rc)
			for {
				h, err := tr.Next()
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return err
				}
				if err := fn(h, tr); err != nil {
					return err
				}
			}
		}(); err != nil {
			return err
		}
	}
	return nil
}

// ImageFiles is every regular file of img's layers by path (no leading "./"), later layers
// winning: what a test reads to see what a build wrote.
func ImageFiles(img v1.Image) (map[string]string, error) {
	files := map[string]string{}
	err := WalkImage(img, func(h *tar.Header, content io.Reader) error {
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		b, err := io.ReadAll(content)
		files[strings.TrimPrefix(h.Name, "./")] = string(b)
		return err
	})
	return files, err
}

// FileInImage reads one file of the image at ref (see ImageFiles).
func FileInImage(ref, path string, opts ...remote.Option) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", err
	}
	img, err := remote.Image(r, opts...)
	if err != nil {
		return "", err
	}
	files, err := ImageFiles(img)
	if err != nil {
		return "", err
	}
	f, ok := files[strings.TrimPrefix(path, "/")]
	if !ok {
		return "", fmt.Errorf("%s has no file %s", ref, path)
	}
	return f, nil
}

// IndexImages maps each platform architecture of the index at ref to its image by digest; an
// index with two images of one architecture is an error.
func IndexImages(ref string, opts ...remote.Option) (map[string]string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	idx, err := remote.Index(r, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s is not an index: %w", ref, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, d := range im.Manifests {
		if d.Platform == nil {
			continue
		}
		if _, dup := out[d.Platform.Architecture]; dup {
			return nil, fmt.Errorf("the index %s has more than one %s image", ref, d.Platform.Architecture)
		}
		out[d.Platform.Architecture] = r.Context().Digest(d.Digest.String()).String()
	}
	return out, nil
}
