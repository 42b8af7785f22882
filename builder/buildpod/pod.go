package buildpod

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	configv1 "github.com/openshift/api/config/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/mosb-dev/mosb/registry"
	"github.com/mosb-dev/mosb/registry/bounds"
)

// The pod placement: one build pod per architecture runs `mosb worker`, which reads its request
// from a ConfigMap volume, its credentials from two Secret volumes, builds with the same engine as
// `mosb build`, pushes by digest with the push credentials only, and hands the result back in its
// termination message.

// Where a build pod mounts its volumes; `mosb worker`'s flags default to these.
const (
	// ContainerName is the build pod's only container.
	ContainerName = "build"
	// RequestDir holds the request ConfigMap (read-only).
	RequestDir = "/etc/mosb/request"
	// PullSecretDir holds the pull secret (read-only): credentials for the base images.
	PullSecretDir = "/var/run/secrets/mosb/pull"
	// PushSecretDir holds the push secret (read-only): credentials for the push only.
	PushSecretDir = "/var/run/secrets/mosb/push"
	// WorkDir is the emptyDir every write of the build goes to: storage, HOME, TMPDIR.
	WorkDir = "/var/lib/mosb"
	// StorageRoot is the engine's root (image storage, layer cache, scratch) in the emptyDir.
	StorageRoot = WorkDir + "/build"
	// TerminationLog is where the worker writes its Result (the Kubernetes default path).
	TerminationLog = corev1.TerminationMessagePathDefault
	// StoreContainerName is the init container that fills the node image store.
	StoreContainerName = "store"
	// StoreDir is where the node image store is mounted: read-write in the init container,
	// read-only in the build container.
	StoreDir = "/var/lib/mosb-store"
	// StoreReportPath is how the init container tells the build container which images it holds.
	StoreReportPath = WorkDir + "/node-store.json"
)

// The layout of the request volume. ConfigMap keys cannot contain '/' (nor ':', nor start with
// ".."), so context files and CA bundles get index keys ("context.0", "ca.0", in sorted path
// order) that the volume's items map to their nested paths; request.json lists those paths so the
// reader needs no directory walk (kubelet lays the volume out as symlinks into a "..data" dir).
const (
	requestFile       = "request.json"
	containerfileFile = "Containerfile"
	registriesConf    = "registries.conf"
	policyFile        = "policy.json"
	contextDir        = "context"
	certsDir          = "certs.d"
	caFile            = "ca.crt"
	// requestVersion changes when the layout does, so a worker image of another mosb version
	// refuses a request it would misread instead of building something else.
	requestVersion = 2
	// maxConfigMapSize is the API server's limit on a ConfigMap's data plus binaryData.
	maxConfigMapSize = 1 << 20
	// maxResultSize is what kubelet keeps of a termination message.
	maxResultSize = 4096
)

// The secret volumes hold whichever of these keys the Secret's type has.
const (
	dockerConfigJSONKey = corev1.DockerConfigJsonKey // .dockerconfigjson (kubernetes.io/dockerconfigjson)
	dockercfgKey        = corev1.DockerConfigKey     // .dockercfg (kubernetes.io/dockercfg)
)

// Request is one architecture's build, as the controller hands it to a build pod.
type Request struct {
	// Name is the name of the Pod and of its request ConfigMap (e.g. <machineosbuild>-<arch>).
	Name      string
	Namespace string
	// Labels are put on both objects.
	Labels map[string]string
	// Owner is the MachineOSBuild; both objects get it as their controller owner.
	Owner metav1.OwnerReference
	// Build is the architecture, the assembled Containerfile and the context files (paths may
	// contain '/', e.g. machineconfig/currentconfig).
	Build ArchBuild
	// Target is the tag pushspec.
	Target string
	// Untagged pushes by digest only (multi-arch: the controller pushes the index).
	Untagged bool
	// Registry is how the build reaches registries. PullAuth is ignored: the pull credentials
	// come from the PullSecret volume and never go into the ConfigMap.
	Registry RegistryConfig
	// PullSecret and PushSecret are Secret names in Namespace (kubernetes.io/dockerconfigjson or
	// kubernetes.io/dockercfg). An empty PullSecret pulls anonymously; PushSecret is required.
	PullSecret, PushSecret string
	// CacheRepo, when set, is a repository for intermediate layers (buildah --cache-to/--cache-from),
	// reached with the push secret's credential for it.
	CacheRepo string
	// BuilderImage is the mosb image.
	BuilderImage          string
	ActiveDeadlineSeconds *int64
	// HostNetwork runs the pod in the node's network namespace (only when a flag asks for it).
	HostNetwork bool
	// ServiceAccount is the pod's ServiceAccount (empty: the namespace's default). Its token is
	// never mounted; it is what admission (OpenShift's SCCs) judges a pod by when the pod's
	// creator is the Job controller rather than mosb.
	ServiceAccount string
	// NodeSelector is where the pod may run, as the controller decided it (e.g. a node that runs
	// the architecture under emulation); nil: a node of the build's architecture
	// (kubernetes.io/arch).
	NodeSelector map[string]string
	// Resources are the build container's requests and limits (copied).
	Resources corev1.ResourceRequirements
	// NodeStore, when set, is the node's image store the build reads its base from (see
	// ImageStore); Prefetch are the images an init container puts there first (the base and
	// extensions images).
	NodeStore *NodeStore
	Prefetch  []string
	// RegistryBounds hold the build's registry traffic (zero fields: the defaults).
	RegistryBounds bounds.Bounds
	// RunMounts are Secrets and ConfigMaps of Namespace every RUN step sees, never a layer.
	RunMounts []RunMount
	// Proxy is the proxy the build's pulls, push and RUN steps go through; it reaches the pod
	// through ProxySecret (which the caller creates), never through the request ConfigMap.
	Proxy registry.Proxy
}

