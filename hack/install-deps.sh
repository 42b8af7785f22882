#!/usr/bin/env bash
# Installs the Debian packages mosb's tests and demo run against. Idempotent: it asks apt only for
# what is missing, so a warm machine pays a few dpkg queries and nothing else.
set -euo pipefail

# package -> a file it installs (what we check for)
declare -A want=(
  [buildah]=/usr/bin/buildah           # the CLI, for the benchmark baseline and debugging
  [runc]=/usr/sbin/runc
  [skopeo]=/usr/bin/skopeo
  [docker-registry]=/usr/bin/docker-registry  # the real registry tests push to
  [apache2-utils]=/usr/bin/htpasswd
  [busybox-static]=/bin/busybox        # the tiny base OS image's rootfs
  [qemu-user-static]=/usr/bin/qemu-aarch64-static  # emulated arm64 builds
  [openssl]=/usr/bin/openssl
  [jq]=/usr/bin/jq
  [uidmap]=/usr/bin/newuidmap
  [containerd]=/usr/bin/containerd     # the real-kubelet e2e and demo run pods with it (and runc)
  [time]=/usr/bin/time                 # make bench: peak RSS of a tool, measured from a small parent
  [prometheus]=/usr/bin/promtool       # promtool checks and unit-tests deploy/monitoring's alerts
  [tinyproxy]=/usr/bin/tinyproxy       # the forward proxy the proxy e2e sends builds through
  [iptables]=/usr/sbin/iptables        # the proxy e2e blocks direct web access with it (also a dependency of buildah)
)

# make image cross-compiles mosb (cgo) for arm64 and takes its loader and libc from the sysroot.
if [ "$(uname -m)" = x86_64 ]; then
  want[gcc-aarch64-linux-gnu]=/usr/bin/aarch64-linux-gnu-gcc
  want[libc6-dev-arm64-cross]=/usr/aarch64-linux-gnu/lib/crt1.o
fi

missing=()
for pkg in "${!want[@]}"; do
  [ -e "${want[$pkg]}" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "[install-deps] installing: ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
