#!/bin/sh
# Copies the workspace crates this package builds into src/rust/vendor, so the
# package (and the tarball `R CMD build` makes) carries every Rust source it needs.
# Runs from the package root; does nothing outside the repository.
set -e
top="$(cd "$(dirname "$0")/../.." && pwd)"
[ -f "$top/allocator/Cargo.toml" ] && [ -f "$top/src/lib.rs" ] || exit 0
dst=src/rust/vendor/shard
rm -rf src/rust/vendor
mkdir -p "$dst"
cp -R "$top/src" "$dst/src"
mkdir -p "$dst/allocator"
cp -R "$top/allocator/src" "$top/allocator/Cargo.toml" "$dst/allocator/"
# The root manifest without its workspace, dev-dependencies and bench targets.
sed -e '/^\[dev-dependencies\]/,/^\[lib\]\|^$/d' \
    -e '/^\[workspace\]/,$d' "$top/Cargo.toml" > "$dst/Cargo.toml"
sed -i -e '/^\[dev-dependencies\]/,$d' "$dst/allocator/Cargo.toml"
[ -f "$top/Cargo.lock" ] && cp "$top/Cargo.lock" src/rust/Cargo.lock || true
cp "$top/include/shard.h" src/shard.h
echo "vendored shard sources from $top"
