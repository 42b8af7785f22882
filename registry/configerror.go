package registry

import (
	"errors"
	"fmt"
)

// ErrInvalidClusterConfig is wrapped by every error about cluster objects (Image config, its CA
// ConfigMap, mirror sets): the build cannot honour them, so the caller reports a condition.
var ErrInvalidClusterConfig = errors.New("invalid cluster registry configuration")

// ConfigError names the object, the field and the value that cannot be used, and why.
type ConfigError struct {
	// Object is kind/name, e.g. "ImageDigestMirrorSet/mirrors" or "image.config.openshift.io/cluster".
	Object string
	// Field is the path inside the object, e.g. "spec.imageDigestMirrors[0].source".
	Field string
	// Value is the offending value (never secret: these objects hold no credentials).
	Value string
	// Problem says what is wrong and how to fix it.
	Problem string
}

func (e *ConfigError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s %s: %s", e.Object, e.Field, e.Problem)
	}
	return fmt.Sprintf("%s %s %s: %s", e.Object, e.Field, quoteShort(e.Value), e.Problem)
}

func (e *ConfigError) Unwrap() error { return ErrInvalidClusterConfig }
