# pool_stop() against its reference page (timeout =), with our wait = kept.

test_that("pool_stop() has the reference's arguments (pool, timeout) and ours (wait)", {
  f <- formals(pool_stop)
  expect_identical(names(f), c("pool", "timeout", "wait"))
  expect_null(f$pool)
  expect_identical(f$timeout, 5)
})

test_that("pool_stop(timeout =) and pool_stop(wait =) stop the pool and clear the current one", {
  p <- pool_create(1)
  pids <- p$pids
  v <- withVisible(pool_stop(timeout = 2))
  expect_false(v$visible)
  expect_true(v$value)
  expect_true(p$stopped)
  expect_null(pool_get())
  deadline <- Sys.time() + 10
  while (shard:::proc_alive(pids) && Sys.time() < deadline) Sys.sleep(0.05)
  expect_false(shard:::proc_alive(pids))
  p2 <- pool_create(1, set_default = FALSE)
  expect_true(pool_stop(p2, wait = 1))
  expect_false(pool_stop(p2, timeout = 1))           # already stopped
  expect_false(pool_stop())                          # no current pool: nothing to do
})

test_that("pool_stop() refuses a bad timeout, naming the argument given", {
  expect_error(pool_stop(timeout = -1), "`timeout` must be a single non-negative number of seconds")
  expect_error(pool_stop(wait = "a"), "`wait` must be a single non-negative number of seconds")
  expect_error(pool_stop(pool = list()), "must be a pool from pool_create")
})
