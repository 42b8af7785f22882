package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// A KubeletCluster is a single-node Kubernetes cluster on this machine that runs real pods:
// kube-apiserver + etcd (the ControlPlane), kube-scheduler and kube-controller-manager of the same
// version, a kubelet, and containerd running containers with runc. Everything lives under one
// directory in /var/tmp and one cgroup, so that tearing it down can find and remove all of it.
//
// What it takes of the machine (../shared/notes/kube.md records how it was found):
//   - root, writable cgroups, overlayfs, and Debian's containerd and runc (make deps);
//   - no pod network: pods must use hostNetwork; the node's address is the machine's own
//     non-loopback address, which the API server uses for `kubectl logs`;
//   - no image pulls from the internet: images are imported into containerd (ImportImage), the
//     sandbox ("pause") image too, or pulled from a registry on this machine (PullFrom);
//   - no negative oom_score_adj: the kubelet runs with oomScoreAdj 0 and containerd clamps what
//     it asks runc for (restrict_oom_score_adj).
type KubeletCluster struct {
	*ControlPlane
	// NodeName and NodeIP are the one node's.
	NodeName, NodeIP string
	// Dir holds containerd's root and state, the kubelet's root, pod logs and the components'
	// logs (<name>.log).
	Dir string
	// ContainerdSocket is containerd's API socket, for ctr.
	ContainerdSocket string
	// PodLogsDir is where the kubelet keeps container logs (<ns>_<pod>_<uid>/<container>/N.log).
	PodLogsDir string

	cgroupRoot string
	procs      map[string]*process
	t          T
}

// KubeletClusterDirPrefix starts the name of every KubeletCluster directory in /var/tmp (and of
// its cgroup), so that what an interrupted run left can be found: `make demo-down` removes it.
const KubeletClusterDirPrefix = "mosb-kubelet-"

// PauseImage is the sandbox image containerd is configured with; it is imported, never pulled.
const PauseImage = "localhost/mosb/pause:1"

// cgroupV1Controllers are the hierarchies the kubelet and runc use on a cgroup v1 machine.
var cgroupV1Controllers = []string{"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd"}

// KubeletUnsupported says why this machine cannot run a KubeletCluster, or "" when it can. It
// checks what can be checked cheaply; a cluster that then fails to start is a failure, not a skip.
func KubeletUnsupported() string {
	if os.Geteuid() != 0 {
		return "the kubelet and containerd need root"
	}
	for _, bin := range []string{"containerd", "ctr", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			return bin + " is not installed (make deps installs Debian's containerd and runc)"
		}
	}
	fs, err := os.ReadFile("/proc/filesystems")
	if err != nil || !strings.Contains(string(fs), "overlay") {
		return "the kernel offers no overlayfs (containerd's snapshotter)"
	}
	if _, err := nodeIP(); err != nil {
		return err.Error()
	}
	probe := KubeletClusterDirPrefix + "probe-" + strconv.Itoa(os.Getpid())
	for _, d := range cgroupDirs("/" + probe) {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Sprintf("cannot create cgroups (%v): the kubelet needs a writable /sys/fs/cgroup", err)
		}
		_ = os.Remove(d)
	}
	return ""
}

