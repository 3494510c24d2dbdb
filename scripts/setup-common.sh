# Sourced by setup-demo-deps.sh and setup-test-deps.sh: the cache, the lock and apt.
# Expects SETUP_NAME (the script's name, for messages) to be set.
CACHE=${BUCKETFS_TEST_CACHE:-$HOME/.cache/bucketfs-test}

say() { echo "$SETUP_NAME: $*"; }
die() { echo "$SETUP_NAME: ERROR: $*" >&2; exit 1; }

# One setup at a time per cache (say the demo and the tests started together): a second one
# waits, then finds everything in place. setup-test-deps.sh runs setup-demo-deps.sh while it
# holds the lock, on the same descriptor, so the inner one does not wait for itself.
take_setup_lock() {
  mkdir -p "$CACHE"
  [ "${BUCKETFS_SETUP_LOCKED:-}" = "$CACHE" ] && return 0
  exec 8>"$CACHE/.setup.lock"
  flock -n 8 || { say "waiting for another setup to finish"; flock 8; }
  export BUCKETFS_SETUP_LOCKED=$CACHE
}

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
# Installs PACKAGE when TOOL is not on PATH, for each TOOL:PACKAGE pair.
apt_install_tools() {
  local pair tool package
  for pair in "$@"; do
    tool=${pair%%:*} package=${pair#*:}
    if command -v "$tool" >/dev/null 2>&1; then
      say "$tool: present"
    else
      say "$tool: installing $package with apt-get"
      apt_install "$package"
      command -v "$tool" >/dev/null 2>&1 || die "$tool still missing after installing $package"
    fi
  done
}
