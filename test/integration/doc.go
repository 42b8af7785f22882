// Package integration holds tests that run mosb's pieces against real components: a kube-apiserver
// with etcd, a docker-registry with authentication, and buildah. They are skipped with -short.
package integration
