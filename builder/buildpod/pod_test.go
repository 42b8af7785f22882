package buildpod_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	configv1 "github.com/openshift/api/config/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/registry"
	"github.com/mosb-dev/mosb/registry/bounds"
	"github.com/mosb-dev/mosb/test/harness"
)

const (
	pullPassword  = "pull-pa55word-never-in-a-configmap"
	proxyPassword = "pr0xy-pa55word-only-in-its-secret"
	binaryByte    = "\xff\xfe not UTF-8 \x80"
)

func testCA(t *testing.T) []byte {
	t.Helper()
	ca, err := harness.NewCA("pod-test")
	if err != nil {
		t.Fatal(err)
	}
	return ca.PEM
}

// podRequest is a request with everything a controller would set.
func podRequest(t *testing.T) buildpod.Request {
	t.Helper()
	img := &configv1.Image{ObjectMeta: metav1.ObjectMeta{Name: "cluster"}}
	img.Spec.RegistrySources.InsecureRegistries = []string{"insecure.example.com:5000", "*.lab.example"}
	cfg, err := registry.NewConfig(registry.ConfigSources{Image: img})
	if err != nil {
		t.Fatal(err)
	}
	conf, err := cfg.PullRegistriesConf()
	if err != nil {
		t.Fatal(err)
	}
	policy, err := cfg.PolicyJSON()
	if err != nil {
		t.Fatal(err)
	}
	deadline := int64(3600)
	return buildpod.Request{
		Name:      "worker-os-0123456789-amd64",
		Namespace: "mosb-system",
		Labels:    map[string]string{"mosb.dev/machineosbuild": "worker-os-0123456789", "mosb.dev/arch": "amd64"},
		Owner: metav1.OwnerReference{
			APIVersion: "machineconfiguration.openshift.io/v1alpha1", Kind: "MachineOSBuild",
			Name: "worker-os-0123456789", UID: "6f1c2a9e-0000-4000-8000-000000000001",
		},
		Build: buildpod.ArchBuild{
			Arch:          "amd64",
			Containerfile: []byte("FROM registry.example.com/os/base@sha256:" + strings.Repeat("a", 64) + "\nCOPY machineconfig/currentconfig /etc/machine-config-daemon/currentconfig\n"),
			ContextFiles: map[string][]byte{
				"machineconfig/currentconfig": []byte(`{"kind":"MachineConfig"}`),
				"extensions/repo/x.rpm":       []byte(binaryByte),
				"top":                         []byte("top-level file"),
				"a b/c+d@e":                   []byte("odd characters"),
			},
		},
		Target: "registry.example.com:5000/os/worker:latest",
		Registry: buildpod.RegistryConfig{
			RegistriesConf: conf,
			PolicyJSON:     policy,
			CAs:            map[string][]byte{"registry.example.com:5000": testCA(t), "quay.example.com": testCA(t)},
			PullAuth:       harness.DockerConfigJSON("registry.example.com:5000", "puller", pullPassword),
		},
		PullSecret:            "pull",
		PushSecret:            "push",
		CacheRepo:             "registry.example.com:5000/os/cache",
		BuilderImage:          "quay.example.com/mosb/mosb@sha256:" + strings.Repeat("b", 64),
		ActiveDeadlineSeconds: &deadline,
		RunMounts: []buildpod.RunMount{
			{Secret: "etc-pki-entitlement", Target: "/etc/pki/entitlement"},
			{ConfigMap: "etc-yum-repos-d", Target: "/etc/yum.repos.d"},
		},
		Proxy: registry.Proxy{HTTPProxy: "http://mosb:" + proxyPassword + "@proxy.example:3128", NoProxy: ".cluster.local"},
	}
}

func podObjects(t *testing.T, r buildpod.Request) (*corev1.ConfigMap, *corev1.Pod) {
	t.Helper()
	cm, pod, err := buildpod.Objects(r)
	if err != nil {
		t.Fatal(err)
	}
	return cm, pod
}

