# What a worker needs to run FUN (the "job"), and the worker side of a task.
#
# Master side: pool_prepare_fun() packs FUN with exactly the variables it uses;
# pool_release_job() tells the workers holding a job to forget it;
# pool_warn_large() warns (once) about a message that carries data share()
# should carry instead. Worker side: pool_task() runs one task (a chunk of
# elements) and pool_clear_job() forgets the job. Both run inside parallel's
# worker loop, sent as worker_stub()s (see pool_transport.R for the messages).

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

# Worker-side state (in a worker process): the job it holds.
.pool_worker <- new.env(parent = emptyenv())

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
pool_task <- function(job_id, job_raw, xs) {
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
  run1 <- function(FUN, X, i, ...) FUN(X[[i]], ...)
  fun <- st$fun
  dots <- st$dots
  n <- length(xs)
  values <- vector("list", n)
  errors <- list()
  warns <- list()
  k <- 0L
  # one handler for the task (it reads the current k), not one per element
  on_warning <- function(w) {
    if (length(warns) < 10L) warns[[length(warns) + 1L]] <<- list(k = k, message = conditionMessage(w))
    invokeRestart("muffleWarning")
  }
  for (k in seq_len(n)) {
    r <- withCallingHandlers(
      tryCatch(list(if (length(dots)) do.call(run1, c(list(fun, xs, k), dots), quote = TRUE) else run1(fun, xs, k)),
               error = function(e) e),
      warning = on_warning)
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
  # a job of shard_map() also holds its buffers' mappings (runtime_clear_job())
  if (is.function(st$on_clear)) {
    f <- st$on_clear
    st$on_clear <- NULL
    try(f(), silent = TRUE)
  }
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

# Tells the workers holding job `job_id` to forget it (FUN, `...`, globals).
pool_release_job <- function(pool, job_id) {
  holders <- which(pool$job_of %in% job_id & !pool$dead)
  if (!length(holders)) return(invisible())
  tag <- sprintf("shard:%d:%d:clear", pool$id, job_id)
  pending <- integer()
  on.exit({
    # cut short: a worker whose answer was not read would hand it to the next call
    pool$dead[pending] <- TRUE
    pool$job_of[holders] <- NA_integer_
  })
  for (w in holders) {
    pending <- c(pending, w)
    if (!isTRUE(tryCatch({ transport_send(pool$cl[[w]], worker_stub("pool_clear_job"), list(), tag); TRUE },
                         error = function(e) FALSE)))
      next   # stays pending: marked dead, replaced at the next call
  }
  for (w in holders) {
    repeat {
      msg <- tryCatch(transport_recv(pool$cl[[w]]), error = function(e) e)
      if (inherits(msg, "error")) break
      if (identical(msg$tag, tag)) {
        pending <- setdiff(pending, w)
        break
      }
    }
  }
  invisible()
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
