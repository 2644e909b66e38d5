#!/bin/sh
# Failover hook of a telestrip gateway pair, run by keepalived (deploy/pair/keepalived.conf)
# when this gateway changes state, as conntrackd's documentation does it:
#   primary: commit the connections replicated from the other gateway (with telestrip's
#            verdict marks) into the kernel, flush the caches, resynchronise them with the
#            kernel, and send everything to the other gateway;
#   backup:  make sure conntrackd runs, shorten the timers of stale local entries, and ask
#            the new primary for its table;
#   fault:   shorten the timers of stale local entries.
# Each step's failure is logged (journal, tag telestrip-pair) and the next one still runs.
#
# Usage: pair-failover.sh primary|backup|fault
# CONNTRACKD_CONFIG names the configuration (default /etc/conntrackd/conntrackd.conf).
set -u
config=${CONNTRACKD_CONFIG:-/etc/conntrackd/conntrackd.conf}
ctd() {
    if ! conntrackd -C "$config" "$@"; then
        logger -t telestrip-pair "conntrackd $* failed (config $config)"
    fi
}
logger -t telestrip-pair "this gateway becomes ${1:-?}"
case ${1:-} in
    primary)
        ctd -c   # commit the external cache into the kernel table
        ctd -f   # flush the internal and external caches
        ctd -R   # resynchronise the internal cache with the kernel table
        ctd -B   # bulk update to the other gateway
        ;;
    backup)
        if ! conntrackd -C "$config" -s >/dev/null 2>&1; then
            logger -t telestrip-pair "conntrackd was not running; starting it"
            ctd -d
        fi
        ctd -t   # shorten the kernel timers of entries this gateway no longer serves
        ctd -n   # request a resynchronisation from the primary
        ;;
    fault)
        ctd -t
        ;;
    *)
        echo "usage: $0 primary|backup|fault" >&2
        exit 2
        ;;
esac
exit 0