func TestPodObjectsPodSpec(t *testing.T) {
	r := podRequest(t)
	cm, pod := podObjects(t, r)

	if got := pod.Spec.NodeSelector; !reflect.DeepEqual(got, map[string]string{"kubernetes.io/arch": "amd64"}) {
		t.Errorf("nodeSelector = %v", got)
	}
	if pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy = %q", pod.Spec.RestartPolicy)
	}
	if d := pod.Spec.ActiveDeadlineSeconds; d == nil || *d != 3600 || d == r.ActiveDeadlineSeconds {
		t.Errorf("activeDeadlineSeconds = %v (want a copy of 3600)", d)
	}
	if a := pod.Spec.AutomountServiceAccountToken; a == nil || *a {
		t.Error("the service account token is mounted; the worker needs no API access")
	}
	if pod.Spec.HostNetwork {
		t.Error("hostNetwork without being asked")
	}
	if len(pod.Spec.InitContainers) != 0 || len(pod.Spec.EphemeralContainers) != 0 || len(pod.Spec.Containers) != 1 {
		t.Fatalf("want exactly one container, got %d (+%d init)", len(pod.Spec.Containers), len(pod.Spec.InitContainers))
	}
	c := pod.Spec.Containers[0]
	if c.Name != "build" || c.Image != r.BuilderImage {
		t.Errorf("container %q image %q", c.Name, c.Image)
	}
	wantCmd := []string{"mosb", "worker", "--request=/etc/mosb/request", "--pull-secret=/var/run/secrets/mosb/pull",
		"--push-secret=/var/run/secrets/mosb/push", "--root=/var/lib/mosb/build", "--termination-log=/dev/termination-log"}
	if !reflect.DeepEqual(c.Command, wantCmd) {
		t.Errorf("command = %q\nwant      %q", c.Command, wantCmd)
	}
	if c.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError || c.TerminationMessagePath != "/dev/termination-log" {
		t.Errorf("termination message %q at %q", c.TerminationMessagePolicy, c.TerminationMessagePath)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	for _, k := range []string{"HOME", "TMPDIR"} {
		if !strings.HasPrefix(env[k], buildpod.WorkDir+"/") {
			t.Errorf("%s=%q is not inside the emptyDir %s", k, env[k], buildpod.WorkDir)
		}
	}

	// Owner and labels on both objects.
	for _, m := range []metav1.ObjectMeta{cm.ObjectMeta, pod.ObjectMeta} {
		if m.Name != r.Name || m.Namespace != r.Namespace {
			t.Errorf("object %s/%s, want %s/%s", m.Namespace, m.Name, r.Namespace, r.Name)
		}
		if !reflect.DeepEqual(m.Labels, r.Labels) {
			t.Errorf("%s labels = %v", m.Name, m.Labels)
		}
		if len(m.OwnerReferences) != 1 {
			t.Fatalf("%d owner references", len(m.OwnerReferences))
		}
		o := m.OwnerReferences[0]
		if o.Kind != "MachineOSBuild" || o.Name != r.Owner.Name || o.UID != r.Owner.UID || o.APIVersion != r.Owner.APIVersion ||
			o.Controller == nil || !*o.Controller || o.BlockOwnerDeletion == nil || !*o.BlockOwnerDeletion {
			t.Errorf("owner reference %+v", o)
		}
	}
	// The caller's map is copied, not shared.
	pod.Labels["x"] = "y"
	if _, ok := r.Labels["x"]; ok || cm.Labels["x"] == "y" {
		t.Error("the objects share the caller's labels map")
	}

	// Volumes: the ConfigMap, each secret and the emptyDir, each mounted where it belongs.
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		vols[v.Name] = v
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		if _, dup := mounts[m.MountPath]; dup {
			t.Errorf("two mounts at %s", m.MountPath)
		}
		mounts[m.MountPath] = m
	}
	for dir, want := range map[string]struct {
		readOnly bool
		check    func(corev1.VolumeSource) bool
	}{
		buildpod.RequestDir: {true, func(s corev1.VolumeSource) bool { return s.ConfigMap != nil && s.ConfigMap.Name == cm.Name }},
		buildpod.PullSecretDir: {true, func(s corev1.VolumeSource) bool {
			return s.Secret != nil && s.Secret.SecretName == "pull" && len(s.Secret.Items) == 0
		}},
		buildpod.PushSecretDir: {true, func(s corev1.VolumeSource) bool {
			return s.Secret != nil && s.Secret.SecretName == "push" && len(s.Secret.Items) == 0
		}},
		buildpod.WorkDir: {false, func(s corev1.VolumeSource) bool { return s.EmptyDir != nil }},
	} {
		m, ok := mounts[dir]
		if !ok {
			t.Errorf("nothing is mounted at %s", dir)
			continue
		}
		if m.ReadOnly != want.readOnly {
			t.Errorf("%s: readOnly = %v", dir, m.ReadOnly)
		}
		if !want.check(vols[m.Name].VolumeSource) {
			t.Errorf("%s: volume %q is %+v", dir, m.Name, vols[m.Name].VolumeSource)
		}
	}
	// With a read-only root, the paths buildah writes to whatever it is told are the emptyDir's.
	for _, p := range []string{"/run/lock", "/run/containers", "/var/tmp"} {
		m, ok := mounts[p]
		if !ok || m.ReadOnly || vols[m.Name].EmptyDir == nil || m.SubPath == "" {
			t.Errorf("%s is not a writable subPath of the emptyDir: %+v", p, m)
		}
	}
	// request, pull, push, work (+3 subPaths), two run mounts.
	if len(mounts) != 9 || len(vols) != 6 {
		t.Errorf("%d mounts and %d volumes, want 9 and 6", len(mounts), len(vols))
	}
}

// The emptyDir is as large as the build's ephemeral-storage limit, so a kubelet evicts a build
// that outgrows it naming the volume; without a limit it is unbounded.
func TestPodObjectsWorkVolumeSizeLimit(t *testing.T) {
	for _, limit := range []string{"", "3Gi"} {
		r := podRequest(t)
		if limit != "" {
			r.Resources.Limits = corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse(limit), corev1.ResourceMemory: resource.MustParse("1Gi")}
		}
		_, pod := podObjects(t, r)
		var work *corev1.EmptyDirVolumeSource
		for _, v := range pod.Spec.Volumes {
			if v.Name == "work" {
				work = v.EmptyDir
			}
		}
		switch {
		case work == nil:
			t.Fatal("no work emptyDir")
		case limit == "" && work.SizeLimit != nil:
			t.Errorf("no ephemeral-storage limit, but the emptyDir is limited to %s", work.SizeLimit)
		case limit != "" && (work.SizeLimit == nil || work.SizeLimit.String() != limit):
			t.Errorf("ephemeral-storage limit %s, emptyDir sizeLimit %v", limit, work.SizeLimit)
		}
	}
}

