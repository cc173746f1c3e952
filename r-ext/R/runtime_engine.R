# The runtime's engine: runs the items of a shard_map() / shard_reduce() /
# dispatch_chunks() call on a pool's workers through the pool's scheduler
# (pool_scheduler.R), and the worker side of those tasks.
#
# Master side, runtime_run(): a task is a chunk of items (shards); its payload
# is the chunk's shard descriptors (and, with seed=, each shard's RNG stream).
# The job (sent once per worker per call) holds FUN with its globals, `...`,
# the borrowed inputs (shared objects travel as handles and are fetch()ed once
# per worker: zero-copy) and the out= buffers (travel as their paths, mapped
# once per worker). The scheduler does the load balancing, liveness, recycling
# between tasks and retries after a death; this file adds retries after an
# error in FUN (max_retries), per-task timeouts (run$timeout), progress, and
# the run's telemetry (time per task, worker memory, bytes back, buffer and
# view counters, copy-on-write events) that the reports read.
#
# Worker side, runtime_task(): installs the job (once), then for each shard of
# the chunk installs the shard's RNG stream (seed=), calls
# FUN(shard, <borrow>, <out>, ...) under the copy-on-write policy and records
# its time and any error; returns values, errors and counters. For
# shard_reduce() the chunk's values are combined on the worker (one partial
# per chunk comes back).

# ---------------------------------------------------------------------------
# Master side

