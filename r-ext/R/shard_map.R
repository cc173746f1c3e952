# shard_map(), shard_reduce() and dispatch_chunks(): the runtime's front ends
# over runtime_run() (runtime_engine.R), and their results (results(),
# succeeded(), print methods).
#
# Workers come from the ambient pool (pool.R): shard_map() uses it when its
# size matches `workers` (or workers = NULL), else starts one of that size. The
# run's mem_cap / recycle become the pool's rss_limit / rss_drift_threshold for
# the length of the call (the pool's supervision recycles a worker over them
# between tasks); packages / init_expr are part of the job, so each worker,
# first or replacement, loads them before its first shard.

#' @export
shard_map <- function(shards, fun = NULL, borrow = list(), out = list(), kernel = NULL, scheduler_policy = NULL,
                      autotune = NULL, dispatch_mode = c("rpc_chunked", "shm_queue"), dispatch_opts = NULL,
                      workers = NULL, chunk_size = 1L, profile = c("default", "memory", "speed"), mem_cap = "2GB",
                      recycle = TRUE, cow = c("deny", "audit", "allow"), seed = NULL, diagnostics = TRUE,
                      packages = NULL, init_expr = NULL, timeout = 3600, max_retries = 3L,
                      health_check_interval = 10L, ...) {
  a <- runtime_args(match.call(), fun, kernel, dispatch_mode, autotune, scheduler_policy, dispatch_opts, workers,
                    chunk_size, profile, mem_cap, recycle, cow, seed, diagnostics, packages, init_expr, timeout,
                    max_retries, health_check_interval, missing(health_check_interval))
  borrow <- runtime_check_named_list(borrow, "borrow")
  out <- runtime_check_out(out)
  if (length(intersect(names(borrow), names(out))))
    stop("shard: `borrow` and `out` use the same name(s): ", paste(intersect(names(borrow), names(out)), collapse = ", "),
         call. = FALSE)
  pool <- runtime_pool(a)
  desc <- runtime_descriptor(shards, a, pool)
  cleanup <- runtime_limits(pool, a)
  on.exit(runtime_cleanup(pool, cleanup), add = TRUE)
  borrow_sent <- runtime_borrow(borrow, cleanup, pool = pool)
  glob <- pool_prepare_fun(a$fun)
  job <- list(fun = glob$fun, dots = list(...), globals = glob$globals, packages = union(glob$packages, a$packages),
              init_expr = a$init_expr, borrow = borrow_sent, out = out, mode = "map", cow = a$cow,
              diagnostics = a$diagnostics)
  K <- length(desc)
  results <- vector("list", K)       # set in place by on_value (`<<-`)
  tasks <- runtime_chunks(K, a$chunk_size)
  st <- runtime_run(pool, job, length(tasks), items = function(t) runtime_items(desc, tasks[[t]]),
                    seeds = runtime_seed_fun(a$seed, K, tasks), task_sizes = lengths(tasks),
                    max_retries = a$max_retries, timeout = a$timeout,
                    on_value = function(t, vals, w) results[tasks[[t]]] <<- vals,
                    label = "shard_map", progress = runtime_progress_flag(),
                    health_check_interval = a$health_check_interval)
  runtime_warnings(st, "shard_map")
  structure(list(results = results, failures = runtime_failures(st, tasks),
                 diagnostics = runtime_diagnostics(st, tasks, K, a, borrow, out, pool),
                 pool_stats = pool$stats, queue_status = runtime_queue_status(st, tasks, K), cow = a$cow,
                 seed = a$seed),
            class = "shard_result")
}

runtime_progress_flag <- function() isTRUE(getOption("shard.progress", interactive()))