func TestPodObjectsSecurityContext(t *testing.T) {
	_, pod := podObjects(t, podRequest(t))
	sc := pod.Spec.Containers[0].SecurityContext
	if sc == nil {
		t.Fatal("no securityContext")
	}
	if sc.Privileged == nil || *sc.Privileged {
		t.Error("the build container is privileged (or does not say it is not)")
	}
	if ps := pod.Spec.SecurityContext; ps != nil && ps.SELinuxOptions != nil {
		t.Error("the pod sets SELinux options")
	}
	if sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities do not drop ALL: %+v", sc.Capabilities)
	}
	add := map[corev1.Capability]bool{}
	for _, c := range sc.Capabilities.Add {
		add[c] = true
	}
	// What buildah's chroot isolation uses (SYS_ADMIN, SYS_CHROOT) and its default RUN set.
	for _, c := range []corev1.Capability{"SYS_ADMIN", "SYS_CHROOT", "SETPCAP", "SETUID", "SETGID", "CHOWN",
		"DAC_OVERRIDE", "FOWNER", "FSETID", "SETFCAP", "KILL", "NET_BIND_SERVICE"} {
		if !add[c] {
			t.Errorf("capability %s is not added", c)
		}
		delete(add, c)
	}
	if len(add) > 0 {
		t.Errorf("capabilities nobody asked for: %v", add)
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Error("not root: chroot isolation needs uid 0")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("privilege escalation (setuid programs, file capabilities) is allowed")
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccomp profile %+v, want RuntimeDefault", sc.SeccompProfile)
	}
	if sc.AppArmorProfile == nil || sc.AppArmorProfile.Type != corev1.AppArmorProfileTypeUnconfined {
		t.Errorf("AppArmor profile %+v: the runtime default denies the chroot's mounts", sc.AppArmorProfile)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("the root filesystem is writable")
	}
}

func TestPodObjectsHostNetworkOnlyWhenAsked(t *testing.T) {
	r := podRequest(t)
	_, pod := podObjects(t, r)
	if pod.Spec.HostNetwork || pod.Spec.DNSPolicy != "" {
		t.Errorf("hostNetwork %v dnsPolicy %q without being asked", pod.Spec.HostNetwork, pod.Spec.DNSPolicy)
	}
	r.HostNetwork = true
	_, pod = podObjects(t, r)
	if !pod.Spec.HostNetwork || pod.Spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("hostNetwork %v dnsPolicy %q when asked", pod.Spec.HostNetwork, pod.Spec.DNSPolicy)
	}
}

func TestPodObjectsWithoutPullSecretMountsNone(t *testing.T) {
	r := podRequest(t)
	r.PullSecret, r.RunMounts = "", nil
	_, pod := podObjects(t, r)
	c := pod.Spec.Containers[0]
	for _, m := range c.VolumeMounts {
		if m.MountPath == buildpod.PullSecretDir {
			t.Error("a pull secret is mounted though none was named")
		}
	}
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName != "push" {
			t.Errorf("secret volume %q", v.Secret.SecretName)
		}
	}
	if !contains(c.Command, "--pull-secret=") {
		t.Errorf("command %q does not say there is no pull secret", c.Command)
	}
}

func TestPodObjectsConfigMapHoldsNoSecret(t *testing.T) {
	r := podRequest(t)
	cm, pod := podObjects(t, r)
	raw, err := json.Marshal(cm)
	if err != nil {
		t.Fatal(err)
	}
	podRaw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{pullPassword, base64.StdEncoding.EncodeToString([]byte("puller:" + pullPassword)), string(r.Registry.PullAuth), proxyPassword} {
		if bytes.Contains(raw, []byte(secret)) || bytes.Contains(podRaw, []byte(secret)) {
			t.Errorf("the objects hold credentials (%.12s…)", secret)
		}
		for k, v := range cm.BinaryData {
			if bytes.Contains(v, []byte(secret)) {
				t.Errorf("binaryData %s holds pull credentials", k)
			}
		}
	}
	for _, k := range append(slices.Sorted(maps.Keys(cm.Data)), slices.Sorted(maps.Keys(cm.BinaryData))...) {
		if strings.Contains(strings.ToLower(k), "auth") || strings.Contains(k, "docker") {
			t.Errorf("ConfigMap key %q looks like credentials", k)
		}
	}
}

