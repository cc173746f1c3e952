#!/usr/bin/env bash
# share(x, cluster = cl) across pretend nodes (tests/nodes/psock.R), then the negative
# control: the same scenario on "nodes" without namespaces must fail its
# one-copy-per-node checks (so the checks really see nodes).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
if ! why=$(nodes_possible); then skip "share(cluster =) on pretend nodes ($why)"; exit 0; fi
Rscript -e 'library(shard)' >/dev/null 2>&1 || { fail "package shard is not installed (R_LIBS=$R_LIBS)"; exit 1; }
( . "$ROOT/scripts/nodes/nodes.sh"; nodes_up node1 node2 || exit 2
  timeout 180 Rscript "$ROOT/tests/nodes/psock.R" node1 node2 )
rc=$?
check "share(cluster =) scenario on pretend nodes (exit $rc)" [ $rc = 0 ]
out=$( export NODES_NO_NS=1; . "$ROOT/scripts/nodes/nodes.sh"; nodes_up node1 node2 || exit 2
  timeout 180 Rscript "$ROOT/tests/nodes/psock.R" node1 node2 2>&1 )
rc=$?
echo "$out" | sed 's/^/  control| /' | sed 's/control| PASS:/control| pass:/; s/control| FAIL:/control| fail:/'
check "negative control: without namespaces the one-copy-per-node check fails" \
  grep -q "^FAIL: the nodes' regions are different regions" <<<"$out"
exit $NT_FAILED
