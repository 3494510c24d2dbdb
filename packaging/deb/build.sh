#!/usr/bin/env bash
# Builds target/debian/bucketfs_VERSION-1_ARCH.deb and prints its path on the last line.
#   1. cargo build --release (the binary and the gen-docs example; quick when already built);
#   2. the man page and completions into target/packaging/, from the CLI definition;
#   3. cargo deb --no-build, which packs what Cargo.toml's [package.metadata.deb] lists.
# --no-build skips steps 1 and 2, for a caller that has built the binary and written
# target/packaging/ itself (tests/packaging.rs). Other arguments go to cargo-deb (the tests add
# --fast: quicker, larger compression).
# Needs cargo-deb: `cargo install --locked cargo-deb`, or set CARGO_DEB to its path.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
CARGO=${CARGO:-cargo}
CARGO_DEB=${CARGO_DEB:-cargo-deb}
command -v "$CARGO_DEB" >/dev/null 2>&1 ||
  { echo "build.sh: $CARGO_DEB not found (cargo install --locked cargo-deb)" >&2; exit 1; }

if [ "${1:-}" = --no-build ]; then
  shift
else
  "$CARGO" build --release --locked --bin bucketfs --example gen-docs >&2
  # The asset paths in Cargo.toml name target/packaging/ relative to the crate,
  # wherever CARGO_TARGET_DIR puts the binaries.
  rm -rf target/packaging
  "$CARGO" run --release --locked --quiet --example gen-docs -- target/packaging >&2
fi
[ -f target/packaging/bucketfs.8 ] ||
  { echo "build.sh: target/packaging/ has no man page (run without --no-build)" >&2; exit 1; }
# --no-build: step 1 built it, and a second build would double a CI run's compile time.
# --strip: the release profile keeps line tables for backtraces, 7 times the binary's size.
# cargo-deb prints the path of the package it wrote.
"$CARGO_DEB" deb --no-build --locked --strip "$@"
