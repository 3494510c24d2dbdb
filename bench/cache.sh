#!/usr/bin/env bash
# Disk-cache benchmark (issue 13, section 3): the second sequential read of a 1 GiB object and the
# second `tar c` of a 2,000-file tree after a remount, served from bucketfs's --cache-dir, against
# reading the same data from local files. Set-up: bench/lib.sh (the fast s3s-fs on 127.0.0.1, the
# private network namespace, Mountpoint from the benchmark cache).
#
# Data, made once per run in the work dir and kept there as the local references:
#   big     BIG_MIB (1024) MiB from /dev/urandom, uploaded with `raw_client put-file` (16 MiB parts,
#           4 in flight) as key big
#   tree    TREE_FILES (2000) files of random bytes, sizes uniform in 1 to 64 KiB (seeded, about
#           64 MiB), round robin over TREE_DIRS (20) directories, uploaded with `raw_client
#           put-files` (16 PUTs in flight) as tree/dNN/fNNNN
# Workloads, the same commands for every tool and the references:
#   read    `dd if=F of=/dev/null bs=1M`; dd's byte count must be the object's size
#   tar     `tar cf - -C ROOT tree | wc -c` (GNU tar does not read the files when writing to
#           /dev/null itself); the stream must be at least the tree's bytes
# The server's root (s3s-fs keeps objects as files) is a tmpfs, so that its copies stay in memory
# through the drops below: every GET costs the same in every pass, none waits on the server's disk.
# Passes, each round (BENCH_CACHE_ROUNDS, 3; medians), in this order, the page cache dropped
# (`echo 3 > /proc/sys/vm/drop_caches`, which also drops the cache directory's pages) before each:
#   local        the references: dd and tar of the local copies
#   raw flat listing   a reference for tar only: the raw client lists tree/ flat (no page cache to
#                drop). A remount lists the tree again before its tar sees it (no listing outlives
#                a mount): this is that part alone, and what it costs the server's CPU
#   fuse ceiling (BENCH_CACHE_CEILING=1, default) not a tool: bench/fuse-ceiling --tree over the
#                local copies, which it reads into memory at start (after the drop, before the
#                mount appears; untimed), then serves with bucketfs's FUSE settings (one thread
#                reading requests, readahead, readdirplus, 1 s entry and attribute lifetimes):
#                the same dd and tar through it measure what FUSE alone allows on this machine,
#                the most any FUSE file system can give for the remount target. Skipped with a
#                note when fuse-ceiling did not build
#   bucketfs cold      a fresh mount with --cache-dir C --max-disk-cache 2048 over an empty C (new
#                each round): read, then tar; unmount
#   bucketfs remount   a new mount over the same C: read, then tar, served from C (the target)
#   cache files (cat)  (BENCH_CACHE_FILES=1, default) a diagnostic, not a tool: after the remount
#                pass, one `cat` of all of C's block files in directory order, after a drop: what
#                the disk gives for bucketfs's layout (one file per 1 MiB block) without bucketfs
#   bucketfs-no-posix cold / remount   the same with --no-posix-metadata: without a HEAD per file
#                for its POSIX headers, the tar's metadata comes from the listings alone, so this
#                variant shows what the disk cache gives when metadata is cheap
#   bucketfs-ro cold / remount   (not by default) the same with --read-only: on a read-write FUSE
#                mount the kernel marks atime stale after every read, so tar's fstat of each file
#                after reading it costs a GETATTR round trip, which a read-only mount never sends
#   mountpoint cold / remount   the same with Mountpoint's --cache C --max-cache-size 2048;
#                Mountpoint empties its cache directory at every mount, so its remount pass is a
#                cold read again: shown as measured
#   mountpoint same mount   (BENCH_CACHE_MP_WARM=1, default) a third pass on the remount's
#                mount, after a drop: Mountpoint's cache at its best, for comparison
# Printed per workload and pass: seconds and MB/s (medians), the speed ratio to the local
# reference (local seconds / seconds; the target is >= 0.8 for bucketfs remount), the daemon's
# peak RSS (VmHWM, max over rounds), its CPU seconds (user + system) during each workload, the
# server's and the command's (dd, or tar and wc) over the same time, the
# requests the server saw during each workload (all, GET, HEAD, LIST; s3s-fs logs one "resolved
# route, op: NAME" line per request at s3s::ops=debug), and the 1-minute load average at the
# pass's start (min-max over rounds); then the block files each bucketfs variant left in C after
# its cold pass, per round (a block not kept is fetched again by the remount pass: its GETs); then
# bucketfs remount's speed as a fraction of the fuse ceiling's, per workload.
# After the rounds (BENCH_CACHE_CHECK=1, default) an untimed check: a mount over the last round's
# cache, after a drop, `cmp`s big and `diff -r`s the tree against the local copies, and counts
# its GETs.
#
# Usage: bench/cache.sh   (as root: FUSE mounts, drop_caches, the network namespace)
# Knobs (environment), besides bench/lib.sh's (BENCH_SERVER=fast|slow, ...):
#   BENCH_CACHE_ROUNDS (3), BENCH_CACHE_BIG_MIB (1024), BENCH_CACHE_TREE_FILES (2000),
#   BENCH_CACHE_TOOLS ("bucketfs bucketfs-no-posix mountpoint"), BENCH_CACHE_MP_WARM (1),
#   BENCH_CACHE_FILES (1), BENCH_CACHE_CEILING (1), BENCH_CACHE_CHECK (1),
#   BENCH_CACHE_TRACE (0; 1: each remount tar, and the ceiling's, runs under bench/fuse-ops.sh, which prints its FUSE
#   requests and their times; the tracing slows the tar, so the table's times grow),
#   BENCH_CACHE_DROP_BEFORE_TAR (0; 1: the page cache is dropped again between each pass's read and
#   its tar, a diagnostic: after the 1 GiB read the remount tar ran slow in about half the rounds;
#   file: only the pages of the file just read, through its mount, are dropped; idle: a 3 s pause
#   instead, which made slow rounds more frequent),
#   BENCH_CACHE_PIN (unset; a CPU number: every tar, and the threads of the daemon serving it, run
#   on that CPU only: a diagnostic that takes the scheduler's placement out of the tar's time),
#   BENCH_CACHE_SCHED (0; 1: each tar runs under `perf record` of the scheduler's wake-ups, summed by
#   bench/wakeups.py: how often tar was woken onto an idle CPU, and the busiest waker -> wakee
#   pairs; slow rounds of the remount tar are those where tar and the FUSE thread run on
#   different CPUs, docs/benchmarks.md),
#   BENCH_CACHE_TIMEOUT (600 s a command).
# Disk: about 3.3 GiB in TMPDIR (the references, two caches); memory: up to 2 GiB of tmpfs.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROUNDS=${BENCH_CACHE_ROUNDS:-3}
BIG_MIB=${BENCH_CACHE_BIG_MIB:-1024}
TREE_FILES=${BENCH_CACHE_TREE_FILES:-2000}
TREE_DIRS=20
TOOLS=${BENCH_CACHE_TOOLS:-"bucketfs bucketfs-no-posix mountpoint"}
CACHE_FILES=${BENCH_CACHE_FILES:-1}
MP_WARM=${BENCH_CACHE_MP_WARM:-1}
CEILING_PASS=${BENCH_CACHE_CEILING:-1}
CHECK=${BENCH_CACHE_CHECK:-1}
TRACE=${BENCH_CACHE_TRACE:-0}
DROP_BEFORE_TAR=${BENCH_CACHE_DROP_BEFORE_TAR:-0}
PIN=${BENCH_CACHE_PIN:-}
SCHED=${BENCH_CACHE_SCHED:-0}
[ "$SCHED" != 1 ] || command -v perf >/dev/null || die "BENCH_CACHE_SCHED=1 needs perf (apt install linux-perf)"
TAR_WRAP=()
TIMEOUT=${BENCH_CACHE_TIMEOUT:-600}
DISK_CACHE_MIB=2048
TARGET_RATIO=0.8

