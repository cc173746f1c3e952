# Worker pools: pool_create(), pool_lapply(), pool_sapply(), pool_status(),
# pool_stop(). Built on R's `parallel` package: the workers are ordinary
# PSOCK or fork cluster nodes running parallel's own worker loop, and every
# message is parallel's EXEC/VALUE message (sent with parallel's sendCall(),
# read with parallel's recvData()). What this file adds on top of parallel:
#
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

# Worker-side state (in a worker process): the job it holds.
.pool_worker <- new.env(parent = emptyenv())

par_fun <- function(name) utils::getFromNamespace(name, "parallel")

# A small stand-in for one of this file's worker functions, to send in messages:
# `function(...) name(...)` whose environment is the shard namespace serializes
# to a couple of hundred bytes (the function itself, byte-compiled, to ~20 KiB).
worker_stub <- function(name) {
  key <- paste0("stub_", name)
  if (is.null(f <- .pool_state[[key]])) {
    f <- function(...) NULL
    body(f) <- as.call(list(as.name(name), quote(...)))
    environment(f) <- topenv()
    .pool_state[[key]] <- f
  }
  f
}

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

# Starts `k` workers of the pool's type (a parallel cluster, not yet initialised).
pool_make_cluster <- function(pool, k) {
  if (pool$type == "fork") return(parallel::makeForkCluster(k))
  # PSOCK workers find this package through R_LIBS (the caller's library paths);
  # pool_init_nodes() then sets .libPaths() to exactly the caller's.
  old <- Sys.getenv("R_LIBS", unset = NA)
  Sys.setenv(R_LIBS = paste(pool$libs, collapse = .Platform$path.sep))
  on.exit(if (is.na(old)) Sys.unsetenv("R_LIBS") else Sys.setenv(R_LIBS = old))
  parallel::makePSOCKcluster(k, useXDR = FALSE)
}

