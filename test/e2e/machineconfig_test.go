package e2e

import (
	"archive/tar"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/mosb-dev/mosb/pipeline"
)

// TestTheRenderedMachineConfigIsInTheImage gives the pool a rendered MachineConfig with a file, a
// directory, a symlink, an enabled systemd unit and an SSH key, and reads the pushed image's
// layers: the first four are there as ignition-apply would write them (with the link `systemctl
// enable` makes), the user's RUN step saw them, and the SSH key — which the node applies — is
// named as skipped in the MachineOSBuild's status, without being quoted.
func TestTheRenderedMachineConfigIsInTheImage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const (
		mosc    = "laid"
		sshKey  = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyLaid admin"
		unit    = "[Unit]\nDescription=hello\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
		content = "hello from the MachineConfig\n"
	)
	ignition, err := json.Marshal(map[string]any{
		"ignition": map[string]any{"version": "3.4.0"},
		"passwd":   map[string]any{"users": []any{map[string]any{"name": "core", "sshAuthorizedKeys": []string{sshKey}}}},
		"storage": map[string]any{
			"directories": []any{map[string]any{"path": "/etc/mosb-laid", "mode": 0o750, "user": map[string]any{"id": 1000}}},
			"files": []any{map[string]any{"path": "/etc/mosb-laid/motd", "mode": 0o600, "user": map[string]any{"id": 1000}, "group": map[string]any{"id": 1000},
				"contents": map[string]any{"source": "data:text/plain;base64," + base64.StdEncoding.EncodeToString([]byte(content))}}},
			"links": []any{map[string]any{"path": "/etc/mosb-motd", "target": "/etc/mosb-laid/motd"}},
		},
		"systemd": map[string]any{"units": []any{map[string]any{"name": "hello.service", "enabled": true, "contents": unit}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.renderPool("rendered-worker-laid", string(ignition), nil)
	e.create(e.newMOSC(mosc, "RUN cat /etc/mosb-motd > /etc/seen-by-run && test -L /etc/systemd/system/multi-user.target.wants/hello.service"))
	b := e.waitBuilt(mosc, 1)
	if b.Spec.RenderedMachineConfig != "rendered-worker-laid" {
		t.Fatalf("built from %q", b.Spec.RenderedMachineConfig)
	}

	c := meta.FindStatusCondition(b.Status.Conditions, pipeline.ConditionMachineConfigInImage)
	if c == nil || c.Reason != pipeline.ReasonMachineConfigPartlyLaid || !strings.Contains(c.Message, "passwd.users") ||
		!strings.Contains(c.Message, "1 files, 1 directories, 2 links, 1 systemd units") || strings.Contains(c.Message, "AAAAC3") {
		t.Errorf("%s condition: %+v", pipeline.ConditionMachineConfigInImage, c)
	}

	pushed := e.pushedImage(b.Status.DigestedImagePushspec)
	entries, files := pushed.headers, pushed.files
	check := func(p string, typeflag byte, mode int64, uid int, link string) {
		t.Helper()
		h, ok := entries[p]
		switch {
		case !ok:
			t.Errorf("%s is not in the image", p)
		case h.Typeflag != typeflag || h.Mode&0o7777 != mode || h.Uid != uid || h.Linkname != link:
			t.Errorf("%s: type %c mode %o uid %d link %q; want %c %o %d %q", p, h.Typeflag, h.Mode&0o7777, h.Uid, h.Linkname, typeflag, mode, uid, link)
		}
	}
	check("etc/mosb-laid", tar.TypeDir, 0o750, 1000, "")
	check("etc/mosb-laid/motd", tar.TypeReg, 0o600, 1000, "")
	check("etc/mosb-motd", tar.TypeSymlink, 0o777, 0, "/etc/mosb-laid/motd")
	check("etc/systemd/system/hello.service", tar.TypeReg, 0o644, 0, "")
	check("etc/systemd/system/multi-user.target.wants/hello.service", tar.TypeSymlink, 0o777, 0, "/etc/systemd/system/hello.service")
	if files["etc/mosb-laid/motd"] != content || files["etc/systemd/system/hello.service"] != unit {
		t.Errorf("contents: motd %q, unit %q", files["etc/mosb-laid/motd"], files["etc/systemd/system/hello.service"])
	}
	if files["etc/seen-by-run"] != content {
		t.Errorf("the user's RUN step read %q through the link, want the MachineConfig's file", files["etc/seen-by-run"])
	}
	if preset := files["etc/systemd/system-preset/20-ignition.preset"]; preset != "enable hello.service\n" {
		t.Errorf("preset file %q", preset)
	}
	for p, data := range files {
		if strings.Contains(data, "AAAAC3") && p != "etc/machine-config-daemon/currentconfig" {
			t.Errorf("%s holds the SSH key: users are the node's to apply", p)
		}
	}
	if _, ok := files["etc/machine-config-daemon/currentconfig"]; !ok {
		t.Error("no currentconfig")
	}
}