for tool in $TOOLS; do
  case $tool in bucketfs | bucketfs-no-posix | bucketfs-ro | mountpoint) ;; *) die "BENCH_CACHE_TOOLS: unknown tool $tool" ;; esac
done

bench_prepare "$@"
bench_workdir bucketfs-cache
# A failing command ends the run under set -e: say which.
set -E
trap 'echo "bench: line $LINENO: \"$BASH_COMMAND\" failed" >&2' ERR

# The server's root is a tmpfs: drop_caches, which every pass needs for the caches under test,
# leaves the server's copies in memory, so a GET costs the same in every pass and no pass waits on
# the server's disk. lib.sh's cleanup removes the work dir without crossing into mounts, so the
# server is stopped and the tmpfs unmounted first.
mount -t tmpfs -o size=$((BIG_MIB + 1024))m,mode=0700 bench-cache-data "$DATA"
cache_cleanup() {
  local status=$?
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    is_mounted "$MNT" && { fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -u -z "$MNT"; }
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  is_mounted "$DATA" && { umount "$DATA" || umount -l "$DATA" || echo "bench: could not unmount $DATA" >&2; }
  # The status as an argument: re-raising it with `(exit "$status")` ran the ERR trap and, under
  # set -e, ended this function before bench_cleanup, leaving the work dir (about 380 MiB) behind.
  bench_cleanup "$status"
}
trap cache_cleanup EXIT
TOOLS=$(available_tools "$TOOLS")
if [ "$CEILING_PASS" = 1 ] && [ ! -x "$CEILING" ]; then
  note "fuse ceiling skipped: bench/fuse-ceiling did not build"
  CEILING_PASS=0
