#!/usr/bin/env bash
# Runs the whole telestrip test suite. As root (CI) it first installs what the tests use on
# a fresh Debian machine: the Rust toolchain if missing, and the real clients and servers of
# the namespace tests (iproute2, tcpdump, dnsmasq, curl, openssl, dig, ethtool, chromium,
# prometheus with promtool; for the gateway pair keepalived, conntrackd, conntrack and
# redis-server; rsyslog with RELP for the shipped audit logs; minisign, which checks the
# signed rule packs; lintian for the Debian package; apache2-utils for htpasswd, whose
# bcrypt hashes the control plane's web configuration takes; libnetfilter-queue-dev for the C
# floor of the NFQUEUE benchmark), aioquic from PyPI, and cargo-deb, which builds the package.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        build-essential ca-certificates curl patch iproute2 iptables nftables tcpdump dnsmasq-base \
        dnsutils openssl ethtool python3 chromium systemd prometheus \
        keepalived conntrackd conntrack redis-server rsyslog rsyslog-relp man-db minisign lintian \
        apache2-utils libnetfilter-queue-dev >/dev/null
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

# cargo-deb builds the Debian package that tests/package.rs installs (as root only: the
# test that needs it runs only as root).
if [ "$(id -u)" = 0 ] && ! command -v cargo-deb >/dev/null; then
    cargo install --quiet --locked cargo-deb
fi

# What STYLE.md promises, enforced: rustfmt over the whole workspace (vendor/nfq included:
# upstream's code is rustfmt-clean, and telestrip's tests there must be too), and clippy
# with warnings as errors on every target of every crate (the benchmarks and examples
# included, so they keep compiling), with each crate's [lints] table.
if command -v rustup >/dev/null; then
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi
cargo fmt --all --check
cargo clippy --locked --workspace --exclude nfq --all-targets --features fault-injection -- -D warnings

# The C programs of the NFQUEUE benchmark (examples/nfqueue_bench.rs builds and runs them)
# still compile, warnings as errors.
if [ "$(id -u)" = 0 ]; then
    for program in benches/nfqueue/*.c; do
        gcc -O2 -Wall -Wextra -Werror -fsyntax-only "$program"
    done
fi

# The declared rust-version builds (where rustup can install it).
msrv=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
if command -v rustup >/dev/null && rustup toolchain install "$msrv" --profile minimal >/dev/null 2>&1; then
    cargo "+$msrv" check --locked --workspace --exclude nfq --all-targets --features fault-injection
elif [ "${CI:-}" = true ]; then
    echo "cannot install Rust $msrv (the declared rust-version) to check it" >&2
    exit 1
fi

# Test hooks stay out of the released binary: a plain build of `telestrip` turns on neither
# the gateway's fault-injection nor its testkit feature.
if cargo tree --locked -p telestrip -e normal,features -i telestrip-gateway --prefix none | grep -E 'telestrip-gateway feature "(fault-injection|testkit)"'; then
    echo "a test feature is on in the released build" >&2
    exit 1
fi

# The vendored nfq is the published crate plus vendor/nfq/telestrip.patch, nothing else;
# then its own tests (including telestrip's tests of the netlink messages it builds).
nfq_upstream=$(mktemp -d)
curl -sSfL https://static.crates.io/crates/nfq/nfq-0.2.5.crate | tar -xz -C "$nfq_upstream"
(cd "$nfq_upstream/nfq-0.2.5" && patch -s -p1 < "$OLDPWD/vendor/nfq/telestrip.patch")
diff -r "$nfq_upstream/nfq-0.2.5/src" vendor/nfq/src
rm -rf "$nfq_upstream"
cargo test --profile checked --locked -p nfq

# Every test once, with integer overflow and debug assertions checked (profile `checked`:
# optimised like release, without its link-time optimisation, which only makes linking the
# test binaries slow). The namespace tests are #[ignore]d for a plain `cargo test`; as
# root they run, and fail if anything they need is missing.
ignored=()
if [ "$(id -u)" = 0 ]; then
    ignored=(--include-ignored)
fi
cargo test --profile checked --locked --workspace --exclude nfq --features fault-injection -- "${ignored[@]}"

# A fuzz smoke: every cargo-fuzz target for 10 s under AddressSanitizer, seeded from the
# fixtures; a crash fails the run (long campaigns: fuzz/run.sh SECONDS, see README).
command -v cargo-fuzz >/dev/null || cargo install --locked --quiet cargo-fuzz
bash fuzz/run.sh 10
