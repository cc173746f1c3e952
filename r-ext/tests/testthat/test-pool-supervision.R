# Supervised workers: memory limits and drift (recycled between tasks, never
# losing a result), deaths mid-run (task retried, counted), init_expr and
# packages in every new worker.

sup_wait_dead <- function(pid, secs = 10) {
  deadline <- Sys.time() + secs
  while (shard:::proc_alive(pid) && Sys.time() < deadline) Sys.sleep(0.05)
  !shard:::proc_alive(pid)
}

# A task that leaks ~48 MB into the worker's global environment on purpose and
# says how many leaks that worker holds.
leaky <- function(i) {
  prev <- get0(".shard_test_leak", envir = globalenv(), inherits = FALSE, ifnotfound = list())
  assign(".shard_test_leak", c(prev, list(runif(6e6))), envir = globalenv())
  list(i = i, sq = i^2, leaks = length(get(".shard_test_leak", envir = globalenv())), pid = Sys.getpid())
}

test_that("a worker that leaks memory is recycled between tasks (drift) and every result is correct", {
  withr::local_options(shard.pool_check_interval = 0)   # check memory after every task
  p <- pool_create(1, min_recycle_interval = 0, set_default = FALSE)
  withr::defer(pool_stop(p))
  first <- p$pids
  base <- pool_status(p)$rss_baseline
  expect_true(is.finite(base) && base > 0)
  r <- pool_lapply(1:8, leaky, pool = p)
  expect_identical(vapply(r, `[[`, 0L, "i"), 1:8)
  expect_identical(vapply(r, `[[`, 0, "sq"), (1:8)^2)
  leaks <- vapply(r, `[[`, 0L, "leaks")
  # without recycling the one worker would hold 8 leaks at the end; each new
  # worker starts from none, so the count falls back to 1
  expect_lt(max(leaks), 8L)
  expect_true(any(diff(leaks) < 0))
  expect_gt(length(unique(vapply(r, `[[`, 0L, "pid"))), 1L)
  st <- pool_status(p)
  expect_gte(st$recycle_count, 1L)
  expect_equal(st$death_count, 0L)
  expect_false(first %in% p$pids)
  expect_gte(p$stats$total_recycles, 1L)
  expect_equal(p$stats$total_deaths, 0L)
  expect_equal(p$replaced, 0L)
  expect_identical(p$last_recycle_reason, "rss_drift")
  h <- pool_health_check(p)
  expect_gte(h$pool_stats$total_recycles, 1L)
})

test_that("a worker over rss_limit is recycled; garbage alone does not get a worker recycled", {
  withr::local_options(shard.pool_check_interval = 0)   # check memory after every task
  p <- pool_create(1, rss_limit = "130MB", rss_drift_threshold = Inf, min_recycle_interval = 0,
                   set_default = FALSE)
  withr::defer(pool_stop(p))
  expect_equal(p$rss_limit_bytes, 130 * 1024^2)
  # 160 MB of garbage per task: over the limit until collected, so no recycle
  g <- pool_sapply(1:3, function(i) { x <- runif(2e7); rm(x); i }, pool = p)
  expect_identical(g, 1:3)
  expect_equal(pool_status(p)$recycle_count, 0L)
  r <- pool_lapply(1:5, leaky, pool = p)
  expect_identical(vapply(r, `[[`, 0, "sq"), (1:5)^2)
  expect_gte(pool_status(p)$recycle_count, 1L)
  expect_identical(p$last_recycle_reason, "rss_limit")
  expect_lt(max(vapply(r, `[[`, 0L, "leaks")), 5L)
})

test_that("min_recycle_interval defers the recycle of a young worker; the health check reports it", {
  withr::local_options(shard.pool_check_interval = 0)   # check memory after every task
  p <- pool_create(1, rss_limit = "100MB", min_recycle_interval = 3600, set_default = FALSE)
  withr::defer(pool_stop(p))
  pid <- p$pids
  r <- pool_lapply(1:3, leaky, pool = p)
  expect_identical(vapply(r, `[[`, 0L, "leaks"), 1:3)     # never recycled: too young
  expect_identical(p$pids, pid)
  expect_equal(pool_status(p)$recycle_count, 0L)
  expect_identical(pool_status(p)$status, "needs_recycle")
  h <- pool_health_check(p)
  expect_identical(h$worker_actions[[1]]$action, "defer_recycle")
  expect_identical(h$worker_actions[[1]]$reason, "rss_limit")
  expect_gt(h$worker_actions[[1]]$rss_before, 100 * 1024^2)
  expect_identical(p$pids, pid)
  # a busy worker is never recycled, whatever its age
  p$min_recycle_interval <- 0
  h <- pool_health_check(p, busy_workers = 1)
  expect_identical(h$worker_actions[[1]]$action, "defer_recycle")
  expect_identical(p$pids, pid)
  # idle and old enough: recycled now
  h <- pool_health_check(p)
  expect_identical(h$worker_actions[[1]]$action, "recycle")
  expect_false(identical(p$pids, pid))
  expect_equal(h$pool_stats$total_recycles, 1L)
  expect_identical(pool_dispatch(1, quote(exists(".shard_test_leak")), pool = p), FALSE)
})