fi
REF=$WORK/ref
BF_CACHE=$WORK/cache-bucketfs
MP_CACHE=$WORK/cache-mountpoint
mkdir -p "$REF"

# mount_tool runs "$BUCKETFS" with the benchmark's flags; this wrapper adds the disk cache. exec
# keeps one process, whose command line still matches mount_tool's pgrep.
mkdir -p "$WORK/bin/cached"
cat >"$WORK/bin/cached/bucketfs" <<EOF
#!/bin/sh
exec "$BUCKETFS" "\$@" --cache-dir "$BF_CACHE" --max-disk-cache $DISK_CACHE_MIB
EOF
chmod +x "$WORK/bin/cached/bucketfs"
MOUNTPOINT_BASE_OPTS=$MOUNTPOINT_OPTS

bench_header
note "tools:      $TOOLS"
note "data:       $BIG_MIB MiB object, $TREE_FILES files (1-64 KiB) in $TREE_DIRS directories; $ROUNDS round(s)"
note "bucketfs:   $(tool_flags bucketfs) + --cache-dir DIR --max-disk-cache $DISK_CACHE_MIB"
[[ " $TOOLS " == *" bucketfs-no-posix "* ]] && note "            bucketfs-no-posix: the same + --no-posix-metadata"
[[ " $TOOLS " == *" bucketfs-ro "* ]] && note "            bucketfs-ro: the same + --read-only"
[[ " $TOOLS " == *" mountpoint "* ]] && note "mountpoint: $(tool_flags mountpoint) --cache DIR --max-cache-size $DISK_CACHE_MIB"
[ "$CEILING_PASS" = 1 ] && note "ceiling:    fuse-ceiling --tree REF MNT (the local copies, from memory; bucketfs's FUSE settings)"