// TestPodObjectsRunMountsAndProxy: the run mounts are optional volumes the build container sees
// read-only where the worker looks for them; the proxy reaches both containers through the proxy
// Secret only, which holds it upper and lower case.
func TestPodObjectsRunMountsAndProxy(t *testing.T) {
	r := podRequest(t)
	r.NodeStore = &buildpod.NodeStore{HostPath: "/var/lib/mosb/store"}
	_, pod := podObjects(t, r)
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range pod.Spec.Containers[0].VolumeMounts {
		mounts[m.Name] = m
	}
	for i, want := range []struct{ secret, configMap string }{{"etc-pki-entitlement", ""}, {"", "etc-yum-repos-d"}} {
		name := fmt.Sprintf("run-mount-%d", i)
		var vol *corev1.Volume
		for j := range pod.Spec.Volumes {
			if pod.Spec.Volumes[j].Name == name {
				vol = &pod.Spec.Volumes[j]
			}
		}
		switch {
		case vol == nil:
			t.Errorf("no volume %s", name)
		case want.secret != "" && (vol.Secret == nil || vol.Secret.SecretName != want.secret || !*vol.Secret.Optional):
			t.Errorf("volume %s: %+v, want optional Secret %s", name, vol.VolumeSource, want.secret)
		case want.configMap != "" && (vol.ConfigMap == nil || vol.ConfigMap.Name != want.configMap || !*vol.ConfigMap.Optional):
			t.Errorf("volume %s: %+v, want optional ConfigMap %s", name, vol.VolumeSource, want.configMap)
		}
		if m := mounts[name]; m.MountPath != fmt.Sprintf("%s/%d", buildpod.RunMountsDir, i) || !m.ReadOnly {
			t.Errorf("mount %s: %+v", name, m)
		}
	}
	secret := buildpod.ProxySecret(r)
	if secret == nil || string(secret.Data["http_proxy"]) != r.Proxy.HTTPProxy || string(secret.Data["HTTP_PROXY"]) != r.Proxy.HTTPProxy ||
		string(secret.Data["NO_PROXY"]) != r.Proxy.NoProxy || secret.Name != buildpod.ProxySecretName(r) || len(secret.OwnerReferences) != 1 {
		t.Fatalf("proxy Secret %+v", secret)
	}
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		refs := map[string]bool{}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == secret.Name {
				refs[e.Name] = true
			}
		}
		if len(refs) != len(secret.Data) {
			t.Errorf("container %s takes %v from the proxy Secret, want all of %d keys", c.Name, refs, len(secret.Data))
		}
	}
	r.Proxy = registry.Proxy{}
	if buildpod.ProxySecret(r) != nil {
		t.Error("a proxy Secret without a proxy")
	}
}

func TestPodObjectsItemsMapNestedPaths(t *testing.T) {
	r := podRequest(t)
	cm, pod := podObjects(t, r)
	var vol *corev1.ConfigMapVolumeSource
	for _, v := range pod.Spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
			vol = v.ConfigMap
		}
	}
	if vol == nil {
		t.Fatal("no ConfigMap volume")
	}
	if cm.Immutable == nil || !*cm.Immutable {
		t.Error("the request ConfigMap is not immutable")
	}
	data := configMapData(t, cm)
	byPath := map[string][]byte{}
	seen := map[string]bool{}
	for _, it := range vol.Items {
		if errs := validation.IsConfigMapKey(it.Key); len(errs) > 0 {
			t.Errorf("key %q: %v", it.Key, errs)
		}
		if strings.HasPrefix(it.Path, "..") || path.IsAbs(it.Path) || path.Clean(it.Path) != it.Path {
			t.Errorf("item path %q is not a path kubelet accepts", it.Path)
		}
		d, ok := data[it.Key]
		if !ok {
			t.Errorf("item key %q is not in the ConfigMap", it.Key)
		}
		seen[it.Key] = true
		byPath[it.Path] = d
	}
	for k := range data {
		if !seen[k] {
			t.Errorf("ConfigMap key %q is not projected", k)
		}
	}
	for p, want := range r.Build.ContextFiles {
		if got, ok := byPath["context/"+p]; !ok || !bytes.Equal(got, want) {
			t.Errorf("context file %q: at context/%s is %q", p, p, got)
		}
	}
	for host, want := range r.Registry.CAs {
		if got := byPath["certs.d/"+host+"/ca.crt"]; !bytes.Equal(got, want) {
			t.Errorf("CA for %s not at certs.d/%s/ca.crt", host, host)
		}
	}
	if !bytes.Equal(byPath["Containerfile"], r.Build.Containerfile) {
		t.Error("Containerfile not at Containerfile")
	}
	// Bytes that are not UTF-8 travel in binaryData, byte for byte.
	var inBinary bool
	for _, v := range cm.BinaryData {
		inBinary = inBinary || string(v) == binaryByte
	}
	if !inBinary {
		t.Error("the non-UTF-8 context file is not in binaryData")
	}
	for k, v := range cm.Data {
		if strings.ContainsRune(v, '\uFFFD') {
			t.Errorf("data %s was mangled into UTF-8", k)
		}
	}
}

// The controller decides the placement; the pod takes its node selector as it is given, and
// changing the request's map afterwards changes no pod.
func TestPodObjectsNodeSelectorAsGiven(t *testing.T) {
	r := podRequest(t)
	r.Build.Arch = "arm64"
	r.NodeSelector = map[string]string{"emulation.mosb.dev/arm64": "true"}
	_, pod := podObjects(t, r)
	if got := pod.Spec.NodeSelector; !reflect.DeepEqual(got, map[string]string{"emulation.mosb.dev/arm64": "true"}) {
		t.Errorf("nodeSelector = %v", got)
	}
	r.NodeSelector["emulation.mosb.dev/arm64"] = "false"
	if pod.Spec.NodeSelector["emulation.mosb.dev/arm64"] != "true" {
		t.Error("the pod shares its node selector map with the request")
	}
}

