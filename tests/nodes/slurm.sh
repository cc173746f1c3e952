#!/usr/bin/env bash
# future.batchtools on a two-node Slurm cluster in namespaces (scripts/nodes/slurm-cluster.sh),
# per-node holder pattern (tests/nodes/slurm.R).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
if ! why=$(nodes_possible); then skip "Slurm scenario ($why)"; exit 0; fi
for c in slurmctld slurmd munged sbatch; do
  command -v $c >/dev/null || { skip "Slurm scenario: $c is not installed (scripts/setup.sh installs it)"; exit 0; }
done
Rscript -e 'library(future.batchtools)' >/dev/null 2>&1 ||
  { skip "Slurm scenario: package future.batchtools is not installed"; exit 0; }
out=$( . "$ROOT/scripts/nodes/slurm-cluster.sh"
  slurm_up || exit 2
  slurm_client timeout 240 Rscript "$ROOT/tests/nodes/slurm.R" 2>&1
  rc=$?
  [ $rc = 0 ] || { tail -5 "$SLURM_DIR"/log/*.log; ls "$NODES_DIR/work/.future" 2>/dev/null; }
  exit $rc )
rc=$?
echo "$out" | grep -E "^(PASS|FAIL):"
check "future.batchtools on two Slurm nodes ran to the end (exit $rc)" grep -q "^SLURM-DONE" <<<"$out" ||
  echo "$out" | tail -30
grep -q "^FAIL:" <<<"$out" && NT_FAILED=1
left=$(pgrep -x slurmd; pgrep -x slurmctld; pgrep -f "munged -F --force -S /var/tmp/shard-nodes" || true)
check "teardown left no Slurm daemons" [ -z "$left" ]
exit $NT_FAILED
