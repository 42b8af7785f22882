// Package bench holds mosb's speed benchmarks. They build real images with `mosb build` and with
// Debian's buildah CLI, push them to a docker-registry with authentication and TLS, and print a
// table of medians. They take minutes, so they run only with MOSB_BENCH=1 (`make bench`);
// `go test ./...` reports them skipped.
package bench