// NodeStore is the node image store as a build pod uses it.
type NodeStore struct {
	// HostPath is the store's directory on the node.
	HostPath string
	// Budget is the most bytes of layers the store keeps (0: no limit).
	Budget int64
}

// requestDoc is request.json: everything of the request that is not a file of its own.
type requestDoc struct {
	Version   int    `json:"version"`
	Arch      string `json:"arch"`
	Target    string `json:"target"`
	Untagged  bool   `json:"untagged,omitempty"`
	CacheRepo string `json:"cacheRepo,omitempty"`
	// ContextFiles are the context paths, under context/.
	ContextFiles []string `json:"contextFiles,omitempty"`
	// CAHosts are the registries with a CA bundle, each at certs.d/<host[:port]>/ca.crt.
	CAHosts []string `json:"caHosts,omitempty"`
	// Prefetch are the images the node image store is to hold before the build.
	Prefetch []string `json:"prefetch,omitempty"`
	// RegistryBounds are Go durations ("30s"); absent: the defaults.
	RegistryBounds *boundsDoc `json:"registryBounds,omitempty"`
	// RunMounts are the targets of the run mounts; the i-th is mounted at RunMountsDir/<i>.
	RunMounts []string `json:"runMounts,omitempty"`
}

type boundsDoc struct {
	Connect  string `json:"connect,omitempty"`
	Response string `json:"response,omitempty"`
	Stall    string `json:"stall,omitempty"`
}

func newBoundsDoc(b bounds.Bounds) *boundsDoc {
	if b == (bounds.Bounds{}) {
		return nil
	}
	str := func(d time.Duration) string {
		if d == 0 {
			return ""
		}
		return d.String()
	}
	return &boundsDoc{Connect: str(b.Connect), Response: str(b.Response), Stall: str(b.Stall)}
}

func (d *boundsDoc) bounds() (bounds.Bounds, error) {
	var b bounds.Bounds
	if d == nil {
		return b, nil
	}
	for _, f := range []struct {
		name, text string
		into       *time.Duration
	}{{"connect", d.Connect, &b.Connect}, {"response", d.Response, &b.Response}, {"stall", d.Stall, &b.Stall}} {
		if f.text == "" {
			continue
		}
		v, err := time.ParseDuration(f.text)
		if err != nil {
			return b, fmt.Errorf("the build request's registry bound %s %q is not a duration", f.name, f.text)
		}
		*f.into = v
	}
	return b, b.Validate()
}