# Checks and normalizes the arguments common to shard_map() and shard_reduce().
runtime_args <- function(call, fun, kernel, dispatch_mode, autotune, scheduler_policy, dispatch_opts, workers,
                         chunk_size, profile, mem_cap, recycle, cow, seed, diagnostics, packages, init_expr, timeout,
                         max_retries, health_check_interval, hci_missing, allow_auto_chunk = FALSE) {
  if (!is.null(kernel))
    stop("shard: kernels (kernel=) are not part of this version of shard; pass the work as `fun`", call. = FALSE)
  if (!is.function(fun)) stop("shard: `fun` must be a function(shard, ...) (got ",
                              if (is.null(fun)) "NULL" else class(fun)[1], ")", call. = FALSE)
  dispatch_mode <- arg_choice(dispatch_mode, c("rpc_chunked", "shm_queue"), "dispatch_mode")
  if (dispatch_mode == "shm_queue")
    stop("shard: dispatch_mode = \"shm_queue\" is not available in this version; use the default \"rpc_chunked\" ",
         "(raise chunk_size to cut per-shard overhead)", call. = FALSE)
  if (!is.null(autotune) && !(isTRUE(autotune) || isFALSE(autotune) || identical(autotune, "online") ||
                              identical(autotune, "none") || is.list(autotune)))
    stop("shard: `autotune` must be NULL, TRUE, FALSE, \"online\", \"none\" or a list", call. = FALSE)
  if (!is.null(scheduler_policy) && !is.list(scheduler_policy))
    stop("shard: `scheduler_policy` must be NULL or a list", call. = FALSE)
  if (!is.null(dispatch_opts) && !is.list(dispatch_opts))
    stop("shard: `dispatch_opts` must be NULL or a list", call. = FALSE)
  if (!is.null(workers)) workers <- as.integer(arg_count(workers, "workers", min = 1))
  if (allow_auto_chunk && identical(chunk_size, "auto")) chunk_size <- NA_integer_ else
    chunk_size <- as.integer(min(arg_count(chunk_size, "chunk_size", min = 1), .Machine$integer.max))
  profile <- arg_choice(profile, c("default", "memory", "speed"), "profile")
  mem_cap <- parse_bytes(mem_cap, "mem_cap")
  if (isTRUE(recycle)) drift <- 0.5 else if (isFALSE(recycle)) drift <- Inf else
    if (is.numeric(recycle) && length(recycle) == 1L && !is.na(recycle) && recycle > 0) drift <- as.numeric(recycle) else
      stop("shard: `recycle` must be TRUE, FALSE, or a drift threshold > 0 (0.5 = recycle a worker whose memory grew 50%)",
           call. = FALSE)
  cow <- arg_choice(cow, c("deny", "audit", "allow"), "cow")
  if (!is.null(seed) && (!is.numeric(seed) || length(seed) != 1L || is.na(seed)))
    stop("shard: `seed` must be NULL or one number", call. = FALSE)
  diagnostics <- arg_flag(diagnostics, "diagnostics")
  if (!is.null(packages) && (!is.character(packages) || anyNA(packages) || !all(nzchar(packages))))
    stop("shard: `packages` must be NULL or a character vector of package names", call. = FALSE)
  if (!is.null(init_expr) && !(is.language(init_expr) || is.expression(init_expr) || is.function(init_expr)))
    stop("shard: `init_expr` must be NULL, a quoted expression (quote({...})) or a function of no arguments",
         call. = FALSE)
  if (!is.numeric(timeout) || length(timeout) != 1L || is.na(timeout) || timeout <= 0)
    stop("shard: `timeout` must be a number of seconds > 0 (the longest a shard's task may run)", call. = FALSE)
  max_retries <- as.integer(arg_count(max_retries, "max_retries", min = 0))
  health_check_interval <- as.integer(arg_count(health_check_interval, "health_check_interval", min = 1))
  if (hci_missing) health_check_interval <- switch(profile, memory = 5L, speed = 50L, 10L)
  list(fun = fun, workers = workers, chunk_size = chunk_size, profile = profile, mem_cap = mem_cap, drift = drift,
       cow = cow, seed = seed, diagnostics = diagnostics, packages = packages, init_expr = init_expr,
       timeout = as.numeric(timeout), max_retries = max_retries, health_check_interval = health_check_interval)
}

runtime_check_out <- function(out) {
  out <- runtime_check_named_list(out, "out")
  for (nm in names(out)) {
    b <- out[[nm]]
    if (!inherits(b, "shard_buffer"))
      stop(sprintf("shard: `out$%s` must be a buffer from buffer() (got %s)", nm, class(b)[1]), call. = FALSE)
    s <- .Call(C_buffer_state, buf_ptr(b))
    if (isTRUE(s$closed)) stop(sprintf("shard: `out$%s` has been closed", nm), call. = FALSE)
    if (isTRUE(s$sealed) || isTRUE(b$readonly))
      stop(sprintf("shard: `out$%s` is sealed or read-only: workers could not write it; use a new buffer()", nm),
           call. = FALSE)
  }
  out
}

