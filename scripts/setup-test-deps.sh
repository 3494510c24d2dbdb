#!/usr/bin/env bash
# Installs what the tests need, into fixed places the tests know about:
#   - all that scripts/demo.sh needs (scripts/setup-demo-deps.sh): fuse3, and moto_server in
#     the Python venv $CACHE/venv;
#   - git, tar, s3fs and attr from apt, when missing;
#   - s3s-fs 0.14.1 patched with scripts/s3s-fs/dir-keys.patch: $CACHE/s3s-fs-patched-2/target/release/s3s-fs;
#   - packaging tools for tests/packaging.rs: systemd (systemd-analyze), rpm (rpmspec), rpmlint
#     and lintian from apt, and cargo-deb: $CACHE/cargo-deb/bin/cargo-deb.
# CACHE is $BUCKETFS_TEST_CACHE, default ~/.cache/bucketfs-test. Idempotent: quick when all is
# cached; minutes the first time, mostly building s3s-fs and cargo-deb.
# Exports nothing. Options: --skip-s3s-fs (its first build takes minutes).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SETUP_NAME=setup
# shellcheck source=scripts/setup-common.sh
. "$ROOT/scripts/setup-common.sh"
VENV=$CACHE/venv

skip_s3s=false
for arg in "$@"; do
  case $arg in
    --skip-s3s-fs) skip_s3s=true ;;
    *) echo "usage: $0 [--skip-s3s-fs]" >&2; exit 2 ;;
  esac
done

take_setup_lock

# 1. Tools from apt. The write tests drive git, tar and the like inside a mount;
# tests/s3fs_interop.rs mounts the same bucket with s3fs-fuse; tests/xattr.rs uses
# setfattr/getfattr; tests/packaging.rs checks the units with systemd-analyze, the spec with
# rpmspec and rpmlint, and the .deb with dpkg-deb and lintian.
apt_install_tools git:git tar:tar s3fs:s3fs setfattr:attr \
  systemd-analyze:systemd rpmspec:rpm rpmlint:rpmlint dpkg-deb:dpkg lintian:lintian

# 2. Patched s3s-fs (the second fake S3). Its first build is minutes of CPU, while the venv below
# is mostly download time, so the build runs in the background meanwhile.
S3S_BIN=${BUCKETFS_TEST_S3S_FS:-$CACHE/s3s-fs-patched-2/target/release/s3s-fs}
s3s_pid=
deb_pid=
# A failure stops the background builds, each in its own process group (setsid), cargo included.
trap 'for pid in $s3s_pid $deb_pid; do kill -- -"$pid" 2>/dev/null || true; done' EXIT
if $skip_s3s; then
  say "s3s-fs: skipped (--skip-s3s-fs)"
elif [ -n "${BUCKETFS_TEST_S3S_FS:-}" ] && [ -x "$BUCKETFS_TEST_S3S_FS" ]; then
  say "s3s-fs: using BUCKETFS_TEST_S3S_FS=$BUCKETFS_TEST_S3S_FS"
elif "$ROOT/scripts/s3s-fs/build.sh" --check "$CACHE/s3s-fs-patched-2"; then
  S3S_BIN=$CACHE/s3s-fs-patched-2/target/release/s3s-fs
  say "s3s-fs: reusing $S3S_BIN"
else
  S3S_BIN=$CACHE/s3s-fs-patched-2/target/release/s3s-fs
  say "s3s-fs: building patched s3s-fs 0.14.1 in the background (minutes the first time)"
  s3s_t0=$SECONDS
  BUCKETFS_TEST_CACHE=$CACHE setsid "$ROOT/scripts/s3s-fs/build.sh" "$CACHE/s3s-fs-patched-2" >/dev/null &
  s3s_pid=$!
fi

# 3. cargo-deb, which tests/packaging.rs builds the .deb with. Pinned so every machine packs the
# same way; a compile of a few minutes the first time, so it too runs in the background.
CARGO_DEB_VERSION=3.8.0
CARGO_DEB=$CACHE/cargo-deb/bin/cargo-deb
if [ "$("$CARGO_DEB" --version 2>/dev/null)" = "cargo-deb $CARGO_DEB_VERSION" ]; then
  say "cargo-deb: reusing $CARGO_DEB"
else
  say "cargo-deb: building cargo-deb $CARGO_DEB_VERSION in the background (minutes the first time)"
  deb_t0=$SECONDS
  mkdir -p "$CACHE/cargo-deb"
  setsid cargo install --quiet --locked "cargo-deb@$CARGO_DEB_VERSION" --root "$CACHE/cargo-deb" \
    >"$CACHE/cargo-deb/build.log" 2>&1 &
  deb_pid=$!
fi

# 4. fuse3 and the moto venv (mostly download time, while the builds above use the CPU).
"$ROOT/scripts/setup-demo-deps.sh"

if [ -n "$s3s_pid" ]; then
  say "s3s-fs: waiting for the build (log: $CACHE/s3s-fs-patched-2/build.log)"
  pid=$s3s_pid
  s3s_pid=
  wait "$pid" || die "s3s-fs build failed (see above)"
  [ -x "$S3S_BIN" ] || die "s3s-fs build reported success but $S3S_BIN is missing"
  say "s3s-fs: done in $((SECONDS - s3s_t0))s"
fi

if [ -n "$deb_pid" ]; then
  say "cargo-deb: waiting for the build (log: $CACHE/cargo-deb/build.log)"
  pid=$deb_pid
  deb_pid=
  wait "$pid" || { tail -20 "$CACHE/cargo-deb/build.log" >&2; die "cargo install cargo-deb failed"; }
  [ "$("$CARGO_DEB" --version 2>/dev/null)" = "cargo-deb $CARGO_DEB_VERSION" ] ||
    die "cargo-deb built but $CARGO_DEB --version is not $CARGO_DEB_VERSION"
  say "cargo-deb: done in $((SECONDS - deb_t0))s"
fi

say "ready:"
say "  moto_server  $VENV/bin/moto_server"
$skip_s3s || say "  s3s-fs       $S3S_BIN"
say "  fusermount3  $(command -v fusermount3)"
say "  cargo-deb    $CARGO_DEB"
