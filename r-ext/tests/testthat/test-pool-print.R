# The print methods of the pool's objects (reference pages print.shard_pool,
# print.shard_worker, print.shard_health_report): they return x invisibly.

test_that("print.shard_pool() shows the pool, its limits and counters; returns it invisibly", {
  p <- pool_create(2, rss_limit = "1GB", set_default = FALSE)
  withr::defer(pool_stop(p))
  out <- capture.output(v <- withVisible(print(p)))
  expect_false(v$visible)
  expect_identical(v$value, p)
  expect_match(out[1], "<shard_pool> 2 psock workers \\(running\\)")
  expect_match(out[2], "RSS limit: 1 GiB per worker; drift threshold: 50% of baseline")
  expect_match(out[3], "recycles: 0; deaths: 0; retries: 0; tasks: 0")
  expect_match(out[4], "worker +pid +alive +rss +pss +private +tasks +sent +recycled +died")
  pool_stop(p)
  expect_match(capture.output(print(p))[1], "\\(stopped\\)")
})

test_that("print.shard_worker() shows one worker; returns it invisibly", {
  p <- pool_create(1, set_default = FALSE)
  withr::defer(pool_stop(p))
  w <- p$workers[[1]]
  expect_s3_class(w, "shard_worker")
  expect_identical(w$id, 1L)
  expect_identical(w$pid, p$pids)
  expect_true(w$alive)
  out <- capture.output(v <- withVisible(print(w)))
  expect_false(v$visible)
  expect_identical(v$value, w)
  expect_match(out[1], sprintf("<shard_worker> 1: pid %d, alive", p$pids))
  expect_match(out[2], "private RSS: .* \\(baseline .*\\); recycles: 0; deaths: 0; tasks: 0")
})

test_that("print.shard_health_report() lists the actions taken; returns it invisibly", {
  p <- pool_create(2, set_default = FALSE)
  withr::defer(pool_stop(p))
  tools::pskill(p$pids[2], tools::SIGKILL)
  deadline <- Sys.time() + 10
  while (shard:::proc_alive(p$pids[2]) && Sys.time() < deadline) Sys.sleep(0.05)
  h <- pool_health_check(p)
  out <- capture.output(v <- withVisible(print(h)))
  expect_false(v$visible)
  expect_identical(v$value, h)
  expect_match(out[1], "<shard_health_report> .*: 2 workers")
  expect_match(out[2], "recycles: 0; deaths: 1; retries: 0")
  expect_identical(out[3], "  worker 2: restart (worker_dead)")
})
