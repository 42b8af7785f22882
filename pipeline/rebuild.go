package pipeline

import (
	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
)

// AnnotationRebuildRequest on a MachineOSConfig is a rebuild request the controller has taken and
// not yet seen answered: the user's machineconfiguration.openshift.io/rebuild, whatever its value
// (the Machine Config Operator sets it empty), is replaced by a token of the controller's in one
// write. The build that answers carries the token (AnnotationRebuild), and the token goes once a
// build carries it. So a request is answered once, the same value set twice is two requests, and a
// controller that stops between taking a request and starting its build starts it when it is back.
const AnnotationRebuildRequest = "mosb.dev/rebuild-request"

// RebuildAction is what a MachineOSConfig's rebuild request asks of the controller now.
type RebuildAction int

const (
	// NoRebuild: no request is pending.
	NoRebuild RebuildAction = iota
	// TakeRebuild: the user's annotation is there; it becomes a token (then StartRebuild).
	TakeRebuild
	// StartRebuild: no build carries the taken request's token yet: build the current inputs again.
	StartRebuild
	// ClearRebuild: a build carries the token: the request is answered and the token goes.
	ClearRebuild
)

func (a RebuildAction) String() string {
	switch a {
	case TakeRebuild:
		return "take"
	case StartRebuild:
		return "start"
	case ClearRebuild:
		return "clear"
	}
	return "none"
}

// DecideRebuild says what a MachineOSConfig's annotations ask given its builds, and the taken
// request's token (StartRebuild, ClearRebuild).
func DecideRebuild(annotations map[string]string, builds []mosbv1.MachineOSBuild) (RebuildAction, string) {
	if _, requested := annotations[mosbv1.RebuildAnnotation]; requested {
		return TakeRebuild, ""
	}
	token, taken := annotations[AnnotationRebuildRequest]
	if !taken {
		return NoRebuild, ""
	}
	if token == "" {
		// Not a token of the controller's (set by hand): take it as a request and give it one.
		return TakeRebuild, ""
	}
	for i := range builds {
		if answered, ok := builds[i].Annotations[AnnotationRebuild]; ok && answered == token {
			return ClearRebuild, token
		}
	}
	return StartRebuild, token
}