# The pool a run uses: the ambient one if its size fits, else a new one.
runtime_pool <- function(a) {
  p <- pool_get()
  if (!is.null(p) && (is.null(a$workers) || p$n == a$workers)) return(p)
  if (!is.null(p)) pool_stop(p)
  pool_create(if (is.null(a$workers)) .default_workers() else a$workers)
}

# The run's memory limits on the pool (restored by runtime_cleanup()).
runtime_limits <- function(pool, a) {
  cleanup <- new.env(parent = emptyenv())
  cleanup$old <- list(rss_limit_bytes = pool$rss_limit_bytes, rss_drift_threshold = pool$rss_drift_threshold)
  pool$rss_limit_bytes <- a$mem_cap
  pool$rss_drift_threshold <- a$drift
  cleanup$shared <- list()
  cleanup
}

runtime_cleanup <- function(pool, cleanup) {
  if (!isTRUE(pool$stopped)) {
    pool$rss_limit_bytes <- cleanup$old$rss_limit_bytes
    pool$rss_drift_threshold <- cleanup$old$rss_drift_threshold
  }
  for (s in cleanup$shared) try(close(s), silent = TRUE)
}

# shards= as a descriptor (an integer N is split here).
runtime_descriptor <- function(shards, a, pool) {
  if (inherits(shards, "shard_descriptor")) return(shards)
  if (is.numeric(shards) && length(shards) == 1L && !is.na(shards) && shards >= 1 && shards == round(shards)) {
    # With a seed the split must not depend on the number of workers (the
    # streams are per shard): blocks of a size that depends on N only.
    if (!is.null(a$seed)) return(shards(shards, block_size = max(1, ceiling(shards / 64))))
    return(shards(shards, workers = pool$n))
  }
  stop("shard: `shards` must be a descriptor from shards() / shards_list(), or a number of items N >= 1",
       call. = FALSE)
}

runtime_chunks <- function(K, cs) {
  if (K == 0) return(list())
  starts <- seq.int(1L, K, by = cs)
  lapply(starts, function(s) s:min(K, s + cs - 1L))
}

runtime_items <- function(desc, ids) {
  if (inherits(desc, "shard_descriptor_lazy")) lapply(ids, function(i) shard_at(desc, i)) else
    .subset2(desc, "shards")[ids]
}

runtime_seed_fun <- function(seed, K, tasks) {
  if (is.null(seed)) return(function(t) NULL)
  streams <- runtime_streams(seed, K)
  function(t) streams[tasks[[t]]]
}

runtime_warnings <- function(st, what) {
  for (m in st$warnings) warning(sprintf("%s(): a worker warned: %s", what, m), call. = FALSE)
}

# Permanently failed shards: shard id -> list(id, message, call, attempts, pids).
runtime_failures <- function(st, tasks, ids_of = function(t) tasks[[t]]) {
  out <- list()
  for (t in which(st$failed)) {
    ids <- ids_of(t)
    if (!is.null(st$lost[[t]])) {
      for (i in ids) out[[as.character(i)]] <- list(
        id = i, message = sprintf("the worker died%s (pids %s)", if (t %in% st$timed_out) " or ran past `timeout`" else "",
                                  paste(st$lost[[t]], collapse = ", ")),
        call = NULL, attempts = length(st$lost[[t]]), pids = st$lost[[t]])
      next
    }
    for (e in st$errors[[t]]) {
      i <- ids[min(e$k, length(ids))]
      out[[as.character(i)]] <- list(id = i, message = e$message, call = e$call, attempts = st$err_attempts[t],
                                     pids = st$task_pid[t])
    }
  }
  out
}

runtime_queue_status <- function(st, tasks, K) {
  failed_items <- sum(lengths(tasks)[st$failed])
  list(total = K, completed = K - failed_items, failed = failed_items, pending = 0L,
       chunks = length(tasks), chunks_failed = sum(st$failed))
}

