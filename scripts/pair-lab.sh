#!/usr/bin/env bash
# A telestrip gateway pair in network namespaces, built from the files in deploy/ and
# deploy/pair/: the namespace test of the pair (tests/pair.rs) and the failover benchmark
# (benches/failover.sh) use it. Needs root; addresses exist only inside the namespaces.
#
#   client 10.79.1.10 ── LAN 10.79.1.0/24 (virtual gateway 10.79.1.1) ─┬─ gateway A .2 ─┬─ WAN 10.79.2.0/24 (virtual .1) ── server 10.79.2.10, .20
#                                                                      └─ gateway B .3 ─┘
#   sync link 10.79.3.0/24: A .2, B .3 (conntrackd FTFW), Redis .9
#
# Usage: pair-lab.sh up ID DIR TELESTRIP [PACK_KEY]
#                                         build it all, start everything, wait for A as master;
#                                         with PACK_KEY (a minisign public key file) the
#                                         gateways take signed rules from DIR/www/pack, served
#                                         by the server at http://10.79.2.10:8080/pack/
#        pair-lab.sh down ID DIR           stop everything, remove the namespaces
#        pair-lab.sh fail ID a|b           cut a gateway's LAN and WAN links
#        pair-lab.sh restore ID a|b        bring them back
#        pair-lab.sh master ID             prints which gateway holds the virtual addresses
# ID names the namespaces (tsp-ID-client, -a, -b, -server, -switch, -redis); DIR holds the
# configurations, logs, audit logs and pid files.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
action=${1:-}
id=${2:-}
[ -n "$action" ] && [ -n "$id" ] || { sed -n '2,19p' "$0" >&2; exit 2; }
ns() { echo "tsp-$id-$1"; }
in_ns() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }

lan_ip() { case $1 in a) echo 10.79.1.2 ;; b) echo 10.79.1.3 ;; esac; }
wan_ip() { case $1 in a) echo 10.79.2.2 ;; b) echo 10.79.2.3 ;; esac; }
sync_ip() { case $1 in a) echo 10.79.3.2 ;; b) echo 10.79.3.3 ;; esac; }
peer() { case $1 in a) echo b ;; b) echo a ;; esac; }

# start_in NS PIDFILE STDOUT STDERR COMMAND...: runs COMMAND in the background in its own
# session, its pid in PIDFILE.
start_in() {
    local n=$1 pidfile=$2 out=$3 err=$4
    shift 4
    ip netns exec "$(ns "$n")" setsid sh -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" \
        >"$out" 2>"$err" &
}

veth() { # veth NS1 IF1 NS2 IF2
    ip link add "$2" netns "$(ns "$1")" type veth peer name "$4" netns "$(ns "$3")"
}

up() {
    local dir=$1 telestrip=$2 pack_key=${3:-}
    mkdir -p "$dir"
    chmod 755 "$dir"
    if [ -n "$pack_key" ]; then
        # Readable by the daemons' unprivileged user, which re-reads it on every reload.
        install -m 644 "$pack_key" "$dir/pack.pub"
        mkdir -p "$dir/www/pack"
    fi
    for n in client a b server switch redis; do
        ip netns add "$(ns $n)"
        in_ns $n ip link set lo up
    done
    for br in lan wan sync; do
        in_ns switch ip link add "br$br" type bridge
        in_ns switch ip link set "br$br" up
    done
    veth client eth0 switch c0
    veth a lan switch al
    veth b lan switch bl
    veth a wan switch aw
    veth b wan switch bw
    veth server eth0 switch s0
    veth a sync switch as
    veth b sync switch bs
    veth redis eth0 switch r0
    for port in c0:lan al:lan bl:lan aw:wan bw:wan s0:wan as:sync bs:sync r0:sync; do
        in_ns switch ip link set dev "${port%:*}" master "br${port#*:}"
        in_ns switch ip link set dev "${port%:*}" up
    done
    in_ns client ip addr add 10.79.1.10/24 dev eth0
    in_ns client ip link set eth0 up
    in_ns client ip route add default via 10.79.1.1
    in_ns server ip addr add 10.79.2.10/24 dev eth0
    in_ns server ip addr add 10.79.2.20/24 dev eth0
    in_ns server ip link set eth0 up
    in_ns server ip route add 10.79.1.0/24 via 10.79.2.1
    in_ns redis ip addr add 10.79.3.9/24 dev eth0
    in_ns redis ip link set eth0 up
    # Redis for the learned state (no persistence: it holds only what expires anyway).
    start_in redis "$dir/redis.pid" "$dir/redis.log" "$dir/redis.log" redis-server \
        --bind 10.79.3.9 --port 6379 --protected-mode no --save '' --appendonly no
    for g in a b; do
        in_ns $g ip addr add "$(lan_ip $g)/24" dev lan
        in_ns $g ip addr add "$(wan_ip $g)/24" dev wan
        in_ns $g ip addr add "$(sync_ip $g)/24" dev sync
        for i in lan wan sync; do in_ns $g ip link set $i up; done
        in_ns $g sysctl -qw net.ipv4.ip_forward=1
        # Replicated TCP entries do not know the exact windows the peer saw.
        in_ns $g sysctl -qw net.netfilter.nf_conntrack_tcp_be_liberal=1 2>/dev/null ||
            { in_ns $g modprobe nf_conntrack 2>/dev/null || true; }
        gateway_up $g "$dir" "$telestrip"
    done
    servers_up "$dir"
    # keepalived last: A (priority 150) becomes master.
    for g in a b; do
        start_in $g "$dir/$g/keepalived.main.pid" "$dir/$g/keepalived.log" "$dir/$g/keepalived.log" \
            keepalived --dont-fork --log-console --vrrp --use-file "$dir/$g/keepalived.conf" \
            --pid "$dir/$g/keepalived.pid" --vrrp_pid "$dir/$g/vrrp.pid"
    done
    wait_for "A to become master" 30 master_is a
    # The backup hook's `conntrackd -t` (run as B starts, in BACKUP state) empties B's
    # table of stale entries PurgeTimeout seconds later; flows started before that would
    # lose their replicated copies on B until their next event.
    wait_for "B's conntrackd to purge its stale entries" 20 \
        grep -q 'flushing kernel conntrack table (scheduled)' "$dir/b/conntrackd.log"
}

