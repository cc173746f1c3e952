# Worker slots of a pool and their supervision: starting and setting up
# workers, replacing a worker that died, recycling one that grew too large, and
# the process facts (alive? memory?) read from /proc.
#
# A pool has `n` slots; slot i holds one worker process at a time (pool$cl[[i]],
# pool$pids[i]). A worker that dies is replaced in its slot (a death); a worker
# over its memory limits is stopped and replaced between tasks (a recycle). The
# slot number is what users see as "worker i". Every new worker, first or
# replacement, gets the caller's library paths, attaches shard, loads the pool's
# `packages` and evaluates its `init_expr`. Nodes are reached only through
# pool_transport.R.
#
# Supervision (see pool_supervise()): the figure watched is the worker's
# private resident memory, RssAnon = resident - shared pages of /proc/<pid>/statm
# (R's heap and what native code allocated). The pages of shared objects
# (shared memory or mapped files) and of the R binary are left out: a worker
# reading a 2 GB shared object does not own those pages, and recycling it would
# not give them back. A worker is over its limits when that figure exceeds the
# pool's `rss_limit`, or has grown from the worker's baseline (measured just
# after its set-up) by more than `rss_drift_threshold` times the baseline *and*
# by more than getOption("shard.pool_drift_min_bytes", 64 MiB) (an R worker's
# heap doubles from ~40 MB in ordinary use; without a floor every worker would
# be recycled for that). A worker over its limits is first asked to collect its
# garbage (one round trip, ~0.1 s): only if it is still over is it recycled,
# and not before `min_recycle_interval` seconds after it started.

# Starts `k` workers of the pool's type (a parallel cluster, not yet set up).
pool_make_cluster <- function(pool, k) transport_start(pool$type, k, pool$libs)

# Sets up each node of `cl`: library paths, shard attached, the pool's packages
# and init_expr; returns the pids.
pool_init_nodes <- function(pool, cl) {
  init <- function(libs, pkg, packages, init_expr) {
    .libPaths(libs)
    ok <- suppressPackageStartupMessages(require(pkg, character.only = TRUE, quietly = TRUE))
    if (!ok) stop(sprintf("package %s could not be loaded from %s", pkg, paste(libs, collapse = ":")))
    for (p in packages) {
      if (!suppressPackageStartupMessages(require(p, character.only = TRUE, quietly = TRUE)))
        stop(sprintf("package %s (in `packages`) could not be loaded from %s", p, paste(.libPaths(), collapse = ":")))
    }
    if (is.function(init_expr)) init_expr() else if (!is.null(init_expr)) eval(init_expr, globalenv())
    invisible(gc(verbose = FALSE))   # a clean heap for the RSS baseline
    # the worker's node (boot id / PID namespace, R/cluster.R): a pool with
    # workers on other nodes sends borrow= inputs with share(cluster =)
    list(pid = Sys.getpid(), node = get("node_identity", envir = asNamespace(pkg))()$key)
  }
  environment(init) <- globalenv()
  pids <- tryCatch(transport_call_all(cl, init, pool$libs, "shard", pool$packages, pool$init_expr),
                   error = function(e) stop("shard: pool workers could not start: ", conditionMessage(e),
                                            if (!is.null(pool$init_expr) || length(pool$packages))
                                              " (check `packages` and `init_expr` of pool_create())",
                                            call. = FALSE))
  structure(vapply(pids, function(p) as.integer(p$pid), 0L),
            nodes = vapply(pids, function(p) as.character(p$node), ""))
}