// StartKubeletCluster starts a control plane and a node that runs pods, and tears all of it down
// when the test ends: pods' containers killed, every mount under Dir unmounted, the cgroup
// removed, no process left. A leftover fails the test.
func StartKubeletCluster(t T, opts ...ControlPlaneOption) *KubeletCluster {
	t.Helper()
	if why := KubeletUnsupported(); why != "" {
		t.Fatalf("this machine cannot run a kubelet: %s", why)
	}
	assets := KubeletAssets(t)
	ip, err := nodeIP()
	if err != nil {
		t.Fatal(err)
	}
	// The API server reaches the kubelet (kubectl logs, exec) with a client certificate of a CA
	// the kubelet trusts.
	ca, err := NewCA("mosb-kubelet-client-ca")
	if err != nil {
		t.Fatal(err)
	}
	pki := t.TempDir()
	clientCert, clientKey, err := ca.ClientPair("kube-apiserver-kubelet-client", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(pki, "kubelet-client-ca.crt"), ca.PEM)
	mustWrite(t, filepath.Join(pki, "apiserver-kubelet-client.crt"), clientCert)
	mustWrite(t, filepath.Join(pki, "apiserver-kubelet-client.key"), clientKey)

	opts = append([]ControlPlaneOption{func(e *envtest.Environment) {
		api := e.ControlPlane.GetAPIServer().Configure()
		// envtest turns the ServiceAccount admission plugin off because nothing creates the
		// default ServiceAccounts there; here kube-controller-manager does, and pods need the
		// plugin to get their API token.
		api.Disable("disable-admission-plugins")
		api.Set("kubelet-client-certificate", filepath.Join(pki, "apiserver-kubelet-client.crt"))
		api.Set("kubelet-client-key", filepath.Join(pki, "apiserver-kubelet-client.key"))
		api.Set("kubelet-preferred-address-types", "InternalIP")
		// The Node authorizer gives the kubelet exactly what a node may read and write.
		api.Set("authorization-mode", "Node,RBAC")
		// No kube-proxy here: the API server reaches webhook Services (mosb's conversion webhook)
		// at their endpoints' addresses, not their cluster IPs.
		api.Set("enable-aggregator-routing", "true")
	}}, opts...)
	cp := StartControlPlane(t, opts...)
	mustWrite(t, filepath.Join(pki, "ca.crt"), cp.Config.CAData)

	dir, err := os.MkdirTemp("/var/tmp", KubeletClusterDirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	c := &KubeletCluster{
		NodeName: "mosb-node", NodeIP: ip, Dir: dir,
		// Unix socket paths are limited to 108 bytes: keep them short.
		ContainerdSocket: filepath.Join(dir, "containerd.sock"),
		PodLogsDir:       filepath.Join(dir, "pods"),
		cgroupRoot:       "/" + filepath.Base(dir),
		procs:            map[string]*process{},
		t:                t,
	}
	// Registered after the control plane's, so it runs first: the node goes while the API server
	// still answers (which then stops promptly, with no kubelet holding watches on it).
	t.Cleanup(c.teardown)

	c.ControlPlane = cp

	c.startContainerd(t)
	c.ImportImage(t, PauseImage, func(path string) { PauseImageArchive(t, PauseImage, path) })
	c.createCgroupRoot(t)

	sched := c.KubeconfigFor(t, "system:kube-scheduler")
	c.start(t, "kube-scheduler", filepath.Join(assets, "kube-scheduler"),
		"--kubeconfig="+sched, "--authentication-kubeconfig="+sched, "--authorization-kubeconfig="+sched,
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(mustFreePort(t)))
	// The controllers a Deployment, mosb's build Jobs, pods' ServiceAccount tokens and garbage
	// collection need, the node lifecycle controller, which lifts the not-ready taint a kubelet
	// registers its node with, and the endpoints controller, by which the API server reaches mosb's
	// conversion webhook (--enable-aggregator-routing); they act as one privileged user instead of
	// one ServiceAccount each.
	kcm := c.KubeconfigFor(t, "system:kube-controller-manager", "system:masters")
	c.start(t, "kube-controller-manager", filepath.Join(assets, "kube-controller-manager"),
		"--kubeconfig="+kcm, "--authentication-kubeconfig="+kcm, "--authorization-kubeconfig="+kcm,
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(mustFreePort(t)),
		"--controllers=deployment,replicaset,job,serviceaccount,root-ca-cert-publisher,garbagecollector,namespace,nodelifecycle,endpoint,endpointslice",
		"--root-ca-file="+filepath.Join(pki, "ca.crt"), "--use-service-account-credentials=false")
	c.startKubelet(t, filepath.Join(assets, "kubelet"), filepath.Join(pki, "kubelet-client-ca.crt"))
	return c
}

// KubeletAssets returns the directory with kube-apiserver, etcd, kubectl and also kubelet,
// kube-scheduler and kube-controller-manager, building what is missing with hack/kube-assets.sh.
func KubeletAssets(t T) string {
	t.Helper()
	dir := KubeAssets(t)
	missing := false
	for _, bin := range []string{"kubelet", "kube-scheduler", "kube-controller-manager"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			missing = true
		}
	}
	if !missing {
		return dir
	}
	got, err := runKubeAssets("kubelet")
	if err != nil {
		t.Fatalf("building kubelet, kube-scheduler and kube-controller-manager with hack/kube-assets.sh kubelet: %v", err)
	}
	if got != dir {
		t.Fatalf("hack/kube-assets.sh kubelet built into %s, but the control plane's binaries are in %s: one version for all of them (unset KUBEBUILDER_ASSETS)", got, dir)
	}
	return dir
}

