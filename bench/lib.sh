# Shared set-up of bench/run.sh (reads) and bench/write.sh (writes); sourced, never run.
#
# A script sets its knobs, then calls, in this order:
#   bench_prepare "$@"   root check, tools (apt-get), builds, server binary, peers; then re-runs the
#                        script inside a private network namespace (see bench_enter_netns)
#   bench_workdir NAME   work dir with mnt/ data/ out/ bin/, the cleanup trap
#   bench_header         machine, versions, server profile
#   bench_start_server   s3s-fs on a free port (retried), bucket created; sets ENDPOINT, server_pid
#   bench_client_configs s3fs password file, rclone config
# then measures with mount_tool / unmount_tool, record, and prints with the table helpers.
#
# Common knobs (environment):
#   BENCH_SERVER       fast (default): s3s-fs with dir-keys + fast-bodies + flat-listing.patch (1 MiB bodies,
#                      TCP_NODELAY, flat pages cost about their keys; the server is not the ceiling); slow: dir-keys.patch only, the
#                      server the test suite uses (4 KiB bodies: its CPU is the ceiling)
#   BUCKETFS_BENCH_S3S_FS  an s3s-fs binary to use instead (its profile is then "custom")
#   BENCH_SERVER_LOG   RUST_LOG for s3s-fs; its log is copied to bench/last-server.log
#   BENCH_BUCKETFS_LOG RUST_LOG for bucketfs (runs in the foreground); log in bench/last-bucketfs.log
#   BENCH_BUCKETFS     the bucketfs binary (default target/release/bucketfs, built first), e.g. a
#                      wrapper that adds options; it must exec bucketfs, so that the daemon's
#                      command line still reads "... bucketfs BUCKET MNT"
#   BENCH_HOST_NETWORK=1  stay in the host's network namespace
#   BENCH_AUTOGROUP    0 or 1: sets the kernel's sched_autogroup_enabled for the run, put back on
#                      exit. With it on (the usual default), a daemon that detaches into a session of
#                      its own (bucketfs, s3fs) is scheduled as a group apart from the reader and the
#                      server, while Mountpoint (-f) shares theirs (see docs/benchmarks.md)
#   BENCH_PEERS_DIR    where mount-s3 is run from (~/.cache/bucketfs-test/peers), copied there
#                      from /work/shared/peers (BENCH_MOUNTPOINT_SRC) when absent
# Everything mounted or started is undone on exit, failure and Ctrl-C included.

export LC_ALL=C RUST_BACKTRACE=0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

BUCKET=bench
ACCESS_KEY=bench-access-key
SECRET_KEY=bench-secret-key
CACHE_DIR=${BUCKETFS_TEST_CACHE:-$HOME/.cache/bucketfs-test}
PEERS_DIR=${BENCH_PEERS_DIR:-$CACHE_DIR/peers}
MOUNTPOINT_SRC=${BENCH_MOUNTPOINT_SRC:-/work/shared/peers/mount-s3}
# One target dir per checkout: cargo copies the binary to release/ only when it builds, so a
# checkout whose own build is fresh would otherwise run whatever another checkout built last
# (it happened: a run from a worktree of an older commit left its ceiling for the next run here).
CEILING_TARGET=$CACHE_DIR/fuse-ceiling-target-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)
SERVER_PROFILE=${BENCH_SERVER:-fast}
# bucketfs's defaults, spelled out so that the raw client and the bounds use the same numbers.
PART_SIZE_MIB=8
CONCURRENCY=16

BUCKETFS=${BENCH_BUCKETFS:-$ROOT/target/release/bucketfs}
RAW=$ROOT/target/release/examples/raw_client
CEILING=$CEILING_TARGET/release/fuse-ceiling
MOUNT_S3=$PEERS_DIR/mount-s3
CLK_TCK=$(getconf CLK_TCK)
GIB=1073741824

