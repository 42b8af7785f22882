package pipeline

import (
	"fmt"

	"github.com/mosb-dev/mosb/builder/buildpod"
)

// Condition reasons for invalid input (MachineOSConfig Degraded=True). CamelCase, one per fix.
const (
	ReasonInvalidPushspec        = "InvalidPushspec"
	ReasonSecretNotFound         = "SecretNotFound"
	ReasonInvalidSecret          = "InvalidSecret"
	ReasonRegistryBlocked        = buildpod.ReasonRegistryBlocked
	ReasonBaseImageNotByDigest   = "BaseImageNotByDigest"
	ReasonBaseImageNotSet        = "BaseImageNotSet"
	ReasonInvalidContainerfile   = "InvalidContainerfile"
	ReasonInvalidArchitecture    = "InvalidArchitecture"
	ReasonPoolNotFound           = "PoolNotFound"
	ReasonInvalidClusterConfig   = "InvalidClusterConfig"
	ReasonInvalidMachineOSConfig = "InvalidMachineOSConfig"
	ReasonInvalidBuildResources  = "InvalidBuildResources"
	// ReasonInvalidMachineConfig: the pool's rendered MachineConfig (or the --machineconfig file)
	// cannot be read, or its Ignition config cannot be laid into an image.
	ReasonInvalidMachineConfig = "InvalidMachineConfig"
)

// Reasons only mosb's commands give: for files and flags, which the cluster has no counterpart of.
const (
	// ReasonInvalidFlag: a command-line flag, or a combination of them, cannot work.
	ReasonInvalidFlag = "InvalidFlag"
)

// Failure is input that can never build as given. Reason is the condition reason; Message names
// the object and the fix, and never holds a secret value.
type Failure struct {
	Reason  string
	Message string
	Err     error
}

func (f *Failure) Error() string { return f.Message }

func (f *Failure) Unwrap() error { return f.Err }

func fail(reason string, err error, format string, args ...any) *Failure {
	return &Failure{Reason: reason, Message: fmt.Sprintf(format, args...), Err: err}
}
