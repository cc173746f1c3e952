#!/usr/bin/env bash
# Every test: formatting, lints, the C header, Rust unit + multi-process tests,
# R CMD check of the package tarball, the testthat suite (forked and PSOCK
# workers), the NUMA placement tests in 2- and 4-node qemu guests
# (scripts/numa-qemu.sh), the several-node scenarios on pretend nodes (tests/nodes/run.sh:
# PSOCK, mpirun, Slurm), and the bounded reliability subset (reliability/ci.sh:
# fuzzing, stress, owner kills, limits, ASan, TSan). Reserves huge pages for the run
# (restored on exit) and creates a second user for the cross-user tests. With
# CI=true as root, the vm.max_map_count case runs too (SHARD_TEST_SYSCTL=1; the
# sysctl is restored by the test and again on exit). Ends with
# "all: N passed, M failed, K skipped"; exits non-zero if any step failed.
# Run as root on Debian:
#   bash scripts/run-tests.sh            (RUN_RELIABILITY=0 leaves out reliability/ci.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh

# --- kernel features the tests need -----------------------------------------
hp2=/proc/sys/vm/nr_hugepages
hp1=/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages
mm=/proc/sys/vm/max_map_count
old2=$(cat "$hp2"); old1=$(cat "$hp1" 2>/dev/null || echo 0); old_mm=$(cat "$mm")
other_user=shardtest
created_user=0
cleanup() {
  echo "$old2" > "$hp2" 2>/dev/null || true
  [ -w "$hp1" ] && echo "$old1" > "$hp1" 2>/dev/null || true
  # The max_map_count test restores it itself; this covers a run killed mid-test.
  [ "$(cat "$mm")" = "$old_mm" ] || echo "$old_mm" > "$mm" 2>/dev/null || true
  [ "$created_user" = 1 ] && userdel "$other_user" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM   # run cleanup (EXIT) on interruption too
want2=${SHARD_TEST_HUGEPAGES:-256}
if [ "$old2" -lt "$want2" ]; then echo "$want2" > "$hp2" || true; fi
[ -w "$hp1" ] && [ "$old1" -lt 1 ] && { echo 1 > "$hp1" 2>/dev/null || true; }
echo "huge pages reserved: 2MiB=$(cat $hp2) 1GiB=$(cat $hp1 2>/dev/null || echo n/a)"
if ! id "$other_user" >/dev/null 2>&1; then useradd -M -s /usr/sbin/nologin "$other_user" && created_user=1; fi
export SHARD_TEST_OTHER_USER="$other_user"
# CI runs as root on a machine of its own: let the vm.max_map_count case run.
if [ "${CI:-}" = true ] && [ "$(id -u)" = 0 ]; then export SHARD_TEST_SYSCTL=1; fi
# processx (loaded by testthat/callr) installs its own SIGCHLD handler; without
# this it swallows the exits of parallel's forked children (mclapply, fork
# pools), which then stay on parallel's list: "Error while shutting down
# parallel: unable to terminate some child processes" and a 10 s wait at exit.
export PROCESSX_NOTIFY_OLD_SIGCHLD=true

log=$(mktemp -d)
# --- Rust ------------------------------------------------------------------------
echo "== cargo fmt --check"; cargo fmt --all --check
echo "== cargo clippy"; cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== C header is current"
cbindgen --config cbindgen.toml --output "$log/shard.h" 2>/dev/null
diff -u include/shard.h "$log/shard.h" || { echo "include/shard.h is stale: regenerate with cbindgen"; exit 1; }
(cd r-ext && sh tools/vendor-rust.sh >/dev/null) && diff -u include/shard.h r-ext/src/shard.h || { echo "r-ext/tools/vendor-rust.sh did not copy include/shard.h to r-ext/src/shard.h"; exit 1; }
echo "== cargo test"
rc_cargo=0
cargo test --workspace --quiet 2>&1 | tee "$log/cargo.txt" || rc_cargo=$?
echo "== loom model of the allocator's thread-cache protocol (allocator/tests/loom_cache.rs)"
# Its own target dir: --cfg loom rebuilds everything it touches.
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="$root/target/loom" \
  cargo test -p shard-alloc --test loom_cache --release --quiet 2>&1 | tee -a "$log/cargo.txt" || rc_cargo=$?

echo "== NUMA placement in 2- and 4-node qemu guests (scripts/numa-qemu.sh)"
# This machine may have one node; the guests have several, so the multi-node
# placement tests really run (a SKIPPED line inside a guest is a failure there).
rc_numa=0
bash scripts/numa-qemu.sh >"$log/numa-full.txt" 2>&1 || rc_numa=$?
grep -E "^numa-qemu|^WARNING" "$log/numa-full.txt" | tee "$log/numa.txt" || true
if [ "$rc_numa" = 77 ]; then
  echo "SKIPPED: scripts/numa-qemu.sh could not boot a guest (see its SKIPPED line)"
  echo "numa-qemu: 0 passed, 0 failed, 1 skipped" >> "$log/numa.txt"; rc_numa=0
elif [ "$rc_numa" != 0 ]; then
  tail -n 120 "$log/numa-full.txt"
fi

# --- R package -------------------------------------------------------------------
echo "== R CMD build + check"
rm -rf "$log/rcheck"; mkdir -p "$log/rcheck"
(cd r-ext && sh tools/vendor-rust.sh)
# Builds the vignettes too (they run their code; R CMD build installs the
# package in a temporary library for them).
t_build=$(date +%s)
(cd "$log/rcheck" && R CMD build "$root/r-ext" >build.txt 2>&1) || { cat "$log/rcheck/build.txt"; exit 1; }
echo "R CMD build (with vignettes): $(( $(date +%s) - t_build )) s"
tarball=$(ls "$log"/rcheck/shard_*.tar.gz)
# --as-cran without the parts that need the network (CRAN incoming, URLs,
# timestamps) or LaTeX (the PDF manual); suggested packages Debian's R 4.2 lacks
# are not forced (the R 4.5 step below forces them).
(cd "$log/rcheck" && _R_CHECK_CRAN_INCOMING_REMOTE_=false _R_CHECK_CRAN_INCOMING_=false \
   _R_CHECK_FUTURE_FILE_TIMESTAMPS_=false _R_CHECK_SYSTEM_CLOCK_=false _R_CHECK_FORCE_SUGGESTS_=false \
   R CMD check --as-cran --no-manual --no-tests "$tarball" >check.txt 2>&1) || true
cat "$log/rcheck/check.txt" | grep -E "^\* |WARNING|ERROR|NOTE" | grep -vE "\.\.\. OK$" || true
if grep -qE "^Status: .*(ERROR|WARNING)" "$log/rcheck/check.txt"; then
  echo "R CMD check reported errors or warnings:"; cat "$log"/rcheck/shard.Rcheck/00check.log; exit 1
fi
echo "== R CMD INSTALL"
R CMD INSTALL "$tarball" >"$log/install.txt" 2>&1 || { cat "$log/install.txt"; exit 1; }
echo "== testthat"
rc_tt=0
Rscript scripts/testthat-summary.R r-ext/tests/testthat 2>&1 | tee "$log/testthat.txt" || rc_tt=$?
# Printed by R at exit when forked children of parallel were never reaped
# (see scripts/testthat-summary.R): a leftover, so a failure.
if grep -q "Error while shutting down parallel" "$log/testthat.txt"; then
  echo "LEFTOVER: the testthat run left forked children of parallel unreaped (counted as a failure)"; rc_tt=1
fi

# --- the tarball offline, and on R 4.5 ----------------------------------------------
echo "== offline install of the tarball (unshare -n, empty CARGO_HOME; scripts/offline-install.sh)"
rc_off=0; t0=$(date +%s)
bash scripts/offline-install.sh "$tarball" r-ext 2>&1 | tee "$log/offline.txt" || rc_off=$?
echo "offline install step: $(( $(date +%s) - t0 )) s"
echo "== R 4.5 (Debian trixie chroot): R CMD check --as-cran + testthat (scripts/r45-chroot.sh)"
# The chroot is cached under /var/cache/shard-r45 (SHARD_R45_CACHE): made once.
rc_r45=0; t0=$(date +%s)
bash scripts/r45-chroot.sh check "$tarball" "$log/r45" 2>&1 | tee "$log/r45.txt" || rc_r45=$?
echo "R 4.5 step: $(( $(date +%s) - t0 )) s"
if [ -s "$log/r45/noncompliant.txt" ]; then
  echo "WARNING: R 4.5's check found non-API entry points: $(tr '\n' ' ' < "$log/r45/noncompliant.txt")"
fi

# --- reliability subset, against the package installed above --------------------
rc_rel=0
if [ "${RUN_RELIABILITY:-1}" = 1 ]; then
  echo "== reliability (reliability/ci.sh)"
  bash reliability/ci.sh 2>&1 | tee "$log/reliability.txt" || rc_rel=$?
else
  echo "SKIPPED: reliability/ci.sh (RUN_RELIABILITY=0)" | tee "$log/reliability.txt"
  echo "reliability: 0 passed, 0 failed, 1 skipped" >> "$log/reliability.txt"
fi

# --- several nodes: pretend nodes in namespaces, PSOCK, mpirun, Slurm (tests/nodes/run.sh) ---
# Against the package installed above; about a minute on the 2-core VM. Its own row below.
rc_nodes=0
echo "== nodes (tests/nodes/run.sh)"
t_nodes=$(date +%s)
bash tests/nodes/run.sh 2>&1 | tee "$log/nodes.txt" || rc_nodes=$?
echo "nodes step took $(( $(date +%s) - t_nodes )) s"

# --- summary -------------------------------------------------------------------
# Cargo counts tests, testthat expectations, reliability steps. A step that
# exited non-zero without a summary line (a crash) counts as one failure.
Rscript -e '
  a <- commandArgs(TRUE)
  cargo <- readLines(a[1]); tt <- readLines(a[2]); rel <- readLines(a[3]); numa <- readLines(a[4])
  off <- readLines(a[5]); r45 <- readLines(a[6]); nodes <- readLines(a[7])
  rc <- as.integer(a[8:14])
  num <- function(lines, re) sum(as.numeric(sub(re, "\\1", grep(re, lines, value = TRUE))))
  res <- rbind(
    cargo = c(num(cargo, "^test result: .* ([0-9]+) passed.*"), num(cargo, "^test result: .* ([0-9]+) failed.*"),
              num(cargo, "^test result: .* ([0-9]+) ignored.*")),
    testthat = c(num(tt, "^testthat: ([0-9]+) passed.*"), num(tt, "^testthat: [0-9]+ passed, ([0-9]+) failed.*"),
                 num(tt, "^testthat: .* ([0-9]+) skipped.*")),
    reliability = c(num(rel, "^reliability: ([0-9]+) passed.*"), num(rel, "^reliability: [0-9]+ passed, ([0-9]+) failed.*"),
                    num(rel, "^reliability: [0-9]+ passed, [0-9]+ failed, ([0-9]+) skipped.*")),
    numa = c(num(numa, "^numa-qemu: ([0-9]+) passed.*"), num(numa, "^numa-qemu: [0-9]+ passed, ([0-9]+) failed.*"),
             num(numa, "^numa-qemu: [0-9]+ passed, [0-9]+ failed, ([0-9]+) skipped.*")),
    offline = c(num(off, "^offline-install: ([0-9]+) passed.*"), num(off, "^offline-install: [0-9]+ passed, ([0-9]+) failed.*"),
                num(off, "^offline-install: [0-9]+ passed, [0-9]+ failed, ([0-9]+) skipped.*")),
    r45 = c(num(r45, "^r45: ([0-9]+) passed.*"), num(r45, "^r45: [0-9]+ passed, ([0-9]+) failed.*"),
            num(r45, "^r45: [0-9]+ passed, [0-9]+ failed, ([0-9]+) skipped.*")),
    nodes = c(num(nodes, "^nodes: ([0-9]+) passed.*"), num(nodes, "^nodes: [0-9]+ passed, ([0-9]+) failed.*"),
              num(nodes, "^nodes: [0-9]+ passed, [0-9]+ failed, ([0-9]+) skipped.*")))
  for (i in seq_along(rc)) if (rc[i] != 0 && res[i, 2] == 0) {
    cat(sprintf("%s exited with status %d without reporting a failure: counted as 1 failed\n", rownames(res)[i], rc[i]))
    res[i, 2] <- 1
  }
  for (i in seq_len(nrow(res))) cat(sprintf("  %-11s %d passed, %d failed, %d skipped\n", rownames(res)[i], res[i, 1], res[i, 2], res[i, 3]))
  if (sum(res[, 3]) > 0) cat("SKIPPED: see the SKIPPED lines above (skips are not passes)\n")
  cat(sprintf("all: %d passed, %d failed, %d skipped\n", sum(res[, 1]), sum(res[, 2]), sum(res[, 3])))
  quit(status = sum(res[, 2]) > 0)' "$log/cargo.txt" "$log/testthat.txt" "$log/reliability.txt" "$log/numa.txt" \
  "$log/offline.txt" "$log/r45.txt" "$log/nodes.txt" "$rc_cargo" "$rc_tt" "$rc_rel" "$rc_numa" "$rc_off" "$rc_r45" "$rc_nodes"
