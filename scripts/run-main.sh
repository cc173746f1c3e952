#!/usr/bin/env bash
# The main job: set up, build and install the R package, then run the spec's
# example verbatim (r-ext/inst/examples/spec-example.R) and a larger run (a 2 GiB
# matrix shared to 4 workers that each compute row sums over their part, with the
# workers' time and memory against parallel's clusterExport).
# Usage: bash scripts/run-main.sh     (SHARD_DEMO_GB=0.25 for a smaller large run;
#        SHARD_DEMO_HUGE=0 for 4 KiB pages; SHARD_DEMO_BASELINE=no to skip the baseline)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh
# Into R's first library (R_LIBS=/your/lib keeps it out of the system one); the
# log in a file of its own (several users may run this on one machine).
install_log=$(mktemp "${TMPDIR:-/tmp}/shard-install.XXXXXX")
R CMD INSTALL --no-test-load r-ext >"$install_log" 2>&1 || { cat "$install_log"; exit 1; }
rm -f "$install_log"
echo "== spec example (r-ext/inst/examples/spec-example.R, the reference's example as written) =="
# The example itself has no library() call: attach the package, then run it
# line by line as written, then check what it computed.
Rscript -e '
  library(shard)
  source("r-ext/inst/examples/spec-example.R", echo = TRUE, max.deparse.length = Inf, keep.source = TRUE)
  cat("\n-- checks --\n")
  stopifnot(isTRUE(all.equal(unlist(result), rowSums(mat)[1:10])))
  cat("pool_lapply() results equal rowSums(mat)[1:10]: TRUE\n")
  print(pool_status()[, c("worker", "pid", "alive", "rss", "pss", "tasks", "bytes_sent")], row.names = FALSE)
  lr <- attr(pool_status(), "last_run")
  cat(sprintf("bytes sent: job (FUN + the shared_mat handle) %d B per worker, %.0f B per task\n",
              lr$job_bytes, lr$task_bytes_median))
  cat(sprintf("deep share: %d shared segment(s) for a and b; identical(fetch(shared_lst), lst): %s\n",
              length(shared_lst$segments), identical(fetch(shared_lst), lst)))
  pool_stop()
  close(shared_lst)
'
if [ -f r-ext/inst/examples/large-run.R ]; then
  echo "== large run (r-ext/inst/examples/large-run.R) =="
  Rscript -e 'library(shard); source("r-ext/inst/examples/large-run.R")'
fi
echo "== shard_map() with an output buffer (the parallel runtime) =="
# A 64 MiB matrix shared once; 2 workers read their columns zero-copy and write
# each column's mean and sd into a shared buffer; a few hundred bytes per shard
# come back to the master.
Rscript -e '
  library(shard)
  options(shard.progress = FALSE)
  set.seed(1)
  X <- share(matrix(rnorm(2^23), ncol = 256))
  out <- buffer("double", dim = c(2, 256))
  res <- shard_map(shards(256, workers = 2), function(s, X, out) {
    for (j in s$idx) {
      v <- shared_view(X, (j - 1) * nrow(X) + 1, nrow(X))   # zero-copy column
      # mean() and sd() read the view in place (sd() asks R for a writable
      # data pointer; a view answers without copying): copy_report() shows 0.
      out[, j] <- c(mean(v), sd(v))
    }
    NULL
  }, borrow = list(X = X), out = list(out = out), workers = 2)
  print(res)
  stats <- as.matrix(out)
  Xm <- fetch(X)
  stopifnot(succeeded(res), isTRUE(all.equal(stats[1, ], colMeans(Xm))), isTRUE(all.equal(stats[2, ], apply(Xm, 2, sd))))
  cat("column means and sds written by the workers equal colMeans/sd on the master: TRUE\n")
  cr <- copy_report(res)
  print(cr)
  stopifnot(cr$copies == 0)
  cat("copies of the shared matrix made by the workers: 0\n")
  print(task_report(res))
  pool_stop()
  buffer_close(out)
  close(X)
'