// Objects returns the request ConfigMap and the build Pod for r. Pure: no I/O. It refuses a
// request the API server or kubelet would refuse (so no pod can hang in ContainerCreating on a
// volume it cannot lay out) and one the worker could not build.
func Objects(r Request) (*corev1.ConfigMap, *corev1.Pod, error) {
	if err := r.validate(); err != nil {
		return nil, nil, err
	}
	entries, size, err := r.requestVolume()
	if err != nil {
		return nil, nil, err
	}
	if size > maxConfigMapSize {
		return nil, nil, fmt.Errorf("the %s build request of %s/%s is %d bytes; a ConfigMap holds at most %d (the Containerfile, the context files such as the rendered MachineConfig, registries.conf, policy.json and the CAs count)",
			r.Build.Arch, r.Namespace, r.Name, size, maxConfigMapSize)
	}
	meta := func() metav1.ObjectMeta { return r.objectMeta(r.Name) }

	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: meta(),
		// A build's request never changes (a changed input is a new MachineOSBuild), and an
		// immutable ConfigMap is one kubelet does not keep watching.
		Immutable: ptr(true),
	}
	items := make([]corev1.KeyToPath, 0, len(entries))
	for _, e := range entries {
		// Data must be UTF-8 (it travels as a JSON string); anything else goes in binaryData.
		if utf8.Valid(e.data) {
			if cm.Data == nil {
				cm.Data = map[string]string{}
			}
			cm.Data[e.key] = string(e.data)
		} else {
			if cm.BinaryData == nil {
				cm.BinaryData = map[string][]byte{}
			}
			cm.BinaryData[e.key] = e.data
		}
		items = append(items, corev1.KeyToPath{Key: e.key, Path: e.path})
	}

	secretVolume := func(name, secret string) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: secret, DefaultMode: ptr(int32(0o400)),
		}}}
	}
	mounts := []corev1.VolumeMount{{Name: "request", MountPath: RequestDir, ReadOnly: true}}
	volumes := []corev1.Volume{{Name: "request", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: r.Name}, Items: items, DefaultMode: ptr(int32(0o444)),
	}}}}
	pullDir := "" // none: the base images are pulled anonymously
	if r.PullSecret != "" {
		pullDir = PullSecretDir
		mounts = append(mounts, corev1.VolumeMount{Name: "pull-secret", MountPath: PullSecretDir, ReadOnly: true})
		volumes = append(volumes, secretVolume("pull-secret", r.PullSecret))
	}
	mounts = append(mounts,
		corev1.VolumeMount{Name: "push-secret", MountPath: PushSecretDir, ReadOnly: true},
		corev1.VolumeMount{Name: "work", MountPath: WorkDir})
	// The root filesystem is read-only, but buildah writes to a few fixed paths whatever it is
	// told: the emptyDir backs them too.
	for _, m := range fixedWritablePaths {
		mounts = append(mounts, corev1.VolumeMount{Name: "work", MountPath: m.path, SubPath: m.subPath})
	}
	volumes = append(volumes,
		secretVolume("push-secret", r.PushSecret),
		corev1.Volume{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: workVolume(r.Resources)}})
	runVolumes, runMounts := runMountVolumes(r.RunMounts)
	volumes, mounts = append(volumes, runVolumes...), append(mounts, runMounts...)
	args := []string{
		"mosb", "worker",
		"--request=" + RequestDir,
		"--pull-secret=" + pullDir,
		"--push-secret=" + PushSecretDir,
		"--root=" + StorageRoot,
		"--termination-log=" + TerminationLog,
	}
	var initContainers []corev1.Container
	if r.NodeStore != nil {
		volumes = append(volumes, corev1.Volume{Name: "node-store", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
			Path: r.NodeStore.HostPath, Type: ptr(corev1.HostPathDirectoryOrCreate),
		}}})
		// The build container, which runs the user's RUN steps, sees the store read-only.
		mounts = append(mounts, corev1.VolumeMount{Name: "node-store", MountPath: StoreDir, ReadOnly: true})
		args = append(args, "--store="+StoreDir)
		initContainers = append(initContainers, storeContainer(r, pullDir))
	}

	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: meta(),
		Spec: corev1.PodSpec{
			NodeSelector:          r.nodeSelector(),
			RestartPolicy:         corev1.RestartPolicyNever,
			ActiveDeadlineSeconds: copyInt64(r.ActiveDeadlineSeconds),
			// The worker makes no API call: no token in the pod.
			AutomountServiceAccountToken: ptr(false),
			ServiceAccountName:           r.ServiceAccount,
			// Service environment variables are noise in a build's environment.
			EnableServiceLinks: ptr(false),
			HostNetwork:        r.HostNetwork,
			Volumes:            volumes,
			InitContainers:     initContainers,
			Containers: []corev1.Container{{
				Name:    ContainerName,
				Image:   r.BuilderImage,
				Command: args,
				Env: append([]corev1.EnvVar{
					// Whatever the libraries write outside the engine's root lands in the emptyDir,
					// never in the container's (read-only) root filesystem.
					{Name: "HOME", Value: WorkDir + "/home"},
					{Name: "TMPDIR", Value: WorkDir + "/tmp"},
				}, proxyEnv(r)...),
				VolumeMounts:             mounts,
				TerminationMessagePath:   TerminationLog,
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
				SecurityContext:          buildSecurityContext(),
				Resources:                *r.Resources.DeepCopy(),
			}},
		},
	}
	if r.HostNetwork {
		// On the node's network the pod still resolves in-cluster registries (svc names).
		pod.Spec.DNSPolicy = corev1.DNSClusterFirstWithHostNet
	}
	return cm, pod, nil
}

