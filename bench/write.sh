#!/usr/bin/env bash
# Write benchmark: bucketfs against s3fs, `rclone mount --vfs-cache-mode writes` and a raw
# aws-sdk-s3 client (no FUSE), all on one local S3 server (patched s3s-fs on 127.0.0.1), in one
# run. The read side is bench/run.sh; the server, network namespace and mounts are set up the same
# way here (the helpers are copied from it, so that each script can change on its own).
#
# Workloads, each round on a fresh mount and under a fresh prefix, deleted after the round:
#   big    sequential write of a BIG_MIB MiB random file: `dd bs=1M conv=fsync` from a local file
#          held in the page cache, MB/s until dd returns, median of BENCH_RUNS. Raw: a multipart
#          upload of the same file, PART_SIZE_MIB parts, PARTS_IN_FLIGHT in flight (what bucketfs
#          streams with: min(--max-concurrency, 8) parts per file).
#   small  `cp -r` of SMALL_COUNT local files of 4 KiB into the mount, files/s. Raw: PutObject of
#          the same files one after another (bucketfs's close() is durable, so that is its floor).
#   tar    `tar x` as a non-root user does it (--no-same-owner --no-same-permissions: s3fs fails to
#          chmod directory markers on s3s-fs) of a TAR_COUNT-file tree, seconds. Raw: the
#          extracted files PUT one after another.
#   rss    peak RSS (VmHWM) of each daemon over the big write, against bucketfs's
#          --max-write-buffer + --max-cache-size + 64 MiB.
# rclone's write cache answers close() before it uploads (and waits --vfs-write-back, 5 s, after the
# last close). So after every mounted run `raw_client wait` HEADs the expected keys until all are in
# the bucket with their sizes, and "until in bucket" is printed next to the command's own time, for
# every tool: for the durable ones it shows the cost of that check (one HEAD per key, 16 in flight).
#
# Tools run in rotating order within each round so that background load spreads over all of them.
# Needs root (FUSE mounts, the namespace). About 13 minutes on 2 busy cores with the defaults.
#
# Usage: bench/write.sh [--quick]   (--quick: 64 MiB, 100 and 200 files, one round, ~2 minutes)
# Knobs (environment): BENCH_RUNS (3), BENCH_BIG_MIB (1024), BENCH_SMALL_COUNT (1000),
#   BENCH_TAR_COUNT (2000), BENCH_TOOLS ("bucketfs s3fs rclone raw"), BENCH_WORKLOADS
#   ("big small tar"), BENCH_WRITE_COMMAND (dd: `dd bs=1M conv=fsync`; cp: `cp`, which closes no
#   descriptor before the end), BENCH_SERVER_LOG (RUST_LOG for s3s-fs; log copied to bench/last-server.log),
#   BENCH_BUCKETFS_LOG (RUST_LOG for bucketfs; its log copied to bench/last-bucketfs.log),
#   BUCKETFS_BENCH_S3S_FS (an s3s-fs binary to use), BENCH_HOST_NETWORK=1 (stay in the host's
#   network namespace).
# Everything it mounts or starts is undone on exit, failure and Ctrl-C included.
set -euo pipefail
export LC_ALL=C RUST_BACKTRACE=0
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

RUNS=${BENCH_RUNS:-3}
BIG_MIB=${BENCH_BIG_MIB:-1024}
SMALL_COUNT=${BENCH_SMALL_COUNT:-1000}
TAR_COUNT=${BENCH_TAR_COUNT:-2000}
TOOLS=${BENCH_TOOLS:-"bucketfs s3fs rclone raw"}
WORKLOADS=${BENCH_WORKLOADS:-"big small tar"}
WRITE_COMMAND=${BENCH_WRITE_COMMAND:-dd}
if [ "${1:-}" = --quick ]; then
  RUNS=1 BIG_MIB=64 SMALL_COUNT=100 TAR_COUNT=200
