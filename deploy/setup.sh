#!/usr/bin/env bash
# Sets up EdgeFleet from a fresh clone on a machine with Python 3.11, pip and apt:
#   system packages (Mosquitto; with --dev also PostgreSQL and Chromium for the tests),
#   a virtual environment in .venv with the project and its extras,
#   and the TFLite converter toolchain (its own environment; see compilers/toolchains.py).
# Idempotent: a second run only checks. Usage: bash deploy/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg (use --dev)" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python3}
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "apt-get install ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}

# Mosquitto is the broker the quickstart and the tests start on their own free ports.
apt_install mosquitto
if [ "$DEV" = 1 ]; then
  # PostgreSQL binaries: the tests run their own throw-away cluster on a free port.
  # Chromium: the dashboard is tested in a real (headless) browser.
  # qemu-user-static and debootstrap: the aarch64 test tier runs the agent on real arm64 wheels.
  apt_install postgresql chromium qemu-user-static debootstrap
fi

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if [ "$DEV" = 1 ]; then
  say "installing edgefleet[all,dev]"
  .venv/bin/python -m pip install -q -e '.[all,dev]'
  # The digits example is trained with PyTorch; its tests retrain it. CPU build.
  .venv/bin/python -m pip install -q 'torch==2.13.0'
else
  say "installing edgefleet[all]"
  .venv/bin/python -m pip install -q -e '.[all]'
fi

say "TFLite converter toolchain"
.venv/bin/edgectl toolchains install tflite
say "ready: .venv/bin/edgectl --help"
