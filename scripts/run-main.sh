#!/usr/bin/env bash
# The main job: set up, build and install the R package, then run the spec's
# example verbatim and a larger run (a 2 GiB matrix read by 4 workers).
# Usage: bash scripts/run-main.sh     (SHARD_DEMO_GB=0.25 for a smaller large run)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh
R CMD INSTALL --no-test-load r-ext >/tmp/shard-install.log 2>&1 || { cat /tmp/shard-install.log; exit 1; }
echo "== spec example =="
Rscript r-ext/inst/examples/spec-example.R
if [ -f r-ext/inst/examples/large-run.R ]; then
  echo "== large run =="
  Rscript r-ext/inst/examples/large-run.R
fi
