#!/usr/bin/env bash
# Installs what scripts/demo.sh needs, and nothing more:
#   - fuse3 (fusermount3, mount.fuse3) from apt, when missing;
#   - a Python venv, $CACHE/venv, with moto's S3 server (moto_server) and boto3, the AWS SDK for
#     Python that moto depends on, which the demo uploads with.
# CACHE is $BUCKETFS_TEST_CACHE, default ~/.cache/bucketfs-test. Idempotent: quick when all is
# cached; the first time about 15 s of pip downloads on a fast network.
# scripts/setup-test-deps.sh runs this, then installs what only the tests need.
set -euo pipefail
SETUP_NAME=setup
# shellcheck source=scripts/setup-common.sh
. "$(dirname "$0")/setup-common.sh"
VENV=$CACHE/venv
# Pinned so every machine runs the same fake S3; bump deliberately. moto[s3] and flask are
# the S3 part of moto[server]: the whole of it pulls every AWS service's dependencies, twice
# the download for nothing the tests or the demo use.
PY_REQS="moto[s3]==5.2.5 flask==3.1.3 flask-cors==6.0.5"

take_setup_lock

# 1. FUSE userspace tools.
apt_install_tools fusermount3:fuse3
[ -c /dev/fuse ] || say "WARNING: /dev/fuse is missing; mounts will fail (load the fuse module or run the container with --device /dev/fuse)"

# 2. moto + boto3 venv. The stamp records the pinned requirements so changing them rebuilds it.
venv_ok() {
  [ "$(cat "$VENV/.bucketfs-reqs" 2>/dev/null)" = "$PY_REQS" ] &&
    "$VENV/bin/moto_server" --help >/dev/null 2>&1 &&
    "$VENV/bin/python" -c 'import boto3' 2>/dev/null
}
if venv_ok; then
  say "venv: reusing $VENV"
else
  say "venv: creating $VENV with $PY_REQS"
  t0=$SECONDS
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Debian's system python3 needs python3-venv for ensurepip (and a bare image has no python3).
    rm -rf "$VENV"
    say "venv: python3 -m venv failed; installing python3-venv with apt-get"
    apt_install python3-venv
    python3 -m venv "$VENV" || die "python3 -m venv failed"
  fi
  # shellcheck disable=SC2086 # PY_REQS is a list of requirement words
  "$VENV/bin/pip" install -q --disable-pip-version-check $PY_REQS || die "pip install $PY_REQS failed"
  echo "$PY_REQS" >"$VENV/.bucketfs-reqs"
  venv_ok || die "venv built but moto_server or boto3 does not run"
  say "venv: done in $((SECONDS - t0))s"
fi

say "  moto_server  $VENV/bin/moto_server"
say "  python       $VENV/bin/python (with boto3)"
say "  fusermount3  $(command -v fusermount3)"
