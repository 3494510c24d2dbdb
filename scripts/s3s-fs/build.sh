#!/usr/bin/env bash
# Builds s3s-fs 0.14.1 with dir-keys.patch into DEST
# (default ${BUCKETFS_TEST_CACHE:-~/.cache/bucketfs-test}/s3s-fs-patched-2) and prints the binary's path.
# The patch makes the server behave like S3 where stock s3s-fs does not:
#   - HEAD/GET of a key that is a directory on its disk ("d" when "d/x" exists) answers 404, not 500;
#     a "d/" key reads as an empty directory-marker object, and a PUT of one answers its ETag
#     (bucketfs's mkdir needs it, as every PUT's);
#   - ListObjectsV2 returns an ETag for every object.
# The default DEST's number goes up whenever the patch changes, so that a checkout with the old
# patch (another branch, a worktree) keeps its own build instead of rebuilding over this one.
# --fast builds the benchmark's server instead (bench/, docs/benchmarks.md): dir-keys.patch,
# fast-bodies.patch (GET and CopyObject bodies in 1 MiB chunks instead of 4 KiB, TCP_NODELAY on
# accepted sockets) and flat-listing.patch (a flat listing page walks the prefix's subtree in key
# order from the continuation token and stops after the page's keys, so it costs about the page,
# not the bucket), into ${BUCKETFS_TEST_CACHE:-~/.cache/bucketfs-test}/s3s-fs-patched-fast-3.
# The test suite uses the default build only.
# Usage: build.sh [--check] [--fast] [DEST]   (--check: exit 0 if DEST holds a build of the current patches)
# Progress goes to stderr so that stdout is only the path.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
check_only=false
PATCHES=dir-keys.patch
DEST_NAME=s3s-fs-patched-2
STAMP_NAME=.dir-keys.patch.sha256
while [ $# -gt 0 ]; do
  case $1 in
    --check) check_only=true; shift ;;
    --fast) PATCHES="dir-keys.patch fast-bodies.patch flat-listing.patch" DEST_NAME=s3s-fs-patched-fast-3 STAMP_NAME=.patches.sha256; shift ;;
    *) break ;;
  esac
done
DEST=${1:-${BUCKETFS_TEST_CACHE:-$HOME/.cache/bucketfs-test}/$DEST_NAME}
BIN=$DEST/target/release/s3s-fs
STAMP=$DEST/$STAMP_NAME   # which patches the binary was built with
CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
VERSION=0.14.1
patch_sum=$(for p in $PATCHES; do cat "$HERE/$p"; done | sha256sum | cut -d' ' -f1)

# A binary built by ../shared/s3s-fs/build.sh has no stamp; its source beside it shows which
# patches it holds: they must all come off cleanly, last first.
source_has_patches() {
  local p reversed=
  for p in $PATCHES; do reversed="$p $reversed"; done
  local tmp
  tmp=$(mktemp -d)
  cp -r "$DEST/src" "$tmp/" 2>/dev/null || { rm -rf "$tmp"; return 1; }
  for p in $reversed; do
    (cd "$tmp" && patch -s -R -p1 -f <"$HERE/$p") >/dev/null 2>&1 || { rm -rf "$tmp"; return 1; }
  done
  rm -rf "$tmp"
}
up_to_date() {
  [ -x "$BIN" ] || return 1
  [ "$(cat "$STAMP" 2>/dev/null)" = "$patch_sum" ] && return 0
  [ ! -e "$STAMP" ] && [ "$PATCHES" != dir-keys.patch ] && source_has_patches && echo "$patch_sum" >"$STAMP"
}
if $check_only; then up_to_date; exit; fi
if up_to_date; then echo "$BIN"; exit 0; fi

mkdir -p "$DEST"
# Two builds into one DEST would delete each other's files; the second waits, then finds it done.
exec 9>"$DEST.lock"
flock 9
if up_to_date; then echo "$BIN"; exit 0; fi

log=$DEST/build.log
: >"$log"
fail() { echo "s3s-fs build: $*" >&2; echo "--- last lines of $log ---" >&2; tail -n 40 "$log" >&2; exit 1; }

src=$(ls -d "$CARGO_HOME"/registry/src/*/s3s-fs-$VERSION 2>/dev/null | head -1 || true)
if [ -z "$src" ]; then
  # `cargo install` is the ordinary way to get the crate's source (with its Cargo.lock) into the
  # registry. Its target dir is DEST/target so the dependencies it compiles are reused by the
  # patched build below (same lockfile, features and profile): only s3s-fs itself builds twice.
  echo "s3s-fs build: cargo install s3s-fs@$VERSION to fetch its source (log: $log)" >&2
  root=$(mktemp -d)
  cargo install --locked "s3s-fs@$VERSION" --features binary --root "$root" \
    --target-dir "$DEST/target" >>"$log" 2>&1 || fail "cargo install s3s-fs@$VERSION failed"
  rm -rf "$root"
  src=$(ls -d "$CARGO_HOME"/registry/src/*/s3s-fs-$VERSION 2>/dev/null | head -1 || true)
  [ -n "$src" ] || fail "s3s-fs-$VERSION source not found under $CARGO_HOME/registry/src"
fi

# Fresh copy of the source; DEST/target stays, its build artifacts are reusable.
find "$DEST" -mindepth 1 -maxdepth 1 ! -name target ! -name build.log -exec rm -rf {} +
cp -r "$src/." "$DEST/"
echo "s3s-fs build: patching and building in $DEST (log: $log)" >&2
for p in $PATCHES; do
  (cd "$DEST" && patch -s -p1 <"$HERE/$p") >>"$log" 2>&1 || fail "$p does not apply"
done
# The stock binary cargo install left there must not pass for the patched one.
rm -f "$BIN"
(cd "$DEST" && cargo build --release --locked --features binary) >>"$log" 2>&1 || fail "cargo build failed"
[ -x "$BIN" ] || fail "the build finished but $BIN is missing"
echo "$patch_sum" >"$STAMP"
echo "$BIN"
