#!/usr/bin/env bash
# Runs the whole telestrip test suite. As root (CI) it first installs what the tests use on
# a fresh Debian machine: the Rust toolchain if missing, and the real clients and servers of
# the namespace tests (iproute2, tcpdump, dnsmasq, curl, openssl, dig, ethtool, chromium,
# prometheus with promtool), and aioquic from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        build-essential ca-certificates curl iproute2 iptables nftables tcpdump dnsmasq-base \
        dnsutils openssl ethtool python3 chromium systemd prometheus >/dev/null
    # aioquic: the QUIC server and client of the fixtures and namespace tests; scapy: the
    # raw-socket attacker of the inline evasion test.
    # Debian's own python3 needs python3-pip and --break-system-packages for that.
    for module in aioquic scapy; do
        if ! python3 -c "import $module" 2>/dev/null; then
            python3 -m pip --version >/dev/null 2>&1 || apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
            python3 -m pip install --quiet "$module" 2>/dev/null ||
                python3 -m pip install --quiet --break-system-packages "$module"
        fi
    done
fi
if ! command -v cargo >/dev/null; then
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

# What STYLE.md promises, enforced: rustfmt (our crate; vendor/nfq stays as upstream wrote
# it), and clippy with warnings as errors.
if command -v rustup >/dev/null; then
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi
cargo fmt -- --check
cargo build --release --locked
cargo clippy --release --locked --all-targets -- -D warnings
cargo test --release --locked
# The engine's offline tests once more with integer overflow and debug assertions checked
# (the release profile checks neither).
cargo test --profile checked --locked --lib --test evasion --test threads \
    --test fuzz_regressions --test pcap_fixtures --test cli
# The benchmarks must keep compiling even though tests do not run them.
cargo bench --locked --no-run
