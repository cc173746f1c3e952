# pool_dispatch() against its reference page.

disp_wait_dead <- function(pid, secs = 10) {
  deadline <- Sys.time() + secs
  while (shard:::proc_alive(pid) && Sys.time() < deadline) Sys.sleep(0.05)
  !shard:::proc_alive(pid)
}

test_that("pool_dispatch() has the reference's arguments and defaults", {
  f <- formals(pool_dispatch)
  expect_identical(names(f), c("worker_id", "expr", "envir", "pool", "timeout"))
  expect_identical(f$envir, quote(parent.frame()))
  expect_null(f$pool)
  expect_identical(f$timeout, 3600)
})

test_that("pool_dispatch() evaluates on the chosen worker, with variables from envir", {
  p <- pool_create(2, set_default = FALSE)
  withr::defer(pool_stop(p))
  expect_identical(pool_dispatch(1, quote(Sys.getpid()), pool = p), p$pids[1])
  expect_identical(pool_dispatch(2L, quote(Sys.getpid()), pool = p), p$pids[2])
  a <- 20
  f <- function(v) v + 2
  expect_identical(pool_dispatch(1, quote(f(a)), pool = p), 22)
  e <- new.env()
  e$a <- 100
  expect_identical(pool_dispatch(2, quote(a + 1), envir = e, pool = p), 101)
  expect_identical(pool_dispatch(1, expression(z <- 3, z * 2), pool = p), 6)
  expect_identical(pool_dispatch(1, 5, pool = p), 5)          # a value is returned as it is
  expect_identical(p$pids[1] == pool_dispatch(1, quote(Sys.getpid()), pool = p), TRUE)
  # the current pool is used when pool = NULL
  q <- pool_create(1)
  withr::defer(pool_stop(q))
  expect_identical(pool_dispatch(1, quote(Sys.getpid())), q$pids)
  expect_equal(pool_status(p)$tasks[1], 5L)
})

test_that("pool_dispatch() errors name the worker; dead or stuck workers are replaced", {
  p <- pool_create(1, set_default = FALSE)
  withr::defer(pool_stop(p))
  e <- tryCatch(pool_dispatch(1, quote(stop("kaput")), pool = p), error = function(e) e)
  expect_s3_class(e, "shard_task_error")
  expect_match(conditionMessage(e), "failed on worker 1 \\(pid [0-9]+\\): kaput")
  expect_identical(pool_dispatch(1, quote(1L), pool = p), 1L)   # the worker stays
  # a dead worker is replaced before the dispatch (a death)
  old <- p$pids
  tools::pskill(old, tools::SIGKILL)
  expect_true(disp_wait_dead(old))
  expect_false(pool_dispatch(1, quote(Sys.getpid()), pool = p) == old)
  expect_equal(p$stats$total_deaths, 1L)
  # a worker that dies during the dispatch
  e <- tryCatch(pool_dispatch(1, quote(tools::pskill(Sys.getpid(), tools::SIGKILL)), pool = p),
                error = function(e) e)
  expect_s3_class(e, "shard_worker_died")
  expect_match(conditionMessage(e), "died while evaluating")
  # one that does not answer in time
  e <- tryCatch(pool_dispatch(1, quote(Sys.sleep(60)), pool = p, timeout = 0.5), error = function(e) e)
  expect_s3_class(e, "shard_worker_died")
  expect_match(conditionMessage(e), "did not answer within 0.5 s")
  expect_equal(p$stats$total_deaths, 3L)
  expect_identical(pool_dispatch(1, quote(2 + 2), pool = p), 4)
})

test_that("pool_dispatch() refuses bad arguments", {
  p <- pool_create(2, set_default = FALSE)
  withr::defer(pool_stop(p))
  for (bad in list(0, 3, 1.5, "1", NA, c(1, 2)))
    expect_error(pool_dispatch(bad, quote(1), pool = p), "`worker_id` must be a single worker id from 1 to 2")
  expect_error(pool_dispatch(1, quote(1), envir = list(), pool = p), "`envir` must be an environment")
  expect_error(pool_dispatch(1, quote(1), pool = p, timeout = 0), "`timeout` must be a single number of seconds > 0")
  pool_stop(p)
  expect_error(pool_dispatch(1, quote(1), pool = p), "has been stopped")
  if (!is.null(old <- pool_get())) pool_stop(old)
  expect_error(pool_dispatch(1, quote(1)), "no worker pool: call pool_create\\(\\) first")
})
