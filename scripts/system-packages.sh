#!/bin/sh
# Installs the Debian packages the project needs, if missing: clang and lld
# (wasm-ld), which build the WebAssembly payloads (scripts/build_wasm.py).
# Idempotent and silent when everything is present; uses sudo when not root.
set -eu

missing=""
command -v clang >/dev/null 2>&1 || missing="$missing clang"
command -v wasm-ld >/dev/null 2>&1 || missing="$missing lld"
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-packages: missing:$missing; install them with your package manager" >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
else
    echo "system-packages: missing:$missing; run as root or install sudo" >&2
    exit 1
fi

echo "system-packages: installing$missing"
# Debian's lld package provides wasm-ld (as a link to wasm-ld-<version>).
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
# shellcheck disable=SC2086  # $missing is a list of package names
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing

for tool in clang wasm-ld; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "system-packages: $tool is still missing after installing$missing" >&2
        exit 1
    fi
done
