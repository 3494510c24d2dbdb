#!/usr/bin/env bash
# Benchmark: bucketfs against s3fs, `rclone mount` and a raw aws-sdk-s3 client (no FUSE), all on
# one local S3 server (patched s3s-fs on 127.0.0.1) holding the same data, in one run.
#
# Workloads, each on a fresh mount:
#   read   sequential read of a 1 GiB object (`cat > /dev/null`), MB/s, median of BENCH_RUNS;
#          page cache dropped before each run, then the server's copy of the object read back into
#          the page cache so that the server does not read its disk (the client side stays cold)
#   ttfb   `head -c 1` of that object, median of BENCH_RUNS
#   ls     `ls -l` of 10,000 objects, BENCH_LS_RUNS rounds: with s3fs POSIX headers
#          (x-amz-meta-mode/uid/gid/mtime) and without; bucketfs also with --no-posix-metadata,
#          rclone also with --use-server-modtime
#   cp     `cp -r` of a tree of 1,000 objects of 16 KiB to a local directory
#   rss    peak RSS (VmHWM) of the bucketfs daemon over each read run, against --max-cache-size + 64 MiB
# The raw client (examples/raw_client.rs) does the same S3 work without a filesystem: parallel
# ranged GETs for read, GET bytes=0-0 for ttfb, ListObjectsV2 (+ parallel HEADs) for ls,
# list + parallel GETs for cp.
#
# Tools run in rotating order within each round so that background load spreads over all of them.
# Everything runs in a private network namespace with delayed ACKs off on loopback (see the
# comment at `unshare` below for why). Needs root (FUSE mounts, drop_caches, the namespace).
# Takes about 15 minutes on 2 cores while bucketfs lists at the peers' speed; the first real run
# took 23 minutes, most of it in bucketfs's ls -l and cp -r (docs/benchmarks.md).
#
# Usage: bench/run.sh [--quick]       (--quick: small data, one run; checks the script works)
# Knobs (environment): BENCH_RUNS (3; rounds of read, ttfb, cp), BENCH_LS_RUNS (1),
#   BENCH_BIG_MIB (1024), BENCH_SMALL_COUNT (10000), BENCH_TREE_COUNT (1000),
#   BENCH_TOOLS ("bucketfs s3fs rclone raw"),
#   BENCH_SERVER_LOG (RUST_LOG for s3s-fs, e.g. "s3s=debug"; its log is copied to bench/last-server.log),
#   BUCKETFS_BENCH_S3S_FS (path of an s3s-fs binary to use instead of building one),
#   BENCH_HOST_NETWORK=1 (stay in the host's network namespace).
# Everything it mounts or starts is undone on exit, failure and Ctrl-C included.
set -euo pipefail
export LC_ALL=C RUST_BACKTRACE=0
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

RUNS=${BENCH_RUNS:-3}
# One listing of 10,000 keys takes s3s-fs ~10 s, and some variants list more than once.
LS_RUNS=${BENCH_LS_RUNS:-1}
BIG_MIB=${BENCH_BIG_MIB:-1024}
SMALL_COUNT=${BENCH_SMALL_COUNT:-10000}
TREE_COUNT=${BENCH_TREE_COUNT:-1000}
TOOLS=${BENCH_TOOLS:-"bucketfs s3fs rclone raw"}
if [ "${1:-}" = --quick ]; then
  RUNS=1 LS_RUNS=1 BIG_MIB=128 SMALL_COUNT=1000 TREE_COUNT=200
fi
TREE_DIRS=4
TREE_OBJECT_BYTES=16384
SMALL_OBJECT_BYTES=1024
BUCKET=bench
ACCESS_KEY=bench-access-key
SECRET_KEY=bench-secret-key
# bucketfs's defaults, spelled out so the raw client and the RSS bound use the same numbers.
PART_SIZE_MIB=8
CONCURRENCY=16
MAX_CACHE_MIB=512
RSS_ALLOWANCE_MIB=64

BUCKETFS=$ROOT/target/release/bucketfs
RAW=$ROOT/target/release/examples/raw_client
CLK_TCK=$(getconf CLK_TCK)

