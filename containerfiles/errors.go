package containerfiles

import (
	"errors"
	"fmt"
)

// ErrInvalidContainerfile matches (errors.Is) every error caused by the user's containerFile entries:
// *InvalidContainerfileError (also for an unknown containerfileArch) and *ConflictingEntriesError. The controller maps it
// to the condition reason InvalidContainerfile.
var ErrInvalidContainerfile = errors.New("invalid containerFile")

// ErrInvalidInput matches errors about the rest of the Input (image pullspecs, names, release
// version, build architecture): what the caller passes, not what the user wrote in containerFile.
var ErrInvalidInput = errors.New("invalid build input")

// InvalidContainerfileError is a containerFile entry mosb refuses to build.
type InvalidContainerfileError struct {
	// Arch is the entry's containerfileArch as the user wrote it (noarch when omitted).
	Arch string
	// Line is the 1-based line within the entry's content where the problem is, or 0 when it is
	// about the content as a whole (for example: empty).
	Line int
	// Reason says what is wrong and, where it helps, how to fix it.
	Reason string
	// Err is the parser's or evaluator's own error, when there is one.
	Err error
}

func (e *InvalidContainerfileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("containerFile[arch=%s] line %d: %s", e.Arch, e.Line, e.Reason)
	}
	return fmt.Sprintf("containerFile[arch=%s]: %s", e.Arch, e.Reason)
}

// Unwrap returns the underlying parser or evaluator error, if any.
func (e *InvalidContainerfileError) Unwrap() error { return e.Err }

// Is makes the error match ErrInvalidContainerfile.
func (e *InvalidContainerfileError) Is(target error) bool { return target == ErrInvalidContainerfile }