// objectMeta is the metadata of an object of the request: its labels (copied) and the
// MachineOSBuild as its controller owner.
func (r Request) objectMeta(name string) metav1.ObjectMeta {
	owner := r.Owner
	owner.Controller, owner.BlockOwnerDeletion = ptr(true), ptr(true)
	var labels map[string]string
	if len(r.Labels) > 0 {
		labels = maps.Clone(r.Labels)
	}
	return metav1.ObjectMeta{Name: name, Namespace: r.Namespace, Labels: labels, OwnerReferences: []metav1.OwnerReference{owner}}
}

// requestEntry is one file of the request volume: its ConfigMap key and its path in the volume.
type requestEntry struct {
	key, path string
	data      []byte
}

// requestVolume is the request volume's content, and its size as the API server counts it.
func (r Request) requestVolume() ([]requestEntry, int, error) {
	doc := requestDoc{
		Version: requestVersion, Arch: r.Build.Arch, Target: r.Target, Untagged: r.Untagged, CacheRepo: r.CacheRepo,
		ContextFiles: slices.Sorted(maps.Keys(r.Build.ContextFiles)), CAHosts: slices.Sorted(maps.Keys(r.Registry.CAs)),
		Prefetch: r.Prefetch, RegistryBounds: newBoundsDoc(r.RegistryBounds), RunMounts: runMountTargets(r.RunMounts),
	}
	rawDoc, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, 0, fmt.Errorf("encoding the build request: %w", err)
	}
	var entries []requestEntry
	size := 0
	put := func(key, p string, data []byte) {
		entries = append(entries, requestEntry{key: key, path: p, data: data})
		size += len(key) + len(data)
	}
	put(requestFile, requestFile, rawDoc)
	put(containerfileFile, containerfileFile, r.Build.Containerfile)
	put(registriesConf, registriesConf, r.Registry.RegistriesConf)
	put(policyFile, policyFile, r.Registry.PolicyJSON)
	for i, host := range doc.CAHosts {
		put(fmt.Sprintf("ca.%d", i), caPath(host), r.Registry.CAs[host])
	}
	for i, p := range doc.ContextFiles {
		put(fmt.Sprintf("context.%d", i), contextDir+"/"+p, r.Build.ContextFiles[p])
	}
	return entries, size, nil
}