// containerdConfig is containerd 1.6's: everything under the cluster's directory, the CRI plugin
// with runc (its own state root, so another containerd on the machine is never touched) and the
// imported pause image; no CNI (hostNetwork pods only).
const containerdConfig = `version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[4]q
  # The sandbox may not lower oom_score_adj (no CAP_SYS_RESOURCE): runc is never asked to.
  restrict_oom_score_adj = true
  enable_selinux = false
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".cni]
  conf_dir = %[5]q
  bin_dir = %[5]q
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  Root = %[6]q
  SystemdCgroup = false
[plugins."io.containerd.grpc.v1.cri".registry]
  # One directory per registry (PullFrom), read at each pull.
  config_path = %[7]q
`

func (c *KubeletCluster) startContainerd(t T) {
	t.Helper()
	cfg := filepath.Join(c.Dir, "containerd.toml")
	mustWrite(t, cfg, []byte(fmt.Sprintf(containerdConfig,
		filepath.Join(c.Dir, "containerd"), filepath.Join(c.Dir, "containerd-state"), c.ContainerdSocket,
		PauseImage, filepath.Join(c.Dir, "cni"), filepath.Join(c.Dir, "runc"), c.registryHostsDir())))
	// The CRI plugin reports the network not ready, and so the kubelet the node NotReady, until
	// it has loaded a CNI configuration, even when every pod uses the host's network. This one is
	// never invoked for hostNetwork pods; any other pod fails to start (no CNI plugins here).
	mustWrite(t, filepath.Join(c.Dir, "cni", "10-host-network-only.conflist"),
		[]byte(`{"cniVersion":"0.4.0","name":"host-network-only","plugins":[{"type":"loopback"}]}`))
	c.start(t, "containerd", requireBinary(t, "containerd"), "--config", cfg)
	c.waitFor(t, "containerd", 30*time.Second, func() error {
		return exec.Command("ctr", "--address", c.ContainerdSocket, "version").Run()
	})
}

func (c *KubeletCluster) registryHostsDir() string { return filepath.Join(c.Dir, "registry-hosts") }

// PullFrom lets the node pull images from reg, as a node is set up to pull from a private
// registry: over plain HTTP when reg speaks it, else trusting reg's CA. Pulls are anonymous (a
// pod's imagePullSecrets aside).
func (c *KubeletCluster) PullFrom(t T, reg *Registry) {
	t.Helper()
	dir := filepath.Join(c.registryHostsDir(), reg.Host)
	server := "http://" + reg.Host
	ca := ""
	if reg.CA != nil {
		server = "https://" + reg.Host
		mustWrite(t, filepath.Join(dir, "ca.crt"), reg.CA.PEM)
		ca = fmt.Sprintf("  ca = %q\n", filepath.Join(dir, "ca.crt"))
	}
	mustWrite(t, filepath.Join(dir, "hosts.toml"), fmt.Appendf(nil, "server = %q\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n%s", server, server, ca))
}

