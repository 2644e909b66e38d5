#!/usr/bin/env bash
# Drop versus reject, as clients meet them: how long curl, dig, the system resolver (glibc,
# via getent) and headless Chromium take to give up on a blocked telemetry name, and how many
# attempts (TCP SYNs, TLS data segments, DNS queries) they send meanwhile. Runs telestrip
# inline (NFQUEUE, deploy/iptables.sh) in three namespaces of its own, client - gateway -
# server, with a TLS server (openssl s_server) and dnsmasq on the server; traffic stays
# between those namespaces. Needs root.
#
# Usage: benches/fail_fast.sh [TELESTRIP] [CAP_SECONDS]
#   TELESTRIP    the binary (default: target/release/telestrip)
#   CAP_SECONDS  the longest a client is given (default 60; a client still waiting then is
#                reported as ">CAP")
# Prints one table: client, action, seconds until it gave up, what it said, attempts.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
telestrip=${1:-$root/target/release/telestrip}
cap=${2:-60}
[ "$(id -u)" = 0 ] || { echo "fail_fast.sh: needs root (namespaces, firewall rules)" >&2; exit 2; }
[ -x "$telestrip" ] || { echo "fail_fast.sh: no binary at $telestrip (cargo build --release)" >&2; exit 2; }
for tool in ip iptables curl dig getent dnsmasq openssl tcpdump chromium timeout; do
    command -v "$tool" >/dev/null || { echo "fail_fast.sh: $tool is missing" >&2; exit 2; }
done

id=$$
c=tsff-c$id g=tsff-g$id s=tsff-s$id
work=$(mktemp -d)
chmod 755 "$work"
name=telemetry.bench.example
server=10.81.2.2

cleanup() {
    set +e
    [ -n "${daemon:-}" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    for pid in ${servers:-}; do kill "$pid" 2>/dev/null; done
    for ns in $c $g $s; do ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null; done
    sleep 0.2
    for ns in $c $g $s; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "/etc/netns/$c" "$work"
}
trap cleanup EXIT

for ns in $c $g $s; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip link add c0 netns "$c" type veth peer name gc netns "$g"
ip link add s0 netns "$s" type veth peer name gs netns "$g"
ip -n "$c" addr add 10.81.1.2/24 dev c0; ip -n "$c" link set c0 up
ip -n "$g" addr add 10.81.1.1/24 dev gc; ip -n "$g" link set gc up
ip -n "$g" addr add 10.81.2.1/24 dev gs; ip -n "$g" link set gs up
ip -n "$s" addr add $server/24 dev s0; ip -n "$s" link set s0 up
ip -n "$c" route add default via 10.81.1.1
ip -n "$s" route add default via 10.81.2.1
ip netns exec "$g" sysctl -qw net.ipv4.ip_forward=1
# The client's system resolver asks the server's dnsmasq, through the gateway.
mkdir -p "/etc/netns/$c"
echo "nameserver $server" > "/etc/netns/$c/resolv.conf"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj "/CN=$name" -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
ip netns exec "$s" openssl s_server -quiet -accept 443 -www -cert "$work/cert.pem" \
    -key "$work/key.pem" >/dev/null 2>&1 &
servers=$!
ip netns exec "$s" dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces \
    --listen-address=$server --address=/$name/$server --log-facility=/dev/null &
servers="$servers $!"
ip netns exec "$g" bash "$root/deploy/iptables.sh" add --queues 0 --fail open

run_telestrip() {
    local action=$1
    mkdir -p "$work/rules-$action"
    cat > "$work/rules-$action/bench.yaml" <<EOF
vendor: bench
rules:
  - id: bench-telemetry
    action: $action
    domains: [$name]
    references: [https://example.org/bench]
    tests:
      match: [$name]
      no_match: [www.bench.example]
EOF
    cat > "$work/telestrip-$action.yaml" <<EOF
queues: [0]
fail: open
listen: null
rules: $work/rules-$action
EOF
    ip netns exec "$g" "$telestrip" run --config "$work/telestrip-$action.yaml" \
        > /dev/null 2> "$work/telestrip-$action.log" &
    daemon=$!
    for _ in $(seq 100); do
        grep -q "telestrip: filtering" "$work/telestrip-$action.log" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "fail_fast.sh: telestrip did not start:" >&2
    cat "$work/telestrip-$action.log" >&2
    exit 1
}

stop_telestrip() {
    kill "$daemon"; wait "$daemon" 2>/dev/null || true; daemon=
}

# Runs CLIENT-COMMAND in the client namespace with the gateway's LAN side captured; prints
# "seconds exit-status syns data-segments dns-queries".
measure() {
    local command=$1
    : > "$work/dump.err"
    rm -f "$work/cap.pcap"
    ip netns exec "$g" tcpdump -Z root --immediate-mode -i gc -n -U -w "$work/cap.pcap" "src host 10.81.1.2" 2>"$work/dump.err" &
    local dump=$!
    for _ in $(seq 100); do
        grep -q "listening on" "$work/dump.err" && break
        sleep 0.05
    done
    local start end status
    start=$(date +%s.%N)
    set +e
    ip netns exec "$c" timeout "$cap" bash -c "$command" > "$work/out" 2>&1
    status=$?
    set -e
    end=$(date +%s.%N)
    sleep 0.3
    kill "$dump"; wait "$dump" 2>/dev/null || true
    [ -n "${FAIL_FAST_DEBUG:-}" ] && cat "$work/dump.err" >&2
    local syns data dns
    syns=$(tcpdump -nr "$work/cap.pcap" 'tcp[tcpflags] & tcp-syn != 0' 2>/dev/null | wc -l)
    data=$(tcpdump -nr "$work/cap.pcap" 'tcp and (ip[2:2] - ((ip[0]&0xf)<<2) - ((tcp[12]&0xf0)>>2)) > 0' 2>/dev/null | wc -l)
    dns=$(tcpdump -nr "$work/cap.pcap" 'udp dst port 53' 2>/dev/null | grep -c " $name\. " || true)
    printf '%.1f %s %s %s %s\n' "$(echo "$end - $start" | bc)" "$status" "$syns" "$data" "$dns"
}

describe() {
    case $1 in
        124) echo "still waiting at ${cap}s" ;;
        0) echo "exit 0" ;;
        *) echo "exit $1" ;;
    esac
}

