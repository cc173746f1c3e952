#!/usr/bin/env bash
# Builds and installs the R package from this checkout in a private copy of r-ext
# (so several builds can run at once), into LIB if given, else the site library.
# The cargo build cache is shared in $SHARD_CARGO_TARGET_DIR (default /tmp/shard-cargo-target).
#   bash scripts/install-r-pkg.sh [LIB]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export SHARD_CARGO_TARGET_DIR="${SHARD_CARGO_TARGET_DIR:-/tmp/shard-cargo-target}"
(cd r-ext && sh tools/vendor-rust.sh >/dev/null)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/shard"
tar -C r-ext --exclude=src/rust/target --exclude='*.o' --exclude='*.so' -cf - . | tar -C "$tmp/shard" -xf -
args=()
if [ $# -ge 1 ]; then mkdir -p "$1"; args=(-l "$1"); fi
R CMD INSTALL --no-multiarch "${args[@]}" "$tmp/shard" > "$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; exit 1; }
echo "installed shard into ${1:-the site library}"
