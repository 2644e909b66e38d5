#!/usr/bin/env bash
# Scale of `telestrip report --fleet` (not a test): the logs of 50 gateways (25 sites of two),
# a heartbeat a minute and a matched flow a minute each, for a week and for a month, then
# the fleet report over each, with its time and peak memory (GNU time). Memory must not grow
# with the length of the logs: compare the two peaks.
# Usage: benches/fleet_report.sh [GATEWAYS] (default 50); needs about 3 GB in $TMPDIR.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
gateways=${1:-50}
cd "$here"
cargo build --release --quiet --example fleet_logs
cargo build --release --quiet
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
echo "days  lines      bytes        report_s  peak_rss_mb"
for days in 7 30; do
    rm -rf "$dir/logs"
    target/release/examples/fleet_logs "$dir/logs" --gateways "$gateways" --days "$days" 2>/dev/null
    lines=$(cat "$dir"/logs/*/audit.jsonl | wc -l)
    bytes=$(du -sb "$dir/logs" | cut -f1)
    /usr/bin/time -f '%e %M' -o "$dir/time" target/release/telestrip report --fleet \
        --format json -o "$dir/fleet.json" "$dir/logs" 2>/dev/null || true
    read -r seconds kb <"$dir/time"
    printf '%-5s %-10s %-12s %-9s %s\n' "$days" "$lines" "$bytes" "$seconds" "$((kb / 1024))"
done