# The run's telemetry (what the reports read).
runtime_diagnostics <- function(st, tasks, K, a, borrow, out, pool) {
  wd <- st$worker_diag
  sumd <- function(f) sum(vapply(wd, function(d) as.numeric(d[[f]] %||% 0), 0))
  per_task <- data.frame(task = seq_along(tasks), shards = lengths(tasks), worker = st$task_worker,
                         pid = st$task_pid, time = st$task_time, elapsed = st$task_elapsed,
                         result_bytes = st$result_bytes, task_bytes = st$task_bytes,
                         error_retries = 0L,
                         deaths = st$death_attempts, failed = st$failed)
  per_task$error_retries <- ifelse(st$done, st$err_attempts, pmax(0L, st$err_attempts - 1L))
  wm <- st$worker_mem
  workers <- data.frame(worker = vapply(wm, `[[`, 0L, "worker"), pid = vapply(wm, function(m) as.integer(m$pid), 0L),
                        tasks = vapply(wm, function(m) sum(per_task$worker == m$worker, na.rm = TRUE), 0L),
                        busy_time = vapply(wm, function(m) sum(per_task$time[per_task$worker %in% m$worker], na.rm = TRUE), 0),
                        peak_rss = vapply(wm, function(m) as.numeric(wd[[as.character(m$pid)]]$peak_rss %||% NA), 0),
                        end_rss = vapply(wm, `[[`, 0, "rss"), end_pss = vapply(wm, `[[`, 0, "pss"),
                        private_rss = vapply(wm, `[[`, 0, "private"),
                        recycles = as.integer(pool$recycle_count), deaths = as.integer(pool$deaths))
  borrow_bytes <- sum(vapply(borrow, function(b) {
    if (inherits(b, "shard_shared")) as.numeric(b$size) else as.numeric(utils::object.size(b))
  }, 0))
  cow_events <- sum(st$cow_events)
  list(duration = st$elapsed, shards_total = K,
       shards_failed = sum(lengths(tasks)[st$failed]), shards_processed = K - sum(lengths(tasks)[st$failed]),
       chunks = length(tasks), chunks_dispatched = length(tasks) + sum(per_task$error_retries) + st$death_retries,
       error_retries = sum(per_task$error_retries), death_retries = st$death_retries,
       total_retries = sum(per_task$error_retries) + st$death_retries, timeouts = length(st$timed_out),
       recycles = st$recycles, deaths = st$deaths, workers = workers, tasks = per_task,
       buffer = list(writes = sumd("buffer_writes"), bytes = sumd("buffer_bytes"), buffers = length(out)),
       views = list(materialized = sumd("view_materialized"), zero_copy = sumd("view_zero_copy"),
                    materialized_bytes = sumd("view_bytes"), packed_bytes = sumd("view_packed")),
       cow = list(policy = a$cow, violations = if (a$cow == "audit") cow_events else 0,
                  copies_triggered = sumd("cow_maps") + sumd("copies"),
                  copy_bytes = sumd("cow_bytes") + sumd("copy_bytes")),
       borrow = list(exports = length(borrow), bytes = borrow_bytes),
       bytes = list(job = st$job_bytes, job_sent = st$job_bytes_sent, tasks_sent = sum(st$task_bytes),
                    results = sum(st$result_bytes)),
       master = list(rss = rss_self(), peak_rss = runtime_peak_rss()),
       round_trip = st$round_trip, mem_cap = a$mem_cap, chunk_size = a$chunk_size, profile = a$profile,
       collected = a$diagnostics)
}

# ---------------------------------------------------------------------------
# Results

#' @export
results <- function(x, flatten = TRUE) {
  if (!inherits(x, "shard_result")) stop("shard: results() needs the result of shard_map()", call. = FALSE)
  flatten <- arg_flag(flatten, "flatten")
  r <- x$results
  if (!flatten || !length(r)) return(r)
  if (all(vapply(r, function(v) is.atomic(v) && length(v) == 1L && is.null(attributes(v)), TRUE))) return(unlist(r))
  if (all(vapply(r, function(v) is.list(v) && !is.object(v), TRUE))) return(do.call(c, unname(r)))
  r
}

#' @export
succeeded <- function(x) {
  if (!inherits(x, c("shard_result", "shard_reduce_result", "shard_dispatch_result")))
    stop("shard: succeeded() needs the result of shard_map(), shard_reduce() or dispatch_chunks()", call. = FALSE)
  length(x$failures) == 0L
}

#' @export
print.shard_result <- function(x, ...) {
  d <- x$diagnostics
  cat(sprintf("<shard_result> %d shard%s in %d task%s, %.3g s: %d ok, %d failed\n", d$shards_total,
              if (d$shards_total == 1) "" else "s", d$chunks, if (d$chunks == 1) "" else "s", d$duration,
              d$shards_processed, d$shards_failed))
  cat(sprintf("  retries: %d; recycles: %d; workers died: %d; bytes back: %s; buffer writes: %s\n",
              d$total_retries, d$recycles, d$deaths, format_bytes(d$bytes$results), format_bytes(d$buffer$bytes)))
  if (length(x$failures)) {
    f <- x$failures[[1]]
    cat(sprintf("  first failure: shard %s: %s\n", f$id, f$message))
  }
  invisible(x)
}