step() { echo "==> $* [$(date +%T)]"; }
note() { echo "    $*"; }
die() { echo "bench: ERROR: $*" >&2; exit 1; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

# ---------------------------------------------------------------------------------------------
# Preparation, outside the namespace (which has no way out to apt or crates.io).

bench_prepare() {
  [ "$(id -u)" -eq 0 ] || die "run as root (FUSE mounts, drop_caches, the network namespace)"
  if [ -z "${BENCH_IN_NETNS:-}" ]; then
    step "tools"
    local missing=()
    command -v s3fs >/dev/null || missing+=(s3fs)
    command -v rclone >/dev/null || missing+=(rclone)
    command -v fusermount3 >/dev/null || missing+=(fuse3)
    command -v fio >/dev/null || missing+=(fio)
    if [ ${#missing[@]} -gt 0 ]; then
      note "installing ${missing[*]}"
      DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >/dev/null ||
        { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >/dev/null; } ||
        note "apt-get failed; tools still missing are skipped where possible"
    fi

    step "cargo build --release --bin bucketfs --example raw_client"
    cargo build --release --bin bucketfs --example raw_client
    [ -x "$BUCKETFS" ] && [ -x "$RAW" ] || die "release binaries missing"
    step "cargo build --release of bench/fuse-ceiling (target dir $CEILING_TARGET)"
    CARGO_TARGET_DIR=$CEILING_TARGET cargo build --release --manifest-path "$ROOT/bench/fuse-ceiling/Cargo.toml" ||
      note "fuse-ceiling did not build; the ceiling is skipped"

    if [ ! -x "$MOUNT_S3" ] && [ -x "$MOUNTPOINT_SRC" ]; then
      mkdir -p "$PEERS_DIR"
      cp "$MOUNTPOINT_SRC" "$MOUNT_S3.tmp" && mv "$MOUNT_S3.tmp" "$MOUNT_S3"
    fi

    if [ -n "${BUCKETFS_BENCH_S3S_FS:-}" ]; then
      S3S_FS=$BUCKETFS_BENCH_S3S_FS SERVER_PROFILE=custom
    else
      case $SERVER_PROFILE in
        fast) S3S_FS=$("$ROOT/scripts/s3s-fs/build.sh" --fast) ;;
        slow) S3S_FS=$("$ROOT/scripts/s3s-fs/build.sh") ;;
        *) die "BENCH_SERVER must be fast or slow" ;;
      esac
    fi
    [ -x "$S3S_FS" ] || die "no s3s-fs binary at $S3S_FS"
  fi
  bench_enter_netns "$@"
}

# Loopback artifact: stock s3s-fs does not set TCP_NODELAY, so a response that leaves in more than
# one write stalls on Nagle's algorithm until the client's delayed ACK (40 ms on Linux): every
# small-object GET made one at a time costs 40 ms whatever the client does. The fast profile sets
# TCP_NODELAY; for both, the benchmark runs in a private network namespace whose loopback route has
# `quickack 1` (no delayed ACKs), so the profiles differ only in body chunking. Nothing outside the
# namespace changes. BENCH_HOST_NETWORK=1 keeps the host's network.
bench_enter_netns() {
  if [ -z "${BENCH_IN_NETNS:-}" ] && [ "${BENCH_HOST_NETWORK:-0}" != 1 ]; then
    export S3S_FS SERVER_PROFILE
    # By absolute path: the script was started from anywhere, and this shell is in $ROOT now.
    exec env BENCH_IN_NETNS=1 unshare --net -- "$ROOT/bench/$(basename "$0")" "$@"
  fi
  NETWORK="host network namespace (delayed ACKs on loopback)"
  if [ -n "${BENCH_IN_NETNS:-}" ]; then
    ip link set lo up
    ip route change local 127.0.0.0/8 dev lo table local proto kernel scope host src 127.0.0.1 quickack 1
    ip route change local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1 quickack 1
    NETWORK="private network namespace, loopback route with quickack 1"
  fi
}

# ---------------------------------------------------------------------------------------------
# Work dir and cleanup.

server_pid=
daemon_pid=
autogroup_before=
AUTOGROUP_SETTING=/proc/sys/kernel/sched_autogroup_enabled

