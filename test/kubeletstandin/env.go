package kubeletstandin

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// configError is a problem with a container's configuration that the kubelet reports as
// CreateContainerConfigError and retries (a missing ConfigMap key, runAsNonRoot as root, …).
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

func configErrorf(format string, args ...any) error {
	return &configError{msg: fmt.Sprintf(format, args...)}
}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// envList is an ordered environment where a later definition of a name replaces the earlier one.
type envList struct {
	names  []string
	values map[string]string
}

func (e *envList) set(name, value string) {
	if e.values == nil {
		e.values = map[string]string{}
	}
	if _, ok := e.values[name]; !ok {
		e.names = append(e.names, name)
	}
	e.values[name] = value
}

func (e *envList) lookup(name string) (string, bool) {
	v, ok := e.values[name]
	return v, ok
}

func (e *envList) environ() []string {
	out := make([]string, 0, len(e.names))
	for _, n := range e.names {
		out = append(out, n+"="+e.values[n])
	}
	return out
}

// containerEnv is the environment of one container: a base (PATH, HOSTNAME, HOME), Options.Env, the
// container's envFrom, then its env with $(VAR) references expanded against what precedes them.
func containerEnv(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, c *corev1.Container, extra map[string]string, alloc corev1.ResourceList, hostname string, uid *int64) (*envList, error) {
	env := &envList{}
	env.set("PATH", defaultPath)
	env.set("HOSTNAME", hostname)
	home := "/root"
	if uid != nil && *uid != 0 {
		home = "/"
	}
	env.set("HOME", home)
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		env.set(k, extra[k])
	}
	for _, from := range c.EnvFrom {
		var data map[string]string
		switch {
		case from.ConfigMapRef != nil:
			cm, err := cs.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, from.ConfigMapRef.Name, metav1.GetOptions{})
			if err != nil {
				if apierrors.IsNotFound(err) && isTrue(from.ConfigMapRef.Optional) {
					continue
				}
				return nil, lookupError("configmap", from.ConfigMapRef.Name, err)
			}
			data = cm.Data
		case from.SecretRef != nil:
			sec, err := cs.CoreV1().Secrets(pod.Namespace).Get(ctx, from.SecretRef.Name, metav1.GetOptions{})
			if err != nil {
				if apierrors.IsNotFound(err) && isTrue(from.SecretRef.Optional) {
					continue
				}
				return nil, lookupError("secret", from.SecretRef.Name, err)
			}
			data = map[string]string{}
			for k, v := range sec.Data {
				data[k] = string(v)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(data)) {
			name := from.Prefix + k
			if name == "" || strings.Contains(name, "=") {
				continue // the kubelet skips names that cannot be environment variables
			}
			env.set(name, data[k])
		}
	}
	for _, ev := range c.Env {
		if ev.ValueFrom == nil {
			env.set(ev.Name, expand(ev.Value, env.lookup))
			continue
		}
		v, skip, err := envSourceValue(ctx, cs, pod, c, ev.ValueFrom, alloc)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", ev.Name, err)
		}
		if !skip {
			env.set(ev.Name, v)
		}
	}
	return env, nil
}

func lookupError(kind, name string, err error) error {
	if apierrors.IsNotFound(err) {
		return configErrorf("%s %q not found", kind, name)
	}
	return err
}

func envSourceValue(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, c *corev1.Container, src *corev1.EnvVarSource, alloc corev1.ResourceList) (value string, skip bool, err error) {
	switch {
	case src.FieldRef != nil:
		v, err := fieldValue(pod, src.FieldRef.FieldPath)
		return v, false, err
	case src.ResourceFieldRef != nil:
		v, err := resourceValue(pod, c, src.ResourceFieldRef, alloc)
		return v, false, err
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		cm, err := cs.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) && isTrue(ref.Optional) {
				return "", true, nil
			}
			return "", false, lookupError("configmap", ref.Name, err)
		}
		if v, ok := cm.Data[ref.Key]; ok {
			return v, false, nil
		}
		if v, ok := cm.BinaryData[ref.Key]; ok {
			return string(v), false, nil
		}
		if isTrue(ref.Optional) {
			return "", true, nil
		}
		return "", false, configErrorf("couldn't find key %s in ConfigMap %s/%s", ref.Key, pod.Namespace, ref.Name)
	case src.SecretKeyRef != nil:
		ref := src.SecretKeyRef
		sec, err := cs.CoreV1().Secrets(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) && isTrue(ref.Optional) {
				return "", true, nil
			}
			return "", false, lookupError("secret", ref.Name, err)
		}
		if v, ok := sec.Data[ref.Key]; ok {
			return string(v), false, nil
		}
		if isTrue(ref.Optional) {
			return "", true, nil
		}
		return "", false, configErrorf("couldn't find key %s in Secret %s/%s", ref.Key, pod.Namespace, ref.Name)
	}
	return "", false, configErrorf("unsupported valueFrom source")
}

// fieldValue resolves a downward-API field path of the pod.
func fieldValue(pod *corev1.Pod, path string) (string, error) {
	if key, ok := bracketKey(path, "metadata.labels"); ok {
		return pod.Labels[key], nil
	}
	if key, ok := bracketKey(path, "metadata.annotations"); ok {
		return pod.Annotations[key], nil
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs":
		return nodeIP, nil
	}
	return "", configErrorf("unsupported fieldRef %q", path)
}

