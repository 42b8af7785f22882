package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	configv1 "github.com/openshift/api/config/v1"
	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/mosb-dev/mosb/api/convert"
	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
	"github.com/mosb-dev/mosb/api/validation"
	"github.com/mosb-dev/mosb/pipeline"
	"github.com/mosb-dev/mosb/registry"
)

// fileInputs are the flags `render` and `build` share: the same files a cluster would hold.
type fileInputs struct {
	machineOSConfig string
	machineConfig   string
	clusterConfig   string
	authFile        string
	pullSecret      string
	pushSecret      string
	arches          []string
	namespace       string
	// asV1 is the MachineOSConfig as given, when it was v1 (OpenShift 4.19 and later): mosb plans
	// from its v1alpha1 form and prints the result in the version it was given.
	asV1 *mcfgv1.MachineOSConfig
	// decoder reads the files (nil: a new one). Making one compiles the CRD's CEL rules: a
	// caller that loads many inputs (the fuzz targets) makes it once.
	decoder *decoder
}

func newScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, mosbv1.AddToScheme, configv1.Install, mcfgv1.Install} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// invalid marks an error as bad input (exit code 2) and gives it its reason, one of docs/reasons.md.
func invalid(reason, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", errInvalidInput, reason, fmt.Sprintf(format, args...))
}

// decoder reads the files mosb is given into typed objects. A MachineOSConfig is first checked
// with the CRD a cluster serves for its version, so that mosb refuses what the API server would
// refuse, with the same rules and messages.
type decoder struct {
	codecs serializer.CodecFactory
	// crds check the kinds mosb reads as their CRDs do: mosb's v1alpha1 MachineOSConfig, and
	// OpenShift's v1 one (config/openshift).
	crds map[schema.GroupVersionKind]crdCheck
}

type crdCheck struct {
	validator *validation.Validator
	// whose says whose CRD it is, in a refusal.
	whose string
}

func newDecoder() (*decoder, error) {
	scheme, err := newScheme()
	if err != nil {
		return nil, err
	}
	d := &decoder{codecs: serializer.NewCodecFactory(scheme, serializer.EnableStrict), crds: map[schema.GroupVersionKind]crdCheck{}}
	for _, c := range []struct {
		make  func() (*validation.Validator, error)
		whose string
	}{{validation.MachineOSConfig, "its CRD"}, {validation.MachineOSConfigV1, "OpenShift's v1 CRD"}} {
		v, err := c.make()
		if err != nil {
			return nil, err
		}
		d.crds[v.GroupVersionKind()] = crdCheck{validator: v, whose: c.whose}
	}
	return d, nil
}

// decodeFile decodes every YAML or JSON document of a file into typed objects; reason is what a
// refusal of this file carries.
func (d *decoder) decodeFile(path, reason string) ([]runtime.Object, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, invalid(reason, "%v", err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	var objs []runtime.Object
	for i := 1; ; i++ {
		var doc runtime.RawExtension
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, invalid(reason, "%s: document %d is not YAML or JSON: %s", path, i, decodeProblem(err))
		}
		if len(bytes.TrimSpace(doc.Raw)) == 0 || string(bytes.TrimSpace(doc.Raw)) == "null" {
			continue
		}
		if err := d.validate(path, i, doc.Raw); err != nil {
			return nil, err
		}
		obj, _, err := d.codecs.UniversalDeserializer().Decode(doc.Raw, nil, nil)
		if err != nil {
			return nil, invalid(reason, "%s: document %d: %s (mosb reads MachineOSConfig, MachineConfig, Image, Proxy, ImageDigestMirrorSet, ImageTagMirrorSet, ImageContentPolicy, ConfigMap and Secret objects)", path, i, decodeProblem(err))
		}
		objs = append(objs, obj)
	}
}

