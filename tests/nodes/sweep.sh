#!/usr/bin/env bash
# The shared-filesystem sweep case (issue 16): the per-user directory (SHARD_TMPDIR) on a
# filesystem both nodes see; node1 holds a live named mmap share; node2 loads the package
# and runs shard_sweep(). node1's entry must survive (its owner lives on another node),
# and node2 must not get node1's object. Needs node identity in the store's names and
# sweeps (src/, the store branch): on a branch without it the first two checks FAIL,
# which is the defect this scenario exists to catch.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
if ! why=$(nodes_possible); then skip "shared-filesystem sweep ($why)"; exit 0; fi
out=$( . "$ROOT/scripts/nodes/nodes.sh"; nodes_up node1 node2 || exit 2
  export SHARD_TMPDIR=$NODES_DIR/shared-tmpdir; mkdir -p "$SHARD_TMPDIR"
  # On NFS, Lustre, GPFS, CIFS, ... the store detects the shared directory
  # (statfs) and scopes it per node by itself; this stand-in is a tmpfs that both
  # pretend nodes see, which statfs cannot tell from a local one: say it is
  # shared, as a user of an undetected shared filesystem must (docs/CLUSTERS.md).
  export SHARD_NODE_SCOPED=1
  "$ENTER" node1 Rscript -e '
    library(shard); x <- seq_len(1e5) + 0.5
    s <- share(x, backing = "mmap", name = "nodes-sweep-a")
    file.create(file.path(Sys.getenv("NODES_DIR"), "a.ready"))
    for (i in 1:300) { if (file.exists(file.path(Sys.getenv("NODES_DIR"), "b.done"))) break; Sys.sleep(0.1) }
    ok <- tryCatch(identical(fetch(share_open("nodes-sweep-a")), x), error = function(e) conditionMessage(e))
    cat("A-REOPEN", ok, "\n"); cat("A-FILE", file.exists(s$path), "\n")
    close(s)' &
  a=$!
  for i in $(seq 1 300); do [ -e "$NODES_DIR/a.ready" ] && break; sleep 0.1; done
  "$ENTER" node2 Rscript -e '
    library(shard); invisible(shard_sweep())
    r <- tryCatch({ v <- fetch(share_open("nodes-sweep-a")); paste("B-GOT", length(v)) },
                  error = function(e) paste("B-ERROR", conditionMessage(e)))
    cat(r, "\n")'
  touch "$NODES_DIR/b.done"
  wait $a )
echo "$out" | sed 's/^/  /'
check "a sweep on node2 leaves node1's live named share: node1 reopens it by name" grep -q "^A-REOPEN TRUE" <<<"$out"
check "a sweep on node2 leaves node1's live file in the shared per-user directory" grep -q "^A-FILE TRUE" <<<"$out"
check "node2 opening node1's name gets an error, not node1's object" grep -q "^B-ERROR" <<<"$out"
exit $NT_FAILED
