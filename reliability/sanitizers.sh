#!/usr/bin/env bash
# The Rust tests under sanitizers (nightly is not installed; see docs/RELIABILITY.md):
#   asan      cargo test --workspace with -Zsanitizer=address, enabled on stable
#             rustc through RUSTC_BOOTSTRAP=1 (std itself is not instrumented)
#   tsan      ThreadSanitizer with std rebuilt instrumented (-Zbuild-std, needs the
#             rust-src component: installed with rustup if missing; if that fails
#             it prints "SKIPPED: rust-src unavailable" and exits 77): the thread
#             stress (shard-stress threads $TSAN_THREADS $TSAN_ITERS, default 8 x
#             1000), then every test binary of shard-alloc and the lib tests of
#             shard (TSAN_CARGO_ARGS overrides the selection). Any TSan report fails.
#   memcheck  every test binary of `cargo test --workspace --no-run` under
#             valgrind memcheck (--error-exitcode=1, definite leaks are errors)
#   r         R -d valgrind on a subset of the testthat suite (slow: minutes)
#
#   bash reliability/sanitizers.sh [asan] [memcheck] [tsan] [r]   (default: asan memcheck)
# Exits non-zero on any sanitizer report or failing test; 77 if every mode asked
# for was skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH"
modes=${*:-asan memcheck}
triple=$(rustc -vV | sed -n 's/^host: //p')
status=0
summary=()
skipped=0

test_binaries() { # $1 = cargo log with "Executable" lines
  # cargo prints paths relative to the workspace when the target dir is inside it
  grep 'Executable' "$1" | grep -oE '\([^)]*\)$' | tr -d '()' | sed "s|^\([^/]\)|$root/\1|"
}
run_binaries() { # $1 = label, $2 = log, then the wrapper command
  local label=$1 log=$2; shift 2
  local n=0 bad=0
  for b in $(test_binaries "$log"); do
    case " ${SKIP_BINARIES:-} " in *" $(basename "$b" | sed 's/-[0-9a-f]*$//') "*)
      echo "$label SKIPPED: $(basename "$b") (in SKIP_BINARIES)"; continue ;; esac
    # shard_tune and benches are not tests
    case "$(basename "$b")" in shard_tune-*|shard_bench-*) continue ;; esac
    n=$((n + 1))
    # allocator tests expect to run from allocator/ (their manifest dir)
    case "$b" in *shard_alloc-*|*/concurrency-*|*/errors-*|*/hugepages-*|*/large_runs-*|*/model-*|*/numa-*|*/options_env-*|*/sealing-*|*/smoke-*) dir=allocator ;; *) dir=. ;; esac
    out=$(cd "$dir" && "$@" "$b" -q 2>&1); rc=$?
    res=$(printf '%s\n' "$out" | grep -E "^test result" | tail -1)
    if [ $rc -ne 0 ]; then
      bad=$((bad + 1)); status=1
      echo "$label FAILED: $(basename "$b") (exit $rc)"
      printf '%s\n' "$out" | grep -E "ERROR SUMMARY|AddressSanitizer|SUMMARY|Invalid|definitely lost|panicked|FAILED" | head -20
    else
      echo "$label ok: $(basename "$b"): $res"
    fi
  done
  summary+=("$label: $n test binaries, $bad failed")
}

