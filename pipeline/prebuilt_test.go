package pipeline

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
)

func TestDecidePreBuilt(t *testing.T) {
	const image = "registry.example.com/os/adopted@sha256:" + "1111111111111111111111111111111111111111111111111111111111111111"
	identity := strings.Repeat("f", 64)
	seeded := preBuiltBuild(succeededBuild("worker-f", "rendered-worker-1", "1"))
	seeded.Spec.BuildIdentity = identity
	seeded.Status.DigestedImagePushspec = image
	built := succeededBuild("worker-f", "rendered-worker-1", "2")
	built.Spec.BuildIdentity = identity
	recordedOnly := preBuiltBuild(mosbv1.MachineOSBuild{ObjectMeta: metav1.ObjectMeta{Name: "worker-f"}, Spec: mosbv1.MachineOSBuildSpec{BuildIdentity: identity}})
	other := succeededBuild("worker-e", "rendered-worker-1", "3")
	other.Spec.BuildIdentity = strings.Repeat("e", 64)

	mosc := func(annotation *string, status string) *mosbv1.MachineOSConfig {
		m := &mosbv1.MachineOSConfig{ObjectMeta: metav1.ObjectMeta{Name: "worker"}}
		if annotation != nil {
			m.Annotations = map[string]string{AnnotationPreBuiltImage: *annotation}
		}
		m.Status.CurrentImagePullspec = mosbv1.ImageDigestFormat(status)
		return m
	}
	for _, tt := range []struct {
		name    string
		m       *mosbv1.MachineOSConfig
		builds  []mosbv1.MachineOSBuild
		want    PreBuiltStep
		refused bool
	}{
		{"no annotation", mosc(nil, ""), nil, PreBuiltNone, false},
		{"by tag", mosc(ptr("registry.example.com/os/adopted:latest"), ""), nil, PreBuiltNone, true},
		{"not a pullspec", mosc(ptr("not an image"), ""), nil, PreBuiltNone, true},
		{"new inputs: adopt", mosc(ptr(image), ""), []mosbv1.MachineOSBuild{other}, PreBuiltSeed, false},
		{"seeded, status not yet", mosc(ptr(image), other.Status.DigestedImagePushspec), []mosbv1.MachineOSBuild{other, seeded}, PreBuiltWait, false},
		{"seeded and in status", mosc(ptr(image), image), []mosbv1.MachineOSBuild{seeded}, PreBuiltDone, false},
		{"built by mosb already", mosc(ptr(image), built.Status.DigestedImagePushspec), []mosbv1.MachineOSBuild{built}, PreBuiltIgnored, false},
		{"adopted already with another image", mosc(ptr("registry.example.com/os/other@sha256:"+strings.Repeat("2", 64)), image), []mosbv1.MachineOSBuild{seeded}, PreBuiltIgnored, false},
		{"recorded, its status not written", mosc(ptr(image), ""), []mosbv1.MachineOSBuild{recordedOnly}, PreBuiltSeed, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, step, f := DecidePreBuilt(tt.m, tt.builds, identity)
			if step != tt.want || (f != nil) != tt.refused {
				t.Fatalf("step %d, failure %v; want %d, refused %v", step, f, tt.want, tt.refused)
			}
			if f != nil && (f.Reason != ReasonInvalidMachineOSConfig || !strings.Contains(f.Message, AnnotationPreBuiltImage)) {
				t.Errorf("refusal %s: %s", f.Reason, f.Message)
			}
			if step == PreBuiltSeed && got != image {
				t.Errorf("image %q", got)
			}
		})
	}
}
