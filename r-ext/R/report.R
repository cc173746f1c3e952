# Runtime reports: report(), mem_report(), copy_report(), cow_report(),
# task_report(), recommendations(). Each returns a list of class
# c("shard_runtime_report", "shard_report") with a `type` field; the reports
# read the telemetry a shard_map() result carries (runtime_diagnostics() in
# shard_map.R) and the pool's state. segment_report() and print.shard_report
# belong to the segment code (the compat work); report(level = "segments")
# calls segment_report() when the package has it. print.shard_runtime_report
# prints the runtime's types.

new_report <- function(type, ...) {
  structure(c(list(type = type, timestamp = Sys.time()), list(...)), class = c("shard_runtime_report", "shard_report"))
}

check_result <- function(result, fn, required = FALSE) {
  if (is.null(result)) {
    if (required) stop(sprintf("shard: %s() needs the result of shard_map()", fn), call. = FALSE)
    return(NULL)
  }
  if (!inherits(result, c("shard_result", "shard_reduce_result", "shard_dispatch_result")))
    stop(sprintf("shard: `result` of %s() must come from shard_map(), shard_reduce() or dispatch_chunks() (got %s)",
                 fn, class(result)[1]), call. = FALSE)
  result
}

#' @export
mem_report <- function(pool = NULL) {
  if (is.null(pool)) pool <- pool_get() else check_pool_object(pool)
  if (is.null(pool) || isTRUE(pool$stopped))
    return(new_report("memory", pool_active = FALSE, n_workers = 0L, rss_limit = NA_real_, total_rss = 0,
                      peak_rss = NA_real_, mean_rss = NA_real_, workers = list(), master_rss = rss_self()))
  st <- pool_status(pool)
  workers <- lapply(seq_len(nrow(st)), function(i)
    list(worker_id = st$worker[i], pid = st$pid[i], alive = st$alive[i], rss = st$rss[i], pss = st$pss[i],
         private_rss = st$rss_bytes[i], rss_baseline = st$rss_baseline[i], recycles = st$recycle_count[i]))
  rss <- st$rss[!is.na(st$rss)]
  new_report("memory", pool_active = TRUE, n_workers = pool$n, rss_limit = pool$rss_limit_bytes,
             total_rss = sum(rss), peak_rss = if (length(rss)) max(rss) else NA_real_,
             mean_rss = if (length(rss)) mean(rss) else NA_real_, total_pss = sum(st$pss, na.rm = TRUE),
             workers = workers, master_rss = rss_self())
}

#' @export
copy_report <- function(result = NULL) {
  result <- check_result(result, "copy_report")
  d <- result$diagnostics
  if (is.null(d)) {
    b <- buffer_diagnostics()
    return(new_report("copy", borrow_exports = 0L, borrow_bytes = 0, result_imports = 0L, result_bytes = 0,
                      buffer_writes = b$writes, buffer_bytes = b$bytes, view_materialized_bytes = view_diagnostics()$materialized_bytes,
                      copies = 0, copy_bytes = 0, job_bytes = 0, task_bytes = 0))
  }
  new_report("copy", borrow_exports = d$borrow$exports, borrow_bytes = d$borrow$bytes,
             result_imports = d$chunks, result_bytes = d$bytes$results,
             buffer_writes = d$buffer$writes, buffer_bytes = d$buffer$bytes,
             view_materialized = d$views$materialized, view_zero_copy = d$views$zero_copy,
             view_materialized_bytes = d$views$materialized_bytes, view_packed_bytes = d$views$packed_bytes,
             copies = d$cow$copies_triggered, copy_bytes = d$cow$copy_bytes,
             job_bytes = d$bytes$job_sent, task_bytes = d$bytes$tasks_sent)
}

#' @export
cow_report <- function(result = NULL) {
  result <- check_result(result, "cow_report")
  d <- result$diagnostics
  if (is.null(d)) return(new_report("cow", policy = getOption("shard.cow", "allow"), violations = 0L,
                                    copies_triggered = 0, copy_bytes = 0))
  new_report("cow", policy = d$cow$policy, violations = d$cow$violations, copies_triggered = d$cow$copies_triggered,
             copy_bytes = d$cow$copy_bytes)
}

