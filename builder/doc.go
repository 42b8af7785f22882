// Package builder is mosb's one build engine: buildah as a library over a private containers/storage
// root. It builds each architecture's assembled Containerfile into an OCI image and publishes it with
// the push credentials only. `mosb build` (CI) calls it in-process; `mosb worker` calls it inside a
// build pod; both give the same image and the same digest for the same inputs.
//
// The layers an image inherits from its base are published as the base has them (same blobs, same
// digests): they are neither compressed again nor uploaded again when the target repository has
// them or can mount them from the base's repository (see reuse.go).
//
// The engine decides nothing about what to build: callers hand it Containerfiles and registry
// configuration that the containerfiles and registry packages produced.
package builder
