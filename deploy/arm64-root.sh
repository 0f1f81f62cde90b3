#!/usr/bin/env bash
# Builds (or checks) an arm64 Debian root that runs real aarch64 binaries under qemu-user, with
# two Python environments for the device agent:
#   /opt/litert  numpy 2 and ai-edge-litert (today's boards)
#   /opt/tflrt   numpy < 2 and tflite-runtime 2.14 (older boards)
# Both hold the agent's dependencies as aarch64 wheels; the edgefleet wheel itself is installed
# per run (see tests/arm64/). Needs root, qemu-user-static and debootstrap.
# Each stage leaves a marker, so a second run only checks (seconds); a first run takes about
# 10-20 minutes on two cores, most of it debootstrap's second stage under emulation.
# /proc and /dev are mounted into the root while it is used and unmounted on exit, unless
# --keep-mounted (the test tier unmounts with --umount when it is done).
# Usage: bash deploy/arm64-root.sh [--keep-mounted | --umount] [ROOT]
#        (ROOT default: $EDGEFLEET_ARM64_ROOT, else ~/.cache/edgefleet/arm64-root)
set -euo pipefail
cd "$(dirname "$0")/.."

KEEP=0
UMOUNT=0
ROOT=""
for arg in "$@"; do
  case "$arg" in
    --keep-mounted) KEEP=1 ;;
    --umount) UMOUNT=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) echo "arm64-root.sh: unknown option $arg" >&2; exit 2 ;;
    *) ROOT=$arg ;;
  esac
done
ROOT=${ROOT:-${EDGEFLEET_ARM64_ROOT:-$HOME/.cache/edgefleet/arm64-root}}

umounts() {
  for m in "$ROOT/dev" "$ROOT/proc"; do
    if mountpoint -q "$m" 2>/dev/null; then umount "$m" || umount -l "$m"; fi
  done
}
if [ "$UMOUNT" = 1 ]; then umounts; exit 0; fi
[ "$KEEP" = 1 ] || trap umounts EXIT
SUITE=bookworm
MIRROR=${EDGEFLEET_DEBIAN_MIRROR:-http://deb.debian.org/debian}
say() { printf '\033[1m==> arm64 root: %s\033[0m\n' "$*"; }
die() { printf 'arm64-root.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, binfmt_misc); run it with sudo"
command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install -y debootstrap qemu-user-static"
QEMU=$(command -v qemu-aarch64-static || true)
[ -n "$QEMU" ] || die "qemu-aarch64-static is missing: apt-get install -y qemu-user-static"

# The kernel must hand aarch64 ELF files to qemu. Debian's qemu-user-static ships the rule; a
# container without systemd-binfmt has to register it itself. The F flag opens the interpreter at
# registration, so it works inside the chroot without a path lookup.
binfmt() {
  local dir=/proc/sys/fs/binfmt_misc
  [ -e "$dir/register" ] || mount -t binfmt_misc binfmt_misc "$dir" \
    || die "could not mount binfmt_misc (a container needs --privileged for this)"
  [ -e "$dir/qemu-aarch64" ] && return 0
  local conf=/usr/lib/binfmt.d/qemu-aarch64.conf
  [ -f "$conf" ] || die "$conf is missing (qemu-user-static too old?)"
  grep -v '^#' "$conf" | head -1 > "$dir/register" \
    || die "could not register qemu-aarch64 with binfmt_misc"
}
binfmt

mounts() {
  mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
  mountpoint -q "$ROOT/dev" || mount --bind /dev "$ROOT/dev"
  # The host's name resolution and CA bundle, so pip inside reaches the same package registry.
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
  mkdir -p "$ROOT/usr/local/share/host-ca"
  cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT/usr/local/share/host-ca/ca.crt"
}

# Runs a command inside the root with a clean environment: the host's pip settings (find-links
# to x86 wheels, constraints) must not leak in. /sys stays unmounted: ONNX Runtime's cpuinfo
# crashes on the host's /sys under emulation and only warns without it.
inside() {
  chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin \
    PIP_CERT=/usr/local/share/host-ca/ca.crt SSL_CERT_FILE=/usr/local/share/host-ca/ca.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 "$@"
}

mkdir -p "$ROOT"
if [ ! -e "$ROOT/.stage1" ]; then
  say "debootstrap (first stage) into $ROOT"
  rm -rf "$ROOT" && mkdir -p "$ROOT"
  debootstrap --arch=arm64 --foreign --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates "$SUITE" "$ROOT" "$MIRROR"
  cp "$QEMU" "$ROOT/usr/bin/"
  touch "$ROOT/.stage1"
fi
if [ ! -e "$ROOT/.stage2" ]; then
  say "debootstrap (second stage, under emulation; the slow part)"
  chroot "$ROOT" /debootstrap/debootstrap --second-stage
  touch "$ROOT/.stage2"
fi
mounts

[ "$(inside python3 -c 'import platform; print(platform.machine())')" = aarch64 ] \
  || die "python3 in the root is not an aarch64 process; is binfmt_misc registered?"

# The agent's own dependencies (pyproject's core + agent extra) as binary wheels only: nothing is
# compiled under emulation. The edgefleet wheel comes later with --no-deps.
"${PYTHON:-python3}" -c '
import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(p["dependencies"] + p["optional-dependencies"]["agent"]))
' > "$ROOT/opt/agent-requirements.txt"
STAMP=$(sha256sum < "$ROOT/opt/agent-requirements.txt" | cut -c1-16)

venv() {  # venv NAME EXTRA_REQUIREMENTS...
  local name=$1; shift
  local marker="$ROOT/opt/$name/.edgefleet-deps-$STAMP"
  [ -e "$marker" ] && return 0
  say "venv /opt/$name: $*"
  inside python3 -m venv --clear "/opt/$name"
  inside "/opt/$name/bin/pip" install -q --only-binary=:all: -r /opt/agent-requirements.txt "$@"
  touch "$marker"
}
venv litert 'ai-edge-litert>=1.2'
venv tflrt 'tflite-runtime==2.14.*' 'numpy<2'

say "ready: $ROOT ($(du -sh "$ROOT" 2>/dev/null | cut -f1))"