# ---------------------------------------------------------------------------
# shard_reduce()

#' @export
shard_reduce <- function(shards, map, combine, init, borrow = list(), out = list(), workers = NULL,
                         chunk_size = "auto", profile = c("default", "memory", "speed"), mem_cap = "2GB",
                         recycle = TRUE, cow = c("deny", "audit", "allow"), seed = NULL, diagnostics = TRUE,
                         packages = NULL, init_expr = NULL, timeout = 3600, max_retries = 3L,
                         health_check_interval = 10L) {
  if (missing(map) || !is.function(map)) stop("shard: `map` must be a function(shard, ...)", call. = FALSE)
  if (missing(combine) || !is.function(combine)) stop("shard: `combine` must be a function(acc, value)", call. = FALSE)
  if (missing(init)) stop("shard: `init` (the initial accumulator) is missing", call. = FALSE)
  a <- runtime_args(NULL, map, NULL, "rpc_chunked", NULL, NULL, NULL, workers, chunk_size, profile, mem_cap,
                    recycle, cow, seed, diagnostics, packages, init_expr, timeout, max_retries,
                    health_check_interval, missing(health_check_interval), allow_auto_chunk = TRUE)
  borrow <- runtime_check_named_list(borrow, "borrow")
  out <- runtime_check_out(out)
  pool <- runtime_pool(a)
  desc <- runtime_descriptor(shards, a, pool)
  K <- length(desc)
  if (is.na(a$chunk_size)) a$chunk_size <- as.integer(max(1, ceiling(K / (pool$n * 4))))
  cleanup <- runtime_limits(pool, a)
  on.exit(runtime_cleanup(pool, cleanup), add = TRUE)
  borrow_sent <- runtime_borrow(borrow, cleanup, pool = pool)
  glob <- pool_prepare_fun(map)
  globc <- pool_prepare_fun(combine)
  job <- list(fun = glob$fun, dots = list(), globals = c(glob$globals, globc$globals[setdiff(names(globc$globals), names(glob$globals))]),
              packages = union(union(glob$packages, globc$packages), a$packages), init_expr = a$init_expr,
              borrow = borrow_sent, out = out, mode = "reduce", combine = globc$fun, cow = a$cow,
              diagnostics = a$diagnostics)
  tasks <- runtime_chunks(K, a$chunk_size)
  # partials are folded in chunk order as they become contiguous
  fold <- new.env(parent = emptyenv())
  fold$acc <- init
  fold$next_t <- 1L
  fold$pending <- list()
  fold$skip <- logical(length(tasks))
  advance <- function() {
    while (fold$next_t <= length(tasks)) {
      key <- as.character(fold$next_t)
      if (!is.null(p <- fold$pending[[key]])) {
        fold$acc <- combine(fold$acc, p[[1]])
        fold$pending[[key]] <- NULL
      } else if (!fold$skip[fold$next_t]) break
      fold$next_t <- fold$next_t + 1L
    }
  }
  st <- runtime_run(pool, job, length(tasks), items = function(t) runtime_items(desc, tasks[[t]]),
                    seeds = runtime_seed_fun(a$seed, K, tasks), task_sizes = lengths(tasks),
                    max_retries = a$max_retries, timeout = a$timeout,
                    on_value = function(t, vals, w) {
                      if (length(vals)) fold$pending[[as.character(t)]] <- list(vals[[1]]) else fold$skip[t] <- TRUE
                      advance()
                    }, label = "shard_reduce", progress = runtime_progress_flag(),
                    health_check_interval = a$health_check_interval)
  # failed chunks contribute nothing (they are in `failures`)
  fold$skip[st$failed] <- TRUE
  advance()
  runtime_warnings(st, "shard_reduce")
  diag <- runtime_diagnostics(st, tasks, K, a, borrow, out, pool)
  diag$reduce <- list(partials = sum(st$done), chunk_size = a$chunk_size)
  structure(list(value = fold$acc, failures = runtime_failures(st, tasks), diagnostics = diag,
                 queue_status = runtime_queue_status(st, tasks, K), pool_stats = pool$stats),
            class = "shard_reduce_result")
}

