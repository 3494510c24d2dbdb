#!/usr/bin/env bash
# The bucketfs story on one machine: a local fake S3 (moto), a bucket with a 20 MiB file,
# the bucket mounted twice ("two hosts"), the file copied out of each mount, all copies identical.
# Everything it starts or creates is undone on exit, failure and Ctrl-C included.
# Installs only what it needs (scripts/setup-demo-deps.sh), and builds bucketfs in Cargo.toml's
# `demo` profile: unoptimised, so it compiles in a third of release's time, and fast enough here.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CACHE=${BUCKETFS_TEST_CACHE:-$HOME/.cache/bucketfs-test}
VENV=$CACHE/venv
BUCKET=demo-bucket
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/demo/bucketfs

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

step "installing what the demo needs (fuse3, moto's S3 server, boto3)"
./scripts/setup-demo-deps.sh

step "cargo build --profile demo (about 2 minutes on 2 cores the first time; cargo shows its progress)"
t0=$SECONDS
cargo build --profile demo --locked --bin bucketfs
[ -x "$BIN" ] || die "$BIN was not built"
echo "    built $BIN in $((SECONDS - t0))s"

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

# moto accepts any key pair; bucketfs and boto3 read these from the environment.
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
# The S3 client: boto3, the AWS SDK for Python, which comes with moto.
s3() { "$VENV/bin/python" - "$ENDPOINT" "$@" <<'PY'
import sys, os, boto3
endpoint, command, *args = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint)
if command == "mb":
    s3.create_bucket(Bucket=args[0])
elif command == "put":
    path, bucket, key = args
    size, done, shown = os.path.getsize(path), 0, 0
    def progress(chunk):
        global done, shown
        done += chunk
        quarter = done * 4 // size
        if quarter > shown:
            shown = quarter
            print(f"    {key}: {done / 2**20:.1f} of {size / 2**20:.1f} MiB uploaded", flush=True)
    s3.upload_file(path, bucket, key, Callback=progress if size >= 2**20 else None)
    print(f"    uploaded {key} ({size} bytes)")
elif command == "ls":
    for obj in s3.list_objects_v2(Bucket=args[0]).get("Contents", []):
        print(f"    {obj['LastModified']:%Y-%m-%d %H:%M:%S} {obj['Size']:>10} {obj['Key']}")
PY
}

step "creating bucket s3://$BUCKET"
s3 mb "$BUCKET"

step "uploading a 20 MiB random file and a small text file with boto3"
head -c $((20 * 1024 * 1024)) /dev/urandom >"$WORK/data/random.bin"
echo "Hello from bucketfs: this file lives in s3://$BUCKET." >"$WORK/data/hello.txt"
s3 put "$WORK/data/random.bin" "$BUCKET" random.bin
s3 put "$WORK/data/hello.txt" "$BUCKET" hello.txt
s3 ls "$BUCKET"

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

# cp, as the story goes; a 20 MiB copy takes well under a second, so the
# size and time it took say more than a progress bar would.
copy_out() {
  local started=$SECONDS
  cp "$1" "$2"
  echo "copied $(du -h "$2" | cut -f1) in $((SECONDS - started)) s: $2"
}

step "host A: copying random.bin out of the mount"
copy_out "$HOST_A/random.bin" "$WORK/copies/from-host-a.bin"

step "host B: mounting the same bucket on $HOST_B"
mount_bucket "$HOST_B"
ls -l "$HOST_B"

step "host B: copying random.bin out of the mount"
copy_out "$HOST_B/random.bin" "$WORK/copies/from-host-b.bin"

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

step "demo finished in $((SECONDS / 60)) min $((SECONDS % 60)) s"
