#!/usr/bin/env bash
# Builds etcd and kube-apiserver from the Go module proxy (the only place they can come from here),
# caches them under a directory keyed by version, and prints that directory as the last line.
# Safe to re-run: a cached binary is never rebuilt.
#
#   hack/kube-assets.sh            -> prints the assets dir (for KUBEBUILDER_ASSETS)
#   hack/kube-assets.sh kubelet    -> also builds kube-controller-manager, kube-scheduler and kubelet of
#                                     the same version (a single-node cluster that runs real pods)
#   hack/kube-assets.sh controller-manager -> also builds kube-controller-manager (its Job controller
#                                     gives the e2e suite's Jobs their pods)
#
# Env: K8S_VERSION, ETCD_VERSION, MOSB_CACHE (default ~/.cache/mosb).
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.33.13}
ETCD_VERSION=${ETCD_VERSION:-3.5.16}
CACHE=${MOSB_CACHE:-$HOME/.cache/mosb}
ASSETS=$CACHE/kube-assets/k8s-$K8S_VERSION-etcd-$ETCD_VERSION
MINOR=${K8S_VERSION#1.}; MINOR=${MINOR%%.*}
STAGING_VERSION=v0.${K8S_VERSION#1.}

say() { echo "[kube-assets] $*" >&2; }
# Scratch modules must not see the project's go.work or GOFLAGS.
gomod() { (cd "$1" && shift && GOWORK=off GOFLAGS=-mod=mod go "$@"); }

# new_scratch DIR MODULE_BODY IMPORT: a throwaway module whose only purpose is to resolve IMPORT.
new_scratch() {
  mkdir -p "$1"
  printf '%s\n' "$2" >"$1/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$3" >"$1/tools.go"
  # -e: a few test-only modules of kubernetes are not served by the proxy; the binaries do not need them.
  gomod "$1" mod tidy -e >/dev/null 2>&1
}

build_etcd() {
  local d; d=$(mktemp -d)
  # `go install etcd@version` is refused because etcd's go.mod has replace directives.
  new_scratch "$d" "module scratch/etcd
go 1.23
require go.etcd.io/etcd/server/v3 v$ETCD_VERSION" go.etcd.io/etcd/server/v3
  gomod "$d" build -trimpath -ldflags '-s -w' -o "$ASSETS/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$ASSETS/etcd.tmp" "$ASSETS/etcd"
  rm -rf "$d"
}

# k8s.io/kubernetes requires its staging modules at v0.0.0 with replace => ./staging/...; a scratch
# module maps each of them to the published v0.MINOR.PATCH instead.
kube_scratch() {
  local d=$1 kdir body
  kdir=$(gomod "$d" mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  body="module scratch/kube
go 1.24
require k8s.io/kubernetes v$K8S_VERSION
$(sed -n '/^replace (/,/^)/p' "$kdir/go.mod" | awk -v v="$STAGING_VERSION" '$2=="=>"{print "replace " $1 " => " $1 " " v}')"
  new_scratch "$d" "$body" "k8s.io/kubernetes/cmd/kube-apiserver"
}

build_kube() { # build_kube NAME...
  local d; d=$(mktemp -d); mkdir -p "$d"; printf 'module scratch/kube\ngo 1.24\n' >"$d/go.mod"
  kube_scratch "$d"
  local v=k8s.io/component-base/version
  local ldflags="-s -w -X $v.gitVersion=v$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$MINOR -X $v.gitTreeState=clean"
  for name in "$@"; do
    say "building $name v$K8S_VERSION (several minutes on a cold Go build cache)"
    gomod "$d" build -trimpath -ldflags "$ldflags" -o "$ASSETS/$name.tmp" "k8s.io/kubernetes/cmd/$name"
    mv "$ASSETS/$name.tmp" "$ASSETS/$name"
  done
  rm -rf "$d"
}

mkdir -p "$ASSETS"
want=(kube-apiserver)
case "${1:-}" in
  kubelet) want+=(kube-controller-manager kube-scheduler kubelet) ;;
  controller-manager) want+=(kube-controller-manager) ;;
esac
if [ ! -x "$ASSETS/etcd" ]; then
  say "building etcd v$ETCD_VERSION"; build_etcd
fi
missing=()
for n in "${want[@]}"; do [ -x "$ASSETS/$n" ] || missing+=("$n"); done
if [ ${#missing[@]} -gt 0 ]; then build_kube "${missing[@]}"; fi
if [ ! -e "$ASSETS/kubectl" ]; then
  if command -v kubectl >/dev/null 2>&1; then
    ln -sf "$(command -v kubectl)" "$ASSETS/kubectl"
  else
    build_kube kubectl
  fi
fi
echo "$ASSETS"
