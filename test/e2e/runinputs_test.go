package e2e

import (
	"archive/tar"
	"context"
	"crypto/md5"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	configv1 "github.com/openshift/api/config/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/test/harness"
)

// pushedImage is what a test reads of a pushed image: every layer entry's header (the latest
// layer's) and content (every layer's, concatenated, so that nothing a later layer hides is
// missed), by path without "./" or a trailing "/", and the image config.
type pushedImage struct {
	headers map[string]tar.Header
	files   map[string]string
	config  string
}

func (e *env) pushedImage(pullspec string) pushedImage {
	e.t.Helper()
	ref, err := name.ParseReference(pullspec)
	if err != nil {
		e.t.Fatal(err)
	}
	img, err := remote.Image(ref, remote.WithAuth(e.reg.Auth()), remote.WithTransport(e.reg.Transport()), remote.WithContext(e.t.Context()))
	if err != nil {
		e.t.Fatal(err)
	}
	out := pushedImage{headers: map[string]tar.Header{}, files: map[string]string{}}
	if err := harness.WalkImage(img, func(h *tar.Header, r io.Reader) error {
		p := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		out.headers[p] = *h
		data, err := io.ReadAll(r)
		out.files[p] += string(data)
		return err
	}); err != nil {
		e.t.Fatal(err)
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		e.t.Fatal(err)
	}
	out.config = string(raw)
	return out
}

// TestEntitlementsReachRunStepsAndNoLayer creates the entitlement Secret and the yum repository
// ConfigMap under the Machine Config Operator's names: a RUN step reads both, and no byte of them
// is in any layer, in the image config, or in the request ConfigMap.
func TestEntitlementsReachRunStepsAndNoLayer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const (
		entitlement = "-----BEGIN ENTITLEMENT KEY----- e2e-7d1c0b9a -----END-----"
		repo        = "[rhel-private]\nbaseurl=https://cdn.example/REPO-e2e-55f2\nsslclientkey=/etc/pki/entitlement/key.pem\n"
	)
	e.create(
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "etc-pki-entitlement", Namespace: buildNamespace},
			Data: map[string][]byte{"key.pem": []byte(entitlement)}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "etc-yum-repos-d", Namespace: buildNamespace},
			Data: map[string]string{"private.repo": repo}},
	)
	requests := e.captureRequests()
	const mosc = "entitled"
	// The step names neither secret: it records a checksum of the key and a word of the repository.
	e.create(e.newMOSC(mosc, "RUN md5sum /etc/pki/entitlement/key.pem | cut -d' ' -f1 > /etc/entitlement-sum && "+
		"grep -o 'cdn.example' /etc/yum.repos.d/private.repo > /etc/repo-host"))
	b := e.waitBuilt(mosc, 1)

	pushed := e.pushedImage(b.Status.DigestedImagePushspec)
	files, config := pushed.files, pushed.config
	if got, want := strings.TrimSpace(files["etc/entitlement-sum"]), fmt.Sprintf("%x", md5.Sum([]byte(entitlement))); got != want {
		t.Errorf("the RUN step read an entitlement summing to %q, want %q", got, want)
	}
	if got := strings.TrimSpace(files["etc/repo-host"]); got != "cdn.example" {
		t.Errorf("the RUN step read %q from the repository file", got)
	}
	for _, secret := range []string{"e2e-7d1c0b9a", "REPO-e2e-55f2"} {
		for path, data := range files {
			if strings.Contains(data, secret) || strings.HasSuffix(path, "key.pem") || strings.HasSuffix(path, "private.repo") {
				t.Errorf("layer entry %s holds the entitlement or the repository file", path)
			}
		}
		if strings.Contains(config, secret) {
			t.Errorf("the image config holds %s", secret)
		}
		requests.mu.Lock()
		for _, cm := range requests.cms {
			raw, _ := json.Marshal(cm)
			if strings.Contains(string(raw), secret) {
				t.Errorf("request ConfigMap %s holds %s", cm.Name, secret)
			}
		}
		requests.mu.Unlock()
	}
}

