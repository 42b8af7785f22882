package pipeline

import (
	"strings"
	"testing"

	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
)

func renderedConfig(name string, edit func(*mcfgv1.MachineConfigSpec)) *mcfgv1.MachineConfig {
	mc := &mcfgv1.MachineConfig{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: mcfgv1.MachineConfigSpec{
		OSImageURL:      "quay.io/os/rhcos@sha256:" + strings.Repeat("a", 64),
		KernelType:      "default",
		KernelArguments: []string{"quiet"},
		Extensions:      []string{"usbguard"},
		Config:          runtime.RawExtension{Raw: []byte(`{"ignition":{"version":"3.4.0"},"passwd":{"users":[{"name":"core","sshAuthorizedKeys":["ssh-ed25519 AAAA old"]}]}}`)},
	}}
	if edit != nil {
		edit(&mc.Spec)
	}
	return mc
}

func TestRequiresRebuild(t *testing.T) {
	old := renderedConfig("rendered-worker-1", nil)
	for _, tt := range []struct {
		name  string
		edit  func(*mcfgv1.MachineConfigSpec)
		field string
	}{
		{"the same", nil, ""},
		{"an SSH key", func(s *mcfgv1.MachineConfigSpec) {
			s.Config.Raw = []byte(`{"ignition":{"version":"3.4.0"},"passwd":{"users":[{"name":"core","sshAuthorizedKeys":["ssh-ed25519 AAAA new"]}]}}`)
		}, ""},
		{"a file", func(s *mcfgv1.MachineConfigSpec) {
			s.Config.Raw = []byte(`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/motd","contents":{"source":"data:,hi"}}]}}`)
		}, ""},
		{"fips", func(s *mcfgv1.MachineConfigSpec) { s.FIPS = true }, ""},
		{"osImageURL", func(s *mcfgv1.MachineConfigSpec) { s.OSImageURL = "quay.io/os/rhcos@sha256:" + strings.Repeat("b", 64) }, "osImageURL"},
		{"kernelType", func(s *mcfgv1.MachineConfigSpec) { s.KernelType = "realtime" }, "kernelType"},
		{"an extension more", func(s *mcfgv1.MachineConfigSpec) { s.Extensions = append(s.Extensions, "kerberos") }, "extensions"},
		{"a kernel argument more", func(s *mcfgv1.MachineConfigSpec) { s.KernelArguments = append(s.KernelArguments, "nosmt") }, "kernelArguments"},
		{"kernel arguments reordered", func(s *mcfgv1.MachineConfigSpec) { s.KernelArguments = []string{"nosmt", "quiet"} }, "kernelArguments"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rebuild, field := RequiresRebuild(old, renderedConfig("rendered-worker-2", tt.edit))
			if rebuild != (tt.field != "") || field != tt.field {
				t.Errorf("RequiresRebuild = %v, %q; want %v, %q", rebuild, field, tt.field != "", tt.field)
			}
		})
	}
}

func TestRebuildOnAnyChange(t *testing.T) {
	for _, tt := range []struct {
		annotation        *string
		controllerDefault bool
		want, refused     bool
	}{
		{nil, false, false, false},
		{nil, true, true, false},
		{ptr("true"), false, true, false},
		{ptr("false"), true, false, false},
		{ptr("yes"), false, false, true},
		{ptr(""), true, false, true},
	} {
		m := &mosbv1.MachineOSConfig{ObjectMeta: metav1.ObjectMeta{Name: "worker"}}
		if tt.annotation != nil {
			m.Annotations = map[string]string{AnnotationRebuildOnAnyChange: *tt.annotation}
		}
		got, f := RebuildOnAnyChange(m, tt.controllerDefault)
		if got != tt.want || (f != nil) != tt.refused {
			t.Errorf("annotation %v, default %v: got %v, %v; want %v, refused %v", tt.annotation, tt.controllerDefault, got, f, tt.want, tt.refused)
		}
		if f != nil && (f.Reason != ReasonInvalidMachineOSConfig || !strings.Contains(f.Message, AnnotationRebuildOnAnyChange) || !strings.Contains(f.Message, "worker")) {
			t.Errorf("refusal %s: %s names neither the annotation nor the object", f.Reason, f.Message)
		}
	}
}

func ptr(s string) *string { return &s }