# Records the freshly started worker `node` (pid `pid`) in slot `i`.
pool_slot_started <- function(pool, i, node, pid, node_key = NA_character_) {
  cl <- pool$cl
  cl[[i]] <- node
  pool$cl <- cl
  cons <- pool$cons
  if (length(cons) != pool$n) cons <- vector("list", pool$n)
  cons[[i]] <- transport_con(node)
  pool$cons <- cons
  pool$pids[i] <- pid
  pool$node_keys[i] <- node_key
  pool$dead[i] <- FALSE
  pool$job_of[i] <- NA_integer_
  pool$spawned_at[i] <- proc.time()[["elapsed"]]
  pool$spawned_time[i] <- Sys.time()
  pool$last_seen[i] <- unclass(Sys.time())
  pool$needs_recycle[i] <- FALSE
  pool$rss_baseline[i] <- worker_rss(pid)
  pool$rss_last[i] <- pool$rss_baseline[i]
  invisible(pid)
}

# Starts one worker for slot `i` (the slot must be empty or its worker gone).
pool_start_worker <- function(pool, i) {
  cl1 <- pool_make_cluster(pool, 1L)
  newpid <- tryCatch(pool_init_nodes(pool, cl1), error = function(e) {
    try(parallel::stopCluster(cl1), silent = TRUE)
    stop(e)
  })
  pool_slot_started(pool, i, cl1[[1L]], newpid[1L], attr(newpid, "nodes")[1L])
}

# Replaces worker slot `i`, whose worker died (or is killed here if still
# there), by a fresh worker; counts a death.
pool_replace_worker <- function(pool, i) {
  node <- pool$cl[[i]]
  if (!is.null(node)) transport_close(node)
  pid <- pool$pids[i]
  if (!is.na(pid) && proc_alive(pid)) tools::pskill(pid, tools::SIGKILL)
  pool$dead[i] <- TRUE
  pool$deaths[i] <- pool$deaths[i] + 1L
  pool$replaced <- pool$replaced + 1L
  pool_start_worker(pool, i)
}

# Stops the (idle) worker of slot `i` cleanly and starts a fresh one in its
# place; counts a recycle. Only called between tasks: the slot has nothing in
# flight, so no result can be lost.
pool_recycle_worker <- function(pool, i, reason) {
  pid <- pool$pids[i]
  transport_stop(pool$cl[[i]])
  deadline <- proc.time()[["elapsed"]] + 2
  while (proc_alive(pid) && proc.time()[["elapsed"]] < deadline) Sys.sleep(0.01)
  if (proc_alive(pid)) tools::pskill(pid, tools::SIGKILL)
  pool$dead[i] <- TRUE
  pool$recycle_count[i] <- pool$recycle_count[i] + 1L
  pool$recycles <- pool$recycles + 1L
  pool$last_recycle_reason[i] <- reason
  pool_start_worker(pool, i)
}

# Marks slot `w` lost: its socket is closed and its process killed; the slot is
# replaced by pool_replace_worker() (now, or by pool_heal() at the next call).
pool_drop_worker <- function(pool, w) {
  if (!is.null(pool$cl[[w]])) transport_close(pool$cl[[w]])
  if (proc_alive(pool$pids[w])) try(tools::pskill(pool$pids[w], tools::SIGKILL), silent = TRUE)
  pool$dead[w] <- TRUE
}

# Is the worker of slot `i` gone? (An idle worker's socket that is readable has
# hit end of file: its process is gone.)
pool_worker_gone <- function(pool, i, idle = TRUE) {
  if (pool$dead[i] || is.null(pool$cl[[i]]) || !proc_alive(pool$pids[i])) return(TRUE)
  if (!idle) return(FALSE)
  ready <- tryCatch(transport_ready(list(pool$cl[[i]]), timeout = 0), error = function(e) TRUE)
  isTRUE(ready[1])
}

# Between calls: replaces the workers that have died since they were last used
# and recycles those over their limits (all workers are idle here).
pool_heal <- function(pool) {
  for (i in seq_len(pool$n)) {
    if (pool_worker_gone(pool, i)) pool_replace_worker(pool, i) else pool_supervise(pool, i)
  }
}

# ---------------------------------------------------------------------------
# Supervision