is_mounted() { awk -v m="$1" '$2 == m { found = 1 } END { exit !found }' /proc/mounts; }
is_running() { [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

bench_workdir() {
  WORK=$(realpath "$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")")
  MNT=$WORK/mnt
  DATA=$WORK/data
  mkdir -p "$MNT" "$DATA" "$WORK/out" "$WORK/bin" "$WORK/rclone-cache"
  # target/ is shared: a build started elsewhere during the run must not swap a binary under test.
  # Named bucketfs whatever BENCH_BUCKETFS is called: the daemons are found by that name.
  cp "$BUCKETFS" "$WORK/bin/bucketfs"
  cp "$RAW" "$WORK/bin/"
  BUCKETFS=$WORK/bin/bucketfs
  RAW=$WORK/bin/raw_client
  if [ -x "$CEILING" ]; then cp "$CEILING" "$WORK/bin/"; CEILING=$WORK/bin/fuse-ceiling; fi
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  if [ -n "${BENCH_AUTOGROUP:-}" ]; then
    [ -w "$AUTOGROUP_SETTING" ] || die "BENCH_AUTOGROUP: cannot write $AUTOGROUP_SETTING"
    autogroup_before=$(cat "$AUTOGROUP_SETTING")
    echo "$BENCH_AUTOGROUP" >"$AUTOGROUP_SETTING"
  fi
}

# bench_cleanup [STATUS]: STATUS (default: the exit status of what ran last) is the script's.
bench_cleanup() {
  local status=${1:-$?}
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
  if [ -n "$autogroup_before" ]; then
    echo "$autogroup_before" >"$AUTOGROUP_SETTING" || echo "bench: could not put back $AUTOGROUP_SETTING" >&2
  fi
  # --one-file-system: never descend into a mount that is somehow still there.
  rm -rf --one-file-system "$WORK" 2>/dev/null || echo "bench: could not remove $WORK" >&2
  [ "$status" -eq 0 ] || echo "bench: FAILED (exit $status)" >&2
  exit "$status"
}

# ---------------------------------------------------------------------------------------------
# Header, server, client configurations.

server_description() {
  case $SERVER_PROFILE in
    fast) echo "fast: dir-keys + fast-bodies + flat-listing patches (1 MiB bodies, TCP_NODELAY, flat pages cost about their keys)" ;;
    slow) echo "slow: dir-keys patch only (4 KiB bodies, as the test suite's)" ;;
    *) echo "custom binary $S3S_FS" ;;
  esac
}

# The first line of a command's output; a command killed by the closed pipe is no failure.
first_line() { { "$@" 2>&1 || true; } | head -1; }

bench_header() {
  step "machine and versions"
  note "date:       $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  note "cpu:        $(nproc) x $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
  note "memory:     $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  note "kernel:     $(uname -r)"
  note "network:    $NETWORK"
  note "load:       $(load) (1, 5, 15 min)"
  note "scheduler:  sched_autogroup_enabled=$(cat "$AUTOGROUP_SETTING" 2>/dev/null || echo absent)$([ -n "${BENCH_AUTOGROUP:-}" ] && echo " (BENCH_AUTOGROUP, for this run)")"
  local dirty
  dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " + uncommitted changes" || true)
  if [ -n "${BENCH_BUCKETFS:-}" ]; then
    # The tree's commit says nothing of a binary given from elsewhere.
    note "bucketfs:   BENCH_BUCKETFS=$BENCH_BUCKETFS ($(stat -c '%y' "$BENCH_BUCKETFS" | cut -d. -f1)); tree at $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty"
  else
    note "bucketfs:   $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty"
  fi
  note "mountpoint: $([ -x "$MOUNT_S3" ] && first_line "$MOUNT_S3" --version || echo "absent ($MOUNTPOINT_SRC not found): skipped")"
  note "s3fs:       $(command -v s3fs >/dev/null && first_line s3fs --version || echo absent)"
  note "rclone:     $(command -v rclone >/dev/null && first_line env -u AWS_CA_BUNDLE rclone version || echo absent)"
  note "fio:        $(command -v fio >/dev/null && first_line fio --version || echo absent)"
  note "ceiling:    $([ -x "$CEILING" ] && echo "bench/fuse-ceiling (fuser, bucketfs's FUSE settings)" || echo "absent: skipped")"
  note "server:     $(first_line "$S3S_FS" --version), profile $(server_description)"
  note "disk:       $(df -h --output=source,size,avail "$WORK" | tail -1)"
}

bench_start_server() {
  step "starting s3s-fs on 127.0.0.1"
  export AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY AWS_REGION=us-east-1
  export AWS_EC2_METADATA_DISABLED=true
  # The port is picked free, then bound by the server a moment later; another process may take
  # it in between, so a server that dies at once is retried on a new port.
  local attempt
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
}

raw() { "$RAW" --endpoint-url "$ENDPOINT" "$@"; }

