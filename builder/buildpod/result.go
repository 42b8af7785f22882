package buildpod

import (
	"encoding/json"
	"strings"
)

// Failure reasons a build reports. The controller's conditions use them as they are.
const (
	ReasonBuildFailed          = "BuildFailed"
	ReasonPushFailed           = "PushFailed"
	ReasonBaseImageUnavailable = "BaseImageUnavailable"
	ReasonRegistryBlocked      = "RegistryBlocked"
	ReasonInterrupted          = "Interrupted"
	ReasonInvalidRequest       = "InvalidRequest"
	// ReasonCertificateUntrusted: a registry's TLS certificate is not trusted (pull or push alike:
	// the fix is the same, a CA in the Image config's additionalTrustedCA).
	ReasonCertificateUntrusted = "RegistryCertificateUntrusted"
	// ReasonInsecureRegistryRequired: a registry answers plain HTTP but is not listed as insecure.
	ReasonInsecureRegistryRequired = "InsecureRegistryRequired"
	// ReasonRegistryUnresponsive: a registry stopped answering (no connection, no response, or a
	// transfer that made no progress) beyond the registry bounds, retries included.
	ReasonRegistryUnresponsive = "RegistryUnresponsive"
	// ReasonBuildStorageFull: the build's storage (the build root, or the build pod's volume) ran
	// out of space while pulling, in a RUN, committing a step or writing the image.
	ReasonBuildStorageFull = "BuildStorageFull"
)

// Failure is what `mosb worker` writes to its termination message when it fails: without
// it kubelet would keep only the log tail, and the controller could not tell a refused push from
// a registry that was briefly down.
type Failure struct {
	Reason string `json:"reason"`
	// Retryable says another attempt may succeed with the same inputs.
	Retryable bool `json:"retryable"`
	// Message is the error and the end of the build log; it never holds credentials.
	Message string `json:"message"`
}

type failureDoc struct {
	Failure *Failure `json:"failure"`
}

// Marshal encodes the failure as a termination message, cutting the message's start so the
// whole fits in what kubelet keeps.
func (f Failure) Marshal() ([]byte, error) {
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

// ParseFailure reads a failure from a termination message.
func ParseFailure(msg string) (Failure, bool) {
	var doc failureDoc
	if err := json.Unmarshal([]byte(strings.TrimSpace(msg)), &doc); err != nil || doc.Failure == nil || doc.Failure.Reason == "" {
		return Failure{}, false
	}
	return *doc.Failure, true
}