// WriteRequest lays r's request volume out in dir (which must not exist yet) as a build pod sees
// it, so that `mosb worker --request dir` runs the controller's build of one architecture on any
// machine. Only the build fields count (Build, Target, Untagged, Registry, CacheRepo, Prefetch,
// RegistryBounds);
// PullAuth is never written: the worker reads credentials from its secret directories.
func WriteRequest(dir string, r Request) error {
	if err := r.validateBuild(); err != nil {
		return fmt.Errorf("the %s build request: %w", r.Build.Arch, err)
	}
	entries, _, err := r.requestVolume()
	if err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("the build request's directory: %w", err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, filepath.FromSlash(e.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, e.data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// storeContainer is the init container that puts the build's base images into the node image store:
// mosb's own code only (no Containerfile step runs there), with the store read-write, the request
// and the pull secret; never the push secret. It fails only on a malformed request: a store it
// cannot fill leaves the build to pull the base itself.
func storeContainer(r Request, pullDir string) corev1.Container {
	mounts := []corev1.VolumeMount{{Name: "request", MountPath: RequestDir, ReadOnly: true}}
	if pullDir != "" {
		mounts = append(mounts, corev1.VolumeMount{Name: "pull-secret", MountPath: PullSecretDir, ReadOnly: true})
	}
	mounts = append(mounts,
		corev1.VolumeMount{Name: "work", MountPath: WorkDir},
		corev1.VolumeMount{Name: "node-store", MountPath: StoreDir})
	return corev1.Container{
		Name:  StoreContainerName,
		Image: r.BuilderImage,
		Command: []string{
			"mosb", "worker", "--prepare-store",
			"--request=" + RequestDir,
			"--pull-secret=" + pullDir,
			"--root=" + StorageRoot,
			"--store=" + StoreDir,
			"--store-budget=" + strconv.FormatInt(r.NodeStore.Budget, 10),
		},
		Env: append([]corev1.EnvVar{
			{Name: "HOME", Value: WorkDir + "/home"},
			{Name: "TMPDIR", Value: WorkDir + "/tmp"},
		}, proxyEnv(r)...),
		VolumeMounts:             mounts,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		// The same as the build's: containers/storage mounts overlay to check it works and
		// unpacks layers as root with their owners, modes and file capabilities.
		SecurityContext: buildSecurityContext(),
		Resources:       *r.Resources.DeepCopy(),
	}
}

// fixedWritablePaths are where buildah v1.43 writes outside the engine's root and TMPDIR whatever
// it is told (found by running the worker over a read-only root, see cmd/mosb/worker_test.go).
var fixedWritablePaths = []struct{ path, subPath string }{
	// The network backend's lock (netavark, /run/lock/netavark.lock) and state
	// (/run/containers/networks), opened by every pull buildah makes from the cache repository
	// (see cache.go; RUN steps use the engine's own backend and open neither).
	{"/run/lock", "run-lock"},
	{"/run/containers", "run-containers"},
	// Big temporary files of the one copy buildah makes without the build's SystemContext: when
	// the last step comes from the cache it copies that image to the build's tag
	// (StageExecutor.tagExistingImage), and containers/image then stages it in /var/tmp.
	{"/var/tmp", "var-tmp"},
}

// buildCapabilities are the only capabilities the build container has (the runtime's defaults
// are dropped first). buildah (github.com/containers/buildah@v1.43.0) runs each RUN step with
// chroot isolation and no user namespace, and unpacks layers and runs COPY in chrooted helper
// processes; as root inside a container that needs exactly these. Every one is necessary:
// cmd/mosb/worker_test.go builds with this set as the bounding set, then takes each capability
// away in turn and sees the build fail.
var buildCapabilities = []corev1.Capability{
	// SYS_ADMIN: unshare(CLONE_NEWNS|CLONE_NEWUTS) for the RUN step's own mount and UTS
	// namespaces (chroot.setPlatformUnshareOptions), the mount(2) calls that bind /dev, /proc,
	// /sys and the step's mounts read-only under the rootfs (setupChrootBindMounts), pivot_root,
	// sethostname. Without a user namespace nothing else allows these; it is also what makes the
	// runtimes' default seccomp profiles allow mount/umount2/unshare/setns.
	"SYS_ADMIN",
	// SYS_CHROOT: chroot(2) into the rootfs when pivot_root is refused (buildah falls back to
	// chroot), and the chrooted copier process that reads COPY sources and writes them into the
	// rootfs.
	"SYS_CHROOT",
	// SETPCAP: buildah gives the RUN process its default capability set with capset(2) and trims
	// the bounding set with PR_CAPBSET_DROP (chroot.setCapabilities).
	"SETPCAP",
	// SETUID, SETGID: the RUN process clears its supplementary groups and switches to the image's
	// USER (setgroups, setresgid, setresuid in runUsingChrootExecMain).
	"SETUID", "SETGID",
	// CHOWN, DAC_OVERRIDE, FOWNER, FSETID: unpacking layers as root (containers/storage, in a
	// chrooted applier that first makes a private pivot directory) keeps every file's owner,
	// mode, setuid/setgid bits and times; root in RUN steps (package installs, chown) writes
	// files it does not own.
	"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID",
	// SETFCAP: layers and packages carry file capabilities (security.capability xattrs).
	"SETFCAP",
	// KILL, NET_BIND_SERVICE: with all of the above but SYS_ADMIN they are buildah's default
	// capability set for RUN processes (containers.conf default_capabilities). chroot isolation
	// sets exactly that set with capset(2), which fails with EPERM when any of it is missing
	// here: every RUN step would fail.
	"KILL", "NET_BIND_SERVICE",
	// Not MKNOD: a base image whose layers hold device nodes cannot be unpacked. OS images keep
	// /dev empty (it is a devtmpfs at boot).
}

// buildSecurityContext is the build container's: root with the capabilities above, never
// privileged. The namespace must admit it: SYS_ADMIN is beyond Pod Security "baseline", so the
// build namespace needs the "privileged" level (or, on OpenShift, an SCC allowing SYS_ADMIN,
// RunAsAny and unconfined AppArmor).
func buildSecurityContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		// chroot isolation without user namespaces only works as root; the mosb image may set
		// another USER.
		RunAsUser:    ptr(int64(0)),
		RunAsNonRoot: ptr(false),
		// No host devices, no all-capabilities, no unconfined LSM by default: the capabilities
		// above are granted one by one instead.
		Privileged: ptr(false),
		// no_new_privs: no setuid program or file capability run by a build step gains anything
		// beyond the set below. buildah needs no exec-time gain (the worker test runs it so).
		AllowPrivilegeEscalation: ptr(false),
		Capabilities: &corev1.Capabilities{
			Drop: []corev1.Capability{"ALL"},
			Add:  append([]corev1.Capability(nil), buildCapabilities...),
		},
		// The runtime's default seccomp profile: containerd's and Docker's allow mount, umount2,
		// unshare and setns only to a process with SYS_ADMIN, which this one has; CRI-O's
		// (containers/common) allows them outright. Where pivot_root is refused, buildah falls
		// back to chroot (SYS_CHROOT).
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		// The container runtimes' default AppArmor profile denies mount, which would refuse
		// the chroot's bind mounts on AppArmor nodes (Ubuntu, Debian). No effect elsewhere.
		AppArmorProfile: &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined},
		// Every write goes to the emptyDir (engine root, HOME, TMPDIR and fixedWritablePaths);
		// the image stays as shipped.
		ReadOnlyRootFilesystem: ptr(true),
	}
}

