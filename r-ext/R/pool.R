# Worker pools: the pool object and its life (pool_create(), pool_stop()), the
# ambient pool, pool_status() and printing.
#
# The pool is split by concern:
#   pool.R            this file: the pool object, creating/stopping, pool_get(),
#                     pool_status(), printing
#   pool_health.R     pool_health_check(), the worker and health-report objects
#   pool_dispatch.R   pool_dispatch(): one expression on one worker
#   pool_utils.R      is_windows(), byte sizes ("2GB"), the default pool size
#   pool_worker.R     worker slots: start, set up (packages, init_expr), replace a
#                     dead worker, recycle one over its memory limits; /proc facts
#   pool_transport.R  the only code that knows parallel's node internals and messages
#   pool_job.R        what FUN needs on a worker (the job), and the worker-side task
#   pool_scheduler.R  runs the tasks of a call: queue, load balancing, retries
#   pool_errors.R     turns failed elements and lost workers into conditions
#   pool_lapply.R     pool_lapply() / pool_sapply(): the front end over the scheduler
#
# What the pool adds on top of parallel:
# - one ambient pool (used when `pool = NULL`), workers that attach shard and
#   see the caller's library paths;
# - dynamic load balancing over chunks of `chunk_size` elements;
# - the job (FUN, `...` and the globals FUN needs from the global environment)
#   is sent once per worker per call, then each task carries only its elements;
#   a shared object captured by FUN travels as its handle (a few hundred bytes);
#   bytes sent are counted, and a large message is warned about (once);
# - an error in FUN names the element and carries the worker's message; a worker
#   that dies is replaced and its task retried (once by default), then reported;
#   results are complete and in order, names kept;
# - supervised workers: memory against `rss_limit` and against each worker's
#   baseline (`rss_drift_threshold`), liveness while tasks run; a worker over
#   its limits is recycled between tasks; deaths, recycles and retries counted;
# - pool_status(): pid, liveness, RSS and PSS of each worker (smaps_rollup);
# - pool_stop() leaves no worker process or socket behind.

.pool_state <- new.env(parent = emptyenv())
.pool_state$current <- NULL        # the ambient pool
.pool_state$warned_large <- FALSE  # large task message warned about (once per session)
.pool_state$next_id <- 0L

# ---------------------------------------------------------------------------
# Creating and stopping