// validate refuses a document the API server would refuse, when it is of a kind and version it
// has the CRD of. Anything else (not an object, another kind) is left to the typed decoder to say.
func (d *decoder) validate(path string, i int, doc []byte) error {
	var obj map[string]any
	if err := utiljson.Unmarshal(doc, &obj); err != nil {
		return nil
	}
	u := unstructured.Unstructured{Object: obj}
	check, ok := d.crds[u.GroupVersionKind()]
	if !ok {
		return nil
	}
	// No network and a bounded CEL cost: nothing here needs a deadline.
	errs := check.validator.ValidateCreate(context.Background(), obj)
	if len(errs) == 0 {
		return nil
	}
	return invalid(pipeline.ReasonInvalidMachineOSConfig, "%s: document %d: MachineOSConfig %q (%s) breaks the rules of %s (the API server would refuse it too): %s",
		path, i, u.GetName(), u.GetAPIVersion(), check.whose, validation.Describe(errs))
}

// fromV1 is a v1 MachineOSConfig's v1alpha1 form. What OpenShift's v1 CRD refuses (a name that is
// not its pool's, more than four containerFile entries…) was refused before, by that CRD.
func fromV1(path string, o *mcfgv1.MachineOSConfig) (*mosbv1.MachineOSConfig, error) {
	m, err := convert.MachineOSConfigFromV1(o)
	if err != nil {
		return nil, invalid(pipeline.ReasonInvalidMachineOSConfig, "%s: MachineOSConfig %q (v1): %v", path, o.Name, err)
	}
	return m, nil
}

// load reads the files into pipeline inputs, as the controller would read them from the cluster.
func (f *fileInputs) load(credentialsRequired bool) (pipeline.Inputs, error) {
	in := pipeline.Inputs{Namespace: f.namespace, Arches: f.arches, DefaultArch: hostArch(), BuilderVersion: builderVersion()}
	d := f.decoder
	if d == nil {
		var err error
		if d, err = newDecoder(); err != nil {
			return in, err
		}
	}
	if f.machineOSConfig == "" {
		return in, invalid(pipeline.ReasonInvalidMachineOSConfig, "-f machineosconfig.yaml is required")
	}
	objs, err := d.decodeFile(f.machineOSConfig, pipeline.ReasonInvalidMachineOSConfig)
	if err != nil {
		return in, err
	}
	if len(objs) != 1 {
		return in, invalid(pipeline.ReasonInvalidMachineOSConfig, "%s: want exactly one MachineOSConfig, found %d documents", f.machineOSConfig, len(objs))
	}
	var mosc *mosbv1.MachineOSConfig
	switch o := objs[0].(type) {
	case *mosbv1.MachineOSConfig:
		mosc = o
	case *mcfgv1.MachineOSConfig:
		if mosc, err = fromV1(f.machineOSConfig, o); err != nil {
			return in, err
		}
		f.asV1 = o
	default:
		return in, invalid(pipeline.ReasonInvalidMachineOSConfig, "%s: want a MachineOSConfig (machineconfiguration.openshift.io/v1 or v1alpha1), found %T", f.machineOSConfig, objs[0])
	}
	in.MachineOSConfig = mosc

	if f.machineConfig != "" {
		objs, err := d.decodeFile(f.machineConfig, pipeline.ReasonInvalidMachineConfig)
		if err != nil {
			return in, err
		}
		mc, ok := single[*mcfgv1.MachineConfig](objs)
		if !ok {
			return in, invalid(pipeline.ReasonInvalidMachineConfig, "%s: want exactly one MachineConfig (machineconfiguration.openshift.io/v1)", f.machineConfig)
		}
		in.RenderedMachineConfig = mc
	}
	if f.clusterConfig != "" {
		if err := d.loadClusterConfig(f.clusterConfig, &in); err != nil {
			return in, err
		}
	}
	if err := f.loadCredentials(d.codecs, &in, credentialsRequired); err != nil {
		return in, err
	}
	return in, nil
}

func single[T runtime.Object](objs []runtime.Object) (T, bool) {
	var zero T
	if len(objs) != 1 {
		return zero, false
	}
	t, ok := objs[0].(T)
	return t, ok
}

