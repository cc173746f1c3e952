# The scheduler: runs the tasks of one call on the workers of a pool.
#
# A run is an environment (created by sched_new()) holding the call's job (the
# message every worker gets once: FUN, `...`, globals), its tasks (payloads, sent
# one per message), the queue of tasks not yet sent, the tasks in flight on each
# worker slot, and the attempts and deaths of each task. The scheduler knows
# nothing of what a task means: the caller (pool_lapply(), and later
# shard_map()) gives it
#   - payload(t): the raw bytes of task t (computed on first send, kept for retries);
#   - on_answer(t, w, value, time): what worker slot w answered for task t
#     (`value` is the worker function's return value, `time` its elapsed seconds);
#   - on_lost(t, pids): task t lost its worker more than `retries` times;
# and either may set run$stopping to stop handing out tasks (the tasks in flight
# are still awaited). Workers come and go only through pool_worker.R, and
# messages only through pool_transport.R.
#
# Dynamic load balancing: a worker slot gets the next queued task as soon as it
# has fewer than `depth` tasks in flight (depth 1: one at a time, the best
# balance). With options(shard.pool_prefetch = TRUE), once tasks turn out short
# (a round trip under 10 ms) each worker gets its next task before it answers
# the current one (depth 2), hiding the master's turnaround.

sched_new <- function(pool, job_id, job_raw, ntask, payload, on_answer, on_lost, retries,
                      runner = "pool_task") {
  run <- new.env(parent = emptyenv())
  run$pool <- pool
  run$job_id <- job_id
  run$job_raw <- job_raw
  run$job_bytes_sent <- 0
  run$ntask <- ntask
  run$payload <- payload
  run$task_raw <- vector("list", ntask)
  run$on_answer <- on_answer
  run$on_lost <- on_lost
  run$retries <- retries
  run$runner <- runner
  run$queue <- seq_len(ntask)
  run$inflight <- rep(list(integer()), pool$n)   # per slot, oldest first
  run$attempts <- integer(ntask)                  # times a task lost its worker
  run$died_pids <- vector("list", ntask)
  run$task_bytes <- numeric(ntask)
  run$sent_at <- numeric(ntask)
  run$stopping <- FALSE
  run$depth <- 1L
  run$prefetch <- isTRUE(getOption("shard.pool_prefetch", FALSE))
  run$rtt_sum <- 0
  run$rtt_n <- 0L
  run$check_interval <- getOption("shard.pool_check_interval", 1)
  run$supervised <- is.finite(pool$rss_limit_bytes) || is.finite(pool$rss_drift_threshold)
  run$stub <- worker_stub(runner)
  run$timeout <- Inf                              # seconds a task may run (shard_map's timeout=)
  run$timed_out <- integer()                      # tasks whose worker was stopped for running too long
  run
}

sched_tag <- function(run, t) sprintf("shard:%d:%d:%d", run$pool$id, run$job_id, t)

# Runs the queue to the end (or until stopped and drained).
sched_loop <- function(run) {
  pool <- run$pool
  while ((length(run$queue) && !run$stopping) || any(lengths(run$inflight) > 0L)) {
    sched_fill(run)
    active <- which(lengths(run$inflight) > 0L)
    if (!length(active)) break
    ready <- transport_ready(pool$cl[active], timeout = 1)
    # A task running longer than run$timeout: its worker is stopped and replaced,
    # the task retried like one whose worker died (shard_map()'s timeout=).
    if (is.finite(run$timeout) && sched_timeouts(run, active[!ready])) next
    if (!any(ready)) {
      # No message for a second: the heartbeat. A worker whose process vanished
      # without closing its socket is lost; the others are seen alive.
      for (w in active) {
        if (!proc_alive(pool$pids[w])) sched_lost_worker(run, w) else pool$last_seen[w] <- unclass(Sys.time())
      }
      next
    }
    for (w in active[ready]) sched_receive(run, w)
  }
  invisible(run)
}

# Stops the workers (of slots `ws`, no answer ready) whose oldest task has run
# longer than run$timeout; TRUE if any was stopped.
sched_timeouts <- function(run, ws) {
  now <- proc.time()[["elapsed"]]
  hit <- FALSE
  for (w in ws) {
    t <- run$inflight[[w]][1L]
    if (!is.na(t) && now - run$sent_at[t] > run$timeout) {
      run$timed_out <- c(run$timed_out, t)
      pool_drop_worker(run$pool, w)
      sched_lost_worker(run, w)
      hit <- TRUE
    }
  }
  hit
}

# Hands out queued tasks to the least loaded worker slots.
sched_fill <- function(run) {
  while (length(run$queue) && !run$stopping && min(load <- lengths(run$inflight)) < run$depth) {
    w <- which.min(load)
    t <- run$queue[1]
    run$queue <- run$queue[-1]
    if (!sched_send(run, w, t)) {
      # The worker was gone before it got the task: replace it, the task was not run.
      run$queue <- c(t, run$queue)
      pool_replace_worker(run$pool, w)
    }
  }
}