bench_client_configs() {
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
}

# ---------------------------------------------------------------------------------------------
# Tools. A tool is a client with its flags: bucketfs, bucketfs-64 (--max-cache-size 64),
# bucketfs-no-posix, bucketfs-ro (--read-only), mountpoint, s3fs, s3fs-tuned, rclone, rclone-server-modtime, ceiling (our
# in-memory FUSE file system), raw (no mount), raw+fuse (bench/write.sh: raw beside the ceiling's
# sink). RCLONE_CACHE_MODE (off for reads, writes for writes) and CEILING_ARGS (size in MiB, files;
# --sink: writable, writes dropped) are set by the script.

RCLONE_CACHE_MODE=${RCLONE_CACHE_MODE:-off}
S3FS_TUNED_OPTS="parallel_count=16,multipart_size=16"
MOUNTPOINT_OPTS="--maximum-throughput-gbps 10 --allow-delete --allow-overwrite"

is_peer() { case $1 in mountpoint | s3fs | s3fs-tuned | rclone) return 0 ;; *) return 1 ;; esac; }

# Drops the tools that cannot run here, with a note; prints the rest.
available_tools() {
  local tool out=()
  for tool in $1; do
    case $tool in
      mountpoint) [ -x "$MOUNT_S3" ] || { note "mountpoint skipped: no $MOUNT_S3 ($MOUNTPOINT_SRC absent)" >&2; continue; } ;;
      s3fs | s3fs-tuned) command -v s3fs >/dev/null || { note "$tool skipped: s3fs not installed" >&2; continue; } ;;
      rclone) command -v rclone >/dev/null || { note "rclone skipped: not installed" >&2; continue; } ;;
      ceiling | raw+fuse) [ -x "$CEILING" ] || { note "$tool skipped: bench/fuse-ceiling not built" >&2; continue; } ;;
    esac
    out+=("$tool")
  done
  echo "${out[*]}"
}

tool_flags() {
  case $1 in
    bucketfs*) echo "--endpoint-url URL --force-path-style --region us-east-1$([ "$1" = bucketfs-64 ] && echo " --max-cache-size 64")$([ "$1" = bucketfs-no-posix ] && echo " --no-posix-metadata")$([ "$1" = bucketfs-ro ] && echo " --read-only"), other options at their defaults" ;;
    mountpoint) echo "-f --endpoint-url URL --force-path-style --region us-east-1 $MOUNTPOINT_OPTS" ;;
    s3fs) echo "-o url=URL,use_path_request_style,endpoint=us-east-1 (defaults: parallel_count=5 multipart_size=10, no use_cache)" ;;
    s3fs-tuned) echo "as s3fs, plus -o $S3FS_TUNED_OPTS" ;;
    rclone*) echo "mount --daemon --vfs-cache-mode $RCLONE_CACHE_MODE$([ "$1" = rclone-server-modtime ] && echo " --use-server-modtime") (defaults: --buffer-size 16M --vfs-read-chunk-size 128M)" ;;
    ceiling) echo "bench/fuse-ceiling ${CEILING_ARGS:-}: files served from memory, bucketfs's FUSE settings" ;;
    raw) echo "aws-sdk-s3 (examples/raw_client.rs), $PART_SIZE_MIB MiB parts, $CONCURRENCY in flight" ;;
    raw-over) echo "as raw, onto a key that already holds an empty object (PUT untimed before each round)" ;;
    raw+fuse) echo "as raw, while the same command writes the same file into bench/fuse-ceiling --sink (drops it)" ;;
  esac
}

