// Package kubeletstandin is TEST INFRASTRUCTURE: a stand-in for the kubelet (and for the scheduler)
// on the envtest control plane of test/harness, which has neither. It exists until mosb has a real
// kubelet harness, so that tests can watch the controller's build pods actually run.
//
// It honours what a pod says and never invents a result: a pod's containers run as real local
// processes, and the status written back is what those processes did.
//
// # What it does
//
//   - Registers Node objects for the node names it pretends to be, with the labels a kubelet sets
//     (kubernetes.io/arch, kubernetes.io/os=linux, kubernetes.io/hostname), capacity/allocatable and a
//     Ready condition. The node.kubernetes.io/not-ready taint that the apiserver adds on creation is
//     removed, as the node lifecycle controller would once the node is Ready.
//   - Schedules: a pending pod with no spec.nodeName and schedulerName default-scheduler (or empty)
//     whose nodeSelector, required node affinity and tolerations fit one of its nodes is bound to the
//     first such node (in the order of Options.Nodes) through the pods/binding subresource. The nodes
//     are watched, so what counts is their current labels and taints; a cordoned node
//     (spec.unschedulable) fits only pods tolerating node.kubernetes.io/unschedulable:NoSchedule, and a
//     node being deleted fits none. A pod that fits none stays Pending with PodScheduled=False, reason
//     Unschedulable and a scheduler-like message, and never runs until a change to one of the nodes
//     (labels, taints, cordon, deletion) makes it fit: every such change retries the pending pods.
//   - Runs a bound pod: volumes are materialised under the work dir, init containers run one after the
//     other, then the main containers run concurrently. Each container is a real process: the
//     container's command[0] is looked up in Options.Commands (an unknown one fails the container with
//     reason StartError, exit code 128 and a message saying so; under restartPolicy OnFailure/Always it
//     is retried with back-off, as the kubelet retries a StartError), args and env ($(VAR) expansion,
//     env valueFrom fieldRef/resourceFieldRef/configMapKeyRef/secretKeyRef, envFrom) and workingDir
//     are honoured, and so are runAsUser/runAsGroup/supplementalGroups/fsGroup/runAsNonRoot.
//   - Reports through the status subresource as a kubelet does: Pending (waiting ContainerCreating or
//     PodInitializing) → Running (state.running, startTime, the PodScheduled, PodReadyToStartContainers,
//     Initialized, ContainersReady and Ready conditions) → Succeeded/Failed with state.terminated
//     {exitCode, signal, reason Completed/Error/StartError, message, startedAt, finishedAt}. The
//     termination message is the file the container wrote at terminationMessagePath (at most 4096
//     bytes); when that is empty, the policy is FallbackToLogsOnError and the container failed, it is
//     the last 80 lines / 2048 bytes of the container's output.
//   - Honours activeDeadlineSeconds (measured from status.startTime; the containers' process groups
//     get SIGTERM, then SIGKILL after terminationGracePeriodSeconds; phase Failed, reason
//     DeadlineExceeded), restartPolicy Never/OnFailure/Always (restarts back off from
//     Options.RestartBackoff, doubling up to five minutes, as CrashLoopBackOff), and pod deletion: the
//     process groups get SIGTERM, SIGKILL after the deletion grace period, and once they are gone the
//     stand-in writes the final status and removes the pod (delete with grace period 0), which is what
//     a kubelet confirms.
//   - Keeps every container run's output in the work dir: Logs and ContainerLogs return it, also after
//     the pod is gone.
//
// # Volumes and the private mount namespace
//
// ConfigMap and Secret volumes (data and binaryData, items key→path, per-item mode and defaultMode,
// optional), downwardAPI, projected (configMap, secret, downwardAPI and serviceAccountToken sources)
// and emptyDir volumes are written to a directory per pod under the work dir; an emptyDir with a
// sizeLimit is a tmpfs of that size (a kubelet would evict the pod that outgrows it; here its writes
// fail with "no space left on device"). Each container process is
// started by a re-exec of the running binary (the package's init function recognises it) in a new mount
// namespace (and a new UTS namespace carrying the pod's hostname unless hostNetwork is set), with every
// mount made private so nothing propagates back to the host. There the helper bind-mounts each volume
// (or its subPath) at the volumeMount's mountPath — read-only when the mount says so, and always for
// ConfigMap, Secret, downwardAPI and projected volumes, as the kubelet does — and a per-run file
// over terminationMessagePath (default /dev/termination-log), then changes to workingDir, drops to the
// pod's user and groups, and execs the command. The process sees the host's root filesystem — the mosb
// binary and buildah need it — and only the mount paths are overlaid; nothing is chrooted and / is never
// mounted over.
//
// A mount path that does not exist on the host is not created on the host: its deepest existing
// ancestor directory is shadowed, inside the namespace only, by a tmpfs holding a bind mount of every
// entry of the original (symlinks copied) plus the missing path. Writes to existing entries of such a
// directory reach the host as before; new entries created next to them by the process vanish with the
// namespace. A mount path that would need a new directory directly under / is refused (StartError):
// shadowing / would mean mounting over it. Mount paths inside another volume's mount are created inside
// that volume's directory, as a container runtime does.
//
// # Limitations (deliberate; it is a stand-in, not a kubelet)
//
//   - Images are ignored: nothing is pulled, there is no image filesystem and no image entrypoint, so a
//     container must have a command whose command[0] is in Options.Commands. Every process runs natively
//     on this machine, whatever kubernetes.io/arch a stand-in node claims.
//   - Resource requests and limits are ignored (no cgroups): a process may use as much CPU and memory as
//     the machine has, and OOMKilled is never reported. resourceFieldRef reports the spec's values (or
//     the node's allocatable for unset limits).
//   - No probes: a running container is reported ready at once; readiness gates keep Ready False until
//     someone sets their conditions. Lifecycle hooks, sidecar init containers (restartPolicy Always on an
//     init container), ephemeral containers, stdin/tty, hostPath and other volume types, service links,
//     DNS settings and the /etc/hosts, /etc/resolv.conf and /etc/hostname files are not emulated; a pod
//     using an unsupported volume type fails with reason UnsupportedByStandIn and a message naming it.
//   - Networking is the host's, as if every pod had hostNetwork: the pod and host IP are 127.0.0.1.
//   - Processes are tracked by process group: a process that starts its own session (setsid) escapes the
//     kill. ConfigMap and Secret volumes are written once, when the pod starts, not kept in sync.
//   - The Node objects get no heartbeats after registration (nothing on an envtest control plane checks
//     them), and no node lifecycle controller acts on them: cordoning adds no taint, and a node's pods
//     are neither evicted nor stopped when it is tainted, cordoned or deleted. Stop kills the running
//     processes without writing their statuses: the pods stay as last reported. A pod already bound to
//     a stand-in node but not terminal when the stand-in starts is run from the beginning.
//   - It must run as root (mount namespaces), and a binary that embeds this package must let its init
//     function run (any import does).
package kubeletstandin
