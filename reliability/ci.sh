#!/usr/bin/env bash
# The bounded reliability subset for CI (about 10-15 minutes on 2 cores, cold):
#   fuzz 60 s per target, the stress driver (threads, processes, forged handles),
#   the kill-owner loop with N=50, the limits checks (sysctl cases included when
#   root), the Rust tests under AddressSanitizer (RELIABILITY_ASAN=0 skips), and
#   the thread stress + threaded Rust tests under ThreadSanitizer with an
#   instrumented std (RELIABILITY_TSAN=0 skips; skipped, loudly, when the
#   rust-src component cannot be installed).
# Needs the shard R package installed (the site library or R_LIBS); installs it
# into a temporary library if it is not. Run by scripts/run-tests.sh (CI).
# Ends with "reliability: N passed, M failed, K skipped" (steps); a skipped step
# prints "SKIPPED: ..." and is not a pass. Exits non-zero if a step failed.
#   bash reliability/ci.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
# processx's SIGCHLD handler must pass the exits of parallel's forked children on.
export PROCESSX_NOTIFY_OLD_SIGCHLD=true
t0=$(date +%s)
if ! Rscript -e 'suppressMessages(library(shard))' >/dev/null 2>&1; then
  lib=$(mktemp -d); bash scripts/install-r-pkg.sh "$lib" >/dev/null || exit 1
  export R_LIBS="$lib${R_LIBS:+:$R_LIBS}"
fi
passed=0; failed=0; skipped=0; failures=(); skips=()
step() { # name, command...  (exit 0 = passed, 77 = skipped, else failed)
  local name=$1; shift
  local s=$(date +%s) rc=0
  echo "== reliability: $name"
  "$@" || rc=$?
  case $rc in
    0) passed=$((passed + 1)) ;;
    77) skipped=$((skipped + 1)); skips+=("$name"); echo "SKIPPED: reliability step '$name' (see the reason above)" ;;
    *) failed=$((failed + 1)); failures+=("$name") ;;
  esac
  echo "== reliability: $name took $(( $(date +%s) - s ))s"
}
skip_step() { # name, reason
  skipped=$((skipped + 1)); skips+=("$1"); echo "SKIPPED: reliability step '$1': $2"
}
step "fuzz (${FUZZ_SECONDS:-60}s per target)" env FUZZ_SECONDS="${FUZZ_SECONDS:-60}" bash reliability/fuzz-ci.sh
step "stress" env STRESS_ITERS=2000 STRESS_SECS=5 STRESS_KNOWN_FINDINGS="${STRESS_KNOWN_FINDINGS-}" bash reliability/stress.sh
step "kill-owner N=${KILL_N:-50}" env FRESH_EVERY=5 Rscript reliability/kill-owner.R "${KILL_N:-50}"
step "limits" bash reliability/limits.sh
if [ "${RELIABILITY_ASAN:-1}" = 1 ]; then
  step "Rust tests under ASan" bash reliability/sanitizers.sh asan
else
  skip_step "Rust tests under ASan" "RELIABILITY_ASAN=${RELIABILITY_ASAN}"
fi
if [ "${RELIABILITY_TSAN:-1}" = 1 ]; then
  step "thread stress + threaded tests under TSan" env TSAN_THREADS="${TSAN_THREADS:-8}" TSAN_ITERS="${TSAN_ITERS:-1000}" \
    bash reliability/sanitizers.sh tsan
else
  skip_step "thread stress + threaded tests under TSan" "RELIABILITY_TSAN=${RELIABILITY_TSAN}"
fi
echo "reliability: $(( $(date +%s) - t0 ))s in all"
[ $failed -gt 0 ] && printf 'reliability: FAILED step: %s\n' "${failures[@]}"
[ $skipped -gt 0 ] && printf 'reliability: SKIPPED step: %s\n' "${skips[@]}"
echo "reliability: $passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
