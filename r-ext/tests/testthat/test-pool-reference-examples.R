# Every example of the reference pages of the pool (../shared/spec/reference:
# pool_create, pool_dispatch, pool_get, pool_health_check, pool_lapply,
# pool_sapply, pool_status, pool_stop, print.shard_pool, print.shard_worker,
# print.shard_health_report, is_windows), run verbatim: each example's text is
# copied from its page unchanged and evaluated as example() would (top-level
# expressions in turn, visible values printed); the tests then check the values
# and the output. The pages pool, rss, worker and utils have no examples.
# Nothing is skipped.

# run_example() and ref_no_pool(): helper-examples.R.

test_that("pool_create.txt example", {
  ref_no_pool()
  ex <- run_example("p <- pool_create(2)
pool_stop(p)")
  p <- ex$env$p
  expect_s3_class(p, "shard_pool")
  expect_equal(p$n, 2L)
  expect_true(p$stopped)
  expect_null(pool_get())
})

test_that("pool_dispatch.txt example", {
  ref_no_pool()
  ex <- run_example("p <- pool_create(2)
pool_dispatch(1, quote(1 + 1), pool = p)
pool_stop(p)")
  expect_identical(ex$values[[2]], 2)
  expect_identical(ex$output, "[1] 2")
  expect_true(ex$env$p$stopped)
})

test_that("pool_get.txt example", {
  ref_no_pool()
  ex <- run_example("p <- pool_get()
is.null(p)")
  expect_identical(ex$values[[2]], TRUE)
  expect_identical(ex$output, "[1] TRUE")
})

test_that("pool_health_check.txt example", {
  ref_no_pool()
  ex <- run_example("p <- pool_create(2)
pool_health_check(p)
pool_stop(p)")
  h <- ex$values[[2]]
  expect_s3_class(h, "shard_health_report")
  expect_length(h$worker_actions, 2)
  expect_match(paste(ex$output, collapse = "\n"), "all workers healthy")
})

test_that("pool_lapply.txt example", {
  ref_no_pool()
  ex <- run_example("pool_create(2)
result <- pool_lapply(1:4, function(x) x^2, pool = pool_get())
pool_stop()")
  expect_identical(ex$env$result, list(1, 4, 9, 16))
  expect_null(pool_get())
})

test_that("pool_sapply.txt example", {
  ref_no_pool()
  ex <- run_example("pool_create(2)
result <- pool_sapply(1:4, function(x) x^2, pool = pool_get())
pool_stop()")
  expect_identical(ex$env$result, c(1, 4, 9, 16))
  expect_null(pool_get())
})

test_that("pool_status.txt example", {
  ref_no_pool()
  ex <- run_example("p <- pool_create(2)
pool_status(p)
pool_stop(p)")
  st <- ex$values[[2]]
  expect_s3_class(st, "data.frame")
  expect_equal(nrow(st), 2)
  expect_true(all(st$alive))
  expect_true(all(c("worker_id", "pid", "status", "rss_bytes", "rss_baseline", "rss_drift", "recycle_count")
                  %in% names(st)))
})

test_that("pool_stop.txt example", {
  ref_no_pool()
  ex <- run_example("p <- pool_create(2)
pool_stop(p)")
  pids <- ex$env$p$pids
  deadline <- Sys.time() + 10
  while (any(vapply(pids, shard:::proc_alive, NA)) && Sys.time() < deadline) Sys.sleep(0.05)
  expect_false(any(vapply(pids, shard:::proc_alive, NA)))
})

test_that("print.shard_pool.txt example", {
  ref_no_pool()
  ex <- run_example("p <- pool_create(2)
print(p)
pool_stop(p)")
  expect_identical(ex$values[[2]], ex$env$p)
  expect_match(ex$output[1], "<shard_pool> 2 psock workers")
})

test_that("print.shard_worker.txt example", {
  ref_no_pool()
  ex <- run_example("p <- pool_create(1)
print(p$workers[[1]])
pool_stop(p)")
  expect_s3_class(ex$values[[2]], "shard_worker")
  expect_match(ex$output[1], "<shard_worker> 1: pid [0-9]+, alive")
})

test_that("print.shard_health_report.txt example", {
  ref_no_pool()
  ex <- run_example("p <- pool_create(2)
r <- pool_health_check(p)
print(r)
pool_stop(p)")
  expect_identical(ex$values[[3]], ex$env$r)
  expect_true(any(grepl("all workers healthy", ex$output)))
})

test_that("is_windows.txt example", {
  ex <- run_example("is_windows()")
  expect_identical(ex$values[[1]], FALSE)
  expect_identical(ex$output, "[1] FALSE")
})
