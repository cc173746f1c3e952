#!/usr/bin/env bash
# Installs the package tarball the way a compute node without internet would:
# inside a network namespace with no interface up (unshare -n), with an empty
# CARGO_HOME and a fresh library directory, then loads it and shares a vector.
# Also checks that configure refuses, with its install hint, a missing cargo and
# a rustc older than the minimum version.
#
#   bash scripts/offline-install.sh shard_0.1.0.tar.gz [r-ext]
#
# With the package source directory as second argument it first checks that the
# vendored Rust sources committed there match the repository
# (tools/vendor-rust.sh --check: crates, lock file, manifests, header).
#
# Needs root (unshare -n). Ends with "offline-install: N passed, M failed, 0 skipped"
# and exits non-zero when a check failed. The installed size is printed as
# "installed size: N KiB".
set -uo pipefail
tarball=$(readlink -f "${1:?usage: offline-install.sh TARBALL}")
export PATH="$HOME/.cargo/bin:$PATH"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pass=0 fail=0
ok()  { echo "PASS: $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }

# 0. the vendored sources are current (when given the source directory).
if [ -n "${2:-}" ]; then
  if (cd "$2" && sh tools/vendor-rust.sh --check); then ok "vendored Rust sources match the repository"
  else bad "vendored Rust sources are stale: run (cd r-ext && sh tools/vendor-rust.sh) and commit"; fi
fi

# 1. the namespace really has no network (crates.io unreachable).
if unshare -n bash -c 'exec 3<>/dev/tcp/index.crates.io/443' 2>/dev/null; then
  bad "unshare -n still reaches index.crates.io: the offline check would prove nothing"
else
  ok "no network inside unshare -n"
fi

# 2. install offline with an empty CARGO_HOME into a fresh library.
mkdir -p "$work/lib" "$work/cargo-home"
start=$(date +%s)
if unshare -n env CARGO_HOME="$work/cargo-home" MAKEFLAGS=-j2 \
     R CMD INSTALL -l "$work/lib" "$tarball" >"$work/install.txt" 2>&1; then
  ok "R CMD INSTALL offline, empty CARGO_HOME ($(( $(date +%s) - start )) s)"
else
  bad "R CMD INSTALL offline failed:"; tail -n 40 "$work/install.txt"
fi
grep -E "^using (cargo|rustc):|^building the Rust library" "$work/install.txt" || true
if grep -q "^using rustc: .*rustc [0-9]" "$work/install.txt" && grep -q "cargo build --release --offline --jobs [12] " "$work/install.txt"; then
  ok "configure printed the rustc/cargo versions; cargo ran --offline with at most 2 jobs"
else
  bad "install log lacks the rustc/cargo versions or an offline cargo build with --jobs <= 2"
fi
[ -z "$(ls -A "$work/cargo-home")" ] && ok "CARGO_HOME left empty" || bad "the build wrote into CARGO_HOME: $(ls -A "$work/cargo-home")"

# 3. it loads and works (offline too).
if unshare -n Rscript -e 'library(shard, lib.loc = commandArgs(TRUE)[1])
  x <- as.numeric(1:1e5); h <- share(x); y <- fetch(h)
  stopifnot(identical(y, x), is_shared(y)); close(h); cat("round trip ok\n")' "$work/lib" >"$work/load.txt" 2>&1; then
  ok "installed package loads, shares and fetches"
else
  bad "installed package does not work:"; cat "$work/load.txt"
fi
echo "installed size: $(du -sk "$work/lib/shard" | cut -f1) KiB ($(du -k "$work/lib/shard/libs/shard.so" 2>/dev/null | cut -f1) KiB shard.so)"

# 4. configure's refusals: no cargo, and a rustc older than the MSRV.
mkdir -p "$work/old/bin"
printf '#!/bin/sh\necho "rustc 1.60.0 (7737e0b5c 2022-04-04)"\n' > "$work/old/bin/rustc"
printf '#!/bin/sh\necho "cargo 1.60.0 (d1fd9fe2c 2022-03-01)"\n' > "$work/old/bin/cargo"
chmod +x "$work/old/bin/rustc" "$work/old/bin/cargo"
CARGO="$work/none/cargo" R CMD INSTALL -l "$work/lib" "$tarball" >"$work/nocargo.txt" 2>&1
if grep -q "cargo not found" "$work/nocargo.txt" && grep -q "rustup" "$work/nocargo.txt"; then
  ok "a missing cargo stops configure with what to install"
else
  bad "missing cargo: no clear message"; tail -n 20 "$work/nocargo.txt"
fi
CARGO="$work/old/bin/cargo" RUSTC="$work/old/bin/rustc" R CMD INSTALL -l "$work/lib" "$tarball" >"$work/old.txt" 2>&1
if grep -q "rustc 1.60.0 is older than" "$work/old.txt"; then
  ok "a rustc older than the MSRV stops configure"
else
  bad "old rustc: no clear message"; tail -n 20 "$work/old.txt"
fi
echo "offline-install: $pass passed, $fail failed, 0 skipped"
[ "$fail" = 0 ]
