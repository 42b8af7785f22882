package pipeline

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The MachineOSBuild condition that says what of the rendered MachineConfig the image holds: its
// Ignition files, directories, links and units are laid into the image (package ignitionlayer);
// what an image cannot hold (disks, users, kernel arguments…) is named, as skipped.
const (
	ConditionMachineConfigInImage = "MachineConfigInImage"
	// ReasonMachineConfigLaid: everything the Ignition config holds is in the image.
	ReasonMachineConfigLaid = "MachineConfigLaid"
	// ReasonMachineConfigPartlyLaid: parts are skipped; the message names them and who applies them.
	ReasonMachineConfigPartlyLaid = "MachineConfigPartlyLaid"
)

// maxConditionMessage keeps a condition message well under the API's 32768-character limit.
const maxConditionMessage = 8192

// MachineConfigCondition is the MachineConfigInImage condition of a plan's build; false when the
// plan has no rendered MachineConfig (nothing to say).
func MachineConfigCondition(p *Plan, generation int64, now metav1.Time) (metav1.Condition, bool) {
	if p == nil || p.MachineConfigLayer == nil || p.RenderedMachineConfig == "" {
		return metav1.Condition{}, false
	}
	reason := ReasonMachineConfigLaid
	if len(p.MachineConfigLayer.Skipped) > 0 {
		reason = ReasonMachineConfigPartlyLaid
	}
	message := "rendered MachineConfig " + p.RenderedMachineConfig + ": " + p.MachineConfigLayer.Summary()
	if len(message) > maxConditionMessage {
		message = strings.ToValidUTF8(message[:maxConditionMessage-3], "") + "..."
	}
	return metav1.Condition{Type: ConditionMachineConfigInImage, Status: metav1.ConditionTrue, Reason: reason,
		Message: message, ObservedGeneration: generation, LastTransitionTime: now}, true
}
