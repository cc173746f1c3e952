#!/usr/bin/env bash
# Every test: formatting, lints, the C header, Rust unit + multi-process tests,
# R CMD check of the package tarball, and the testthat suite (forked and PSOCK
# workers). Reserves huge pages for the run (restored on exit) and creates a
# second user for the cross-user tests. Run as root on Debian:
#   bash scripts/run-tests.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh

# --- kernel features the tests need -----------------------------------------
hp2=/proc/sys/vm/nr_hugepages
hp1=/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages
old2=$(cat "$hp2"); old1=$(cat "$hp1" 2>/dev/null || echo 0)
other_user=shardtest
created_user=0
cleanup() {
  echo "$old2" > "$hp2" 2>/dev/null || true
  [ -w "$hp1" ] && echo "$old1" > "$hp1" 2>/dev/null || true
  [ "$created_user" = 1 ] && userdel "$other_user" 2>/dev/null || true
}
trap cleanup EXIT
want2=${SHARD_TEST_HUGEPAGES:-256}
if [ "$old2" -lt "$want2" ]; then echo "$want2" > "$hp2" || true; fi
[ -w "$hp1" ] && [ "$old1" -lt 1 ] && { echo 1 > "$hp1" 2>/dev/null || true; }
echo "huge pages reserved: 2MiB=$(cat $hp2) 1GiB=$(cat $hp1 2>/dev/null || echo n/a)"
if ! id "$other_user" >/dev/null 2>&1; then useradd -M -s /usr/sbin/nologin "$other_user" && created_user=1; fi
export SHARD_TEST_OTHER_USER="$other_user"

log=$(mktemp -d)
# --- Rust ------------------------------------------------------------------------
echo "== cargo fmt --check"; cargo fmt --all --check
echo "== cargo clippy"; cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== C header is current"
cbindgen --config cbindgen.toml --output "$log/shard.h" 2>/dev/null
diff -u include/shard.h "$log/shard.h" || { echo "include/shard.h is stale: regenerate with cbindgen"; exit 1; }
diff -u include/shard.h r-ext/src/shard.h || { echo "r-ext/src/shard.h differs from include/shard.h"; exit 1; }
echo "== cargo test"
cargo test --workspace --quiet 2>&1 | tee "$log/cargo.txt"

# --- R package -------------------------------------------------------------------
echo "== R CMD build + check"
rm -rf "$log/rcheck"; mkdir -p "$log/rcheck"
(cd r-ext && sh tools/vendor-rust.sh)
(cd "$log/rcheck" && R CMD build --no-build-vignettes "$root/r-ext" >build.txt 2>&1) || { cat "$log/rcheck/build.txt"; exit 1; }
tarball=$(ls "$log"/rcheck/shard_*.tar.gz)
(cd "$log/rcheck" && _R_CHECK_FORCE_SUGGESTS_=false R CMD check --no-manual --no-tests "$tarball" >check.txt 2>&1) || true
cat "$log/rcheck/check.txt" | grep -E "^\* |WARNING|ERROR|NOTE" | grep -vE "\.\.\. OK$" || true
if grep -qE "^Status: .*(ERROR|WARNING)" "$log/rcheck/check.txt"; then
  echo "R CMD check reported errors or warnings:"; cat "$log"/rcheck/shard.Rcheck/00check.log; exit 1
fi
echo "== R CMD INSTALL"
R CMD INSTALL "$tarball" >"$log/install.txt" 2>&1 || { cat "$log/install.txt"; exit 1; }
echo "== testthat"
Rscript scripts/testthat-summary.R r-ext/tests/testthat | tee "$log/testthat.txt"

# --- summary -------------------------------------------------------------------
Rscript -e '
  cargo <- readLines(commandArgs(TRUE)[1]); tt <- readLines(commandArgs(TRUE)[2])
  num <- function(lines, re) sum(as.numeric(sub(re, "\\1", grep(re, lines, value = TRUE))))
  p <- num(cargo, ".* ([0-9]+) passed.*") + num(tt, "^testthat: ([0-9]+) passed.*")
  f <- num(cargo, ".* ([0-9]+) failed.*") + num(tt, "^testthat: [0-9]+ passed, ([0-9]+) failed.*")
  s <- num(cargo, ".* ([0-9]+) ignored.*") + num(tt, ".* ([0-9]+) skipped.*")
  cat(sprintf("all: %d passed, %d failed, %d skipped\n", p, f, s))
  quit(status = f > 0)' "$log/cargo.txt" "$log/testthat.txt"
