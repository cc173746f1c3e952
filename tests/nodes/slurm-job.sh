#!/bin/bash
# The Slurm job script of docs/CLUSTERS.md ("a job script, step by step"), run by
# tests/nodes/slurm.sh with sbatch on the two-node test cluster. SCRATCH is a directory
# every node sees; BIG is an .rds file with the value; WORK is the task script.
#SBATCH --job-name=shard-demo
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=2
#SBATCH --time=00:05:00
set -euo pipefail
export SHARE_DIR=$SCRATCH/shard-$SLURM_JOB_ID      # 1. a directory every node sees (not /tmp)

# 2. Write the value once; keep the small shard_cluster_shared object next to it.
Rscript -e 's <- shard::share_batch(readRDS(Sys.getenv("BIG")), dir = Sys.getenv("SHARE_DIR"));
            saveRDS(s, file.path(Sys.getenv("SHARE_DIR"), "s.rds"))'

# 3. One holder per node: reads the value once, shares it on its node, waits for close().
srun --nodes=$SLURM_NNODES --ntasks=$SLURM_NNODES --ntasks-per-node=1 --overlap \
  Rscript -e 'shard::shard_node_hold(readRDS(file.path(Sys.getenv("SHARE_DIR"), "s.rds")))' &
holders=$!

# 4. The work: every task fetches its node's copy (waiting up to a minute for the holder).
srun --ntasks-per-node=2 --overlap Rscript "$WORK"

# 5. Release every node's copy; the holders return.
Rscript -e 'library(shard); close(readRDS(file.path(Sys.getenv("SHARE_DIR"), "s.rds")))'
wait "$holders"
rm -rf "$SHARE_DIR"
echo JOB-DONE
