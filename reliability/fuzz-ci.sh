#!/usr/bin/env bash
# Bounded libFuzzer run of every target in fuzz/ (default 60 s each). Exits
# non-zero on a finding (crash, panic, failed invariant, leak, timeout), leaving
# the reproducer in fuzz/artifacts/<target>/.
#
#   bash reliability/fuzz-ci.sh              # 60 s per target
#   FUZZ_SECONDS=600 bash reliability/fuzz-ci.sh
#   FUZZ_TARGETS="handle_decode" bash reliability/fuzz-ci.sh
#   FUZZ_ASAN=1 bash reliability/fuzz-ci.sh  # also AddressSanitizer (RUSTC_BOOTSTRAP)
#
# Works on stable Rust without cargo-fuzz: it builds the targets with the same
# sanitizer-coverage flags `cargo fuzz build` passes (-C passes=sancov-module ...),
# which stable rustc accepts. Only AddressSanitizer needs an unstable flag
# (-Zsanitizer=address): with FUZZ_ASAN=1 it is enabled through RUSTC_BOOTSTRAP=1
# (see docs/RELIABILITY.md). `cargo fuzz run <target>` also works on this crate
# (cargo install cargo-fuzz; RUSTC_BOOTSTRAP=1 on stable, or `-s none`).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH"
secs=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-"handle_decode object_header alloc_ops payload vector_state"}
triple=$(rustc -vV | sed -n 's/^host: //p')
flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table"
flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$root/fuzz/target}"
if [ "${FUZZ_ASAN:-0}" = 1 ]; then
  flags+=" -Zsanitizer=address"
  export RUSTC_BOOTSTRAP=1
  export CARGO_TARGET_DIR="$CARGO_TARGET_DIR/asan"
fi
echo "== fuzz: building targets ($targets) for $triple"
# --target keeps build scripts and proc macros uninstrumented.
RUSTFLAGS="$flags" cargo build --quiet --release --manifest-path fuzz/Cargo.toml --target "$triple" \
  $(for t in $targets; do printf -- '--bin %s ' "$t"; done)
bin="$CARGO_TARGET_DIR/$triple/release"
status=0
summary=()
for t in $targets; do
  corpus="fuzz/corpus/$t"; art="fuzz/artifacts/$t/"
  mkdir -p "$corpus" "$art"
  log=$(mktemp)
  echo "== fuzz: $t for ${secs}s"
  set +e
  # -rss_limit_mb: alloc_ops maps regions; -timeout: one input must not hang.
  "$bin/$t" -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=4096 \
    -artifact_prefix="$art" "$corpus" "fuzz/corpus-seed/$t" >"$log" 2>&1
  rc=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | sed 's/cov: //')
  if [ $rc -ne 0 ]; then
    status=1
    echo "FINDING in $t (exit $rc):"; grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" | head -20
    tail -40 "$log"
  fi
  summary+=("$t: ${runs:-?} executions, coverage ${cov:-?}, exit $rc")
  rm -f "$log"
done
printf 'fuzz: %s\n' "${summary[@]}"
[ $status -eq 0 ] && echo "fuzz: no findings" || echo "fuzz: FINDINGS (reproducers under fuzz/artifacts/)"
exit $status
