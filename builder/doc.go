// Package builder is mosb's one build engine: buildah as a library over a private containers/storage
// root. It builds each architecture's assembled Containerfile into an OCI image and publishes it with
// the push credentials only. `mosb build` (CI) calls it in-process; `mosb worker` calls it inside a
// build pod; both give the same image and the same digest for the same inputs.
//
// The engine decides nothing about what to build: callers hand it Containerfiles and registry
// configuration that the containerfiles and registry packages produced.
package builder