for m in $modes; do
  case $m in
  asan)
    echo "== ASan build (RUSTC_BOOTSTRAP=1, -Zsanitizer=address)"
    log=$(mktemp)
    RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address" CARGO_TARGET_DIR="${ASAN_TARGET_DIR:-$root/target/asan}" \
      cargo test --workspace --no-run --target "$triple" >"$log" 2>&1 || { cat "$log"; exit 1; }
    # Skipped under ASan (artifacts of the sanitizer, not of shard; they pass natively):
    # c_abi links a C program against the staticlib, which lacks the ASan runtime;
    # owner_death and bad_handles compare the whole of /proc/self/maps before and
    # after, and ASan's runtime adds mappings of its own.
    SKIP_BINARIES=${SKIP_BINARIES-c_abi owner_death bad_handles} ASAN_OPTIONS="detect_leaks=1:abort_on_error=0" \
      run_binaries asan "$log" timeout "${ASAN_TIMEOUT:-600}"
    rm -f "$log" ;;
  memcheck)
    command -v valgrind >/dev/null || { echo "valgrind not installed (apt-get install valgrind)"; exit 1; }
    echo "== memcheck build"
    log=$(mktemp)
    CARGO_TARGET_DIR="${MEMCHECK_TARGET_DIR:-$root/target/memcheck}" cargo test --workspace --no-run >"$log" 2>&1 || { cat "$log"; exit 1; }
    # Proptest cases are cut down: memcheck runs ~30x slower. tests/fork.rs is
    # skipped: its fork+pipe handshake deadlocks under valgrind (the helper it
    # re-executes runs natively and waits on a pipe whose writer valgrind's child
    # never reaches); see docs/RELIABILITY.md.
    SKIP_BINARIES=${SKIP_BINARIES-fork} PROPTEST_CASES=${PROPTEST_CASES:-16} run_binaries memcheck "$log" \
      timeout "${MEMCHECK_TIMEOUT:-900}" valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite
    rm -f "$log" ;;
  tsan)
    if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
      echo "== tsan: installing the rust-src component (for -Zbuild-std)"
      if ! rustup component add rust-src >/dev/null 2>&1; then
        echo "SKIPPED: rust-src unavailable ('rustup component add rust-src' failed, no network?): ThreadSanitizer needs std rebuilt with -Zbuild-std"
        summary+=("tsan: SKIPPED (rust-src unavailable)"); skipped=$((skipped + 1)); continue
      fi
    fi
    tdir=${TSAN_TARGET_DIR:-$root/target/tsan}
    # rustix_use_libc: rustix's default backend makes raw syscalls (inline asm),
    # so TSan never sees our mmap/munmap and keeps the access history of an
    # unmapped region for the next mapping at that address: false races between
    # unrelated regions (see docs/RELIABILITY.md). Through libc they are intercepted.
    tflags="-Zsanitizer=thread -Cforce-frame-pointers=yes --cfg rustix_use_libc"
    # exitcode: a report fails the binary even if its own checks pass; the
    # suppressions file (if any) lists reviewed false positives.
    topts="halt_on_error=0 exitcode=66 second_deadlock_stack=1 history_size=4"
    [ -s reliability/tsan.supp ] && topts+=" suppressions=$root/reliability/tsan.supp"
    export TSAN_OPTIONS="$topts ${TSAN_OPTIONS:-}"
    echo "== tsan: building the thread stress (-Zbuild-std: std instrumented too)"
    log=$(mktemp)
    if ! RUSTC_BOOTSTRAP=1 RUSTFLAGS="$tflags" CARGO_TARGET_DIR="$tdir" cargo build --quiet -Zbuild-std --release \
      --target "$triple" --manifest-path reliability/stress/Cargo.toml >"$log" 2>&1; then
      cat "$log"
      # -Zbuild-std fetches std's own dependencies from crates.io the first time.
      if grep -qiE "failed to (download|get|fetch|load source)|could not resolve|network" "$log"; then
        echo "SKIPPED: std's dependencies unavailable (offline?): ThreadSanitizer needs std rebuilt with -Zbuild-std"
        summary+=("tsan: SKIPPED (std's dependencies unavailable)"); skipped=$((skipped + 1)); rm -f "$log"; continue
      fi
      exit 1
    fi
    # Self-check: the deliberate race must be reported, else the build is not
    # instrumented and "no report" below would mean nothing.
    out=$("$tdir/$triple/release/shard-stress" tsan-canary 2>&1); rc=$?
    if [ $rc -ne 66 ] || ! printf '%s\n' "$out" | grep -q "WARNING: ThreadSanitizer: data race"; then
      status=1; echo "tsan FAILED: the canary race was not reported (exit $rc): TSan is not working in this build"
      printf '%s\n' "$out" | tail -20
    else
      echo "tsan: canary race reported, as it must be"
    fi
    t=${TSAN_THREADS:-8}; it=${TSAN_ITERS:-1000}
    echo "== tsan: shard-stress threads $t $it"
    out=$(timeout "${TSAN_TIMEOUT:-900}" "$tdir/$triple/release/shard-stress" threads "$t" "$it" 2>&1); rc=$?
    nrep=$(printf '%s\n' "$out" | grep -c "WARNING: ThreadSanitizer")
    printf '%s\n' "$out" | grep -vE "^\s*$" | tail -5
    if [ $rc -ne 0 ] || [ "$nrep" -gt 0 ]; then
      status=1; echo "tsan FAILED: shard-stress threads (exit $rc, $nrep reports)"
      printf '%s\n' "$out" | grep -A30 "WARNING: ThreadSanitizer" | head -120
    fi
    summary+=("tsan: shard-stress threads $t x $it: exit $rc, $nrep reports")
    echo "== tsan: building the tests (${TSAN_CARGO_ARGS:-"-p shard-alloc --tests; -p shard --lib"})"
    : >"$log"
    IFS=';' read -ra sels <<<"${TSAN_CARGO_ARGS:-"-p shard-alloc --tests; -p shard --lib"}"
    for sel in "${sels[@]}"; do
      # shellcheck disable=SC2086
      RUSTC_BOOTSTRAP=1 RUSTFLAGS="$tflags" CARGO_TARGET_DIR="$tdir" cargo test -Zbuild-std --release \
        --target "$triple" $sel --no-run >>"$log" 2>&1 || { cat "$log"; exit 1; }
    done
    # Children that the tests fork or re-execute are instrumented too; a report
    # in any of them fails the binary (exitcode).
    run_binaries tsan "$log" timeout "${TSAN_TIMEOUT:-900}"
    rm -f "$log" ;;
  r)
    command -v valgrind >/dev/null || { echo "valgrind not installed"; exit 1; }
    lib=${R_VALGRIND_LIB:-$(mktemp -d)}
    [ -d "$lib/shard" ] || bash scripts/install-r-pkg.sh "$lib" >/dev/null
    files=${R_VALGRIND_FILES:-"test-share-basic.R test-reliability-input.R"}
    for f in $files; do
      echo "== R -d valgrind: $f"
      out=$(SHARD_REL_IN_PROCESS=1 R_LIBS="$lib" R -d "valgrind --error-exitcode=1 --quiet --track-origins=no" --vanilla --slave -e \
        "library(testthat); library(shard); r <- as.data.frame(test_file('r-ext/tests/testthat/$f', reporter = 'silent')); cat('TESTTHAT', sum(r\$failed), sum(r\$nb) - sum(r\$failed) - sum(r\$skipped), '\\n')" 2>&1); rc=$?
      printf '%s\n' "$out" | grep -E "ERROR SUMMARY|Invalid|uninitialised|TESTTHAT" | head -20
      [ $rc -ne 0 ] && { status=1; echo "R valgrind FAILED on $f (exit $rc)"; }
      summary+=("R -d valgrind $f: exit $rc")
    done ;;
  *) echo "unknown mode $m"; exit 64 ;;
  esac
done
printf 'sanitizers: %s\n' "${summary[@]}"
[ $status -eq 0 ] && [ $skipped -gt 0 ] && [ $skipped -eq "$(wc -w <<<"$modes")" ] && exit 77
exit $status
