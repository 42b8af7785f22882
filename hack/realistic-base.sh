#!/usr/bin/env bash
# Builds a realistic OS base image, the shape of an RHCOS / Fedora CoreOS bootc image, from Debian's
# archive only: a Debian bookworm amd64 system of ~1.3 GB (kernel + modules + initramfs, systemd,
# udev, NetworkManager, openssh, podman/buildah/skopeo, containerd + runc, Open vSwitch, storage
# tools, grub/shim, SELinux policy, all locales, apt) split into ~50 layers by owning package
# (test/realbase), and prints the OCI image layout's directory as its last stdout line.
#
# Cached and idempotent: a second run is a cache hit and does nothing. The cache lives in
#   ${MOSB_CACHE:-$HOME/.cache/mosb}/realistic-base/
#     rootfs-<k1>/      the root filesystem (k1: its recipe's hash; rootfs-<k1>.complete when whole)
#     <k2>/layout/      the OCI image layout (k2: this script's and test/realbase's hashes)
#     <k2>/info.json    layer count and sizes
#     debs/             downloaded packages, reused by a rebuild
# An edit of this script or of test/realbase gives a new key and a rebuild; old keys stay until
# removed by hand (rm -rf the directory).
#
#   hack/realistic-base.sh            build if needed, print the layout directory
#   hack/realistic-base.sh --cached   print it if already built, else exit 3 and build nothing
#
# Building needs root (debootstrap, chroot, mounts in a private mount namespace), Linux on amd64,
# the Go toolchain and Debian's archive; it installs debootstrap when missing. /dev is left empty
# (build pods lack CAP_MKNOD); /var/cache/apt/archives and apt's lists are emptied, while the
# host's apt sources (and keyring) are copied in, so a RUN `apt-get update && apt-get install`
# works against the same mirror. Timestamps: SOURCE_DATE_EPOCH for the packages' scripts, and every
# mtime in the layers is clamped to it, so the same packages give the same image.
set -euo pipefail

SUITE=bookworm
ARCH=amd64
# 2025-05-20T00:00:00Z
export SOURCE_DATE_EPOCH=1747699200
LAYERS=${MOSB_REALBASE_LAYERS:-52}

# What the image holds, beyond debootstrap's minbase (Priority: required), with their dependencies
# (no recommends): ~1.3 GB, the kernel's modules and the locales its two giant packages, like RHCOS's
# kernel-modules and linux-firmware.
PACKAGES=(
  # kernel, initramfs, boot
  linux-image-amd64 initramfs-tools kmod firmware-linux-free
  grub-efi-amd64-bin grub-pc-bin grub2-common shim-signed efibootmgr kexec-tools
  # init
  systemd systemd-sysv udev dbus libpam-systemd systemd-container chrony
  # networking
  iproute2 network-manager openssh-server openssh-client nftables iptables iputils-ping ethtool
  openvswitch-switch curl conntrack socat wireguard-tools dnsmasq-base
  # containers (like RHCOS: podman and skopeo; no containerd)
  podman runc crun conmon skopeo fuse-overlayfs slirp4netns containernetworking-plugins uidmap
  # storage
  util-linux e2fsprogs xfsprogs dosfstools lvm2 cryptsetup mdadm multipath-tools open-iscsi
  nfs-common cifs-utils nvme-cli parted gdisk btrfs-progs ostree
  # security, admin, the rest
  selinux-policy-default auditd sudo ca-certificates apt vim-tiny less bash-completion jq rsync
  xz-utils zstd lsof strace tcpdump tmux procps psmisc hostname pciutils usbutils dmidecode python3
  locales-all
)

