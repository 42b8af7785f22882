// Package registry decides how mosb reaches container registries: which image references are
// valid, which credentials to present, which mirrors to try, what the cluster's image policy
// permits, and what registries.conf and policy.json buildah gets. It is a pure library — no
// cluster access, no package-level mutable state, no logging — so the controller, the CLI and the
// build worker all make the same decisions from the same inputs. The only side effects live in
// Client (remote.go), which talks to registries.
//
// Decisions a caller must know:
//
//   - Pullspecs follow the seed grammar that the MachineOSConfig CRD encodes as CEL (a test keeps
//     the two equal). The first path element is ALWAYS the registry host: there is no implicit
//     docker.io, so "library/busybox@sha256:…" names registry "library".
//   - Mirrors (ImageDigestMirrorSet, ImageTagMirrorSet, ImageContentPolicy) apply to pulls only.
//     Nothing in this package maps a push target through a mirror; the push side has its own
//     registries.conf (PushRegistriesConf) without mirrors.
//   - Sources are matched the way containers/image matches registries.conf prefixes, across all
//     three kinds together: the longest matching source wins and a "*.domain" source is the least
//     specific. So a more specific digest-only source hides a less specific tag source for tag
//     pulls — exactly what buildah and CRI-O do with the same file.
//   - NeverContactSource from any entry of a source keeps that source from being contacted for
//     both digest and tag pulls, because registries.conf has one "blocked" flag per source.
//   - The cluster Image policy (allowed/blocked registries) is checked against the image as it is
//     written, like policy.json: a blocked source is refused even when an allowed mirror has it.
//     Mirrors that the policy does not permit are dropped (never contacted, not rendered).
//   - A build gets the registries.conf of Config.ForPulls(what it pulls): the whole image policy,
//     and only the mirror rules those pulls use. Its pulls resolve exactly as with the whole file,
//     and a mirror set that covers none of them does not change it.
package registry