// nodeSelector is a copy of the request's, or the build architecture's nodes when it has none.
func (r Request) nodeSelector() map[string]string {
	if r.NodeSelector == nil {
		return map[string]string{corev1.LabelArchStable: r.Build.Arch}
	}
	return maps.Clone(r.NodeSelector)
}

func (r Request) validate() error {
	what := fmt.Sprintf("build pod %s/%s", r.Namespace, r.Name)
	if errs := validation.IsDNS1123Subdomain(r.Name); len(errs) > 0 {
		return fmt.Errorf("%s: name %q: %s", what, r.Name, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Label(r.Namespace); len(errs) > 0 {
		return fmt.Errorf("%s: namespace %q: %s", what, r.Namespace, strings.Join(errs, "; "))
	}
	if r.Owner.APIVersion == "" || r.Owner.Kind == "" || r.Owner.Name == "" || r.Owner.UID == "" {
		return fmt.Errorf("%s: the owner reference needs apiVersion, kind, name and uid (the MachineOSBuild)", what)
	}
	if r.BuilderImage == "" {
		return fmt.Errorf("%s: no builder image", what)
	}
	if r.PushSecret == "" {
		return fmt.Errorf("%s: no push secret", what)
	}
	for _, s := range []string{r.PushSecret, r.PullSecret} {
		if s == "" {
			continue
		}
		if errs := validation.IsDNS1123Subdomain(s); len(errs) > 0 {
			return fmt.Errorf("%s: secret name %q: %s", what, s, strings.Join(errs, "; "))
		}
	}
	if r.ActiveDeadlineSeconds != nil && *r.ActiveDeadlineSeconds <= 0 {
		return fmt.Errorf("%s: activeDeadlineSeconds must be positive", what)
	}
	if errs := validation.IsValidLabelValue(r.Build.Arch); len(errs) > 0 {
		return fmt.Errorf("%s: architecture %q: %s", what, r.Build.Arch, strings.Join(errs, "; "))
	}
	if r.NodeSelector != nil && len(r.NodeSelector) == 0 {
		return fmt.Errorf("%s: an empty node selector would run a %s build on any node", what, r.Build.Arch)
	}
	for _, k := range slices.Sorted(maps.Keys(r.NodeSelector)) {
		errs := validation.IsQualifiedName(k)
		errs = append(errs, validation.IsValidLabelValue(r.NodeSelector[k])...)
		if len(errs) > 0 {
			return fmt.Errorf("%s: node selector %s=%s: %s", what, k, r.NodeSelector[k], strings.Join(errs, "; "))
		}
	}
	if r.NodeStore != nil {
		if !filepath.IsAbs(r.NodeStore.HostPath) || filepath.Clean(r.NodeStore.HostPath) != r.NodeStore.HostPath || r.NodeStore.HostPath == "/" {
			return fmt.Errorf("%s: node image store %q: an absolute, clean path on the node other than /", what, r.NodeStore.HostPath)
		}
		if r.NodeStore.Budget < 0 {
			return fmt.Errorf("%s: node image store budget %d: not negative", what, r.NodeStore.Budget)
		}
	}
	if err := r.validateBuild(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// validateBuild checks what the request volume carries: what the worker reads back and builds.
func (r Request) validateBuild() error {
	if err := r.Build.Validate(); err != nil {
		return err
	}
	if err := registry.ValidateTagPushspec(r.Target); err != nil {
		return fmt.Errorf("target %q: %w", r.Target, err)
	}
	if err := r.RegistryBounds.Validate(); err != nil {
		return err
	}
	if r.CacheRepo != "" {
		if _, err := registry.NewAuths(map[string]registry.Credential{r.CacheRepo: {}}); err != nil {
			return fmt.Errorf("cache repository %q is not host[:port]/repository", r.CacheRepo)
		}
	}
	if err := checkContextPaths(r.Build.ContextFiles); err != nil {
		return err
	}
	if err := validateRunMounts(r.RunMounts); err != nil {
		return err
	}
	if err := r.Proxy.Validate(); err != nil {
		return err
	}
	for _, img := range r.Prefetch {
		if err := registry.ValidateDigestPullspec(img); err != nil {
			return fmt.Errorf("image to prefetch %q: %w", img, err)
		}
	}
	// The worker's push client is made from registries.conf and the CAs (which checks every CA
	// host is a host[:port] and every bundle a PEM certificate); refuse here what it would refuse.
	if _, err := r.Registry.PushConfig(); err != nil {
		return err
	}
	return nil
}

// checkContextPaths refuses paths kubelet would lay out differently from how the engine writes
// them: not clean, or a file that is also another file's directory.
func checkContextPaths(files map[string][]byte) error {
	for p := range files {
		if p != path.Clean(p) || strings.Contains(p, "\\") {
			return fmt.Errorf("build context file %q: the path must be clean (no '.', '..', '//' or trailing '/' elements)", p)
		}
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if _, ok := files[dir]; ok {
				return fmt.Errorf("build context file %q: %q is both a file and its directory", p, dir)
			}
		}
	}
	return nil
}

func caPath(host string) string { return certsDir + "/" + host + "/" + caFile }

// ReadRequest reads a request volume (laid out by Objects' ConfigMap and items) back into
// the request's build fields: Build, Target, Untagged, Registry (without PullAuth), CacheRepo and
// Prefetch.
// The pod fields (Name, Labels, secrets…) are not in the volume and stay empty.
func ReadRequest(dir string) (Request, error) {
	raw, err := os.ReadFile(filepath.Join(dir, requestFile))
	if err != nil {
		return Request{}, fmt.Errorf("reading the build request: %w", err)
	}
	var doc requestDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		return Request{}, fmt.Errorf("the build request %s is not JSON: %w", filepath.Join(dir, requestFile), err)
	}
	if doc.Version != requestVersion {
		return Request{}, fmt.Errorf("the build request in %s has layout version %d; this worker reads version %d (the controller and the builder image are different mosb versions)",
			dir, doc.Version, requestVersion)
	}
	read := func(rel string) ([]byte, error) {
		if !localPath(rel) {
			return nil, fmt.Errorf("the build request names %q, which is outside %s", rel, dir)
		}
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return nil, fmt.Errorf("reading the build request: %w", err)
		}
		return b, nil
	}
	r := Request{
		Build:     ArchBuild{Arch: doc.Arch},
		Target:    doc.Target,
		Untagged:  doc.Untagged,
		CacheRepo: doc.CacheRepo,
		Prefetch:  doc.Prefetch,
	}
	if r.RegistryBounds, err = doc.RegistryBounds.bounds(); err != nil {
		return Request{}, err
	}
	for _, target := range doc.RunMounts {
		if err := checkRunMountTarget(target); err != nil {
			return Request{}, fmt.Errorf("the build request's run mount: %w", err)
		}
		// The objects' names are the pod's business: the worker reads RunMountsDir/<i>.
		r.RunMounts = append(r.RunMounts, RunMount{Target: target})
	}
	if r.Build.Containerfile, err = read(containerfileFile); err != nil {
		return Request{}, err
	}
	if r.Registry.RegistriesConf, err = read(registriesConf); err != nil {
		return Request{}, err
	}
	if r.Registry.PolicyJSON, err = read(policyFile); err != nil {
		return Request{}, err
	}
	for _, host := range doc.CAHosts {
		if strings.ContainsAny(host, "/\\") || host == "" || host == "." || host == ".." {
			return Request{}, fmt.Errorf("the build request has a CA for %q, which is not a registry host[:port]", host)
		}
		if r.Registry.CAs == nil {
			r.Registry.CAs = map[string][]byte{}
		}
		if r.Registry.CAs[host], err = read(caPath(host)); err != nil {
			return Request{}, err
		}
	}
	for _, p := range doc.ContextFiles {
		if !localPath(p) {
			return Request{}, fmt.Errorf("build context file %q must be a relative path inside the context", p)
		}
		if r.Build.ContextFiles == nil {
			r.Build.ContextFiles = map[string][]byte{}
		}
		if r.Build.ContextFiles[p], err = read(contextDir + "/" + p); err != nil {
			return Request{}, err
		}
	}
	if err := r.Build.Validate(); err != nil {
		return Request{}, err
	}
	if err := registry.ValidateTagPushspec(r.Target); err != nil {
		return Request{}, fmt.Errorf("the build request's target %q: %w", r.Target, err)
	}
	return r, nil
}

// PushConfig is the registry configuration of the worker's push client: the CA bundles, and the
// registries that registries.conf marks insecure. It is rebuilt from the request rather than
// shipped as cluster objects, so the request has one source of truth. The image policy
// (allowed/blocked registries) is not part of it: the controller checked the push target before
// it made the pod, and a NeverContactSource mirror rule, which blocks pulls in registries.conf,
// must never block a push.
func (rc RegistryConfig) PushConfig() (*registry.Config, error) {
	var conf struct {
		Registries []struct {
			Prefix   string `toml:"prefix"`
			Location string `toml:"location"`
			Insecure bool   `toml:"insecure"`
		} `toml:"registry"`
	}
	if _, err := toml.NewDecoder(bytes.NewReader(rc.RegistriesConf)).Decode(&conf); err != nil {
		return nil, fmt.Errorf("the build's registries.conf is not TOML: %w", err)
	}
	img := &configv1.Image{ObjectMeta: metav1.ObjectMeta{Name: "cluster"}}
	seen := map[string]bool{}
	for _, reg := range conf.Registries {
		prefix := reg.Prefix
		if prefix == "" {
			prefix = reg.Location
		}
		if reg.Insecure && prefix != "" && !seen[prefix] {
			seen[prefix] = true
			img.Spec.RegistrySources.InsecureRegistries = append(img.Spec.RegistrySources.InsecureRegistries, prefix)
		}
	}
	var cas *corev1.ConfigMap
	if len(rc.CAs) > 0 {
		// The Image config's CA ConfigMap spells host:port as host..port.
		const name = "build-request-cas"
		img.Spec.AdditionalTrustedCA.Name = name
		cas = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "openshift-config"}, BinaryData: map[string][]byte{}}
		for host, pem := range rc.CAs {
			cas.BinaryData[strings.Replace(host, ":", "..", 1)] = pem
		}
	}
	cfg, err := registry.NewConfig(registry.ConfigSources{Image: img, AdditionalTrustedCA: cas})
	if err != nil {
		return nil, fmt.Errorf("the build's registry configuration: %w", err)
	}
	return cfg, nil
}

