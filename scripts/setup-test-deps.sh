#!/usr/bin/env bash
# Installs what the tests and the demo need, into fixed places the tests know about:
#   - fuse3 (fusermount3, mount.fuse3), git, tar, s3fs and attr from apt, when missing;
#   - a Python venv with moto[server] and awscli: $CACHE/venv;
#   - s3s-fs 0.14.1 patched with scripts/s3s-fs/dir-keys.patch: $CACHE/s3s-fs-patched-2/target/release/s3s-fs;
#   - packaging tools for tests/packaging.rs: systemd (systemd-analyze), rpm (rpmspec) and rpmlint
#     from apt, and cargo-deb: $CACHE/cargo-deb/bin/cargo-deb.
# CACHE is $BUCKETFS_TEST_CACHE, default ~/.cache/bucketfs-test. Idempotent: quick when all is cached.
# Exports nothing. Options: --skip-s3s-fs (the demo does not need it; its first build takes minutes).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${BUCKETFS_TEST_CACHE:-$HOME/.cache/bucketfs-test}
VENV=$CACHE/venv
# Pinned so every machine tests against the same fake S3; bump deliberately.
PY_REQS="moto[server]==5.2.5 awscli==1.46.3"

skip_s3s=false
for arg in "$@"; do
  case $arg in
    --skip-s3s-fs) skip_s3s=true ;;
    *) echo "usage: $0 [--skip-s3s-fs]" >&2; exit 2 ;;
  esac
done

say() { echo "setup: $*"; }
die() { echo "setup: ERROR: $*" >&2; exit 1; }

# One setup at a time per cache (say the demo and the tests started together): a second one
# waits, then finds everything in place.
mkdir -p "$CACHE"
exec 8>"$CACHE/.setup.lock"
flock -n 8 || { say "waiting for another setup-test-deps.sh to finish"; flock 8; }

# Root runs apt directly; otherwise try sudo (non-interactively, so CI never hangs on a prompt).
apt_get() {
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q "$@"
}
apt_install() {
  # Only refresh the package lists when the install fails without it (fresh images have none).
  apt_get install -y "$@" >/dev/null 2>&1 && return 0
  say "apt-get update"
  apt_get update >/dev/null || die "apt-get update failed"
  apt_get install -y "$@" >/dev/null || die "apt-get install $* failed"
}

# 1. FUSE userspace tools.
if command -v fusermount3 >/dev/null 2>&1; then
  say "fuse3: present ($(command -v fusermount3))"
else
  say "fuse3: installing with apt-get"
  apt_install fuse3
  command -v fusermount3 >/dev/null 2>&1 || die "fusermount3 still missing after installing fuse3"
fi
# The write tests drive git, tar and the like inside a mount; tests/s3fs_interop.rs mounts the
# same bucket with s3fs-fuse; tests/xattr.rs uses setfattr/getfattr.
for pair in git:git tar:tar s3fs:s3fs setfattr:attr; do
  tool=${pair%%:*} package=${pair#*:}
  if ! command -v "$tool" >/dev/null 2>&1; then
    say "$tool: installing $package with apt-get"
    apt_install "$package"
  fi
done
# Packaging checks: systemd-analyze verify on the units, rpmspec/rpmlint on the spec, dpkg for the .deb.
for pair in systemd-analyze:systemd rpmspec:rpm rpmlint:rpmlint dpkg-deb:dpkg; do
  tool=${pair%%:*} package=${pair#*:}
  if ! command -v "$tool" >/dev/null 2>&1; then
    say "$tool: installing $package with apt-get"
    apt_install "$package"
  fi
done
[ -c /dev/fuse ] || say "WARNING: /dev/fuse is missing; mounts will fail (load the fuse module or run the container with --device /dev/fuse)"

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

# 4. moto + aws CLI venv. The stamp records the pinned requirements so changing them rebuilds the venv.
venv_ok() {
  [ "$(cat "$VENV/.bucketfs-reqs" 2>/dev/null)" = "$PY_REQS" ] &&
    "$VENV/bin/moto_server" --help >/dev/null 2>&1 &&
    "$VENV/bin/aws" --version >/dev/null 2>&1
}
if venv_ok; then
  say "venv: reusing $VENV"
else
  say "venv: creating $VENV with $PY_REQS"
  t0=$SECONDS
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Debian's system python3 needs python3-venv for ensurepip.
    rm -rf "$VENV"
    say "venv: python3 -m venv failed; installing python3-venv with apt-get"
    apt_install python3-venv
    python3 -m venv "$VENV" || die "python3 -m venv failed"
  fi
  # shellcheck disable=SC2086 # PY_REQS is a list of requirement words
  "$VENV/bin/pip" install -q $PY_REQS || die "pip install $PY_REQS failed"
  echo "$PY_REQS" >"$VENV/.bucketfs-reqs"
  venv_ok || die "venv built but moto_server/aws do not run"
  say "venv: done in $((SECONDS - t0))s"
fi

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
say "  aws          $VENV/bin/aws"
$skip_s3s || say "  s3s-fs       $S3S_BIN"
say "  fusermount3  $(command -v fusermount3)"
say "  cargo-deb    $CARGO_DEB"
