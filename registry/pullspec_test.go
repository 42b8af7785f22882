package registry

import (
	"errors"
	"strings"
	"testing"
)

const (
	hexA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	hexB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	dgA  = "sha256:" + hexA
	dgB  = "sha256:" + hexB
)

func TestValidateDigestPullspec(t *testing.T) {
	long := "quay.io/" + strings.Repeat("a", MaxPullspecLength-len("quay.io/")-len("@"+dgA)) + "@" + dgA
	tooLong := "quay.io/a" + long[len("quay.io/"):]
	tests := []struct {
		spec string
		rule PullspecRule // "" = valid
	}{
		{"quay.io/openshift/os@" + dgA, ""},
		{"quay.io/os@" + dgA, ""},
		{"registry.example.com:5000/a/b/c@" + dgA, ""},
		{"localhost:5000/os@" + dgA, ""},
		{"Registry.Example.COM/os@" + dgA, ""},
		{"image-registry.openshift-image-registry.svc:5000/mosb/os@" + dgA, ""},
		{"quay.io/a.b_c__d-e---f@" + dgA, ""},
		{"library/busybox@" + dgA, ""}, // "library" is the host: the grammar has no implicit docker.io
		{long, ""},
		{"", RuleEmpty},
		{tooLong, RuleTooLong},
		{"quay.io/openshift/os:latest", RuleNotByDigest},
		{"quay.io/openshift/os", RuleNotByDigest},
		{"quay.io/os:4.16@" + dgA, RuleTagAndDigest},
		{"quay.io/os@sha512:" + hexA + hexA, RuleDigestAlgorithm},
		{"quay.io/os@" + hexA, RuleDigestAlgorithm},
		{"quay.io/os@sha256:" + hexA[:63], RuleDigestLength},
		{"quay.io/os@sha256:" + hexA + "a", RuleDigestLength},
		{"quay.io/os@sha256:", RuleDigestLength},
		{"quay.io/os@sha256:" + strings.ToUpper(hexA), RuleDigestUppercase},
		{"quay.io/os@sha256:" + hexA[:63] + "g", RuleDigestNotHex},
		{"quay.io/os@@" + dgA, RuleBadPathComponent},
		{"busybox@" + dgA, RuleNoRegistryHost},
		{"quay.io@" + dgA, RuleNoRepository},
		{"localhost:5000@" + dgA, RuleNoRepository},
		{"-quay.io/os@" + dgA, RuleBadHost},
		{"quay_io/os@" + dgA, RuleBadHost},
		{"/os@" + dgA, RuleBadHost},
		{"quay.io:/os@" + dgA, RuleBadPort},
		{"quay.io:123456/os@" + dgA, RuleBadPort},
		{"quay.io:http/os@" + dgA, RuleBadPort},
		{"quay.io/OpenShift/os@" + dgA, RuleBadPathComponent},
		{"quay.io//os@" + dgA, RuleBadPathComponent},
		{"quay.io/os/@" + dgA, RuleBadPathComponent},
		{"quay.io/-os@" + dgA, RuleBadPathComponent},
		{"quay.io/os___x@" + dgA, RuleBadPathComponent},
		{"https://quay.io/os@" + dgA, RuleBadPort},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			err := ValidateDigestPullspec(tt.spec)
			checkRule(t, err, tt.rule)
			// The literal CEL rules of the CRD must agree on acceptance.
			if got := celAcceptsDigest(tt.spec); got != (tt.rule == "") {
				t.Errorf("CRD rules accept=%v, but ValidateDigestPullspec rule=%q", got, tt.rule)
			}
		})
	}
}

