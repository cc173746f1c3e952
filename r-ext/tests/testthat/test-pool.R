# Worker pools: pool_create/pool_lapply/pool_sapply/pool_status/pool_stop.
# Pools of 1-2 workers keep this fast; the 1 GiB memory proof with 4 workers is
# benches/r/pool_memory.R.

# --- helpers ------------------------------------------------------------------

# Waits up to `secs` for every pid to be gone from /proc (orphaned PSOCK workers
# are reaped by init a moment after they exit); returns the pids still there.
wait_gone <- function(pids, secs = 10) {
  deadline <- Sys.time() + secs
  while (any(file.exists(sprintf("/proc/%d", pids))) && Sys.time() < deadline) Sys.sleep(0.05)
  pids[file.exists(sprintf("/proc/%d", pids))]
}

wait_dead <- function(pid, secs = 10) {
  deadline <- Sys.time() + secs
  while (shard:::proc_alive(pid) && Sys.time() < deadline) Sys.sleep(0.05)
  !shard:::proc_alive(pid)
}

# The start time of process `pid` (field 22 of /proc/<pid>/stat, clock ticks
# since boot), NA when there is none. With the pid it names one process: a pid is
# given to a new process once the old one is gone (soon, on a busy machine).
proc_start <- function(pid) {
  s <- tryCatch(suppressWarnings(readLines(sprintf("/proc/%d/stat", as.integer(pid)), warn = FALSE)),
                error = function(e) character())
  if (!length(s)) return(NA_real_)
  as.numeric(strsplit(sub("^.*\\) ", "", s[1]), " ", fixed = TRUE)[[1]][20])   # field 3 is the first here
}

# Waits until the process that was `pid`, started at `start`, has exited (gone, a
# zombie, or the pid names another process now); TRUE once it has. The bound
# only turns a hang into a failure: a SIGKILLed process exits at once.
wait_exited <- function(pid, start, secs = 120) {
  exited <- function() !shard:::proc_alive(pid) || !identical(proc_start(pid), start)
  deadline <- Sys.time() + secs
  while (!exited() && Sys.time() < deadline) Sys.sleep(0.02)
  exited()
}

n_sockets <- function() {
  fds <- list.files("/proc/self/fd", full.names = TRUE)
  sum(startsWith(Sys.readlink(fds), "socket:"), na.rm = TRUE)
}

n_connections <- function() nrow(showConnections(all = FALSE))

pss_of <- function(pids) vapply(pids, function(p) shard:::proc_memory(p)[["pss"]], 0)

# A pool that is stopped when the calling test ends.
local_pool <- function(n = 2L, type = "psock", set_default = TRUE, env = parent.frame()) {
  p <- pool_create(n, type = type, set_default = set_default)
  withr::defer(pool_stop(p), envir = env)
  p
}

# --- creating, status, printing, the ambient pool -----------------------------

test_that("pool_create() starts workers that attach shard; pool_status() reports them", {
  p <- local_pool(2)
  expect_s3_class(p, "shard_pool")
  expect_identical(shard:::.pool_state$current, p)
  st <- pool_status()
  expect_s3_class(st, "data.frame")
  # our columns first, in their order; the reference's supervision columns follow (test-pool-status.R)
  expect_identical(names(st)[1:10], c("worker", "pid", "alive", "rss", "pss", "pss_anon", "pss_shmem", "hugetlb",
                                      "tasks", "bytes_sent"))
  expect_equal(st$worker, 1:2)
  expect_true(all(st$alive))
  expect_true(all(st$pid != Sys.getpid()))
  expect_true(all(st$rss > 1e6 & st$pss > 0 & st$pss <= st$rss))
  # workers have shard attached and the caller's library paths
  on_workers <- pool_lapply(1:2, function(i) list(attached = "package:shard" %in% search(), libs = .libPaths()))
  for (w in on_workers) {
    expect_true(w$attached)
    expect_identical(w$libs, .libPaths())
  }
  expect_output(print(p), "<shard_pool> 2 psock workers \\(running, ambient\\)")
  expect_output(print(p), "last run: 2 elements in 2 tasks")
})

