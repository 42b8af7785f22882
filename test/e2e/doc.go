// Package e2e runs the mosb controller as a process against a real kube-apiserver + etcd, a real
// docker-registry with authentication and TLS, and build pods run by the kubelet stand-in as real
// `mosb worker` processes that build with buildah and push. `make e2e` runs it.
package e2e