# One "resolved route, op: NAME" line per request (as in walk.sh). The prefix assignment lasts for
# the call only, so lib.sh's cleanup copies the log to bench/ only when the user asked for it.
BENCH_SERVER_LOG="${BENCH_SERVER_LOG:+$BENCH_SERVER_LOG,}s3s::ops=debug" bench_start_server
SERVER_LOG=$WORK/server.log
log_offset() { stat -c %s "$SERVER_LOG"; }
# Requests since byte offset $1 of the server's log, as "total GET HEAD LIST".
requests_since() {
  tail -c +"$(($1 + 1))" "$SERVER_LOG" | { grep -F 'resolved route, op: ' || true; } |
    awk '{ op = $0; sub(/.*resolved route, op: /, "", op); sub(/[^A-Za-z0-9].*/, "", op); n++
           if (op == "GetObject") g++
           else if (op == "HeadObject") h++
           else if (op == "ListObjectsV2" || op == "ListObjects") l++ }
         END { printf "%d %d %d %d\n", n, g, h, l }'
}

# ---------------------------------------------------------------------------------------------
# The data.

step "generating the data in $REF"
start=$EPOCHREALTIME
head -c $((BIG_MIB * 1048576)) /dev/urandom >"$REF/big"
python3 - "$REF/tree" "$TREE_FILES" "$TREE_DIRS" <<'EOF'
import os, random, sys
root, files, dirs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(13)
for i in range(files):
    d = os.path.join(root, "d%02d" % (i % dirs))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%04d" % i), "wb") as f:
        f.write(rng.randbytes(rng.randint(1024, 65536)))