test_that("pool_create(set_default = FALSE) pools are used through `pool =`; the ambient pool otherwise", {
  amb <- local_pool(1)
  other <- local_pool(1, set_default = FALSE)
  expect_identical(shard:::.pool_state$current, amb)
  expect_identical(unlist(pool_lapply(1:2, function(i) Sys.getpid())), rep(amb$pids, 2))
  expect_identical(unlist(pool_lapply(1:2, function(i) Sys.getpid(), pool = other)), rep(other$pids, 2))
  expect_error(pool_lapply(1:2, identity, pool = list()), "must be a pool from pool_create")
  # a new ambient pool replaces (stops) the previous ambient one
  old_pid <- amb$pids
  expect_message(amb2 <- pool_create(1), "stopping the previous ambient pool")
  withr::defer(pool_stop(amb2))
  expect_true(amb$stopped)
  expect_true(wait_dead(old_pid))
  expect_false(other$stopped)
  pool_stop(amb2)
  expect_null(shard:::.pool_state$current)
  expect_error(pool_lapply(1:2, identity), "no worker pool: call pool_create\\(\\) first")
  expect_error(pool_lapply(1:2, identity, pool = amb), "has been stopped")
  expect_error(pool_create(0), "`n` must be a single whole number >= 1")
  expect_error(pool_create(1, type = "mpi"), "`type` must be one of")
})

# --- results ---------------------------------------------------------------------

test_that("results are complete, in order, with names, like lapply()/sapply()", {
  p <- local_pool(2)
  x <- stats::setNames(as.list(1:23), paste0("e", 1:23))
  f <- function(v) if (v %% 5 == 0) NULL else list(v = v, sq = v^2)
  for (cs in c(1L, 3L, 50L)) {
    expect_identical(pool_lapply(x, f, chunk_size = cs), lapply(x, f))
  }
  expect_identical(pool_lapply(1:10, function(i) i * 2L), lapply(1:10, function(i) i * 2L))
  expect_identical(pool_lapply(c(a = 1, b = 2), sqrt), lapply(c(a = 1, b = 2), sqrt))
  expect_identical(pool_lapply(factor(c("u", "v")), as.character), lapply(factor(c("u", "v")), as.character))
  expect_identical(pool_lapply(list(), identity), list())
  expect_identical(pool_sapply(letters[1:4], toupper), sapply(letters[1:4], toupper))
  expect_identical(pool_sapply(1:6, function(i) c(i, -i), chunk_size = 4), sapply(1:6, function(i) c(i, -i)))
  expect_identical(pool_sapply(1:3, function(i) i, simplify = FALSE), sapply(1:3, function(i) i, simplify = FALSE))
  # `...` reaches FUN; so do the global variables and functions FUN uses
  expect_identical(pool_lapply(1:3, function(i, a, b) i + a * b, 10, b = 2), lapply(1:3, function(i, a, b) i + a * b, 10, b = 2))
  helper_inner <- function(v) v * 10
  assign("pool_test_helper", function(v) pool_test_inner(v) + pool_test_offset, envir = globalenv())
  assign("pool_test_inner", function(v) v * 10, envir = globalenv())
  assign("pool_test_offset", 5, envir = globalenv())
  withr::defer(rm(pool_test_helper, pool_test_inner, pool_test_offset, envir = globalenv()))
  g <- function(v) pool_test_helper(v)
  environment(g) <- globalenv()
  expect_identical(pool_sapply(1:4, g), c(15, 25, 35, 45))
  # the globals are gone from the workers once the call is over
  expect_identical(pool_sapply(1:2, function(i) exists("pool_test_offset", envir = globalenv())), c(FALSE, FALSE))
  # dynamic load balancing: a slow element does not hold back the others
  pids <- unlist(pool_lapply(1:6, function(i) { if (i == 1) Sys.sleep(1); Sys.getpid() }))
  expect_equal(sum(pids == pids[1]), 1)
})

test_that("a progress bar is drawn when asked", {
  p <- local_pool(1)
  out <- capture.output(type = "message", r <- pool_lapply(1:3, identity, progress = TRUE))
  expect_identical(r, as.list(1:3))
  expect_match(paste(out, collapse = ""), "3/3")
  out <- capture.output(type = "message", r <- pool_lapply(1:3, identity, progress = FALSE))
  expect_identical(out, character())
})

# --- failures ----------------------------------------------------------------------

