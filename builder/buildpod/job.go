package buildpod

import (
	"fmt"
	"maps"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// A build runs as a batch/v1 Job (one per architecture and attempt) whose single pod is the build
// pod of Objects. The Job makes no second try of its own (backoffLimit 0): the controller decides
// whether a failure is worth another attempt (an evicted pod is, a failed RUN step is not), waits
// a backoff and records every failed attempt, which a Job's retries would hide.

// LabelJobController is the label the Job controller puts on a Job's pods: the Job's UID.
const LabelJobController = batchv1.ControllerUidLabel

// JobObjects returns the request ConfigMap and the build Job for r: the Job is named r.Name, owned
// by r.Owner, carries r.Labels on itself and on its pod, and its pod template is the pod of
// Objects. ActiveDeadlineSeconds bounds the pod only, from its start, as before there were Jobs: a
// Job's deadline runs from its creation, so it would end a build whose pod waits for a node (which a
// cluster autoscaler may be adding) and race the pod's own deadline. Pure: no I/O.
func JobObjects(r Request) (*corev1.ConfigMap, *batchv1.Job, error) {
	cm, pod, err := Objects(r)
	if err != nil {
		return nil, nil, err
	}
	// The Job controller labels the pod with the Job's name.
	if errs := validation.IsValidLabelValue(r.Name); len(errs) > 0 {
		return nil, nil, fmt.Errorf("build Job %s/%s: name %q: %s", r.Namespace, r.Name, r.Name, strings.Join(errs, "; "))
	}
	job := &batchv1.Job{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: r.objectMeta(r.Name),
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr(int32(0)),
			Parallelism:  ptr(int32(1)),
			Completions:  ptr(int32(1)),
			// A replacement pod (there is none with backoffLimit 0) never overlaps a terminating
			// one on the node image store.
			PodReplacementPolicy: ptr(batchv1.Failed),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: maps.Clone(pod.Labels), Annotations: maps.Clone(pod.Annotations)},
				Spec:       pod.Spec,
			},
		},
	}
	return cm, job, nil
}
