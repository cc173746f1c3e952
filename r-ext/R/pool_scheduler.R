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
# balance). With prefetch (run$prefetch: options(shard.runtime_prefetch) for
# shard_map and friends, on by default; options(shard.pool_prefetch) for
# pool_lapply, off by default), once tasks turn out short (a round trip under
# 10 ms over the first 2 per worker) each worker gets its next task before it
# answers the current one (depth 2), hiding the master's turnaround: 3000
# one-element tasks on the loaded 2-core VM took 0.62x instead of 1.04x the
# time of parLapply(chunk.size = 1) with pool_lapply(), 1.02x instead of 1.45x
# with shard_map() (same runs); depth 3 or 4 was slower (1.11x, 1.28x). The
# price: a task queued behind a slow one waits for it (pool_lapply() keeps
# its "a slow element does not hold back the others" by default).

sched_new <- function(pool, job_id, job_raw, ntask, payload, on_answer, on_lost, retries,
                      runner = "pool_task") {
  run <- new.env(parent = emptyenv())
  run$pool <- pool
  run$job_id <- as.integer(job_id)
  run$job_raw <- job_raw
  run$job_bytes_sent <- 0
  run$ntask <- ntask
  run$payload <- payload
  run$on_answer <- on_answer
  run$on_lost <- on_lost
  run$on_large <- NULL                            # function(t, bytes): a task message over warn_bytes
  run$warn_bytes <- Inf
  run$retries <- retries
  run$runner <- runner
  # The queue, in the order tasks are handed out: `front` (tasks put back after
  # their worker was lost), the fresh tasks next_task..ntask (a counter, not a
  # vector: dropping the head of a 10 000-task vector copies it, ~40 µs a task),
  # then `back` (tasks retried after an error). See sched_pop().
  run$front <- integer()
  run$next_task <- 1L
  run$back <- integer()
  run$inflight <- rep(list(integer()), pool$n)   # per slot, oldest first
  run$inflight_at <- rep(list(numeric()), pool$n) # when each was sent (proc.time elapsed)
  run$load <- integer(pool$n)                     # lengths(run$inflight)
  run$attempts <- integer(ntask)                  # times a task lost its worker
  run$died_pids <- vector("list", ntask)
  run$task_bytes <- numeric(ntask)
  run$stopping <- FALSE
  run$depth <- 1L
  run$prefetch <- isTRUE(getOption("shard.pool_prefetch", FALSE))
  run$rtt_sum <- 0
  run$rtt_n <- 0L
  run$check_interval <- getOption("shard.pool_check_interval", 1)
  run$supervised <- is.finite(pool$rss_limit_bytes) || is.finite(pool$rss_drift_threshold)
  run$stub <- worker_stub(runner)
  run$tag_base <- c(as.integer(pool$id), run$job_id)
  run$io <- NULL                                  # slot whose socket is being read or written
  run$rounds <- 0L                                # select rounds (timeouts are checked every 64th)
  run$check_due <- logical(pool$n)                # a memory check asked for (shard_map's health_check_interval)
  run$check_due_gap <- min(run$check_interval, 0.1)
  run$timeout <- Inf                              # seconds a task may run (shard_map's timeout=)
  run$timed_out <- integer()                      # tasks whose worker was stopped for running too long
  run
}

# Tasks still queued.
sched_queued <- function(run) length(run$front) + (run$ntask - run$next_task + 1L) + length(run$back)

# The next queued task (the queue must not be empty).
sched_pop <- function(run) {
  if (length(f <- run$front)) {
    run$front <- f[-1L]
    return(f[1L])
  }
  if ((t <- run$next_task) <= run$ntask) {
    run$next_task <- t + 1L
    return(t)
  }
  b <- run$back
  run$back <- b[-1L]
  b[1L]
}

# Puts tasks back at the head of the queue (their worker was lost: they go first).
sched_requeue_front <- function(run, ts) run$front <- c(ts, run$front)

# Queues task `t` again at the end (retried after an error in FUN).
sched_requeue <- function(run, t) run$back <- c(run$back, t)

# Runs the queue to the end (or until stopped and drained). Sending and reading
# go through sched_pump() under ONE tryCatch for the whole run, not one per
# message (a tryCatch costs ~7 µs; a message a few tens): a socket error
# unwinds to here, is charged to the slot recorded in run$io (its worker is
# lost) and the pump starts again. An error anywhere else (a callback) is
# raised as it is.
sched_loop <- function(run) {
  repeat {
    err <- tryCatch(sched_pump(run), error = function(e) e)
    if (!inherits(err, "error")) break
    io <- run$io
    run$io <- NULL
    if (is.null(io)) stop(err)
    if (io$op == "send") {
      # The worker was gone before it got the task: replace it, the task was not run.
      w <- io$w
      t <- sched_unsend(run, w)
      sched_requeue_front(run, t)
      pool_replace_worker(run$pool, w)
    } else {
      sched_lost_worker(run, io$w)
    }
  }
  invisible(run)
}

