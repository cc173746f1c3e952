#!/usr/bin/env bash
# Benchmark of share(x, cluster =) across two pretend nodes (scripts/nodes/bench-cluster.R).
#   sudo bash scripts/nodes/bench.sh      (BENCH_SIZES_MB=8,64,256 BENCH_REPS=5)
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/nodes/nodes.sh
nodes_up node1 node2
Rscript scripts/nodes/bench-cluster.R