step() { echo "==> $*"; }
note() { echo "    $*"; }
die() { echo "bench: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (FUSE mounts, drop_caches)"
# Installs and builds run before entering the network namespace below, which has no way out.
if [ -z "${BENCH_IN_NETNS:-}" ]; then
  step "tools"
  if ! command -v s3fs >/dev/null || ! command -v rclone >/dev/null || ! command -v fusermount3 >/dev/null; then
    note "installing s3fs, rclone, fuse3"
    DEBIAN_FRONTEND=noninteractive apt-get install -y s3fs rclone fuse3 >/dev/null ||
      { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y s3fs rclone fuse3 >/dev/null; }
  fi

  step "cargo build --release --bin bucketfs --example raw_client"
  cargo build --release --bin bucketfs --example raw_client
  [ -x "$BUCKETFS" ] && [ -x "$RAW" ] || die "release binaries missing"

  if [ -n "${BUCKETFS_BENCH_S3S_FS:-}" ]; then
    S3S_FS=$BUCKETFS_BENCH_S3S_FS
  elif [ -x "$ROOT/scripts/s3s-fs/build.sh" ]; then
    S3S_FS=$("$ROOT/scripts/s3s-fs/build.sh")
  else
    S3S_FS=$(/work/shared/s3s-fs/build.sh)
  fi
  [ -x "$S3S_FS" ] || die "no s3s-fs binary at $S3S_FS"
fi

# Loopback artifact: s3s-fs does not set TCP_NODELAY, so a GET whose body goes out in more than
# one write stalls on Nagle's algorithm until the client's delayed ACK (40 ms on Linux): every
# small-object GET made one at a time (cp -r through any FUSE client) costs 40 ms, whatever the
# client does. Real S3 is not measured that way, so the benchmark runs in a private network
# namespace whose loopback route has `quickack 1` (no delayed ACKs). Nothing outside the
# namespace changes. BENCH_HOST_NETWORK=1 keeps the host's network (and the stall).
if [ -z "${BENCH_IN_NETNS:-}" ] && [ "${BENCH_HOST_NETWORK:-0}" != 1 ]; then
  export S3S_FS
  exec env BENCH_IN_NETNS=1 unshare --net -- "$0" "$@"
fi
NETWORK="host network namespace (delayed ACKs on loopback)"
if [ -n "${BENCH_IN_NETNS:-}" ]; then
  ip link set lo up
  ip route change local 127.0.0.0/8 dev lo table local proto kernel scope host src 127.0.0.1 quickack 1
  ip route change local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1 quickack 1
  NETWORK="private network namespace, loopback route with quickack 1"
fi

WORK=$(realpath "$(mktemp -d "${TMPDIR:-/tmp}/bucketfs-bench.XXXXXX")")
MNT=$WORK/mnt
DATA=$WORK/data
mkdir -p "$MNT" "$DATA" "$WORK/out" "$WORK/bin"
# target/ is shared: a build started elsewhere during the run must not swap the binary under test.
cp "$BUCKETFS" "$RAW" "$WORK/bin/"
BUCKETFS=$WORK/bin/bucketfs
RAW=$WORK/bin/raw_client
server_pid=
daemon_pid=

is_mounted() { awk -v m="$1" '$2 == m { found = 1 } END { exit !found }' /proc/mounts; }
is_running() { [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if is_mounted "$MNT"; then
    echo "==> cleanup: unmounting $MNT"
    fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -u -z "$MNT" || echo "bench: could not unmount $MNT" >&2
  fi
  if [ -n "$daemon_pid" ] && is_running "$daemon_pid"; then
    kill "$daemon_pid" 2>/dev/null || true
  fi
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    echo "==> cleanup: stopping s3s-fs (pid $server_pid)"
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ -n "${BENCH_SERVER_LOG:-}" ] && [ -f "$WORK/server.log" ]; then
    cp "$WORK/server.log" "$ROOT/bench/last-server.log" || true
  fi
  # --one-file-system: never descend into a mount that is somehow still there.
  rm -rf --one-file-system "$WORK" 2>/dev/null || echo "bench: could not remove $WORK" >&2
  [ "$status" -eq 0 ] || echo "bench: FAILED (exit $status)" >&2
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
step "machine and versions"
note "date:     $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
note "cpu:      $(nproc) x $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
note "memory:   $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
note "kernel:   $(uname -r)"
note "network:  $NETWORK"
note "load:     $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min)"
dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " + uncommitted changes" || true)
note "bucketfs: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty"
note "s3fs:     $(s3fs --version 2>&1 | head -1)"
note "rclone:   $(env -u AWS_CA_BUNDLE rclone version 2>&1 | head -1)"
note "server:   $("$S3S_FS" --version 2>&1 | head -1) with scripts/s3s-fs/dir-keys.patch"

# ---------------------------------------------------------------------------------------------
step "starting s3s-fs on 127.0.0.1"
export AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
# The port is picked free, then bound by the server a moment later; another process may take it
# in between, so a server that dies at once is retried on a new port.
for attempt in 1 2 3; do
  PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  ENDPOINT=http://127.0.0.1:$PORT
  RUST_LOG=${BENCH_SERVER_LOG:-error} "$S3S_FS" --host 127.0.0.1 --port "$PORT" \
    --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" "$DATA" >"$WORK/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do
    kill -0 "$server_pid" 2>/dev/null || break
    "$RAW" --endpoint-url "$ENDPOINT" create-bucket --bucket "$BUCKET" >/dev/null 2>&1 && break
    sleep 0.1
  done
  kill -0 "$server_pid" 2>/dev/null && break
  wait "$server_pid" 2>/dev/null || true
  server_pid=
  echo "bench: s3s-fs exited (attempt $attempt); log:" >&2
  cat "$WORK/server.log" >&2
done
[ -n "$server_pid" ] || die "s3s-fs did not start"
"$RAW" --endpoint-url "$ENDPOINT" create-bucket --bucket "$BUCKET"
note "s3s-fs pid $server_pid at $ENDPOINT, data in $DATA"

raw() { "$RAW" --endpoint-url "$ENDPOINT" "$@"; }

# ---------------------------------------------------------------------------------------------
# Everything goes in through S3: objects written straight into $DATA would have no stored ETag,
# and s3s-fs would hash the whole file on every request.
step "populating the bucket"
head -c "$((BIG_MIB * 1024 * 1024))" /dev/urandom >"$WORK/big"
BIG_MD5=$(md5sum <"$WORK/big" | cut -d' ' -f1)
note "big ($BIG_MIB MiB, random, multipart): $(raw put-file --bucket "$BUCKET" --key big --file "$WORK/big")"
rm -f "$WORK/big"
note "posix/ ($SMALL_COUNT x $SMALL_OBJECT_BYTES B, s3fs headers): $(raw put-tree --bucket "$BUCKET" \
  --prefix posix/ --count "$SMALL_COUNT" --size "$SMALL_OBJECT_BYTES" --posix-metadata)"
note "plain/ ($SMALL_COUNT x $SMALL_OBJECT_BYTES B, no headers): $(raw put-tree --bucket "$BUCKET" \
  --prefix plain/ --count "$SMALL_COUNT" --size "$SMALL_OBJECT_BYTES")"
note "tree/ ($TREE_COUNT x $TREE_OBJECT_BYTES B in $TREE_DIRS dirs): $(raw put-tree --bucket "$BUCKET" \
  --prefix tree/ --count "$TREE_COUNT" --size "$TREE_OBJECT_BYTES" --dirs "$TREE_DIRS")"
SERVER_BIG=$DATA/$BUCKET/big
[ -f "$SERVER_BIG" ] || die "s3s-fs does not keep the object at $SERVER_BIG"
BIG_BYTES=$(stat -c %s "$SERVER_BIG")

printf '%s:%s\n' "$ACCESS_KEY" "$SECRET_KEY" >"$WORK/s3fs.passwd"
chmod 600 "$WORK/s3fs.passwd"
cat >"$WORK/rclone.conf" <<EOF
[s3]
type = s3
provider = Other
access_key_id = $ACCESS_KEY
secret_access_key = $SECRET_KEY
endpoint = $ENDPOINT
region = us-east-1
force_path_style = true
EOF

# ---------------------------------------------------------------------------------------------
# Mount variants. Each is a tool with its flags; the flags are printed with the results.
BUCKETFS_FLAGS="--endpoint-url $ENDPOINT --force-path-style --region us-east-1 (defaults: --max-cache-size $MAX_CACHE_MIB --read-part-size $PART_SIZE_MIB --max-concurrency $CONCURRENCY --metadata-ttl 1)"
S3FS_FLAGS="-o url=$ENDPOINT -o use_path_request_style -o endpoint=us-east-1 (defaults: parallel_count=5 multipart_size=10 multireq_max=20, no use_cache)"
RCLONE_FLAGS="--vfs-cache-mode off (defaults: --buffer-size 16M --vfs-read-chunk-size 128M --dir-cache-time 5m)"

mount_variant() {
  local variant=$1
  case $variant in
    bucketfs | bucketfs-no-posix)
      local extra=()
      [ "$variant" = bucketfs-no-posix ] && extra=(--no-posix-metadata)
      "$BUCKETFS" "$BUCKET" "$MNT" --endpoint-url "$ENDPOINT" --force-path-style --region us-east-1 "${extra[@]}"
      daemon_pid=$(pgrep -f "bucketfs $BUCKET $MNT" | head -1) ;;
    s3fs)
      s3fs "$BUCKET" "$MNT" -o url="$ENDPOINT" -o use_path_request_style -o endpoint=us-east-1 \
        -o passwd_file="$WORK/s3fs.passwd"
      daemon_pid=$(pgrep -f "s3fs $BUCKET $MNT" | head -1) ;;
    rclone | rclone-server-modtime)
      local extra=()
      [ "$variant" = rclone-server-modtime ] && extra=(--use-server-modtime)
      # rclone refuses to start while AWS_CA_BUNDLE is set (it is on some machines).
      env -u AWS_CA_BUNDLE rclone --config "$WORK/rclone.conf" mount "s3:$BUCKET" "$MNT" --daemon \
        --vfs-cache-mode off "${extra[@]}"
      daemon_pid=$(pgrep -f "rclone --config $WORK/rclone.conf mount s3:$BUCKET $MNT" | head -1) ;;
    *) die "unknown variant $variant" ;;
  esac
  # s3fs returns before the mount is up; the others once it is.
  local i
  for i in $(seq 1 200); do
    is_mounted "$MNT" && break
    sleep 0.05
  done
  is_mounted "$MNT" || die "$variant: $MNT did not get mounted"
  [ -n "$daemon_pid" ] || die "$variant: daemon process not found"
}

