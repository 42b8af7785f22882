package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestBuilderImageFromPod(t *testing.T) {
	pod := func(containers ...corev1.Container) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "mosb-system", Name: "mosb-controller-abc"}, Spec: corev1.PodSpec{Containers: containers}}
	}
	for _, tc := range []struct {
		name                 string
		pod                  *corev1.Pod
		image, container, er string
	}{
		{
			name:  "the container named controller, wherever it is",
			pod:   pod(corev1.Container{Name: "proxy", Image: "proxy:1"}, corev1.Container{Name: "controller", Image: "quay.example.com/mosb/mosb@sha256:aa"}),
			image: "quay.example.com/mosb/mosb@sha256:aa", container: "controller",
		},
		{
			name:  "no controller container: the first",
			pod:   pod(corev1.Container{Name: "mosb", Image: "mosb:1"}, corev1.Container{Name: "sidecar", Image: "sidecar:1"}),
			image: "mosb:1", container: "mosb",
		},
		{name: "no containers", pod: pod(), er: "no containers"},
		{name: "no image", pod: pod(corev1.Container{Name: "controller"}), er: "no image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			image, container, err := builderImageFromPod(tc.pod)
			if tc.er != "" {
				if err == nil || !strings.Contains(err.Error(), tc.er) || !strings.Contains(err.Error(), "mosb-system/mosb-controller-abc") {
					t.Fatalf("err = %v, want one naming the pod and saying %q", err, tc.er)
				}
				return
			}
			if err != nil || image != tc.image || container != tc.container {
				t.Errorf("= %q, %q, %v; want %q, %q", image, container, err, tc.image, tc.container)
			}
		})
	}
}

func TestBuilderImageSource(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	// The flag wins, even in a pod.
	if key, err := builderImageSource("mosb:flag", env("POD_NAME", "p", "POD_NAMESPACE", "ns")); err != nil || key != (types.NamespacedName{}) {
		t.Errorf("with the flag: %v, %v", key, err)
	}
	if key, err := builderImageSource("", env("POD_NAME", "p", "POD_NAMESPACE", "ns")); err != nil || key != (types.NamespacedName{Namespace: "ns", Name: "p"}) {
		t.Errorf("in a pod: %v, %v", key, err)
	}
	for _, e := range []func(string) string{env(), env("POD_NAME", "p"), env("POD_NAMESPACE", "ns")} {
		_, err := builderImageSource("", e)
		if !errors.Is(err, errInvalidInput) {
			t.Fatalf("err = %v, want invalid input", err)
		}
		for _, s := range []string{"--builder-image", "POD_NAME", "POD_NAMESPACE", `"controller"`} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%q does not mention %s", err, s)
			}
		}
	}
}

// getter answers Gets from a list of results, one per call.
type getter struct {
	client.Reader
	results []error
	pod     corev1.Pod
	calls   int
}

func (g *getter) Get(_ context.Context, _ client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	err := g.results[min(g.calls, len(g.results)-1)]
	g.calls++
	if err == nil {
		*obj.(*corev1.Pod) = g.pod
	}
	return err
}

func TestReadOwnPodRetriesThenSaysWhy(t *testing.T) {
	key := types.NamespacedName{Namespace: "mosb-system", Name: "mosb-controller-abc"}
	unavailable := apierrors.NewServiceUnavailable("starting")
	g := &getter{results: []error{unavailable, nil}, pod: corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: key.Name}}}
	quick := wait.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 5}
	pod, err := readOwnPod(t.Context(), g, key, quick)
	if err != nil || pod.Name != key.Name || g.calls != 2 {
		t.Fatalf("pod %v, err %v after %d calls", pod, err, g.calls)
	}

	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, key.Name, errors.New("no RBAC"))
	g = &getter{results: []error{forbidden}}
	_, err = readOwnPod(t.Context(), g, key, quick)
	if err == nil || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "mosb-system/mosb-controller-abc") || !strings.Contains(err.Error(), "--builder-image") {
		t.Errorf("err = %v; want the API's error, the pod and the way out", err)
	}
	if g.calls != 5 {
		t.Errorf("%d tries, want 5", g.calls)
	}
}