// ImportImage makes ref available to pods without a pull: write(path) writes its archive, which
// containerd imports under the name ref (imagePullPolicy IfNotPresent or Never finds it).
func (c *KubeletCluster) ImportImage(t T, ref string, write func(path string)) {
	t.Helper()
	archive := filepath.Join(t.TempDir(), "image.tar")
	write(archive)
	out, err := exec.Command("ctr", "--address", c.ContainerdSocket, "--namespace", "k8s.io",
		"images", "import", archive).CombinedOutput()
	if err != nil {
		t.Fatalf("importing %s into containerd: %v: %s", ref, err, out)
	}
	out, err = exec.Command("ctr", "--address", c.ContainerdSocket, "--namespace", "k8s.io", "images", "ls", "-q").Output()
	if err != nil || !slices.Contains(strings.Fields(string(out)), ref) {
		t.Fatalf("containerd does not list %s after importing it (%v); it has: %s", ref, err, out)
	}
}

const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://%[1]s
cgroupDriver: cgroupfs
cgroupRoot: %[2]s
cgroupsPerQOS: true
enforceNodeAllocatable: []
address: %[3]s
port: %[4]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[5]d
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: %[6]q}
authorization: {mode: AlwaysAllow}
podLogsDir: %[7]q
failSwapOn: false
oomScoreAdj: 0
resolvConf: /etc/resolv.conf
serializeImagePulls: false
# No eviction and no image garbage collection: a test machine's disk is what it is, and the
# imported images cannot be pulled back.
evictionHard: {}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
nodeStatusReportFrequency: 10s
`

func (c *KubeletCluster) startKubelet(t T, bin, clientCA string) {
	t.Helper()
	cfg := filepath.Join(c.Dir, "kubelet.yaml")
	mustWrite(t, cfg, []byte(fmt.Sprintf(kubeletConfig, c.ContainerdSocket, c.cgroupRoot, c.NodeIP,
		mustFreePort(t), mustFreePort(t), clientCA, c.PodLogsDir)))
	kubeconfig := c.KubeconfigFor(t, "system:node:"+c.NodeName, "system:nodes")
	c.start(t, "kubelet", bin, "--config="+cfg, "--kubeconfig="+kubeconfig,
		"--root-dir="+filepath.Join(c.Dir, "kubelet"), "--cert-dir="+filepath.Join(c.Dir, "kubelet-pki"),
		"--hostname-override="+c.NodeName, "--node-ip="+c.NodeIP)
	ctx := context.Background()
	c.waitFor(t, "node "+c.NodeName+" Ready and schedulable", 2*time.Minute, func() error {
		node := &corev1.Node{}
		if err := c.Client.Get(ctx, client.ObjectKey{Name: c.NodeName}, node); err != nil {
			return err
		}
		for _, taint := range node.Spec.Taints {
			if taint.Key == corev1.TaintNodeNotReady {
				return fmt.Errorf("still tainted %s", taint.ToString())
			}
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("Ready=%s: %s", cond.Status, cond.Message)
			}
		}
		return errors.New("no Ready condition yet")
	})
}

// Kubectl runs kubectl as the cluster admin and returns its combined output.
func (c *KubeletCluster) Kubectl(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(c.Assets, "kubectl"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// A process is one component, its output in <Dir>/<name>.log.
type process struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	log    string
}

func (c *KubeletCluster) start(t T, name, bin string, args ...string) {
	t.Helper()
	c.procs[name] = startProcess(t, filepath.Join(c.Dir, name+".log"), name, bin, args...)
}

// startProcess starts a component with its output in logPath.
func startProcess(t T, logPath, name, bin string, args ...string) *process {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so a stop reaches its children; and it dies with the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, exited: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.exited) }()
	return p
}

// waitFor polls ready until it succeeds, failing the test with the component's log tail when the
// component exits or the timeout passes.
func (c *KubeletCluster) waitFor(t T, what string, timeout time.Duration, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if last = ready(); last == nil {
			return
		}
		for _, p := range c.procs {
			select {
			case <-p.exited:
				t.Fatalf("%s exited while waiting for %s: %s", p.name, what, tail(p.log, 30))
			default:
			}
		}
		if time.Now().After(deadline) {
			var logs strings.Builder
			for _, name := range []string{"kubelet", "containerd"} {
				if p := c.procs[name]; p != nil {
					fmt.Fprintf(&logs, "\n--- %s:\n%s", name, tail(p.log, 20))
				}
			}
			t.Fatalf("%s not reached after %s: %v%s", what, timeout, last, logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (p *process) stop(grace time.Duration) {
	if p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

// teardown stops the node's components and removes what they made, then checks that nothing is
// left: no process in the cluster's cgroup or naming its directory, no mount under it, no cgroup.
func (c *KubeletCluster) teardown() {
	t := c.t
	if p := c.procs["kubelet"]; p != nil {
		p.stop(10 * time.Second)
	}
	// Every container the kubelet started: killed, then its task and container deleted, so
	// containerd unmounts their root filesystems itself.
	if p := c.procs["containerd"]; p != nil {
		ctr := func(args ...string) string {
			out, _ := exec.Command("ctr", append([]string{"--address", c.ContainerdSocket, "--namespace", "k8s.io"}, args...)...).Output()
			return string(out)
		}
		for _, id := range strings.Fields(ctr("tasks", "ls", "-q")) {
			ctr("tasks", "kill", "--all", "--signal", "SIGKILL", id)
			ctr("tasks", "delete", "--force", id)
		}
		for _, id := range strings.Fields(ctr("containers", "ls", "-q")) {
			ctr("containers", "delete", id)
		}
	}
	for _, name := range []string{"kube-controller-manager", "kube-scheduler", "containerd"} {
		if p := c.procs[name]; p != nil {
			p.stop(10 * time.Second)
		}
	}
	killed := killLeftovers(c.Dir, c.cgroupRoot)
	unmounted, err := unmountUnder(c.Dir)
	if err != nil {
		t.Errorf("unmounting under %s: %v", c.Dir, err)
	}
	if err := removeCgroup(c.cgroupRoot); err != nil {
		t.Errorf("removing cgroup %s: %v", c.cgroupRoot, err)
	}
	if err := os.RemoveAll(c.Dir); err != nil {
		t.Errorf("removing %s: %v", c.Dir, err)
	}
	if killed > 0 || unmounted > 0 {
		t.Logf("kubelet cluster teardown: killed %d leftover processes, unmounted %d mounts", killed, unmounted)
	}
	// What a teardown must leave: nothing.
	if pids := processesOf(c.Dir, c.cgroupRoot); len(pids) > 0 {
		t.Errorf("processes left after the kubelet cluster's teardown: %v", pids)
	}
	if mounts, _ := mountsUnder(c.Dir); len(mounts) > 0 {
		t.Errorf("mounts left after the kubelet cluster's teardown: %v", mounts)
	}
	for _, d := range cgroupDirs(c.cgroupRoot) {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("cgroup left after the kubelet cluster's teardown: %s", d)
		}
	}
}

// CleanKubeletClusters removes what interrupted KubeletClusters left (their processes, mounts,
// cgroups and directories in /var/tmp); for `make demo-down`. It returns what it removed.
func CleanKubeletClusters() ([]string, error) {
	dirs, err := filepath.Glob(filepath.Join("/var/tmp", KubeletClusterDirPrefix+"*"))
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, dir := range dirs {
		cg := "/" + filepath.Base(dir)
		killLeftovers(dir, cg)
		if _, err := unmountUnder(dir); err != nil {
			errs = append(errs, err)
		}
		if err := removeCgroup(cg); err != nil {
			errs = append(errs, err)
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return dirs, errors.Join(errs...)
}

// nodeIP is the machine's address on its default route: the kubelet refuses a loopback node IP.
func nodeIP() (string, error) {
	conn, err := net.Dial("udp4", "192.0.2.1:9") // no packet is sent: this only picks a route
	if err == nil {
		defer conn.Close()
		if ip := conn.LocalAddr().(*net.UDPAddr).IP; !ip.IsLoopback() {
			return ip.String(), nil
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", fmt.Errorf("listing network addresses: %w", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String(), nil
		}
	}
	return "", errors.New("this machine has no non-loopback IPv4 address for the node (the kubelet refuses 127.0.0.1)")
}

func mustFreePort(t T) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// cgroupUnified says whether /sys/fs/cgroup is cgroup v2 only.
func cgroupUnified() bool {
	var st syscall.Statfs_t
	return syscall.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == 0x63677270 // CGROUP2_SUPER_MAGIC
}

// cgroupDirs are the directories of cgroup path in every hierarchy the kubelet uses.
func cgroupDirs(path string) []string {
	if cgroupUnified() {
		return []string{filepath.Join("/sys/fs/cgroup", path)}
	}
	var out []string
	for _, ctl := range cgroupV1Controllers {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", ctl)); err == nil {
			out = append(out, filepath.Join("/sys/fs/cgroup", ctl, path))
		}
	}
	return out
}

// createCgroupRoot makes the kubelet's cgroupRoot (it must exist; the kubelet makes kubepods
// under it). A new cpuset cgroup has no CPUs nor memory nodes until given its parent's.
func (c *KubeletCluster) createCgroupRoot(t T) {
	t.Helper()
	for _, d := range cgroupDirs(c.cgroupRoot) {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("creating cgroup %s: %v", d, err)
		}
		if strings.HasPrefix(d, "/sys/fs/cgroup/cpuset/") {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := os.ReadFile(filepath.Join(filepath.Dir(d), f))
				if err == nil {
					err = os.WriteFile(filepath.Join(d, f), v, 0o644)
				}
				if err != nil {
					t.Fatalf("initialising %s/%s: %v", d, f, err)
				}
			}
		}
	}
	if cgroupUnified() {
		// The kubelet needs these controllers delegated to its root's children.
		ctl := "+cpu +cpuset +memory +pids +io"
		for _, d := range []string{"/sys/fs/cgroup", cgroupDirs(c.cgroupRoot)[0]} {
			if err := os.WriteFile(filepath.Join(d, "cgroup.subtree_control"), []byte(ctl), 0o644); err != nil {
				t.Fatalf("delegating cgroup controllers in %s: %v", d, err)
			}
		}
	}
}

// removeCgroup removes cgroup path and everything under it, deepest first, in every hierarchy.
func removeCgroup(path string) error {
	var errs []error
	for _, root := range cgroupDirs(path) {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil && !os.IsNotExist(err) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// processesOf are the processes in cgroup path (any hierarchy) or whose command line names dir
// (containerd's shims name its socket).
func processesOf(dir, cgroup string) []int {
	seen := map[int]bool{}
	for _, root := range cgroupDirs(cgroup) {
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.Name() != "cgroup.procs" {
				return nil
			}
			raw, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(raw)) {
				if pid, err := strconv.Atoi(f); err == nil {
					seen[pid] = true
				}
			}
			return nil
		})
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.Contains(string(cmdline), dir) {
			seen[pid] = true
		}
	}
	out := make([]int, 0, len(seen))
	for pid := range seen {
		out = append(out, pid)
	}
	slices.Sort(out)
	return out
}

// killLeftovers SIGKILLs processesOf(dir, cgroup) until none is left (or a few seconds pass).
func killLeftovers(dir, cgroup string) int {
	killed := 0
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := processesOf(dir, cgroup)
		if len(pids) == 0 || time.Now().After(deadline) {
			return killed
		}
		for _, pid := range pids {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed++
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mountsUnder are the mount points at or under dir, deepest last.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, s.Err()
}

// unmountUnder detaches every mount under dir, deepest first.
func unmountUnder(dir string) (int, error) {
	mounts, err := mountsUnder(dir)
	if err != nil {
		return 0, err
	}
	var errs []error
	n := 0
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(mounts[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("%s: %w", mounts[i], err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space, and so on).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// tail is the last n lines of a file.
func tail(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
