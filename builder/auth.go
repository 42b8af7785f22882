package builder

import (
	"encoding/json"
	"fmt"
)

// authFile is the containers auth file format; entries stay opaque so nothing is decoded that
// need not be.
type authFile struct {
	Auths map[string]json.RawMessage `json:"auths"`
}

// mergeAuthFiles joins auth files; a later file's entry for a registry replaces an earlier one.
// Errors never quote the input: it holds credentials.
func mergeAuthFiles(files ...[]byte) ([]byte, error) {
	merged := authFile{Auths: map[string]json.RawMessage{}}
	for i, f := range files {
		if len(f) == 0 {
			continue
		}
		var a authFile
		if err := json.Unmarshal(f, &a); err != nil {
			return nil, fmt.Errorf("auth file %d is not a containers auth file ({\"auths\":{...}})", i+1)
		}
		for host, entry := range a.Auths {
			merged.Auths[host] = entry
		}
	}
	return json.Marshal(merged)
}
