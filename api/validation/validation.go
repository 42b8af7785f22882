// Package validation checks a custom resource against its CRD in-process, in the steps the API
// server takes when the object is created: unknown fields (as kubectl's default strict field
// validation refuses them), structural defaults, metadata, the OpenAPI schema, list types and the
// CEL rules. It runs the apiextensions-apiserver's own validators over the CRD's own schema, so
// mosb's CLI refuses exactly what the cluster refuses, with no second copy of the rules to drift.
package validation

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apihelpers"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	structurallisttype "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	schemaobjectmeta "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/objectmeta"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	metavalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"

	"github.com/mosb-dev/mosb/config/crd"
	"github.com/mosb-dev/mosb/config/openshift"
)

// Validator checks objects of one version of one CRD.
type Validator struct {
	gvk        schema.GroupVersionKind
	namespaced bool
	hasStatus  bool
	structural *structuralschema.Structural
	schema     apiservervalidation.SchemaValidator
	cel        *cel.Validator
}

// New prepares the validation of version of crd, as the API server does when it starts serving it.
func New(crd *apiextensionsv1.CustomResourceDefinition, version string) (*Validator, error) {
	var served *apiextensionsv1.CustomResourceDefinitionVersion
	for i := range crd.Spec.Versions {
		if crd.Spec.Versions[i].Name == version && crd.Spec.Versions[i].Served {
			served = &crd.Spec.Versions[i]
		}
	}
	if served == nil {
		return nil, fmt.Errorf("CRD %s does not serve version %q", crd.Name, version)
	}
	v1Validation, err := apihelpers.GetSchemaForVersion(crd, version)
	if err != nil || v1Validation == nil || v1Validation.OpenAPIV3Schema == nil {
		return nil, fmt.Errorf("CRD %s has no schema for version %s: %v", crd.Name, version, err)
	}
	internal := &apiextensions.CustomResourceValidation{}
	if err := apiextensionsv1.Convert_v1_CustomResourceValidation_To_apiextensions_CustomResourceValidation(v1Validation, internal, nil); err != nil {
		return nil, fmt.Errorf("CRD %s version %s: %w", crd.Name, version, err)
	}
	structural, err := structuralschema.NewStructural(internal.OpenAPIV3Schema)
	if err != nil {
		return nil, fmt.Errorf("CRD %s version %s: the schema is not structural: %w", crd.Name, version, err)
	}
	if err := structuraldefaulting.PruneDefaults(structural); err != nil {
		return nil, fmt.Errorf("CRD %s version %s: %w", crd.Name, version, err)
	}
	schemaValidator, _, err := apiservervalidation.NewSchemaValidator(internal.OpenAPIV3Schema)
	if err != nil {
		return nil, fmt.Errorf("CRD %s version %s: %w", crd.Name, version, err)
	}
	subresources, err := apihelpers.GetSubresourcesForVersion(crd, version)
	if err != nil {
		return nil, fmt.Errorf("CRD %s version %s: %w", crd.Name, version, err)
	}
	return &Validator{
		gvk:        schema.GroupVersionKind{Group: crd.Spec.Group, Version: version, Kind: crd.Spec.Names.Kind},
		namespaced: crd.Spec.Scope == apiextensionsv1.NamespaceScoped,
		hasStatus:  subresources != nil && subresources.Status != nil,
		structural: structural,
		schema:     schemaValidator,
		cel:        cel.NewValidator(structural, true, celconfig.PerCallLimit),
	}, nil
}

// MachineOSConfig is the validator of mosb's v1alpha1 MachineOSConfig CRD, the one deploy/ installs.
func MachineOSConfig() (*Validator, error) {
	c, err := crd.MachineOSConfig()
	if err != nil {
		return nil, err
	}
	return New(c, "v1alpha1")
}

// MachineOSConfigV1 is the validator of OpenShift's v1 MachineOSConfig CRD (config/openshift), the
// one OpenShift 4.19 and later serve.
func MachineOSConfigV1() (*Validator, error) {
	c, err := openshift.MachineOSConfig()
	if err != nil {
		return nil, err
	}
	return New(c, "v1")
}

// GroupVersionKind is what the validator checks.
func (v *Validator) GroupVersionKind() schema.GroupVersionKind { return v.gvk }

