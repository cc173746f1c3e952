#!/usr/bin/env bash
# Every several-node scenario on pretend nodes (as root): isolation (+ negative control),
# the shared-filesystem sweep case (needs the store's per-node sweeps, src/),
# share(cluster =) over PSOCK, share_mpi() under mpirun, future.batchtools on Slurm.
# Needs the package installed (R_LIBS). Ends with "nodes: P passed, F failed, S skipped";
# exits non-zero when a check failed. Each scenario tears its nodes down on every exit.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
rc=0
for t in isolation psock mpi slurm sweep; do
  echo "-- tests/nodes/$t.sh"
  start=$(date +%s)
  timeout 420 bash "$here/$t.sh" 2>&1 | tee -a "$log"
  st=${PIPESTATUS[0]}
  echo "   ($t: $(( $(date +%s) - start )) s, exit $st)"
  if [ "$st" != 0 ] && ! grep -q "^FAIL:" "$log"; then
    echo "FAIL: tests/nodes/$t.sh exited with status $st without a FAIL line" | tee -a "$log"
  fi
  [ "$st" = 0 ] || rc=1
done
p=$(grep -c "^PASS:" "$log"); f=$(grep -c "^FAIL:" "$log"); s=$(grep -c "^SKIPPED:" "$log")
[ "$s" = 0 ] || grep "^SKIPPED:" "$log"
echo "nodes: $p passed, $f failed, $s skipped"
exit $rc
