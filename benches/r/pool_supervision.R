# Per-task cost of the pool's scheduler and of worker supervision, against
# parallel::parLapplyLB(chunk.size = 1); same run, interleaved repeats, medians.
#
#   Rscript benches/r/pool_supervision.R
#   SHARD_BENCH_REPS=9 SHARD_BENCH_N=2000 Rscript benches/r/pool_supervision.R
#   git show d1110aa:r-ext/R/pool.R > /tmp/old_pool.R
#   SHARD_BENCH_OLD_POOL_R=/tmp/old_pool.R Rscript benches/r/pool_supervision.R
#       (also runs the pool code before the issue-13 split, sourced into an
#        environment inside the shard namespace: same process, interleaved)
#
# Cases (2 workers, SHARD_BENCH_N tiny elements, chunk_size 1: one task each):
#   pool_supervised   pool_create(2) defaults: each worker's private RSS is read
#                     after each answer (rss_limit "2GB", drift 0.5)
#   pool_unsupervised pool_create(2, rss_limit = Inf, rss_drift_threshold = Inf)
#                     (only with a build that has supervision)
#   pool_old          the old pool_lapply() (if SHARD_BENCH_OLD_POOL_R is set)
#   parLapplyLB       parallel's load-balanced apply, one element per task
# SHARD_BENCH_PART=toggle runs only the on/off toggle on one pool (after
# SHARD_BENCH_CHURN pools started and stopped first, default 0).
# The last part runs a task that leaks ~48 MB per call on purpose and reports
# how many recycles kept the workers' memory bounded.
suppressPackageStartupMessages({ library(shard); library(parallel) })
set.seed(1)

env_num <- function(name, default) { v <- Sys.getenv(name, ""); if (nzchar(v)) as.numeric(v) else default }
reps <- env_num("SHARD_BENCH_REPS", 7)
m <- env_num("SHARD_BENCH_N", 2000)
label <- Sys.getenv("SHARD_BENCH_LABEL", "this build")
now <- function() proc.time()[["elapsed"]]
# elapsed seconds; the master's CPU seconds (user + system) go to cpu_log, a
# figure much less disturbed by other load on the machine than elapsed time
cpu_log <- list()
tm <- function(expr, key = NULL) {
  t0 <- proc.time(); force(expr); d <- proc.time() - t0
  if (!is.null(key)) cpu_log[[key]] <<- c(cpu_log[[key]], d[["user.self"]] + d[["sys.self"]])
  d[["elapsed"]]
}
has_sup <- "rss_limit" %in% names(formals(pool_create))
part <- Sys.getenv("SHARD_BENCH_PART", "all")

f <- function(i) i + 1
if (part == "all") {
old_src <- Sys.getenv("SHARD_BENCH_OLD_POOL_R", "")
old <- NULL
if (nzchar(old_src)) {
  old <- new.env(parent = asNamespace("shard"))
  sys.source(old_src, envir = old)
}
# Fresh workers for every repeat, started in a random order: on a loaded machine
# two identical pools can differ by 2x for as long as they live (where their
# workers land), so a pool kept for all repeats would bias its case.
start <- function(case) switch(case,
  pool_supervised = pool_create(2, set_default = FALSE),
  pool_unsupervised = if (has_sup) pool_create(2, rss_limit = Inf, rss_drift_threshold = Inf, set_default = FALSE),
  pool_old = if (!is.null(old)) old$pool_create(2, set_default = FALSE),
  parLapplyLB = makePSOCKcluster(2))
run <- function(case, h) switch(case,
  pool_supervised = , pool_unsupervised = pool_lapply(1:m, f, pool = h),
  pool_old = old$pool_lapply(1:m, f, pool = h),
  parLapplyLB = parLapplyLB(h, 1:m, f, chunk.size = 1))
stop_h <- function(case, h) switch(case, pool_old = old$pool_stop(h), parLapplyLB = stopCluster(h), pool_stop(h))
cases <- c("pool_supervised", "pool_unsupervised", "pool_old", "parLapplyLB")
res <- NULL
for (r in seq_len(reps)) {
  hs <- list()
  for (case in sample(cases)) hs[case] <- list(start(case))
  row <- stats::setNames(rep(NA_real_, length(cases)), cases)
  for (case in sample(cases)) if (!is.null(hs[[case]])) {
    invisible(run(case, hs[[case]]))       # warm-up
    row[[case]] <- tm(run(case, hs[[case]]), case)
  }
  for (case in names(hs)) if (!is.null(hs[[case]])) stop_h(case, hs[[case]])
  res <- rbind(res, row)
}
med <- apply(res, 2, stats::median)
cat(sprintf("\n[%s] per-task cost, %d tiny elements on 2 workers, chunk_size 1 (medians of %d interleaved repeats; loadavg %s)\n",
            label, m, nrow(res), paste(readLines("/proc/loadavg"), collapse = "")))
cpu <- vapply(names(med), function(k) if (is.null(cpu_log[[k]])) NA_real_ else stats::median(cpu_log[[k]]), 0)
print(data.frame(method = names(med), seconds = sprintf("%.3f", med), us_per_element = sprintf("%.0f", med / m * 1e6),
                 vs_parLapplyLB = sprintf("%.2f", med / med[["parLapplyLB"]]),
                 master_cpu_us_per_element = sprintf("%.0f", cpu / m * 1e6)), row.names = FALSE)
cat(sprintf("[%s] same-run ratios (median of per-repeat ratios): pool/parLapplyLB %.2f%s%s\n", label,
            stats::median(res[, "pool_supervised"] / res[, "parLapplyLB"]),
            if (has_sup) sprintf(", supervised/unsupervised %.2f",
                                 stats::median(res[, "pool_supervised"] / res[, "pool_unsupervised"])) else "",
            if (!is.null(old)) sprintf(", unsupervised/old %.2f, supervised/old %.2f",
                                       stats::median(res[, "pool_unsupervised"] / res[, "pool_old"]),
                                       stats::median(res[, "pool_supervised"] / res[, "pool_old"])) else ""))

}

if (has_sup) {
  for (k in seq_len(env_num("SHARD_BENCH_CHURN", 0))) {
    q <- pool_create(2, set_default = FALSE); invisible(pool_lapply(1:200, f, pool = q)); pool_stop(q)
  }
  # The same two workers with supervision switched on and off between calls
  # (random order): the supervision's own cost, free of where workers landed.
  p <- pool_create(2, set_default = FALSE)
  invisible(pool_lapply(1:m, f, pool = p))
  tog <- list(on = NULL, off = NULL)
  for (r in seq_len(reps)) for (case in sample(c("on", "off"))) {
    p$rss_limit_bytes <- if (case == "on") 2 * 1024^3 else Inf
    p$rss_drift_threshold <- if (case == "on") 0.5 else Inf
    tog[[case]] <- c(tog[[case]], tm(pool_lapply(1:m, f, pool = p)))
  }
  pool_stop(p)
  cat(sprintf("[%s] one pool, supervision on / off between calls: %.3f s / %.3f s (medians of %d each; ratio %.2f)\n",
              label, stats::median(tog$on), stats::median(tog$off), reps, stats::median(tog$on) / stats::median(tog$off)))
}
if (has_sup && part == "all") {
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
}
