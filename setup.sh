#!/usr/bin/env bash
# Installs everything hil needs on a fresh Debian machine (as root): the ARM toolchain,
# QEMU, a host C compiler and Chromium (tests render the HTML report) from Debian, the
# Python packages from PyPI into ./.venv.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")"

packages=()
need() { command -v "$1" >/dev/null 2>&1 || packages+=("$2"); }
need arm-none-eabi-gcc gcc-arm-none-eabi
need qemu-system-arm qemu-system-arm
need gcc gcc
need make make
need chromium chromium  # the HTML report's rendering test (headless)
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || packages+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3-venv)
if ((${#packages[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