mount_tool() {
  local tool=$1
  case $tool in
    bucketfs | bucketfs-64 | bucketfs-no-posix | bucketfs-ro)
      local extra=()
      [ "$tool" = bucketfs-64 ] && extra=(--max-cache-size 64)
      [ "$tool" = bucketfs-no-posix ] && extra=(--no-posix-metadata)
      [ "$tool" = bucketfs-ro ] && extra=(--read-only)
      if [ -n "${BENCH_BUCKETFS_LOG:-}" ]; then
        # Foreground, so that its log goes to a file; the mount is awaited below.
        RUST_LOG=$BENCH_BUCKETFS_LOG "$BUCKETFS" "$BUCKET" "$MNT" --endpoint-url "$ENDPOINT" \
          --force-path-style --region us-east-1 "${extra[@]}" --foreground >>"$WORK/bucketfs.log" 2>&1 &
        daemon_pid=$!
      else
        "$BUCKETFS" "$BUCKET" "$MNT" --endpoint-url "$ENDPOINT" --force-path-style --region us-east-1 "${extra[@]}"
        daemon_pid=$(pgrep -f "bucketfs $BUCKET $MNT" | head -1)
      fi ;;
    mountpoint)
      # shellcheck disable=SC2086
      "$MOUNT_S3" -f --endpoint-url "$ENDPOINT" --force-path-style --region us-east-1 $MOUNTPOINT_OPTS \
        "$BUCKET" "$MNT" >>"$WORK/mountpoint.log" 2>&1 &
      daemon_pid=$! ;;
    s3fs | s3fs-tuned)
      local extra=()
      [ "$tool" = s3fs-tuned ] && extra=(-o "$S3FS_TUNED_OPTS")
      s3fs "$BUCKET" "$MNT" -o url="$ENDPOINT" -o use_path_request_style -o endpoint=us-east-1 \
        -o passwd_file="$WORK/s3fs.passwd" "${extra[@]}"
      daemon_pid=$(pgrep -f "s3fs $BUCKET $MNT" | head -1) ;;
    rclone | rclone-server-modtime)
      local extra=()
      [ "$tool" = rclone-server-modtime ] && extra=(--use-server-modtime)
      [ "$RCLONE_CACHE_MODE" = off ] || extra+=(--cache-dir "$WORK/rclone-cache")
      # rclone refuses to start while AWS_CA_BUNDLE is set (it is on some machines).
      env -u AWS_CA_BUNDLE rclone --config "$WORK/rclone.conf" mount "s3:$BUCKET" "$MNT" --daemon \
        --vfs-cache-mode "$RCLONE_CACHE_MODE" "${extra[@]}"
      daemon_pid=$(pgrep -f "rclone --config $WORK/rclone.conf mount s3:$BUCKET $MNT" | head -1) ;;
    ceiling)
      # shellcheck disable=SC2086
      "$CEILING" "$MNT" ${CEILING_ARGS:-} >>"$WORK/ceiling.log" 2>&1 &
      daemon_pid=$! ;;
    *) die "unknown tool $tool" ;;
  esac
  # Some return before the mount is up, some run in the foreground: wait for it.
  local i
  for i in $(seq 1 400); do
    is_mounted "$MNT" && break
    [ -n "$daemon_pid" ] && ! is_running "$daemon_pid" && break
    sleep 0.05
  done
  is_mounted "$MNT" || { tail -5 "$WORK"/*.log 2>/dev/null >&2 || true; die "$tool: $MNT did not get mounted"; }
  [ -n "$daemon_pid" ] || die "$tool: daemon process not found"
  # bucketfs raises its mount's kernel readahead to 4 MiB when root (1 MiB
  # requests instead of 128 KiB); the ceiling must get the same, or it is
  # no ceiling for bucketfs's reads.
  if [ "$tool" = ceiling ]; then
    echo 4096 >"/sys/class/bdi/$(mountpoint -d "$MNT")/read_ahead_kb" ||
      note "ceiling: could not set its readahead"
  fi
}

unmount_tool() {
  local i
  for i in 1 2 3 4 5; do
    fusermount3 -u "$MNT" 2>/dev/null && break
    sleep 0.5
  done
  is_mounted "$MNT" && { fusermount3 -u -z "$MNT"; die "$MNT was busy; detached it"; }
  for i in $(seq 1 300); do
    is_running "$daemon_pid" || break
    sleep 0.1
  done
  if is_running "$daemon_pid"; then
    # Seen once with Mountpoint after `ls -l` of 1,000 objects (quick run). The figure was taken
    # before the unmount; a stuck exit is reported, not fatal.
    note "WARNING: daemon $daemon_pid ($(cat "/proc/$daemon_pid/comm" 2>/dev/null)) still running 30 s after unmount; killing it"
    kill "$daemon_pid" 2>/dev/null || true
    for i in $(seq 1 50); do is_running "$daemon_pid" || break; sleep 0.1; done
    is_running "$daemon_pid" && kill -KILL "$daemon_pid" 2>/dev/null
    [ -s "$WORK/mountpoint.log" ] && tail -5 "$WORK/mountpoint.log" | sed 's/^/    mountpoint.log: /'
  fi
  wait "$daemon_pid" 2>/dev/null || true
  daemon_pid=
}

# ---------------------------------------------------------------------------------------------
# Sampling. CPU is utime + stime from /proc/PID/stat (children not included), peak RSS the
# kernel's high-water mark VmHWM, read just before unmounting.

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
ticks_to_seconds() { awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'; }
vmhwm_mib() { awk '/^VmHWM/ { print int($2 / 1024) }' "/proc/$1/status"; }
seconds_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.4f", b - a }'; }
seconds_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }
per_second() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.1f", n / s }'; }
field() { tr ' ' '\n' <<<"$2" | awk -F= -v k="$1" '$1 == k { print $2 }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# Prints the space-separated words of $1 one a line, rotated left by round number $2.
rotated() { local words=($1) n i; n=${#words[@]}; for ((i = 0; i < n; i++)); do echo "${words[(i + $2) % n]}"; done; }

drop_caches() {
  sync
  echo 3 2>/dev/null >/proc/sys/vm/drop_caches || { note "(could not drop the page cache)"; return 0; }
}

# Sets children_cpu: user + system CPU seconds of this shell's finished children (and theirs), from
# bash's `times`, run in this shell (a subshell's count starts at zero) into a file.
children_cpu_now() {
  times >"$WORK/times"
  children_cpu=$(awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, p, "m"); t += p[1] * 60 + p[2] } printf "%.2f", t }' "$WORK/times")
}

# Sets children_cpu_used: the CPU seconds this shell's children used since children_cpu was $1.
children_cpu_since() {
  children_cpu_now
  children_cpu_used=$(awk -v a="$1" -v b="$children_cpu" 'BEGIN { printf "%.2f", b - a }')
}

# Starts the CPU counters of the daemon (if mounted) and the server.
sample_start() {
  S_DAEMON=0 S_SERVER=$(cpu_ticks "$server_pid")
  [ -n "$daemon_pid" ] && S_DAEMON=$(cpu_ticks "$daemon_pid")
  return 0
}
# Sets daemon_cpu, server_cpu (s since sample_start) and rss (MiB; empty without a daemon).
# A raw client's CPU comes from `time` instead: pass it as $1.
sample_stop() {
  server_cpu=$(ticks_to_seconds $(($(cpu_ticks "$server_pid") - S_SERVER)))
  if [ -n "$daemon_pid" ]; then
    daemon_cpu=$(ticks_to_seconds $(($(cpu_ticks "$daemon_pid") - S_DAEMON)))
    rss=$(vmhwm_mib "$daemon_pid")
  else
    daemon_cpu=${1:--} rss=
  fi
}

# ---------------------------------------------------------------------------------------------
# Results. R[workload:tool] holds one value per round; workload:tool:rss, :cpu, :scpu the samples.
# A workload is declared with its label, unit, direction and the GiB one round moves (0: CPU is
# then per round, not per GiB).

declare -A R W_LABEL W_UNIT W_BETTER W_GIB W_RAW
WORKLOAD_ORDER=()
# workload KEY LABEL UNIT higher|lower GIB_PER_ROUND [RAW_KEY (raw)]
workload() {
  W_LABEL[$1]=$2 W_UNIT[$1]=$3 W_BETTER[$1]=$4 W_GIB[$1]=$5 W_RAW[$1]=${6:-raw}
  WORKLOAD_ORDER+=("$1")
}
record() { R[$1]="${R[$1]:-} $2"; }
# record_round WORKLOAD TOOL VALUE: the value and the samples of sample_stop.
record_round() {
  record "$1:$2" "$3"
  [ "$daemon_cpu" = - ] || record "$1:$2:cpu" "$daemon_cpu"
  record "$1:$2:scpu" "$server_cpu"
  [ -n "$rss" ] && record "$1:$2:rss" "$rss"
  return 0
}
med() { [ -n "${R[$1]:-}" ] && median ${R[$1]} || echo -; }
maxof() { [ -n "${R[$1]:-}" ] && printf '%s\n' ${R[$1]} | sort -g | tail -1 || echo -; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || a == "" || b == "" || b == 0) print "-"; else printf "%.2f", a / b }'; }
# Speed ratio of tool value $2 against reference $3 for workload $1: above 1 is faster.
speed_ratio() {
  if [ "${W_BETTER[$1]}" = higher ]; then ratio "$2" "$3"; else ratio "$3" "$2"; fi
}
# The best median among the peers measured on workload $1 ("-" if none); best_peer_tool: whose.
best_peer_pair() {
  local tool best=- who=- v
  for tool in $TOOLS; do
    is_peer "$tool" || continue
    v=$(med "$1:$tool")
    [ "$v" = - ] && continue
    if [ "$best" = - ] ||
      { [ "${W_BETTER[$1]}" = higher ] && awk -v a="$v" -v b="$best" 'BEGIN { exit !(a > b) }'; } ||
      { [ "${W_BETTER[$1]}" = lower ] && awk -v a="$v" -v b="$best" 'BEGIN { exit !(a < b) }'; }; then
      best=$v who=$tool
    fi
  done
  echo "$best $who"
}
best_peer() { best_peer_pair "$1" | cut -d' ' -f1; }
best_peer_tool() { best_peer_pair "$1" | cut -d' ' -f2; }
per_gib() {
  awk -v c="$1" -v g="$2" 'BEGIN { if (c == "-") print "-"; else if (g > 0) printf "%.2f", c / g; else printf "%.2f", c }'
}

# The final table: one line per workload and tool measured.
print_table() {
  echo
  step "results: median of $RUNS round(s); MB = 10^6 bytes; server $(server_description)"
  note "x raw, x best peer: speed ratios (above 1: faster); x ceiling: the read's fraction of bench/fuse-ceiling"
  note "CPU: user + system seconds of the daemon (raw: the client process) and of s3s-fs, per GiB moved"
  note "(per round, marked /rd, for workloads that move little data); RSS: peak (VmHWM) of the daemon, max over rounds"
  local tool
  for tool in $TOOLS; do note "$(printf '%-22s' "$tool:") $(tool_flags "$tool")"; done
  echo
  printf '    %-46s %-22s %10s %-7s %7s %7s %7s %7s %8s %8s\n' workload tool value unit "x raw" "x peer" "x ceil" "RSS MiB" "CPU cli" "CPU srv"
  local w best raw_v ceil_v v cpu scpu g unit_cpu
  for w in "${WORKLOAD_ORDER[@]}"; do
    best=$(best_peer "$w")
    raw_v=$(med "$w:${W_RAW[$w]}")
    ceil_v=$(med "$w:ceiling")
    g=${W_GIB[$w]}
    for tool in ${TABLE_TOOLS:-$TOOLS}; do
      v=$(med "$w:$tool")
      [ "$v" = - ] && continue
      cpu=$(per_gib "$(med "$w:$tool:cpu")" "$g")
      scpu=$(per_gib "$(med "$w:$tool:scpu")" "$g")
      unit_cpu=$([ "$g" = 0 ] && echo /rd || echo "")
      printf '    %-46s %-22s %10s %-7s %7s %7s %7s %7s %8s %8s\n' "${W_LABEL[$w]}" "$tool" "$v" "${W_UNIT[$w]}" \
        "$(speed_ratio "$w" "$v" "$raw_v")" "$(speed_ratio "$w" "$v" "$best")" \
        "$([ "${W_UNIT[$w]}" = MB/s ] && ratio "$v" "$ceil_v" || echo -)" \
        "$(maxof "$w:$tool:rss")" "$cpu$([ "$cpu" = - ] || echo "$unit_cpu")" "$scpu$([ "$scpu" = - ] || echo "$unit_cpu")"
    done
  done
}

# target LABEL VALUE OP THRESHOLD: one PASS/MISS line (n/a when a figure is missing).
target() {
  local verdict
  verdict=$(awk -v v="$2" -v op="$3" -v t="$4" 'BEGIN { if (v == "-" || v == "" || t == "-" || t == "") { print "n/a"; exit }
    ok = (op == ">=") ? (v + 0 >= t + 0) : (v + 0 <= t + 0); print (ok ? "PASS" : "MISS") }')
  printf '    %-4s %-72s %s %s %s\n' "$verdict" "$1" "$2" "$3" "$4"
}
# Threshold helper: $1 x $2, or - when $2 is missing.
scaled() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == "-" || b == "") print "-"; else printf "%.4g", a * b }'; }
