package buildpod_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/mosb-dev/mosb/builder/buildpod"
)

func TestJobObjectsRunTheBuildPodOnce(t *testing.T) {
	r := podRequest(t)
	r.ServiceAccount = "mosb-build"
	cm, pod := podObjects(t, r)
	jobCM, job, err := buildpod.JobObjects(r)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(jobCM, cm) {
		t.Error("the Job's request ConfigMap differs from the pod's")
	}
	if job.Name != r.Name || job.Namespace != r.Namespace || !reflect.DeepEqual(job.Labels, r.Labels) {
		t.Errorf("Job %s/%s labels %v; want the request's name, namespace and labels", job.Namespace, job.Name, job.Labels)
	}
	if len(job.OwnerReferences) != 1 || job.OwnerReferences[0].UID != r.Owner.UID || !*job.OwnerReferences[0].Controller {
		t.Errorf("owner references %+v; want the MachineOSBuild as controller", job.OwnerReferences)
	}
	if !reflect.DeepEqual(job.Spec.Template.Spec, pod.Spec) || !reflect.DeepEqual(job.Spec.Template.Labels, pod.Labels) {
		t.Error("the Job's pod template is not the build pod")
	}
	if len(job.Spec.Template.OwnerReferences) != 0 || job.Spec.Template.Name != "" {
		t.Error("the pod template names or owns: the Job controller does both")
	}
	if job.Spec.Template.Spec.ServiceAccountName != "mosb-build" || *job.Spec.Template.Spec.AutomountServiceAccountToken {
		t.Errorf("the pod runs as %q with a token mounted: %v", job.Spec.Template.Spec.ServiceAccountName, *job.Spec.Template.Spec.AutomountServiceAccountToken)
	}
	if *job.Spec.BackoffLimit != 0 || *job.Spec.Completions != 1 || *job.Spec.Parallelism != 1 {
		t.Errorf("backoffLimit %d, completions %d, parallelism %d: the controller retries, the Job runs one pod once", *job.Spec.BackoffLimit, *job.Spec.Completions, *job.Spec.Parallelism)
	}
	if job.Spec.ActiveDeadlineSeconds != nil || *job.Spec.Template.Spec.ActiveDeadlineSeconds != *r.ActiveDeadlineSeconds {
		t.Errorf("the Job's deadline %v, its pod's %v; want only the pod's, the request's %d", job.Spec.ActiveDeadlineSeconds, job.Spec.Template.Spec.ActiveDeadlineSeconds, *r.ActiveDeadlineSeconds)
	}

	r.Name = strings.Repeat("w", 64)
	if _, _, err := buildpod.JobObjects(r); err == nil || !strings.Contains(err.Error(), "63") {
		t.Errorf("a 64-character Job name (its pods' job-name label): %v", err)
	}
}