// ValidateCreate says what the API server would refuse in obj (JSON-shaped: maps, slices, strings,
// int64, float64, bool) if it were created. obj is not changed. Metadata only the server sets
// (resourceVersion, uid, creationTimestamp, generation, managedFields, deletion) is ignored, so
// that what `kubectl get -o yaml` prints validates as the object it describes; the status is
// dropped when the CRD has a status subresource, as the server does.
func (v *Validator) ValidateCreate(ctx context.Context, obj map[string]any) field.ErrorList {
	u := &unstructured.Unstructured{Object: runtime.DeepCopyJSON(obj)}
	if errs := v.validateTypeMeta(u); len(errs) > 0 {
		return errs
	}
	var errs field.ErrorList
	if meta, ok := u.Object["metadata"]; ok {
		if _, isMap := meta.(map[string]any); !isMap {
			return field.ErrorList{field.Invalid(field.NewPath("metadata"), nil, "must be an object")}
		}
	}
	// The server keeps only ObjectMeta's fields of metadata; strict field validation refuses others.
	_, _, unknownMeta, err := schemaobjectmeta.GetObjectMetaWithOptions(u.Object, schemaobjectmeta.ObjectMetaOptions{ReturnUnknownFieldPaths: true})
	if err != nil {
		return field.ErrorList{field.Invalid(field.NewPath("metadata"), nil, err.Error())}
	}
	unknown := append(unknownMeta, structuralpruning.PruneWithOptions(u.Object, v.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})...)
	sort.Strings(unknown)
	for _, p := range unknown {
		errs = append(errs, field.Forbidden(pathOf(p), "unknown field: the CRD has no such field"))
	}
	if len(errs) > 0 {
		return errs
	}
	structuraldefaulting.PruneNonNullableNullsWithoutDefaults(u.Object, v.structural)
	structuraldefaulting.Default(u.Object, v.structural)
	if v.hasStatus {
		delete(u.Object, "status")
	}
	if !v.namespaced {
		u.SetNamespace("")
	}
	u.SetResourceVersion("")
	u.SetUID("")
	u.SetCreationTimestamp(metav1.Time{})
	u.SetManagedFields(nil)
	u.SetDeletionTimestamp(nil)
	u.SetDeletionGracePeriodSeconds(nil)
	u.SetGeneration(1)

	errs = append(errs, metavalidation.ValidateObjectMetaAccessor(u, v.namespaced, metavalidation.NameIsDNSSubdomain, field.NewPath("metadata"))...)
	errs = append(errs, apiservervalidation.ValidateCustomResource(nil, u.UnstructuredContent(), v.schema)...)
	errs = append(errs, schemaobjectmeta.Validate(nil, u.Object, v.structural, false)...)
	errs = append(errs, structurallisttype.ValidateListSetsAndMaps(nil, v.structural, u.Object)...)
	// As the server: CEL rules run only over an object whose shape is right.
	if blocking(errs) {
		errs = append(errs, field.Invalid(nil, nil, "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation"))
		return errs
	}
	celErrs, _ := v.cel.Validate(ctx, nil, v.structural, u.Object, nil, celconfig.RuntimeCELCostBudget)
	return append(errs, celErrs...)
}

func (v *Validator) validateTypeMeta(u *unstructured.Unstructured) field.ErrorList {
	var errs field.ErrorList
	if u.GetKind() != v.gvk.Kind {
		errs = append(errs, field.Invalid(field.NewPath("kind"), nil, "must be "+v.gvk.Kind))
	}
	if want := v.gvk.GroupVersion().String(); u.GetAPIVersion() != want {
		errs = append(errs, field.Invalid(field.NewPath("apiVersion"), nil, "must be "+want))
	}
	return errs
}

func blocking(errs field.ErrorList) bool {
	for _, e := range errs {
		switch e.Type {
		case field.ErrorTypeNotSupported, field.ErrorTypeRequired, field.ErrorTypeTooLong, field.ErrorTypeTooMany, field.ErrorTypeTypeInvalid:
			return true
		}
	}
	return false
}

// pathOf turns pruning's "spec.a[0].b" into a field path.
func pathOf(p string) *field.Path {
	parts := strings.Split(p, ".")
	path := field.NewPath(parts[0])
	for _, part := range parts[1:] {
		path = path.Child(part)
	}
	return path
}

// Describe lists errs one per line as field, what is wrong and the rule's message, without the
// value: a field may hold a Containerfile or a credential, and an error is printed to CI logs.
func Describe(errs field.ErrorList) string {
	lines := make([]string, 0, len(errs))
	for _, e := range errs {
		if e.Field == "" || e.Field == "<nil>" {
			lines = append(lines, e.Detail) // about the object as a whole
			continue
		}
		line := e.Field + ": " + e.Type.String()
		if e.Detail != "" {
			line += ": " + e.Detail
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "; ")
}
