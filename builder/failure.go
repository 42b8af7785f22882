package builder

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"go.podman.io/image/v5/docker"

	"github.com/mosb-dev/mosb/registry"
	"github.com/mosb-dev/mosb/registry/bounds"

	"github.com/mosb-dev/mosb/builder/buildpod"
)

// ClassifyError says why a build or push failed and whether trying again may help. Typed errors
// decide where they exist; buildah reports a failed RUN only as text.
func ClassifyError(err error) (reason string, retryable bool) {
	var remote *registry.RemoteError
	var unknownCA x509.UnknownAuthorityError
	var certInvalid x509.CertificateInvalidError
	var hostname x509.HostnameError
	var tlsVerify *tls.CertificateVerificationError
	var unauthorized docker.ErrUnauthorizedForCredentials
	var netErr net.Error
	untrusted := errors.As(err, &unknownCA) || errors.As(err, &certInvalid) || errors.As(err, &hostname) || errors.As(err, &tlsVerify)
	var storageFull *StorageFullError
	switch {
	case errors.As(err, &storageFull):
		// The same inputs in the same storage fail the same way.
		return buildpod.ReasonBuildStorageFull, false
	case errors.As(err, new(*bounds.UnresponsiveError)):
		return buildpod.ReasonRegistryUnresponsive, true
	case errors.Is(err, context.Canceled):
		return buildpod.ReasonInterrupted, true
	case untrusted:
		return buildpod.ReasonCertificateUntrusted, false
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		// net/http reports this as text only; a retry cannot change the registry's protocol.
		return buildpod.ReasonInsecureRegistryRequired, false
	case errors.Is(err, registry.ErrNotPermitted):
		return buildpod.ReasonRegistryBlocked, false
	case errors.As(err, &remote) && remote.Op == "push":
		// A refused push (credentials, a missing repository) fails the same way next time; an
		// unreachable or overloaded registry may be back.
		return buildpod.ReasonPushFailed, !(errors.Is(err, registry.ErrUnauthorized) || errors.Is(err, registry.ErrNotFound))
	case errors.As(err, &unauthorized):
		return buildpod.ReasonBaseImageUnavailable, false
	case isPullError(err):
		return buildpod.ReasonBaseImageUnavailable, errors.As(err, &netErr) || strings.Contains(err.Error(), "connection refused")
	default:
		return buildpod.ReasonBuildFailed, false
	}
}

// isPullError recognises containers/image's pull failures by their wording: buildah wraps them
// in plain errors.
func isPullError(err error) bool {
	msg := err.Error()
	for _, s := range []string{"initializing source", "pulling image", "reading manifest", "creating build container", "trying to pull", "choosing an image from manifest list"} {
		if strings.Contains(strings.ToLower(msg), s) {
			return true
		}
	}
	return false
}

// Describe is one line for a failure: the reason's meaning first, then the error.
func Describe(reason string, err error) string {
	hint := map[string]string{
		buildpod.ReasonPushFailed:               "pushing the image failed",
		buildpod.ReasonBaseImageUnavailable:     "the base image could not be pulled",
		buildpod.ReasonRegistryBlocked:          "the cluster's image policy refuses a registry",
		buildpod.ReasonBuildFailed:              "the Containerfile did not build",
		buildpod.ReasonBuildStorageFull:         "the build ran out of storage",
		buildpod.ReasonRegistryUnresponsive:     "a registry stopped answering",
		buildpod.ReasonInterrupted:              "the build was stopped",
		buildpod.ReasonCertificateUntrusted:     "a registry's TLS certificate is not trusted; add its CA to image.config.openshift.io/cluster spec.additionalTrustedCA (a ConfigMap in openshift-config, key host..port)",
		buildpod.ReasonInsecureRegistryRequired: "a registry answers plain HTTP; list it in image.config.openshift.io/cluster spec.registrySources.insecureRegistries if that is intended",
	}[reason]
	msg := CleanMessage(err)
	if reason == buildpod.ReasonRegistryUnresponsive {
		msg += "; check that the registry is up and reachable from where the build runs (and any proxy or load balancer in between); " +
			"if it is only slow, raise the bound: --registry-connect-timeout, --registry-response-timeout, --registry-stall-timeout " +
			"(mosb build, or the controller's flags for builds in the cluster)"
	}
	if hint == "" {
		return msg
	}
	return fmt.Sprintf("%s: %s", hint, msg)
}
