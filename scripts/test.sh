#!/usr/bin/env bash
# Runs every check and test: installs the test tools (scripts/setup-test-deps.sh: what the demo
# needs, plus s3fs, s3s-fs, cargo-deb and the packaging linters), then cargo fmt --check,
# cargo clippy -D warnings and cargo test, all in the release profile so the crate compiles once.
# Extra arguments go to `cargo test` (e.g. a test name filter, or -- --nocapture).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

step() { echo "==> $*"; }

step "setup test dependencies"
./scripts/setup-test-deps.sh

# The tests look for their tools under ~/.cache/bucketfs-test unless told otherwise;
# follow a relocated cache (BUCKETFS_TEST_CACHE) by pointing them at it.
if [ -n "${BUCKETFS_TEST_CACHE:-}" ]; then
  export BUCKETFS_TEST_MOTO=${BUCKETFS_TEST_MOTO:-$BUCKETFS_TEST_CACHE/venv/bin/moto_server}
  export BUCKETFS_TEST_S3S_FS=${BUCKETFS_TEST_S3S_FS:-$BUCKETFS_TEST_CACHE/s3s-fs-patched-2/target/release/s3s-fs}
  export BUCKETFS_TEST_CARGO_DEB=${BUCKETFS_TEST_CARGO_DEB:-$BUCKETFS_TEST_CACHE/cargo-deb/bin/cargo-deb}
fi

for tool in fmt clippy; do
  cargo "$tool" --version >/dev/null 2>&1 ||
    { echo "test: cargo $tool is missing (rustup component add ${tool/fmt/rustfmt})" >&2; exit 1; }
done

# The tests make their mountpoints and server dirs with tempfile, i.e. under $TMPDIR. A private
# TMPDIR lets the safety net below find (only) this run's leftovers, even on a shared machine.
# Canonical, because /proc/mounts shows canonical paths.
TEST_TMP=$(realpath "$(mktemp -d "${TMPDIR:-/tmp}/bucketfs-test.XXXXXX")")
mounts_before=$(grep fuse /proc/mounts | grep -v fusectl || true)

# Safety net: the tests must unmount what they mount; if one did not, say so and detach it so
# it does not outlive the run. Runs on every exit, keeps the exit status.
cleanup() {
  local status=$? leftover mnt
  leftover=$(grep fuse /proc/mounts | grep -v fusectl | grep -vxF "$mounts_before" || true)
  if [ -n "$leftover" ]; then
    echo "WARNING: fuse mounts left behind by this run:" >&2
    echo "$leftover" >&2
    for mnt in $(awk '{print $2}' <<<"$leftover"); do
      case $mnt in
        "$TEST_TMP"/*) echo "test: lazily unmounting $mnt" >&2
                       fusermount3 -u -z "$mnt" 2>/dev/null || umount -l "$mnt" || true ;;
      esac
    done
  fi
  # --one-file-system: never descend into a mount that is somehow still there.
  rm -rf --one-file-system "$TEST_TMP" 2>/dev/null || echo "test: could not remove $TEST_TMP" >&2
  exit "$status"
}
trap cleanup EXIT

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --release --all-targets -- -D warnings"
cargo clippy --release --all-targets -- -D warnings

step "cargo test --release $*"
TMPDIR=$TEST_TMP cargo test --release "$@"

step "all tests passed in $((SECONDS / 60)) min $((SECONDS % 60)) s"