// bracketKey parses `prefix['key']` (or with double quotes).
func bracketKey(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix+"[")
	if !ok || !strings.HasSuffix(rest, "]") || len(rest) < 3 {
		return "", false
	}
	rest = rest[:len(rest)-1]
	q := rest[0]
	if (q != '\'' && q != '"') || rest[len(rest)-1] != q {
		return "", false
	}
	return rest[1 : len(rest)-1], true
}

// formatMap is the downward API's rendering of labels/annotations: key="value" lines, sorted by key.
func formatMap(m map[string]string) string {
	keys := slices.Sorted(maps.Keys(m))
	var sb strings.Builder
	for i, k := range keys {
		if i > 0 {
			sb.WriteByte('\n')
		}
		sb.WriteString(k + "=" + strconv.Quote(m[k]))
	}
	return sb.String()
}

// resourceValue reports a container's request or limit (a missing limit is the node's allocatable),
// divided by the divisor and rounded up. The stand-in enforces none of them.
func resourceValue(pod *corev1.Pod, c *corev1.Container, ref *corev1.ResourceFieldSelector, alloc corev1.ResourceList) (string, error) {
	if ref.ContainerName != "" {
		c = findContainer(pod, ref.ContainerName)
		if c == nil {
			return "", configErrorf("resourceFieldRef names unknown container %q", ref.ContainerName)
		}
	}
	if c == nil {
		return "", configErrorf("resourceFieldRef %s needs a containerName", ref.Resource)
	}
	kind, name, _ := strings.Cut(ref.Resource, ".")
	var q resource.Quantity
	switch kind {
	case "limits":
		var ok bool
		if q, ok = c.Resources.Limits[corev1.ResourceName(name)]; !ok {
			q = alloc[corev1.ResourceName(name)]
		}
	case "requests":
		q = c.Resources.Requests[corev1.ResourceName(name)]
	default:
		return "", configErrorf("unsupported resourceFieldRef %q", ref.Resource)
	}
	div := ref.Divisor
	if div.IsZero() {
		div = resource.MustParse("1")
	}
	var num, den int64
	if name == string(corev1.ResourceCPU) {
		num, den = q.MilliValue(), div.MilliValue()
	} else {
		num, den = q.Value(), div.Value()
	}
	if den <= 0 {
		return "", configErrorf("resourceFieldRef %s has a divisor below 1m", ref.Resource)
	}
	return strconv.FormatInt((num+den-1)/den, 10), nil
}

func findContainer(pod *corev1.Pod, name string) *corev1.Container {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

// expand replaces $(NAME) with the value lookup finds, leaves an unknown $(NAME) as it is, and turns
// $$ into $, as Kubernetes does for command, args and env values.
func expand(in string, lookup func(string) (string, bool)) string {
	if !strings.Contains(in, "$") {
		return in
	}
	var b strings.Builder
	for i := 0; i < len(in); i++ {
		if in[i] != '$' || i+1 == len(in) {
			b.WriteByte(in[i])
			continue
		}
		switch in[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(in[i+2:], ')')
			if end < 0 {
				b.WriteString(in[i:])
				return b.String()
			}
			ref := in[i : i+3+end]
			if v, ok := lookup(in[i+2 : i+2+end]); ok {
				b.WriteString(v)
			} else {
				b.WriteString(ref)
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// identity is who a container's process runs as.
type identity struct {
	uid, gid *int64
	groups   []int64
}

func (id identity) set() bool { return id.uid != nil || id.gid != nil || len(id.groups) > 0 }

// containerIdentity applies the pod's and the container's securityContext (the container's wins).
// Without runAsUser the process runs as the stand-in's user (root), as an image without USER would.
func containerIdentity(pod *corev1.Pod, c *corev1.Container) (identity, error) {
	var id identity
	var nonRoot *bool
	if psc := pod.Spec.SecurityContext; psc != nil {
		id.uid, id.gid, nonRoot = psc.RunAsUser, psc.RunAsGroup, psc.RunAsNonRoot
		id.groups = append(id.groups, psc.SupplementalGroups...)
		if psc.FSGroup != nil {
			id.groups = append(id.groups, *psc.FSGroup)
		}
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			id.uid = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			id.gid = sc.RunAsGroup
		}
		if sc.RunAsNonRoot != nil {
			nonRoot = sc.RunAsNonRoot
		}
	}
	if isTrue(nonRoot) {
		if id.uid == nil {
			return id, configErrorf("container has runAsNonRoot and image will run as root (pod: %q, container: %s)", pod.Name+"_"+pod.Namespace+"("+string(pod.UID)+")", c.Name)
		}
		if *id.uid == 0 {
			return id, configErrorf("container's runAsUser breaks non-root policy (pod: %q, container: %s)", pod.Name+"_"+pod.Namespace+"("+string(pod.UID)+")", c.Name)
		}
	}
	sort.Slice(id.groups, func(i, j int) bool { return id.groups[i] < id.groups[j] })
	return id, nil
}

func isTrue(b *bool) bool { return b != nil && *b }
