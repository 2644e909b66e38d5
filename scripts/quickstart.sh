#!/usr/bin/env bash
# Sets telestrip up on a fresh Debian machine and runs its main job on the bundled sample:
# an offline audit of real captures (tests/fixtures/*.pcap) with the bundled rules.
# Installs a C toolchain and Rust when they are missing (needs root or sudo for apt).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cc >/dev/null || ! command -v curl >/dev/null; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq build-essential curl ca-certificates >/dev/null
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