// loadClusterConfig reads every *.yaml, *.yml and *.json file of dir. Objects mosb does not use
// are an error, not skipped: a misplaced file should not silently change nothing.
func (d *decoder) loadClusterConfig(dir string, in *pipeline.Inputs) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return invalid(pipeline.ReasonInvalidClusterConfig, "--cluster-config: %v", err)
	}
	var configMaps []*corev1.ConfigMap
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.IsDir() || (ext != ".yaml" && ext != ".yml" && ext != ".json") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		objs, err := d.decodeFile(path, pipeline.ReasonInvalidClusterConfig)
		if err != nil {
			return err
		}
		for _, obj := range objs {
			switch o := obj.(type) {
			case *configv1.Image:
				if o.Name != "cluster" {
					return invalid(pipeline.ReasonInvalidClusterConfig, "%s: Image %q: the cluster image configuration must be named cluster", path, o.Name)
				}
				if in.Cluster.Image != nil {
					return invalid(pipeline.ReasonInvalidClusterConfig, "%s: a second Image cluster object", path)
				}
				in.Cluster.Image = o
			case *configv1.Proxy:
				if o.Name != registry.ProxyName {
					return invalid(pipeline.ReasonInvalidClusterConfig, "%s: Proxy %q: the cluster proxy must be named %s", path, o.Name, registry.ProxyName)
				}
				if in.Cluster.Proxy != nil {
					return invalid(pipeline.ReasonInvalidClusterConfig, "%s: a second Proxy cluster object", path)
				}
				in.Cluster.Proxy = o
			case *configv1.ImageDigestMirrorSet:
				in.Cluster.ImageDigestMirrorSets = append(in.Cluster.ImageDigestMirrorSets, *o)
			case *configv1.ImageTagMirrorSet:
				in.Cluster.ImageTagMirrorSets = append(in.Cluster.ImageTagMirrorSets, *o)
			case *configv1.ImageContentPolicy:
				in.Cluster.ImageContentPolicies = append(in.Cluster.ImageContentPolicies, *o)
			case *corev1.ConfigMap:
				configMaps = append(configMaps, o)
			default:
				return invalid(pipeline.ReasonInvalidClusterConfig, "%s: %T is not cluster registry configuration (Image, Proxy, ImageDigestMirrorSet, ImageTagMirrorSet, ImageContentPolicy, ConfigMap)", path, obj)
			}
		}
	}
	sort.Slice(configMaps, func(i, j int) bool { return configMaps[i].Name < configMaps[j].Name })
	var caName string
	if in.Cluster.Image != nil {
		caName = in.Cluster.Image.Spec.AdditionalTrustedCA.Name
	}
	var proxyCAName string
	if in.Cluster.Proxy != nil {
		proxyCAName = in.Cluster.Proxy.Spec.TrustedCA.Name
	}
	for _, cm := range configMaps {
		known := false
		if cm.Name == pipeline.OSImageURLConfigMap {
			in.OSImageURL, known = cm.Data, true
		}
		// One ConfigMap may be both (user-ca-bundle often is).
		if caName != "" && cm.Name == caName {
			in.Cluster.AdditionalTrustedCA, known = cm, true
		}
		if proxyCAName != "" && cm.Name == proxyCAName {
			in.Cluster.ProxyTrustedCA, known = cm, true
		}
		if !known {
			return invalid(pipeline.ReasonInvalidClusterConfig, "ConfigMap %q in --cluster-config is neither %s nor the additionalTrustedCA the Image cluster names (%q) nor the trustedCA the Proxy cluster names (%q)",
				cm.Name, pipeline.OSImageURLConfigMap, caName, proxyCAName)
		}
	}
	if caName != "" && in.Cluster.AdditionalTrustedCA == nil {
		return invalid(pipeline.ReasonInvalidClusterConfig, "Image cluster names additionalTrustedCA ConfigMap %q but --cluster-config has no ConfigMap of that name", caName)
	}
	if proxyCAName != "" && in.Cluster.ProxyTrustedCA == nil {
		return invalid(pipeline.ReasonInvalidClusterConfig, "Proxy cluster names trustedCA ConfigMap %q but --cluster-config has no ConfigMap of that name", proxyCAName)
	}
	return nil
}