fi
SMALL_BYTES=4096
# The tree is shaped like a source tree: files of 512 B to 16 KiB, 100 to a directory.
TAR_DIRS=$(((TAR_COUNT + 99) / 100))
BUCKET=bench
ACCESS_KEY=bench-access-key
SECRET_KEY=bench-secret-key
# bucketfs's defaults, spelled out so the raw client and the RSS bound use the same numbers.
PART_SIZE_MIB=8
CONCURRENCY=16
PARTS_IN_FLIGHT=8   # min(--max-concurrency, 8): parts one file streams at once
MAX_CACHE_MIB=512
MAX_WRITE_BUFFER_MIB=256
RSS_ALLOWANCE_MIB=64
RSS_BOUND_MIB=$((MAX_WRITE_BUFFER_MIB + MAX_CACHE_MIB + RSS_ALLOWANCE_MIB))

BUCKETFS=$ROOT/target/release/bucketfs
RAW=$ROOT/target/release/examples/raw_client
CLK_TCK=$(getconf CLK_TCK)

step() { echo "==> $* [$(date +%T)]"; }
note() { echo "    $*"; }
die() { echo "bench: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (FUSE mounts, the network namespace)"
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

# s3s-fs does not set TCP_NODELAY, so a response sent in more than one write waits for the
# client's delayed ACK (40 ms) on loopback; bench/run.sh and docs/benchmarks.md explain it. A
# private network namespace whose loopback route has `quickack 1` removes that server artifact.
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

WORK=$(realpath "$(mktemp -d "${TMPDIR:-/tmp}/bucketfs-wbench.XXXXXX")")
MNT=$WORK/mnt
DATA=$WORK/data
SRC=$WORK/src
mkdir -p "$MNT" "$DATA" "$SRC" "$WORK/out" "$WORK/bin" "$WORK/rclone-cache"
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
  if [ -n "${BENCH_BUCKETFS_LOG:-}" ] && [ -f "$WORK/bucketfs.log" ]; then
    cp "$WORK/bucketfs.log" "$ROOT/bench/last-bucketfs.log" || true
  fi
  # --one-file-system: never descend into a mount that is somehow still there.
  rm -rf --one-file-system "$WORK" 2>/dev/null || echo "bench: could not remove $WORK" >&2
  [ "$status" -eq 0 ] || echo "bench: FAILED (exit $status)" >&2
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

load() { cut -d' ' -f1-3 /proc/loadavg; }

# ---------------------------------------------------------------------------------------------
step "machine and versions"
note "date:     $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
note "cpu:      $(nproc) x $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
note "memory:   $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
note "kernel:   $(uname -r)"
note "network:  $NETWORK"
note "load:     $(load) (1, 5, 15 min)"
dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " + uncommitted changes" || true)
note "bucketfs: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty"
note "s3fs:     $(s3fs --version 2>&1 | head -1)"
note "rclone:   $(env -u AWS_CA_BUNDLE rclone version 2>&1 | head -1)"
note "server:   $("$S3S_FS" --version 2>&1 | head -1) with scripts/s3s-fs/dir-keys.patch"
note "disk:     $(df -h --output=source,size,avail "$WORK" | tail -1) (server data, staging files, sources)"

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
step "local sources (the same bytes for every tool)"
BIG_BYTES=$((BIG_MIB * 1024 * 1024))
BIG_MB=$(awk -v b="$BIG_BYTES" 'BEGIN { print b / 1e6 }')
head -c "$BIG_BYTES" /dev/urandom >"$SRC/big"
BIG_MD5=$(md5sum <"$SRC/big" | cut -d' ' -f1)
note "big:   $BIG_MIB MiB from /dev/urandom"
python3 - "$SRC" "$SMALL_COUNT" "$SMALL_BYTES" "$TAR_COUNT" "$TAR_DIRS" <<'EOF'
import os, random, sys
src, small_count, small_bytes, tar_count, tar_dirs = sys.argv[1], *map(int, sys.argv[2:])
os.makedirs(f"{src}/small")
for i in range(small_count):
    with open(f"{src}/small/f{i:05}", "wb") as f:
        f.write(os.urandom(small_bytes))
