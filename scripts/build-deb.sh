#!/usr/bin/env bash
# Builds the Debian package with cargo-deb: generates the man pages (gzipped) and the bash,
# zsh and fish completions from the binary into target/deb-assets, then packs what
# [package.metadata.deb] in Cargo.toml lists. Prints the path of the .deb.
#
# Usage: scripts/build-deb.sh [--profile release|checked|dev] [--no-build]
#   --profile   the cargo profile whose binary is packed (default release)
#   --no-build  pack the binary that is there (tests pass the one they were built with)
# Needs cargo-deb (cargo install cargo-deb) and dpkg-dev.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
build=yes
while [ $# -gt 0 ]; do
    case $1 in
        --profile) profile=$2; shift 2 ;;
        --no-build) build=no; shift ;;
        *) sed -n '2,9p' "$0" >&2; exit 2 ;;
    esac
done
dir=$profile
[ "$profile" = dev ] && dir=debug
target=${CARGO_TARGET_DIR:-target}
if [ $build = yes ]; then
    cargo build --profile "$profile" --bin telestrip
fi
binary=$target/$dir/telestrip
[ -x "$binary" ] || { echo "build-deb.sh: no binary at $binary" >&2; exit 1; }
assets=target/deb-assets
rm -rf "$assets"
mkdir -p "$assets/man"
"$binary" man "$assets/man" >/dev/null
gzip -9n "$assets"/man/*.1
"$binary" completions bash >"$assets/telestrip.bash"
"$binary" completions zsh >"$assets/_telestrip"
"$binary" completions fish >"$assets/telestrip.fish"
cargo deb --no-build --profile "$profile" --quiet 2>&1 | tail -1
