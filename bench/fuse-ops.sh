#!/usr/bin/env bash
# Counts the FUSE requests the kernel sends while a command runs, by type, and how long the daemon
# took to answer them, from the kernel's fuse_request_send and fuse_request_end tracepoints
# (tracefs; Linux 6.x). A diagnostic for what a workload costs in round trips, whatever file system
# serves it: e.g. tar of a tree after a remount of bucketfs sends per file OPEN, one or two READs,
# RELEASE, and on a read-write mount a GETATTR (the kernel marks atime stale after each read, so
# tar's fstat asks again; see docs/benchmarks.md).
#
# Per type: the count, the time from send to answer (the daemon's turn, kernel queueing included)
# in all and per request, and at the end the time with no request outstanding, which is the
# command's own work and the kernel's outside FUSE. Tracing costs time too: compare the shares,
# not the total against an untraced run.
#
# Usage (as root): bench/fuse-ops.sh COMMAND [ARGS...]
#   e.g. bench/fuse-ops.sh sh -c 'tar cf - -C /mnt/bucket tree | wc -c'   (GNU tar skips reading
#   files when writing to /dev/null)
# Every FUSE mount on the machine counts, not only the one the command uses.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }
TRACING=/sys/kernel/tracing
if [ ! -e "$TRACING/events" ]; then
  mount -t tracefs nodev "$TRACING" || { echo "fuse-ops: cannot mount tracefs at $TRACING" >&2; exit 1; }
fi
EVENTS=("$TRACING/events/fuse/fuse_request_send" "$TRACING/events/fuse/fuse_request_end")
for event in "${EVENTS[@]}"; do
  [ -e "$event/enable" ] || { echo "fuse-ops: this kernel has no ${event##*/} tracepoint" >&2; exit 1; }
done
set_events() { for event in "${EVENTS[@]}"; do echo "$1" >"$event/enable"; done; }
trap 'set_events 0' EXIT
old_size=$(cut -d" " -f1 "$TRACING/buffer_size_kb")
echo 65536 >"$TRACING/buffer_size_kb"
echo >"$TRACING/trace"
set_events 1
rc=0
"$@" || rc=$?
set_events 0
echo "$old_size" >"$TRACING/buffer_size_kb"
echo "FUSE requests sent while it ran (count, send to answer in all and per request):" >&2
# Lines read "... TIMESTAMP: fuse_request_send: connection C req U opcode N (NAME) len L" and
# "... TIMESTAMP: fuse_request_end: connection C req U len L error E".
awk '
  / fuse_request_(send|end): / {
    for (i = 1; i <= NF; i++) if ($i ~ /^fuse_request_/) { at = $(i - 1); sub(/:$/, "", at); kind = $i; break }
    for (; i <= NF; i++) { if ($i == "connection") c = $(i + 1); if ($i == "req") u = $(i + 1); if ($i ~ /^\(FUSE_/) name = $i }
    id = c " " u
    if (first == "") first = at
    last = at
    if (kind == "fuse_request_send:") {
      gsub(/[()]/, "", name); op[id] = name; sent[id] = at; count[name]++
      if (outstanding++ == 0) idle += (busy_end == "" ? 0 : at - busy_end)
    } else if (id in sent) {
      took[op[id]] += at - sent[id]; delete sent[id]
      if (--outstanding == 0) busy_end = at
    }
  }
  END {
    for (name in count) printf "%8d %-20s %9.1f ms %8.1f us\n", count[name], name, took[name] * 1e3, took[name] * 1e6 / count[name] | "sort -rn"
    close("sort -rn")
    printf "first request to last answer %.1f ms; no request outstanding for %.1f ms of it\n", (last - first) * 1e3, idle * 1e3
  }' "$TRACING/trace" >&2
if grep -q 'LOST' "$TRACING/trace"; then echo "(the trace buffer overflowed: counts are low)" >&2; fi
exit "$rc"