unmount_variant() {
  local i
  for i in 1 2 3 4 5; do
    fusermount3 -u "$MNT" 2>/dev/null && break
    sleep 0.5
  done
  is_mounted "$MNT" && { fusermount3 -u -z "$MNT"; die "$MNT was busy; detached it"; }
  for i in $(seq 1 100); do
    is_running "$daemon_pid" || break
    sleep 0.1
  done
  is_running "$daemon_pid" && die "daemon $daemon_pid still running after unmount"
  daemon_pid=
}

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
seconds_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.4f", b - a }'; }
ticks_to_seconds() { awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'; }
field() { tr ' ' '\n' <<<"$2" | awk -F= -v k="$1" '$1 == k { print $2 }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# Prints the space-separated words of $1 one a line, rotated left by round number $2.
rotated() { local words=($1) n i; n=${#words[@]}; for ((i = 0; i < n; i++)); do echo "${words[(i + $2) % n]}"; done; }

drop_caches() {
  sync
  echo 3 2>/dev/null >/proc/sys/vm/drop_caches || { note "(could not drop the page cache)"; return 0; }
}

declare -A R   # R[workload:variant] = space-separated values, one per run
record() { R[$1]="${R[$1]:-} $2"; }

# ---------------------------------------------------------------------------------------------
step "sequential read of the $BIG_MIB MiB object: $RUNS rounds"
for round in $(seq 1 "$RUNS"); do
  for tool in $(rotated "$TOOLS" "$round"); do
    drop_caches
    # The server reads the object from its page cache, as a busy S3 would serve it from memory.
    cat "$SERVER_BIG" >/dev/null
    server_before=$(cpu_ticks "$server_pid")
    if [ "$tool" = raw ]; then
      TIMEFORMAT='%U %S'
      { time out=$(raw read --bucket "$BUCKET" --key big --part-size-mib "$PART_SIZE_MIB" \
          --concurrency "$CONCURRENCY"); } 2>"$WORK/time"
      seconds=$(field seconds "$out")
      client_cpu=$(awk '{ printf "%.2f", $1 + $2 }' "$WORK/time")
      reader_cpu=0
      rss=
    else
      mount_variant "$tool"
      daemon_before=$(cpu_ticks "$daemon_pid")
      TIMEFORMAT='%U %S'
      start=$EPOCHREALTIME
      { time cat "$MNT/big" >/dev/null; } 2>"$WORK/time"
      seconds=$(seconds_since "$start")
      reader_cpu=$(awk '{ printf "%.2f", $1 + $2 }' "$WORK/time")
      client_cpu=$(ticks_to_seconds $(($(cpu_ticks "$daemon_pid") - daemon_before)))
      rss=$(awk '/^VmHWM/ { print int($2 / 1024) }' "/proc/$daemon_pid/status")
      if [ "$tool" = bucketfs ] && [ "$round" -eq 1 ]; then
        # Content check, untimed and after the timed read: the bytes are the uploaded ones.
        got=$(md5sum <"$MNT/big" | cut -d' ' -f1)
        [ "$got" = "$BIG_MD5" ] || die "bucketfs read wrong data: md5 $got, uploaded $BIG_MD5"
        rss=$(awk '/^VmHWM/ { print int($2 / 1024) }' "/proc/$daemon_pid/status")
      fi
      unmount_variant
    fi
    server_cpu=$(ticks_to_seconds $(($(cpu_ticks "$server_pid") - server_before)))
    mbps=$(awk -v b="$BIG_BYTES" -v s="$seconds" 'BEGIN { printf "%.1f", b / 1e6 / s }')
    record "read:$tool" "$mbps"
    record "readcpu:$tool" "$client_cpu"
    record "readrcpu:$tool" "$reader_cpu"
    record "readscpu:$tool" "$server_cpu"
    [ -n "$rss" ] && record "rss:$tool" "$rss"
    note "round $round $tool: ${seconds}s = $mbps MB/s; CPU s: client $client_cpu, reader (cat) $reader_cpu, server $server_cpu${rss:+; VmHWM $rss MiB}"
  done
done

# ---------------------------------------------------------------------------------------------
step "time to first byte (head -c 1, fresh mount): $RUNS rounds"
for round in $(seq 1 "$RUNS"); do
  for tool in $(rotated "$TOOLS" "$round"); do
    if [ "$tool" = raw ]; then
      seconds=$(field seconds "$(raw ttfb --bucket "$BUCKET" --key big)")
    else
      mount_variant "$tool"
      start=$EPOCHREALTIME
      head -c 1 "$MNT/big" >/dev/null
      seconds=$(seconds_since "$start")
      unmount_variant
    fi
    ms=$(awk -v s="$seconds" 'BEGIN { printf "%.1f", s * 1000 }')
    record "ttfb:$tool" "$ms"
    note "round $round $tool: $ms ms"
  done
done

# ---------------------------------------------------------------------------------------------
# Variants for ls: the raw client lists alone (raw-list) or lists and HEADs every object
# (raw-heads, what reading POSIX headers costs at best).
ls_variants() {
  local tool
  for tool in $TOOLS; do
    case $tool in
      bucketfs) echo bucketfs bucketfs-no-posix ;;
      rclone) echo rclone rclone-server-modtime ;;
      raw) echo raw-heads raw-list ;;
      *) echo "$tool" ;;
    esac
  done | tr '\n' ' '
}
LS_VARIANTS=$(ls_variants)
for dir in posix plain; do
  step "ls -l of $dir/ ($SMALL_COUNT objects, fresh mount): $LS_RUNS rounds"
  # Untimed warm-up so that no variant pays for the server's first look at its metadata files.
  raw list --bucket "$BUCKET" --prefix "$dir/" --heads >/dev/null
  for round in $(seq 1 "$LS_RUNS"); do
    for variant in $(rotated "$LS_VARIANTS" "$round"); do
      case $variant in
        raw-heads | raw-list)
          heads=(); [ "$variant" = raw-heads ] && heads=(--heads --concurrency "$CONCURRENCY")
          out=$(raw list --bucket "$BUCKET" --prefix "$dir/" "${heads[@]}")
          seconds=$(field seconds "$out")
          entries=$(field objects "$out") ;;
        *)
          mount_variant "$variant"
          start=$EPOCHREALTIME
          entries=$(ls -l "$MNT/$dir" | grep -c '^-' || true)
          seconds=$(seconds_since "$start")
          unmount_variant ;;
      esac
      [ "$entries" -eq "$SMALL_COUNT" ] || die "$variant listed $entries files in $dir/, expected $SMALL_COUNT"
      record "ls-$dir:$variant" "$seconds"
      note "round $round $variant: ${seconds}s"
    done
  done
