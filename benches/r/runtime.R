# Benchmark of the parallel runtime (issue 15): per-column statistics of a
# large shared matrix on 2 workers,
#   shard     share() once, shard_map() over column blocks, each worker reads
#             its columns as zero-copy views and writes (mean, sd, min, max)
#             of each column into a shared buffer(); nothing but O(shards)
#             bytes come back;
#   parLapply parallel::parLapply over column blocks after clusterExport() of
#             the matrix, returning the columns' statistics (gathered);
#   foreach   foreach/doParallel over the same blocks (the matrix exported by
#             doParallel), results combined with cbind;
# same data, same workers count, repeats interleaved. For each: wall time
# (sharing/exporting included), peak total PSS of master + workers (sampled
# every 20 ms by a separate process), bytes sent back to the master. Then the
# per-task overhead for 10 000 tiny shards: shard_map(chunk_size = 1) against
# parLapply(chunk.size = 1) (one message per element each) and parLapply's
# default (one chunk per worker), as a ratio.
#
# Usage: Rscript benches/r/runtime.R          (RUNTIME_SIZE=2G, default 512M;
#        RUNTIME_WORKERS=2; RUNTIME_REPEATS=3; RUNTIME_TINY=10000;
#        RUNTIME_PARTS=stats,tiny: the statistics job and/or the tiny shards)
# Huge pages are turned off (options(shard.huge_pages = FALSE)) so that PSS
# counts every page (smaps_rollup leaves hugetlb pages out).

source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), "common.R"))
suppressPackageStartupMessages({ library(foreach); library(doParallel) })
options(shard.huge_pages = FALSE, shard.progress = FALSE)

size <- env_num("RUNTIME_SIZE", 512 * 2^20)
workers <- as.integer(env_num("RUNTIME_WORKERS", 2))
repeats <- as.integer(env_num("RUNTIME_REPEATS", 3))
tiny <- as.integer(env_num("RUNTIME_TINY", 10000))
parts <- strsplit(Sys.getenv("RUNTIME_PARTS", "stats,tiny"), ",")[[1]]   # which parts to run
ncol_x <- 1024L
nrow_x <- as.integer(size / 8 / ncol_x)
cat(sprintf("machine: %s\n", machine_line()))
cat(sprintf("matrix: %d x %d doubles (%s), %d workers, %d repeats\n", nrow_x, ncol_x, fmt_bytes(nrow_x * ncol_x * 8),
            workers, repeats))

if ("stats" %in% parts) {
set.seed(1)
X <- matrix(rnorm(nrow_x * ncol_x), nrow_x, ncol_x)
blocks <- split(seq_len(ncol_x), cut(seq_len(ncol_x), workers * 4, labels = FALSE))
col_stats <- function(v) c(mean(v), sd(v), min(v), max(v))
ref <- vapply(seq_len(ncol_x), function(j) col_stats(X[, j]), numeric(4))

}

# --- peak PSS sampler: a shell loop summing Pss of the listed pids ---------
sampler_start <- function(pids) {
  dir <- tempfile("pss")
  dir.create(dir)
  writeLines(as.character(pids), file.path(dir, "pids"))
  script <- sprintf('max=0; while [ -d %1$s ] && [ ! -e %1$s/stop ]; do t=0; for p in $(cat %1$s/pids); do v=$(awk \'/^Pss:/ {print $2}\' /proc/$p/smaps_rollup 2>/dev/null); t=$((t + ${v:-0})); done; [ $t -gt $max ] && max=$t; echo $max > %1$s/max; sleep 0.02; done',
                    dir)
  system2("bash", c("-c", shQuote(script)), wait = FALSE, stdout = FALSE, stderr = FALSE)
  Sys.sleep(0.1)
  dir
}
sampler_stop <- function(dir) {
  file.create(file.path(dir, "stop"))
  Sys.sleep(0.1)
  v <- as.numeric(readLines(file.path(dir, "max"))) * 1024
  unlink(dir, recursive = TRUE)
  v
}