# Sends task `t` to slot `w` (with the job, if that worker does not hold it yet).
sched_send <- function(run, w, t) {
  pool <- run$pool
  if (is.null(run$task_raw[[t]])) sched_set(run, "task_raw", t, list(run$payload(t)))
  with_job <- !identical(pool$job_of[w], run$job_id)
  jr <- if (with_job) run$job_raw else raw(0)
  # In flight from before the first byte goes out: if the call is interrupted
  # mid-send, sched_abort() then knows this worker may hold (part of) a task.
  run$inflight[[w]] <- c(run$inflight[[w]], t)
  bytes <- tryCatch(transport_send(pool$cl[[w]], run$stub, list(run$job_id, jr, run$task_raw[[t]]),
                                   sched_tag(run, t)),
                    error = function(e) NA_real_)
  if (is.na(bytes)) {
    run$inflight[[w]] <- run$inflight[[w]][-length(run$inflight[[w]])]
    return(FALSE)
  }
  if (with_job) {
    pool$job_of[w] <- run$job_id
    run$job_bytes_sent <- run$job_bytes_sent + length(jr)
  }
  sched_set(run, "task_bytes", t, bytes - length(jr))
  pool$bytes_sent[w] <- pool$bytes_sent[w] + bytes
  sched_set(run, "sent_at", t, proc.time()[["elapsed"]])
  TRUE
}

# run$<name>[i] <- value, in place: `run$x[i] <- v` inside a function copies
# the whole per-task vector at every task (O(tasks^2) for 10 000 tiny tasks);
# taking the vector out of the environment first leaves it one reference.
sched_set <- function(run, name, i, value) {
  v <- run[[name]]
  run[[name]] <- NULL
  v[i] <- value
  run[[name]] <- v
  invisible()
}

# Reads the answer slot `w` has ready (for its oldest task in flight).
sched_receive <- function(run, w) {
  pool <- run$pool
  t <- run$inflight[[w]][1L]
  msg <- tryCatch(transport_recv(pool$cl[[w]]), error = function(e) e)
  if (inherits(msg, "error")) return(sched_lost_worker(run, w))
  # A message that is not the answer to this task (left over from a call that
  # was cut short) is dropped; the answer follows it.
  if (!identical(msg$tag, sched_tag(run, t))) return(invisible())
  run$inflight[[w]] <- run$inflight[[w]][-1L]
  if (run$rtt_n < 2L * pool$n && length(run$inflight[[w]]) == 0L) {
    run$rtt_sum <- run$rtt_sum + (proc.time()[["elapsed"]] - run$sent_at[t])
    run$rtt_n <- run$rtt_n + 1L
    if (run$rtt_n >= pool$n) run$depth <- if (run$prefetch && run$rtt_sum / run$rtt_n < 0.01) 2L else 1L
  }
  pool$tasks[w] <- pool$tasks[w] + 1L
  pool$last_seen[w] <- unclass(Sys.time())
  run$on_answer(t, w, msg$value, msg$time)
  # Between tasks: a worker over its memory limits is recycled before it gets
  # its next task (never with a task in flight, so no result is lost). Its
  # memory is read at most every getOption("shard.pool_check_interval") seconds
  # (1): with tiny tasks, reading /proc after each answer (every ~0.1 s was
  # measured too) slowed a 2000-task call by half on the loaded 2-core VM
  # (benches/r/pool_supervision.R); tests set it to 0 to check every task.
  if (run$supervised && !length(run$inflight[[w]]) && length(run$queue) && !run$stopping &&
      proc.time()[["elapsed"]] - pool$last_check[w] >= run$check_interval)
    pool_supervise(pool, w)
  invisible()
}

# Slot `w` lost its worker: replace it; the task it was running (the oldest
# sent) is retried or given up, the ones queued behind it had not started.
sched_lost_worker <- function(run, w) {
  pool <- run$pool
  pid <- pool$pids[w]
  t <- run$inflight[[w]][1L]
  run$queue <- c(run$inflight[[w]][-1L], run$queue)
  run$inflight[[w]] <- integer()
  pool$dead[w] <- TRUE
  transport_close(pool$cl[[w]])
  run$attempts[t] <- run$attempts[t] + 1L
  run$died_pids[[t]] <- c(run$died_pids[[t]], pid)
  if (run$attempts[t] <= run$retries && !run$stopping) {
    run$queue <- c(t, run$queue)
    pool$retries <- pool$retries + 1L
  } else {
    run$on_lost(t, run$died_pids[[t]])
  }
  pool_replace_worker(pool, w)
  invisible()
}

# Cut short (error or interrupt) with tasks in flight: those workers would
# answer later, so they are stopped here and replaced at the next call.
sched_abort <- function(run) {
  for (w in which(lengths(run$inflight) > 0L)) pool_drop_worker(run$pool, w)
  run$inflight <- rep(list(integer()), run$pool$n)
  invisible()
}

# Seconds of the round trips measured (NA if none).
sched_round_trip <- function(run) if (run$rtt_n) run$rtt_sum / run$rtt_n else NA_real_