func TestValidateTagPushspec(t *testing.T) {
	tests := []struct {
		spec string
		rule PullspecRule
	}{
		{"quay.io/openshift/os:latest", ""},
		{"registry.example.com:5000/os/worker:4.16.0-rc.1", ""},
		{"image-registry.openshift-image-registry.svc:5000/mosb/os:worker", ""},
		{"localhost:5000/os:_x", ""},
		{"quay.io/os:" + strings.Repeat("t", 128), ""},
		{"", RuleEmpty},
		{"quay.io/os:" + strings.Repeat("t", 440), RuleTooLong},
		{"quay.io/os@" + dgA, RuleNotByTag},
		{"quay.io/os", RuleNoTag},
		{"localhost:5000/os", RuleNoTag},
		{"quay.io/os:", RuleBadTag},
		{"quay.io/os:.hidden", RuleBadTag},
		{"quay.io/os:-x", RuleBadTag},
		{"quay.io/os:a+b", RuleBadTag},
		{"quay.io/os:" + strings.Repeat("t", 129), RuleBadTag},
		{"os:latest", RuleNoRegistryHost},
		{"quay.io:latest", RuleNoRepository},
		{"quay.io/OS:latest", RuleBadPathComponent},
		{"quay.io/os:a:b", RuleBadPathComponent},
		{"quay.io:99999999/os:latest", RuleBadPort},
		{"-bad/os:latest", RuleBadHost},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			checkRule(t, ValidateTagPushspec(tt.spec), tt.rule)
			if got := celAcceptsTag(tt.spec); got != (tt.rule == "") {
				t.Errorf("CRD rules accept=%v, but ValidateTagPushspec rule=%q", got, tt.rule)
			}
		})
	}
}

func checkRule(t *testing.T, err error, want PullspecRule) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("want valid, got %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("want rule %s, got valid", want)
	}
	var pe *PullspecError
	if !errors.As(err, &pe) {
		t.Fatalf("want *PullspecError, got %T %v", err, err)
	}
	if pe.Rule != want || !errors.Is(err, want) {
		t.Fatalf("want rule %s, got %s: %v", want, pe.Rule, err)
	}
	if pe.Detail == "" || !strings.Contains(err.Error(), "invalid image reference") {
		t.Fatalf("message is not actionable: %q", err.Error())
	}
}

func TestParseAndHelpers(t *testing.T) {
	ref, err := ParseDigestPullspec("registry.example.com:5000/ns/os@" + dgA)
	if err != nil {
		t.Fatal(err)
	}
	want := Reference{Host: "registry.example.com:5000", Repository: "ns/os", Digest: dgA}
	if ref != want {
		t.Fatalf("got %+v, want %+v", ref, want)
	}
	if ref.Name() != "registry.example.com:5000/ns/os" || !ref.IsDigest() {
		t.Fatalf("Name/IsDigest wrong: %s %v", ref.Name(), ref.IsDigest())
	}
	tag, err := ParseTagPushspec("registry.example.com:5000/ns/os:v1")
	if err != nil {
		t.Fatal(err)
	}
	if tag.Tag != "v1" || tag.Host != "registry.example.com:5000" || tag.IsDigest() {
		t.Fatalf("got %+v", tag)
	}
	if got := tag.WithDigest(dgB).String(); got != "registry.example.com:5000/ns/os@"+dgB {
		t.Fatalf("Reference.WithDigest = %s", got)
	}

	for _, tt := range []struct{ in, digest, want string }{
		{"quay.io/os:latest", dgA, "quay.io/os@" + dgA},
		{"localhost:5000/ns/os:v1", "@" + dgA, "localhost:5000/ns/os@" + dgA},
		{"localhost:5000/ns/os", dgA, "localhost:5000/ns/os@" + dgA},
		{"quay.io/os@" + dgB, dgA, "quay.io/os@" + dgA},
	} {
		got := WithDigest(tt.in, tt.digest)
		if got != tt.want {
			t.Errorf("WithDigest(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if err := ValidateDigestPullspec(got); err != nil {
			t.Errorf("WithDigest result invalid: %v", err)
		}
	}

	for _, tt := range []struct{ spec, host string }{
		{"quay.io/os@" + dgA, "quay.io"},
		{"localhost:5000/os:latest", "localhost:5000"},
	} {
		h, err := RegistryHost(tt.spec)
		if err != nil || h != tt.host {
			t.Errorf("RegistryHost(%q) = %q, %v; want %q", tt.spec, h, err, tt.host)
		}
	}
	if _, err := RegistryHost("nohost"); err == nil {
		t.Error("RegistryHost of an invalid spec must fail")
	}
}

func TestPullspecErrorMessagesAreShortAndNameTheSpec(t *testing.T) {
	err := ValidateDigestPullspec(strings.Repeat("x", 1000))
	if err == nil || len(err.Error()) > 300 {
		t.Fatalf("message too long or missing: %v", err)
	}
	err = ValidateDigestPullspec("quay.io/os:latest")
	if !strings.Contains(err.Error(), `"quay.io/os:latest"`) || !strings.Contains(err.Error(), "digest") {
		t.Fatalf("message does not name the spec and the fix: %v", err)
	}
}