// Result is what `mosb worker` writes to its termination message (JSON, < 4 KiB).
type Result struct {
	Arch string `json:"arch"`
	// Pullspec is host/repo@sha256:… of the pushed image.
	Pullspec string `json:"pullspec"`
	Digest   string `json:"digest"`
	// Platform is the image's (os, architecture, variant).
	Platform v1.Platform `json:"platform"`
	// StorageDriver is the storage driver the build ran with (overlay, or vfs as a fallback);
	// Storage says why it fell back, or why the node image store was not used.
	StorageDriver string `json:"storageDriver,omitempty"`
	Storage       string `json:"storage,omitempty"`
}

// Marshal encodes the result as a termination message.
func (w Result) Marshal() ([]byte, error) {
	if err := w.check(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, err
	}
	if len(b) > maxResultSize {
		return nil, fmt.Errorf("the worker result is %d bytes; a termination message keeps %d", len(b), maxResultSize)
	}
	return b, nil
}

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

func (w Result) check() error {
	switch {
	case w.Arch == "":
		return errors.New("the worker result has no arch")
	case !digestRE.MatchString(w.Digest):
		return fmt.Errorf("the worker result's digest %q is not sha256:<64 lowercase hex>", w.Digest)
	case !strings.HasSuffix(w.Pullspec, "@"+w.Digest):
		return fmt.Errorf("the worker result's pullspec %q is not by its digest %s", w.Pullspec, w.Digest)
	case w.Platform.OS == "" || w.Platform.Architecture == "":
		return errors.New("the worker result has no platform os/architecture")
	}
	if err := registry.ValidateDigestPullspec(w.Pullspec); err != nil {
		return fmt.Errorf("the worker result's pullspec %q: %w", w.Pullspec, err)
	}
	return nil
}