# Runs `ntask` tasks. items(t) gives the items of task t (a list), seeds(t)
# their RNG streams (or NULL). Returns the run's state (an environment).
runtime_run <- function(pool, job, ntask, items, seeds, task_sizes, max_retries, timeout, on_value,
                        label, progress, health_check_interval) {
  # Per-task records are local vectors of this function, set from the callbacks
  # with `<<-`: that modifies them in place, where `st$x[t] <- v` on an
  # environment would copy the whole vector at every answer (O(tasks^2)).
  st <- new.env(parent = emptyenv())
  values <- vector("list", ntask)          # per task: list of item values (failed tasks)
  errors <- vector("list", ntask)          # per task: list of item errors (last attempt)
  failed <- logical(ntask)
  done <- logical(ntask)
  err_attempts <- integer(ntask)
  lost <- vector("list", ntask)
  task_time <- rep(NA_real_, ntask)        # seconds FUN ran, summed over the task's items
  task_worker <- rep(NA_integer_, ntask)
  task_pid <- rep(NA_integer_, ntask)
  task_elapsed <- rep(NA_real_, ntask)     # worker-side elapsed of the whole task (parallel's time)
  result_bytes <- numeric(ntask)
  cow_events <- numeric(ntask)
  st$worker_diag <- list()                 # pid -> last counters seen from that worker
  st$warnings <- list()
  st$items_done <- 0
  st$total_items <- sum(task_sizes)
  st$completions <- 0L
  st$t0 <- proc.time()[["elapsed"]]
  st$last_progress <- st$t0
  st$progress <- progress
  st$progress_shown <- FALSE

  recycles0 <- pool$recycles
  deaths0 <- pool$replaced
  retries0 <- pool$retries
  pool$jobs <- pool$jobs + 1L
  job_id <- pool$jobs
  job_raw <- serialize(job, NULL, xdr = FALSE)
  run <- NULL
  pool$busy <- TRUE
  on.exit({
    if (!is.null(run)) sched_abort(run)
    pool$busy <- FALSE
  })

  # the task as it travels (serialized once, inside the scheduler's message)
  payload <- function(t) list(items = items(t), seeds = seeds(t))
  on_answer <- function(t, w, r, time) {
    task_worker[t] <<- w
    task_pid[t] <<- pool$pids[w]
    task_elapsed[t] <<- time
    if (inherits(r, "try-error") || !is.list(r) || is.null(r$errors)) {
      # failed outside FUN (installing the job): the worker forgets the job
      pool$job_of[w] <- NA_integer_
      msg <- if (inherits(r, "try-error")) sub("\n$", "", as.character(r)) else "malformed answer"
      r <- list(pid = pool$pids[w], values = list(), errors = list(list(k = 1L, message = msg)), times = NA_real_)
    }
    task_time[t] <<- sum(r$times, na.rm = TRUE)
    if (!is.null(r$diag)) {
      st$worker_diag[[as.character(r$pid)]] <- c(r$diag, list(worker = w, pid = r$pid))
      result_bytes[t] <<- r$diag$result_bytes %||% 0
      cow_events[t] <<- r$diag$cow_events %||% 0
    }
    for (wn in r$warnings) if (length(st$warnings) < 10L) st$warnings[[length(st$warnings) + 1L]] <- wn$message
    if (length(r$errors)) {
      errors[[t]] <<- r$errors
      err_attempts[t] <<- err_attempts[t] + 1L
      if (err_attempts[t] <= max_retries && !run$stopping) {
        sched_requeue(run, t)            # retried (its payload is computed again)
        return(invisible())
      }
      failed[t] <<- TRUE
      values[[t]] <<- r$values
    } else {
      if (err_attempts[t]) errors[t] <<- list(NULL)
      done[t] <<- TRUE
      on_value(t, r$values, w)
    }
    st$items_done <- st$items_done + task_sizes[t]
    st$completions <- st$completions + 1L
    # every health_check_interval completions, this worker's memory is read
    # (the scheduler checks it right after this callback, at most ten times a
    # second per worker: see sched_receive())
    if (st$completions %% health_check_interval == 0L) run$check_due[w] <- TRUE
    if (progress) runtime_progress(st, label)
  }
  on_lost <- function(t, pids) {
    lost[[t]] <<- pids
    failed[t] <<- TRUE
    st$items_done <- st$items_done + task_sizes[t]
  }
  pool_heal(pool)
  run <- sched_new(pool, job_id, job_raw, ntask, payload, on_answer, on_lost, retries = max_retries,
                   runner = "runtime_task")
  run$timeout <- timeout
  # Prefetch: once tasks turn out short (round trip under 10 ms), each worker
  # gets its next task before it answers the current one, hiding the master's
  # turnaround (the scheduler's depth 2; options(shard.runtime_prefetch = FALSE)
  # turns it off).
  run$prefetch <- isTRUE(getOption("shard.runtime_prefetch", TRUE))
  sched_loop(run)
  runtime_progress(st, label, final = TRUE)
  st$elapsed <- proc.time()[["elapsed"]] - st$t0
  st$values <- values; st$errors <- errors; st$failed <- failed; st$done <- done
  st$err_attempts <- err_attempts; st$lost <- lost; st$task_time <- task_time; st$task_worker <- task_worker
  st$task_pid <- task_pid; st$task_elapsed <- task_elapsed; st$result_bytes <- result_bytes
  st$cow_events <- cow_events
  st$job_bytes <- length(job_raw)
  st$job_bytes_sent <- run$job_bytes_sent
  st$task_bytes <- run$task_bytes
  st$death_attempts <- run$attempts
  st$timed_out <- run$timed_out
  st$recycles <- pool$recycles - recycles0
  st$deaths <- pool$replaced - deaths0
  st$death_retries <- pool$retries - retries0
  st$round_trip <- sched_round_trip(run)
  # end-of-run memory of each worker (PSS counts shared pages once overall)
  # (PSS needs /proc/<pid>/smaps_rollup, which the kernel computes by walking
  # every mapping: ~2/3 of the master's fixed cost of a short call; read only
  # when diagnostics are collected, RSS from statm otherwise)
  full <- isTRUE(job$diagnostics)
  st$worker_mem <- lapply(seq_len(pool$n), function(i) {
    pid <- pool$pids[i]
    if (full) {
      m <- proc_memory(pid)
      list(worker = i, pid = pid, rss = m[["rss"]], pss = m[["pss"]], private = worker_rss(pid))
    } else list(worker = i, pid = pid, rss = rss_get_pid(pid), pss = NA_real_, private = worker_rss(pid))
  })
  pool_release_job(pool, job_id)
  run <- NULL
  st
}

