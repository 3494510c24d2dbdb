#!/usr/bin/env bash
# Read benchmark: bucketfs against Mountpoint, s3fs (default and tuned), `rclone mount` and a raw
# aws-sdk-s3 client (no FUSE), all on one local S3 server (patched s3s-fs on 127.0.0.1) holding the
# same data, in one run, beside the ceiling of FUSE itself (bench/fuse-ceiling: a file system of
# ours serving files from memory with bucketfs's FUSE settings). Set-up: bench/lib.sh.
#
# Workloads, each round on a fresh mount, page cache dropped before each (but ls, whose server
# side is warmed once by an untimed listing, and ttfb, see there):
#   read   `dd if=MNT/big of=/dev/null bs=1M`, a BIG_MIB object, MB/s. The server's copy is read
#          into the page cache first so that the server does not wait on its disk. Raw: 8 MiB
#          ranged GETs, 16 in flight. bucketfs also with --max-cache-size 64 (bucketfs-64).
#   par    4 objects of PAR_MIB read at once with the same dd, aggregate MB/s (raw: 4 raw reads)
#   ttfb   `head -c 1 MNT/big` just after mounting (ttfb-cold: lookup + open + first read), then
#          `head -c 1 MNT/p0` beside it on the same mount (ttfb-next); raw: GET bytes=0-0 of each, and
#          (raw+lookup) the HEAD and ListObjectsV2 a cold lookup sends, then the GET. The raw client
#          times its requests inside its process; a mounted tool's figure is net of starting `head`
#          (`head -c 1` of a local file in the page cache, timed the same way, fastest of 5, just
#          before the mount: about 1 ms on the 2-core VM, a third of bucketfs's figure)
#   rand   fio: random 4 KiB reads of big, psync, RAND_SECONDS s, 1 and 4 jobs, IOPS
#   ls     `ls -l` of SMALL_COUNT objects, BENCH_LS_RUNS rounds: with s3fs POSIX headers (posix/)
#          and without (plain/); bucketfs also with --no-posix-metadata, rclone also with
#          --use-server-modtime; raw: ListObjectsV2 alone and with a HEAD per object
#   cp     `cp -r` of TREE_COUNT objects of 16 KiB to a local directory; raw: list + 16 GETs in flight
# Each tool runs the workloads it supports (the ceiling reads only; Mountpoint keeps no POSIX
# metadata, so its ls ignores the headers). Tools run in rotating order within each round so that
# background load spreads over all of them. The final table prints, per workload and tool, the
# median, the speed ratios to raw, to the best peer and (reads) to the ceiling, the daemon's peak
# RSS, and the CPU seconds of the daemon and of the server per GiB; then the issue's targets.
#
# Usage: bench/run.sh [--quick]   (--quick: 128 MiB, 4 x 32 MiB, 1,000 objects, 5 s fio, one round)
# Knobs (environment), besides bench/lib.sh's (BENCH_SERVER=fast|slow, ...):
#   BENCH_RUNS (3; rounds of read, par, ttfb, rand, cp), BENCH_LS_RUNS (3), BENCH_BIG_MIB (1024),
#   BENCH_PAR_MIB (256), BENCH_SMALL_COUNT (10000), BENCH_TREE_COUNT (1000), BENCH_RAND_SECONDS (30),
#   BENCH_RAND_DIRECT (0: buffered fio reads; 1: O_DIRECT, so that the page cache serves none),
#   BENCH_TOOLS ("ceiling bucketfs bucketfs-64 mountpoint s3fs s3fs-tuned rclone raw"),
#   BENCH_WORKLOADS ("read par ttfb rand ls cp").
# Takes about 40 minutes with the defaults on 2 cores (estimate: not yet run at full size).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

