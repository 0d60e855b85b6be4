#!/usr/bin/env bash
# Installs everything hil needs on a fresh Debian machine (as root): the ARM toolchain,
# QEMU >= 9, a host C compiler, ser2net (labgrid exporters) and Chromium (tests render the HTML report) from Debian, the
# Python packages from PyPI into ./.venv, pinned by requirements.lock.
# Safe to run again: it installs only what is missing.
set -euo pipefail

QEMU_MIN=9  # the first QEMU with an STM32L4 machine (b-l475e-iot01a), the Nucleo-L432KC's twin
BACKPORTS_LIST=/etc/apt/sources.list.d/hil-bookworm-backports.sources

qemu_new_enough() {
    local major
    major=$(qemu-system-arm --version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\).*/\1/p')
    [ -n "$major" ] && [ "$major" -ge "$QEMU_MIN" ]
}

# The URI of the machine's own Debian bookworm source, from deb822 files (one stanza per
# paragraph: the one whose Suites has plain "bookworm") or one-line sources.list files.
debian_uri() {
    awk 'BEGIN { RS = "" }
         /(^|\n)Suites:[^\n]*[ \t]bookworm([ \t\n]|$)/ && match($0, /(^|\n)URIs:[ \t]*[^ \t\n]+/) {
             uri = substr($0, RSTART, RLENGTH); sub(/^\n?URIs:[ \t]*/, "", uri); print uri; exit }' \
        "$@" 2>/dev/null || true
}
debian_uri_one_line() {
    awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' "$@" 2>/dev/null || true
}

# Debian 12's own QEMU is 7.2; its bookworm-backports suite has QEMU 10 (Debian 13's default).
# The suite is added with the URI of the machine's own Debian source, so a mirror stays the mirror.
add_backports() {
    local uri
    [ -e "$BACKPORTS_LIST" ] && return 0
    uri=$(debian_uri /etc/apt/sources.list.d/*.sources)
    [ -n "$uri" ] || uri=$(debian_uri_one_line /etc/apt/sources.list /etc/apt/sources.list.d/*.list)
    if [ -z "$uri" ]; then
        echo "setup.sh: no Debian bookworm source in /etc/apt to add bookworm-backports beside; add one, or install qemu-system-arm >= $QEMU_MIN" >&2
        exit 1
    fi
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$uri" > "$BACKPORTS_LIST"
}

install_qemu() {
    local release=()
    if [ "$(. /etc/os-release && echo "${VERSION_CODENAME:-}")" = bookworm ]; then
        add_backports
        release=(-t bookworm-backports)
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${release[@]}" qemu-system-arm
    if ! qemu_new_enough; then
        echo "setup.sh: qemu-system-arm >= $QEMU_MIN is needed (found: $(qemu-system-arm --version 2>/dev/null | head -1)); install it from your distribution's backports" >&2
        exit 1
    fi
}

main() {
    cd "$(dirname "$0")"
    local packages=()
    need() { command -v "$1" >/dev/null 2>&1 || packages+=("$2"); }
    need arm-none-eabi-gcc gcc-arm-none-eabi
    need gcc gcc
    need make make
    need chromium chromium  # the HTML report's rendering test (headless)
    need ser2net ser2net  # a labgrid exporter publishes serial ports over RFC2217 through it (docs/distributed.md)
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || packages+=(python3)
    python3 -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3-venv)
    if ((${#packages[@]})); then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"
    fi
    qemu_new_enough || install_qemu

    [ -x .venv/bin/python ] || python3 -m venv .venv
    # Exactly the versions and hashes of requirements.lock (one lock for Python 3.11 to 3.13: Debian 12 and 13),
    # then hil itself, built with the locked setuptools. Renewing the lock: docs/ci.md.
    .venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes -r requirements.lock
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
}

# Sourced (tests/unit/test_ci.py), it only defines the functions above.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