EOF
BIG_BYTES=$(stat -c %s "$REF/big")
TREE_BYTES=$(find "$REF/tree" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
[ "$(find "$REF/tree" -type f | wc -l)" -eq "$TREE_FILES" ] || die "generated tree has the wrong number of files"
note "big: $BIG_BYTES bytes; tree: $TREE_FILES files, $TREE_BYTES bytes; generated in $(seconds_since "$start") s"

step "uploading with the raw client"
note "$(raw put-file --bucket "$BUCKET" --key big --file "$REF/big" --part-size-mib 16 --concurrency 4)"
note "$(raw put-files --bucket "$BUCKET" --dir "$REF/tree" --prefix tree/ --concurrency 16)"
[ "$(stat -c %s "$DATA/$BUCKET/big")" -eq "$BIG_BYTES" ] || die "the server holds big with another size"
[ "$(find "$DATA/$BUCKET/tree" -type f | wc -l)" -eq "$TREE_FILES" ] || die "the server holds another number of tree files"

# ---------------------------------------------------------------------------------------------
# One pass: read, then tar, under ROOT (MNT or REF). Sets read_s, tar_s (seconds); dies on a
# short read.

timed_read() {
  local file=$1 out start before_cpu
  children_cpu_now
  before_cpu=$children_cpu
  start=$EPOCHREALTIME
  out=$(timeout "$TIMEOUT" dd if="$file" of=/dev/null bs=1M 2>&1) || die "dd of $file failed: $out"
  read_s=$(seconds_since "$start")
  children_cpu_since "$before_cpu"
  read_ccpu=$children_cpu_used
  local bytes
  bytes=$(awk '/bytes/ { print $1; exit }' <<<"$out")
  [ "$bytes" = "$BIG_BYTES" ] || die "dd of $file read $bytes bytes, expected $BIG_BYTES"
}

timed_tar() {
  local root=$1 bytes start before_cpu
  children_cpu_now
  before_cpu=$children_cpu
  start=$EPOCHREALTIME
  bytes=$(timeout "$TIMEOUT" "${TAR_WRAP[@]}" sh -c 'tar cf - -C "$1" tree | wc -c' tar "$root") ||
    die "tar of $root/tree failed"
  tar_s=$(seconds_since "$start")
  children_cpu_since "$before_cpu"
  tar_ccpu=$children_cpu_used
  [ "$bytes" -ge "$TREE_BYTES" ] || die "tar of $root/tree wrote $bytes bytes, less than the tree's $TREE_BYTES"
}

# watched_tar ROOT: timed_tar under the diagnostics BENCH_CACHE_PIN (the tar, and the daemon's
# threads if one runs, on that CPU) and BENCH_CACHE_SCHED (the scheduler's wake-ups during the tar,
# recorded by perf and summed by bench/wakeups.py).
watched_tar() {
  local root=$1 perf_pid= data=$WORK/sched.data
  # The caller's wrapper, with taskset in front for this tar only.
  local TAR_WRAP=("${TAR_WRAP[@]}")
  if [ -n "$PIN" ]; then
    [ -n "${daemon_pid:-}" ] && taskset -a -p -c "$PIN" "$daemon_pid" >/dev/null
    TAR_WRAP=(taskset -c "$PIN" "${TAR_WRAP[@]}")
  fi
  if [ "$SCHED" = 1 ]; then
    perf record -q -a -e sched:sched_wakeup,sched:sched_switch -o "$data" 2>/dev/null &
    perf_pid=$!
    sleep 0.5 # perf's start-up, not the tar's
  fi
  timed_tar "$root"
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    note "tar of $root in ${tar_s}s: $(perf script -i "$data" 2>/dev/null | "$ROOT/bench/wakeups.py" tar)"
    rm -f "$data" "$data.old"
  fi
}

# record_pass PASS: the figures of a pass just run (read_s, tar_s, rss, read_req, tar_req,
# pass_load).
record_pass() {
  local pass=$1
  record "read:$pass" "$read_s"
  record "tar:$pass" "$tar_s"
  record "read:$pass:cpu" "$read_cpu"
  record "tar:$pass:cpu" "$tar_cpu"
  record "read:$pass:scpu" "$read_scpu"
  record "tar:$pass:scpu" "$tar_scpu"
  record "read:$pass:ccpu" "$read_ccpu"
  record "tar:$pass:ccpu" "$tar_ccpu"
  local w i name reqs
  for w in read tar; do
    if [ "$w" = read ]; then reqs=("${read_req[@]}"); else reqs=("${tar_req[@]}"); fi
    i=0
    for name in req get head list; do
      record "$w:$pass:$name" "${reqs[$i]:--}"
      i=$((i + 1))
    done
  done
  [ -n "${rss:-}" ] && record "$pass:rss" "$rss"
  record "$pass:load" "$pass_load"
  note "$(printf '%-22s' "$pass") read ${read_s}s (CPU ${read_cpu}s), tar ${tar_s}s (CPU ${tar_cpu}s, server ${tar_scpu}s, tar and wc ${tar_ccpu}s); requests read ${read_req[0]:--} (GET ${read_req[1]:--}), tar ${tar_req[0]:--} (GET ${tar_req[1]:--}, HEAD ${tar_req[2]:--}, LIST ${tar_req[3]:--})${rss:+; VmHWM $rss MiB}; load $pass_load"
}

# mounted_pass TOOL PASS [keep]: read and tar through a mount of TOOL (already mounted when
# keep is "mounted"); unmounts unless keep is "keep".
mounted_pass() {
  local tool=$1 pass=$2 keep=${3:-} offset
  drop_caches
  pass_load=$(cut -d' ' -f1 /proc/loadavg)
  if [ "$keep" != mounted ]; then
    case $tool in
      bucketfs*) BUCKETFS=$WORK/bin/cached/bucketfs mount_tool "$tool" ;;
      mountpoint) mkdir -p "$MP_CACHE"; MOUNTPOINT_OPTS="$MOUNTPOINT_BASE_OPTS --cache $MP_CACHE --max-cache-size $DISK_CACHE_MIB" mount_tool mountpoint ;;
    esac
  fi
  offset=$(log_offset)
  sample_start
  timed_read "$MNT/big"
  sample_stop
  read_cpu=$daemon_cpu read_scpu=$server_cpu
  read_req=($(requests_since "$offset"))
  offset=$(log_offset)
  TAR_WRAP=()
  [ "$TRACE" = 1 ] && [[ $pass == *remount ]] && TAR_WRAP=("$ROOT/bench/fuse-ops.sh")
  drop_before_tar "$MNT/big"
  sample_start
  watched_tar "$MNT"
  sample_stop
  TAR_WRAP=()
  tar_cpu=$daemon_cpu tar_scpu=$server_cpu
  tar_req=($(requests_since "$offset"))
  [ "$keep" = keep ] || unmount_tool
  record_pass "$pass"
}

