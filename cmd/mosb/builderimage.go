package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mosb-dev/mosb/pipeline"
)

// The controller and the builder are one image: run as a Deployment, the controller finds its
// own image from its pod (named by the downward API), so build pods run the very mosb version
// the controller is, and --builder-image is only needed outside a pod.

// controllerContainer is the controller's container in its Deployment.
const controllerContainer = "controller"

// The downward-API environment variables that name the controller's pod.
const (
	envPodName      = "POD_NAME"
	envPodNamespace = "POD_NAMESPACE"
)

// builderImageSource says where the builder image comes from: the flag when it is set, else the
// controller's own pod (its key), else an error that names both ways.
func builderImageSource(flag string, getenv func(string) string) (types.NamespacedName, error) {
	if flag != "" {
		return types.NamespacedName{}, nil
	}
	pod := types.NamespacedName{Namespace: getenv(envPodNamespace), Name: getenv(envPodName)}
	if pod.Name == "" || pod.Namespace == "" {
		return types.NamespacedName{}, invalid(pipeline.ReasonInvalidFlag, "no builder image: set --builder-image to the mosb image build pods run `mosb worker` from, "+
			"or run the controller in a pod with %s and %s set from the downward API (metadata.name, metadata.namespace) "+
			"to use the image of its container %q", envPodName, envPodNamespace, controllerContainer)
	}
	return pod, nil
}

// builderImageFromPod is the controller's own image: that of its container named "controller",
// else of its first container. It also returns the container's name.
func builderImageFromPod(pod *corev1.Pod) (string, string, error) {
	what := fmt.Sprintf("pod %s/%s", pod.Namespace, pod.Name)
	if len(pod.Spec.Containers) == 0 {
		return "", "", fmt.Errorf("%s has no containers to take the builder image from", what)
	}
	c := pod.Spec.Containers[0]
	for _, cc := range pod.Spec.Containers {
		if cc.Name == controllerContainer {
			c = cc
			break
		}
	}
	if c.Image == "" {
		return "", "", fmt.Errorf("container %s of %s has no image", c.Name, what)
	}
	return c.Image, c.Name, nil
}

// ownPodBackoff: five tries within about 8 seconds.
var ownPodBackoff = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Steps: 5}

// readOwnPod reads the controller's pod around any cache, trying again (backoff) on any error:
// at start-up the API server may not answer yet.
func readOwnPod(ctx context.Context, reader client.Reader, key types.NamespacedName, backoff wait.Backoff) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	var last error
	err := wait.ExponentialBackoffWithContext(ctx, backoff,
		func(ctx context.Context) (bool, error) {
			last = reader.Get(ctx, key, pod)
			return last == nil, nil
		})
	if err != nil {
		if last == nil {
			last = err
		}
		if errors.Is(err, context.Canceled) {
			return nil, err
		}
		return nil, fmt.Errorf("reading the controller's own pod %s (%s, %s) for the builder image: %w; "+
			"allow the controller to get pods in its namespace, or set --builder-image", key, envPodNamespace, envPodName, last)
	}
	return pod, nil
}
