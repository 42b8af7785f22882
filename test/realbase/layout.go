package main

import (
	"archive/tar"
	"cmp"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// writeTar writes layer l's tar to w: entries in walk order, owners and modes as on disk, mtimes
// clamped to epoch, numeric ids only, xattrs as PAX records, a file's second name a hard link.
func (s *Split) writeTar(w io.Writer, l int, epoch time.Time) error {
	tw := tar.NewWriter(w)
	linked := map[inodeKey]string{}
	for _, e := range s.members(l) {
		mt := e.mtime
		if mt.After(epoch) {
			mt = epoch
		}
		hdr := &tar.Header{
			Name:    e.path,
			Mode:    tarMode(e.mode),
			Uid:     e.uid,
			Gid:     e.gid,
			ModTime: mt.UTC(),
		}
		for k, v := range e.xattrs {
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords["SCHILY.xattr."+k] = v
		}
		var body string // a regular file's path to copy, if any
		switch {
		case e.mode.IsDir():
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case e.mode&fs.ModeSymlink != 0:
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = e.link
		case e.mode&fs.ModeNamedPipe != 0:
			hdr.Typeflag = tar.TypeFifo
		case e.mode.IsRegular():
			if first, ok := linked[e.inode]; ok {
				hdr.Typeflag = tar.TypeLink
				hdr.Linkname = first
				break
			}
			if e.nlink > 1 {
				linked[e.inode] = e.path
			}
			hdr.Typeflag = tar.TypeReg
			hdr.Size = e.size
			body = filepath.Join(s.root.dir, filepath.FromSlash(e.path))
		default:
			return fmt.Errorf("%s: unsupported file type %v", e.path, e.mode)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", e.path, err)
		}
		if body != "" {
			if err := copyFile(tw, body, e.size); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

func copyFile(w io.Writer, p string, size int64) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if n, err := io.Copy(w, io.LimitReader(f, size)); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	} else if n != size {
		return fmt.Errorf("%s changed while being read: %d bytes, not %d", p, n, size)
	}
	return nil
}

func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// LayerInfo is what info.json says of one layer.
type LayerInfo struct {
	Digest       string `json:"digest"`
	Compressed   int64  `json:"compressed"`
	Uncompressed int64  `json:"uncompressed"`
	Files        int    `json:"files"`
	Packages     int    `json:"packages"`
	Name         string `json:"name"`
}

// Info is info.json: the image's shape, for tables.
type Info struct {
	Image        string      `json:"image"` // the manifest digest
	Layers       int         `json:"layers"`
	Compressed   int64       `json:"compressed"`
	Uncompressed int64       `json:"uncompressed"`
	Skipped      []string    `json:"skipped,omitempty"` // device nodes and sockets left out
	LayerInfo    []LayerInfo `json:"layerInfo"`
}

// blobLayer is a gzip layer already written into the layout's blobs.
type blobLayer struct {
	file           string
	digest, diffID v1.Hash
	size           int64
}

func (b *blobLayer) Digest() (v1.Hash, error)            { return b.digest, nil }
func (b *blobLayer) DiffID() (v1.Hash, error)            { return b.diffID, nil }
func (b *blobLayer) Size() (int64, error)                { return b.size, nil }
func (b *blobLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }
func (b *blobLayer) Compressed() (io.ReadCloser, error)  { return os.Open(b.file) }
func (b *blobLayer) Uncompressed() (io.ReadCloser, error) {
	f, err := os.Open(b.file)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{zr, f}, nil
}

type counter struct {
	hash.Hash
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.Hash.Write(p)
}

// writeBlob writes layer l gzipped into blobs/sha256 of the layout at dir, hashing both forms on
// the way: one pass over the files.
func (s *Split) writeBlob(dir string, l int, epoch time.Time) (*blobLayer, int64, error) {
	blobs := filepath.Join(dir, "blobs", "sha256")
	f, err := os.CreateTemp(blobs, ".layer-*")
	if err != nil {
		return nil, 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := f.Chmod(0o644); err != nil {
		return nil, 0, err
	}
	zsum := &counter{Hash: sha256.New()}
	zw, err := gzip.NewWriterLevel(io.MultiWriter(f, zsum), gzip.DefaultCompression)
	if err != nil {
		return nil, 0, err
	}
	sum := &counter{Hash: sha256.New()}
	if err := s.writeTar(io.MultiWriter(zw, sum), l, epoch); err != nil {
		return nil, 0, err
	}
	if err := zw.Close(); err != nil {
		return nil, 0, err
	}
	if err := f.Close(); err != nil {
		return nil, 0, err
	}
	b := &blobLayer{
		digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(zsum.Sum(nil))},
		diffID: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum.Sum(nil))},
		size:   zsum.n,
	}
	b.file = filepath.Join(blobs, b.digest.Hex)
	if err := os.Rename(f.Name(), b.file); err != nil {
		return nil, 0, err
	}
	return b, sum.n, nil
}

