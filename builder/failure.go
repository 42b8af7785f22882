package builder

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"

	"go.podman.io/image/v5/docker"

	"github.com/mosb-dev/mosb/registry"
)

// Failure reasons a build reports. The controller's conditions use them as they are.
const (
	FailureBuildFailed          = "BuildFailed"
	FailurePushFailed           = "PushFailed"
	FailureBaseImageUnavailable = "BaseImageUnavailable"
	FailureRegistryBlocked      = "RegistryBlocked"
	FailureInterrupted          = "Interrupted"
	FailureInvalidRequest       = "InvalidRequest"
	// FailureCertificateUntrusted: a registry's TLS certificate is not trusted (pull or push alike:
	// the fix is the same, a CA in the Image config's additionalTrustedCA).
	FailureCertificateUntrusted = "RegistryCertificateUntrusted"
	// FailureInsecureRegistryRequired: a registry answers plain HTTP but is not listed as insecure.
	FailureInsecureRegistryRequired = "InsecureRegistryRequired"
)

// WorkerFailure is what `mosb worker` writes to its termination message when it fails: without
// it kubelet would keep only the log tail, and the controller could not tell a refused push from
// a registry that was briefly down.
type WorkerFailure struct {
	Reason string `json:"reason"`
	// Retryable says another attempt may succeed with the same inputs.
	Retryable bool `json:"retryable"`
	// Message is the error and the end of the build log; it never holds credentials.
	Message string `json:"message"`
}

type failureDoc struct {
	Failure *WorkerFailure `json:"failure"`
}

// Marshal encodes the failure as a termination message, cutting the message's start so the
// whole fits in what kubelet keeps.
func (f WorkerFailure) Marshal() ([]byte, error) {
	for {
		b, err := json.Marshal(failureDoc{&f})
		if err != nil {
			return nil, err
		}
		if len(b) <= maxResultSize || len(f.Message) == 0 {
			return b, nil
		}
		cut := len(b) - maxResultSize + 3
		if cut > len(f.Message) {
			cut = len(f.Message)
		}
		f.Message = "…" + f.Message[cut:]
	}
}

// ParseWorkerFailure reads a failure from a termination message.
func ParseWorkerFailure(msg string) (WorkerFailure, bool) {
	var doc failureDoc
	if err := json.Unmarshal([]byte(strings.TrimSpace(msg)), &doc); err != nil || doc.Failure == nil || doc.Failure.Reason == "" {
		return WorkerFailure{}, false
	}
	return *doc.Failure, true
}

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
	switch {
	case errors.Is(err, context.Canceled):
		return FailureInterrupted, true
	case untrusted:
		return FailureCertificateUntrusted, false
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		// net/http reports this as text only; a retry cannot change the registry's protocol.
		return FailureInsecureRegistryRequired, false
	case errors.Is(err, registry.ErrNotPermitted):
		return FailureRegistryBlocked, false
	case errors.As(err, &remote) && remote.Op == "push":
		// A refused push (credentials, a missing repository) fails the same way next time; an
		// unreachable or overloaded registry may be back.
		return FailurePushFailed, !(errors.Is(err, registry.ErrUnauthorized) || errors.Is(err, registry.ErrNotFound))
	case errors.As(err, &unauthorized):
		return FailureBaseImageUnavailable, false
	case isPullError(err):
		return FailureBaseImageUnavailable, errors.As(err, &netErr) || strings.Contains(err.Error(), "connection refused")
	default:
		return FailureBuildFailed, false
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
		FailurePushFailed:               "pushing the image failed",
		FailureBaseImageUnavailable:     "the base image could not be pulled",
		FailureRegistryBlocked:          "the cluster's image policy refuses a registry",
		FailureBuildFailed:              "the Containerfile did not build",
		FailureInterrupted:              "the build was stopped",
		FailureCertificateUntrusted:     "a registry's TLS certificate is not trusted; add its CA to image.config.openshift.io/cluster spec.additionalTrustedCA (a ConfigMap in openshift-config, key host..port)",
		FailureInsecureRegistryRequired: "a registry answers plain HTTP; list it in image.config.openshift.io/cluster spec.registrySources.insecureRegistries if that is intended",
	}[reason]
	if hint == "" {
		return err.Error()
	}
	return fmt.Sprintf("%s: %v", hint, err)
}