printf '%-30s %-7s %8s  %-22s %5s %5s %5s\n' CLIENT ACTION SECONDS RESULT SYNS DATA DNS
profile=$work/chromium
# A fresh profile each time (no cached answers or connections); --dump-dom exits once the
# page, or Chromium's error page, has loaded.
chromium="rm -rf $profile; chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking --disable-component-update --disable-sync --ignore-certificate-errors --user-data-dir=$profile --dump-dom"
for action in drop reject; do
    run_telestrip "$action"
    declare -A clients=(
        ["curl https (name known)"]="curl -sk --resolve $name:443:$server https://$name/ -o /dev/null"
        ["curl https (system resolver)"]="curl -sk https://$name/ -o /dev/null"
        ["dig (defaults: 3 tries, 5 s)"]="dig @$server $name"
        ["getent hosts (glibc resolver)"]="getent hosts $name"
        ["chromium (name known)"]="$chromium --host-resolver-rules='MAP $name $server' https://$name/"
        ["chromium (system resolver)"]="$chromium https://$name/"
    )
    for client in "curl https (name known)" "curl https (system resolver)" "dig (defaults: 3 tries, 5 s)" "getent hosts (glibc resolver)" "chromium (name known)" "chromium (system resolver)"; do
        read -r seconds status syns data dns < <(measure "${clients[$client]}")
        printf '%-30s %-7s %8s  %-22s %5s %5s %5s\n' "$client" "$action" "$seconds" "$(describe "$status")" "$syns" "$data" "$dns"
    done
    stop_telestrip
done
echo "(SYNS: TCP connection attempts; DATA: TCP segments with payload, retransmissions included;"
echo " DNS: queries for the blocked name. Capped at ${cap}s per client. telestrip $("$telestrip" --version | cut -d' ' -f2))"
