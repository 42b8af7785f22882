package pipeline_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mosb-dev/mosb/containerfiles"
	"github.com/mosb-dev/mosb/pipeline"
)

func TestTheRenderedMachineConfigIsLaidIntoEveryArchitecture(t *testing.T) {
	in := validInputs()
	in.Arches = []string{"amd64", "arm64"}
	in.RenderedMachineConfig = renderedMC()
	in.RenderedMachineConfig.Spec.Config.Raw = []byte(`{"ignition":{"version":"3.4.0"},
		"passwd":{"users":[{"name":"core","sshAuthorizedKeys":["ssh-ed25519 AAAA"]}]},
		"storage":{"files":[{"path":"/etc/motd","contents":{"source":"data:,hello"}}]}}`)
	plan := mustPrepare(t, in)
	for _, a := range plan.Arches {
		if len(a.Build.ContextFiles[containerfiles.ContextMachineConfigLayer]) == 0 {
			t.Errorf("%s: no layer in the build context", a.Arch)
		}
		if !strings.Contains(string(a.Build.Containerfile), "ADD "+containerfiles.ContextMachineConfigLayer+" /") {
			t.Errorf("%s: the Containerfile does not ADD the layer", a.Arch)
		}
	}
	now := metav1.NewTime(time.Unix(100, 0))
	c, ok := pipeline.MachineConfigCondition(plan, 3, now)
	if !ok || c.Type != pipeline.ConditionMachineConfigInImage || c.Status != metav1.ConditionTrue ||
		c.Reason != pipeline.ReasonMachineConfigPartlyLaid || c.ObservedGeneration != 3 {
		t.Fatalf("condition %+v", c)
	}
	if !strings.Contains(c.Message, "1 files") || !strings.Contains(c.Message, "passwd.users") || strings.Contains(c.Message, "AAAA") {
		t.Errorf("message %q: want the file counted, passwd.users named, no key", c.Message)
	}

	in.RenderedMachineConfig.Spec.Config.Raw = []byte(`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/motd","contents":{"source":"data:,hello"}}]}}`)
	if c, _ := pipeline.MachineConfigCondition(mustPrepare(t, in), 1, now); c.Reason != pipeline.ReasonMachineConfigLaid {
		t.Errorf("nothing skipped: reason %s", c.Reason)
	}
	if _, ok := pipeline.MachineConfigCondition(mustPrepare(t, validInputs()), 1, now); ok {
		t.Error("a condition without a rendered MachineConfig")
	}
}

func TestARenderedMachineConfigThatCannotBeLaidIsRefused(t *testing.T) {
	in := validInputs()
	in.RenderedMachineConfig = renderedMC()
	in.RenderedMachineConfig.Spec.Config.Raw = []byte(`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/x","contents":{"source":"https://example.com/x"}}]}}`)
	_, err := pipeline.Prepare(in)
	var f *pipeline.Failure
	if !errors.As(err, &f) || f.Reason != pipeline.ReasonInvalidMachineConfig {
		t.Fatalf("got %v, want %s", err, pipeline.ReasonInvalidMachineConfig)
	}
	for _, want := range []string{"MachineOSConfig", in.RenderedMachineConfig.Name, "storage.files[/etc/x]", "data:"} {
		if !strings.Contains(f.Message, want) {
			t.Errorf("message %q does not say %q", f.Message, want)
		}
	}
}