# Progress on long runs: a line on stderr every 2 s once a run has taken 2 s
# (options(shard.progress = FALSE) turns it off; TRUE by default when interactive).
runtime_progress <- function(st, label, final = FALSE) {
  if (!isTRUE(st$progress)) return(invisible())
  now <- proc.time()[["elapsed"]]
  if (!final && (now - st$t0 < 2 || now - st$last_progress < 2)) return(invisible())
  if (final && !st$progress_shown) return(invisible())
  st$last_progress <- now
  st$progress_shown <- TRUE
  frac <- if (st$total_items > 0) st$items_done / st$total_items else 1
  eta <- if (frac > 0 && !final) (now - st$t0) * (1 - frac) / frac else 0
  cat(sprintf("\r%s: %.0f/%.0f shards (%3.0f%%), %.1f s elapsed%s", label, st$items_done, st$total_items,
              100 * frac, now - st$t0, if (final) "\n" else sprintf(", eta %.0f s   ", eta)), file = stderr())
  invisible()
}

# Per-shard L'Ecuyer-CMRG streams for shard ids 1..n from `seed` (the master's
# RNG kind and state are left as found).
runtime_streams <- function(seed, n) {
  if (!is.numeric(seed) || length(seed) != 1L || is.na(seed))
    stop("shard: `seed` must be NULL or one number", call. = FALSE)
  kind <- RNGkind()
  had <- exists(".Random.seed", envir = globalenv(), inherits = FALSE)
  old <- if (had) get(".Random.seed", envir = globalenv(), inherits = FALSE)
  on.exit({
    RNGkind(kind[1], kind[2], kind[3])
    if (had) assign(".Random.seed", old, envir = globalenv()) else
      if (exists(".Random.seed", envir = globalenv(), inherits = FALSE)) rm(".Random.seed", envir = globalenv())
  })
  RNGkind("L'Ecuyer-CMRG")
  set.seed(seed)
  s <- get(".Random.seed", envir = globalenv())
  out <- vector("list", n)
  for (i in seq_len(n)) {
    s <- parallel::nextRNGStream(s)
    out[[i]] <- s
  }
  out
}

# The borrow= list as sent to workers: shared objects stay (they travel as
# handles); a large object that is not shared is shared now (closed by
# `cleanup` at the end of the call). A pool with workers on other nodes
# (pool_multi_node()) gets every large or shared input as share(x, cluster = ):
# one copy per node, which each worker's fetch() resolves to its own node's.
runtime_borrow <- function(borrow, cleanup, min_bytes = getOption("shard.borrow_share_min", 64 * 1024),
                           pool = NULL) {
  out <- borrow
  if (!is.null(pool) && pool_multi_node(pool)) {
    cl <- pool_as_cluster(pool)
    for (nm in names(borrow)) {
      x <- borrow[[nm]]
      if (inherits(x, "shard_buffer") || is.function(x) || is.environment(x) || is.null(x)) next
      shared <- inherits(x, c("shard_shared", "shard_deep_shared", "shard_cluster_shared"))
      if (shared || ((is.atomic(x) || is.list(x)) && as.numeric(utils::object.size(x)) >= min_bytes)) {
        s <- share(x, cluster = cl)
        cleanup$shared[[length(cleanup$shared) + 1L]] <- s
        out[[nm]] <- s
      }
    }
    return(out)
  }
  for (nm in names(borrow)) {
    x <- borrow[[nm]]
    if (inherits(x, c("shard_shared", "shard_deep_shared", "shard_buffer")) || is.function(x) || is.environment(x))
      next
    # a list holding shared objects travels as it is (the handles inside)
    if (is.list(x) && !is.object(x) &&
        any(vapply(x, function(e) inherits(e, c("shard_shared", "shard_deep_shared")), TRUE)))
      next
    if (!is.null(x) && (is.atomic(x) || is.list(x)) && as.numeric(utils::object.size(x)) >= min_bytes) {
      s <- share(x)
      cleanup$shared[[length(cleanup$shared) + 1L]] <- s
      out[[nm]] <- s
    }
  }
  out
}

runtime_check_named_list <- function(x, what) {
  if (is.null(x)) return(list())
  if (!is.list(x) || is.object(x) && !is.list(unclass(x)))
    stop(sprintf("shard: `%s` must be a named list", what), call. = FALSE)
  if (length(x) && (is.null(names(x)) || any(!nzchar(names(x))) || anyDuplicated(names(x))))
    stop(sprintf("shard: every element of `%s` needs a unique name (FUN receives them as named arguments)", what),
         call. = FALSE)
  x
}

# ---------------------------------------------------------------------------
# Worker side

.runtime_worker <- new.env(parent = emptyenv())

