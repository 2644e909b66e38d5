#!/bin/sh
# Run before rsyslog starts on a gateway (deploy/rsyslog/rsyslog-telestrip.conf, a systemd
# drop-in): makes imfile read the audit log from its start again instead of from where it
# stopped. rsyslog can lose the lines it was sending when it stops while the central host
# is away (rsyslog issues 2710 and 5364: the lines in flight are neither sent nor kept in
# the disk queue), so the only copy it is sure to have is the log itself. The central host
# then receives lines it already has: `telestrip audit verify` and `telestrip report`
# recognise such repeats (byte-identical, chained to the records they repeat) and skip
# them; a lost line would still show as a gap. Rotate the log daily to keep resends short.
#
# Usage: telestrip-ship-rewind.sh AUDIT_LOG [RSYSLOG_WORK_DIRECTORY]
set -eu
log=${1:?usage: telestrip-ship-rewind.sh AUDIT_LOG [RSYSLOG_WORK_DIRECTORY]}
work=${2:-/var/spool/rsyslog}
for state in "$work"/imfile-state:*; do
    [ -f "$state" ] || continue
    # The state is JSON, its file name with escaped slashes: {"filename": "\/var\/log\/...", ...}
    if sed 's#\\/#/#g' "$state" 2>/dev/null | grep -qF "\"$log\""; then
        rm -f "$state"
        logger -t telestrip-ship "imfile will read $log from its start again" 2>/dev/null || true
    fi
done