func TestPodObjectsResourcesOnTheBuildContainer(t *testing.T) {
	r := podRequest(t)
	_, pod := podObjects(t, r)
	if got := pod.Spec.Containers[0].Resources; got.Requests != nil || got.Limits != nil {
		t.Errorf("no resources asked, got %+v", got)
	}
	r.Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("1Gi"), corev1.ResourceEphemeralStorage: resource.MustParse("6Gi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("4Gi"), corev1.ResourceEphemeralStorage: resource.MustParse("12Gi")},
	}
	want := *r.Resources.DeepCopy()
	_, pod = podObjects(t, r)
	c := pod.Spec.Containers[0]
	if c.Name != buildpod.ContainerName || !reflect.DeepEqual(c.Resources, want) {
		t.Fatalf("container %s resources = %+v, want %+v", c.Name, c.Resources, want)
	}
	r.Resources.Limits[corev1.ResourceMemory] = resource.MustParse("1Mi")
	if q := c.Resources.Limits[corev1.ResourceMemory]; q.String() != "4Gi" {
		t.Error("the pod shares its resource lists with the request")
	}
}

// TestPodObjectsNodeStore: the store is filled by an init container that has it read-write and no
// push secret; the build container, which runs the Containerfile, has it read-only.
func TestPodObjectsNodeStore(t *testing.T) {
	r := podRequest(t)
	_, pod := podObjects(t, r)
	if len(pod.Spec.InitContainers) != 0 {
		t.Fatalf("without a node store: init containers %v", pod.Spec.InitContainers)
	}
	base := "registry.example.com/os/base@sha256:" + strings.Repeat("a", 64)
	r.NodeStore = &buildpod.NodeStore{HostPath: "/var/lib/mosb/store", Budget: 40 << 30}
	r.Prefetch = []string{base}
	cm, pod := podObjects(t, r)
	if !strings.Contains(cm.Data["request.json"], base) {
		t.Errorf("request.json does not name the image to prefetch:\n%s", cm.Data["request.json"])
	}
	var hostPath *corev1.HostPathVolumeSource
	for _, v := range pod.Spec.Volumes {
		if v.Name == "node-store" {
			hostPath = v.HostPath
		}
	}
	if hostPath == nil || hostPath.Path != "/var/lib/mosb/store" || hostPath.Type == nil || *hostPath.Type != corev1.HostPathDirectoryOrCreate {
		t.Fatalf("node-store volume: %+v", hostPath)
	}
	mount := func(c corev1.Container, volume string) *corev1.VolumeMount {
		for i := range c.VolumeMounts {
			if c.VolumeMounts[i].Name == volume {
				return &c.VolumeMounts[i]
			}
		}
		return nil
	}
	if len(pod.Spec.InitContainers) != 1 {
		t.Fatalf("init containers: %d, want the store's", len(pod.Spec.InitContainers))
	}
	init, build := pod.Spec.InitContainers[0], pod.Spec.Containers[0]
	if m := mount(init, "node-store"); init.Name != buildpod.StoreContainerName || m == nil || m.ReadOnly || m.MountPath != buildpod.StoreDir {
		t.Errorf("init container %s mounts the store as %+v, want read-write at %s", init.Name, m, buildpod.StoreDir)
	}
	if m := mount(init, "push-secret"); m != nil {
		t.Error("the init container mounts the push secret")
	}
	if m := mount(build, "node-store"); m == nil || !m.ReadOnly {
		t.Errorf("the build container mounts the store as %+v, want read-only", m)
	}
	if !slices.Contains(init.Command, "--prepare-store") || !slices.Contains(init.Command, "--store-budget=42949672960") {
		t.Errorf("init command %v", init.Command)
	}
	if !slices.Contains(build.Command, "--store="+buildpod.StoreDir) {
		t.Errorf("build command %v lacks --store", build.Command)
	}
	if init.Image != build.Image || !reflect.DeepEqual(init.SecurityContext, build.SecurityContext) {
		t.Error("the init container runs another image or with another security context than the build")
	}
}

func TestPodObjectsDeterministic(t *testing.T) {
	r1 := podRequest(t)
	cm1, pod1 := podObjects(t, r1)
	// The same request built again, its maps filled in another order.
	r2 := r1
	r2.Build.ContextFiles = map[string][]byte{}
	ks := slices.Sorted(maps.Keys(r1.Build.ContextFiles))
	for i := len(ks) - 1; i >= 0; i-- {
		r2.Build.ContextFiles[ks[i]] = append([]byte(nil), r1.Build.ContextFiles[ks[i]]...)
	}
	r2.Registry.CAs = map[string][]byte{}
	cks := slices.Sorted(maps.Keys(r1.Registry.CAs))
	for i := len(cks) - 1; i >= 0; i-- {
		r2.Registry.CAs[cks[i]] = r1.Registry.CAs[cks[i]]
	}
	for i := 0; i < 5; i++ {
		cm2, pod2 := podObjects(t, r2)
		if !reflect.DeepEqual(cm1, cm2) || !reflect.DeepEqual(pod1, pod2) {
			t.Fatal("the same request gave different objects")
		}
		a, _ := json.Marshal([]any{cm1, pod1})
		b, _ := json.Marshal([]any{cm2, pod2})
		if !bytes.Equal(a, b) {
			t.Fatal("the same request gave different JSON")
		}
	}
}