# What a worker resolves for its job: borrowed shared objects fetched (zero-copy).
runtime_fetch <- function(x) {
  if (inherits(x, c("shard_shared", "shard_deep_shared", "shard_cluster_shared"))) return(fetch(x))
  if (is.list(x) && !is.object(x) && length(x) &&
      any(vapply(x, function(e) inherits(e, c("shard_shared", "shard_deep_shared")), TRUE)))
    return(lapply(x, runtime_fetch))
  x
}

runtime_clear_job <- function() {
  rt <- .runtime_worker
  rt$borrow <- NULL
  rt$out <- NULL
  if (!is.null(rt$old_cow)) {
    options(rt$old_cow)
    rt$old_cow <- NULL
  }
  if (!is.null(rt$old_plain)) {
    options(rt$old_plain)
    rt$old_plain <- NULL
  }
  for (p in ls(.buffer_maps, all.names = TRUE)) {
    try(.Call(C_buffer_close, .buffer_maps[[p]], FALSE), silent = TRUE)
    rm(list = p, envir = .buffer_maps)
  }
  invisible()
}

# Peak RSS of this process (VmHWM) in bytes; resettable through clear_refs.
runtime_peak_rss <- function() {
  l <- tryCatch(readLines("/proc/self/status", warn = FALSE), error = function(e) character())
  h <- l[startsWith(l, "VmHWM:")]
  if (!length(h)) return(NA_real_)
  as.numeric(sub("^VmHWM:\\s+([0-9]+) kB.*$", "\\1", h[1])) * 1024
}

runtime_reset_peak <- function() {
  try(suppressWarnings(cat("5", file = "/proc/self/clear_refs")), silent = TRUE)
}

runtime_counters <- function() {
  s <- .Call(C_stats)
  b <- .Call(C_buffer_diag, FALSE)
  c(buffer_writes = b$writes, buffer_bytes = b$bytes, view_materialized = .view_diag$materialized,
    view_zero_copy = .view_diag$zero_copy, view_bytes = .view_diag$materialized_bytes,
    view_packed = .view_diag$packed_bytes, cow_maps = s$cow_mappings, cow_bytes = s$cow_bytes,
    copies = s$copies, copy_bytes = s$copy_bytes)
}

# FUN on one shard (the call an error in FUN reports: FUN(shard, ...)).
runtime_call1 <- function(FUN, shard, ...) FUN(shard, ...)

