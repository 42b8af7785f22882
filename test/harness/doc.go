// Package harness starts the real components mosb's integration and end-to-end tests run against:
// a kube-apiserver + etcd (controller-runtime's envtest, on binaries built by hack/kube-assets.sh),
// a Debian docker-registry with htpasswd authentication and TLS from a CA the harness generates,
// and a tiny busybox base OS image pushed to it by digest.
//
// Every Start* function registers its own teardown with t.Cleanup, picks free ports on 127.0.0.1,
// and fails the test with a message saying what to install when a component is missing.
package harness
