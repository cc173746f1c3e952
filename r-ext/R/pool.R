# Worker pools: the pool object and its life (pool_create(), pool_stop()), the
# ambient pool, pool_status() and printing.
#
# The pool is split by concern:
#   pool.R            this file: the pool object, creating/stopping, status, print
#   pool_worker.R     worker slots: start, set up, replace a dead worker; /proc facts
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
# - pool_status(): pid, liveness, RSS and PSS of each worker (smaps_rollup);
# - pool_stop() leaves no worker process or socket behind.

.pool_state <- new.env(parent = emptyenv())
.pool_state$current <- NULL        # the ambient pool
.pool_state$warned_large <- FALSE  # large task message warned about (once per session)
.pool_state$next_id <- 0L

# ---------------------------------------------------------------------------
# Creating and stopping

#' @export
pool_create <- function(n = NULL, type = c("psock", "fork"), set_default = TRUE) {
  if (is.null(n)) n <- pool_default_size()
  n <- arg_count(n, "n", min = 1)
  # each worker holds one socket, and R has 128 connection slots in all
  room <- 128L - nrow(showConnections(all = TRUE))
  if (n > room)
    stop(sprintf("shard: `n` = %.0f workers is more than this R session can connect to (at most %d now: each worker takes one of R's 128 connections)",
                 n, room), call. = FALSE)
  n <- as.integer(n)
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
  pool$stopped <- FALSE
  pool$busy <- FALSE
  pool$cl <- vector("list", n)
  pool$pids <- rep(NA_integer_, n)
  pool$dead <- rep(FALSE, n)
  pool$job_of <- rep(NA_integer_, n)     # the job each worker holds
  pool$tasks <- integer(n)               # tasks run, per worker slot
  pool$bytes_sent <- numeric(n)          # task message bytes sent, per worker slot
  pool$replaced <- 0L
  pool$jobs <- 0L
  pool$last_run <- NULL
  class(pool) <- "shard_pool"
  t0 <- proc.time()[["elapsed"]]
  cl <- pool_make_cluster(pool, n)
  pool$cl <- cl
  ok <- FALSE
  on.exit(if (!ok) pool_stop(pool))
  pool$pids <- pool_init_nodes(pool, cl)
  pool$startup_s <- proc.time()[["elapsed"]] - t0
  reg.finalizer(pool, pool_finalize, onexit = TRUE)
  ok <- TRUE
  if (set_default) .pool_state$current <- pool
  invisible(pool)
}

pool_default_size <- function() {
  cores <- tryCatch(parallel::detectCores(), error = function(e) NA_integer_)
  if (is.na(cores)) 1L else max(1L, as.integer(cores) - 1L)
}


pool_finalize <- function(pool) {
  if (identical(pool$master_pid, Sys.getpid()) && !isTRUE(pool$stopped))
    try(pool_stop(pool, wait = 1), silent = TRUE)
}

#' @export
pool_stop <- function(pool = NULL, wait = 5) {
  if (!is.numeric(wait) || length(wait) != 1L || is.na(wait) || wait < 0)
    stop("shard: `wait` must be a single non-negative number of seconds", call. = FALSE)
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


# ---------------------------------------------------------------------------
# Status and printing

#' @export
pool_status <- function(pool = NULL) {
  if (is.null(pool)) {
    pool <- .pool_state$current
    if (is.null(pool)) stop("shard: there is no worker pool: call pool_create() first", call. = FALSE)
  }
  check_pool_object(pool)
  n <- pool$n
  alive <- if (isTRUE(pool$stopped)) vapply(pool$pids, proc_alive, logical(1)) else
    !pool$dead & vapply(pool$pids, proc_alive, logical(1))
  mem <- vapply(seq_len(n), function(i) proc_memory(if (alive[i]) pool$pids[i] else NA), numeric(6))
  out <- data.frame(worker = seq_len(n), pid = as.integer(pool$pids), alive = alive,
                    rss = mem["rss", ], pss = mem["pss", ], pss_anon = mem["pss_anon", ],
                    pss_shmem = mem["pss_shmem", ],
                    hugetlb = mem["shared_hugetlb", ] + mem["private_hugetlb", ],
                    tasks = as.integer(pool$tasks), bytes_sent = pool$bytes_sent,
                    stringsAsFactors = FALSE, row.names = NULL)
  attr(out, "last_run") <- pool$last_run
  out
}

#' @export
print.shard_pool <- function(x, ...) {
  state <- if (isTRUE(x$stopped)) "stopped" else "running"
  amb <- if (identical(.pool_state$current, x)) ", ambient" else ""
  cat(sprintf("<shard_pool> %d %s worker%s (%s%s); jobs run: %d; workers replaced: %d\n",
              x$n, x$type, if (x$n == 1) "" else "s", state, amb, x$jobs, x$replaced))
  if (!isTRUE(x$stopped)) {
    st <- pool_status(x)
    show <- data.frame(worker = st$worker, pid = st$pid, alive = st$alive,
                       rss = format_bytes_vec(st$rss), pss = format_bytes_vec(st$pss),
                       tasks = st$tasks, sent = format_bytes_vec(st$bytes_sent))
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