#' @export
task_report <- function(result = NULL) {
  result <- check_result(result, "task_report")
  d <- result$diagnostics
  if (is.null(d)) return(new_report("task", shards_total = 0L, shards_processed = 0L, shards_failed = 0L,
                                    chunks_dispatched = 0L, total_retries = 0L, duration = 0, throughput = NA_real_,
                                    queue_status = NULL))
  t <- d$tasks$time
  new_report("task", shards_total = d$shards_total, shards_processed = d$shards_processed,
             shards_failed = d$shards_failed, chunks_dispatched = d$chunks_dispatched,
             total_retries = d$total_retries, error_retries = d$error_retries, death_retries = d$death_retries,
             timeouts = d$timeouts, recycles = d$recycles, duration = d$duration,
             throughput = if (d$duration > 0) d$shards_processed / d$duration else NA_real_,
             time_per_task = if (length(t) && any(!is.na(t))) stats::median(t, na.rm = TRUE) else NA_real_,
             time_per_task_max = if (length(t) && any(!is.na(t))) max(t, na.rm = TRUE) else NA_real_,
             queue_status = result$queue_status, tasks = d$tasks)
}

#' @export
report <- function(level = c("summary", "workers", "tasks", "segments"), result = NULL) {
  level <- arg_choice(level, c("summary", "workers", "tasks", "segments"), "level")
  result <- check_result(result, "report")
  depth <- match(level, c("summary", "workers", "tasks", "segments"))
  p <- pool_get()
  mem <- mem_report(p)
  seg_fun <- get0("segment_report", envir = asNamespace("shard"), mode = "function")
  r <- new_report("summary", level = level,
                  pool = if (!is.null(p)) list(n_workers = p$n, type = p$type, stats = p$stats,
                                               rss_limit = p$rss_limit_bytes) else NULL,
                  memory = list(total_rss = mem$total_rss, peak_rss = mem$peak_rss, master_rss = mem$master_rss),
                  workers = if (depth >= 2) {
                    if (!is.null(result)) result$diagnostics$workers else mem$workers
                  } else NULL,
                  tasks = if (depth >= 3 && !is.null(result)) task_report(result) else NULL,
                  segments = if (depth >= 4 && !is.null(seg_fun)) seg_fun() else NULL,
                  result_diagnostics = if (!is.null(result)) result$diagnostics else NULL)
  r
}

#' @export
recommendations <- function(result) {
  result <- check_result(result, "recommendations", required = TRUE)
  d <- result$diagnostics
  out <- character()
  if (d$shards_total > 0 && d$chunks == d$shards_total && d$shards_total >= 1000 &&
      stats::median(d$tasks$time, na.rm = TRUE) < 0.005)
    out <- c(out, sprintf("Shards are tiny (median %.2g ms of work each): raise chunk_size (e.g. %d) to cut per-shard dispatch overhead.",
                          1000 * stats::median(d$tasks$time, na.rm = TRUE), as.integer(max(2, ceiling(d$shards_total / 200)))))
  if (d$bytes$results > 64 * 1024^2)
    out <- c(out, sprintf("%s of results came back to the master: write them into a buffer() passed as out= instead of returning them.",
                          format_bytes(d$bytes$results)))
  if (d$views$packed_bytes > 0 || d$views$materialized_bytes > 64 * 1024^2)
    out <- c(out, sprintf("%s were copied materializing views: use column blocks (view_block with all rows) for zero-copy slices.",
                          format_bytes(d$views$materialized_bytes)))
  if (d$cow$copies_triggered > 0)
    out <- c(out, sprintf("Workers copied shared inputs %g time(s) (%s): avoid modifying borrowed inputs (cow = \"deny\" finds where).",
                          d$cow$copies_triggered, format_bytes(d$cow$copy_bytes)))
  if (d$recycles > 0)
    out <- c(out, sprintf("%d worker(s) were recycled for memory: raise mem_cap, or release memory inside fun.", d$recycles))
  if (d$total_retries > 0)
    out <- c(out, sprintf("%d retr%s: see result$failures and task_report() for the shards that failed.", d$total_retries,
                          if (d$total_retries == 1) "y" else "ies"))
  out
}

