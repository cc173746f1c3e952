#!/usr/bin/env bash
# share_mpi() under mpirun (OpenMPI, TCP transport) with 4 ranks spread over 2 pretend
# nodes; share(x, cluster = cl) on a snow MPI cluster (RMPISNOW, 5 ranks); then share_mpi()
# without namespaces as the negative control.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
if ! why=$(nodes_possible); then skip "share_mpi() on pretend nodes ($why)"; exit 0; fi
command -v mpirun >/dev/null || { skip "share_mpi(): mpirun is not installed (scripts/setup.sh installs openmpi-bin)"; exit 0; }
Rscript -e 'library(Rmpi)' >/dev/null 2>&1 || { skip "share_mpi(): package Rmpi is not installed (r-cran-rmpi)"; exit 0; }
# The shared-memory transport cannot span PID namespaces: TCP on loopback only.
mpi=(mpirun --allow-run-as-root --oversubscribe --mca pml ob1 --mca btl tcp,self
     --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)
out=$( . "$ROOT/scripts/nodes/nodes.sh"; nodes_up node1 node2 || exit 2
  timeout 120 "${mpi[@]}" -np 4 "$ROOT/scripts/nodes/rank-node.sh" "node1 node2" Rscript "$ROOT/tests/nodes/mpi.R" 2>&1 )
rc=$?
echo "$out" | grep -E "^(PASS|FAIL):"
check "share_mpi() scenario under mpirun ran to the end (exit $rc)" grep -q "^MPI-DONE" <<<"$out"
grep -q "^MPI-DONE" <<<"$out" || echo "$out" | tail -20
grep -q "^FAIL:" <<<"$out" && NT_FAILED=1
# share(x, cluster = cl) on a snow MPI cluster: RMPISNOW makes rank 0 the master.
snowrun=$(Rscript -e 'cat(system.file("RMPISNOW", package = "snow"))' 2>/dev/null)
if [ -n "$snowrun" ]; then
  out=$( . "$ROOT/scripts/nodes/nodes.sh"; nodes_up node1 node2 || exit 2
    timeout 120 "${mpi[@]}" -np 5 "$ROOT/scripts/nodes/rank-node.sh" "node1 node2" sh "$snowrun" \
      -f "$ROOT/tests/nodes/snow.R" 2>&1 )
  echo "$out" | grep -E "^(PASS|FAIL):"
  check "share(cluster =) on a snow MPI cluster ran to the end" grep -q "^SNOW-DONE" <<<"$out"
  grep -q "^SNOW-DONE" <<<"$out" || echo "$out" | tail -20
  grep -q "^FAIL:" <<<"$out" && NT_FAILED=1
else
  skip "share(cluster =) on a snow MPI cluster: package snow (RMPISNOW) is not installed"
fi
out=$( export NODES_NO_NS=1; . "$ROOT/scripts/nodes/nodes.sh"; nodes_up node1 node2 || exit 2
  timeout 120 "${mpi[@]}" -np 4 "$ROOT/scripts/nodes/rank-node.sh" "node1 node2" Rscript "$ROOT/tests/nodes/mpi.R" 2>&1 )
echo "$out" | grep -E "^(PASS|FAIL):" | sed 's/^/  control| /'
check "negative control: without namespaces the one-copy-per-node check fails" \
  grep -q "^FAIL: the nodes' regions are different regions" <<<"$out"
exit $NT_FAILED