done

# ---------------------------------------------------------------------------------------------
step "cp -r of tree/ ($TREE_COUNT x $TREE_OBJECT_BYTES B, fresh mount): $RUNS rounds"
raw get-all --bucket "$BUCKET" --prefix tree/ --dest "$WORK/out/warm-up" >/dev/null
rm -rf "$WORK/out/warm-up"
for round in $(seq 1 "$RUNS"); do
  for tool in $(rotated "$TOOLS" "$round"); do
    dest=$WORK/out/$tool-$round
    if [ "$tool" = raw ]; then
      seconds=$(field seconds "$(raw get-all --bucket "$BUCKET" --prefix tree/ --dest "$dest" \
        --concurrency "$CONCURRENCY")")
    else
      mount_variant "$tool"
      start=$EPOCHREALTIME
      cp -r "$MNT/tree" "$dest"
      seconds=$(seconds_since "$start")
      unmount_variant
    fi
    files=$(find "$dest" -type f | wc -l)
    bytes=$(find "$dest" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
    [ "$files" -eq "$TREE_COUNT" ] && [ "$bytes" -eq $((TREE_COUNT * TREE_OBJECT_BYTES)) ] ||
      die "$tool copied $files files, $bytes bytes; expected $TREE_COUNT, $((TREE_COUNT * TREE_OBJECT_BYTES))"
    rm -rf "$dest"
    record "cp:$tool" "$seconds"
    note "round $round $tool: ${seconds}s"
  done
done

# ---------------------------------------------------------------------------------------------
med() { [ -n "${R[$1]:-}" ] && median ${R[$1]} || echo -; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'; }
maxof() { [ -n "${R[$1]:-}" ] && printf '%s\n' ${R[$1]} | sort -g | tail -1 || echo -; }

echo
step "results (median of $RUNS rounds, ls: $LS_RUNS; MB = 10^6 bytes; all tools on the same s3s-fs at $ENDPOINT)"
note "bucketfs: $BUCKETFS_FLAGS"
note "s3fs:     $S3FS_FLAGS"
note "rclone:   $RCLONE_FLAGS"
note "raw:      aws-sdk-s3, $PART_SIZE_MIB MiB ranged GETs / HEADs / GETs, $CONCURRENCY in flight"
echo
printf '    %-40s %10s %10s %10s %10s\n' workload bucketfs s3fs rclone raw
row() {
  local label=$1 key=$2 raw_key=${3:-raw}
  printf '    %-40s %10s %10s %10s %10s\n' "$label" "$(med "$key:bucketfs")" "$(med "$key:s3fs")" \
    "$(med "$key:rclone")" "$(med "$key:$raw_key")"
}
row "sequential read, MB/s (higher better)" read
row "time to first byte, ms (lower better)" ttfb
row "ls -l posix/, s (lower better)" ls-posix raw-heads
row "ls -l plain/, s (lower better)" ls-plain raw-heads
row "cp -r tree/, s (lower better)" cp
echo
note "other variants (median, s): ls -l posix/: bucketfs --no-posix-metadata $(med ls-posix:bucketfs-no-posix)," \
  "rclone --use-server-modtime $(med ls-posix:rclone-server-modtime), raw list only $(med ls-posix:raw-list)"
note "                            ls -l plain/: bucketfs --no-posix-metadata $(med ls-plain:bucketfs-no-posix)," \
  "rclone --use-server-modtime $(med ls-plain:rclone-server-modtime), raw list only $(med ls-plain:raw-list)"
note "sequential read CPU seconds (median): client daemon/process: bucketfs $(med readcpu:bucketfs)," \
  "s3fs $(med readcpu:s3fs), rclone $(med readcpu:rclone), raw $(med readcpu:raw);" \
  "cat: bucketfs $(med readrcpu:bucketfs), s3fs $(med readrcpu:s3fs), rclone $(med readrcpu:rclone);" \
  "server: bucketfs $(med readscpu:bucketfs), s3fs $(med readscpu:s3fs), rclone $(med readscpu:rclone), raw $(med readscpu:raw)"
note "peak RSS during the read (max VmHWM over runs, MiB): bucketfs $(maxof rss:bucketfs)" \
  "(bound: --max-cache-size $MAX_CACHE_MIB + $RSS_ALLOWANCE_MIB = $((MAX_CACHE_MIB + RSS_ALLOWANCE_MIB)))," \
  "s3fs $(maxof rss:s3fs), rclone $(maxof rss:rclone)"

echo
step "ratios"
note "throughput (higher is better for bucketfs):"
note "  read   bucketfs/raw $(ratio "$(med read:bucketfs)" "$(med read:raw)")," \
  "bucketfs/s3fs $(ratio "$(med read:bucketfs)" "$(med read:s3fs)")," \
  "bucketfs/rclone $(ratio "$(med read:bucketfs)" "$(med read:rclone)")"
note "times, bucketfs time / other time (below 1 means bucketfs is faster):"
for key in ttfb ls-posix ls-plain cp; do
  raw_key=raw
  case $key in ls-*) raw_key=raw-heads ;; esac
  note "  $(printf '%-9s' "$key") bucketfs/raw $(ratio "$(med "$key:bucketfs")" "$(med "$key:$raw_key")")," \
    "bucketfs/s3fs $(ratio "$(med "$key:bucketfs")" "$(med "$key:s3fs")")," \
    "bucketfs/rclone $(ratio "$(med "$key:bucketfs")" "$(med "$key:rclone")")"
done
note "  ls --no-posix-metadata vs raw list only: posix/ $(ratio "$(med ls-posix:bucketfs-no-posix)" "$(med ls-posix:raw-list)")," \
  "plain/ $(ratio "$(med ls-plain:bucketfs-no-posix)" "$(med ls-plain:raw-list)")"

echo
step "targets"
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { if (v == "-") { print "n/a"; exit }
  ok = (op == ">=") ? (v + 0 >= t + 0) : (v + 0 <= t + 0); print (ok ? "MET" : "MISSED") }'; }
faster_peer=$(awk -v a="$(med read:s3fs)" -v b="$(med read:rclone)" 'BEGIN { if (a == "-") a = 0; if (b == "-") b = 0; print (a > b ? a : b) }')
r=$(ratio "$(med read:bucketfs)" "$(med read:raw)")
note "read >= 0.9 x raw:                      $r -> $(verdict "$r" '>=' 0.9)"
r=$(ratio "$(med read:bucketfs)" "$faster_peer")
note "read >= 1.5 x faster peer:              $r -> $(verdict "$r" '>=' 1.5)"
for dir in posix plain; do
  r=$(ratio "$(med "ls-$dir:bucketfs")" "$(med "ls-$dir:raw-heads")")
  note "ls -l $dir/ <= 1.2 x raw list+HEADs:    $r -> $(verdict "$r" '<=' 1.2)"
done
for key in read ttfb ls-posix ls-plain cp; do
  for peer in s3fs rclone; do
    [ -n "${R[$key:$peer]:-}" ] || continue
    if [ "$key" = read ]; then
      r=$(ratio "$(med "$key:bucketfs")" "$(med "$key:$peer")"); v=$(verdict "$r" '>=' 1)
    else
      r=$(ratio "$(med "$key:bucketfs")" "$(med "$key:$peer")"); v=$(verdict "$r" '<=' 1)
    fi
    note "$(printf '%-8s' "$key") at least as fast as $(printf '%-6s' "$peer"):     $r -> $v"
  done
done
rss=$(maxof rss:bucketfs)
note "RSS <= $((MAX_CACHE_MIB + RSS_ALLOWANCE_MIB)) MiB:                      $rss -> $(verdict "$rss" '<=' $((MAX_CACHE_MIB + RSS_ALLOWANCE_MIB)))"
note "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