# Why slot `i`'s worker, at private RSS `rss`, is over its limits: "rss_limit",
# "rss_drift", or NA when it is within them.
pool_over_limits <- function(pool, i, rss) {
  if (is.na(rss)) return(NA_character_)
  if (rss > pool$rss_limit_bytes) return("rss_limit")
  base <- pool$rss_baseline[i]
  if (!is.na(base) && base > 0 && (rss - base) / base > pool$rss_drift_threshold &&
      rss - base > getOption("shard.pool_drift_min_bytes", 64 * 2^20))
    return("rss_drift")
  NA_character_
}

# Checks the idle worker of slot `i` and recycles it if it is over its limits
# (after a garbage collection that did not bring it back under). A worker that
# is `busy` (a task in flight) or younger than min_recycle_interval is only
# marked (needs_recycle) and recycled at a later check. Returns the action:
# list(worker_id, action = "none" / "recycle" / "defer_recycle" / "restart",
# reason, rss_before, rss_current, rss_drift).
pool_supervise <- function(pool, i, busy = FALSE) {
  if (!is.finite(pool$rss_limit_bytes) && !is.finite(pool$rss_drift_threshold))
    return(pool_action(pool, i, "none", NA_character_, NA_real_))   # supervision off
  pool$last_check[i] <- proc.time()[["elapsed"]]
  rss <- worker_rss(pool$pids[i])
  pool$rss_last[i] <- rss
  if (!is.na(rss)) pool$last_seen[i] <- unclass(Sys.time())
  reason <- pool_over_limits(pool, i, rss)
  if (!is.na(reason) && !busy) {
    # Garbage is not drift: collect it first, then look again.
    r <- pool_call_worker(pool, i, "pool_worker_gc", list(), timeout = 600)
    if (!r$ok) return(pool_action(pool, i, "restart", "worker_dead", rss))
    rss <- worker_rss(pool$pids[i])
    pool$rss_last[i] <- rss
    reason <- pool_over_limits(pool, i, rss)
  }
  if (is.na(reason)) {
    pool$needs_recycle[i] <- FALSE
    return(pool_action(pool, i, "none", NA_character_, rss))
  }
  age <- proc.time()[["elapsed"]] - pool$spawned_at[i]
  if (busy || age < pool$min_recycle_interval) {
    pool$needs_recycle[i] <- TRUE
    return(pool_action(pool, i, "defer_recycle", reason, rss))
  }
  pool_recycle_worker(pool, i, reason)
  pool_action(pool, i, "recycle", reason, rss)
}

pool_action <- function(pool, i, action, reason, rss) {
  base <- pool$rss_baseline[i]
  list(worker_id = i, pid = pool$pids[i], action = action, reason = reason, rss_before = rss,
       rss_current = pool$rss_last[i], rss_baseline = base,
       rss_drift = if (!is.na(rss) && !is.na(base) && base > 0) (rss - base) / base else NA_real_)
}

# Runs a worker function (by name, see worker_stub()) on the idle worker of slot
# `w` and waits up to `timeout` seconds for its answer. Returns list(ok = TRUE,
# value, success) or list(ok = FALSE, why = "died" / "timeout"); a worker that
# died or did not answer in time is killed and replaced (a death).
pool_call_worker <- function(pool, w, fun_name, args, timeout) {
  pool$calls <- pool$calls + 1L
  tag <- sprintf("shard:%d:call:%d", pool$id, pool$calls)
  sent <- tryCatch({ transport_send(pool$cl[[w]], worker_stub(fun_name), args, tag); TRUE },
                   error = function(e) FALSE)
  lost <- function(why) {
    pool_replace_worker(pool, w)
    list(ok = FALSE, why = why)
  }
  if (!sent) return(lost("died"))
  deadline <- proc.time()[["elapsed"]] + timeout
  answered <- FALSE
  on.exit(if (!answered) pool_drop_worker(pool, w))   # interrupted: its answer would be stale
  repeat {
    left <- deadline - proc.time()[["elapsed"]]
    if (left <= 0) {
      answered <- TRUE
      return(lost("timeout"))
    }
    ready <- transport_ready(list(pool$cl[[w]]), timeout = min(1, left))
    if (!isTRUE(ready[1])) {
      if (!proc_alive(pool$pids[w])) {
        answered <- TRUE
        return(lost("died"))
      }
      pool$last_seen[w] <- unclass(Sys.time())   # heartbeat: the process is there
      next
    }
    msg <- tryCatch(transport_recv(pool$cl[[w]]), error = function(e) NULL)
    if (is.null(msg)) {
      answered <- TRUE
      return(lost("died"))
    }
    if (identical(msg$tag, tag)) break   # else a stale answer of a call cut short: dropped
  }
  answered <- TRUE
  pool$last_seen[w] <- unclass(Sys.time())
  list(ok = TRUE, value = msg$value, success = !identical(msg$success, FALSE))
}

