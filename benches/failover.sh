#!/usr/bin/env bash
# Failover figures of a telestrip gateway pair (not a test): the pair of scripts/pair-lab.sh
# (real keepalived, conntrackd, Redis, telestrip in namespaces), measured in one run:
#   - failover gap: from gateway A's links going down to the first packet through B, and the
#     same for the failback to A (ICMP echo every 10 ms from the client to the server; ICMP
#     is not queued to telestrip, so this is the network's gap alone);
#   - verdict replication lag: from the block mark on A's connection (telestrip's ctnetlink
#     update, seen by `conntrack -E` on A) to the same mark on B's copy of the connection;
#     and telestrip's own lag from the verdict to that update (its metric).
# Needs root, the packages of the pair test and ping (iputils-ping).
# Usage: benches/failover.sh [RUNS] (default 3)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-3}
id=bench$$
dir=$(mktemp -d)
telestrip=${TELESTRIP:-$here/target/release/telestrip}
[ -x "$telestrip" ] || { echo "build first: cargo build --release" >&2; exit 2; }
command -v ping >/dev/null || { echo "ping is missing: apt-get install iputils-ping" >&2; exit 2; }
lab() { bash "$here/scripts/pair-lab.sh" "$@"; }
in_ns() { local n=$1; shift; ip netns exec "tsp-$id-$n" "$@"; }
trap 'lab down $id $dir >/dev/null 2>&1; rm -rf $dir' EXIT
lab up "$id" "$dir" "$telestrip"

# The longest silence between echo replies (ping -D timestamps) that ends between Unix times
# FROM and TO, in milliseconds.
longest_gap() { # longest_gap FILE FROM TO
    awk -F'[][]' -v from="$2" -v to="$3" '/bytes from/ {
            t = $2 + 0
            if (last && t > from && t <= to && t - last > gap) gap = t - last
            last = t
        }
        END { printf "%.0f", gap * 1000 }' "$1"
}

wait_master() {
    local want=$1 end=$((SECONDS + 30))
    until [ "$(lab master "$id")" = "$want" ]; do
        [ $SECONDS -lt $end ] || { echo "no takeover by $want" >&2; exit 1; }
        sleep 0.1
    done
}

echo "run  failover_gap_ms  failback_gap_ms  replication_lag_ms  telestrip_lag_us"
for run in $(seq 1 "$runs"); do
    # Replication lag of one block verdict.
    in_ns a timeout 10 conntrack -E -e NEW,UPDATE -p tcp --dport 8443 -o timestamp >"$dir/events-a" 2>/dev/null &
    in_ns b timeout 10 conntrack -E -e NEW,UPDATE -p tcp --dport 8443 -o timestamp >"$dir/events-b" 2>/dev/null &
    sleep 0.5
    (sleep 5 | in_ns client timeout 5 openssl s_client -connect 10.79.2.10:8443 \
        -servername v10.events.data.microsoft.com >/dev/null 2>&1 || true) &
    wait
    first_mark() { awk -F'[][]' '/mark=32/ { print $2; exit }' "$1"; }
    at_a=$(first_mark "$dir/events-a")
    at_b=$(first_mark "$dir/events-b")
    lag=$(awk -v a="${at_a:-0}" -v b="${at_b:-0}" 'BEGIN { if (a && b) printf "%.1f", (b - a) * 1000; else print "n/a" }')
    metrics=$(in_ns a curl -s http://127.0.0.1:9477/metrics)
    own=$(awk '/^telestrip_conntrack_mark_lag_microseconds_total / { s = $2 }
               /^telestrip_conntrack_mark_updates_total\{result="(updated|created)"\}/ { n += $2 }
               END { if (n) printf "%.0f", s / n; else print "n/a" }' <<<"$metrics")

    # Failover and failback gaps.
    in_ns client timeout 40 stdbuf -oL ping -D -i 0.01 -W 1 10.79.2.10 >"$dir/ping" 2>/dev/null &
    ping_pid=$!
    sleep 1
    failed=$(date +%s.%N)
    lab fail "$id" a
    wait_master b
    sleep 3
    restored=$(date +%s.%N)
    lab restore "$id" a
    wait_master a
    sleep 3
    ended=$(date +%s.%N)
    kill -INT "$ping_pid" 2>/dev/null || true
    wait || true
    printf '%-4s %-16s %-16s %-19s %s\n' "$run" "$(longest_gap "$dir/ping" "$failed" "$restored")" \
        "$(longest_gap "$dir/ping" "$restored" "$ended")" "$lag" "$own"
done