// Image is the image's configuration beyond its layers.
func imageConfig(epoch time.Time) v1.ConfigFile {
	return v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Created:      v1.Time{Time: epoch.UTC()},
		Config: v1.Config{
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cmd:        []string{"/sbin/init"},
			StopSignal: "SIGRTMIN+3",
			Labels: map[string]string{
				"containers.bootc":               "1",
				"ostree.bootable":                "true",
				"org.opencontainers.image.title": "mosb realistic test base (Debian bookworm, chunked by package)",
			},
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
}

// WriteLayout writes the image as an OCI image layout at dir (which must not exist yet), its
// layers written by workers goroutines at once, and returns its shape.
func (s *Split) WriteLayout(dir string, epoch time.Time, workers int) (*Info, error) {
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return nil, err
	}
	blobs := make([]*blobLayer, len(s.Layers))
	sizes := make([]int64, len(s.Layers))
	errs := make([]error, len(s.Layers))
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l := range next {
				blobs[l], sizes[l], errs[l] = s.writeBlob(dir, l, epoch)
			}
		}()
	}
	// The biggest first, so that the longest job does not start last.
	order := make([]int, len(s.Layers))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(s.Layers[b].Bytes, s.Layers[a].Bytes) })
	for _, l := range order {
		next <- l
	}
	close(next)
	wg.Wait()
	for l, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", l, s.Layers[l].Name(), err)
		}
	}

	cfg := imageConfig(epoch)
	img, err := mutate.ConfigFile(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON), &cfg)
	if err != nil {
		return nil, err
	}
	info := &Info{Layers: len(s.Layers), Skipped: s.root.skipped}
	adds := make([]mutate.Addendum, len(s.Layers))
	for l, b := range blobs {
		adds[l] = mutate.Addendum{Layer: b, History: v1.History{
			Created:   v1.Time{Time: epoch.UTC()},
			CreatedBy: "realbase: " + s.Layers[l].Name(),
		}}
		info.Compressed += b.size
		info.Uncompressed += sizes[l]
		info.LayerInfo = append(info.LayerInfo, LayerInfo{
			Digest: b.digest.String(), Compressed: b.size, Uncompressed: sizes[l],
			Files: s.Layers[l].Files, Packages: len(s.Layers[l].Packages), Name: shortName(s.Layers[l]),
		})
	}
	if img, err = mutate.Append(img, adds...); err != nil {
		return nil, err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return nil, err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "latest"})); err != nil {
		return nil, err
	}
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	info.Image = d.String()
	return info, nil
}

func shortName(l Layer) string {
	if len(l.Packages) <= 1 {
		return l.Name()
	}
	n := strings.Join(l.Packages[:min(3, len(l.Packages))], " ")
	return fmt.Sprintf("%d packages: %s …", len(l.Packages), n)
}

func writeInfo(p string, info *Info) error {
	data, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(p, append(data, '\n'), 0o644)
}
