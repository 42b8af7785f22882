package kubeletstandin

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// unsupportedError is something the stand-in cannot do; the pod fails with reason UnsupportedByStandIn.
type unsupportedError struct{ msg string }

func (e *unsupportedError) Error() string { return e.msg }

const (
	defaultFileMode      = 0o644
	reasonUnsupported    = "UnsupportedByStandIn"
	tokenDefaultLifetime = 3607
)

// volumeFile is one file of a ConfigMap, Secret, downward-API or projected volume.
type volumeFile struct {
	path string
	data []byte
	mode int32
}

// materialiseVolumes writes every volume of the pod under root/<volume name>. A missing ConfigMap,
// Secret or key is an ordinary error (the caller retries, as the kubelet does); an unsupported volume
// type is an *unsupportedError.
func materialiseVolumes(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, root string, alloc corev1.ResourceList) (map[string]string, error) {
	var fsGroup *int64
	if pod.Spec.SecurityContext != nil {
		fsGroup = pod.Spec.SecurityContext.FSGroup
	}
	dirs := map[string]string{}
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		dir := filepath.Join(root, v.Name)
		unmountVolume(dir) // a sized emptyDir of an earlier attempt
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
		var files []volumeFile
		var err error
		switch {
		case v.EmptyDir != nil:
			// A directory under the work dir; medium Memory is not honoured. A sizeLimit is a
			// filesystem of that size: where the kubelet evicts a pod whose volume outgrows its
			// limit, the stand-in's writes fail for lack of space — either way the pod ends for
			// want of storage, which is what a test of it needs.
			if err := os.MkdirAll(dir, 0o777); err != nil {
				return nil, err
			}
			if l := v.EmptyDir.SizeLimit; l != nil && !l.IsZero() {
				if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d", l.Value())); err != nil {
					return nil, &unsupportedError{msg: fmt.Sprintf("volume %q: cannot mount a %s filesystem for its sizeLimit: %v", v.Name, l, err)}
				}
			}
			if err := os.Chmod(dir, 0o777); err != nil {
				return nil, err
			}
			if fsGroup != nil {
				if err := os.Chown(dir, -1, int(*fsGroup)); err != nil {
					return nil, err
				}
				if err := os.Chmod(dir, 0o777|os.ModeSetgid); err != nil {
					return nil, err
				}
			}
			dirs[v.Name] = dir
			continue
		case v.HostPath != nil:
			// The node's own directory, shared by the pods that name it.
			if v.HostPath.Type != nil && *v.HostPath.Type == corev1.HostPathDirectoryOrCreate {
				if err := os.MkdirAll(v.HostPath.Path, 0o755); err != nil {
					return nil, fmt.Errorf("MountVolume.SetUp failed for volume %q : %w", v.Name, err)
				}
			}
			if _, err := os.Stat(v.HostPath.Path); err != nil {
				return nil, fmt.Errorf("MountVolume.SetUp failed for volume %q : %w", v.Name, err)
			}
			dirs[v.Name] = v.HostPath.Path
			continue
		case v.ConfigMap != nil:
			files, err = configMapFiles(ctx, cs, pod.Namespace, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.Optional, modeOr(v.ConfigMap.DefaultMode, defaultFileMode))
		case v.Secret != nil:
			files, err = secretFiles(ctx, cs, pod.Namespace, v.Secret.SecretName, v.Secret.Items, v.Secret.Optional, modeOr(v.Secret.DefaultMode, defaultFileMode))
		case v.DownwardAPI != nil:
			files, err = downwardFiles(pod, v.DownwardAPI.Items, modeOr(v.DownwardAPI.DefaultMode, defaultFileMode), alloc)
		case v.Projected != nil:
			files, err = projectedFiles(ctx, cs, pod, v.Projected, alloc)
		default:
			return nil, &unsupportedError{msg: fmt.Sprintf("volume %q: the kubelet stand-in supports configMap, secret, downwardAPI, projected, emptyDir and hostPath volumes only", v.Name)}
		}
		if err != nil {
			return nil, fmt.Errorf("MountVolume.SetUp failed for volume %q : %w", v.Name, err)
		}
		if err := writeVolume(dir, files, fsGroup); err != nil {
			return nil, fmt.Errorf("MountVolume.SetUp failed for volume %q : %w", v.Name, err)
		}
		dirs[v.Name] = dir
	}
	return dirs, nil
}

func modeOr(m *int32, def int32) int32 {
	if m != nil {
		return *m
	}
	return def
}

func configMapFiles(ctx context.Context, cs kubernetes.Interface, ns, name string, items []corev1.KeyToPath, optional *bool, defMode int32) ([]volumeFile, error) {
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			if isTrue(optional) {
				return nil, nil
			}
			return nil, fmt.Errorf("configmap %q not found", name)
		}
		return nil, err
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return keyFiles("configmap", name, data, items, optional, defMode)
}