#' @export
pool_create <- function(n = .default_workers(), rss_limit = "2GB", rss_drift_threshold = 0.5,
                        heartbeat_interval = 5, min_recycle_interval = 1, init_expr = NULL,
                        packages = NULL, type = c("psock", "fork"), set_default = TRUE) {
  # Our earlier signature was pool_create(n, type, set_default): a type given
  # in second place still means the type.
  if (is.character(rss_limit) && length(rss_limit) == 1L && rss_limit %in% c("psock", "fork") && missing(type)) {
    type <- rss_limit
    rss_limit <- "2GB"
  }
  if (is.null(n)) n <- .default_workers()
  n <- arg_count(n, "n", min = 1)
  # each worker holds one socket, and R has 128 connection slots in all
  room <- 128L - nrow(showConnections(all = TRUE))
  if (n > room)
    stop(sprintf("shard: `n` = %.0f workers is more than this R session can connect to (at most %d now: each worker takes one of R's 128 connections)",
                 n, room), call. = FALSE)
  n <- as.integer(n)
  rss_limit_bytes <- parse_bytes(rss_limit, "rss_limit")
  if (!is.numeric(rss_drift_threshold) || length(rss_drift_threshold) != 1L || is.na(rss_drift_threshold) ||
      rss_drift_threshold <= 0)
    stop("shard: `rss_drift_threshold` must be a single number > 0 (a fraction of the baseline: 0.5 = 50% growth; Inf turns drift checks off)",
         call. = FALSE)
  if (!is.numeric(heartbeat_interval) || length(heartbeat_interval) != 1L || is.na(heartbeat_interval) ||
      heartbeat_interval <= 0)
    stop("shard: `heartbeat_interval` must be a single number of seconds > 0", call. = FALSE)
  if (heartbeat_interval != 5)
    warning("shard: `heartbeat_interval` is deprecated and has no effect: workers are checked between tasks ",
            "and while tasks run; leave it out", call. = FALSE)
  if (!is.numeric(min_recycle_interval) || length(min_recycle_interval) != 1L || is.na(min_recycle_interval) ||
      min_recycle_interval < 0)
    stop("shard: `min_recycle_interval` must be a single non-negative number of seconds", call. = FALSE)
  if (!is.null(packages) && (!is.character(packages) || anyNA(packages) || !all(nzchar(packages))))
    stop("shard: `packages` must be NULL or a character vector of package names", call. = FALSE)
  if (!is.null(init_expr) && !(is.language(init_expr) || is.expression(init_expr) || is.function(init_expr)))
    stop("shard: `init_expr` must be NULL, a quoted expression (quote({...})) or a function of no arguments; ",
         "got ", class(init_expr)[1], call. = FALSE)
  type <- arg_choice(type, c("psock", "fork"), "type")
  set_default <- arg_flag(set_default, "set_default")
  if (type == "fork" && .Platform$OS.type != "unix")
    stop("shard: type = \"fork\" needs a unix system; use type = \"psock\"", call. = FALSE)
  if (set_default && !is.null(old <- .pool_state$current) && pool_running(old)) {
    message(sprintf("shard: stopping the previous ambient pool (%d %s workers)", old$n, old$type))
    pool_stop(old)
  }
  pool <- new.env(parent = emptyenv())
  .pool_state$next_id <- .pool_state$next_id + 1L
  pool$id <- .pool_state$next_id
  pool$type <- type
  pool$n <- n
  pool$master_pid <- Sys.getpid()
  pool$libs <- .libPaths()
  pool$created_at <- Sys.time()
  # the reference's settings, under its names
  pool$rss_limit_bytes <- rss_limit_bytes
  pool$rss_drift_threshold <- as.numeric(rss_drift_threshold)
  pool$heartbeat_interval <- as.numeric(heartbeat_interval)
  pool$min_recycle_interval <- as.numeric(min_recycle_interval)
  pool$init_expr <- init_expr
  pool$packages <- if (is.null(packages)) NULL else unique(packages)
  pool$stopped <- FALSE
  pool$busy <- FALSE
  pool$cl <- vector("list", n)
  # per worker slot
  pool$pids <- rep(NA_integer_, n)
  pool$node_keys <- rep(NA_character_, n)  # each worker's node (R/cluster.R's node_identity()$key)
  pool$dead <- rep(FALSE, n)
  pool$job_of <- rep(NA_integer_, n)     # the job each worker holds
  pool$tasks <- integer(n)               # tasks run
  pool$bytes_sent <- numeric(n)          # task message bytes sent
  pool$deaths <- integer(n)              # workers of this slot that died (and were replaced)
  pool$recycle_count <- integer(n)       # workers of this slot recycled
  pool$last_recycle_reason <- rep(NA_character_, n)
  pool$rss_baseline <- rep(NA_real_, n)  # private RSS of the worker just after set-up
  pool$rss_last <- rep(NA_real_, n)      # at the last check
  pool$needs_recycle <- rep(FALSE, n)
  pool$spawned_at <- rep(NA_real_, n)    # proc.time() elapsed, for min_recycle_interval
  pool$spawned_time <- rep(Sys.time(), n)
  pool$last_seen <- rep(unclass(Sys.time()), n)   # last heartbeat (seconds since 1970): answer, or process seen alive
  pool$last_check <- rep(-Inf, n)        # proc.time() elapsed of the last memory check
  # totals
  pool$replaced <- 0L                    # workers replaced after dying
  pool$recycles <- 0L
  pool$retries <- 0L                     # tasks run again after their worker died
  pool$dispatched <- 0L                  # pool_dispatch() calls
  pool$calls <- 0L
  pool$jobs <- 0L
  pool$last_run <- NULL
  makeActiveBinding("workers", function() lapply(seq_len(pool$n), function(i) pool_worker_info(pool, i)), pool)
  makeActiveBinding("stats", function() pool_stats(pool), pool)
  class(pool) <- "shard_pool"
  t0 <- proc.time()[["elapsed"]]
  cl <- pool_make_cluster(pool, n)
  pool$cl <- cl
  ok <- FALSE
  on.exit(if (!ok) pool_stop(pool))
  pids <- pool_init_nodes(pool, cl)
  for (i in seq_len(n)) pool_slot_started(pool, i, cl[[i]], pids[i], attr(pids, "nodes")[i])
  pool$startup_s <- proc.time()[["elapsed"]] - t0
  reg.finalizer(pool, pool_finalize, onexit = TRUE)
  ok <- TRUE
  if (set_default) .pool_state$current <- pool
  invisible(pool)
}