func TestPodObjectsRefusesWhatCannotRun(t *testing.T) {
	for name, mutate := range map[string]func(*buildpod.Request){
		"no name":          func(r *buildpod.Request) { r.Name = "" },
		"name not DNS":     func(r *buildpod.Request) { r.Name = "Worker_OS" },
		"no namespace":     func(r *buildpod.Request) { r.Namespace = "" },
		"no owner uid":     func(r *buildpod.Request) { r.Owner.UID = "" },
		"no image":         func(r *buildpod.Request) { r.BuilderImage = "" },
		"no push secret":   func(r *buildpod.Request) { r.PushSecret = "" },
		"no arch":          func(r *buildpod.Request) { r.Build.Arch = "" },
		"arch not a label": func(r *buildpod.Request) { r.Build.Arch = "amd64/v2" },
		"empty file":       func(r *buildpod.Request) { r.Build.Containerfile = nil },
		"target by digest": func(r *buildpod.Request) { r.Target = "registry.example.com/os/x@sha256:" + strings.Repeat("c", 64) },
		"escaping path":    func(r *buildpod.Request) { r.Build.ContextFiles = map[string][]byte{"../etc/passwd": nil} },
		"unclean path":     func(r *buildpod.Request) { r.Build.ContextFiles = map[string][]byte{"a//b": nil} },
		"file is a dir":    func(r *buildpod.Request) { r.Build.ContextFiles = map[string][]byte{"a": nil, "a/b/c": nil} },
		"CA not PEM": func(r *buildpod.Request) {
			r.Registry.CAs = map[string][]byte{"registry.example.com": []byte("nope")}
		},
		"CA host a path":    func(r *buildpod.Request) { r.Registry.CAs = map[string][]byte{"../x": testCA(t)} },
		"registries.conf":   func(r *buildpod.Request) { r.Registry.RegistriesConf = []byte("[[registry]\n") },
		"zero deadline":     func(r *buildpod.Request) { r.ActiveDeadlineSeconds = new(int64) },
		"cache not a repo":  func(r *buildpod.Request) { r.CacheRepo = "not a repo" },
		"over a ConfigMap":  func(r *buildpod.Request) { r.Build.ContextFiles = map[string][]byte{"big": make([]byte, 1<<20)} },
		"bad secret name":   func(r *buildpod.Request) { r.PullSecret = "Pull Secret" },
		"owner without API": func(r *buildpod.Request) { r.Owner.APIVersion = "" },
		"empty selector":    func(r *buildpod.Request) { r.NodeSelector = map[string]string{} },
		"selector key":      func(r *buildpod.Request) { r.NodeSelector = map[string]string{"not a key": "true"} },
		"store relative":    func(r *buildpod.Request) { r.NodeStore = &buildpod.NodeStore{HostPath: "var/lib/mosb"} },
		"store is /":        func(r *buildpod.Request) { r.NodeStore = &buildpod.NodeStore{HostPath: "/"} },
		"store unclean":     func(r *buildpod.Request) { r.NodeStore = &buildpod.NodeStore{HostPath: "/var/lib/../mosb"} },
		"negative budget": func(r *buildpod.Request) {
			r.NodeStore = &buildpod.NodeStore{HostPath: "/var/lib/mosb", Budget: -1}
		},
		"prefetch by tag": func(r *buildpod.Request) { r.Prefetch = []string{"registry.example.com/os/base:latest"} },
		"selector value": func(r *buildpod.Request) {
			r.NodeSelector = map[string]string{"emulation.mosb.dev/arm64": "yes please"}
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := podRequest(t)
			mutate(&r)
			if _, _, err := buildpod.Objects(r); err == nil {
				t.Error("accepted")
			} else {
				t.Log(err)
			}
		})
	}
}

func TestPodRequestRoundTrip(t *testing.T) {
	r := podRequest(t)
	cm, pod := podObjects(t, r)
	dir := t.TempDir()
	materializeConfigMap(t, filepath.Join(dir, "request"), cm, pod)
	got, err := buildpod.ReadRequest(filepath.Join(dir, "request"))
	if err != nil {
		t.Fatal(err)
	}
	want := buildpod.Request{Build: r.Build, Target: r.Target, Untagged: r.Untagged, Registry: r.Registry, CacheRepo: r.CacheRepo,
		RunMounts: []buildpod.RunMount{{Target: "/etc/pki/entitlement"}, {Target: "/etc/yum.repos.d"}}}
	want.Registry.PullAuth = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("read back\n%+v\nwant\n%+v", got, want)
	}

	// The push configuration the worker makes from it keeps the CAs and the insecure registries.
	cfg, err := got.Registry.PushConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.RegistryCAs(), r.Registry.CAs) {
		t.Errorf("push CAs %v", slices.Sorted(maps.Keys(cfg.RegistryCAs())))
	}
	for host, insecure := range map[string]bool{
		"insecure.example.com:5000": true, "insecure.example.com": false, "a.lab.example": true,
		"registry.example.com:5000": false, "quay.example.com": false,
	} {
		if cfg.InsecureHost(host) != insecure {
			t.Errorf("InsecureHost(%s) = %v, want %v", host, !insecure, insecure)
		}
	}

	// Untagged and no cache survive too.
	r.Untagged, r.CacheRepo, r.Build.ContextFiles, r.Registry, r.RunMounts = true, "", nil, buildpod.RegistryConfig{}, nil
	cm, pod = podObjects(t, r)
	dir2 := filepath.Join(t.TempDir(), "request")
	materializeConfigMap(t, dir2, cm, pod)
	if got, err = buildpod.ReadRequest(dir2); err != nil {
		t.Fatal(err)
	}
	want = buildpod.Request{Build: r.Build, Target: r.Target, Untagged: true, Registry: buildpod.RegistryConfig{RegistriesConf: []byte{}, PolicyJSON: []byte{}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("read back\n%+v\nwant\n%+v", got, want)
	}
}

