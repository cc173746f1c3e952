# pool_lapply() and pool_sapply(): lapply()/sapply() on a pool's workers.
#
# The front end: checks the arguments, packs the job (pool_job.R), splits X into
# chunks of `chunk_size` elements (one task each), hands them to the scheduler
# (pool_scheduler.R) and turns the workers' answers into results in the order
# of X, with its names; failures are reported by pool_errors.R.

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

  t0 <- proc.time()[["elapsed"]]
  # What the call collects from the answers (the scheduler's callbacks fill it).
  out <- new.env(parent = emptyenv())
  out$results <- results
  out$errors <- list()           # element errors: index -> info
  out$worker_failures <- list()  # tasks that lost their worker more than `retries` times
  out$warnings <- list()
  out$done <- 0L
  out$pb <- NULL
  run <- NULL
  pool$busy <- TRUE
  on.exit({
    if (!is.null(run)) sched_abort(run)
    if (!is.null(out$pb)) pb_close(out$pb)
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
  envelope <- transport_message_bytes(worker_stub("pool_task"), list(job_id, raw(0), NULL))
  warn_limit <- getOption("shard.pool_warn_bytes", 1024^2)
  if (length(job_raw) + envelope > warn_limit)
    pool_warn_large(length(job_raw) + envelope, job, "the job (FUN, its globals and `...`)")

  # a task's elements travel as they are (serialized once, in the message)
  payload <- function(t) X[chunks[[t]]]
  on_answer <- function(t, w, r, time) {
    lapply_collect(out, r, chunks[[t]], w, pool$pids[w], nms, on_error)
    if (inherits(r, "try-error")) pool$job_of[w] <- NA_integer_
    if (on_error == "stop" && length(out$errors)) run$stopping <- TRUE
    out$done <- out$done + length(chunks[[t]])
    if (!is.null(out$pb)) pb_set(out$pb, out$done)
  }
  on_lost <- function(t, pids) {
    out$worker_failures[[length(out$worker_failures) + 1L]] <- list(task = t, pids = pids)
    if (on_error == "stop") run$stopping <- TRUE
    if (on_error == "return") for (i in chunks[[t]])
      out$results[i] <- list(task_error(i, nms, sprintf("the worker died (pids %s)", paste(pids, collapse = ", ")),
                                        NA_integer_, NA_integer_))
    out$done <- out$done + length(chunks[[t]])
  }
  run <- sched_new(pool, job_id, job_raw, ntask, payload, on_answer, on_lost, retries)
  run$warn_bytes <- warn_limit
  run$on_large <- function(t, bytes)
    pool_warn_large(bytes, NULL, sprintf("elements %s of X", range_label(chunks[[t]])))
  if (progress) out$pb <- pb_open(n)
  sched_loop(run)

  elapsed <- proc.time()[["elapsed"]] - t0
  sent <- run$task_bytes[run$task_bytes > 0]
  pool$last_run <- list(elements = n, tasks = ntask, chunk_size = chunk_size, elapsed = elapsed,
                        job_bytes = length(job_raw), job_bytes_sent = run$job_bytes_sent,
                        task_bytes_median = if (length(sent)) stats::median(sent) else NA_real_,
                        task_bytes_max = if (length(sent)) max(sent) else NA_real_,
                        task_bytes_total = sum(sent), retried = sum(run$attempts > 0L),
                        errors = length(out$errors), lost = length(out$worker_failures), depth = run$depth,
                        round_trip = sched_round_trip(run))
  pool_release_job(pool, job_id)
  pool_report_warnings(out$warnings, nms)
  pool_raise_failures(out$errors, out$worker_failures, chunks, n, nms, on_error, retries)
  out$results
}

# Files one task's answer `r` (from pool_task(), or a try-error when the task
# failed outside FUN, e.g. setting up the job) into the call's results.
lapply_collect <- function(out, r, idx, w, pid, nms, on_error) {
  if (inherits(r, "try-error")) {
    msg <- as.character(r)
    for (i in idx) {
      out$errors[[as.character(i)]] <- list(index = i, worker = w, pid = pid, message = msg, call = NULL)
      if (on_error == "return") out$results[i] <- list(task_error(i, nms, msg, w, pid))
    }
    return(invisible())
  }
  vals <- r$values
  for (k in seq_along(idx)) if (!is.null(vals[[k]])) out$results[[idx[k]]] <- vals[[k]]
  for (e in r$errors) {
    i <- idx[e$k]
    out$errors[[as.character(i)]] <- list(index = i, worker = w, pid = r$pid, message = e$message, call = e$call)
    if (on_error == "return") out$results[i] <- list(task_error(i, nms, e$message, w, r$pid, e$call))
  }
  for (wn in r$warnings) if (length(out$warnings) < 10L)
    out$warnings[[length(out$warnings) + 1L]] <- list(index = idx[wn$k], message = wn$message, worker = w)
  invisible()
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
pool_sapply <- function(X, FUN, ..., simplify = TRUE, pool = NULL, USE.NAMES = TRUE, chunk_size = 1L,
                        progress = getOption("shard.progress", interactive())) {
  FUN <- match.fun(FUN)
  USE.NAMES <- arg_flag(USE.NAMES, "USE.NAMES")
  if (!(isTRUE(simplify) || isFALSE(simplify) || identical(simplify, "array")))
    stop("shard: `simplify` must be TRUE, FALSE or \"array\"", call. = FALSE)
  answer <- pool_lapply(X = X, FUN = FUN, ..., pool = pool, chunk_size = chunk_size, progress = progress)
  if (USE.NAMES && is.character(X) && is.null(names(answer))) names(answer) <- X
  if (!isFALSE(simplify) && length(answer)) simplify2array(answer, higher = (simplify == "array")) else answer
}