# --- the three methods ---------------------------------------------------------
run_shard <- function() {
  pids <- c(Sys.getpid(), pool_status()$pid)
  dir <- sampler_start(pids)
  t0 <- now()
  Xs <- share(X)
  out <- buffer("double", dim = c(4, ncol_x))
  res <- shard_map(shards(ncol_x, block_size = ceiling(ncol_x / (workers * 4))), function(s, X, out) {
    nr <- nrow(X)
    for (j in s$idx) {
      v <- shared_view(X, (j - 1) * nr + 1, nr)   # zero-copy column
      out[, j] <- c(mean(v), sd(v), min(v), max(v))
    }
    NULL
  }, borrow = list(X = Xs), out = list(out = out), workers = workers)
  stats <- as.matrix(out)
  elapsed <- now() - t0
  peak <- sampler_stop(dir)
  stopifnot(succeeded(res), isTRUE(all.equal(stats, ref)))
  back <- res$diagnostics$bytes$results
  close(Xs); buffer_close(out)
  list(time = elapsed, pss = peak, back = back)
}

run_parlapply <- function(cl) {
  pids <- c(Sys.getpid(), unlist(clusterCall(cl, Sys.getpid)))
  dir <- sampler_start(pids)
  t0 <- now()
  clusterExport(cl, "X", envir = globalenv())
  r <- parLapply(cl, blocks, function(j) vapply(j, function(k) { v <- X[, k]; c(mean(v), sd(v), min(v), max(v)) },
                                               numeric(4)))
  stats <- do.call(cbind, r)
  elapsed <- now() - t0
  peak <- sampler_stop(dir)
  stopifnot(isTRUE(all.equal(stats, ref)))
  clusterEvalQ(cl, { rm(X); gc() })
  list(time = elapsed, pss = peak, back = as.numeric(length(serialize(r, NULL))))
}

run_foreach <- function(cl) {
  pids <- c(Sys.getpid(), unlist(clusterCall(cl, Sys.getpid)))
  dir <- sampler_start(pids)
  t0 <- now()
  stats <- foreach(j = blocks, .combine = cbind, .export = "X") %dopar% {
    vapply(j, function(k) { v <- X[, k]; c(mean(v), sd(v), min(v), max(v)) }, numeric(4))
  }
  elapsed <- now() - t0
  peak <- sampler_stop(dir)
  stopifnot(isTRUE(all.equal(unname(stats), ref)))
  clusterEvalQ(cl, gc())
  list(time = elapsed, pss = peak, back = as.numeric(length(serialize(stats, NULL))))
}

base_pss <- function(pids) sum(vapply(pids, function(p) proc_stat(p)[["pss"]], 0))

pool_create(workers)
cl <- makePSOCKcluster(workers)
registerDoParallel(cl)
invisible(clusterCall(cl, function() NULL))
if ("stats" %in% parts) {
cat(sprintf("idle PSS: shard master + pool %s, parallel cluster workers %s\n",
            fmt_bytes(base_pss(c(Sys.getpid(), pool_status()$pid))),
            fmt_bytes(base_pss(unlist(clusterCall(cl, Sys.getpid))))))
rows <- list()
for (r in seq_len(repeats)) {
  gc()
  rows[[length(rows) + 1L]] <- c(method = "shard_map + buffer", run_shard())
  gc()
  rows[[length(rows) + 1L]] <- c(method = "parLapply (gather)", run_parlapply(cl))
  gc()
  rows[[length(rows) + 1L]] <- c(method = "foreach/doParallel", run_foreach(cl))
}
tab <- do.call(rbind, lapply(rows, as.data.frame))
agg <- do.call(rbind, lapply(split(tab, tab$method), function(d)
  data.frame(method = d$method[1], time = median(d$time), pss = median(d$pss), back = median(d$back))))
agg <- agg[order(match(agg$method, c("shard_map + buffer", "parLapply (gather)", "foreach/doParallel"))), ]
shard_row <- agg[agg$method == "shard_map + buffer", ]
cat(sprintf("\nper-column statistics of %s (median of %d, same run):\n", fmt_bytes(nrow_x * ncol_x * 8), repeats))
cat("| method | time | peak total PSS | bytes back to master | time vs shard | PSS vs shard |\n|---|---|---|---|---|---|\n")
for (i in seq_len(nrow(agg))) cat(sprintf("| %s | %s | %s | %s | %.2fx | %.2fx |\n", agg$method[i], fmt_time(agg$time[i]),
                                          fmt_bytes(agg$pss[i]), fmt_bytes(agg$back[i]),
                                          agg$time[i] / shard_row$time, agg$pss[i] / shard_row$pss))
cat(sprintf("(data %s; stats output %s)\n", fmt_bytes(nrow_x * ncol_x * 8), fmt_bytes(4 * ncol_x * 8)))

}

