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
  # The job script of docs/CLUSTERS.md, as an HPC user would submit it.
  w=$NODES_DIR/work; mkdir -p "$w"
  Rscript -e 'saveRDS(seq_len(1e6) / 3, commandArgs(TRUE))' "$w/big.rds"
  (cd "$w" && SCRATCH=$w BIG=$w/big.rds WORK=$ROOT/tests/nodes/slurm-work.R \
     slurm_client timeout 120 sbatch --wait -o "$w/job.out" "$ROOT/tests/nodes/slurm-job.sh" >/dev/null)
  echo "job exit $?"
  cat "$w/job.out"
  [ $rc = 0 ] || { tail -5 "$SLURM_DIR"/log/*.log; ls "$NODES_DIR/work/.future" 2>/dev/null; }
  exit $rc )
rc=$?
echo "$out" | grep -E "^(PASS|FAIL):"
check "future.batchtools on two Slurm nodes ran to the end (exit $rc)" grep -q "^SLURM-DONE" <<<"$out"
grep -q "^SLURM-DONE" <<<"$out" || echo "$out" | tail -30
grep -q "^FAIL:" <<<"$out" && NT_FAILED=1
tasks=$(grep "^TASK " <<<"$out")
echo "$tasks" | sed 's/^/  /'
check "job script: sbatch job ran to the end" grep -q "^JOB-DONE" <<<"$out"
grep -q "^JOB-DONE" <<<"$out" || echo "$out" | grep -vE "^(PASS|FAIL|TASK)" | tail -20
check "job script: 4 tasks on 2 nodes read the right values" \
  [ "$(grep -c "ok=TRUE" <<<"$tasks")" = 4 -a "$(grep -o "host=[a-z0-9]*" <<<"$tasks" | sort -u | wc -l)" = 2 ]
# One region per node (each task maps only that one), different on the two nodes.
per=$(for n in node1 node2; do grep "host=$n " <<<"$tasks" | sed 's/.*inodes=//' | sort -u | tr '\n' ' '; echo; done)
check "job script: one region per node, different regions on the two nodes" \
  [ "$(echo "$per" | awk 'NF==1' | wc -l)" = 2 -a "$(echo "$per" | sort -u | wc -l)" = 2 ]
left=$(pgrep -x slurmd; pgrep -x slurmctld; pgrep -f "munged -F --force -S /var/tmp/shard-nodes" || true)
check "teardown left no Slurm daemons" [ -z "$left" ]
exit $NT_FAILED
