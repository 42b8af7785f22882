package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/mosb-dev/mosb/test/harness"
)

// TestCopyImageKeepsTheDigestAndReportsARefusedPush: the image reaches IMG by the digest it was
// built with, with the auth file's credentials; a registry that refuses the push or does not
// answer fails make image (a push error once went unreported).
func TestCopyImageKeepsTheDigestAndReportsARefusedPush(t *testing.T) {
	if testing.Short() {
		t.Skip("needs docker-registry")
	}
	helpers := harness.StartRegistry(t)
	built := harness.PushBaseIndex(t, helpers, "mosb/mosb", "amd64")
	dst := harness.StartRegistry(t, harness.PlainHTTP())
	tag, err := name.NewTag(dst.Host+"/mosb/mosb:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	withCreds, anonymous := filepath.Join(dir, "auth.json"), filepath.Join(dir, "none.json")
	if err := os.WriteFile(withCreds, harness.DockerConfigJSON(dst.Host, dst.Username, dst.Password), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(anonymous, []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}

	none, err := fileKeychain(anonymous)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := copyImage(helpers, built, tag, none); err == nil || !strings.Contains(err.Error(), "pushing the mosb image to "+tag.String()) {
		t.Errorf("a push without credentials to a registry that requires them: %v", err)
	}
	closed, err := name.NewTag("127.0.0.1:1/mosb/mosb:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := copyImage(helpers, built, closed, none); err == nil {
		t.Error("a push to a port nothing listens on succeeded")
	}

	creds, err := fileKeychain(withCreds)
	if err != nil {
		t.Fatal(err)
	}
	got, err := copyImage(helpers, built, tag, creds)
	if err != nil {
		t.Fatal(err)
	}
	if want := tag.Context().Name() + built[strings.Index(built, "@"):]; got != want {
		t.Errorf("copied as %s, want %s (the built digest)", got, want)
	}
}

func TestFileKeychainRefusesWhatIsNotAnAuthFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(f, []byte("password: hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := fileKeychain(f)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("fileKeychain of a YAML file: %v (must refuse without quoting it)", err)
	}
}