// loadCredentials turns --authfile or --pull-secret/--push-secret into the Secrets the
// MachineOSConfig names, as if they were in the build namespace.
func (f *fileInputs) loadCredentials(codecs serializer.CodecFactory, in *pipeline.Inputs, required bool) error {
	bi := in.MachineOSConfig.Spec.BuildInputs
	pull, push := f.pullSecret, f.pushSecret
	if f.authFile != "" {
		if pull != "" || push != "" {
			return invalid(pipeline.ReasonInvalidFlag, "--authfile is both the pull and the push credentials; do not combine it with --pull-secret/--push-secret")
		}
		pull, push = f.authFile, f.authFile
	}
	pullFlag, pushFlag := "--pull-secret", "--push-secret"
	if f.authFile != "" {
		pullFlag, pushFlag = "--authfile", "--authfile"
	}
	var err error
	if in.PullSecret, err = secretFromFile(codecs, pullFlag, pull, bi.BaseImagePullSecret.Name, f.namespace); err != nil {
		return err
	}
	if in.PushSecret, err = secretFromFile(codecs, pushFlag, push, bi.RenderedImagePushSecret.Name, f.namespace); err != nil {
		return err
	}
	if required && (in.PullSecret == nil || in.PushSecret == nil) {
		return invalid(pipeline.ReasonSecretNotFound, "credentials are required: pass --authfile F, or --pull-secret F and --push-secret F (a Secret manifest or a containers auth file)")
	}
	in.CredentialsOptional = !required
	return nil
}

// quotedInput is what decoders quote of their input in their messages: 'text' (Kubernetes' missing
// kind and version) or `text` (YAML's type errors).
var quotedInput = regexp.MustCompile("'[^']*'|`[^`]*`")

// decodeProblem says what is wrong with a document without quoting it: the files mosb reads may
// hold credentials (an auth file passed where a manifest belongs), and Kubernetes' decoder puts the
// whole document in some of its errors.
func decodeProblem(err error) string {
	switch {
	case runtime.IsMissingKind(err):
		return "it has no kind: every document needs apiVersion and kind (is it an auth file or a plain config where a manifest belongs?)"
	case runtime.IsMissingVersion(err):
		return "it has no apiVersion: every document needs apiVersion and kind"
	}
	return quotedInput.ReplaceAllString(err.Error(), "'…'")
}

// secretFromFile reads a Secret manifest, or a containers/docker auth file which it wraps in a
// kubernetes.io/dockerconfigjson Secret, given to flag. Errors never quote the file: it holds
// credentials. They carry the reasons the same content gets as a Secret in the cluster.
func secretFromFile(codecs serializer.CodecFactory, flag, path, name, ns string) (*corev1.Secret, error) {
	if path == "" {
		return nil, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, invalid(pipeline.ReasonSecretNotFound, "%s %s: %v", flag, path, err)
	}
	if obj, _, err := codecs.UniversalDeserializer().Decode(raw, nil, nil); err == nil {
		s, ok := obj.(*corev1.Secret)
		if !ok {
			kind := obj.GetObjectKind().GroupVersionKind().Kind
			if kind == "" {
				kind = fmt.Sprintf("%T", obj)
			}
			return nil, invalid(pipeline.ReasonInvalidSecret, "%s %s: want a Secret manifest or a containers auth file, found a %s", flag, path, kind)
		}
		return s, nil
	}
	auths, err := registry.ParseAuthFile(path, raw)
	if err != nil {
		return nil, invalid(pipeline.ReasonInvalidSecret, "%s: %v", flag, err)
	}
	// Canonical {"auths":…} whichever of the two auth file forms the file had.
	if raw, err = auths.AuthFile(); err != nil {
		return nil, err
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: raw},
	}, nil
}