# --- per-task overhead: tiny shards ----------------------------------------------
if (exists("X")) rm(X)
invisible(gc())
if ("tiny" %in% parts) {
tt <- list()
# the five cases, run in a rotated order in each repeat (the first of a repeat
# is not always the same one: on a shared machine, position matters)
cases <- list(
  shard = function() {
    res <- shard_map(shards(tiny, block_size = 1), function(s) s$id, workers = workers, diagnostics = FALSE)
    stopifnot(succeeded(res))
  },
  shard100 = function() shard_map(shards(tiny, block_size = 1), function(s) s$id, workers = workers,
                                  diagnostics = FALSE, chunk_size = 100),
  pool = function() pool_lapply(seq_len(tiny), function(i) i),
  par1 = function() parLapply(cl, seq_len(tiny), function(i) i, chunk.size = 1),
  par = function() parLapply(cl, seq_len(tiny), function(i) i))
for (r in seq_len(repeats)) {
  for (k in (seq_along(cases) + r - 2L) %% length(cases) + 1L) {
    t0 <- now()
    cases[[k]]()
    tt[[names(cases)[k]]] <- c(tt[[names(cases)[k]]], now() - t0)
  }
}
m <- vapply(tt, median, 0)
cat(sprintf("\n%d tiny shards (median of %d, same run):\n", tiny, repeats))
cat("| method | total | per task | ratio to shard_map |\n|---|---|---|---|\n")
cat(sprintf("| shard_map(chunk_size = 1) | %s | %s | 1 |\n", fmt_time(m[["shard"]]), fmt_time(m[["shard"]] / tiny)))
cat(sprintf("| shard_map(chunk_size = 100) | %s | %s | %.2f |\n", fmt_time(m[["shard100"]]),
            fmt_time(m[["shard100"]] / tiny), m[["shard100"]] / m[["shard"]]))
cat(sprintf("| pool_lapply (the same scheduler) | %s | %s | %.2f |\n", fmt_time(m[["pool"]]),
            fmt_time(m[["pool"]] / tiny), m[["pool"]] / m[["shard"]]))
cat(sprintf("| parLapply(chunk.size = 1) | %s | %s | %.2f |\n", fmt_time(m[["par1"]]), fmt_time(m[["par1"]] / tiny),
            m[["par1"]] / m[["shard"]]))
cat(sprintf("| parLapply (default: one chunk per worker) | %s | %s | %.2f |\n", fmt_time(m[["par"]]),
            fmt_time(m[["par"]] / tiny), m[["par"]] / m[["shard"]]))
cat(sprintf("shard_map(chunk_size = 1) / parLapply(chunk.size = 1): %.2f (medians); per repeat %s\n",
            m[["shard"]] / m[["par1"]], paste(sprintf("%.2f", tt$shard / tt$par1), collapse = ", ")))
cat(sprintf("pool_lapply / parLapply(chunk.size = 1): %.2f (medians); per repeat %s\n",
            m[["pool"]] / m[["par1"]], paste(sprintf("%.2f", tt$pool / tt$par1), collapse = ", ")))
cat(sprintf("load average at the end: %s\n", paste(strsplit(readLines("/proc/loadavg"), " ")[[1]][1:3], collapse = " ")))
}
stopCluster(cl)
pool_stop()
