package pipeline

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
)

func TestDecideRebuild(t *testing.T) {
	build := func(answers ...string) mosbv1.MachineOSBuild {
		b := mosbv1.MachineOSBuild{ObjectMeta: metav1.ObjectMeta{Name: "b", Annotations: map[string]string{AnnotationCreated: "x"}}}
		for _, a := range answers {
			b.Annotations[AnnotationRebuild] = a
		}
		return b
	}
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		builds      []mosbv1.MachineOSBuild
		want        RebuildAction
		wantToken   string
	}{
		{name: "no annotation", builds: []mosbv1.MachineOSBuild{build()}, want: NoRebuild},
		{name: "other annotations", annotations: map[string]string{"a": "b"}, want: NoRebuild},
		// The Machine Config Operator's request: present, empty.
		{name: "empty value", annotations: map[string]string{mosbv1.RebuildAnnotation: ""}, builds: []mosbv1.MachineOSBuild{build()}, want: TakeRebuild},
		{name: "any value", annotations: map[string]string{mosbv1.RebuildAnnotation: "true"}, want: TakeRebuild},
		// The same value as a request answered before is a new request.
		{name: "a value answered before", annotations: map[string]string{mosbv1.RebuildAnnotation: "true"}, builds: []mosbv1.MachineOSBuild{build("true")}, want: TakeRebuild},
		// A request made while one is taken replaces it: the next build answers both.
		{name: "a request on top of a taken one", annotations: map[string]string{mosbv1.RebuildAnnotation: "", AnnotationRebuildRequest: "t1"}, want: TakeRebuild},
		// Taken, and the controller stopped before the build: build now.
		{name: "taken, unanswered", annotations: map[string]string{AnnotationRebuildRequest: "t1"}, builds: []mosbv1.MachineOSBuild{build(), build("t0")}, want: StartRebuild, wantToken: "t1"},
		{name: "taken, no builds", annotations: map[string]string{AnnotationRebuildRequest: "t1"}, want: StartRebuild, wantToken: "t1"},
		// Taken and answered, the controller stopped before clearing: clear, never build twice.
		{name: "taken, answered", annotations: map[string]string{AnnotationRebuildRequest: "t1"}, builds: []mosbv1.MachineOSBuild{build("t0"), build("t1")}, want: ClearRebuild, wantToken: "t1"},
		// An empty token (set by hand) is a request to take: builds without an answer must not match it.
		{name: "empty token", annotations: map[string]string{AnnotationRebuildRequest: ""}, builds: []mosbv1.MachineOSBuild{build()}, want: TakeRebuild},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, token := DecideRebuild(tc.annotations, tc.builds)
			if got != tc.want || token != tc.wantToken {
				t.Errorf("DecideRebuild = %s, %q; want %s, %q", got, token, tc.want, tc.wantToken)
			}
		})
	}
}
