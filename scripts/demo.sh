#!/usr/bin/env bash
# The bucketfs story on one machine: a local fake S3 (moto), a bucket with a 20 MiB file,
# the bucket mounted twice ("two hosts"), the file copied out of each mount, all copies identical.
# Everything it starts or creates is undone on exit, failure and Ctrl-C included.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CACHE=${BUCKETFS_TEST_CACHE:-$HOME/.cache/bucketfs-test}
VENV=$CACHE/venv
BUCKET=demo-bucket
BIN=$ROOT/target/release/bucketfs

step() { echo "==> $*"; }
die() { echo "demo: ERROR: $*" >&2; exit 1; }

WORK=$(realpath "$(mktemp -d "${TMPDIR:-/tmp}/bucketfs-demo.XXXXXX")")
HOST_A=$WORK/host-a
HOST_B=$WORK/host-b
mkdir -p "$HOST_A" "$HOST_B" "$WORK/data" "$WORK/copies"
server_pid=

is_mounted() { awk -v m="$1" '$2 == m { found = 1 } END { exit !found }' /proc/mounts; }

cleanup() {
  local status=$? mnt
  trap - EXIT INT TERM
  for mnt in "$HOST_A" "$HOST_B"; do
    if is_mounted "$mnt"; then
      echo "==> cleanup: unmounting $mnt"
      # A busy mount (a shell still inside it) cannot be unmounted cleanly; detach it instead.
      fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -u -z "$mnt" || echo "demo: could not unmount $mnt" >&2
    fi
  done
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    echo "==> cleanup: stopping moto_server (pid $server_pid)"
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  # --one-file-system: never descend into a mount that is somehow still there.
  rm -rf --one-file-system "$WORK" 2>/dev/null || echo "demo: could not remove $WORK" >&2
  [ "$status" -eq 0 ] || echo "demo: FAILED (exit $status)" >&2
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "installing test tools (fuse3, moto, aws CLI)"
./scripts/setup-test-deps.sh --skip-s3s-fs

step "cargo build --release"
cargo build --release
[ -x "$BIN" ] || die "$BIN was not built"

step "starting moto_server (a fake S3) on 127.0.0.1"
# The port is picked free, then bound by moto a moment later; another process may take it in
# between, so a server that dies at once is retried on a new port.
for attempt in 1 2 3; do
  PORT=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
  server_pid=$!
  # Ready when it answers HTTP at all (any status); moto takes a few seconds to import.
  for _ in $(seq 1 120); do
    kill -0 "$server_pid" 2>/dev/null || break
    if "$VENV/bin/python" - "$PORT" 2>/dev/null <<'PY'
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=1)
except urllib.error.HTTPError:
    pass
PY
    then break; fi
    sleep 0.25
  done
  kill -0 "$server_pid" 2>/dev/null && break
  wait "$server_pid" 2>/dev/null || true
  server_pid=
  echo "demo: moto_server exited (attempt $attempt); log:" >&2
  cat "$WORK/moto.log" >&2
done
[ -n "$server_pid" ] || die "moto_server did not start"
ENDPOINT=http://127.0.0.1:$PORT
echo "    moto_server pid $server_pid at $ENDPOINT"

# moto accepts any key pair; bucketfs and the aws CLI read these from the environment.
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
aws() { "$VENV/bin/aws" --endpoint-url "$ENDPOINT" "$@"; }

step "aws s3 mb s3://$BUCKET"
aws s3 mb "s3://$BUCKET"

step "uploading a 20 MiB random file and a small text file with aws s3 cp"
head -c $((20 * 1024 * 1024)) /dev/urandom >"$WORK/data/random.bin"
echo "Hello from bucketfs: this file lives in s3://$BUCKET." >"$WORK/data/hello.txt"
aws s3 cp --only-show-errors "$WORK/data/random.bin" "s3://$BUCKET/random.bin"
aws s3 cp --only-show-errors "$WORK/data/hello.txt" "s3://$BUCKET/hello.txt"
aws s3 ls "s3://$BUCKET"

mount_bucket() {
  # bucketfs detaches and exits 0 once the mount is live; anything else is a failure to report.
  "$BIN" "$BUCKET" "$1" --endpoint-url "$ENDPOINT" --force-path-style --region us-east-1 ||
    die "bucketfs could not mount $BUCKET on $1 (exit $?)"
  is_mounted "$1" || die "bucketfs returned 0 but $1 is not mounted"
}

step "host A: mounting $BUCKET on $HOST_A"
mount_bucket "$HOST_A"

step "host A: ls -l $HOST_A"
ls -l "$HOST_A"
cat "$HOST_A/hello.txt"

step "host A: copying random.bin out of the mount"
cp "$HOST_A/random.bin" "$WORK/copies/from-host-a.bin"

step "host B: mounting the same bucket on $HOST_B"
mount_bucket "$HOST_B"
ls -l "$HOST_B"

step "host B: copying random.bin out of the mount"
cp "$HOST_B/random.bin" "$WORK/copies/from-host-b.bin"

step "comparing the original with both copies"
diff "$WORK/data/random.bin" "$WORK/copies/from-host-a.bin"
diff "$WORK/data/random.bin" "$WORK/copies/from-host-b.bin"
sha256sum "$WORK/data/random.bin" "$WORK/copies/"*.bin
echo "identical"

step "unmounting both mounts"
fusermount3 -u "$HOST_A"
fusermount3 -u "$HOST_B"

step "stopping moto_server"
kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=

step "demo finished"