# The diagnostic BENCH_CACHE_DROP_BEFORE_TAR, between a pass's read of FILE and its tar.
drop_before_tar() {
  case $DROP_BEFORE_TAR in
    1) drop_caches ;;
    file) dd if="$1" iflag=nocache count=0 status=none ;;
    idle) sleep 3 ;;
  esac
}

local_pass() {
  drop_caches
  pass_load=$(cut -d' ' -f1 /proc/loadavg)
  timed_read "$REF/big"
  drop_before_tar "$REF/big"
  watched_tar "$REF"
  read_req=() tar_req=() rss= read_cpu=- tar_cpu=- read_scpu=- tar_scpu=-
  record_pass local
}

# The raw client listing tree/ flat, alone: the metadata a remount fetches again before its tar can
# see the tree (no listing outlives a mount), and what that costs the server.
listing_pass() {
  local daemon_pid= offset start before_cpu out
  offset=$(log_offset)
  children_cpu_now
  before_cpu=$children_cpu
  sample_start
  start=$EPOCHREALTIME
  out=$(raw list --bucket "$BUCKET" --prefix tree/ --recursive) || die "the raw listing of tree/ failed"
  tar_s=$(seconds_since "$start")
  children_cpu_since "$before_cpu"
  sample_stop "$children_cpu_used"
  [ "$(field objects "$out")" = "$TREE_FILES" ] || die "the raw listing of tree/ found $(field objects "$out") keys"
  tar_cpu=$daemon_cpu tar_scpu=$server_cpu tar_ccpu=-
  tar_req=($(requests_since "$offset"))
  read_s=- read_cpu=- read_scpu=- read_ccpu=- read_req=() rss= pass_load=$(cut -d' ' -f1 /proc/loadavg)
  record_pass "raw flat listing"
}

# The same read and tar through bench/fuse-ceiling serving the local copies from memory. It reads
# them all (1 GiB and more) before its mount appears, hence a longer wait than mount_tool's.
ceiling_pass() {
  drop_caches
  pass_load=$(cut -d' ' -f1 /proc/loadavg)
  "$CEILING" --tree "$REF" "$MNT" >>"$WORK/ceiling.log" 2>&1 &
  daemon_pid=$!
  local i
  for i in $(seq 1 1200); do
    is_mounted "$MNT" && break
    is_running "$daemon_pid" || break
    sleep 0.1
  done
  is_mounted "$MNT" || { tail -5 "$WORK/ceiling.log" >&2; die "fuse ceiling: $MNT did not get mounted"; }
  # bucketfs raises its mount's kernel readahead to 4 MiB when root; so must the ceiling (as in
  # lib.sh's mount_tool).
  echo 4096 >"/sys/class/bdi/$(mountpoint -d "$MNT")/read_ahead_kb" || note "fuse ceiling: could not set its readahead"
  sample_start
  timed_read "$MNT/big"
  sample_stop
  read_cpu=$daemon_cpu read_scpu=-
  [ "$TRACE" = 1 ] && TAR_WRAP=("$ROOT/bench/fuse-ops.sh")
  sample_start
  watched_tar "$MNT"
  sample_stop
  TAR_WRAP=()
  tar_cpu=$daemon_cpu tar_scpu=-
  unmount_tool
  read_req=() tar_req=() rss=
  record_pass "fuse ceiling"
}