#' @export
print.shard_reduce_result <- function(x, ...) {
  d <- x$diagnostics
  cat(sprintf("<shard_reduce_result> %d shard%s in %d chunk%s, %.3g s; %d failed\n", d$shards_total,
              if (d$shards_total == 1) "" else "s", d$chunks, if (d$chunks == 1) "" else "s", d$duration,
              d$shards_failed))
  cat("  value: ")
  v <- x$value
  if (is.atomic(v) && length(v) <= 10L) cat(format(v), "\n") else cat(class(v)[1], "of length", length(v), "\n")
  invisible(x)
}

# ---------------------------------------------------------------------------
# dispatch_chunks()

#' @export
dispatch_chunks <- function(chunks, fun, ..., pool = NULL, health_check_interval = 10L, max_retries = 3L,
                            timeout = 3600, scheduler_policy = NULL, on_result = NULL, store_results = TRUE,
                            retain_chunks = FALSE, diagnostics = TRUE) {
  if (!is.list(chunks)) stop("shard: `chunks` must be a list of chunk descriptors", call. = FALSE)
  if (!is.function(fun)) stop("shard: `fun` must be a function(chunk, ...)", call. = FALSE)
  pool <- resolve_pool(pool)
  hci <- as.integer(arg_count(health_check_interval, "health_check_interval", min = 1))
  max_retries <- as.integer(arg_count(max_retries, "max_retries", min = 0))
  if (!is.numeric(timeout) || length(timeout) != 1L || is.na(timeout) || timeout <= 0)
    stop("shard: `timeout` must be a number of seconds > 0", call. = FALSE)
  if (!is.null(scheduler_policy) && !is.list(scheduler_policy))
    stop("shard: `scheduler_policy` must be NULL or a list", call. = FALSE)
  if (!is.null(on_result) && !is.function(on_result))
    stop("shard: `on_result` must be NULL or a function(tag, value, worker_id)", call. = FALSE)
  store_results <- arg_flag(store_results, "store_results")
  retain_chunks <- arg_flag(retain_chunks, "retain_chunks")
  diagnostics <- arg_flag(diagnostics, "diagnostics")
  n <- length(chunks)
  tags <- vapply(seq_len(n), function(i) {
    id <- if (is.list(chunks[[i]])) chunks[[i]]$id else NULL
    if (is.null(id)) as.character(i) else as.character(id[1])
  }, "")
  glob <- pool_prepare_fun(fun)
  job <- list(fun = glob$fun, dots = list(...), globals = glob$globals, packages = glob$packages, init_expr = NULL,
              borrow = list(), out = list(), mode = "chunks", cow = "allow", diagnostics = diagnostics)
  results <- vector("list", n)       # set in place by on_value (`<<-`)
  names(results) <- tags
  tasks <- as.list(seq_len(n))
  st <- runtime_run(pool, job, n, items = function(t) chunks[t], seeds = function(t) NULL,
                    task_sizes = rep(1L, n), max_retries = max_retries, timeout = timeout,
                    on_value = function(t, vals, w) {
                      if (store_results) results[t] <<- list(vals[[1]])
                      if (!is.null(on_result)) on_result(tags[t], vals[[1]], w)
                    }, label = "dispatch_chunks", progress = runtime_progress_flag(), health_check_interval = hci)
  runtime_warnings(st, "dispatch_chunks")
  fails <- runtime_failures(st, tasks)
  for (k in names(fails)) fails[[k]]$chunk <- chunks[[as.integer(k)]]
  names(fails) <- tags[as.integer(names(fails))]
  a <- list(cow = "allow", mem_cap = pool$rss_limit_bytes, chunk_size = 1L, profile = "default",
            diagnostics = diagnostics)
  diag <- runtime_diagnostics(st, tasks, n, a, list(), list(), pool)
  out <- list(results = if (store_results) results else list(), failures = fails, diagnostics = diag,
              queue_status = runtime_queue_status(st, tasks, n), pool_stats = pool$stats)
  if (retain_chunks) out$chunks <- chunks
  structure(out, class = "shard_dispatch_result")
}

#' @export
print.shard_dispatch_result <- function(x, ...) {
  q <- x$queue_status
  cat(sprintf("<shard_dispatch_result> %d chunk%s, %.3g s: %d ok, %d failed; retries: %d\n", q$total,
              if (q$total == 1) "" else "s", x$diagnostics$duration, q$completed, q$failed,
              x$diagnostics$total_retries))
  invisible(x)
}
