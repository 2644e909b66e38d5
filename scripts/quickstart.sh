#!/usr/bin/env bash
# Sets telestrip up on a fresh Debian machine and runs its main job with the bundled rules:
# an offline audit of real captures (tests/fixtures/*.pcap), then, as root, `telestrip demo`:
# the inline gateway in network namespaces with real curl and dig traffic.
# Installs a C toolchain, Rust and the demo's tools when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages="build-essential curl ca-certificates"
# The demo's network and clients (root only).
[ "$(id -u)" = 0 ] && packages="$packages iproute2 iptables dnsutils dnsmasq-base openssl python3 procps"
if ! command -v cc >/dev/null || ! command -v curl >/dev/null || \
   { [ "$(id -u)" = 0 ] && ! { command -v dig && command -v dnsmasq && command -v iptables; } >/dev/null; }; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    $sudo apt-get install -y -qq --no-install-recommends $packages >/dev/null
fi
# The demo's QUIC server and client (aioquic from PyPI; Debian's own python3 needs pip
# and --break-system-packages for that).
if [ "$(id -u)" = 0 ] && ! python3 -c 'import aioquic' 2>/dev/null; then
    python3 -m pip --version >/dev/null 2>&1 || apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
    python3 -m pip install --quiet aioquic 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages aioquic
fi
if ! command -v cargo >/dev/null; then
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

cargo build --release --locked --quiet
echo "== telestrip rules check (bundled rules)"
./target/release/telestrip rules check
echo
echo "== telestrip pcap tests/fixtures/*.pcap (bundled rules)"
status=0
./target/release/telestrip pcap tests/fixtures/*.pcap || status=$?
echo
case $status in
    0) echo "Exit code 0: no telemetry found." ;;
    1) echo "Exit code 1: telemetry flows found (expected for these sample captures)." ;;
    *) echo "Exit code $status: an input could not be read."; exit "$status" ;;
esac
echo
if [ "$(id -u)" = 0 ]; then
    echo "== telestrip demo (inline gateway in network namespaces)"
    ./target/release/telestrip demo
else
    echo "Run as root to see the inline gateway too: sudo ./target/release/telestrip demo"
fi
