# pool_health_check() against its reference page (the recycling itself is in
# test-pool-supervision.R).

test_that("pool_health_check() has the reference's arguments", {
  f <- formals(pool_health_check)
  expect_identical(names(f), c("pool", "busy_workers"))
  expect_null(f$pool)
  expect_null(f$busy_workers)
})

test_that("pool_health_check() returns a shard_health_report with per-worker status and actions", {
  p <- pool_create(2)
  withr::defer(pool_stop(p))
  h <- pool_health_check()                           # the current pool
  expect_s3_class(h, "shard_health_report")
  expect_named(h, c("timestamp", "pool_stats", "worker_actions"))
  expect_s3_class(h$timestamp, "POSIXct")
  expect_named(h$pool_stats, c("total_recycles", "total_deaths", "total_retries", "total_tasks"))
  expect_length(h$worker_actions, 2)
  for (i in 1:2) {
    a <- h$worker_actions[[i]]
    expect_identical(a$worker_id, i)
    expect_identical(a$action, "none")
    expect_identical(a$reason, NA_character_)
    expect_identical(a$pid, p$pids[i])
    expect_true(a$rss_current > 0 && a$rss_baseline > 0)
    expect_true(is.numeric(a$rss_drift))
  }
  expect_identical(pool_health_check(p, busy_workers = c(1, 2))$worker_actions[[2]]$action, "none")
})

test_that("pool_health_check() refuses bad input", {
  p <- pool_create(2, set_default = FALSE)
  withr::defer(pool_stop(p))
  expect_error(pool_health_check(p, busy_workers = 3), "`busy_workers` must be NULL or worker ids from 1 to 2")
  expect_error(pool_health_check(p, busy_workers = "1"), "`busy_workers` must be")
  expect_error(pool_health_check(list()), "must be a pool from pool_create")
  pool_stop(p)
  expect_error(pool_health_check(p), "has been stopped")
  if (!is.null(old <- pool_get())) pool_stop(old)
  expect_error(pool_health_check(), "no worker pool: call pool_create\\(\\) first")
})
