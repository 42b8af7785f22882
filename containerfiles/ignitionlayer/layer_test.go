package ignitionlayer_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"

	"github.com/mosb-dev/mosb/containerfiles/ignitionlayer"
)

type tarEntry struct {
	typeflag byte
	mode     int64
	uid, gid int
	linkname string
	data     string
}

// readLayer unpacks a layer into its entries in archive order.
func readLayer(t *testing.T, archive []byte) ([]string, map[string]tarEntry) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var order []string
	entries := map[string]tarEntry{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.ModTime.Unix() != 0 || hdr.Uname != "" || hdr.Gname != "" {
			t.Errorf("%s: mtime %v, uname %q, gname %q: want the epoch and no names", hdr.Name, hdr.ModTime, hdr.Uname, hdr.Gname)
		}
		data, _ := io.ReadAll(tr)
		order = append(order, hdr.Name)
		entries[hdr.Name] = tarEntry{hdr.Typeflag, hdr.Mode, hdr.Uid, hdr.Gid, hdr.Linkname, string(data)}
	}
	return order, entries
}

func dataURL(s string) string { return "data:," + url.PathEscape(s) }

func gzipped(t *testing.T, s string) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(s))
	zw.Close()
	return buf.Bytes()
}

func machineConfig(t *testing.T, ignition map[string]any) []byte {
	t.Helper()
	raw, err := json.Marshal(map[string]any{
		"apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfig",
		"metadata": map[string]any{"name": "rendered-worker-1"},
		"spec":     map[string]any{"config": ignition, "kernelArguments": []string{"nosmt"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

const unitFile = `[Unit]
Description=hello

[Service]
ExecStart=/bin/true

[Install]
WantedBy=multi-user.target
RequiredBy=network-online.target
Alias=hi.service
`

func fullConfig(t *testing.T) map[string]any {
	compressed := gzipped(t, "compressed content\n")
	sum := sha512.Sum512(compressed)
	return map[string]any{
		"ignition": map[string]any{"version": "3.4.0"},
		"passwd": map[string]any{"users": []any{
			map[string]any{"name": "core", "sshAuthorizedKeys": []string{"ssh-ed25519 AAAA key"}},
		}},
		"storage": map[string]any{
			"disks": []any{map[string]any{"device": "/dev/vda", "wipeTable": true}},
			"directories": []any{
				map[string]any{"path": "/etc/mosb-dir", "mode": 0o750, "user": map[string]any{"id": 1000}, "group": map[string]any{"id": 1001}},
			},
			"files": []any{
				map[string]any{"path": "/etc/mosb-dir/plain", "mode": 0o600, "contents": map[string]any{"source": dataURL("hello world\n")},
					"append": []any{map[string]any{"source": dataURL("appended\n")}}},
				map[string]any{"path": "/etc/compressed", "contents": map[string]any{
					"source":       "data:;base64," + base64.StdEncoding.EncodeToString(compressed),
					"compression":  "gzip",
					"verification": map[string]any{"hash": "sha512-" + hex.EncodeToString(sum[:])},
				}},
				map[string]any{"path": "/etc/empty"},
				map[string]any{"path": "/etc/base-file", "append": []any{map[string]any{"source": dataURL("more\n")}}},
				map[string]any{"path": "/etc/by-name", "contents": map[string]any{"source": dataURL("x")}, "user": map[string]any{"name": "core"}},
			},
			"links": []any{
				map[string]any{"path": "/etc/mosb-link", "target": "/etc/mosb-dir/plain"},
				map[string]any{"path": "/etc/mosb-hard", "target": "/etc/compressed", "hard": true},
				map[string]any{"path": "/etc/hard-to-base", "target": "/etc/os-release", "hard": true},
			},
		},
		"systemd": map[string]any{"units": []any{
			map[string]any{"name": "hello.service", "enabled": true, "contents": unitFile,
				"dropins": []any{map[string]any{"name": "10-env.conf", "contents": "[Service]\nEnvironment=A=1\n"}}},
			map[string]any{"name": "kubelet.service", "enabled": true},
			map[string]any{"name": "getty@tty1.service", "enabled": true},
			map[string]any{"name": "chronyd.service", "enabled": false},
			map[string]any{"name": "masked.service", "mask": true},
		}},
	}
}

func TestLayerHoldsWhatIgnitionApplyWouldWrite(t *testing.T) {
	layer, err := ignitionlayer.FromMachineConfig(machineConfig(t, fullConfig(t)))
	if err != nil {
		t.Fatal(err)
	}
	order, got := readLayer(t, layer.Archive)
	want := map[string]tarEntry{
		"etc/mosb-dir/":                    {typeflag: tar.TypeDir, mode: 0o750, uid: 1000, gid: 1001},
		"etc/mosb-dir/plain":               {typeflag: tar.TypeReg, mode: 0o600, data: "hello world\nappended\n"},
		"etc/compressed":                   {typeflag: tar.TypeReg, mode: 0o644, data: "compressed content\n"},
		"etc/empty":                        {typeflag: tar.TypeReg, mode: 0o644},
		"etc/by-name":                      {typeflag: tar.TypeReg, mode: 0o644, data: "x"},
		"etc/mosb-link":                    {typeflag: tar.TypeSymlink, mode: 0o777, linkname: "/etc/mosb-dir/plain"},
		"etc/mosb-hard":                    {typeflag: tar.TypeLink, linkname: "etc/compressed"},
		"etc/systemd/system/hello.service": {typeflag: tar.TypeReg, mode: 0o644, data: unitFile},
		"etc/systemd/system/hello.service.d/10-env.conf":                  {typeflag: tar.TypeReg, mode: 0o644, data: "[Service]\nEnvironment=A=1\n"},
		"etc/systemd/system/multi-user.target.wants/hello.service":        {typeflag: tar.TypeSymlink, mode: 0o777, linkname: "/etc/systemd/system/hello.service"},
		"etc/systemd/system/network-online.target.requires/hello.service": {typeflag: tar.TypeSymlink, mode: 0o777, linkname: "/etc/systemd/system/hello.service"},
		"etc/systemd/system/hi.service":                                   {typeflag: tar.TypeSymlink, mode: 0o777, linkname: "/etc/systemd/system/hello.service"},
		"etc/systemd/system/masked.service":                               {typeflag: tar.TypeSymlink, mode: 0o777, linkname: "/dev/null"},
		"etc/systemd/system-preset/20-ignition.preset": {typeflag: tar.TypeReg, mode: 0o644,
			data: "disable chronyd.service\nenable getty@.service tty1\nenable hello.service\nenable kubelet.service\n"},
	}
	for name, w := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("%s: not in the layer", name)
		} else if g != w {
			t.Errorf("%s: got %+v, want %+v", name, g, w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: in the layer, not expected", name)
		}
	}
	if last := order[len(order)-1]; last != "etc/mosb-hard" {
		t.Errorf("the last entry is %s: a hard link must follow what it links to", last)
	}
	for i := 1; i < len(order)-1; i++ {
		if order[i-1] > order[i] {
			t.Errorf("entries out of order: %s before %s", order[i-1], order[i])
		}
	}
	if layer.Files != 4 || layer.Directories != 1 || layer.Links != 6 || layer.Units != 2 {
		t.Errorf("counts: %d files, %d directories, %d links, %d units", layer.Files, layer.Directories, layer.Links, layer.Units)
	}

	var sections []string
	for _, s := range layer.Skipped {
		sections = append(sections, s.Section)
	}
	wantSkipped := []string{
		"storage.disks", "passwd.users", "storage.files[/etc/base-file].append", "storage.files[/etc/by-name].user.name",
		"storage.links (hard)", "systemd.units[enabled] (kubelet.service, getty@tty1.service)",
	}
	if strings.Join(sections, "|") != strings.Join(wantSkipped, "|") {
		t.Errorf("skipped:\n got %q\nwant %q", sections, wantSkipped)
	}
	summary := layer.Summary()
	if strings.Contains(summary, "AAAA") || !strings.Contains(summary, "passwd.users: users, passwords and SSH keys") {
		t.Errorf("summary %q: want the sections named, no SSH key", summary)
	}
}

func TestSameConfigSameBytesWhateverItsOrder(t *testing.T) {
	cfg := fullConfig(t)
	first, err := ignitionlayer.FromMachineConfig(machineConfig(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	storage := cfg["storage"].(map[string]any)
	files := storage["files"].([]any)
	for i, j := 0, len(files)-1; i < j; i, j = i+1, j-1 {
		files[i], files[j] = files[j], files[i]
	}
	units := cfg["systemd"].(map[string]any)["units"].([]any)
	units[0], units[len(units)-1] = units[len(units)-1], units[0]
	second, err := ignitionlayer.FromMachineConfig(machineConfig(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Archive, second.Archive) {
		t.Error("the same config in another order gives another layer")
	}
}

func TestNothingToLay(t *testing.T) {
	for name, mc := range map[string]string{
		"no config":       `{"spec":{}}`,
		"empty config":    `{"spec":{"config":{}}}`,
		"only a user":     `{"spec":{"config":{"ignition":{"version":"3.2.0"},"passwd":{"users":[{"name":"core"}]}}}}`,
		"older spec, 3.0": `{"spec":{"config":{"ignition":{"version":"3.0.0"}}}}`,
	} {
		layer, err := ignitionlayer.FromMachineConfig([]byte(mc))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if layer.Archive != nil {
			t.Errorf("%s: a layer was made", name)
		}
	}
}

func TestBadConfigsAreRefusedWithoutQuotingContent(t *testing.T) {
	const secret = "s3cr3t-content"
	wrongHash := strings.Repeat("0", 128)
	cases := map[string]struct {
		ignition string
		says     string
	}{
		"remote source": {`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/x","contents":{"source":"https://example.com/` + secret + `"}}]}}`,
			"storage.files[/etc/x].contents.source is a https URL"},
		"hash mismatch": {`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/x","contents":{"source":"data:,` + secret + `","verification":{"hash":"sha512-` + wrongHash + `"}}}]}}`,
			"does not match its verification hash"},
		"not gzip": {`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/x","contents":{"source":"data:,` + secret + `","compression":"gzip"}}]}}`,
			"is not gzip-compressed"},
		"spec 2":        {`{"ignition":{"version":"2.2.0"}}`, "Ignition spec 3.0 to 3.5"},
		"relative path": {`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"etc/x"}]}}`, "spec.config"},
		"unclean path":  {`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/../../x"}]}}`, "not fully simplified"},
	}
	for name, c := range cases {
		_, err := ignitionlayer.FromMachineConfig([]byte(`{"spec":{"config":` + c.ignition + `}}`))
		switch {
		case err == nil:
			t.Errorf("%s: accepted", name)
		case !errors.Is(err, ignitionlayer.ErrInvalidConfig):
			t.Errorf("%s: %v does not match ErrInvalidConfig", name, err)
		case !strings.Contains(err.Error(), c.says):
			t.Errorf("%s: %q does not say %q", name, err, c.says)
		case strings.Contains(err.Error(), secret):
			t.Errorf("%s: %q quotes the content", name, err)
		}
	}
	if _, err := ignitionlayer.FromMachineConfig([]byte("{not json")); !errors.Is(err, ignitionlayer.ErrInvalidConfig) {
		t.Errorf("not JSON: %v", err)
	}
}
