package builder_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/mosb-dev/mosb/builder"
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
		{"push refused", &registry.RemoteError{Op: "push", Registry: "r", StatusCode: 401, Err: errors.New("UNAUTHORIZED")}, builder.FailurePushFailed, false},
		{"push: repository missing", &registry.RemoteError{Op: "push", Registry: "r", StatusCode: 404, Err: errors.New("NAME_UNKNOWN")}, builder.FailurePushFailed, false},
		{"push: registry down", &registry.RemoteError{Op: "push", Registry: "r", Err: refused}, builder.FailurePushFailed, true},
		{"push: 503", &registry.RemoteError{Op: "push", Registry: "r", StatusCode: 503, Err: errors.New("unavailable")}, builder.FailurePushFailed, true},
		{"push: untrusted certificate", &registry.RemoteError{Op: "push", Registry: "r", Err: fmt.Errorf("tls: %w", x509.UnknownAuthorityError{})}, builder.FailureCertificateUntrusted, false},
		{"pull: plain HTTP registry", fmt.Errorf("initializing source docker://r/os: pinging container registry r: Get \"https://r/v2/\": %w", &net.OpError{Op: "read", Err: errors.New("http: server gave HTTP response to HTTPS client")}), builder.FailureInsecureRegistryRequired, false},
		{"policy", fmt.Errorf("push: %w", registry.ErrNotPermitted), builder.FailureRegistryBlocked, false},
		{"pull: untrusted certificate", fmt.Errorf("building amd64 image: initializing source docker://r/os: %w", x509.UnknownAuthorityError{}), builder.FailureCertificateUntrusted, false},
		{"pull: registry down", fmt.Errorf("building amd64 image: initializing source docker://r/os: %w", refused), builder.FailureBaseImageUnavailable, true},
		{"RUN failed", errors.New("building amd64 image: building at STEP \"RUN false\": while running runtime: exit status 1"), builder.FailureBuildFailed, false},
		{"stopped", fmt.Errorf("building: %w", context.Canceled), builder.FailureInterrupted, true},
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

func TestWorkerFailureFitsATerminationMessage(t *testing.T) {
	long := strings.Repeat("log line\n", 2000) + "the last line"
	raw, err := builder.WorkerFailure{Reason: builder.FailureBuildFailed, Message: long}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) > 4096 {
		t.Errorf("failure is %d bytes; kubelet keeps 4096", len(raw))
	}
	f, ok := builder.ParseWorkerFailure(string(raw))
	if !ok || f.Reason != builder.FailureBuildFailed || !strings.HasSuffix(f.Message, "the last line") {
		t.Errorf("round trip lost the reason or the end of the log: %+v", f)
	}
	if _, ok := builder.ParseWorkerFailure("STEP 1/2: FROM x\nerror"); ok {
		t.Error("a log tail parsed as a failure")
	}
}
