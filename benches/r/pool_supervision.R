# Per-task cost of the pool's scheduler and of worker supervision, against
# parallel::parLapplyLB(chunk.size = 1); same run, interleaved repeats, medians.
#
#   Rscript benches/r/pool_supervision.R
#   SHARD_BENCH_REPS=9 SHARD_BENCH_N=2000 Rscript benches/r/pool_supervision.R
#   R_LIBS=<library with another build of shard> SHARD_BENCH_LABEL=old Rscript benches/r/pool_supervision.R
#
# Cases (2 workers, SHARD_BENCH_N tiny elements, chunk_size 1: one task each):
#   pool_supervised   pool_create(2) defaults: each worker's private RSS is read
#                     after each answer (rss_limit "2GB", drift 0.5)
#   pool_unsupervised pool_create(2, rss_limit = Inf, rss_drift_threshold = Inf)
#                     (only with a build that has supervision)
#   parLapplyLB       parallel's load-balanced apply, one element per task
# The last part runs a task that leaks ~48 MB per call on purpose and reports
# how many recycles kept the workers' memory bounded.
suppressPackageStartupMessages({ library(shard); library(parallel) })

env_num <- function(name, default) { v <- Sys.getenv(name, ""); if (nzchar(v)) as.numeric(v) else default }
reps <- env_num("SHARD_BENCH_REPS", 7)
m <- env_num("SHARD_BENCH_N", 2000)
label <- Sys.getenv("SHARD_BENCH_LABEL", "this build")
now <- function() proc.time()[["elapsed"]]
tm <- function(expr) { t0 <- now(); force(expr); now() - t0 }
has_sup <- "rss_limit" %in% names(formals(pool_create))

f <- function(i) i + 1
p <- pool_create(2, set_default = FALSE)
p_off <- if (has_sup) pool_create(2, rss_limit = Inf, rss_drift_threshold = Inf, set_default = FALSE)
cl <- makePSOCKcluster(2)
invisible(pool_lapply(1:100, f, pool = p)); invisible(parLapplyLB(cl, 1:100, f))
if (has_sup) invisible(pool_lapply(1:100, f, pool = p_off))
res <- NULL
for (r in seq_len(reps)) {
  a <- tm(pool_lapply(1:m, f, pool = p))
  b <- if (has_sup) tm(pool_lapply(1:m, f, pool = p_off)) else NA_real_
  d <- tm(parLapplyLB(cl, 1:m, f, chunk.size = 1))
  res <- rbind(res, c(pool_supervised = a, pool_unsupervised = b, parLapplyLB = d))
}
stopCluster(cl)
med <- apply(res, 2, stats::median)
cat(sprintf("\n[%s] per-task cost, %d tiny elements on 2 workers, chunk_size 1 (medians of %d interleaved repeats; loadavg %s)\n",
            label, m, nrow(res), paste(readLines("/proc/loadavg"), collapse = "")))
print(data.frame(method = names(med), seconds = sprintf("%.3f", med), us_per_element = sprintf("%.0f", med / m * 1e6),
                 vs_parLapplyLB = sprintf("%.2f", med / med[["parLapplyLB"]])), row.names = FALSE)
cat(sprintf("[%s] same-run ratios (median of per-repeat ratios): pool/parLapplyLB %.2f%s\n", label,
            stats::median(res[, "pool_supervised"] / res[, "parLapplyLB"]),
            if (has_sup) sprintf(", supervised/unsupervised %.2f",
                                 stats::median(res[, "pool_supervised"] / res[, "pool_unsupervised"])) else ""))

if (has_sup) {
  pool_stop(p_off)
  pool_stop(p)
  # a leaking task: each call keeps ~48 MB in the worker's global environment
  leaky <- function(i) {
    prev <- get0(".leak", envir = globalenv(), ifnotfound = list())
    assign(".leak", c(prev, list(runif(6e6))), envir = globalenv())
    length(get(".leak", envir = globalenv()))
  }
  p <- pool_create(2, min_recycle_interval = 0, set_default = FALSE)
  t <- tm(held <- pool_sapply(1:20, leaky, pool = p))
  st <- pool_status(p)
  cat(sprintf("[%s] leaking task x20 on 2 workers (48 MB kept per call): %.2f s, recycles %d, most leaks held by one worker %d (20 without recycling: ~%.0f MB)\n",
              label, t, sum(st$recycle_count), max(held), 48 * 10))
  pool_stop(p)
} else {
  pool_stop(p)
}
