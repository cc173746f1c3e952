# pool_dispatch(): evaluates one expression on one chosen worker and waits for
# the value. The variables the expression uses are looked up in `envir` (and
# its parents up to the global environment) and sent with it; functions from
# packages are found on the worker.

#' @export
pool_dispatch <- function(worker_id, expr, envir = parent.frame(), pool = NULL, timeout = 3600) {
  pool <- resolve_pool(pool)
  if (!is.numeric(worker_id) || length(worker_id) != 1L || is.na(worker_id) || worker_id != round(worker_id) ||
      worker_id < 1 || worker_id > pool$n)
    stop(sprintf("shard: `worker_id` must be a single worker id from 1 to %d (the pool has %d worker%s)",
                 pool$n, pool$n, if (pool$n == 1) "" else "s"), call. = FALSE)
  if (!is.environment(envir)) stop("shard: `envir` must be an environment", call. = FALSE)
  if (!is.numeric(timeout) || length(timeout) != 1L || is.na(timeout) || timeout <= 0)
    stop("shard: `timeout` must be a single number of seconds > 0", call. = FALSE)
  w <- as.integer(worker_id)
  pool$busy <- TRUE
  on.exit(pool$busy <- FALSE)
  if (pool_worker_gone(pool, w)) pool_replace_worker(pool, w)
  vars <- dispatch_variables(expr, envir)
  pid <- pool$pids[w]
  r <- pool_call_worker(pool, w, "pool_eval_expr", list(expr, vars), timeout = timeout)
  if (!r$ok) {
    stop(structure(class = c("shard_worker_died", "shard_pool_error", "error", "condition"), list(
      message = if (r$why == "timeout")
        sprintf("shard: pool_dispatch(): worker %d (pid %d) did not answer within %g s; it was stopped and replaced (raise `timeout` for longer work)",
                w, pid, timeout)
      else sprintf("shard: pool_dispatch(): worker %d (pid %d) died while evaluating the expression; it was replaced",
                   w, pid),
      call = NULL, worker = w, pid = pid, reason = r$why)))
  }
  pool$tasks[w] <- pool$tasks[w] + 1L
  pool$dispatched <- pool$dispatched + 1L
  if (!r$success) {
    msg <- as.character(r$value)
    stop(structure(class = c("shard_task_error", "shard_pool_error", "error", "condition"), list(
      message = sprintf("shard: pool_dispatch(): the expression failed on worker %d (pid %d): %s", w, pid,
                        sub("\n$", "", msg)),
      call = NULL, worker = w, pid = pid, worker_message = msg)))
  }
  r$value
}

# The variables `expr` uses, from `envir` or its parents up to the global
# environment (package and namespace objects are left to the worker).
dispatch_variables <- function(expr, envir) {
  if (!is.language(expr) && !is.expression(expr)) return(list())
  out <- list()
  for (v in all.names(expr, functions = TRUE, unique = TRUE)) {
    e <- envir
    while (!identical(e, emptyenv()) && !exists(v, envir = e, inherits = FALSE)) e <- parent.env(e)
    if (identical(e, emptyenv())) next
    if (identical(e, globalenv()) || is_local_env(e)) out[[v]] <- get(v, envir = e, inherits = FALSE)
  }
  out
}

# Worker side: evaluates `expr` with `vars` in an environment whose parent is
# the worker's global environment.
pool_eval_expr <- function(expr, vars) {
  env <- list2env(vars, parent = globalenv())
  if (is.expression(expr)) {
    value <- NULL
    for (e in expr) value <- eval(e, env)
    value
  } else eval(expr, env)
}
