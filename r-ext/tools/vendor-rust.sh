#!/bin/sh
# Keeps the Rust sources the package builds inside the package, so that
# `R CMD build r-ext` makes a tarball that installs with no network:
#
#   src/rust/vendor/shard/           our workspace crates (shard, shard-alloc): the
#                                    src/ directories are symlinks into the repository
#                                    (R CMD build copies with cp -L, so the tarball gets
#                                    the files); the manifests are generated here from the
#                                    repository's, without dev-dependencies and benches
#   src/rust/Cargo.lock              the lock file of the package's build, pruned from
#                                    the repository's Cargo.lock
#   src/rust/vendor.tar.xz           the third-party crates (`cargo vendor`), compressed
#   src/rust/vendor-crates.txt       what it holds: name version checksum (from the lock)
#   src/rust/vendor.tar.xz.sha256    its checksum, verified by configure before unpacking
#   src/shard.h                      the C header (include/shard.h)
#
# Run from the package root. Outside the repository (an unpacked tarball) it does
# nothing. In the repository it refreshes the manifests, lock file and header, and
# checks that vendor.tar.xz holds the crates the lock file names; when it does not
# (a dependency changed), it re-vendors them, which needs crates.io (cargo's own
# client) -- commit the result. `--check` only reports staleness (exit 1).
set -e
mode="${1:-refresh}"
top="$(cd "$(dirname "$0")/../.." && pwd)"
[ -f "$top/allocator/Cargo.toml" ] && [ -f "$top/src/lib.rs" ] || exit 0
CARGO="${CARGO:-cargo}"
pkg="$(pwd)"
rs=src/rust
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# --- our crates: manifests without [dev-dependencies] and everything from
# [workspace] on (benches), next to the src/ symlinks.
mkdir -p "$tmp/gen/allocator"
sed -e '/^\[dev-dependencies\]/,/^\[lib\]\|^$/d' \
    -e '/^\[workspace\]/,$d' "$top/Cargo.toml" > "$tmp/gen/Cargo.toml"
sed -e '/^\[dev-dependencies\]/,$d' "$top/allocator/Cargo.toml" > "$tmp/gen/allocator/Cargo.toml"
for f in Cargo.toml allocator/Cargo.toml; do
  if ! cmp -s "$tmp/gen/$f" "$rs/vendor/shard/$f"; then
    [ "$mode" = --check ] && { echo "STALE: $rs/vendor/shard/$f (run sh tools/vendor-rust.sh)"; stale=1; continue; }
    cp "$tmp/gen/$f" "$rs/vendor/shard/$f"
  fi
done
for l in src allocator/src; do
  [ -f "$rs/vendor/shard/$l/lib.rs" ] || { echo "ERROR: $rs/vendor/shard/$l should be a symlink into the repository (git checkout it)" >&2; exit 1; }
done
if ! cmp -s "$top/include/shard.h" src/shard.h; then
  [ "$mode" = --check ] && { echo "STALE: src/shard.h differs from include/shard.h"; stale=1; } || cp "$top/include/shard.h" src/shard.h
fi

# --- the lock file: the repository's versions, pruned to this build.
cp "$top/Cargo.lock" "$tmp/Cargo.lock.top"
mkdir -p "$tmp/lock"
cp -R "$rs/Cargo.toml" "$rs/src" "$tmp/lock/"
mkdir -p "$tmp/lock/vendor/shard/allocator"
cp "$tmp/gen/Cargo.toml" "$tmp/lock/vendor/shard/Cargo.toml"
cp "$tmp/gen/allocator/Cargo.toml" "$tmp/lock/vendor/shard/allocator/Cargo.toml"
ln -s "$top/src" "$tmp/lock/vendor/shard/src"
ln -s "$top/allocator/src" "$tmp/lock/vendor/shard/allocator/src"
cp "$top/Cargo.lock" "$tmp/lock/Cargo.lock"
# Pruning needs no download when the repository's build has fetched its crates;
# otherwise cargo fetches the index entries it needs.
(cd "$tmp/lock" && { "$CARGO" metadata --format-version 1 --offline >/dev/null 2>&1 ||
                     "$CARGO" metadata --format-version 1 >/dev/null; })
if ! cmp -s "$tmp/lock/Cargo.lock" "$rs/Cargo.lock"; then
  [ "$mode" = --check ] && { echo "STALE: $rs/Cargo.lock"; stale=1; } || cp "$tmp/lock/Cargo.lock" "$rs/Cargo.lock"
fi

# --- third-party crates: name version checksum of every registry package.
awk '/^\[\[package\]\]/{if(n!="")print n,v,c; n=v=c=""} /^name = /{n=$3} /^version = /{v=$3}
     /^checksum = /{c=$3} END{if(n!="")print n,v,c}' "$tmp/lock/Cargo.lock" |
  tr -d '"' | awk '$3!=""' | sort > "$tmp/crates.txt"
if cmp -s "$tmp/crates.txt" "$rs/vendor-crates.txt" && [ -f "$rs/vendor.tar.xz" ] &&
   [ "$(sha256sum "$rs/vendor.tar.xz" | cut -d' ' -f1)" = "$(cut -d' ' -f1 "$rs/vendor.tar.xz.sha256" 2>/dev/null)" ]; then
  :
elif [ "$mode" = --check ]; then
  echo "STALE: $rs/vendor.tar.xz does not hold the crates of $rs/Cargo.lock (run sh tools/vendor-rust.sh)"; stale=1
else
  echo "vendor-rust: re-vendoring the third-party crates (cargo vendor; needs crates.io)"
  (cd "$tmp/lock" && "$CARGO" vendor --locked --quiet "$tmp/crates" >/dev/null)
  # Windows-only crates are never compiled (OS_type: unix) but cargo's resolver
  # needs their manifests: keep those, drop their sources (19 MB for windows-sys)
  # and the per-file checksums of what was dropped.
  for d in "$tmp"/crates/windows*; do
    [ -d "$d" ] || continue
    rm -rf "$d/src"; mkdir -p "$d/src"; : > "$d/src/lib.rs"
    sed -i -e 's/"files":{[^}]*}/"files":{}/' "$d/.cargo-checksum.json"
  done
  # Reproducible archive: sorted names, fixed times and owners.
  (cd "$tmp/crates" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
     tar --no-recursion --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$tmp/vendor.tar" -T -)
  xz -9e -T1 -c "$tmp/vendor.tar" > "$rs/vendor.tar.xz"
  (cd "$rs" && sha256sum vendor.tar.xz > vendor.tar.xz.sha256)
  cp "$tmp/crates.txt" "$rs/vendor-crates.txt"
  echo "vendor-rust: $rs/vendor.tar.xz $(du -k "$rs/vendor.tar.xz" | cut -f1) KiB, $(wc -l < "$rs/vendor-crates.txt") crates (commit it)"
fi
[ -z "${stale:-}" ] || exit 1
[ "$mode" = --check ] && echo "vendored Rust sources are current" || echo "vendored shard sources from $top"