log() { echo "[realistic-base] $*" >&2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF=$ROOT/hack/realistic-base.sh
CACHE=${MOSB_CACHE:-$HOME/.cache/mosb}/realistic-base
mapfile -t GOSRC < <(find "$ROOT/test/realbase" -maxdepth 1 -name '*.go' ! -name '*_test.go' | LC_ALL=C sort)
K2=$(cat "$SELF" "${GOSRC[@]}" | sha256sum | cut -c1-16)
OUT=$CACHE/$K2
LAYOUT=$OUT/layout

if [ -f "$LAYOUT/index.json" ] && [ -f "$OUT/info.json" ]; then echo "$LAYOUT"; exit 0; fi
if [ "${1:-}" = --cached ]; then exit 3; fi

if [ "$(uname -s)/$(uname -m)" != Linux/x86_64 ]; then
  log "needs Linux on amd64 (this is $(uname -s)/$(uname -m))"; exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
  log "needs root: debootstrap, chroot and mounts"; exit 2
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
# Another run may have finished while this one waited.
if [ -f "$LAYOUT/index.json" ] && [ -f "$OUT/info.json" ]; then echo "$LAYOUT"; exit 0; fi

if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

# The host's Debian mirror: what debootstrap fetches from and what the image's apt is pointed at.
HOST_SOURCES=/etc/apt/sources.list.d/debian.sources
MIRROR=
if [ -f "$HOST_SOURCES" ]; then
  MIRROR=$(awk '/^URIs:/{u=$2} /^Suites:/{for(i=2;i<=NF;i++) if($i=="'$SUITE'"){print u; exit}}' "$HOST_SOURCES")
elif [ -f /etc/apt/sources.list ]; then
  MIRROR=$(awk '$1=="deb" && $3=="'$SUITE'" {print $2; exit}' /etc/apt/sources.list)
fi
MIRROR=${MIRROR:-http://deb.debian.org/debian}

# build_rootfs runs in a private mount namespace: its mounts (proc, dev, the package cache) go with
# it however it ends, so nothing outside is left mounted and no rm -rf can walk into a mount.
build_rootfs() {
  local dir=$1
  mkdir -p "$CACHE/debs/debootstrap" "$CACHE/debs/apt/partial"
  log "debootstrap $SUITE ($MIRROR) into $dir"
  debootstrap --variant=minbase --arch=$ARCH --merged-usr --components=main \
    --cache-dir="$CACHE/debs/debootstrap" "$SUITE" "$dir" "$MIRROR"

  mountpoint -q "$dir/proc" || mount -t proc proc "$dir/proc"
  mount --bind /dev "$dir/dev"
  mount --bind "$CACHE/debs/apt" "$dir/var/cache/apt/archives"

  # No daemon starts inside the chroot.
  printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
  chmod 755 "$dir/usr/sbin/policy-rc.d"

  # apt points at the host's mirror, with its keyring.
  rm -f "$dir/etc/apt/sources.list"
  if [ -f "$HOST_SOURCES" ]; then
    install -m 644 "$HOST_SOURCES" "$dir/etc/apt/sources.list.d/debian.sources"
    for key in $(awk '/^Signed-By:/{print $2}' "$HOST_SOURCES" | sort -u); do
      [ -e "$dir$key" ] || install -D -m 644 "$key" "$dir$key"
    done
  else
    grep -E '^deb ' /etc/apt/sources.list >"$dir/etc/apt/sources.list"
  fi
  cp /etc/resolv.conf "$dir/etc/resolv.conf"

  local env=(/usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)
  local apt=(apt-get -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  log "apt-get install ${#PACKAGES[@]} packages (and their dependencies)"
  chroot "$dir" "${env[@]}" "${apt[@]}" update
  chroot "$dir" "${env[@]}" "${apt[@]}" dist-upgrade
  # The initramfs once, at the end, not at the kernel's install and again at each hook's trigger.
  chroot "$dir" "${env[@]}" INITRD=No "${apt[@]}" install --no-install-recommends "${PACKAGES[@]}"

  # An OS image's first boot makes what is per machine (the initramfs copies some of it).
  : >"$dir/etc/machine-id"
  rm -f "$dir/etc/nvme/hostnqn" "$dir/etc/nvme/hostid"
  printf 'GenerateName=yes\n' >"$dir/etc/iscsi/initiatorname.iscsi"
  rm -f "$dir/var/lib/dbus/machine-id" "$dir/var/lib/systemd/random-seed" "$dir/var/lib/systemd/credential.secret"
  ln -s /etc/machine-id "$dir/var/lib/dbus/machine-id"
  rm -f "$dir"/etc/ssh/ssh_host_*
  mkdir -p "$dir/etc/systemd/system/ssh.service.d"
  printf '[Service]\nExecStartPre=/usr/bin/ssh-keygen -A\n' >"$dir/etc/systemd/system/ssh.service.d/host-keys.conf"
  echo localhost >"$dir/etc/hostname"
  printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$dir/etc/hosts"
  rm -f "$dir/etc/resolv.conf"
  install -m 644 /dev/null "$dir/etc/resolv.conf"
  # The last-password-change day in /etc/shadow: the epoch's, not today's.
  local day=$((SOURCE_DATE_EPOCH / 86400))
  sed -i -E "s/^([^:]*:[^:]*:)[0-9]+:/\1$day:/" "$dir/etc/shadow"

  # Reproducible with SOURCE_DATE_EPOCH, now that nothing per machine is left to copy in.
  chroot "$dir" "${env[@]}" update-initramfs -c -k all
  rm -f "$dir/initrd.img.old" "$dir/vmlinuz.old"

  # The shared package cache is unmounted first: apt-get clean empties the image's own.
  umount "$dir/var/cache/apt/archives"
  chroot "$dir" "${env[@]}" apt-get clean
  umount "$dir/dev" "$dir/proc"
  rm -f "$dir/usr/sbin/policy-rc.d"

  # Nothing per build: downloaded packages, apt's lists (a RUN step runs apt-get update), logs,
  # backups, caches, device nodes, runtime state.
  find "$dir/var/cache/apt/archives" -mindepth 1 -maxdepth 1 ! -name partial -exec rm -rf {} +
  find "$dir/var/cache/apt/archives/partial" -mindepth 1 -delete
  rm -f "$dir"/var/cache/apt/*.bin
  find "$dir/var/lib/apt/lists" -mindepth 1 -maxdepth 1 ! -name partial -exec rm -rf {} +
  find "$dir/var/log" -type f -exec truncate -s 0 {} +
  rm -f "$dir"/var/lib/dpkg/*-old "$dir"/var/cache/debconf/*-old "$dir"/etc/*- "$dir/etc/.pwd.lock" \
    "$dir/var/cache/ldconfig/aux-cache" "$dir/root/.bash_history"
  find "$dir/dev" "$dir/run" "$dir/tmp" "$dir/var/tmp" -mindepth 1 -delete
}

# The rootfs's key: its recipe (the function above, the packages, suite, architecture, epoch and
# mirror), so an edit elsewhere in this script re-splits the same rootfs without a rebuild.
K1=$( { declare -f build_rootfs; echo "${PACKAGES[*]} $SUITE $ARCH $SOURCE_DATE_EPOCH $MIRROR"; } | sha256sum | cut -c1-16)
ROOTFS=$CACHE/rootfs-$K1
if [ ! -f "$ROOTFS.complete" ]; then
  start=$SECONDS
  rm -rf "$ROOTFS.tmp"
  buildlog=$CACHE/build-$K1.log
  log "building the rootfs (minutes; log: $buildlog)"
  export -f build_rootfs log
  export CACHE SUITE ARCH MIRROR HOST_SOURCES
  export PACKAGES_LIST="${PACKAGES[*]}"
  if ! unshare --mount --propagation private \
    bash -c 'set -euo pipefail; read -r -a PACKAGES <<<"$PACKAGES_LIST"; build_rootfs "$1"' _ "$ROOTFS.tmp" >"$buildlog" 2>&1; then
    tail -n 40 "$buildlog" >&2
    log "building the rootfs failed: see $buildlog"
    exit 1
  fi
  rm -rf "$ROOTFS"
  mv "$ROOTFS.tmp" "$ROOTFS"
  touch "$ROOTFS.complete"
  log "rootfs built in $((SECONDS - start))s: $(du -sh --apparent-size "$ROOTFS" | cut -f1)"
fi

start=$SECONDS
bin=$CACHE/bin/realbase-$K2
if [ ! -x "$bin" ]; then
  log "building test/realbase"
  (cd "$ROOT" && CGO_ENABLED=0 go build -o "$bin.tmp" ./test/realbase) && mv "$bin.tmp" "$bin"
fi
rm -rf "$OUT.tmp"
mkdir -p "$OUT.tmp"
log "splitting the rootfs into $LAYERS layers by package"
"$bin" -rootfs "$ROOTFS" -out "$OUT.tmp/layout" -info "$OUT.tmp/info.json" \
  -epoch "$SOURCE_DATE_EPOCH" -layers "$LAYERS" >&2
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
log "layout written in $((SECONDS - start))s"
echo "$LAYOUT"