func succeededBuild(name, rendered, digest string) mosbv1.MachineOSBuild {
	b := mosbv1.MachineOSBuild{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: mosbv1.MachineOSBuildSpec{RenderedMachineConfig: rendered}}
	b.Status.DigestedImagePushspec = "registry.example.com/os/worker@sha256:" + strings.Repeat(digest, 64)
	meta.SetStatusCondition(&b.Status.Conditions, metav1.Condition{Type: mosbv1.MachineOSBuildSucceeded, Status: metav1.ConditionTrue, Reason: ReasonBuilt})
	return b
}

func TestServedBuild(t *testing.T) {
	one, two := succeededBuild("worker-1", "rendered-worker-1", "1"), succeededBuild("worker-2", "rendered-worker-2", "2")
	running := mosbv1.MachineOSBuild{ObjectMeta: metav1.ObjectMeta{Name: "worker-3"}}
	m := &mosbv1.MachineOSConfig{}
	if got := ServedBuild(m, []mosbv1.MachineOSBuild{one, two}); got != nil {
		t.Errorf("no image in status: served %s", got.Name)
	}
	m.Status.CurrentImagePullspec = mosbv1.ImageDigestFormat(one.Status.DigestedImagePushspec)
	if got := ServedBuild(m, []mosbv1.MachineOSBuild{running, two, one}); got == nil || got.Name != "worker-1" {
		t.Errorf("served %v, want worker-1 (its image is in status)", got)
	}
	m.Status.CurrentImagePullspec = "registry.example.com/os/worker@sha256:" + mosbv1.ImageDigestFormat(strings.Repeat("9", 64))
	if got := ServedBuild(m, []mosbv1.MachineOSBuild{one, two}); got != nil {
		t.Errorf("status names an image no build has: served %s", got.Name)
	}
}

func TestDecideKeep(t *testing.T) {
	served := succeededBuild("worker-1", "rendered-worker-1", "1")
	builtFrom := renderedConfig("rendered-worker-1", nil)
	sshOnly := renderedConfig("rendered-worker-2", func(s *mcfgv1.MachineConfigSpec) { s.Config.Raw = []byte(`{"ignition":{"version":"3.4.0"}}`) })
	kargs := renderedConfig("rendered-worker-2", func(s *mcfgv1.MachineConfigSpec) { s.KernelArguments = []string{"nosmt"} })
	for _, tt := range []struct {
		name                     string
		served                   *mosbv1.MachineOSBuild
		builtFrom, desired       *mcfgv1.MachineConfig
		anyChange, sameOtherwise bool
		keep                     bool
		why                      string // in the sentence; "" for no question
	}{
		{"no image yet", nil, builtFrom, sshOnly, false, true, false, ""},
		{"no MachineConfig API", &served, builtFrom, nil, false, true, false, ""},
		{"the same rendered MachineConfig", &served, builtFrom, builtFrom, false, true, false, ""},
		{"only what the node applies", &served, builtFrom, sshOnly, false, true, true, "only in what the node applies itself"},
		{"kernel arguments", &served, builtFrom, kargs, false, true, false, "changes kernelArguments"},
		{"every change builds", &served, builtFrom, sshOnly, true, true, false, AnnotationRebuildOnAnyChange},
		{"the image's MachineConfig is gone", &served, nil, sshOnly, false, false, false, "no longer exists"},
		{"other inputs changed too", &served, builtFrom, sshOnly, false, false, false, "other inputs changed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := DecideKeep(tt.served, tt.builtFrom, tt.desired, tt.anyChange, tt.sameOtherwise)
			if d.Keep != tt.keep {
				t.Errorf("Keep = %v, want %v (%s)", d.Keep, tt.keep, d.Why)
			}
			if tt.why == "" && d.Why != "" || !strings.Contains(d.Why, tt.why) {
				t.Errorf("Why = %q, want it to say %q", d.Why, tt.why)
			}
		})
	}
}

func TestReadySaysWhichMachineConfigTheImageServes(t *testing.T) {
	b := succeededBuild("worker-1", "rendered-worker-1", "1")
	if msg := Summarise(nil, &b, true).Ready.Message; strings.Contains(msg, "serves") {
		t.Errorf("a build serving what it was built from: %q", msg)
	}
	b.Annotations = map[string]string{AnnotationServes: "rendered-worker-2"}
	msg := Summarise(nil, &b, true).Ready.Message
	if !strings.Contains(msg, "serves rendered MachineConfig rendered-worker-2") || !strings.Contains(msg, "built from rendered-worker-1") {
		t.Errorf("Ready message %q does not say which rendered MachineConfig the image serves and which it was built from", msg)
	}
}