cache_usage() { echo "$(du -sm "$1" | cut -f1) MiB in $(find "$1" -type f -name '*.blk' | wc -l) block files"; }
# The blocks the data needs: 1 MiB blocks (src/cache/block.rs), one file each.
EXPECTED_BLOCKS=$(((BIG_BYTES + 1048575) / 1048576 + TREE_FILES))
# bucketfs also keeps the POSIX headers of every file it opens for reading, in a file of the same
# kind (big and each tree file).
EXPECTED_FILES=$((EXPECTED_BLOCKS + TREE_FILES + 1))

# The cache directory's files read straight, one after another in directory order, after a drop:
# what the disk gives for this layout without bucketfs (a diagnostic beside the local reference).
cache_files_pass() {
  local start bytes
  drop_caches
  start=$EPOCHREALTIME
  bytes=$(find "$BF_CACHE" -type f -name '*.blk' -print0 | xargs -0 cat | wc -c)
  record "cachefiles" "$(seconds_since "$start")"
  record "cachefiles:bytes" "$bytes"
}

PASSES="local|raw flat listing$([ "$CEILING_PASS" = 1 ] && echo "|fuse ceiling" || true)"
for round in $(seq 1 "$ROUNDS"); do
  step "round $round of $ROUNDS; load $(load)"
  local_pass
  listing_pass
  [ "$CEILING_PASS" = 1 ] && ceiling_pass
  for tool in $TOOLS; do
    case $tool in
      bucketfs*)
        rm -rf --one-file-system "$BF_CACHE"
        mounted_pass "$tool" "$tool cold"
        kept=$(find "$BF_CACHE" -type f -name '*.blk' | wc -l)
        record "$tool:kept" "$kept"
        note "$(printf '%-22s' "") cache dir after unmount: $(cache_usage "$BF_CACHE") (the data has $EXPECTED_BLOCKS blocks, $EXPECTED_FILES files with the headers)"
        mounted_pass "$tool" "$tool remount"
        note "$(printf '%-22s' "") cache dir after unmount: $(cache_usage "$BF_CACHE")"
        if [ "$tool" = bucketfs ] && [ "$CACHE_FILES" = 1 ]; then
          cache_files_pass
          note "$(printf '%-22s' "cache files (cat)") $(echo ${R[cachefiles]} | awk '{ print $NF }')s for $(echo ${R[cachefiles:bytes]} | awk '{ print $NF }') bytes"
        fi
        ;;
      mountpoint)
        mounted_pass mountpoint "mountpoint cold"
        if [ "$MP_WARM" = 1 ]; then
          mounted_pass mountpoint "mountpoint remount" keep
          mounted_pass mountpoint "mountpoint same mount" mounted
        else
          mounted_pass mountpoint "mountpoint remount"
        fi
        ;;
    esac
  done
done
for tool in $TOOLS; do
  case $tool in
    bucketfs*) PASSES="$PASSES|$tool cold|$tool remount" ;;
    mountpoint) PASSES="$PASSES|mountpoint cold|mountpoint remount$([ "$MP_WARM" = 1 ] && echo "|mountpoint same mount" || true)" ;;
  esac
done

if [ "$CHECK" = 1 ] && [[ " $TOOLS " == *" bucketfs "* ]]; then
  step "check: the remounted cache serves the same bytes (cmp big, diff -r tree; untimed)"
  drop_caches
  BUCKETFS=$WORK/bin/cached/bucketfs mount_tool bucketfs
  offset=$(log_offset)
  cmp "$REF/big" "$MNT/big" || die "check: big differs from the local copy"
  diff -r "$REF/tree" "$MNT/tree" || die "check: the tree differs from the local copy"
  check_req=($(requests_since "$offset"))
  unmount_tool
  note "identical; requests ${check_req[0]} (GET ${check_req[1]}, HEAD ${check_req[2]}, LIST ${check_req[3]})"
fi

# ---------------------------------------------------------------------------------------------
# The table.

