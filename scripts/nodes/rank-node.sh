#!/usr/bin/env bash
# For mpirun: runs each rank inside a pretend node chosen round-robin by its rank,
#   mpirun ... scripts/nodes/rank-node.sh "node1 node2" Rscript job.R
# (rank r goes to node number r mod N). Needs NODES_DIR (scripts/nodes/nodes.sh).
set -euo pipefail
read -r -a nodes <<<"${1:?usage: rank-node.sh \"NODE...\" CMD...}"; shift
rank=${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-${PMIX_RANK:-0}}}
exec "$(dirname "$0")/enter-node.sh" "${nodes[$((rank % ${#nodes[@]}))]}" "$@"
