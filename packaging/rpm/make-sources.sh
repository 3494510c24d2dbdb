#!/usr/bin/env bash
# Writes the two Source tarballs of packaging/rpm/bucketfs.spec into DIR (default target/rpm):
#   bucketfs-VERSION.tar.gz         the committed tree at HEAD (git archive), top directory bucketfs-VERSION/
#   bucketfs-VERSION-vendor.tar.gz  vendor/, every crate of Cargo.lock (cargo vendor), for an offline build
# Then: rpmbuild -ba --define "_sourcedir DIR" packaging/rpm/bucketfs.spec
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT=$(mkdir -p "${1:-target/rpm}" && cd "${1:-target/rpm}" && pwd)
VERSION=$(sed -n 's/^Version: *//p' packaging/rpm/bucketfs.spec)
[ "$VERSION" = "$(cargo metadata --no-deps --format-version 1 --offline |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["packages"][0]["version"])')" ] ||
  { echo "make-sources.sh: the spec's Version $VERSION is not Cargo.toml's" >&2; exit 1; }

git archive --format=tar.gz --prefix="bucketfs-$VERSION/" -o "$OUT/bucketfs-$VERSION.tar.gz" HEAD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo vendor --quiet --locked --versioned-dirs "$work/vendor" >/dev/null
tar -C "$work" -czf "$OUT/bucketfs-$VERSION-vendor.tar.gz" vendor
ls -1 "$OUT/bucketfs-$VERSION.tar.gz" "$OUT/bucketfs-$VERSION-vendor.tar.gz"
