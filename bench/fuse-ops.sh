#!/usr/bin/env bash
# Counts the FUSE requests the kernel sends while a command runs, by type, from the kernel's
# fuse_request_send tracepoint (tracefs; Linux 6.x). A diagnostic for what a workload costs in
# round trips, whatever file system serves it: e.g. tar of a tree after a remount of bucketfs
# sends per file OPEN, one or two READs, RELEASE, and on a read-write mount a GETATTR (the kernel
# marks atime stale after each read, so tar's fstat asks again; see docs/benchmarks.md).
#
# Usage (as root): bench/fuse-ops.sh COMMAND [ARGS...]
#   e.g. bench/fuse-ops.sh tar cf /dev/null -C /mnt/bucket tree      (GNU tar skips reading
#   files when writing to /dev/null: pipe to wc -c through sh -c instead)
# Every FUSE mount on the machine counts, not only the one the command uses.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }
TRACING=/sys/kernel/tracing
if [ ! -e "$TRACING/events" ]; then
  mount -t tracefs nodev "$TRACING" || { echo "fuse-ops: cannot mount tracefs at $TRACING" >&2; exit 1; }
fi
EVENT=$TRACING/events/fuse/fuse_request_send
[ -e "$EVENT/enable" ] || { echo "fuse-ops: this kernel has no fuse_request_send tracepoint" >&2; exit 1; }
turn_off() { echo 0 >"$EVENT/enable"; }
trap turn_off EXIT
echo >"$TRACING/trace"
echo 1 >"$EVENT/enable"
rc=0
"$@" || rc=$?
turn_off
echo "FUSE requests sent while it ran:" >&2
grep -o '(FUSE_[A-Z_0-9]*)' "$TRACING/trace" | tr -d '()' | sort | uniq -c | sort -rn >&2
if grep -q 'LOST' "$TRACING/trace"; then echo "(the trace buffer overflowed: counts are low)" >&2; fi
exit "$rc"