sizes = random.Random(1)
for d in range(tar_dirs):
    os.makedirs(f"{src}/tree/d{d:03}")
for i in range(tar_count):
    with open(f"{src}/tree/d{i % tar_dirs:03}/f{i:05}.c", "wb") as f:
        f.write(os.urandom(sizes.randint(512, 16384)))
EOF
tar cf "$WORK/tree.tar" -C "$SRC" tree
TAR_BYTES=$(find "$SRC/tree" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
note "small: $SMALL_COUNT files of $SMALL_BYTES B"
note "tree:  $TAR_COUNT files of 512 B to 16 KiB ($TAR_BYTES B) in $TAR_DIRS directories, as tree.tar"

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
BUCKETFS_FLAGS="--endpoint-url $ENDPOINT --force-path-style --region us-east-1 (defaults: --write-part-size $PART_SIZE_MIB --max-write-buffer $MAX_WRITE_BUFFER_MIB --max-cache-size $MAX_CACHE_MIB --max-concurrency $CONCURRENCY, staging in a private tmp dir)"
S3FS_FLAGS="-o url=$ENDPOINT -o use_path_request_style -o endpoint=us-east-1 (defaults: parallel_count=5 multipart_size=10, no use_cache)"
RCLONE_FLAGS="--vfs-cache-mode writes --cache-dir WORK/rclone-cache (defaults: --vfs-write-back 5s --s3-chunk-size 5M --s3-upload-concurrency 4 --transfers 4)"

mount_variant() {
  local variant=$1
  case $variant in
    bucketfs)
      if [ -n "${BENCH_BUCKETFS_LOG:-}" ]; then
        # Foreground, so that its log goes to a file; the mount is awaited below.
        RUST_LOG=$BENCH_BUCKETFS_LOG "$BUCKETFS" "$BUCKET" "$MNT" --endpoint-url "$ENDPOINT" \
          --force-path-style --region us-east-1 --foreground >>"$WORK/bucketfs.log" 2>&1 &
        daemon_pid=$!
      else
        "$BUCKETFS" "$BUCKET" "$MNT" --endpoint-url "$ENDPOINT" --force-path-style --region us-east-1
        daemon_pid=$(pgrep -f "bucketfs $BUCKET $MNT" | head -1)
      fi ;;
    s3fs)
      s3fs "$BUCKET" "$MNT" -o url="$ENDPOINT" -o use_path_request_style -o endpoint=us-east-1 \
        -o passwd_file="$WORK/s3fs.passwd"
      daemon_pid=$(pgrep -f "s3fs $BUCKET $MNT" | head -1) ;;
    rclone)
      # rclone refuses to start while AWS_CA_BUNDLE is set (it is on some machines).
      env -u AWS_CA_BUNDLE rclone --config "$WORK/rclone.conf" mount "s3:$BUCKET" "$MNT" --daemon \
        --vfs-cache-mode writes --cache-dir "$WORK/rclone-cache"
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
seconds_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }
ticks_to_seconds() { awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'; }
field() { tr ' ' '\n' <<<"$2" | awk -F= -v k="$1" '$1 == k { print $2 }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# Prints the space-separated words of $1 one a line, rotated left by round number $2.
rotated() { local words=($1) n i; n=${#words[@]}; for ((i = 0; i < n; i++)); do echo "${words[(i + $2) % n]}"; done; }
per_second() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.1f", n / s }'; }
vmhwm_mib() { awk '/^VmHWM/ { print int($2 / 1024) }' "/proc/$1/status"; }

declare -A R   # R[workload:tool] = space-separated values, one per run
record() { R[$1]="${R[$1]:-} $2"; }

# Writes are flushed to disk between runs, so that no run pays for the previous one's writeback
# (the server's copy, the staging files); the sources are read back into the page cache.
settle() {
  sync
  cat "$@" >/dev/null
}

# One timed run of workload $1 by tool $2 in round $3. The writer command is the rest; it runs with
# DEST set to the run's directory in the mount. Sets seconds, durable (seconds until every object
# is in the bucket), check (seconds the HEADs of the check took), rss, cpu figures.
mounted_run() {
  local workload=$1 tool=$2 prefix=$3 local_path=$4
  shift 4
  mount_variant "$tool"
  mkdir "$MNT/$prefix"
  local daemon_before server_before start end out
  daemon_before=$(cpu_ticks "$daemon_pid")
  server_before=$(cpu_ticks "$server_pid")
  start=$EPOCHREALTIME
  DEST=$MNT/$prefix "$@"
  end=$EPOCHREALTIME
  seconds=$(seconds_between "$start" "$end")
  out=$(raw wait --bucket "$BUCKET" --prefix "$prefix/$(basename "$local_path")$([ -d "$local_path" ] && echo /)" \
    --local "$local_path")
  durable=$(seconds_between "$start" "$(field done_at "$out")")
  check=$(field seconds "$out")
  client_cpu=$(ticks_to_seconds $(($(cpu_ticks "$daemon_pid") - daemon_before)))
  server_cpu=$(ticks_to_seconds $(($(cpu_ticks "$server_pid") - server_before)))
  rss=$(vmhwm_mib "$daemon_pid")
  unmount_variant
}

# ---------------------------------------------------------------------------------------------
if [[ " $WORKLOADS " == *" big "* ]]; then
  step "sequential write of $BIG_MIB MiB ($WRITE_COMMAND): $RUNS rounds; load $(load)"
  for round in $(seq 1 "$RUNS"); do
    for tool in $(rotated "$TOOLS" "$round"); do
      prefix=big-$tool-$round
      settle "$SRC/big"
      if [ "$tool" = raw ]; then
        server_before=$(cpu_ticks "$server_pid")
        TIMEFORMAT='%U %S'
        { time out=$(raw put-file --bucket "$BUCKET" --key "$prefix/big" --file "$SRC/big" \
            --part-size-mib "$PART_SIZE_MIB" --concurrency "$PARTS_IN_FLIGHT"); } 2>"$WORK/time"
        seconds=$(field seconds "$out")
        durable=$seconds check=0 rss=
        client_cpu=$(awk '{ printf "%.2f", $1 + $2 }' "$WORK/time")
        server_cpu=$(ticks_to_seconds $(($(cpu_ticks "$server_pid") - server_before)))
      else
        case $WRITE_COMMAND in
          dd) write_big() { dd if="$SRC/big" of="$DEST/big" bs=1M conv=fsync status=none; } ;;
          cp) write_big() { cp "$SRC/big" "$DEST/big"; } ;;
          *) die "BENCH_WRITE_COMMAND must be dd or cp" ;;
        esac
        mounted_run big "$tool" "$prefix" "$SRC/big" write_big
        record "rss:$tool" "$rss"
      fi
      if [ "$tool" = bucketfs ] && [ "$round" -eq 1 ]; then
        # Content check, untimed: the object holds the bytes written.
        raw get-all --bucket "$BUCKET" --prefix "$prefix/" --dest "$WORK/out/check" >/dev/null
        got=$(md5sum <"$WORK/out/check/big" | cut -d' ' -f1)
        rm -rf "$WORK/out/check"
        [ "$got" = "$BIG_MD5" ] || die "bucketfs wrote wrong data: md5 $got, source $BIG_MD5"
      fi
      raw delete-prefix --bucket "$BUCKET" --prefix "$prefix/" >/dev/null
      mbps=$(per_second "$BIG_MB" "$seconds")
      record "big:$tool" "$mbps"
      record "bigdur:$tool" "$(per_second "$BIG_MB" "$durable")"
      record "bigcpu:$tool" "$client_cpu"
      record "bigscpu:$tool" "$server_cpu"
      note "round $round $(printf '%-8s' "$tool"): ${seconds}s = $mbps MB/s; in bucket after ${durable}s" \
        "(check ${check}s); CPU s: client $client_cpu, server $server_cpu${rss:+; VmHWM $rss MiB}"
    done
  done
fi

# ---------------------------------------------------------------------------------------------
if [[ " $WORKLOADS " == *" small "* ]]; then
  step "create $SMALL_COUNT files of $SMALL_BYTES B (cp -r): $RUNS rounds; load $(load)"
  for round in $(seq 1 "$RUNS"); do
    for tool in $(rotated "$TOOLS" "$round"); do
      prefix=small-$tool-$round
      settle "$SRC"/small/*
      if [ "$tool" = raw ]; then
        out=$(raw put-files --bucket "$BUCKET" --prefix "$prefix/small/" --dir "$SRC/small" --concurrency 1)
        [ "$(field objects "$out")" -eq "$SMALL_COUNT" ] || die "raw put $out"
        seconds=$(field seconds "$out") durable=$seconds check=0
      else
        cp_small() { cp -r "$SRC/small" "$DEST/"; }
        mounted_run small "$tool" "$prefix" "$SRC/small" cp_small
      fi
      raw delete-prefix --bucket "$BUCKET" --prefix "$prefix/" >/dev/null
      rate=$(per_second "$SMALL_COUNT" "$seconds")
      record "small:$tool" "$rate"
      record "smalldur:$tool" "$(per_second "$SMALL_COUNT" "$durable")"
      note "round $round $(printf '%-8s' "$tool"): ${seconds}s = $rate files/s; in bucket after ${durable}s (check ${check}s)"
    done
  done
fi

# ---------------------------------------------------------------------------------------------
if [[ " $WORKLOADS " == *" tar "* ]]; then
  step "tar x of $TAR_COUNT files: $RUNS rounds; load $(load)"
  for round in $(seq 1 "$RUNS"); do
    for tool in $(rotated "$TOOLS" "$round"); do
      prefix=tar-$tool-$round
      settle "$WORK/tree.tar"
      if [ "$tool" = raw ]; then
        settle $(find "$SRC/tree" -type f)
        out=$(raw put-files --bucket "$BUCKET" --prefix "$prefix/tree/" --dir "$SRC/tree" --concurrency 1)
        [ "$(field objects "$out")" -eq "$TAR_COUNT" ] || die "raw put $out"
        seconds=$(field seconds "$out") durable=$seconds check=0
      else
        tar_x() { tar -x --no-same-owner --no-same-permissions -f "$WORK/tree.tar" -C "$DEST"; }
        mounted_run tar "$tool" "$prefix" "$SRC/tree" tar_x
      fi
      raw delete-prefix --bucket "$BUCKET" --prefix "$prefix/" >/dev/null
      record "tar:$tool" "$seconds"
      record "tardur:$tool" "$durable"
      note "round $round $(printf '%-8s' "$tool"): ${seconds}s; in bucket after ${durable}s (check ${check}s)"
    done
  done
fi

# ---------------------------------------------------------------------------------------------
med() { [ -n "${R[$1]:-}" ] && median ${R[$1]} || echo -; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'; }
maxof() { [ -n "${R[$1]:-}" ] && printf '%s\n' ${R[$1]} | sort -g | tail -1 || echo -; }

echo
step "results (median of $RUNS rounds; MB = 10^6 bytes; all tools on the same s3s-fs at $ENDPOINT)"
note "bucketfs: $BUCKETFS_FLAGS"
note "s3fs:     $S3FS_FLAGS"
note "rclone:   $RCLONE_FLAGS"
note "raw:      aws-sdk-s3; big: multipart, $PART_SIZE_MIB MiB parts, $PARTS_IN_FLIGHT in flight; small, tar: PutObject one after another"
note "rclone's close() returns before its upload: \"in bucket\" rows are the time until every object was seen by HEAD"
echo
printf '    %-44s %10s %10s %10s %10s\n' workload bucketfs s3fs rclone raw
row() {
  local label=$1 key=$2
  printf '    %-44s %10s %10s %10s %10s\n' "$label" "$(med "$key:bucketfs")" "$(med "$key:s3fs")" \
    "$(med "$key:rclone")" "$(med "$key:raw")"
}
row "write $BIG_MIB MiB, MB/s until dd returns" big
row "write $BIG_MIB MiB, MB/s until in bucket" bigdur
row "create $SMALL_COUNT x 4 KiB, files/s until cp returns" small
row "create $SMALL_COUNT x 4 KiB, files/s until in bucket" smalldur
row "tar x $TAR_COUNT files, s until tar returns" tar
row "tar x $TAR_COUNT files, s until in bucket" tardur
echo
note "write CPU seconds (median): client: bucketfs $(med bigcpu:bucketfs), s3fs $(med bigcpu:s3fs)," \
  "rclone $(med bigcpu:rclone), raw $(med bigcpu:raw); server: bucketfs $(med bigscpu:bucketfs)," \
  "s3fs $(med bigscpu:s3fs), rclone $(med bigscpu:rclone), raw $(med bigscpu:raw)"
note "peak RSS during the write (max VmHWM over runs, MiB): bucketfs $(maxof rss:bucketfs)" \
  "(bound: --max-write-buffer $MAX_WRITE_BUFFER_MIB + --max-cache-size $MAX_CACHE_MIB + $RSS_ALLOWANCE_MIB = $RSS_BOUND_MIB)," \
  "s3fs $(maxof rss:s3fs), rclone $(maxof rss:rclone)"

echo
step "ratios, bucketfs / other (rates: above 1 is faster; tar times: below 1 is faster)"
for key in big bigdur small smalldur tar tardur; do
  note "  $(printf '%-9s' "$key") /raw $(ratio "$(med "$key:bucketfs")" "$(med "$key:raw")")," \
    "/s3fs $(ratio "$(med "$key:bucketfs")" "$(med "$key:s3fs")")," \
    "/rclone $(ratio "$(med "$key:bucketfs")" "$(med "$key:rclone")")," \
    "/rclone-in-bucket $(ratio "$(med "$key:bucketfs")" "$(med "${key%dur}dur:rclone")")"
done

echo
step "targets"
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { if (v == "-") { print "n/a"; exit }
  ok = (op == ">=") ? (v + 0 >= t + 0) : (v + 0 <= t + 0); print (ok ? "MET" : "MISSED") }'; }
r=$(ratio "$(med big:bucketfs)" "$(med big:raw)")
note "write >= 0.9 x raw uploader:                  $r -> $(verdict "$r" '>=' 0.9)"
# Within 1.3x of the raw time is a rate at least 1/1.3 of the raw rate.
r=$(ratio "$(med small:raw)" "$(med small:bucketfs)")
note "small files: time <= 1.3 x raw PUTs:          $r -> $(verdict "$r" '<=' 1.3)"
r=$(ratio "$(med small:bucketfs)" "$(med small:s3fs)")
note "small files: rate >= 1.5 x s3fs:              $r -> $(verdict "$r" '>=' 1.5)"
for key in big small; do
  r=$(ratio "$(med "$key:bucketfs")" "$(med "$key:rclone")")
  note "$(printf '%-5s' "$key") >= 1 x rclone (until it returns):       $r -> $(verdict "$r" '>=' 1)"
done
r=$(ratio "$(med tar:bucketfs)" "$(med tar:rclone)")
note "tar   time <= 1 x rclone (until it returns):  $r -> $(verdict "$r" '<=' 1)"
rss=$(maxof rss:bucketfs)
note "RSS <= $RSS_BOUND_MIB MiB:                              $rss -> $(verdict "$rss" '<=' "$RSS_BOUND_MIB")"
note "load average at the end: $(load)"
