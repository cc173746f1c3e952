#!/usr/bin/env bash
# Resource-limit checks (r-ext/tests/testthat/test-reliability-limits.R), with the
# cases that change system settings enabled: vm.max_map_count is lowered for a few
# seconds (restored exactly, also on interruption), nr_hugepages raised by 16 only
# if no huge page is free (restored exactly). Run as root for the tmpfs (private
# mount namespace), sysctl and huge-page cases; others skip, saying why.
#   bash reliability/limits.sh            (uses the installed shard, or R_LIBS)
set -uo pipefail
cd "$(dirname "$0")/.."
mm=/proc/sys/vm/max_map_count; hp=/proc/sys/vm/nr_hugepages
old_mm=$(cat $mm); old_hp=$(cat $hp)
restore() {
  [ "$(cat $mm)" = "$old_mm" ] || echo "$old_mm" > $mm
  [ "$(cat $hp)" = "$old_hp" ] || echo "$old_hp" > $hp
}
trap restore EXIT INT TERM
SHARD_TEST_SYSCTL=${SHARD_TEST_SYSCTL:-1} Rscript -e '
  library(testthat); library(shard)
  r <- as.data.frame(test_file("r-ext/tests/testthat/test-reliability-limits.R", reporter = "summary"))
  cat(sprintf("limits: %d passed, %d failed, %d skipped\n", sum(r$nb) - sum(r$failed) - sum(r$skipped), sum(r$failed), sum(r$skipped)))
  quit(status = as.integer(sum(r$failed) > 0 || any(r$error)))'
rc=$?
restore
[ "$(cat $mm)" = "$old_mm" ] && [ "$(cat $hp)" = "$old_hp" ] && echo "limits: system settings restored (max_map_count=$old_mm nr_hugepages=$old_hp)"
exit $rc