test_that("workers killed mid-run with tools::pskill: tasks retried, results correct, deaths counted", {
  p <- pool_create(2, set_default = FALSE)
  withr::defer(pool_stop(p))
  victims <- p$pids
  dir <- tempfile("pool-started-")
  dir.create(dir)
  go <- file.path(dir, "go")
  withr::defer(unlink(dir, recursive = TRUE))
  # both workers are killed while running a task: the shell waits until two
  # tasks have started, kills both workers, then lets the tasks finish
  script <- sprintf("while [ $(ls %s | wc -l) -lt 2 ]; do sleep 0.05; done; kill -9 %s; touch %s",
                    shQuote(dir), paste(victims, collapse = " "), shQuote(go))
  system2("sh", c("-c", shQuote(script)), wait = FALSE)
  r <- pool_sapply(1:6, function(i, dir) {
    file.create(file.path(dir, sprintf("task-%d-%d", i, Sys.getpid())))
    deadline <- Sys.time() + 60
    while (!file.exists(file.path(dir, "go")) && Sys.time() < deadline) Sys.sleep(0.05)
    i * 10L
  }, dir, pool = p)
  expect_identical(r, (1:6) * 10L)
  expect_false(any(victims %in% p$pids))
  st <- pool_status(p)
  expect_identical(st$death_count, c(1L, 1L))
  expect_true(all(st$alive))
  expect_equal(p$stats$total_deaths, 2L)
  expect_equal(p$stats$total_retries, 2L)
  expect_equal(attr(st, "last_run")$retried, 2)
  h <- pool_health_check(p)
  expect_equal(h$pool_stats$total_deaths, 2L)
  expect_equal(h$pool_stats$total_retries, 2L)
  expect_true(all(vapply(h$worker_actions, `[[`, "", "action") == "none"))
  # a worker killed while idle is restarted by the health check, and counted
  v <- p$pids[2]
  tools::pskill(v, tools::SIGKILL)
  expect_true(sup_wait_dead(v))
  h <- pool_health_check(p)
  expect_identical(h$worker_actions[[2]]$action, "restart")
  expect_identical(h$worker_actions[[2]]$reason, "worker_dead")
  expect_equal(h$pool_stats$total_deaths, 3L)
  expect_identical(pool_status(p)$death_count, c(1L, 2L))
})

test_that("init_expr and packages run in every new worker: first, replaced after a death, recycled", {
  withr::local_options(shard.pool_check_interval = 0)   # check memory after every task
  skip_if_not(requireNamespace("codetools", quietly = TRUE), "SKIPPED: codetools is not installed")
  p <- pool_create(1, init_expr = quote(assign("init_mark", Sys.getpid(), envir = globalenv())),
                   packages = c("tools", "codetools"), min_recycle_interval = 0, set_default = FALSE)
  withr::defer(pool_stop(p))
  probe <- function(i) list(mark = get0("init_mark", envir = globalenv()), pid = Sys.getpid(),
                            pkgs = c("package:tools", "package:codetools") %in% search())
  check <- function(x) {
    expect_identical(x$mark, x$pid)      # init_expr ran in *this* worker
    expect_identical(x$pkgs, c(TRUE, TRUE))
  }
  check(pool_lapply(1, probe, pool = p)[[1]])
  # replaced after a death
  old <- p$pids
  tools::pskill(old, tools::SIGKILL)
  expect_true(sup_wait_dead(old))
  x <- pool_lapply(1, probe, pool = p)[[1]]
  expect_false(x$pid == old)
  check(x)
  # recycled (leak, then the next task goes to a fresh worker)
  r <- pool_lapply(1:4, function(i) c(leaky(i), probe(i)), pool = p)
  expect_gte(pool_status(p)$recycle_count, 1L)
  for (x in r) check(x)
  expect_gt(length(unique(vapply(r, `[[`, 0L, "pid"))), 1L)
  # and for pool_dispatch()
  expect_identical(pool_dispatch(1, quote(init_mark), pool = p), p$pids)
  # an init_expr that is a function of no arguments
  p2 <- pool_create(1, init_expr = function() assign("init_fn", TRUE, envir = globalenv()), set_default = FALSE)
  withr::defer(pool_stop(p2))
  expect_true(pool_dispatch(1, quote(init_fn), pool = p2))
})

test_that("a package that cannot be loaded, or an init_expr that fails, stops pool_create() with a clear error", {
  expect_error(pool_create(1, packages = "shardNoSuchPackage", set_default = FALSE),
               "package shardNoSuchPackage .*could not be loaded.*`packages`")
  expect_error(pool_create(1, init_expr = quote(stop("init broke")), set_default = FALSE),
               "could not start: .*init broke.*init_expr")
})

test_that("heartbeats: each worker's last heartbeat moves on while tasks run", {
  p <- pool_create(1, set_default = FALSE)
  withr::defer(pool_stop(p))
  t0 <- pool_status(p)$last_heartbeat
  expect_s3_class(t0, "POSIXct")
  Sys.sleep(1.1)
  pool_lapply(1, function(i) Sys.sleep(1.5), pool = p)   # waits > 1 s: a liveness check, then the answer
  expect_gt(as.numeric(pool_status(p)$last_heartbeat), as.numeric(t0))
  expect_gt(as.numeric(p$workers[[1]]$last_heartbeat), as.numeric(t0))
})
