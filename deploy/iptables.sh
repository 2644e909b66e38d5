#!/usr/bin/env bash
# Installs (add) or removes (remove) the firewall rules telestrip needs, for IPv4 and IPv6:
# undecided TCP and UDP flows go to NFQUEUE; the verdict comes back as a mark, which is saved
# on the connection so the kernel handles the rest of the flow (accept, drop, or reject with
# a TCP reset / ICMP unreachable) without queueing it again.
#
# Usage: iptables.sh add|remove [--queues 0 | 0:1] [--fail open|closed] [--mark-shift 4]
#                               [--hook forward|output] [--iptables iptables|iptables-legacy]
# The queues and mark shift must match telestrip.yaml. --hook forward filters routed
# traffic (a gateway); --hook output filters the host's own traffic.
set -euo pipefail

action=${1:-}
shift || true
queues=0:1
fail=open
shift_bits=4
hook=forward
ipt=iptables
while [ $# -gt 0 ]; do
    case $1 in
        --queues) queues=$2; shift 2 ;;
        --fail) fail=$2; shift 2 ;;
        --mark-shift) shift_bits=$2; shift 2 ;;
        --hook) hook=$2; shift 2 ;;
        --iptables) ipt=$2; shift 2 ;;
        *) echo "iptables.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
case $action in add|remove) ;; *) sed -n '2,12p' "$0" >&2; exit 2 ;; esac
case $fail in open|closed) ;; *) echo "iptables.sh: --fail must be open or closed" >&2; exit 2 ;; esac
case $hook in forward) parent=FORWARD ;; output) parent=OUTPUT ;; *) echo "iptables.sh: --hook must be forward or output" >&2; exit 2 ;; esac
ip6t=${ipt/iptables/ip6tables}

hex() { printf '0x%x' $(( $1 << shift_bits )); }
mask=$(hex 15)
accept=$(hex 1); drop=$(hex 2); reject=$(hex 3); drop_packet=$(hex 6); reject_packet=$(hex 7)
if [[ $queues == *:* ]]; then
    queue_target=(-j NFQUEUE --queue-balance "$queues")
else
    queue_target=(-j NFQUEUE --queue-num "$queues")
fi
# With --queue-bypass the kernel accepts packets while no telestrip is bound (fail open).
[ "$fail" = open ] && queue_target+=(--queue-bypass)

rules() {
    local t=$1
    # Verdicts for one packet only (DNS messages).
    $t -A TELESTRIP -m mark --mark "$drop_packet/$mask" -j DROP
    $t -A TELESTRIP -m mark --mark "$reject_packet/$mask" -p tcp -j REJECT --reject-with tcp-reset
    $t -A TELESTRIP -m mark --mark "$reject_packet/$mask" -j REJECT
    # Final verdicts of a flow: remember them on the connection, then act.
    for verdict in "$accept" "$drop" "$reject"; do
        $t -A TELESTRIP -m mark --mark "$verdict/$mask" -j CONNMARK --save-mark --nfmask "$mask" --ctmask "$mask"
    done
    $t -A TELESTRIP -m mark --mark "$accept/$mask" -j ACCEPT
    $t -A TELESTRIP -m mark --mark "$drop/$mask" -j DROP
    $t -A TELESTRIP -m mark --mark "$reject/$mask" -p tcp -j REJECT --reject-with tcp-reset
    $t -A TELESTRIP -m mark --mark "$reject/$mask" -j REJECT
    # A new TCP connection is always inspected, even when the kernel reopens the tracking
    # entry of an earlier connection on the same ports (and with it that one's mark).
    $t -A TELESTRIP -p tcp --syn "${queue_target[@]}"
    # A QUIC flow allowed by its first ClientHello: the client's later Initials (long header
    # with the fixed bit and a type whose high bit is 0, in datagrams of 1,200 bytes or more,
    # as client Initials must be) still go up, so a real hello sent behind a decoy is read.
    # They are few: the client's handshake only. IPv6 with extension headers is not matched.
    if [ "$t" = "$ip6t" ]; then
        quic_initial=(-m length --length 1248:65535 -m u32 --u32 "48>>24&0xE0=0xC0")
    else
        quic_initial=(-m length --length 1228:65535 -m u32 --u32 "0>>22&0x3C@8>>24&0xE0=0xC0")
    fi
    $t -A TELESTRIP -p udp -m connmark --mark "$accept/$mask" -m conntrack --ctdir ORIGINAL \
        "${quic_initial[@]}" "${queue_target[@]}"
    # Kernel fast path: the rest of a decided flow never reaches user space.
    $t -A TELESTRIP -m connmark --mark "$accept/$mask" -j ACCEPT
    $t -A TELESTRIP -m connmark --mark "$drop/$mask" -j DROP
    $t -A TELESTRIP -m connmark --mark "$reject/$mask" -p tcp -j REJECT --reject-with tcp-reset
    $t -A TELESTRIP -m connmark --mark "$reject/$mask" -j DROP
    # Replies of undecided TCP flows (SYN-ACK, server banners) carry no name telestrip needs;
    # DNS replies do (learned addresses), so they still go up. UDP replies go up too: the
    # NXDOMAIN telestrip injects for a dropped query opens a connection entry from the DNS
    # server to the client, so the client's next query from that port is a "reply", and
    # would pass unjudged (tests/compliance.rs caught one query in 400 doing so).
    $t -A TELESTRIP -p tcp -m conntrack --ctdir REPLY ! --sport 53 -j ACCEPT
    # A client's bare ACK (flags ACK only, no payload: the IP length is exactly the headers')
    # carries nothing to read. Matched for the common header sizes only (no IP options or
    # IPv6 extension headers; TCP without options, or with timestamps as Linux and macOS
    # send them); any other still goes up. The SYN always goes up: the decoy checks compare
    # later segments with its TTL, options and checksum.
    local doff
    for doff in 5 8; do
        if [ "$t" = "$ip6t" ]; then
            bare_ack="4>>16=$((doff * 4))&&4>>8&0xFF=6&&52>>28=$doff"
        else
            bare_ack="0>>24&0xF=5&&0&0xFFFF=$((20 + doff * 4))&&32>>28=$doff"
        fi
        $t -A TELESTRIP -p tcp --tcp-flags ALL ACK -m u32 --u32 "$bare_ack" -j ACCEPT
    done
    # Everything else (new and undecided TCP/UDP flows, DNS) goes to telestrip.
    $t -A TELESTRIP -p tcp "${queue_target[@]}"
    $t -A TELESTRIP -p udp "${queue_target[@]}"
    # Tunnels (IP in IP, IPv6 in IP, GRE): telestrip judges the flows inside them, packet by
    # packet, since the kernel tracks only the tunnel. VXLAN and GTP-U are UDP, queued above.
    for proto in 4 41 47; do
        $t -A TELESTRIP -p "$proto" "${queue_target[@]}"
    done
}

for t in "$ipt" "$ip6t"; do
    # Always start from nothing, so `add` can run again (service restarts).
    $t -D "$parent" -j TELESTRIP 2>/dev/null || true
    $t -F TELESTRIP 2>/dev/null || true
    $t -X TELESTRIP 2>/dev/null || true
    if [ "$action" = add ]; then
        $t -N TELESTRIP
        rules "$t"
        $t -I "$parent" 1 -j TELESTRIP
    fi
done
