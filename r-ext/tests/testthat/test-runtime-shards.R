# shards(), shards_list() and the descriptor methods (R/shards.R).

test_that("shards() splits contiguous ranges that cover 1..n once", {
  d <- shards(1000, block_size = 100)
  expect_s3_class(d, "shard_descriptor")
  expect_identical(length(d), 10L)
  expect_identical(d$n, 1000)
  expect_identical(d$block_size, 100)
  expect_identical(d$strategy, "contiguous")
  expect_identical(unlist(lapply(d$shards, `[[`, "idx")), 1:1000)
  s <- d[[3]]
  expect_identical(s[c("id", "start", "end", "len")], list(id = 3L, start = 201L, end = 300L, len = 100L))
  expect_identical(shards(10, block_size = 4)[[3]]$idx, 9:10)
})

test_that("auto block size follows workers, min/max shards per worker and the scratch budget", {
  expect_identical(length(shards(1e6, workers = 8)), 32L)        # 4 per worker
  expect_identical(length(shards(1e6, workers = 8, min_shards_per_worker = 10)), 80L)
  expect_identical(length(shards(1000, workers = 2)), 8L)
  # a scratch budget of 1 MB over 2 workers at 1 KB per item: <= 512 items per shard
  d <- shards(1e5, workers = 2, scratch_bytes_per_item = 1024, scratch_budget = "1MB")
  expect_lte(d$block_size, 512)
  expect_identical(shards(10, workers = 100)$block_size, 1)
})

test_that("block_size accepts counts written as text", {
  expect_identical(shards(1e5, block_size = "10K")$block_size, 1e4)
  expect_identical(shards(5e6, block_size = "1M")$block_size, 1e6)
  expect_error(shards(10, block_size = "lots"), "block_size")
  expect_error(shards(10, block_size = 0), "block_size")
})

test_that("strided shards interleave", {
  d <- shards(10, block_size = 5, strategy = "strided")
  expect_identical(length(d), 2L)
  expect_identical(d[[1]]$idx, c(1L, 3L, 5L, 7L, 9L))
  expect_identical(d[[2]]$idx, c(2L, 4L, 6L, 8L, 10L))
})

test_that("bad shards() arguments are errors", {
  expect_error(shards(0), "`n`")
  expect_error(shards(2.5), "`n`")
  expect_error(shards(10, strategy = "random"), "strategy")
  expect_error(shards(10, workers = 0), "workers")
  expect_error(shards(10, min_shards_per_worker = 8, max_shards_per_worker = 4), "max_shards_per_worker")
  expect_error(shards(10, scratch_bytes_per_item = -1), "scratch_bytes_per_item")
  expect_error(shards(10, scratch_budget = "x"), "scratch_budget")
})

test_that("[ and [[ subset descriptors; print shows the layout", {
  sh <- shards(100, block_size = 25)
  s2 <- sh[1:2]
  expect_s3_class(s2, "shard_descriptor")
  expect_identical(length(s2), 2L)
  expect_identical(s2[[2]]$idx, 26:50)
  expect_identical(sh[[4]]$idx, 76:100)
  expect_error(sh[[5]], "from 1 to 4")
  expect_error(sh[[1:2]], "one number")
  out <- capture.output(r <- print(sh))
  expect_identical(r, sh)
  expect_match(out[1], "<shard_descriptor> 100 items in 4 shards \\(contiguous, block size 25\\)")
  expect_match(out[2], "shard 1: 25 items \\(1..25\\)")
})

test_that("many shards make a lazy descriptor computed on demand", {
  old <- options(shard.lazy_threshold = 10)
  on.exit(options(old))
  d <- shards(1000, block_size = 10)
  expect_s3_class(d, "shard_descriptor_lazy")
  expect_null(unclass(d)$shards)
  expect_identical(length(d), 100L)
  expect_identical(d[[100]]$idx, 991:1000)
  expect_identical(d$shards[[2]]$idx, 11:20)
  expect_identical(d[2:3][[2]]$idx, 21:30)
  expect_match(capture.output(print(d))[1], "lazy")
})

test_that("shards_list() makes one shard per index vector", {
  sh <- shards_list(list(1:10, 11:20, c(25, 21)))
  expect_identical(length(sh), 3L)
  expect_identical(sh[[3]]$idx, c(25L, 21L))
  expect_identical(sh[[3]]$len, 2L)
  expect_identical(sh[[2]]$id, 2L)
  expect_error(shards_list(list()), "non-empty list")
  expect_error(shards_list(list(1:3, c(0, 1))), "element 2")
  expect_error(shards_list(1:3), "list")
})