# Runs one task: the chunk's items through FUN (or, mode "chunks", FUN(chunk, ...)).
runtime_task <- function(job_id, job_raw, task) {
  st <- .pool_worker
  rt <- .runtime_worker
  if (length(job_raw)) {
    job <- unserialize(job_raw)
    pool_clear_job()
    for (p in job$packages) {
      if (!suppressPackageStartupMessages(require(p, character.only = TRUE, quietly = TRUE)))
        stop(sprintf("package %s (in `packages`, or used by FUN) is not installed for this worker", p))
    }
    if (length(job$globals)) list2env(job$globals, envir = globalenv())
    st$globals <- names(job$globals)
    if (!is.null(job$init_expr)) {
      if (is.function(job$init_expr)) job$init_expr() else eval(job$init_expr, globalenv())
    }
    st$fun <- job$fun
    st$dots <- job$dots
    st$job_id <- job_id
    rt$mode <- job$mode
    rt$combine <- job$combine
    rt$cow <- job$cow
    rt$diagnostics <- isTRUE(job$diagnostics)
    # cow = "deny"/"audit" act in the ALTREP class's hooks: no plain vectors there,
    # for the whole job (restored by runtime_clear_job()): R's duplicate of a
    # borrowed input is a new shard vector too, which options(shard.plain_min_bytes)
    # set in a worker (init_expr) would make plain, and then the write to it
    # would not be seen by audit.
    if (!identical(job$cow, "allow") && is.null(rt$old_plain))
      rt$old_plain <- options(shard.plain_min_bytes = Inf)
    rt$borrow <- if (identical(job$cow, "allow")) lapply(job$borrow, runtime_fetch) else
      with_altrep(lapply(job$borrow, runtime_fetch))
    rt$out <- job$out
    # FUN's arguments after the shard, the same for every shard of the run
    rt$extra <- if (identical(rt$mode, "chunks")) st$dots else c(rt$borrow, rt$out, st$dots)
    rt$c0 <- runtime_counters()
    st$on_clear <- runtime_clear_job
    # cow = "deny" in a map: options(shard.cow = "error") for the whole job (set
    # here, restored by runtime_clear_job() when the job is released), not set
    # and restored around every task: at 10 000 tiny shards that pair of
    # options() calls per task measured as the largest worker-side cost. (A
    # reduce toggles it per task: combine() runs outside it, as before.)
    if (identical(job$cow, "deny") && !identical(job$mode, "reduce")) rt$old_cow <- options(shard.cow = "error")
    runtime_reset_peak()
  } else if (!identical(st$job_id, job_id)) {
    stop(sprintf("worker %d was sent a task of job %d without the job", Sys.getpid(), job_id))
  }
  items <- task$items
  seeds <- task$seeds
  n <- length(items)
  values <- vector("list", n)
  times <- numeric(n)
  errors <- list()
  warns <- list()
  if (length(seeds)) {
    had <- exists(".Random.seed", envir = globalenv(), inherits = FALSE)
    old <- if (had) get(".Random.seed", envir = globalenv(), inherits = FALSE)
    on.exit(if (had) assign(".Random.seed", old, envir = globalenv()) else
      if (exists(".Random.seed", envir = globalenv(), inherits = FALSE)) rm(".Random.seed", envir = globalenv()),
      add = TRUE)
  }
  fun <- st$fun
  extra <- rt$extra
  cow <- rt$cow
  # cow = "deny": FUN runs with options(shard.cow = "error"): set for the whole
  # job in a map (above), else once for the task's shards and restored after
  # them (on.exit only as the fallback)
  old_opt <- if (identical(cow, "deny") && is.null(rt$old_cow)) options(shard.cow = "error")
  if (!is.null(old_opt)) on.exit(if (!is.null(old_opt)) options(old_opt), add = TRUE)
  c_before <- if (identical(cow, "audit")) runtime_counters() else NULL
  k <- 0L
  # one warning handler for the task (it reads the current k), not one per shard
  on_warning <- function(w) {
    if (length(warns) < 10L) warns[[length(warns) + 1L]] <<- list(k = k, message = conditionMessage(w))
    invokeRestart("muffleWarning")
  }
  for (k in seq_len(n)) {
    if (length(seeds)) assign(".Random.seed", seeds[[k]], envir = globalenv())
    t0 <- proc.time()[[3L]]
    r <- withCallingHandlers(
      tryCatch(list(if (length(extra)) do.call(runtime_call1, c(list(fun, items[[k]]), extra), quote = TRUE) else
        runtime_call1(fun, items[[k]])), error = identity),
      warning = on_warning)
    times[k] <- proc.time()[[3L]] - t0
    if (inherits(r, "error")) {
      call <- conditionCall(r)
      errors[[length(errors) + 1L]] <- list(
        k = k, message = conditionMessage(r),
        call = if (is.null(call)) NULL else paste(deparse(call, nlines = 1L, width.cutoff = 80L), collapse = ""))
    } else if (!is.null(r[[1L]])) {
      values[[k]] <- r[[1L]]
    }
  }
  if (!is.null(old_opt)) {
    options(old_opt)
    old_opt <- NULL
  }
  if (identical(rt$mode, "reduce") && !length(errors) && n) {
    acc <- values[[1]]
    for (k in seq_len(n)[-1]) acc <- rt$combine(acc, values[[k]])
    values <- list(acc)
  }
  diag <- NULL
  if (isTRUE(rt$diagnostics)) {
    c1 <- runtime_counters()
    diag <- as.list(c1 - rt$c0)
    if (!is.null(c_before)) diag$cow_events <- sum((c1 - c_before)[c("cow_maps", "copies")])
    diag$rss <- rss_self()
    diag$peak_rss <- runtime_peak_rss()
    diag$private_rss <- worker_rss(Sys.getpid())
    diag$result_bytes <- as.numeric(length(serialize(values, NULL, xdr = FALSE)))
  } else if (identical(rt$cow, "audit")) {
    diag <- list(cow_events = sum((runtime_counters() - c_before)[c("cow_maps", "copies")]), result_bytes = 0)
  }
  list(pid = Sys.getpid(), values = values, errors = errors, warnings = warns, times = times, diag = diag)
}