pool_finalize <- function(pool) {
  if (identical(pool$master_pid, Sys.getpid()) && !isTRUE(pool$stopped))
    try(pool_stop(pool, wait = 1), silent = TRUE)
}

#' @export
pool_get <- function() {
  p <- .pool_state$current
  if (is.null(p) || !pool_running(p)) return(NULL)
  p
}

#' @export
pool_stop <- function(pool = NULL, timeout = 5, wait = timeout) {
  if (!is.numeric(wait) || length(wait) != 1L || is.na(wait) || wait < 0)
    stop(sprintf("shard: `%s` must be a single non-negative number of seconds",
                 if (missing(wait)) "timeout" else "wait"), call. = FALSE)
  if (is.null(pool)) pool <- .pool_state$current
  if (is.null(pool)) return(invisible(FALSE))
  check_pool_object(pool)
  if (!identical(pool$master_pid, Sys.getpid())) return(invisible(FALSE))
  if (identical(.pool_state$current, pool)) .pool_state$current <- NULL
  if (isTRUE(pool$stopped)) return(invisible(FALSE))
  pool$stopped <- TRUE
  pids <- pool$pids
  for (i in seq_along(pool$cl)) {
    node <- pool$cl[[i]]
    if (is.null(node)) next
    # parallel's own stop message (DONE), then the socket is closed.
    transport_stop(node)
  }
  pool$cl <- list()
  pids <- pids[!is.na(pids)]
  deadline <- proc.time()[["elapsed"]] + wait
  while (any(vapply(pids, proc_alive, logical(1))) && proc.time()[["elapsed"]] < deadline)
    Sys.sleep(0.02)
  left <- pids[vapply(pids, proc_alive, logical(1))]
  for (p in left) tools::pskill(p, tools::SIGKILL)
  if (length(left)) {
    deadline <- proc.time()[["elapsed"]] + 2
    while (any(vapply(left, proc_alive, logical(1))) && proc.time()[["elapsed"]] < deadline)
      Sys.sleep(0.02)
  }
  invisible(TRUE)
}

pool_running <- function(pool) !isTRUE(pool$stopped) && identical(pool$master_pid, Sys.getpid())

check_pool_object <- function(pool) {
  if (!inherits(pool, "shard_pool"))
    stop("shard: `pool` must be a pool from pool_create() (got an object of class ",
         paste(class(pool), collapse = "/"), ")", call. = FALSE)
}

resolve_pool <- function(pool) {
  if (is.null(pool)) {
    pool <- .pool_state$current
    if (is.null(pool) || !identical(pool$master_pid, Sys.getpid()))
      stop("shard: there is no worker pool: call pool_create() first, or pass `pool =`", call. = FALSE)
  }
  check_pool_object(pool)
  if (!identical(pool$master_pid, Sys.getpid()))
    stop(sprintf("shard: this pool belongs to process %d, not to this one (%d)", pool$master_pid,
                 Sys.getpid()), call. = FALSE)
  if (isTRUE(pool$stopped)) stop("shard: this pool has been stopped; create one with pool_create()", call. = FALSE)
  if (isTRUE(pool$busy)) stop("shard: this pool is already running a pool_lapply() (nested use of one pool)",
                              call. = FALSE)
  pool
}

# The pool's counters (the reference's `pool$stats`).
pool_stats <- function(pool) {
  list(total_recycles = pool$recycles, total_deaths = pool$replaced, total_retries = pool$retries,
       total_tasks = sum(pool$tasks))
}

# ---------------------------------------------------------------------------
# Status and printing