RUNS=${BENCH_RUNS:-3}
# One listing of 10,000 keys takes s3s-fs ~10 s, and some variants list more than once.
LS_RUNS=${BENCH_LS_RUNS:-3}
BIG_MIB=${BENCH_BIG_MIB:-1024}
PAR_MIB=${BENCH_PAR_MIB:-256}
SMALL_COUNT=${BENCH_SMALL_COUNT:-10000}
TREE_COUNT=${BENCH_TREE_COUNT:-1000}
RAND_SECONDS=${BENCH_RAND_SECONDS:-30}
# 0: buffered reads, the kernel's page cache counts (what a user gets); 1: O_DIRECT, every read
# reaches the daemon.
RAND_DIRECT=${BENCH_RAND_DIRECT:-0}
TOOLS=${BENCH_TOOLS:-"ceiling bucketfs bucketfs-64 mountpoint s3fs s3fs-tuned rclone raw"}
WORKLOADS=${BENCH_WORKLOADS:-"read par ttfb rand ls cp"}
if [ "${1:-}" = --quick ]; then
  RUNS=1 LS_RUNS=1 BIG_MIB=128 PAR_MIB=32 SMALL_COUNT=1000 TREE_COUNT=200 RAND_SECONDS=5
fi
PAR_FILES=4
TREE_DIRS=4
TREE_OBJECT_BYTES=16384
SMALL_OBJECT_BYTES=1024
RSS_TARGET_MIB=128
RCLONE_CACHE_MODE=off
CEILING_ARGS="$BIG_MIB $PAR_FILES"

bench_prepare "$@"
bench_workdir bucketfs-bench
TOOLS=$(available_tools "$TOOLS")
bench_header
note "tools:      $TOOLS"
bench_start_server