sched_pump <- function(run) {
  pool <- run$pool
  timed <- is.finite(run$timeout)
  repeat {
    if (!run$stopping && sched_queued(run)) sched_fill(run)
    active <- which(run$load > 0L)
    if (!length(active)) return(invisible())
    ready <- transport_ready_cons(pool$cons[active], timeout = 1)
    # A task running longer than run$timeout: its worker is stopped and replaced,
    # the task retried like one whose worker died (shard_map()'s timeout=).
    # Looked at when no answer came within the second, and every 64th round
    # while answers keep coming (a timeout is seconds; a round, microseconds).
    if (timed && (!any(ready) || (run$rounds <- run$rounds + 1L) %% 64L == 0L) &&
        sched_timeouts(run, active[!ready])) next
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
}

# Stops the workers (of slots `ws`, no answer ready) whose oldest task has run
# longer than run$timeout; TRUE if any was stopped.
sched_timeouts <- function(run, ws) {
  now <- proc.time()[["elapsed"]]
  hit <- FALSE
  for (w in ws) {
    t <- run$inflight[[w]][1L]
    if (!is.na(t) && now - run$inflight_at[[w]][1L] > run$timeout) {
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
  depth <- run$depth
  while (!run$stopping && min(load <- run$load) < depth && sched_queued(run)) {
    w <- which.min(load)
    sched_send(run, w, sched_pop(run))
  }
}

# Sends task `t` to slot `w` (with the job, if that worker does not hold it
# yet): one message, the task's payload (an R object) serialized once, inside
# parallel's EXEC message. A retried task's payload is computed again (it is
# deterministic) rather than kept.
sched_send <- function(run, w, t) {
  pool <- run$pool
  with_job <- !identical(pool$job_of[w], run$job_id)
  jr <- if (with_job) run$job_raw else NULL
  node <- pool$cl[[w]]
  msg <- transport_encode(node, run$stub, list(run$job_id, jr, run$payload(t)), c(run$tag_base, t))
  # In flight from before the first byte goes out: if the call is interrupted
  # mid-send, sched_abort() then knows this worker may hold (part of) a task.
  run$inflight[[w]] <- c(run$inflight[[w]], t)
  run$inflight_at[[w]] <- c(run$inflight_at[[w]], proc.time()[[3L]])
  run$load[w] <- run$load[w] + 1L
  run$io <- list(op = "send", w = w)
  bytes <- transport_write(node, msg)
  run$io <- NULL
  if (with_job) {
    pool$job_of[w] <- run$job_id
    run$job_bytes_sent <- run$job_bytes_sent + length(jr)
  }
  tb <- bytes - length(jr)
  sched_set(run, "task_bytes", t, tb)
  pool$bytes_sent[w] <- pool$bytes_sent[w] + bytes
  if (tb > run$warn_bytes && !is.null(run$on_large)) run$on_large(t, tb)
  invisible(TRUE)
}

# Takes back the task last put in flight on slot `w` (its send failed).
sched_unsend <- function(run, w) {
  infl <- run$inflight[[w]]
  k <- length(infl)
  run$inflight[[w]] <- infl[-k]
  run$inflight_at[[w]] <- run$inflight_at[[w]][-k]
  run$load[w] <- k - 1L
  infl[k]
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
  infl <- run$inflight[[w]]
  t <- infl[1L]
  run$io <- list(op = "recv", w = w)
  msg <- transport_recv(pool$cl[[w]])
  run$io <- NULL
  # A message that is not the answer to this task (left over from a call that
  # was cut short) is dropped; the answer follows it. Tags are
  # c(pool id, job id, task): integers, compared without formatting text.
  tg <- msg$tag
  if (!is.integer(tg) || length(tg) != 3L || tg[3L] != t || tg[2L] != run$job_id || tg[1L] != run$tag_base[1L])
    return(invisible())
  sent_at <- run$inflight_at[[w]][1L]
  run$inflight[[w]] <- infl[-1L]
  run$inflight_at[[w]] <- run$inflight_at[[w]][-1L]
  idle <- (run$load[w] <- length(infl) - 1L) == 0L
  if (idle && run$rtt_n < 2L * pool$n) {
    run$rtt_sum <- run$rtt_sum + (proc.time()[[3L]] - sent_at)
    run$rtt_n <- run$rtt_n + 1L
    if (run$rtt_n >= pool$n) run$depth <- if (run$prefetch && run$rtt_sum / run$rtt_n < 0.01)
      2L else 1L
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
  # A check asked for by the caller (run$check_due: shard_map()'s
  # health_check_interval) waits at most min(that, 0.1 s): every N tasks, but
  # not more often than ten times a second per worker.
  if (run$supervised && idle && !run$stopping && sched_queued(run) &&
      proc.time()[[3L]] - pool$last_check[w] >= (if (run$check_due[w]) run$check_due_gap else run$check_interval)) {
    run$check_due[w] <- FALSE
    pool_supervise(pool, w)
  }
  invisible()
}

# Slot `w` lost its worker: replace it; the task it was running (the oldest
# sent) is retried or given up, the ones queued behind it had not started.
sched_lost_worker <- function(run, w) {
  pool <- run$pool
  pid <- pool$pids[w]
  t <- run$inflight[[w]][1L]
  sched_requeue_front(run, run$inflight[[w]][-1L])
  run$inflight[[w]] <- integer()
  run$inflight_at[[w]] <- numeric()
  run$load[w] <- 0L
  pool$dead[w] <- TRUE
  transport_close(pool$cl[[w]])
  run$attempts[t] <- run$attempts[t] + 1L
  run$died_pids[[t]] <- c(run$died_pids[[t]], pid)
  if (run$attempts[t] <= run$retries && !run$stopping) {
    sched_requeue_front(run, t)
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
  run$inflight_at <- rep(list(numeric()), run$pool$n)
  run$load <- integer(run$pool$n)
  invisible()
}

# Seconds of the round trips measured (NA if none).
sched_round_trip <- function(run) if (run$rtt_n) run$rtt_sum / run$rtt_n else NA_real_