test_that("an error in FUN names the element and carries the worker's message", {
  p <- local_pool(2)
  x <- c(a = 1, b = 2, c = 3, d = 4)
  e <- tryCatch(pool_lapply(x, function(v) if (v == 3) stop("boom at ", v) else v), error = function(e) e)
  expect_s3_class(e, "shard_task_error")
  expect_match(conditionMessage(e), "FUN failed on element 3 (\"c\") of 4", fixed = TRUE)
  expect_match(conditionMessage(e), "boom at 3", fixed = TRUE)
  expect_equal(e$index, 3)
  expect_identical(e$worker_message, "boom at 3")
  expect_true(e$pid %in% p$pids)
  # every failure is counted; chunks report the element, not the chunk
  e <- tryCatch(pool_lapply(1:9, function(v) if (v %% 4 == 0) stop("bad ", v) else v, chunk_size = 3),
                error = function(e) e)
  expect_match(conditionMessage(e), "element 4 of 9")
  # on_error = "return": the other results are kept, failures are conditions
  expect_warning(r <- pool_lapply(1:5, function(v) if (v %% 2 == 0) stop("even ", v) else v, on_error = "return"),
                 "2 of 5 elements failed \\(2, 4\\)")
  expect_length(r, 5)
  expect_identical(r[c(1, 3, 5)], list(1L, 3L, 5L))
  expect_s3_class(r[[2]], "shard_task_error")
  expect_match(conditionMessage(r[[4]]), "element 4: even 4")
  # warnings in FUN come back as warnings naming the element
  expect_warning(pool_lapply(1:2, function(v) { if (v == 2) warning("careful"); v }), "element 2 .*careful")
  # the pool is still whole
  expect_identical(pool_sapply(1:4, function(i) i), 1:4)
  expect_equal(p$replaced, 0L)
})

test_that("a worker killed in FUN is replaced and its task retried once, then reported", {
  p <- local_pool(2)
  flag <- tempfile("pool-kill-")
  withr::defer(unlink(flag))
  first_pids <- p$pids
  res <- pool_lapply(1:6, function(i) {
    if (i == 3 && !file.exists(flag)) { file.create(flag); tools::pskill(Sys.getpid(), tools::SIGKILL) }
    list(i = i, pid = Sys.getpid())
  })
  expect_length(res, 6)
  expect_identical(vapply(res, `[[`, 0L, "i"), 1:6)
  expect_equal(p$replaced, 1L)
  killed <- setdiff(first_pids, p$pids)
  expect_length(killed, 1)
  expect_false(res[[3]]$pid %in% killed)              # element 3 was run again, by a live worker
  expect_length(wait_gone(killed), 0)
  expect_equal(attr(pool_status(), "last_run")$retried, 1)

  # a worker that dies every time: retried once, then an error naming the element
  e <- tryCatch(pool_lapply(c(a = 1, b = 2, c = 3), function(i) {
    if (i == 2) tools::pskill(Sys.getpid(), tools::SIGKILL)
    i
  }), error = function(e) e)
  expect_s3_class(e, "shard_worker_died")
  expect_match(conditionMessage(e), "element 2 (\"b\") died 2 times", fixed = TRUE)
  expect_length(e$pids, 2)
  # with on_error = "return" nothing is dropped: the lost element is a condition
  expect_warning(r <- pool_lapply(1:3, function(i) { if (i == 2) tools::pskill(Sys.getpid(), tools::SIGKILL); i },
                                  on_error = "return"), "1 of 3 elements failed")
  expect_identical(r[c(1, 3)], list(1L, 3L))
  expect_s3_class(r[[2]], "shard_task_error")
  expect_match(conditionMessage(r[[2]]), "the worker died")
  # the pool has two live workers again
  expect_true(all(pool_status()$alive))
  expect_identical(pool_sapply(1:4, function(i) i), 1:4)
})

test_that("a worker killed from outside (idle or busy) is replaced", {
  p <- local_pool(2)
  victim <- p$pids[1]
  tools::pskill(victim, tools::SIGKILL)
  expect_true(wait_dead(victim))
  expect_false(pool_status()$alive[1])
  expect_identical(pool_sapply(1:4, function(i) i * 2), c(2, 4, 6, 8))
  expect_equal(p$replaced, 1L)
  expect_true(all(pool_status()$alive))
  # killed while running a task
  victim <- p$pids[2]
  system2("sh", c("-c", shQuote(sprintf("sleep 0.5; kill -9 %d", victim))), wait = FALSE)
  r <- pool_sapply(1:4, function(i) { Sys.sleep(1); i })
  expect_identical(r, 1:4)
  expect_equal(p$replaced, 2L)
  expect_false(victim %in% p$pids)
})