# Which tools run a workload: the ceiling only reads; ttfb and ls need S3 behind the mount.
tools_for() {
  local tool
  for tool in $TOOLS; do
    case $1:$tool in
      ttfb:ceiling | ttfb:bucketfs-64 | rand:raw | rand:bucketfs-64 | cp:ceiling | cp:bucketfs-64) ;;
      *) echo "$tool" ;;
    esac
  done | tr '\n' ' '
}
has_workload() { [[ " $WORKLOADS " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------------------------
# Everything goes in through S3: objects written straight into $DATA would have no stored ETag,
# and s3s-fs would hash the whole file on every request.
step "populating the bucket"
head -c "$((BIG_MIB * 1024 * 1024))" /dev/urandom >"$WORK/big"
BIG_MD5=$(md5sum <"$WORK/big" | cut -d' ' -f1)
note "big ($BIG_MIB MiB, random, multipart): $(raw put-file --bucket "$BUCKET" --key big --file "$WORK/big")"
if has_workload par || has_workload ttfb; then
  for i in $(seq 0 $((PAR_FILES - 1))); do
    head -c "$((PAR_MIB * 1024 * 1024))" "$WORK/big" >"$WORK/p"
    note "p$i ($PAR_MIB MiB): $(raw put-file --bucket "$BUCKET" --key "p$i" --file "$WORK/p")"
  done
  rm -f "$WORK/p"
fi
rm -f "$WORK/big"
if has_workload ls; then
  note "posix/ ($SMALL_COUNT x $SMALL_OBJECT_BYTES B, s3fs headers): $(raw put-tree --bucket "$BUCKET" \
    --prefix posix/ --count "$SMALL_COUNT" --size "$SMALL_OBJECT_BYTES" --posix-metadata)"
  note "plain/ ($SMALL_COUNT x $SMALL_OBJECT_BYTES B, no headers): $(raw put-tree --bucket "$BUCKET" \
    --prefix plain/ --count "$SMALL_COUNT" --size "$SMALL_OBJECT_BYTES")"
fi
if has_workload cp; then
  note "tree/ ($TREE_COUNT x $TREE_OBJECT_BYTES B in $TREE_DIRS dirs): $(raw put-tree --bucket "$BUCKET" \
    --prefix tree/ --count "$TREE_COUNT" --size "$TREE_OBJECT_BYTES" --dirs "$TREE_DIRS")"
fi
SERVER_BIG=$DATA/$BUCKET/big
[ -f "$SERVER_BIG" ] || die "s3s-fs does not keep the object at $SERVER_BIG"
BIG_BYTES=$(stat -c %s "$SERVER_BIG")
PAR_BYTES=$((PAR_FILES * PAR_MIB * 1024 * 1024))
bench_client_configs

BIG_GIB=$(awk -v b="$BIG_BYTES" -v g="$GIB" 'BEGIN { print b / g }')
PAR_GIB=$(awk -v b="$PAR_BYTES" -v g="$GIB" 'BEGIN { print b / g }')
workload read "sequential read $BIG_MIB MiB (dd)" MB/s higher "$BIG_GIB"
workload par "$PAR_FILES x $PAR_MIB MiB in parallel" MB/s higher "$PAR_GIB"
workload ttfb-cold "first byte, cold mount" ms lower 0
workload ttfb-next "first byte, 2nd file" ms lower 0
workload rand1 "random 4 KiB, 1 job" IOPS higher 0
workload rand4 "random 4 KiB, 4 jobs" IOPS higher 0
workload ls-posix "ls -l posix/ ($SMALL_COUNT)" s lower 0 raw-heads
workload ls-plain "ls -l plain/ ($SMALL_COUNT)" s lower 0 raw-heads
workload cp "cp -r tree/ out ($TREE_COUNT x 16 KiB)" s lower 0

# Before a read: no page cache on the client side; the server's copies read back into it, as a
# busy S3 would serve them from memory, and so are the tools' executables (their code would
# otherwise be paged in from disk during the timed work; shared libraries are not).
TOOL_BINARIES=("$BUCKETFS" "$RAW" "$S3S_FS")
for binary in "$CEILING" "$MOUNT_S3" "$(command -v s3fs || true)" "$(command -v rclone || true)" "$(command -v fio || true)"; do
  [ -n "$binary" ] && [ -f "$binary" ] && TOOL_BINARIES+=("$binary")
done
cold_start() {
  drop_caches
  cat "$@" "${TOOL_BINARIES[@]}" >/dev/null
}
mbps_of() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / 1e6 / s }'; }

# ---------------------------------------------------------------------------------------------
if has_workload read; then
  step "sequential read of the $BIG_MIB MiB object: $RUNS rounds; load $(load)"
  for round in $(seq 1 "$RUNS"); do
    for tool in $(rotated "$(tools_for read)" "$round"); do
      cold_start "$SERVER_BIG"
      if [ "$tool" = raw ]; then
        daemon_pid=
        sample_start
        TIMEFORMAT='%U %S'
        { time out=$(raw read --bucket "$BUCKET" --key big --part-size-mib "$PART_SIZE_MIB" \
            --concurrency "$CONCURRENCY"); } 2>"$WORK/time"
        seconds=$(field seconds "$out")
        sample_stop "$(awk '{ printf "%.2f", $1 + $2 }' "$WORK/time")"
      else
        mount_tool "$tool"
        sample_start
        start=$EPOCHREALTIME
        dd if="$MNT/big" of=/dev/null bs=1M status=none
        seconds=$(seconds_since "$start")
        sample_stop
        if [ "$tool" = bucketfs ] && [ "$round" -eq 1 ]; then
          # Content check, untimed and after the samples: the bytes are the uploaded ones.
          got=$(md5sum <"$MNT/big" | cut -d' ' -f1)
          [ "$got" = "$BIG_MD5" ] || die "bucketfs read wrong data: md5 $got, uploaded $BIG_MD5"
        fi
        unmount_tool
      fi
      mbps=$(mbps_of "$BIG_BYTES" "$seconds")
      record_round read "$tool" "$mbps"
      note "round $round $(printf '%-12s' "$tool"): ${seconds}s = $mbps MB/s; CPU s: client $daemon_cpu, server $server_cpu${rss:+; VmHWM $rss MiB}"
    done
  done
fi

# ---------------------------------------------------------------------------------------------
if has_workload par; then
  step "$PAR_FILES objects of $PAR_MIB MiB read at once: $RUNS rounds; load $(load)"
  server_par=()
  for i in $(seq 0 $((PAR_FILES - 1))); do server_par+=("$DATA/$BUCKET/p$i"); done
  for round in $(seq 1 "$RUNS"); do
    for tool in $(rotated "$(tools_for par)" "$round"); do
      cold_start "${server_par[@]}"
      if [ "$tool" = raw ]; then
        daemon_pid=
        sample_start
        TIMEFORMAT='%U %S'
        start=$EPOCHREALTIME
        # `wait` on the readers only: the server is a child of this shell too.
        { time {
          readers=()
          for i in $(seq 0 $((PAR_FILES - 1))); do
            raw read --bucket "$BUCKET" --key "p$i" --part-size-mib "$PART_SIZE_MIB" \
              --concurrency "$CONCURRENCY" >/dev/null &
            readers+=($!)
          done
          for pid in "${readers[@]}"; do wait "$pid" || die "raw read failed"; done
        }; } 2>"$WORK/time"
        seconds=$(seconds_since "$start")
        sample_stop "$(awk '{ printf "%.2f", $1 + $2 }' "$WORK/time")"
      else
        mount_tool "$tool"
        sample_start
        start=$EPOCHREALTIME
        readers=()
        for i in $(seq 0 $((PAR_FILES - 1))); do
          # The ceiling serves big, big1, ... of BIG_MIB; the first PAR_MIB of each is read.
          file=$MNT/p$i
          [ "$tool" = ceiling ] && file=$MNT/big$([ "$i" -eq 0 ] || echo "$i")
          dd if="$file" of=/dev/null bs=1M count="$PAR_MIB" status=none &
          readers+=($!)
        done
        for pid in "${readers[@]}"; do wait "$pid" || die "$tool: a parallel dd failed"; done
        seconds=$(seconds_since "$start")
        sample_stop
        unmount_tool
      fi
      mbps=$(mbps_of "$PAR_BYTES" "$seconds")
      record_round par "$tool" "$mbps"
      note "round $round $(printf '%-12s' "$tool"): ${seconds}s = $mbps MB/s aggregate; CPU s: client $daemon_cpu, server $server_cpu${rss:+; VmHWM $rss MiB}"
    done
  done
fi

# ---------------------------------------------------------------------------------------------
if has_workload ttfb; then
  step "time to first byte (head -c 1 of big on a fresh mount, then of p0): $RUNS rounds"
  ms_of() { awk -v s="$1" 'BEGIN { printf "%.1f", s * 1000 }'; }
  # Starting `head` and reading one byte of a local file in the page cache, timed as the mounted
  # runs are: the fastest of 5.
  head -c 4096 /dev/zero >"$WORK/spawn-probe"
  spawn_seconds() {
    local times=() start
    for _ in 1 2 3 4 5; do
      start=$EPOCHREALTIME
      head -c 1 "$WORK/spawn-probe" >/dev/null
      times+=("$(seconds_since "$start")")
    done
    printf '%s\n' "${times[@]}" | sort -g | head -1
  }
  for round in $(seq 1 "$RUNS"); do
    for tool in $(rotated "$(tools_for ttfb)" "$round"); do
      daemon_pid= daemon_cpu=- rss=
      server_cpu=0
      # No drop here: a first byte is a few milliseconds, which paging in the tools' libraries
      # from disk would dominate. The server's copies are in the page cache from the reads.
      cat "$SERVER_BIG" "$DATA/$BUCKET/p0" >/dev/null
      if [ "$tool" = raw ]; then
        first=$(field seconds "$(raw ttfb --bucket "$BUCKET" --key big)")
        next=$(field seconds "$(raw ttfb --bucket "$BUCKET" --key p0)")
        # What the cold lookup's requests add: HEAD big and ListObjectsV2 big/ (max-keys 1),
        # together, as bucketfs sends them (seen in s3s-fs's log), then the same GET.
        out=$(raw ttfb --bucket "$BUCKET" --key big --lookup)
        record "ttfb-cold:raw+lookup" "$(ms_of "$(field seconds "$out")")"
        record "ttfb-lookup:raw" "$(ms_of "$(field lookup_seconds "$out")")"
        note "round $round raw+lookup  : $(ms_of "$(field seconds "$out")") ms, of which HEAD + LIST $(ms_of "$(field lookup_seconds "$out")") ms"
        spawn_note=
      else
        spawn=$(spawn_seconds)
        mount_tool "$tool"
        start=$EPOCHREALTIME
        head -c 1 "$MNT/big" >/dev/null
        first=$(seconds_since "$start")
        start=$EPOCHREALTIME
        head -c 1 "$MNT/p0" >/dev/null
        next=$(seconds_since "$start")
        unmount_tool
        spawn_note=" (net of starting head, $(ms_of "$spawn") ms: $(ms_of "$first") and $(ms_of "$next") ms as timed)"
        first=$(awk -v a="$first" -v b="$spawn" 'BEGIN { printf "%.6f", a - b }')
        next=$(awk -v a="$next" -v b="$spawn" 'BEGIN { printf "%.6f", a - b }')
      fi
      record "ttfb-cold:$tool" "$(ms_of "$first")"
      record "ttfb-next:$tool" "$(ms_of "$next")"
      note "round $round $(printf '%-12s' "$tool"): cold $(ms_of "$first") ms, next file $(ms_of "$next") ms$spawn_note"
    done
  done
fi

# ---------------------------------------------------------------------------------------------
if has_workload rand; then
  if ! command -v fio >/dev/null; then
    note "random reads skipped: fio is not installed (apt-get install fio)"
  else
    step "random 4 KiB reads of big (fio, psync, direct=$RAND_DIRECT, ${RAND_SECONDS}s, 1 and 4 jobs): $RUNS rounds"
    for round in $(seq 1 "$RUNS"); do
      for tool in $(rotated "$(tools_for rand)" "$round"); do
        for jobs in 1 4; do
          cold_start "$SERVER_BIG"
          mount_tool "$tool"
          sample_start
          # Same seed for every tool (fio's randrepeat default): the same offsets are read.
          fio --name=rand --filename="$MNT/big" --readonly --rw=randread --bs=4k --ioengine=psync \
            --numjobs="$jobs" --time_based --runtime="$RAND_SECONDS" --group_reporting \
            --direct="$RAND_DIRECT" --output-format=json --output="$WORK/fio.json" >/dev/null
          sample_stop
          unmount_tool
          iops=$(python3 -c 'import json, sys; print("%.0f" % json.load(open(sys.argv[1]))["jobs"][0]["read"]["iops"])' "$WORK/fio.json")
          record_round "rand$jobs" "$tool" "$iops"
          note "round $round $(printf '%-12s' "$tool") $jobs job(s): $iops IOPS; CPU s: client $daemon_cpu, server $server_cpu; VmHWM $rss MiB"
        done
      done
    done
  fi
fi

# ---------------------------------------------------------------------------------------------
# Variants for ls: the raw client lists alone (raw-list) or lists and HEADs every object
# (raw-heads, what reading POSIX headers costs at best).
ls_variants() {
  local tool
  for tool in $(tools_for ls); do
    case $tool in
      ceiling | bucketfs-64) ;;
      bucketfs) echo bucketfs bucketfs-no-posix ;;
      rclone) echo rclone rclone-server-modtime ;;
      raw) echo raw-heads raw-list ;;
      *) echo "$tool" ;;
    esac
  done | tr '\n' ' '
}
if has_workload ls; then
  LS_VARIANTS=$(ls_variants)
  for dir in posix plain; do
    step "ls -l of $dir/ ($SMALL_COUNT objects, fresh mount): $LS_RUNS rounds; load $(load)"
    # Untimed warm-up so that no variant pays for the server's first look at its metadata files.
    raw list --bucket "$BUCKET" --prefix "$dir/" --heads >/dev/null
    for round in $(seq 1 "$LS_RUNS"); do
      for variant in $(rotated "$LS_VARIANTS" "$round"); do
        daemon_pid=
        case $variant in
          raw-heads | raw-list)
            heads=(); [ "$variant" = raw-heads ] && heads=(--heads --concurrency "$CONCURRENCY")
            sample_start
            out=$(raw list --bucket "$BUCKET" --prefix "$dir/" "${heads[@]}")
            sample_stop
            seconds=$(field seconds "$out")
            entries=$(field objects "$out") ;;
          *)
            mount_tool "$variant"
            sample_start
            start=$EPOCHREALTIME
            entries=$(ls -l "$MNT/$dir" | grep -c '^-' || true)
            seconds=$(seconds_since "$start")
            sample_stop
            unmount_tool ;;
        esac
        [ "$entries" -eq "$SMALL_COUNT" ] || die "$variant listed $entries files in $dir/, expected $SMALL_COUNT"
        record_round "ls-$dir" "$variant" "$seconds"
        note "round $round $(printf '%-22s' "$variant"): ${seconds}s; CPU s: client $daemon_cpu, server $server_cpu"
      done
    done
  done
