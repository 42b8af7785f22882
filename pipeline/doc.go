// Package pipeline decides what mosb builds: from plain values (a MachineOSConfig, its pool's
// rendered MachineConfig, secrets, the cluster's registry configuration) to a build plan with its
// identity, or to a failure with the condition reason a user sees. The controller, `mosb render`
// and `mosb build` all go through Prepare, so they refuse and build exactly the same things.
package pipeline