// TestTheClusterProxyCarriesRunSteps runs a real forward proxy (tinyproxy, with a password) on
// 127.0.0.1 and blocks every other process's direct HTTP(S) to the outside: a RUN step that fetches
// Debian's archive succeeds only through the proxy the cluster's Proxy names, the proxy's log shows
// the request, and the password is in no output, ConfigMap, pod spec, status, Event or layer.
func TestTheClusterProxyCarriesRunSteps(t *testing.T) {
	t.Parallel()
	const password = "pr0xy-e2e-9c4f1a"
	proxyAddr, proxyLog := startTinyproxy(t, "mosb", password)
	blockDirectWeb(t)
	e := newEnv(t)
	proxyURL := "http://mosb:" + password + "@" + proxyAddr
	e.create(&configv1.Proxy{ObjectMeta: metav1.ObjectMeta{Name: "cluster"},
		Spec: configv1.ProxySpec{HTTPProxy: proxyURL, HTTPSProxy: proxyURL, NoProxy: "localhost,127.0.0.1"}})
	requests := e.captureRequests()
	const mosc = "proxied"
	e.create(e.newMOSC(mosc, "RUN wget -q -O - http://deb.debian.org/debian/dists/bookworm/Release | head -n 1 > /etc/debian-origin"))
	b := e.waitBuilt(mosc, 1)

	pushed := e.pushedImage(b.Status.DigestedImagePushspec)
	files, config := pushed.files, pushed.config
	if got := strings.TrimSpace(files["etc/debian-origin"]); got != "Origin: Debian" {
		t.Errorf("the RUN step fetched %q, want Debian's Release file", got)
	}
	if log := readFile(t, proxyLog); !strings.Contains(log, "deb.debian.org") {
		t.Errorf("the proxy's log does not show the request:\n%s", log)
	}

	// Nowhere but in the proxy Secret.
	where := map[string]string{"image config": config, "controller log": e.ctrl.logs()}
	for path, data := range files {
		where["layer entry "+path] = data
	}
	requests.mu.Lock()
	for _, cm := range requests.cms {
		raw, _ := json.Marshal(cm)
		where["request ConfigMap "+cm.Name] = string(raw)
	}
	for _, p := range requests.pods {
		raw, _ := json.Marshal(p.Spec)
		where["pod spec "+p.Name] = string(raw)
	}
	requests.mu.Unlock()
	ctx := t.Context()
	m := &mosbv1.MachineOSConfig{}
	if err := e.c.Get(ctx, client.ObjectKey{Name: mosc}, m); err != nil {
		t.Fatal(err)
	}
	for what, obj := range map[string]any{"MachineOSConfig status": m.Status, "MachineOSBuild status": b.Status} {
		raw, _ := json.Marshal(obj)
		where[what] = string(raw)
	}
	events := &corev1.EventList{}
	if err := e.c.List(ctx, events); err != nil {
		t.Fatal(err)
	}
	for _, ev := range events.Items {
		where["Event "+ev.Name] = ev.Message
	}
	for what, text := range where {
		if strings.Contains(text, password) {
			t.Errorf("the proxy password is in the %s", what)
		}
	}
	secrets := &corev1.SecretList{}
	if err := e.c.List(ctx, secrets, client.InNamespace(buildNamespace)); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		if strings.HasSuffix(s.Name, "-proxy") {
			t.Errorf("proxy Secret %s outlived its build", s.Name)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// proxyUser is the user tinyproxy runs as: the one user blockDirectWeb lets through.
const proxyUser = "nobody"

// startTinyproxy runs Debian's tinyproxy on 127.0.0.1 with basic authentication and returns its
// address and log file.
func startTinyproxy(t *testing.T, user, password string) (addr, logFile string) {
	t.Helper()
	bin, err := exec.LookPath("tinyproxy")
	if err != nil {
		t.Fatalf("tinyproxy is not installed (hack/install-deps.sh installs it): %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = ln.Addr().String()
	ln.Close()
	dir, err := os.MkdirTemp("", "mosb-tinyproxy-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// tinyproxy drops to proxyUser and writes its log as that user.
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	logFile = filepath.Join(dir, "tinyproxy.log")
	conf := fmt.Sprintf("User %s\nGroup nogroup\nListen 127.0.0.1\nPort %s\nTimeout 60\nLogFile %q\nLogLevel Connect\nMaxClients 20\nBasicAuth %s %s\n",
		proxyUser, addr[strings.LastIndex(addr, ":")+1:], logFile, user, password)
	confFile := filepath.Join(dir, "tinyproxy.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-d", "-c", confFile)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	eventually(t, 10*time.Second, "tinyproxy listening on "+addr, func(ctx context.Context) (bool, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false, fmt.Errorf("%v; tinyproxy said: %s", err, out.String())
		}
		c.Close()
		return true, nil
	})
	return addr, logFile
}

// blockDirectWeb rejects TCP to ports 80 and 443 off this machine for every process but the
// proxy's user, for the length of the test, and checks that a direct request now fails.
func blockDirectWeb(t *testing.T) {
	t.Helper()
	u, err := user.Lookup(proxyUser)
	if err != nil {
		t.Fatal(err)
	}
	rule := []string{"OUTPUT", "-p", "tcp", "-m", "multiport", "--dports", "80,443", "!", "-d", "127.0.0.0/8",
		"-m", "owner", "!", "--uid-owner", u.Uid, "-m", "comment", "--comment", fmt.Sprintf("mosb-e2e-%d", os.Getpid()), "-j", "REJECT"}
	if out, err := exec.Command("iptables", append([]string{"-I"}, rule...)...).CombinedOutput(); err != nil {
		t.Fatalf("blocking direct web access (iptables, as root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("iptables", append([]string{"-D"}, rule...)...).CombinedOutput(); err != nil {
			t.Errorf("removing the iptables rule: %v: %s", err, out)
		}
	})
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	if resp, err := client.Get("http://deb.debian.org/debian/dists/bookworm/Release"); err == nil {
		resp.Body.Close()
		t.Fatal("direct access to deb.debian.org still works: the test would prove nothing")
	}
}