fi

# ---------------------------------------------------------------------------------------------
if has_workload cp; then
  step "cp -r of tree/ ($TREE_COUNT x $TREE_OBJECT_BYTES B, fresh mount): $RUNS rounds; load $(load)"
  mapfile -t server_tree < <(find "$DATA/$BUCKET/tree" -type f)
  raw get-all --bucket "$BUCKET" --prefix tree/ --dest "$WORK/out/warm-up" >/dev/null
  rm -rf "$WORK/out/warm-up"
  for round in $(seq 1 "$RUNS"); do
    for tool in $(rotated "$(tools_for cp)" "$round"); do
      dest=$WORK/out/$tool-$round
      daemon_pid=
      cold_start "${server_tree[@]}"
      if [ "$tool" = raw ]; then
        sample_start
        seconds=$(field seconds "$(raw get-all --bucket "$BUCKET" --prefix tree/ --dest "$dest" \
          --concurrency "$CONCURRENCY")")
        sample_stop
      else
        mount_tool "$tool"
        sample_start
        start=$EPOCHREALTIME
        cp -r "$MNT/tree" "$dest"
        seconds=$(seconds_since "$start")
        sample_stop
        unmount_tool
      fi
      files=$(find "$dest" -type f | wc -l)
      bytes=$(find "$dest" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
      [ "$files" -eq "$TREE_COUNT" ] && [ "$bytes" -eq $((TREE_COUNT * TREE_OBJECT_BYTES)) ] ||
        die "$tool copied $files files, $bytes bytes; expected $TREE_COUNT, $((TREE_COUNT * TREE_OBJECT_BYTES))"
      rm -rf "$dest"
      record_round cp "$tool" "$seconds"
      note "round $round $(printf '%-12s' "$tool"): ${seconds}s; CPU s: client $daemon_cpu, server $server_cpu"
    done
  done
fi

# ---------------------------------------------------------------------------------------------
TABLE_TOOLS="$TOOLS raw+lookup bucketfs-no-posix rclone-server-modtime raw-heads raw-list"
print_table

echo
step "targets (issue 12), bucketfs with default options unless named"
for w in read par; do
  best=$(best_peer "$w")
  target "$w: >= 1.25 x the best peer ($(best_peer_tool "$w") $best MB/s)" "$(med "$w:bucketfs")" '>=' "$(scaled 1.25 "$best")"
  target "$w: >= 0.8 x the FUSE ceiling ($(med "$w:ceiling") MB/s)" "$(med "$w:bucketfs")" '>=' "$(scaled 0.8 "$(med "$w:ceiling")")"
  target "$w: >= 0.9 x raw at the same concurrency (the slow server's target)" "$(med "$w:bucketfs")" '>=' "$(scaled 0.9 "$(med "$w:raw")")"
  target "$w: peak RSS <= $RSS_TARGET_MIB MiB" "$(maxof "$w:bucketfs:rss")" '<=' "$RSS_TARGET_MIB"
done
note "(server profile of this run: $SERVER_PROFILE; the 1.25 x peer and 0.8 x ceiling targets are for fast, 0.9 x raw for slow)"
target "read: --max-cache-size 64 within 5 % of the default's speed" "$(med read:bucketfs-64)" '>=' "$(scaled 0.95 "$(med read:bucketfs)")"
target "first byte, cold: <= 2 x raw GET of 1 byte + raw HEAD and LIST ($(med ttfb-lookup:raw) ms)" "$(med ttfb-cold:bucketfs)" '<=' \
  "$(awk -v g="$(med ttfb-cold:raw)" -v l="$(med ttfb-lookup:raw)" 'BEGIN { if (g == "-" || l == "-") print "-"; else printf "%.4g", 2 * g + l }')"
target "first byte, second file: <= 2 x raw GET of 1 byte" "$(med ttfb-next:bucketfs)" '<=' "$(scaled 2 "$(med ttfb-next:raw)")"
for jobs in 1 4; do
  target "random 4 KiB, $jobs job(s): IOPS >= Mountpoint's" "$(med "rand$jobs:bucketfs")" '>=' "$(med "rand$jobs:mountpoint")"
done
for dir in posix plain; do
  target "ls -l $dir/: <= 1.2 x raw list+HEADs" "$(med "ls-$dir:bucketfs")" '<=' "$(scaled 1.2 "$(med "ls-$dir:raw-heads")")"
done
target "cp -r out: time <= 1/3 of s3fs's" "$(med cp:bucketfs)" '<=' "$(scaled 0.3333 "$(med cp:s3fs)")"
target "cp -r out: time <= Mountpoint's" "$(med cp:bucketfs)" '<=' "$(med cp:mountpoint)"
note "load average at the end: $(load)"