#' @export
pool_status <- function(pool = NULL) {
  if (is.null(pool)) pool <- .pool_state$current
  if (is.null(pool)) return(pool_status_frame(0L))
  check_pool_object(pool)
  n <- pool$n
  alive <- if (isTRUE(pool$stopped)) vapply(pool$pids, proc_alive, logical(1)) else
    !pool$dead & vapply(pool$pids, proc_alive, logical(1))
  mem <- vapply(seq_len(n), function(i) proc_memory(if (alive[i]) pool$pids[i] else NA), numeric(6))
  rss_own <- vapply(seq_len(n), function(i) if (alive[i]) worker_rss(pool$pids[i]) else NA_real_, 0)
  out <- pool_status_frame(n)
  out$worker <- seq_len(n)
  out$pid <- as.integer(pool$pids)
  out$alive <- alive
  out$rss <- mem["rss", ]
  out$pss <- mem["pss", ]
  out$pss_anon <- mem["pss_anon", ]
  out$pss_shmem <- mem["pss_shmem", ]
  out$hugetlb <- mem["shared_hugetlb", ] + mem["private_hugetlb", ]
  out$tasks <- as.integer(pool$tasks)
  out$bytes_sent <- pool$bytes_sent
  out$worker_id <- seq_len(n)
  out$status <- ifelse(alive, ifelse(pool$needs_recycle, "needs_recycle", "ok"), "dead")
  out$rss_bytes <- rss_own
  out$rss_baseline <- pool$rss_baseline
  out$rss_drift <- ifelse(!is.na(rss_own) & pool$rss_baseline > 0, (rss_own - pool$rss_baseline) / pool$rss_baseline,
                          NA_real_)
  out$recycle_count <- as.integer(pool$recycle_count)
  out$death_count <- as.integer(pool$deaths)
  out$spawned_at <- pool$spawned_time
  out$last_heartbeat <- .POSIXct(pool$last_seen)
  attr(out, "last_run") <- pool$last_run
  out
}

pool_status_frame <- function(n) {
  t <- rep(Sys.time(), n)
  data.frame(worker = integer(n), pid = integer(n), alive = logical(n), rss = numeric(n), pss = numeric(n),
             pss_anon = numeric(n), pss_shmem = numeric(n), hugetlb = numeric(n), tasks = integer(n),
             bytes_sent = numeric(n), worker_id = integer(n), status = character(n), rss_bytes = numeric(n),
             rss_baseline = numeric(n), rss_drift = numeric(n), recycle_count = integer(n),
             death_count = integer(n), spawned_at = t, last_heartbeat = t,
             stringsAsFactors = FALSE, row.names = NULL)
}

#' @export
print.shard_pool <- function(x, ...) {
  state <- if (isTRUE(x$stopped)) "stopped" else "running"
  amb <- if (identical(.pool_state$current, x)) ", ambient" else ""
  cat(sprintf("<shard_pool> %d %s worker%s (%s%s); jobs run: %d; workers replaced: %d\n",
              x$n, x$type, if (x$n == 1) "" else "s", state, amb, x$jobs, x$replaced))
  cat(sprintf("  RSS limit: %s per worker; drift threshold: %s of baseline; min recycle interval: %g s\n",
              if (is.finite(x$rss_limit_bytes)) format_bytes(x$rss_limit_bytes) else "none",
              if (is.finite(x$rss_drift_threshold)) sprintf("%.0f%%", 100 * x$rss_drift_threshold) else "none",
              x$min_recycle_interval))
  st <- x$stats
  cat(sprintf("  recycles: %d; deaths: %d; retries: %d; tasks: %d; created %s\n", st$total_recycles,
              st$total_deaths, st$total_retries, st$total_tasks, format(x$created_at, "%Y-%m-%d %H:%M:%S")))
  if (!isTRUE(x$stopped)) {
    st <- pool_status(x)
    show <- data.frame(worker = st$worker, pid = st$pid, alive = st$alive,
                       rss = format_bytes_vec(st$rss), pss = format_bytes_vec(st$pss),
                       private = format_bytes_vec(st$rss_bytes), tasks = st$tasks,
                       sent = format_bytes_vec(st$bytes_sent), recycled = st$recycle_count, died = st$death_count)
    print(show, row.names = FALSE)
  }
  if (!is.null(lr <- x$last_run)) {
    cat(sprintf("  last run: %d elements in %d tasks, %.3g s; job message %s per worker, tasks %s each (median)\n",
                lr$elements, lr$tasks, lr$elapsed, format_bytes(lr$job_bytes),
                format_bytes(lr$task_bytes_median)))
  }
  invisible(x)
}

format_bytes_vec <- function(v) vapply(v, function(b) if (is.na(b)) "NA" else format_bytes(b), "")