# Worker side: collects garbage; returns the pid.
pool_worker_gc <- function() {
  invisible(gc(verbose = FALSE))
  Sys.getpid()
}

# ---------------------------------------------------------------------------
# Process facts (see ?rss)

# A process that exists and is not a zombie.
proc_alive <- function(pid) {
  if (is.na(pid)) return(FALSE)
  s <- tryCatch(suppressWarnings(readLines(sprintf("/proc/%d/stat", as.integer(pid)), warn = FALSE)),
                error = function(e) character())
  if (!length(s)) return(FALSE)
  state <- sub("^.*\\) (.).*$", "\\1", s[1])
  !(state %in% c("Z", "X", "x"))
}

# Private resident memory of a process in bytes (RssAnon: resident minus
# shared pages, from /proc/<pid>/statm); NA when the process is gone. The
# figure the pool supervises.
worker_rss <- function(pid) {
  if (is.na(pid)) return(NA_real_)
  l <- tryCatch(suppressWarnings(readLines(sprintf("/proc/%d/statm", as.integer(pid)), warn = FALSE)),
                error = function(e) character())
  if (!length(l)) return(NA_real_)
  f <- as.numeric(strsplit(l[1], " ", fixed = TRUE)[[1]])
  (f[2] - f[3]) * page_size()
}

page_size <- function() {
  if (is.null(ps <- .pool_state$page_size)) {
    ps <- suppressWarnings(as.numeric(tryCatch(system2("getconf", "PAGESIZE", stdout = TRUE, stderr = FALSE),
                                               error = function(e) NA)))
    if (!length(ps) || is.na(ps[1])) ps <- 4096
    .pool_state$page_size <- ps <- ps[1]
  }
  ps
}

# Resident set size of a process in bytes (all pages, shared or not: VmRSS);
# NA when the process is gone or the figure cannot be read.
rss_get_pid <- function(pid) {
  if (length(pid) != 1L || is.na(pid)) return(NA_real_)
  l <- tryCatch(suppressWarnings(readLines(sprintf("/proc/%d/statm", as.integer(pid)), warn = FALSE)),
                error = function(e) character())
  if (!length(l)) return(NA_real_)
  as.numeric(strsplit(l[1], " ", fixed = TRUE)[[1]][2]) * page_size()
}

rss_self <- function() rss_get_pid(Sys.getpid())

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

# ---------------------------------------------------------------------------
# Nodes

# Whether some worker of the pool runs on another node than this process (its
# node key, reported at start-up, differs): shared memory cannot reach it, so
# borrow= inputs go out with share(x, cluster = ) (one copy per node).
pool_multi_node <- function(pool) {
  keys <- pool$node_keys
  any(!is.na(keys) & keys != node_identity()$key)
}

# The pool's workers as a parallel cluster (they run parallel's worker loop
# between tasks), for share(x, cluster = ).
pool_as_cluster <- function(pool) {
  cl <- unclass(pool$cl)[!pool$dead]
  structure(cl, class = c("SOCKcluster", "cluster"))
}
