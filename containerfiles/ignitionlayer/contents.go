package ignitionlayer

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/url"
	"strings"

	"github.com/coreos/ignition/v2/config/v3_5/types"
	"github.com/vincent-petithory/dataurl"
)

// maxContentBytes bounds one decompressed file, so that a small gzip bomb in a MachineConfig
// cannot exhaust the controller's memory.
const maxContentBytes = 64 << 20

// fetch returns a resource's bytes: inline (data:) sources only, verified against the hash, then
// decompressed. Ignition would fetch other URLs while provisioning; a build does not, and laying
// the image without the file would be a silent surprise, so they are an error. Errors never quote
// the content.
func fetch(section string, r types.Resource) ([]byte, error) {
	source := *r.Source
	if source == "" {
		return nil, nil
	}
	u, err := url.Parse(source)
	if err != nil {
		return nil, fmt.Errorf("%w: %s.source is not a URL", ErrInvalidConfig, section)
	}
	if u.Scheme != "data" {
		return nil, fmt.Errorf("%w: %s.source is a %s URL: mosb lays only inline (data:) contents into an image and fetches nothing during a build; put the content in the MachineConfig", ErrInvalidConfig, section, u.Scheme)
	}
	decoded, err := dataurl.DecodeString(source)
	if err != nil {
		return nil, fmt.Errorf("%w: %s.source is not a valid data URL: %v", ErrInvalidConfig, section, err)
	}
	data := decoded.Data
	if err := verify(section, r.Verification, data); err != nil {
		return nil, err
	}
	compression := ""
	if r.Compression != nil {
		compression = *r.Compression
	}
	switch compression {
	case "":
		return data, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%w: %s is not gzip-compressed: %v", ErrInvalidConfig, section, err)
		}
		out, err := io.ReadAll(io.LimitReader(zr, maxContentBytes+1))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: decompressing: %v", ErrInvalidConfig, section, err)
		}
		if len(out) > maxContentBytes {
			return nil, fmt.Errorf("%w: %s is over %d MiB decompressed", ErrInvalidConfig, section, maxContentBytes>>20)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%w: %s.compression %q is not one Ignition knows (gzip or none)", ErrInvalidConfig, section, compression)
	}
}

// verify checks the source's bytes (before decompression, as Ignition does) against the hash.
func verify(section string, v types.Verification, data []byte) error {
	function, sum, err := v.HashParts()
	if err != nil {
		return fmt.Errorf("%w: %s.verification.hash: %v", ErrInvalidConfig, section, err)
	}
	var h hash.Hash
	switch function {
	case "":
		return nil
	case "sha256":
		h = sha256.New()
	case "sha512":
		h = sha512.New()
	default:
		return fmt.Errorf("%w: %s.verification.hash: unknown function %q (sha256 or sha512)", ErrInvalidConfig, section, function)
	}
	h.Write(data)
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, sum) {
		return fmt.Errorf("%w: %s does not match its verification hash (%s-%s, the contents hash to %s-%s)", ErrInvalidConfig, section, function, sum, function, got)
	}
	return nil
}