test_that("a pool_lapply() interrupted while tasks run leaves a working pool", {
  p <- local_pool(2)
  before <- p$pids
  born <- vapply(before, proc_start, 0)
  master <- Sys.getpid()
  flags <- withr::local_tempdir()
  # Each task says it started; task 2 waits until task 1 has too, then interrupts
  # the caller (as Ctrl-C would): both run when the interrupt lands, whatever the
  # load. No task ends by itself: the interrupt ends the call, not the length of a
  # sleep (the 10-minute bounds only turn a broken pool into a failure, not a hang).
  r <- tryCatch(pool_lapply(1:2, function(i) {
    file.create(file.path(flags, i))
    give_up <- Sys.time() + 600
    if (i == 2) {
      while (!file.exists(file.path(flags, 1)) && Sys.time() < give_up) Sys.sleep(0.01)
      tools::pskill(master, tools::SIGINT)
    }
    while (Sys.time() < give_up) Sys.sleep(0.1)
    i
  }), interrupt = function(e) "interrupted")
  expect_identical(r, "interrupted")
  expect_true(all(file.exists(file.path(flags, 1:2))))
  # the busy workers were stopped (their answers would be stale): marked dead and
  # killed at once (each checked by pid and start time: a pid may be reused);
  # the next call replaces them
  expect_true(all(p$dead))
  for (k in seq_along(before)) expect_true(wait_exited(before[k], born[k]), info = before[k])
  expect_identical(pool_sapply(1:4, function(i) i), 1:4)
  expect_equal(p$replaced, 2L)
  expect_true(all(pool_status()$alive))
})

test_that("replacing lost workers never closes a new worker's socket (R reuses connection numbers)", {
  # R gives a closed connection's number to the next connection opened; closing
  # a lost worker's stale connection object again closed whatever held its
  # number, e.g. the socket of the worker just started in the other slot (both
  # slots then talked to one worker, the other exited). Whether that happened
  # depended on which connection numbers were free below the old sockets': here
  # every free number below theirs is taken, so the new workers get exactly the
  # old numbers, every time.
  p <- local_pool(2)
  old <- vapply(1:2, function(i) as.integer(p$cl[[i]]$con), 1L)
  for (w in 1:2) shard:::pool_drop_worker(p, w)    # lost, as an interrupted call leaves them
  held <- list()
  withr::defer(for (h in held) close(h))
  repeat {
    h <- file(nullfile(), "r")
    held[[length(held) + 1L]] <- h
    if (as.integer(h) > max(old)) break
  }
  keep <- !vapply(held, function(h) as.integer(h) %in% old || as.integer(h) > max(old), TRUE)
  for (h in held[!keep]) close(h)
  held <- held[keep]
  expect_identical(pool_sapply(1:4, function(i) i), 1:4)
  expect_equal(p$replaced, 2L)
  cons <- vapply(1:2, function(i) as.integer(p$cl[[i]]$con), 1L)
  expect_false(cons[1] == cons[2])
  expect_true(all(pool_status()$alive))
  expect_identical(pool_dispatch(1, quote(Sys.getpid()), pool = p), p$pids[1])
  expect_identical(pool_dispatch(2, quote(Sys.getpid()), pool = p), p$pids[2])
})

test_that("an answer left over from an earlier call is not taken for a new task's", {
  p <- local_pool(1)
  # a message the pool did not send (as a call cut short mid-way could leave):
  # its answer arrives first on that worker's socket and must be dropped
  send <- utils::getFromNamespace("sendCall", "parallel")
  send(p$cl[[1]], function() { Sys.sleep(0.3); "stale" }, list())
  expect_identical(pool_lapply(1:3, function(i) i * 10L), list(10L, 20L, 30L))
  expect_identical(pool_sapply(1:2, function(i) i), 1:2)
})

# --- shared objects travel as handles ---------------------------------------------

test_that("shared objects captured by FUN cost a few hundred bytes per task, not the data", {
  p <- local_pool(2)
  m <- matrix(runif(1e6), nrow = 1000)                      # 8 MB
  s <- share(m)
  withr::defer(close(s))
  fm <- fetch(s)
  r1 <- pool_sapply(1:20, function(i) sum(fetch(s)[i, ]))   # the shard_shared handle
  lr1 <- attr(pool_status(), "last_run")
  r2 <- pool_sapply(1:20, function(i) sum(fm[i, ]))         # a fetched (ALTREP) matrix
  lr2 <- attr(pool_status(), "last_run")
  expect_equal(r1, rowSums(m)[1:20])
  expect_equal(r2, rowSums(m)[1:20])
  for (lr in list(lr1, lr2)) {
    expect_lt(lr$job_bytes, 4096)           # FUN + handle, once per worker
    expect_lt(lr$task_bytes_max, 1024)      # each task: parallel's message + the element
  }
  expect_lt(sum(pool_status()$bytes_sent), 64 * 1024)
  # the same matrix captured as an ordinary object goes whole, and is warned about once
  assign("warned_large", FALSE, envir = shard:::.pool_state)
  expect_warning(r3 <- pool_sapply(1:2, function(i) sum(m[i, ])), "largest parts: `m` .*share\\(\\) large inputs")
  expect_gt(attr(pool_status(), "last_run")$job_bytes, 8e6)
  expect_no_warning(pool_sapply(1:2, function(i) sum(m[i, ])))
})