// WriteRequest is how `mosb render --request-dir` hands a controller's build to a worker on any
// machine: what the worker reads back must be what it reads from the pod's volume.
func TestWriteRequestIsWhatThePodMounts(t *testing.T) {
	r := podRequest(t)
	r.Prefetch = []string{"registry.example.com/os/base@sha256:" + strings.Repeat("a", 64)}
	r.RegistryBounds = bounds.Bounds{Response: 90 * time.Second, Stall: 1500 * time.Millisecond}
	cm, pod := podObjects(t, r)
	mounted := filepath.Join(t.TempDir(), "mounted")
	materializeConfigMap(t, mounted, cm, pod)
	fromPod, err := buildpod.ReadRequest(mounted)
	if err != nil {
		t.Fatal(err)
	}
	written := filepath.Join(t.TempDir(), "written")
	if err := buildpod.WriteRequest(written, r); err != nil {
		t.Fatal(err)
	}
	fromDir, err := buildpod.ReadRequest(written)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromDir, fromPod) {
		t.Errorf("written request reads back as\n%+v\nthe pod's as\n%+v", fromDir, fromPod)
	}
	if len(fromDir.Prefetch) != 1 || len(fromDir.Build.ContextFiles) == 0 || len(fromDir.Registry.CAs) == 0 || fromDir.RegistryBounds != r.RegistryBounds {
		t.Errorf("the request lost its prefetch, context files, CAs or registry bounds: %+v", fromDir)
	}

	// Nothing is written over an existing directory, nor for a request the worker would refuse.
	if err := buildpod.WriteRequest(written, r); err == nil {
		t.Error("wrote over an existing request")
	}
	bad := r
	bad.Target = "no-tag"
	badDir := filepath.Join(t.TempDir(), "bad")
	if err := buildpod.WriteRequest(badDir, bad); err == nil || !strings.Contains(err.Error(), "no-tag") {
		t.Errorf("a target without a tag: %v", err)
	}
	if _, err := os.Stat(badDir); !os.IsNotExist(err) {
		t.Errorf("a refused request left %s behind: %v", badDir, err)
	}
}

func TestReadPodRequestRefusesMalformed(t *testing.T) {
	r := podRequest(t)
	cm, pod := podObjects(t, r)
	for name, mutate := range map[string]func(t *testing.T, dir string){
		"no request.json": func(t *testing.T, dir string) { rm(t, dir, "request.json") },
		"not JSON":        func(t *testing.T, dir string) { overwrite(t, dir, "request.json", "STEP 1/2: FROM") },
		"other version":   func(t *testing.T, dir string) { editDoc(t, dir, func(d map[string]any) { d["version"] = 1 }) },
		"run mount not absolute": func(t *testing.T, dir string) {
			editDoc(t, dir, func(d map[string]any) { d["runMounts"] = []string{"etc/x"} })
		},
		"bound not a duration": func(t *testing.T, dir string) {
			editDoc(t, dir, func(d map[string]any) { d["registryBounds"] = map[string]any{"stall": "soon"} })
		},
		"negative bound": func(t *testing.T, dir string) {
			editDoc(t, dir, func(d map[string]any) { d["registryBounds"] = map[string]any{"connect": "-1s"} })
		},
		"escaping context": func(t *testing.T, dir string) {
			editDoc(t, dir, func(d map[string]any) { d["contextFiles"] = []string{"../../request.json"} })
		},
		"escaping CA": func(t *testing.T, dir string) {
			editDoc(t, dir, func(d map[string]any) { d["caHosts"] = []string{"../x"} })
		},
		"missing context": func(t *testing.T, dir string) { rm(t, dir, "context/top") },
		"no arch":         func(t *testing.T, dir string) { editDoc(t, dir, func(d map[string]any) { d["arch"] = "" }) },
		"bad target":      func(t *testing.T, dir string) { editDoc(t, dir, func(d map[string]any) { d["target"] = "no-tag" }) },
		"no Containerfile": func(t *testing.T, dir string) {
			rm(t, dir, "Containerfile")
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "request")
			materializeConfigMap(t, dir, cm, pod)
			mutate(t, dir)
			if _, err := buildpod.ReadRequest(dir); err == nil {
				t.Error("accepted")
			} else {
				t.Log(err)
			}
		})
	}
}

