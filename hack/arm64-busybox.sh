#!/usr/bin/env bash
# Extracts Debian's arm64 busybox-static into the cache (for the arm64 tiny base image) and prints
# the binary's path. Uses a private apt state so the host's package lists are left alone.
set -euo pipefail
CACHE=${MOSB_CACHE:-$HOME/.cache/mosb}
OUT=$CACHE/busybox-arm64
BIN=$OUT/bin/busybox
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi

state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/dpkg"
: >"$state/dpkg/status"
apt_opts=(-o APT::Architecture=arm64 -o APT::Architectures=arm64
  -o Dir::State::Lists="$state/lists" -o Dir::Cache="$state/cache" -o Dir::State::status="$state/dpkg/status"
  -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
echo "[arm64-busybox] fetching busybox-static:arm64" >&2
apt-get "${apt_opts[@]}" update -qq >/dev/null
(cd "$state" && apt-get "${apt_opts[@]}" download busybox-static:arm64 >/dev/null)
rm -rf "$OUT.tmp" && mkdir -p "$OUT.tmp"
dpkg-deb -x "$state"/busybox-static_*_arm64.deb "$OUT.tmp"
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
echo "$BIN"