# --- stopping -------------------------------------------------------------------------

test_that("pool_stop() leaves no worker processes, sockets or shared objects behind", {
  for (type in c("psock", "fork")) {
    diag0 <- shard_diagnostics()
    socks0 <- n_sockets()
    cons0 <- n_connections()
    s <- share(runif(1e5))
    p <- pool_create(2, type = type)
    expect_equal(pool_sapply(1:4, function(i) length(fetch(s))), rep(1e5, 4))
    pids <- p$pids
    expect_true(pool_stop())
    expect_false(pool_stop(p))        # stopping twice is harmless
    expect_null(shard:::.pool_state$current)
    expect_identical(wait_gone(pids), integer(), info = type)
    expect_equal(n_sockets(), socks0, info = type)
    expect_equal(n_connections(), cons0, info = type)
    close(s)
    diag1 <- shard_diagnostics()
    expect_equal(diag1$live_objects, diag0$live_objects, info = type)
    # No region is left behind; there may be fewer than before, because closing
    # also frees earlier objects that were quarantined while another process
    # still mapped their region (docs/ARCHITECTURE.md, "Lifetime").
    expect_lte(diag1$regions, diag0$regions)
    expect_false(any(pool_status(p)$alive))
  }
})

# --- fork pools -------------------------------------------------------------------------

test_that("type = \"fork\" pools read shared objects and recover from a killed worker", {
  skip_if_no_fork()
  p <- local_pool(2, type = "fork")
  expect_output(print(p), "2 fork workers")
  m <- matrix(runif(2e5), nrow = 200)
  s <- share(m)
  withr::defer(close(s))
  expect_equal(pool_sapply(1:200, function(i) sum(fetch(s)[i, ]), chunk_size = 16), rowSums(m))
  flag <- tempfile("pool-kill-")
  withr::defer(unlink(flag))
  r <- pool_sapply(1:4, function(i) {
    if (i == 2 && !file.exists(flag)) { file.create(flag); tools::pskill(Sys.getpid(), tools::SIGKILL) }
    i
  })
  expect_identical(r, 1:4)
  expect_equal(p$replaced, 1L)
  e <- tryCatch(pool_lapply(1:3, function(i) if (i == 3) stop("fork boom") else i), error = function(e) e)
  expect_match(conditionMessage(e), "element 3 of 3.*fork boom")
})

# --- memory: N workers, one copy ---------------------------------------------------------

test_that("2 workers reading every byte of a shared object hold one copy (PSS), clusterExport holds two", {
  # 4 KiB shmem pages: hugetlb pages are not counted in PSS (see PERFORMANCE.md).
  old <- options(shard.huge_pages = FALSE)
  withr::defer(options(old))
  size <- 96 * 2^20
  x <- runif(size / 8)
  s <- share(x)
  withr::defer(close(s))

  p <- local_pool(2, set_default = FALSE)
  st0 <- pool_status(p)
  before <- st0$pss
  got <- pool_lapply(1:2, function(i) {
    v <- fetch(s)
    assign(".pool_test_keep", v, envir = globalenv())   # keep the mapping while we measure
    list(pid = Sys.getpid(), sum = sum(v))              # sum() reads every byte
  }, pool = p)
  st1 <- pool_status(p)
  after <- st1$pss
  expect_setequal(vapply(got, `[[`, 0L, "pid"), p$pids)  # one task on each worker
  expect_equal(vapply(got, `[[`, 0, "sum"), rep(sum(x), 2))
  shard_ratio <- sum(after - before) / size
  rss_ratio <- sum(st1$rss - st0$rss) / size

  cl <- psock_cluster(2)
  withr::defer(parallel::stopCluster(cl))
  wpids <- unlist(parallel::clusterCall(cl, Sys.getpid))
  b0 <- pss_of(wpids)
  parallel::clusterExport(cl, "x", envir = environment())
  sums <- unlist(parallel::parLapply(cl, 1:2, function(i) sum(x)))
  b1 <- pss_of(wpids)
  expect_equal(sums, rep(sum(x), 2))
  export_ratio <- sum(b1 - b0) / size

  # each worker mapped all of it (RSS), but the pages exist once: the PSS sum is ~1x
  expect_gt(rss_ratio, 1.8)
  expect_lt(shard_ratio, 1.5)
  expect_gt(shard_ratio, 0.5)
  expect_gt(export_ratio, 1.8)
  expect_gt(export_ratio / shard_ratio, 1.5)
})