#' @export
print.shard_runtime_report <- function(x, ...) {
  cat("<shard_report> ", x$type, " report at ", format(x$timestamp, "%Y-%m-%d %H:%M:%S"), "\n", sep = "")
  fb <- function(b) if (is.null(b) || is.na(b)) "NA" else format_bytes(b)
  switch(x$type,
    memory = {
      if (!isTRUE(x$pool_active)) cat("  no active pool\n") else {
        cat(sprintf("  %d workers: total RSS %s, peak %s, mean %s (limit %s per worker)\n", x$n_workers, fb(x$total_rss),
                    fb(x$peak_rss), fb(x$mean_rss), if (is.finite(x$rss_limit)) fb(x$rss_limit) else "none"))
        for (w in x$workers) cat(sprintf("  worker %d (pid %d): RSS %s, PSS %s, private %s\n", w$worker_id, w$pid,
                                         fb(w$rss), fb(w$pss), fb(w$private_rss)))
      }
      cat(sprintf("  master RSS: %s\n", fb(x$master_rss)))
    },
    copy = {
      cat(sprintf("  borrowed: %d input(s), %s (shared: sent as handles)\n", as.integer(x$borrow_exports), fb(x$borrow_bytes)))
      cat(sprintf("  results back: %s in %d answer(s); job %s, tasks %s sent\n", fb(x$result_bytes),
                  as.integer(x$result_imports), fb(x$job_bytes), fb(x$task_bytes)))
      cat(sprintf("  buffer writes: %.0f (%s); views materialized: %s copied\n", x$buffer_writes, fb(x$buffer_bytes),
                  fb(x$view_materialized_bytes)))
      cat(sprintf("  copies of shared inputs: %g (%s)\n", x$copies, fb(x$copy_bytes)))
    },
    cow = cat(sprintf("  policy: %s; violations: %g; copies triggered: %g (%s)\n", x$policy, x$violations,
                      x$copies_triggered, fb(x$copy_bytes))),
    task = {
      cat(sprintf("  shards: %d total, %d processed, %d failed; chunks dispatched: %d; retries: %d\n",
                  as.integer(x$shards_total), as.integer(x$shards_processed), as.integer(x$shards_failed),
                  as.integer(x$chunks_dispatched), as.integer(x$total_retries)))
      cat(sprintf("  duration: %.3g s; throughput: %.3g shards/s", x$duration, x$throughput))
      if (!is.null(x$time_per_task) && !is.na(x$time_per_task))
        cat(sprintf("; time per task: median %.3g s, max %.3g s", x$time_per_task, x$time_per_task_max))
      cat("\n")
    },
    summary = {
      if (is.null(x$pool)) cat("  no active pool\n") else
        cat(sprintf("  pool: %d %s workers; recycles %d, deaths %d, retries %d, tasks %d\n", x$pool$n_workers,
                    x$pool$type, x$pool$stats$total_recycles, x$pool$stats$total_deaths, x$pool$stats$total_retries,
                    x$pool$stats$total_tasks))
      cat(sprintf("  memory: workers %s RSS in all (peak %s), master %s\n", fb(x$memory$total_rss),
                  fb(x$memory$peak_rss), fb(x$memory$master_rss)))
      if (!is.null(d <- x$result_diagnostics)) {
        cat(sprintf("  last result: %d shards, %d failed, %.3g s; retries %d; recycles %d; results back %s; buffer writes %s\n",
                    as.integer(d$shards_total), as.integer(d$shards_failed), d$duration, as.integer(d$total_retries),
                    as.integer(d$recycles), fb(d$bytes$results), fb(d$buffer$bytes)))
        w <- d$workers
        if (!is.null(w) && nrow(w)) for (i in seq_len(nrow(w)))
          cat(sprintf("    worker %d (pid %d): %d tasks, %.3g s busy, peak RSS %s, end RSS %s\n", w$worker[i], w$pid[i],
                      w$tasks[i], w$busy_time[i], fb(w$peak_rss[i]), fb(w$end_rss[i])))
      }
      if (!is.null(x$tasks)) print(x$tasks)
      if (!is.null(x$segments)) print(x$segments)
    })
  invisible(x)
}