mbps() { awk -v b="$1" -v s="$2" 'BEGIN { if (s == "-" || s == 0) print "-"; else printf "%.0f", b / s / 1e6 }'; }
load_range() { [ -n "${R[$1]:-}" ] && printf '%s\n' ${R[$1]} | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "-" hi }' || echo -; }

echo
step "results: median of $ROUNDS round(s); MB = 10^6 bytes; server $(server_description)"
note "x local: local seconds / seconds (1 = as fast as reading the local copy; target >= $TARGET_RATIO)"
note "req, GET, HEAD, LIST: requests the server saw during the workload (median); RSS: the daemon's VmHWM at the"
note "pass's end, max over rounds; CPU s: user + system seconds during the workload (medians) of the daemon"
note "(raw flat listing: the client), of the server (sv), and of the command (cmd: dd, or tar and wc);"
note "load: 1-minute load average at the pass's start, min-max over rounds"
note "read: dd bs=1M of the $BIG_MIB MiB object; tar: tar cf - | wc -c of $TREE_FILES files, $TREE_BYTES bytes"
echo
printf '    %-6s %-24s %9s %7s %7s %6s %6s %6s %6s %6s %6s %7s %7s %s\n' workload pass seconds MB/s "x local" req GET HEAD LIST "CPU s" "CPU sv" "CPU cmd" "RSS MiB" load
for w in read tar; do
  bytes=$([ "$w" = read ] && echo "$BIG_BYTES" || echo "$TREE_BYTES")
  local_s=$(med "$w:local")
  IFS='|' read -ra pass_list <<<"$PASSES"
  for pass in "${pass_list[@]}"; do
    [ "$w" = read ] && [ "$pass" = "raw flat listing" ] && continue
    v=$(med "$w:$pass")
    printf '    %-6s %-24s %9s %7s %7s %6s %6s %6s %6s %6s %6s %7s %7s %s\n' "$w" "$pass" "$v" "$(mbps "$bytes" "$v")" \
      "$(ratio "$local_s" "$v")" "$(med "$w:$pass:req")" "$(med "$w:$pass:get")" "$(med "$w:$pass:head")" \
      "$(med "$w:$pass:list")" "$(med "$w:$pass:cpu")" "$(med "$w:$pass:scpu")" "$(med "$w:$pass:ccpu")" \
      "$(maxof "$pass:rss")" "$(load_range "$pass:load")"
  done
done

if [ -n "${R[cachefiles]:-}" ]; then
  v=$(med cachefiles)
  note "cache files (cat): $v s, $(mbps "$(med cachefiles:bytes)" "$v") MB/s: bucketfs's block files (both workloads' data,"
  note "  with headers) read by one cat in directory order after a drop; the disk's speed for that layout"
fi
if [ "$CEILING_PASS" = 1 ] && [[ " $TOOLS " == *" bucketfs "* ]]; then
  for w in read tar; do
    note "$w: bucketfs remount / fuse ceiling = $(ratio "$(med "$w:fuse ceiling")" "$(med "$w:bucketfs remount")") (speed; 1 = all that FUSE allows)"
  done
fi
for tool in $TOOLS; do
  [ -n "${R[$tool:kept]:-}" ] && note "$tool: block files in the cache after the cold pass, per round:${R[$tool:kept]} (the data has $EXPECTED_BLOCKS blocks; with the files' headers, $EXPECTED_FILES files)"
done

echo
step "targets (issue 13, section 3): the second pass after a remount >= $TARGET_RATIO x the local read's speed"
for tool in $TOOLS; do
  [[ $tool == bucketfs* ]] || continue
  for w in read tar; do
    target "$w, $tool remount: x local" "$(ratio "$(med "$w:local")" "$(med "$w:$tool remount")")" '>=' "$TARGET_RATIO"
  done
  for w in read tar; do
    target "$w, $tool remount: GETs (0: all data from the cache)" "$(med "$w:$tool remount:get")" '<=' 0
  done
done
note "load average at the end: $(load)"
