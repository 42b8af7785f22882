#!/usr/bin/env bash
# Registers qemu-user-static for arm64 with binfmt_misc so arm64 RUN steps execute on this host.
# Not persistent across reboots; safe to repeat. Exits 1 (with a reason) where the kernel or the
# sandbox does not allow it, so callers can skip emulated builds loudly.
set -euo pipefail
BINFMT=/proc/sys/fs/binfmt_misc
if [ "$(uname -m)" = aarch64 ]; then exit 0; fi  # native
if [ ! -e $BINFMT/register ]; then
  mount -t binfmt_misc binfmt_misc $BINFMT 2>/dev/null || { echo "[binfmt] cannot mount binfmt_misc" >&2; exit 1; }
fi
if [ -e $BINFMT/qemu-aarch64 ]; then exit 0; fi
conf=/usr/lib/binfmt.d/qemu-aarch64.conf
[ -r $conf ] || { echo "[binfmt] $conf missing: install qemu-user-static (make deps)" >&2; exit 1; }
grep -v '^#' $conf | head -n1 >$BINFMT/register || { echo "[binfmt] the kernel refused the qemu-aarch64 registration" >&2; exit 1; }