# Sets the library paths and attaches shard on each node; returns the pids.
pool_init_nodes <- function(pool, cl) {
  init <- function(libs, pkg) {
    .libPaths(libs)
    ok <- suppressPackageStartupMessages(require(pkg, character.only = TRUE, quietly = TRUE))
    if (!ok) stop(sprintf("package %s could not be loaded from %s", pkg, paste(libs, collapse = ":")))
    Sys.getpid()
  }
  environment(init) <- globalenv()
  pids <- tryCatch(parallel::clusterCall(cl, init, pool$libs, "shard"),
                   error = function(e) stop("shard: pool workers could not start: ", conditionMessage(e),
                                            call. = FALSE))
  as.integer(unlist(pids))
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
    try(parallel::stopCluster(structure(list(node), class = class(pool$cl))), silent = TRUE)
    try(close(node$con), silent = TRUE)
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

# A process that exists and is not a zombie.
proc_alive <- function(pid) {
  if (is.na(pid)) return(FALSE)
  s <- tryCatch(suppressWarnings(readLines(sprintf("/proc/%d/stat", as.integer(pid)), warn = FALSE)),
                error = function(e) character())
  if (!length(s)) return(FALSE)
  state <- sub("^.*\\) (.).*$", "\\1", s[1])
  !(state %in% c("Z", "X", "x"))
}

# Memory of a process from /proc/<pid>/smaps_rollup, in bytes (NA when gone).
proc_memory <- function(pid) {
  keys <- c(rss = "Rss", pss = "Pss", pss_anon = "Pss_Anon", pss_shmem = "Pss_Shmem",
            shared_hugetlb = "Shared_Hugetlb", private_hugetlb = "Private_Hugetlb")
  out <- stats::setNames(rep(NA_real_, length(keys)), names(keys))
  if (is.na(pid)) return(out)
  l <- tryCatch(suppressWarnings(readLines(sprintf("/proc/%d/smaps_rollup", as.integer(pid)), warn = FALSE)),
                error = function(e) character())
  if (!length(l)) return(out)
  key <- sub(":.*$", "", l)
  val <- suppressWarnings(as.numeric(sub("^[^:]+:\\s+([0-9]+) kB.*$", "\\1", l))) * 1024
  for (k in names(keys)) {
    hit <- which(key == keys[[k]])
    out[[k]] <- if (length(hit)) val[hit[1]] else 0
  }
  out
}

# Replaces worker slot `i` by a fresh worker (the old one is killed if still there).
pool_replace_worker <- function(pool, i) {
  node <- pool$cl[[i]]
  if (!is.null(node)) try(close(node$con), silent = TRUE)
  pid <- pool$pids[i]
  if (!is.na(pid) && proc_alive(pid)) tools::pskill(pid, tools::SIGKILL)
  pool$dead[i] <- TRUE
  cl1 <- pool_make_cluster(pool, 1L)
  newpid <- tryCatch(pool_init_nodes(pool, cl1), error = function(e) {
    try(parallel::stopCluster(cl1), silent = TRUE)
    stop(e)
  })
  cl <- pool$cl
  cl[[i]] <- cl1[[1L]]
  pool$cl <- cl
  pool$pids[i] <- newpid
  pool$dead[i] <- FALSE
  pool$job_of[i] <- NA_integer_
  pool$replaced <- pool$replaced + 1L
  invisible(newpid)
}

# Replaces the workers that have died since they were last used (an idle
# worker's socket that is readable has hit end of file: its process is gone).
pool_heal <- function(pool) {
  for (i in seq_len(pool$n)) {
    dead <- pool$dead[i] || is.null(pool$cl[[i]]) || !proc_alive(pool$pids[i])
    if (!dead) {
      ready <- tryCatch(socketSelect(list(pool$cl[[i]]$con), FALSE, timeout = 0), error = function(e) TRUE)
      dead <- isTRUE(ready[1])
    }
    if (dead) pool_replace_worker(pool, i)
  }
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

# ---------------------------------------------------------------------------
# What FUN needs on the worker. R would serialize a closure with its whole
# enclosing environment chain (up to the global environment or a namespace):
# a function written inside another function would drag every local variable
# of that function to each worker, and a function written at top level would
# find nothing, since workers have their own global environment. So, as the
# `future` package does, FUN is sent with exactly the variables it uses
# (codetools::findGlobals): those found in local environments go into a fresh
# enclosing environment (whose parent is FUN's top-level environment), those
# found in the global environment are put into the worker's global environment
# for the duration of the call, and the packages they come from are attached.
# Closures among them are treated the same way. A shared object among them
# travels as its handle. Names used only through get()/do.call("name") are not
# seen: pass such objects through `...`.

is_local_env <- function(e) is.environment(e) && !identical(topenv(e), e)

pool_prepare_fun <- function(FUN) {
  globals <- list()
  packages <- character()
  base_pkgs <- c("base", "stats", "utils", "methods", "graphics", "grDevices", "datasets")
  if (is.primitive(FUN) || is.null(environment(FUN))) return(list(fun = FUN, globals = globals, packages = packages))
  new_envs <- list()        # one fresh enclosing environment per top-level environment
  env_for <- function(top) {
    for (x in new_envs) if (identical(x$top, top)) return(x$env)
    e <- new.env(parent = top)
    new_envs[[length(new_envs) + 1L]] <<- list(top = top, env = e)
    e
  }
  todo <- list()
  # A closure to send: without source references (they hold the whole source
  # file), and, when it comes from a local environment, with a fresh one that
  # will receive just the variables it uses.
  prepare <- function(f) {
    if (!is.function(f) || is.primitive(f)) return(f)
    if (!is.null(attr(f, "srcref"))) f <- utils::removeSource(f)
    env <- environment(f)
    if (is_local_env(env)) {
      target <- env_for(topenv(env))
      todo[[length(todo) + 1L]] <<- list(f = f, env = env, target = target)
      environment(f) <- target
    } else if (identical(env, globalenv())) {
      todo[[length(todo) + 1L]] <<- list(f = f, env = env, target = NULL)
    }
    f
  }
  FUN <- prepare(FUN)
  seen <- character()
  while (length(todo)) {
    item <- todo[[1L]]
    todo <- todo[-1L]
    names <- tryCatch(codetools::findGlobals(item$f, merge = TRUE), error = function(e) character())
    for (nm in names) {
      e <- item$env
      while (!identical(e, emptyenv()) && !exists(nm, envir = e, inherits = FALSE)) e <- parent.env(e)
      if (identical(e, emptyenv())) next
      key <- paste(nm, format(e))
      if (key %in% seen) next
      seen <- c(seen, key)
      if (is_local_env(e) && !is.null(item$target)) {
        assign(nm, prepare(get(nm, envir = e, inherits = FALSE)), envir = item$target)
      } else if (identical(e, globalenv())) {
        globals[[nm]] <- prepare(get(nm, envir = e, inherits = FALSE))
      } else {
        en <- environmentName(e)
        if (startsWith(en, "package:")) {
          p <- sub("^package:", "", en)
          if (!p %in% c(base_pkgs, "shard")) packages <- union(packages, p)
        }
      }
    }
  }
  list(fun = FUN, globals = globals, packages = packages)
}

# ---------------------------------------------------------------------------
# Worker side

# Runs one task (a chunk of elements) on a worker. The job (FUN, `...`, globals)
# comes with a worker's first task of each call and is kept for the next tasks.
pool_task <- function(job_id, job_raw, task_raw) {
  st <- .pool_worker
  if (length(job_raw)) {
    job <- unserialize(job_raw)
    pool_clear_job()
    for (p in job$packages) {
      if (!suppressPackageStartupMessages(require(p, character.only = TRUE, quietly = TRUE)))
        stop(sprintf("package %s (used by FUN) is not installed for this worker", p))
    }
    if (length(job$globals)) list2env(job$globals, envir = globalenv())
    st$globals <- names(job$globals)
    st$fun <- job$fun
    st$dots <- job$dots
    st$stop_early <- job$stop_early
    st$job_id <- job_id
  } else if (!identical(st$job_id, job_id)) {
    stop(sprintf("worker %d was sent a task of job %d without the job", Sys.getpid(), job_id))
  }
  xs <- unserialize(task_raw)
  run1 <- function(FUN, X, i, ...) FUN(X[[i]], ...)
  n <- length(xs)
  values <- vector("list", n)
  errors <- list()
  warns <- list()
  k <- 0L
  for (k in seq_len(n)) {
    r <- withCallingHandlers(
      tryCatch(list(do.call(run1, c(list(st$fun, xs, k), st$dots), quote = TRUE)),
               error = function(e) e),
      warning = function(w) {
        if (length(warns) < 10L) warns[[length(warns) + 1L]] <<- list(k = k, message = conditionMessage(w))
        invokeRestart("muffleWarning")
      })
    if (inherits(r, "error")) {
      call <- conditionCall(r)
      errors[[length(errors) + 1L]] <- list(
        k = k, message = conditionMessage(r), class = class(r),
        call = if (is.null(call)) NULL else paste(deparse(call, nlines = 1L, width.cutoff = 80L), collapse = ""))
      if (isTRUE(st$stop_early)) break
    } else if (!is.null(r[[1]])) {
      values[[k]] <- r[[1]]
    }
  }
  list(pid = Sys.getpid(), values = values, errors = errors, warnings = warns, ran = k)
}

# Forgets the job a worker holds (and the globals it put in the global environment).
pool_clear_job <- function() {
  st <- .pool_worker
  if (length(st$globals)) {
    g <- st$globals[vapply(st$globals, exists, logical(1), envir = globalenv(), inherits = FALSE)]
    if (length(g)) rm(list = g, envir = globalenv())
  }
  st$globals <- NULL
  st$fun <- NULL
  st$dots <- NULL
  st$job_id <- NULL
  invisible(Sys.getpid())
}

# ---------------------------------------------------------------------------
# pool_lapply

#' @export
pool_lapply <- function(X, FUN, ..., pool = NULL, chunk_size = 1L,
                        progress = getOption("shard.progress", interactive()),
                        on_error = c("stop", "return"), retries = 1L) {
  pool <- resolve_pool(pool)
  FUN <- match.fun(FUN)
  chunk_size <- as.integer(min(arg_count(chunk_size, "chunk_size", min = 1), .Machine$integer.max))
  progress <- arg_flag(progress, "progress")
  on_error <- arg_choice(on_error, c("stop", "return"), "on_error")
  retries <- arg_count(retries, "retries", min = 0)
  if (retries > 100) stop("shard: `retries` must be a whole number from 0 to 100", call. = FALSE)
  retries <- as.integer(retries)
  if (!is.vector(X) || is.object(X)) X <- as.list(X)
  n <- length(X)
  chunk_size <- min(chunk_size, max(n, 1L))
  nms <- names(X)
  results <- vector("list", n)
  if (!is.null(nms)) names(results) <- nms
  if (n == 0L) return(results)

  sendCall <- par_fun("sendCall")
  recvData <- par_fun("recvData")
  t0 <- proc.time()[["elapsed"]]
  pool$busy <- TRUE
  # Tasks sent to each worker slot and not answered yet, oldest first. A worker
  # runs them in order; when tasks turn out short (< 10 ms a round trip), each
  # worker gets its next task before it answers the current one, which hides
  # the master's turnaround; long tasks go one at a time (best balance).
  inflight <- rep(list(integer()), pool$n)
  depth <- 1L
  prefetch <- isTRUE(getOption("shard.pool_prefetch", FALSE))
  pb <- NULL
  on.exit({
    # Interrupted or failed with tasks in flight: those workers will answer
    # later, so they are killed here and replaced at the next call.
    for (w in which(lengths(inflight) > 0L)) {
      try(close(pool$cl[[w]]$con), silent = TRUE)
      if (proc_alive(pool$pids[w])) try(tools::pskill(pool$pids[w], tools::SIGKILL), silent = TRUE)
      pool$dead[w] <- TRUE
    }
    if (!is.null(pb)) pb_close(pb)
    pool$busy <- FALSE
  })
  pool_heal(pool)

  glob <- pool_prepare_fun(FUN)
  pool$jobs <- pool$jobs + 1L
  job_id <- pool$jobs
  job <- list(fun = glob$fun, dots = list(...), globals = glob$globals, packages = glob$packages,
              stop_early = on_error == "stop")
  job_raw <- serialize(job, NULL, xdr = FALSE)
  starts <- seq.int(1L, n, by = chunk_size)
  chunks <- lapply(starts, function(s) s:min(n, s + chunk_size - 1L))
  ntask <- length(chunks)
  task_raw <- vector("list", ntask)
  # parallel's message around the payloads (xdr = FALSE, as parallel sends it to these nodes)
  envelope <- length(serialize(list(type = "EXEC", data = list(fun = worker_stub("pool_task"), args = list(job_id, raw(0), raw(0)),
                                                               return = TRUE, tag = 1L)), NULL, xdr = FALSE))
  warn_limit <- getOption("shard.pool_warn_bytes", 1024^2)
  if (length(job_raw) + envelope > warn_limit) pool_warn_large(length(job_raw) + envelope, job, "the job (FUN, its globals and `...`)")

  attempts <- integer(ntask)
  died_pids <- vector("list", ntask)
  queue <- seq_len(ntask)
  done <- 0L
  task_bytes <- numeric(ntask)
  job_bytes_sent <- 0
  errors <- list()          # element errors: index -> info
  worker_failures <- list() # tasks that lost their worker more than `retries` times
  warnings_seen <- list()
  stopping <- FALSE
  task_tag <- function(t) sprintf("shard:%d:%d:%d", pool$id, job_id, t)
  sent_at <- numeric(ntask)
  rtt_sum <- 0
  rtt_n <- 0L
  if (progress) pb <- pb_open(n)

  send <- function(w, t) {
    if (is.null(task_raw[[t]])) {
      task_raw[[t]] <<- serialize(X[chunks[[t]]], NULL, xdr = FALSE)
      if (length(task_raw[[t]]) + envelope > warn_limit)
        pool_warn_large(length(task_raw[[t]]) + envelope, NULL, sprintf("elements %s of X", range_label(chunks[[t]])))
    }
    with_job <- !identical(pool$job_of[w], job_id)
    jr <- if (with_job) job_raw else raw(0)
    bytes <- envelope + length(jr) + length(task_raw[[t]])
    # In flight from before the first byte goes out: if the call is interrupted
    # mid-send, on.exit() then knows this worker may hold (part of) a task.
    inflight[[w]] <<- c(inflight[[w]], t)
    ok <- tryCatch({
      sendCall(pool$cl[[w]], worker_stub("pool_task"), list(job_id, jr, task_raw[[t]]), tag = task_tag(t))
      TRUE
    }, error = function(e) FALSE)
    if (!ok) {
      inflight[[w]] <<- inflight[[w]][-length(inflight[[w]])]
      return(FALSE)
    }
    if (with_job) {
      pool$job_of[w] <- job_id
      job_bytes_sent <<- job_bytes_sent + length(jr)
    }
    task_bytes[t] <<- envelope + length(task_raw[[t]])
    pool$bytes_sent[w] <- pool$bytes_sent[w] + bytes
    sent_at[t] <<- proc.time()[["elapsed"]]
    TRUE
  }

  lost_worker <- function(w) {
    # The worker has gone: replace it; the task it was running (the oldest sent)
    # is retried or reported, the ones queued behind it had not started.
    pid <- pool$pids[w]
    t <- inflight[[w]][1L]
    queue <<- c(inflight[[w]][-1L], queue)
    inflight[[w]] <<- integer()
    pool$dead[w] <- TRUE
    try(close(pool$cl[[w]]$con), silent = TRUE)
    attempts[t] <<- attempts[t] + 1L
    died_pids[[t]] <<- c(died_pids[[t]], pid)
    if (attempts[t] <= retries && !stopping) {
      queue <<- c(t, queue)
    } else {
      worker_failures[[length(worker_failures) + 1L]] <<- list(task = t, pids = died_pids[[t]])
      if (on_error == "stop") stopping <<- TRUE
      for (i in chunks[[t]]) {
        if (on_error == "return")
          results[i] <<- list(task_error(i, nms, sprintf("the worker died (pids %s)", paste(died_pids[[t]], collapse = ", ")),
                                         NA_integer_, NA_integer_))
      }
      done <<- done + length(chunks[[t]])
    }
    pool_replace_worker(pool, w)
  }

  while ((length(queue) && !stopping) || any(lengths(inflight) > 0L)) {
    # Hand out chunks to the least loaded workers (dynamic load balancing).
    while (length(queue) && !stopping && min(load <- lengths(inflight)) < depth) {
      w <- which.min(load)
      t <- queue[1]
      queue <- queue[-1]
      if (!send(w, t)) {
        # The worker was gone before it got the task: replace it, the task was not run.
        queue <- c(t, queue)
        pool_replace_worker(pool, w)
      }
    }
    active <- which(lengths(inflight) > 0L)
    if (!length(active)) break
    ready <- socketSelect(lapply(pool$cl[active], `[[`, "con"), FALSE, timeout = 1)
    if (!any(ready)) {
      # No message: also catch a worker whose process vanished without closing its socket.
      for (w in active) if (!proc_alive(pool$pids[w])) lost_worker(w)
      next
    }
    for (w in active[ready]) {
      t <- inflight[[w]][1L]
      msg <- tryCatch(recvData(pool$cl[[w]]), error = function(e) e)
      if (inherits(msg, "error")) {
        lost_worker(w)
        next
      }
      # A message that is not the answer to this task (left over from a call that
      # was cut short) is dropped; the answer follows it.
      if (!identical(msg$tag, task_tag(t))) next
      r <- msg$value
      inflight[[w]] <- inflight[[w]][-1L]
      if (rtt_n < 2L * pool$n && length(inflight[[w]]) == 0L) {
        rtt_sum <- rtt_sum + (proc.time()[["elapsed"]] - sent_at[t])
        rtt_n <- rtt_n + 1L
        if (rtt_n >= pool$n) depth <- if (prefetch && rtt_sum / rtt_n < 0.01) 2L else 1L
      }
      pool$tasks[w] <- pool$tasks[w] + 1L
      idx <- chunks[[t]]
      if (inherits(r, "try-error")) {
        # The task failed outside FUN (e.g. setting up the job on the worker).
        pool$job_of[w] <- NA_integer_
        msg <- as.character(r)
        for (i in idx) {
          errors[[as.character(i)]] <- list(index = i, worker = w, pid = pool$pids[w], message = msg, call = NULL)
          if (on_error == "return") results[i] <- list(task_error(i, nms, msg, w, pool$pids[w]))
        }
        if (on_error == "stop") stopping <- TRUE
      } else {
        vals <- r$values
        for (k in seq_along(idx)) if (!is.null(vals[[k]])) results[[idx[k]]] <- vals[[k]]
        for (e in r$errors) {
          i <- idx[e$k]
          errors[[as.character(i)]] <- list(index = i, worker = w, pid = r$pid, message = e$message, call = e$call)
          if (on_error == "return") results[i] <- list(task_error(i, nms, e$message, w, r$pid, e$call))
        }
        if (length(r$errors) && on_error == "stop") stopping <- TRUE
        for (wn in r$warnings) if (length(warnings_seen) < 10L)
          warnings_seen[[length(warnings_seen) + 1L]] <- list(index = idx[wn$k], message = wn$message, worker = w)
      }
      done <- done + length(idx)
      if (!is.null(pb)) pb_set(pb, done)
    }
  }
  elapsed <- proc.time()[["elapsed"]] - t0
  sent <- task_bytes[task_bytes > 0]
  pool$last_run <- list(elements = n, tasks = ntask, chunk_size = chunk_size, elapsed = elapsed,
                        job_bytes = length(job_raw), job_bytes_sent = job_bytes_sent,
                        task_bytes_median = if (length(sent)) stats::median(sent) else NA_real_,
                        task_bytes_max = if (length(sent)) max(sent) else NA_real_,
                        task_bytes_total = sum(sent), retried = sum(attempts > 0L),
                        errors = length(errors), lost = length(worker_failures), depth = depth,
                        round_trip = if (rtt_n) rtt_sum / rtt_n else NA_real_)
  pool_release_job(pool, job_id)
  for (wn in warnings_seen)
    warning(sprintf("pool_lapply(): element %s (worker %d): %s", element_label(wn$index, nms), wn$worker, wn$message),
            call. = FALSE)

  if (length(worker_failures) && on_error == "stop") {
    f <- worker_failures[[1]]
    stop(structure(class = c("shard_worker_died", "shard_pool_error", "error", "condition"), list(
      message = sprintf(paste0("pool_lapply(): the worker running element%s %s died %d time%s (pid%s %s)%s; ",
                               "the element%s could not be computed"),
                        if (length(chunks[[f$task]]) > 1) "s" else "", element_label(chunks[[f$task]], nms),
                        length(f$pids), if (length(f$pids) > 1) "s" else "", if (length(f$pids) > 1) "s" else "",
                        paste(f$pids, collapse = ", "),
                        if (retries > 0) sprintf(", also when run again (%d retr%s)", retries,
                                                 if (retries > 1) "ies" else "y") else "",
                        if (length(chunks[[f$task]]) > 1) "s" else ""),
      call = NULL, index = chunks[[f$task]], pids = f$pids)))
  }
  if (length(errors) && on_error == "stop") {
    first <- errors[[order(vapply(errors, `[[`, 0, "index"))[1]]]
    more <- setdiff(sort(vapply(errors, `[[`, 0, "index")), first$index)
    stop(structure(class = c("shard_task_error", "shard_pool_error", "error", "condition"), list(
      message = sprintf("pool_lapply(): FUN failed on element %s of %d (worker %d, pid %d)%s: %s%s",
                        element_label(first$index, nms), n, first$worker, first$pid,
                        if (!is.null(first$call)) paste0(" in ", first$call) else "", first$message,
                        if (length(more)) sprintf(" [and %d more failed element%s: %s]", length(more),
                                                  if (length(more) > 1) "s" else "", range_label(more)) else ""),
      call = NULL, index = first$index, worker = first$worker, pid = first$pid,
      worker_message = first$message, failed = sort(c(first$index, more)))))
  }
  if (length(errors) || length(worker_failures)) {
    bad <- sort(unique(c(vapply(errors, `[[`, 0, "index"),
                         unlist(lapply(worker_failures, function(f) chunks[[f$task]])))))
    warning(sprintf("pool_lapply(): %d of %d elements failed (%s); their results are shard_task_error conditions",
                    length(bad), n, range_label(bad)), call. = FALSE)
  }
  results
}

# Tells the workers holding job `job_id` to forget it (FUN, `...`, globals).
pool_release_job <- function(pool, job_id) {
  holders <- which(pool$job_of %in% job_id & !pool$dead)
  if (!length(holders)) return(invisible())
  sendCall <- par_fun("sendCall")
  recvData <- par_fun("recvData")
  tag <- sprintf("shard:%d:%d:clear", pool$id, job_id)
  pending <- integer()
  on.exit({
    # cut short: a worker whose answer was not read would hand it to the next call
    pool$dead[pending] <- TRUE
    pool$job_of[holders] <- NA_integer_
  })
  for (w in holders) {
    pending <- c(pending, w)
    if (!isTRUE(tryCatch({ sendCall(pool$cl[[w]], worker_stub("pool_clear_job"), list(), tag = tag); TRUE },
                         error = function(e) FALSE)))
      next   # stays pending: marked dead, replaced at the next call
  }
  for (w in holders) {
    repeat {
      msg <- tryCatch(recvData(pool$cl[[w]]), error = function(e) e)
      if (inherits(msg, "error")) break
      if (identical(msg$tag, tag)) {
        pending <- setdiff(pending, w)
        break
      }
    }
  }
  invisible()
}

task_error <- function(i, nms, message, worker, pid, call = NULL) {
  structure(class = c("shard_task_error", "error", "condition"),
            list(message = sprintf("element %s: %s", element_label(i, nms), message), call = NULL,
                 index = i, worker = worker, pid = pid, worker_message = message, worker_call = call))
}

element_label <- function(i, nms) {
  if (length(i) > 1) return(range_label(i))
  if (!is.null(nms) && !is.na(nms[i]) && nzchar(nms[i])) sprintf("%d (\"%s\")", i, nms[i]) else as.character(i)
}

range_label <- function(i) {
  i <- sort(i)
  if (length(i) > 1 && all(diff(i) == 1L)) return(sprintf("%d..%d", i[1], i[length(i)]))
  if (length(i) > 10) return(paste0(paste(i[1:10], collapse = ", "), ", ..."))
  paste(i, collapse = ", ")
}

pool_warn_large <- function(bytes, job, what) {
  if (isTRUE(.pool_state$warned_large)) return(invisible())
  .pool_state$warned_large <- TRUE
  parts <- ""
  if (!is.null(job)) {
    size_of <- function(g) as.numeric(length(serialize(g, NULL, xdr = FALSE)))
    sz <- vapply(job$globals, size_of, 0)
    if (length(job$dots)) {
      d <- vapply(job$dots, size_of, 0)
      dn <- names(job$dots)
      if (is.null(dn)) dn <- character(length(d))
      dn[!nzchar(dn)] <- paste0("..", which(!nzchar(dn)))
      names(d) <- dn
      sz <- c(sz, d)
    }
    env <- environment(job$fun)
    if (is_local_env(env)) {
      loc <- as.list(env, all.names = TRUE)
      sz <- c(sz, vapply(loc, size_of, 0))
    }
    sz <- sort(sz[sz > 64 * 1024], decreasing = TRUE)
    if (length(sz)) parts <- paste0(" (largest parts: ", paste(sprintf("`%s` %s", names(sz), format_bytes_vec(sz))[seq_len(min(3, length(sz)))],
                                                            collapse = ", "), ")")
  }
  warning(sprintf(paste0("shard: pool_lapply() sends %s of %s to each worker%s. ",
                         "share() large inputs once and use the shared object in FUN: workers then receive ",
                         "a handle of a few hundred bytes (warned once per session)."),
                  format_bytes(bytes), what, parts), call. = FALSE)
}

# Progress bar: the `progress` package when installed, else utils::txtProgressBar.
pb_open <- function(total) {
  pb <- new.env(parent = emptyenv())
  pb$at <- 0
  if (requireNamespace("progress", quietly = TRUE)) {
    pb$kind <- "progress"
    pb$bar <- progress::progress_bar$new(total = total, clear = FALSE, force = TRUE, show_after = 0,
                                         format = "pool_lapply [:bar] :current/:total (:percent) eta :eta")
    pb$bar$tick(0)
  } else {
    pb$kind <- "txt"
    pb$bar <- utils::txtProgressBar(min = 0, max = total, style = 3, file = stderr())
  }
  pb
}

pb_set <- function(pb, value) {
  if (pb$kind == "progress") {
    if (value > pb$at && !pb$bar$finished) pb$bar$tick(value - pb$at)
  } else utils::setTxtProgressBar(pb$bar, value)
  pb$at <- value
}

pb_close <- function(pb) {
  if (pb$kind == "progress") { if (!pb$bar$finished) pb$bar$terminate() } else close(pb$bar)
}

#' @export
pool_sapply <- function(X, FUN, ..., simplify = TRUE, USE.NAMES = TRUE, pool = NULL, chunk_size = 1L,
                        progress = getOption("shard.progress", interactive())) {
  FUN <- match.fun(FUN)
  USE.NAMES <- arg_flag(USE.NAMES, "USE.NAMES")
  if (!(isTRUE(simplify) || isFALSE(simplify) || identical(simplify, "array")))
    stop("shard: `simplify` must be TRUE, FALSE or \"array\"", call. = FALSE)
  answer <- pool_lapply(X = X, FUN = FUN, ..., pool = pool, chunk_size = chunk_size, progress = progress)
  if (USE.NAMES && is.character(X) && is.null(names(answer))) names(answer) <- X
  if (!isFALSE(simplify) && length(answer)) simplify2array(answer, higher = (simplify == "array")) else answer
}
