package registry

import (
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// celMatchesRE finds the string literal of each matches('…') call in a CEL rule.
var celMatchesRE = regexp.MustCompile(`matches\('((?:[^'\\]|\\.)*)'\)`)

// unescapeCEL undoes the escaping of a single-quoted CEL string literal (the YAML layer was
// already undone by the YAML parser).
func unescapeCEL(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		i++
		if i == len(s) {
			return "", fmt.Errorf("dangling backslash in %q", s)
		}
		switch s[i] {
		case '\\', '\'', '"':
			b.WriteByte(s[i])
		default:
			return "", fmt.Errorf("unexpected CEL escape \\%c in %q", s[i], s)
		}
	}
	return b.String(), nil
}

func loadMOSCProperties(t *testing.T) map[string]apiextensionsv1.JSONSchemaProps {
	t.Helper()
	raw, err := os.ReadFile("../config/crd/machineconfiguration.openshift.io_machineosconfigs.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		t.Fatal(err)
	}
	if len(crd.Spec.Versions) == 0 || crd.Spec.Versions[0].Schema == nil {
		t.Fatal("CRD has no schema")
	}
	root := crd.Spec.Versions[0].Schema.OpenAPIV3Schema
	spec := root.Properties["spec"].Properties["buildInputs"].Properties
	status := root.Properties["status"].Properties
	return map[string]apiextensionsv1.JSONSchemaProps{
		"spec.buildInputs.baseOSImagePullspec":           spec["baseOSImagePullspec"],
		"spec.buildInputs.baseOSExtensionsImagePullspec": spec["baseOSExtensionsImagePullspec"],
		"status.currentImagePullspec":                    status["currentImagePullspec"],
		"spec.buildInputs.renderedImagePushspec":         spec["renderedImagePushspec"],
	}
}

// TestCRDRegexesMatchPullspecGrammar keeps the CRD's CEL and this package from drifting apart:
// the regexes in the generated CRD must be exactly ours, and the length limits the same.
func TestCRDRegexesMatchPullspecGrammar(t *testing.T) {
	wantDigest := []string{"^" + DigestPattern + "$", "^" + NamePattern + "$"}
	wantTag := []string{"^" + NamePattern + "$", "^" + TaggedShapePattern + "$"}
	sort.Strings(wantDigest)
	sort.Strings(wantTag)
	for field, props := range loadMOSCProperties(t) {
		t.Run(field, func(t *testing.T) {
			if props.MaxLength == nil || *props.MaxLength != MaxPullspecLength || props.MinLength == nil || *props.MinLength != 1 {
				t.Errorf("length limits differ: min %v max %v, want 1..%d", props.MinLength, props.MaxLength, MaxPullspecLength)
			}
			seen := map[string]bool{}
			for _, v := range props.XValidations {
				for _, m := range celMatchesRE.FindAllStringSubmatch(v.Rule, -1) {
					re, err := unescapeCEL(m[1])
					if err != nil {
						t.Fatal(err)
					}
					seen[re] = true
				}
			}
			got := slices.Sorted(maps.Keys(seen))
			want := wantDigest
			if strings.HasSuffix(field, "Pushspec") {
				want = wantTag
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("CRD regexes differ from the package's grammar\n got: %q\nwant: %q", got, want)
			}
		})
	}
}

var (
	celDigestRE = regexp.MustCompile("^" + DigestPattern + "$")
	celNameRE   = regexp.MustCompile("^" + NamePattern + "$")
	celShapeRE  = regexp.MustCompile("^" + TaggedShapePattern + "$")
)

// celAcceptsDigest evaluates the ImageDigestFormat CEL rules literally (contains, lastIndexOf,
// substring, matches) with the package's regex constants, as the API server would.
func celAcceptsDigest(s string) bool {
	n := utf8.RuneCountInString(s)
	if n < 1 || n > MaxPullspecLength || !strings.Contains(s, "@") {
		return false
	}
	at := strings.LastIndex(s, "@")
	return celDigestRE.MatchString(s[at:]) && celNameRE.MatchString(s[:at])
}

// celAcceptsTag evaluates the ImageTagPushspec CEL rules literally.
func celAcceptsTag(s string) bool {
	n := utf8.RuneCountInString(s)
	if n < 1 || n > MaxPullspecLength || strings.Contains(s, "@") {
		return false
	}
	if !celShapeRE.MatchString(s) {
		return false
	}
	return celNameRE.MatchString(s[:strings.LastIndex(s, ":")])
}