func TestWorkerResult(t *testing.T) {
	digest := "sha256:" + strings.Repeat("d", 64)
	w := buildpod.Result{Arch: "arm64", Pullspec: "registry.example.com:5000/os/worker@" + digest, Digest: digest,
		Platform: v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}
	raw, err := w.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) >= 4096 {
		t.Errorf("result is %d bytes", len(raw))
	}
	got, err := buildpod.ParseResult(string(raw) + "\n")
	if err != nil || !reflect.DeepEqual(got, w) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if !strings.Contains(string(raw), `"platform":{"architecture":"arm64","os":"linux","variant":"v8"}`) {
		t.Errorf("platform is not go-containerregistry's JSON: %s", raw)
	}
	for name, msg := range map[string]string{
		"empty":              "",
		"log tail":           "STEP 2/3: RUN false\nError: building at STEP \"RUN false\": exit status 1\nmosb: building amd64 image: exit status 1\n",
		"not by digest":      `{"arch":"arm64","pullspec":"registry.example.com/os/worker:latest","digest":"` + digest + `","platform":{"os":"linux","architecture":"arm64"}}`,
		"bad digest":         `{"arch":"arm64","pullspec":"registry.example.com/os/worker@sha256:abc","digest":"sha256:abc","platform":{"os":"linux","architecture":"arm64"}}`,
		"no platform":        `{"arch":"arm64","pullspec":"registry.example.com/os/worker@` + digest + `","digest":"` + digest + `"}`,
		"trailing text":      string(raw) + "\nmore",
		"digest of another":  `{"arch":"arm64","pullspec":"registry.example.com/os/worker@sha256:` + strings.Repeat("e", 64) + `","digest":"` + digest + `","platform":{"os":"linux","architecture":"arm64"}}`,
		"truncated JSON":     string(raw[:len(raw)/2]),
		"JSON of other kind": `{"kind":"Status"}`,
	} {
		t.Run(name, func(t *testing.T) {
			if w, err := buildpod.ParseResult(msg); err == nil {
				t.Errorf("parsed %+v", w)
			}
		})
	}
}

// TestPodObjectsAreAcceptedByTheAPIServer sends both objects to a real kube-apiserver, whose
// validation is the one that counts (item paths, keys, the securityContext combination).
func TestPodObjectsAreAcceptedByTheAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("needs kube-apiserver and etcd")
	}
	cp := harness.StartControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := podRequest(t)
	r.HostNetwork = true
	r.NodeStore = &buildpod.NodeStore{HostPath: "/var/lib/mosb/store", Budget: 1 << 30}
	r.Prefetch = []string{"registry.example.com/os/base@sha256:" + strings.Repeat("a", 64)}
	if err := cp.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.Namespace}}); err != nil {
		t.Fatal(err)
	}
	cm, pod := podObjects(t, r)
	if err := cp.Client.Create(ctx, cm); err != nil {
		t.Fatalf("the API server refused the ConfigMap: %v", err)
	}
	if err := cp.Client.Create(ctx, buildpod.ProxySecret(r)); err != nil {
		t.Fatalf("the API server refused the proxy Secret: %v", err)
	}
	if err := cp.Client.Create(ctx, pod); err != nil {
		t.Fatalf("the API server refused the Pod: %v", err)
	}
	var stored corev1.Pod
	if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(pod), &stored); err != nil {
		t.Fatal(err)
	}
	if sc := stored.Spec.Containers[0].SecurityContext; sc == nil || sc.AppArmorProfile == nil || len(sc.Capabilities.Add) != len(pod.Spec.Containers[0].SecurityContext.Capabilities.Add) {
		t.Errorf("the stored pod lost part of its securityContext: %+v", sc)
	}
	// The Job the controller creates: batch/v1's validation of its template and its name.
	r.Name = strings.Repeat("j", 63)
	_, job, err := buildpod.JobObjects(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Client.Create(ctx, job); err != nil {
		t.Fatalf("the API server refused the Job: %v", err)
	}
}

// materializeConfigMap lays the request ConfigMap out in dir exactly as kubelet's atomic writer
// does for the pod's volume: the projected items in a timestamped directory, "..data" linking to
// it, and one symlink per top-level name into "..data".
func materializeConfigMap(t *testing.T, dir string, cm *corev1.ConfigMap, pod *corev1.Pod) {
	t.Helper()
	var vol *corev1.ConfigMapVolumeSource
	for _, v := range pod.Spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
			vol = v.ConfigMap
		}
	}
	if vol == nil {
		t.Fatalf("pod %s has no volume of ConfigMap %s", pod.Name, cm.Name)
	}
	data := configMapData(t, cm)
	payload := map[string][]byte{}
	if len(vol.Items) == 0 {
		payload = data
	}
	for _, it := range vol.Items {
		d, ok := data[it.Key]
		if !ok {
			t.Fatalf("kubelet would not mount the volume: item key %q is not in ConfigMap %s", it.Key, cm.Name)
		}
		payload[it.Path] = d
	}
	harness.WriteAtomicVolume(t, dir, payload)
}

func configMapData(t *testing.T, cm *corev1.ConfigMap) map[string][]byte {
	t.Helper()
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		if _, dup := data[k]; dup {
			t.Fatalf("key %q is in both data and binaryData", k)
		}
		data[k] = v
	}
	return data
}

func editDoc(t *testing.T, dir string, edit func(map[string]any)) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "request.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	edit(d)
	raw, err = json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	overwrite(t, dir, "request.json", string(raw))
}

// overwrite replaces a file behind kubelet's symlinks (the volume is read-only in a pod; tests
// only simulate a controller of another version).
func overwrite(t *testing.T, dir, name, data string) {
	t.Helper()
	p, err := filepath.EvalSymlinks(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o444); err != nil {
		t.Fatal(err)
	}
}

func rm(t *testing.T, dir, name string) {
	t.Helper()
	p, err := filepath.EvalSymlinks(filepath.Join(dir, filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
