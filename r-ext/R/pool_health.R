# pool_health_check() and the objects that describe workers: one worker
# (`pool$workers[[i]]`, class shard_worker) and a health report (class
# shard_health_report). The checks themselves are pool_supervise() in
# pool_worker.R, the same ones the scheduler runs between tasks.

#' @export
pool_health_check <- function(pool = NULL, busy_workers = NULL) {
  if (is.null(pool)) {
    pool <- .pool_state$current
    if (is.null(pool) || !identical(pool$master_pid, Sys.getpid()))
      stop("shard: there is no worker pool: call pool_create() first, or pass `pool =`", call. = FALSE)
  }
  check_pool_object(pool)
  if (isTRUE(pool$stopped)) stop("shard: this pool has been stopped; create one with pool_create()", call. = FALSE)
  if (!identical(pool$master_pid, Sys.getpid()))
    stop(sprintf("shard: this pool belongs to process %d, not to this one (%d)", pool$master_pid,
                 Sys.getpid()), call. = FALSE)
  busy <- rep(FALSE, pool$n)
  if (!is.null(busy_workers)) {
    if (!is.numeric(busy_workers) || anyNA(busy_workers) || any(busy_workers != round(busy_workers)) ||
        any(busy_workers < 1 | busy_workers > pool$n))
      stop(sprintf("shard: `busy_workers` must be NULL or worker ids from 1 to %d", pool$n), call. = FALSE)
    busy[as.integer(busy_workers)] <- TRUE
  }
  actions <- vector("list", pool$n)
  for (i in seq_len(pool$n)) {
    # A busy worker's socket is readable while its answer waits: only an idle
    # one's readable socket means the worker is gone.
    if (pool_worker_gone(pool, i, idle = !busy[i])) {
      old_pid <- pool$pids[i]
      pool_replace_worker(pool, i)
      a <- pool_action(pool, i, "restart", "worker_dead", NA_real_)
      a$old_pid <- old_pid
      actions[[i]] <- a
    } else {
      actions[[i]] <- pool_supervise(pool, i, busy = busy[i])
    }
  }
  structure(list(timestamp = Sys.time(), pool_stats = pool$stats, worker_actions = actions),
            class = "shard_health_report")
}

#' @export
print.shard_health_report <- function(x, ...) {
  s <- x$pool_stats
  cat(sprintf("<shard_health_report> %s: %d worker%s\n", format(x$timestamp, "%Y-%m-%d %H:%M:%S"),
              length(x$worker_actions), if (length(x$worker_actions) == 1L) "" else "s"))
  cat(sprintf("  recycles: %d; deaths: %d; retries: %d; tasks: %d\n", s$total_recycles, s$total_deaths,
              s$total_retries, s$total_tasks))
  acts <- vapply(x$worker_actions, `[[`, "", "action")
  if (all(acts == "none")) {
    cat("  all workers healthy\n")
  } else {
    for (a in x$worker_actions) if (a$action != "none")
      cat(sprintf("  worker %d: %s (%s)\n", a$worker_id, a$action, a$reason))
  }
  invisible(x)
}

# One worker slot as a shard_worker object (a snapshot: the pool's state at
# the time it is taken).
pool_worker_info <- function(pool, i) {
  structure(list(id = i, pid = pool$pids[i], type = pool$type,
                 alive = !isTRUE(pool$stopped) && !pool$dead[i] && proc_alive(pool$pids[i]),
                 rss_baseline = pool$rss_baseline[i], rss_bytes = worker_rss(pool$pids[i]),
                 recycle_count = pool$recycle_count[i], death_count = pool$deaths[i],
                 tasks = pool$tasks[i], needs_recycle = pool$needs_recycle[i],
                 spawned_at = pool$spawned_time[i], last_heartbeat = .POSIXct(pool$last_seen[i])),
            class = "shard_worker")
}

#' @export
print.shard_worker <- function(x, ...) {
  fb <- function(b) if (is.na(b)) "NA" else format_bytes(b)
  cat(sprintf("<shard_worker> %d: pid %s, %s\n", x$id, x$pid, if (isTRUE(x$alive)) "alive" else "dead"))
  cat(sprintf("  private RSS: %s (baseline %s); recycles: %d; deaths: %d; tasks: %d\n", fb(x$rss_bytes),
              fb(x$rss_baseline), x$recycle_count, x$death_count, x$tasks))
  cat(sprintf("  spawned: %s; last heartbeat: %s\n", format(x$spawned_at, "%Y-%m-%d %H:%M:%S"),
              format(x$last_heartbeat, "%Y-%m-%d %H:%M:%S")))
  invisible(x)
}
