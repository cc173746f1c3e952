# is_windows() and the pages rss, worker, utils, pool (documentation topics).

test_that("is_windows() is a logical scalar, FALSE on this (Linux-only) package", {
  expect_identical(formals(is_windows), NULL)
  expect_identical(is_windows(), .Platform$OS.type == "windows")
  expect_identical(is_windows(), FALSE)
})

test_that("the RSS utilities read /proc: whole RSS, private RSS, NA for a process that is gone", {
  self <- shard:::rss_self()
  expect_true(is.numeric(self) && self > 1e6)
  expect_equal(shard:::rss_get_pid(Sys.getpid()), self, tolerance = 0.2)
  own <- shard:::worker_rss(Sys.getpid())
  expect_true(own > 0 && own <= shard:::rss_get_pid(Sys.getpid()) * 1.2)
  gone <- 2^22 + 12345     # above the kernel's pid_max default range
  expect_identical(shard:::rss_get_pid(gone), NA_real_)
  expect_identical(shard:::worker_rss(gone), NA_real_)
  expect_identical(shard:::rss_get_pid(NA), NA_real_)
  # a big allocation shows in both figures
  before <- shard:::worker_rss(Sys.getpid())
  x <- runif(2e7)
  expect_gt(shard:::worker_rss(Sys.getpid()) - before, 100e6)
  rm(x)
})

test_that("the reference's topic pages exist: pool, worker, rss, utils", {
  for (topic in c("pool", "worker", "rss", "utils", "is_windows", "pool_get", "pool_dispatch",
                  "pool_health_check", "print.shard_pool", "print.shard_worker", "print.shard_health_report"))
    expect_length(help(topic, package = "shard"), 1)
})