// ParseResult reads a termination message; an error says why it is not a result (e.g. it
// is a log tail that kubelet took under FallbackToLogsOnError because the worker failed).
func ParseResult(msg string) (Result, error) {
	s := strings.TrimSpace(msg)
	if s == "" {
		return Result{}, errors.New("the termination message is empty")
	}
	if !strings.HasPrefix(s, "{") {
		return Result{}, errors.New("the termination message is not a worker result (not JSON; the worker's log tail, so the build failed)")
	}
	var w Result
	dec := json.NewDecoder(strings.NewReader(s))
	if err := dec.Decode(&w); err != nil {
		return Result{}, fmt.Errorf("the termination message is not a worker result: %w", err)
	}
	if dec.More() {
		return Result{}, errors.New("the termination message is not a worker result: text follows the JSON")
	}
	if err := w.check(); err != nil {
		return Result{}, err
	}
	return w, nil
}

func ptr[T any](v T) *T { return &v }

func copyInt64(p *int64) *int64 {
	if p == nil {
		return nil
	}
	return ptr(*p)
}

// workVolume is the build's emptyDir, as large as the build's ephemeral-storage limit when it has
// one: nearly everything the build writes lands there, and a kubelet that finds the volume over
// its limit evicts the pod with a message that names the volume and the limit.
func workVolume(res corev1.ResourceRequirements) *corev1.EmptyDirVolumeSource {
	v := &corev1.EmptyDirVolumeSource{}
	if q, ok := res.Limits[corev1.ResourceEphemeralStorage]; ok {
		v.SizeLimit = &q
	}
	return v
}