func secretFiles(ctx context.Context, cs kubernetes.Interface, ns, name string, items []corev1.KeyToPath, optional *bool, defMode int32) ([]volumeFile, error) {
	sec, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			if isTrue(optional) {
				return nil, nil
			}
			return nil, fmt.Errorf("secret %q not found", name)
		}
		return nil, err
	}
	return keyFiles("secret", name, sec.Data, items, optional, defMode)
}

// keyFiles projects keys to files: every key under its own name, or only the listed items at their paths.
func keyFiles(kind, name string, data map[string][]byte, items []corev1.KeyToPath, optional *bool, defMode int32) ([]volumeFile, error) {
	var files []volumeFile
	if len(items) == 0 {
		for _, k := range slices.Sorted(maps.Keys(data)) {
			files = append(files, volumeFile{path: k, data: data[k], mode: defMode})
		}
		return files, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if isTrue(optional) {
				continue
			}
			return nil, fmt.Errorf("%s %q references non-existent key: %s", kind, name, it.Key)
		}
		files = append(files, volumeFile{path: it.Path, data: v, mode: modeOr(it.Mode, defMode)})
	}
	return files, nil
}

func downwardFiles(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, defMode int32, alloc corev1.ResourceList) ([]volumeFile, error) {
	var files []volumeFile
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = fieldValue(pod, it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			v, err = resourceValue(pod, nil, it.ResourceFieldRef, alloc)
		default:
			err = fmt.Errorf("downward API item %s has no source", it.Path)
		}
		if err != nil {
			return nil, err
		}
		files = append(files, volumeFile{path: it.Path, data: []byte(v), mode: modeOr(it.Mode, defMode)})
	}
	return files, nil
}

func projectedFiles(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, p *corev1.ProjectedVolumeSource, alloc corev1.ResourceList) ([]volumeFile, error) {
	defMode := modeOr(p.DefaultMode, defaultFileMode)
	var files []volumeFile
	for _, src := range p.Sources {
		var more []volumeFile
		var err error
		switch {
		case src.ConfigMap != nil:
			more, err = configMapFiles(ctx, cs, pod.Namespace, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional, defMode)
		case src.Secret != nil:
			more, err = secretFiles(ctx, cs, pod.Namespace, src.Secret.Name, src.Secret.Items, src.Secret.Optional, defMode)
		case src.DownwardAPI != nil:
			more, err = downwardFiles(pod, src.DownwardAPI.Items, defMode, alloc)
		case src.ServiceAccountToken != nil:
			more, err = tokenFile(ctx, cs, pod, src.ServiceAccountToken, defMode)
		default:
			return nil, &unsupportedError{msg: "projected volume source other than configMap, secret, downwardAPI or serviceAccountToken: the kubelet stand-in does not support it"}
		}
		if err != nil {
			return nil, err
		}
		files = append(files, more...)
	}
	return files, nil
}

// tokenFile asks the apiserver for a token bound to the pod, as the kubelet does.
func tokenFile(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, src *corev1.ServiceAccountTokenProjection, mode int32) ([]volumeFile, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	exp := int64(tokenDefaultLifetime)
	if src.ExpirationSeconds != nil {
		exp = *src.ExpirationSeconds
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: &exp,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if src.Audience != "" {
		req.Spec.Audiences = []string{src.Audience}
	}
	tok, err := cs.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("requesting a token for service account %s/%s: %w", pod.Namespace, sa, err)
	}
	return []volumeFile{{path: src.Path, data: []byte(tok.Status.Token), mode: mode}}, nil
}

// writeVolume writes the files into a fresh dir; with an fsGroup, files and dirs belong to that
// group, files become group-readable and dirs set-group-ID, as the kubelet's volume ownership does.
func writeVolume(dir string, files []volumeFile, fsGroup *int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		if !filepath.IsLocal(f.path) {
			return fmt.Errorf("path %q leaves the volume", f.path)
		}
		p := filepath.Join(dir, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(f.mode) & os.ModePerm
		if fsGroup != nil {
			mode |= 0o040
		}
		if err := os.WriteFile(p, f.data, mode); err != nil {
			return err
		}
		if err := os.Chmod(p, mode); err != nil { // WriteFile's mode is subject to the umask
			return err
		}
	}
	if fsGroup == nil {
		return nil
	}
	return filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, -1, int(*fsGroup)); err != nil {
			return err
		}
		if fi.IsDir() {
			return os.Chmod(p, fi.Mode().Perm()|0o050|os.ModeSetgid)
		}
		return nil
	})
}

// unmountVolume unmounts the filesystem of a sized emptyDir at dir, if one is mounted there.
func unmountVolume(dir string) {
	_ = unix.Unmount(dir, unix.MNT_DETACH) // EINVAL: not a mount point
}