# On the server: HTTPS (tests/fixtures/servers.py, /bytes/N for downloads), TCP and UDP
# sinks that count what arrives (tests/fixtures/pair_flows.py, counts in DIR/sink.json),
# and dnsmasq: metrics.example.org is an alias (CNAME) of the telemetry name
# v10.events.data.microsoft.com, whose address is 10.79.2.20: the gateway blocks that
# answer (CNAME cloaking) and learns the address from it. Everything stops by itself after
# 10 minutes.
servers_up() {
    local dir=$1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=telestrip-pair-lab -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
    start_in server "$dir/servers.pid" "$dir/servers.log" "$dir/servers.log" \
        python3 "$here/tests/fixtures/servers.py" --cert "$dir/cert.pem" --key "$dir/key.pem" \
        --seconds 600
    start_in server "$dir/sink.pid" "$dir/sink.log" "$dir/sink.log" \
        python3 "$here/tests/fixtures/pair_flows.py" sink \
        --tcp 10.79.2.10:8443 --tcp 10.79.2.20:8443 --udp 10.79.2.10:443 \
        --out "$dir/sink.json" --seconds 600
    start_in server "$dir/dnsmasq.pid" "$dir/dnsmasq.log" "$dir/dnsmasq.log" \
        dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces \
        --listen-address=10.79.2.10 --host-record=v10.events.data.microsoft.com,10.79.2.20 \
        --cname=metrics.example.org,v10.events.data.microsoft.com \
        --address=/www.example.org/10.79.2.10 --log-facility=/dev/null
    wait_for "the sink" 20 test -s "$dir/sink.json"
    if [ -d "$dir/www" ]; then
        start_in server "$dir/www.pid" "$dir/www.log" "$dir/www.log" \
            timeout 600 python3 -m http.server 8080 --bind 10.79.2.10 --directory "$dir/www"
        wait_for "the rule pack server" 20 in_ns server curl -s -o /dev/null http://10.79.2.10:8080/
    fi
}

