package builder_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/mosb-dev/mosb/builder"
	"github.com/mosb-dev/mosb/builder/buildpod"
	"github.com/mosb-dev/mosb/registry"
)

func TestClassifyError(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	cases := []struct {
		name      string
		err       error
		reason    string
		retryable bool
	}{
		{"push refused", &registry.RemoteError{Op: "push", Registry: "r", StatusCode: 401, Err: errors.New("UNAUTHORIZED")}, buildpod.ReasonPushFailed, false},
		{"push: repository missing", &registry.RemoteError{Op: "push", Registry: "r", StatusCode: 404, Err: errors.New("NAME_UNKNOWN")}, buildpod.ReasonPushFailed, false},
		{"push: registry down", &registry.RemoteError{Op: "push", Registry: "r", Err: refused}, buildpod.ReasonPushFailed, true},
		{"push: 503", &registry.RemoteError{Op: "push", Registry: "r", StatusCode: 503, Err: errors.New("unavailable")}, buildpod.ReasonPushFailed, true},
		{"push: untrusted certificate", &registry.RemoteError{Op: "push", Registry: "r", Err: fmt.Errorf("tls: %w", x509.UnknownAuthorityError{})}, buildpod.ReasonCertificateUntrusted, false},
		{"pull: plain HTTP registry", fmt.Errorf("initializing source docker://r/os: pinging container registry r: Get \"https://r/v2/\": %w", &net.OpError{Op: "read", Err: errors.New("http: server gave HTTP response to HTTPS client")}), buildpod.ReasonInsecureRegistryRequired, false},
		{"policy", fmt.Errorf("push: %w", registry.ErrNotPermitted), buildpod.ReasonRegistryBlocked, false},
		{"pull: untrusted certificate", fmt.Errorf("building amd64 image: initializing source docker://r/os: %w", x509.UnknownAuthorityError{}), buildpod.ReasonCertificateUntrusted, false},
		{"pull: registry down", fmt.Errorf("building amd64 image: initializing source docker://r/os: %w", refused), buildpod.ReasonBaseImageUnavailable, true},
		{"RUN failed", errors.New("building amd64 image: building at STEP \"RUN false\": while running runtime: exit status 1"), buildpod.ReasonBuildFailed, false},
		{"stopped", fmt.Errorf("building: %w", context.Canceled), buildpod.ReasonInterrupted, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reason, retryable := builder.ClassifyError(tc.err)
			if reason != tc.reason || retryable != tc.retryable {
				t.Errorf("ClassifyError(%v) = %s, retryable %v; want %s, %v", tc.err, reason, retryable, tc.reason, tc.retryable)
			}
		})
	}
}