# Configurations from the templates in deploy/pair/, daemons started.
gateway_up() {
    local g=$1 dir=$2 telestrip=$3 p
    p=$(peer "$g")
    mkdir -p "$dir/$g/audit"
    chmod 777 "$dir/$g/audit"
    local ignore=""
    for address in 10.79.1.1 10.79.2.1 10.79.1.2 10.79.1.3 10.79.2.2 10.79.2.3 10.79.3.2 10.79.3.3; do
        ignore+="            IPv4_address $address"$'\n'
    done
    sed -e "s|@SYNC_IF@|sync|; s|@SYNC_IP@|$(sync_ip "$g")|; s|@PEER_SYNC_IP@|$(sync_ip "$p")|" \
        -e "s|@LOCK@|$dir/$g/conntrackd.lock|; s|@SOCKET@|$dir/$g/conntrackd.ctl|" \
        -e "s|Syslog on|Syslog off|; s|LogFile off|LogFile $dir/$g/conntrackd.log|" \
        <(uncommented "$here/deploy/pair/conntrackd.conf") |
        awk -v ignore="$ignore" '/^[[:space:]]*@IGNORE@[[:space:]]*$/ { printf "%s", ignore; next } { print }' \
            >"$dir/$g/conntrackd.conf"
    # The hook as keepalived runs it, pointed at this gateway's conntrackd.
    cat >"$dir/$g/failover.sh" <<EOF
#!/bin/sh
CONNTRACKD_CONFIG=$dir/$g/conntrackd.conf exec sh $here/deploy/pair/pair-failover.sh "\$@" >>$dir/$g/failover.log 2>&1
EOF
    chmod 755 "$dir/$g/failover.sh"
    local priority=100
    [ "$g" = a ] && priority=150
    sed -e "s|@LAN_IF@|lan|g; s|@WAN_IF@|wan|g" \
        -e "s|@PEER_LAN_IP@|$(lan_ip "$p")|; s|@PEER_WAN_IP@|$(wan_ip "$p")|" \
        -e "s|@LAN_IP@|$(lan_ip "$g")|; s|@WAN_IP@|$(wan_ip "$g")|" \
        -e "s|@LAN_VIP@|10.79.1.1/24|; s|@WAN_VIP@|10.79.2.1/24|" \
        -e "s|@PRIORITY@|$priority|g; s|@HOOK@|$dir/$g/failover.sh|g; s|@PASSWORD@|telestri|g" \
        -e "s|^    enable_script_security|    # (no script security: the lab's files live under /tmp)|" \
        <(uncommented "$here/deploy/pair/keepalived.conf") >"$dir/$g/keepalived.conf"
    # The bundled rules with drop in place of reject: a dropped client keeps retransmitting,
    # so its flow is still there after the failover and shows that B applies A's verdict
    # (a rejected client gives up at the first reset, leaving nothing to carry over).
    mkdir -p "$dir/$g/bundled-rules"
    for file in "$here"/rules/*.yaml; do
        sed 's/^    action: reject$/    action: drop/' "$file" >"$dir/$g/bundled-rules/$(basename "$file")"
    done
    chmod -R a+rX "$dir/$g/bundled-rules"
    # The control plane listens on every address: a site Prometheus scrapes it over the sync
    # link (tests/fleet.rs).
    cat >"$dir/$g/telestrip.yaml" <<EOF
queues: [0]
fail: open
rules: $dir/$g/bundled-rules
listen: 0.0.0.0:9477
gateway: gw-$g
site: pairlab
pair:
  virtual_addresses: [10.79.1.1, 10.79.2.1]
shared_state:
  redis: redis://10.79.3.9:6379/0
  prefix: telestrip:pairlab
audit:
  path: $dir/$g/audit/audit.jsonl
  heartbeat_seconds: 1
EOF
    if [ -f "$dir/pack.pub" ]; then
        cat >>"$dir/$g/telestrip.yaml" <<EOF
rules_update:
  source: http://10.79.2.10:8080/pack/
  public_key_file: $dir/pack.pub
  state_dir: $dir/$g/rules
  attempts: 2
  timeout_seconds: 10
  must_keep_working: [www.example.org, login.microsoftonline.com]
EOF
    fi
    in_ns "$g" bash "$here/deploy/iptables.sh" add --queues 0 --fail open
    start_in "$g" "$dir/$g/conntrackd.pid" "$dir/$g/conntrackd.out" "$dir/$g/conntrackd.out" \
        conntrackd -C "$dir/$g/conntrackd.conf"
    start_in "$g" "$dir/$g/telestrip.pid" "$dir/$g/telestrip.out" "$dir/$g/telestrip.log" \
        "$telestrip" run --config "$dir/$g/telestrip.yaml"
    wait_for "telestrip on $g" 20 in_ns "$g" curl -sf -o /dev/null http://127.0.0.1:9477/readyz
    wait_for "conntrackd on $g" 20 in_ns "$g" conntrackd -C "$dir/$g/conntrackd.conf" -s
}

# A template without its comment lines (they name the placeholders).
uncommented() { sed '/^[[:space:]]*#/d' "$1"; }

master_is() {
    in_ns "$1" ip -4 addr show dev lan | grep -q '10.79.1.1/' &&
        in_ns "$1" ip -4 addr show dev wan | grep -q '10.79.2.1/'
}

wait_for() { # wait_for WHAT SECONDS COMMAND...
    local what=$1 seconds=$2
    shift 2
    local end=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $end ]; then
            echo "pair-lab: timed out waiting for $what" >&2
            return 1
        fi
        sleep 0.1
    done
}

down() {
    local dir=$1
    for pidfile in "$dir"/*/keepalived.pid "$dir"/*/telestrip.pid "$dir"/*/conntrackd.pid "$dir"/*.pid; do
        [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    sleep 0.3
    for n in client a b server switch redis; do
        # Whatever still runs in the namespace goes with it.
        ip netns pids "$(ns $n)" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns del "$(ns $n)" 2>/dev/null || true
    done
}

case $action in
    up) up "$3" "$4" "${5:-}" ;;
    down) down "$3" ;;
    fail) in_ns "$3" ip link set lan down; in_ns "$3" ip link set wan down ;;
    restore) in_ns "$3" ip link set lan up; in_ns "$3" ip link set wan up ;;
    master)
        if master_is a; then echo a; elif master_is b; then echo b; else echo none; fi ;;
    *) sed -n '2,19p' "$0" >&2; exit 2 ;;
esac
