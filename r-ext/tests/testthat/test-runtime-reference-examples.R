# Every example of the runtime's reference pages (../shared/spec/reference,
# group "parallel runtime" of INDEX.md), run verbatim: each example's text is
# copied from its page unchanged and evaluated as example() would (top-level
# expressions in turn, visible values printed); the tests then check the values
# and the output. Pages without examples: diagnostics, dispatch, ergonomics,
# queue, views, view_diagnostics, materialize.shard_view_block/gather,
# print.shard_apply_policy, print.shard_tiles, print.shard_view_block/gather
# (their functions are tested in test-views.R / test-runtime-*.R).

# run_example() and ref_no_pool(): helper-examples.R.

test_that("as.array.shard_buffer.txt example", {
  ref_no_pool()
  ex <- run_example("buf <- buffer(\"double\", dim = c(2, 3, 4))
as.array(buf)
buffer_close(buf)")
  expect_identical(ex$values[[2]], array(0, c(2, 3, 4)))
})

test_that("as.double.shard_buffer.txt example", {
  ref_no_pool()
  ex <- run_example("buf <- buffer(\"double\", dim = 5)
as.double(buf)
buffer_close(buf)")
  expect_identical(ex$values[[2]], double(5))
})

test_that("as.integer.shard_buffer.txt example", {
  ref_no_pool()
  ex <- run_example("buf <- buffer(\"integer\", dim = 5)
as.integer(buf)
buffer_close(buf)")
  expect_identical(ex$values[[2]], integer(5))
})

test_that("as.logical.shard_buffer.txt example", {
  ref_no_pool()
  ex <- run_example("buf <- buffer(\"logical\", dim = 5)
as.logical(buf)
buffer_close(buf)")
  expect_identical(ex$values[[2]], logical(5))
})

test_that("as.matrix.shard_buffer.txt example", {
  ref_no_pool()
  ex <- run_example("buf <- buffer(\"double\", dim = c(3, 4))
as.matrix(buf)
buffer_close(buf)")
  expect_identical(ex$values[[2]], matrix(0, 3, 4))
})

test_that("as.raw.shard_buffer.txt example", {
  ref_no_pool()
  ex <- run_example("buf <- buffer(\"raw\", dim = 5)
as.raw(buf)
buffer_close(buf)")
  expect_identical(ex$values[[2]], raw(5))
})

test_that("as.vector.shard_buffer.txt example", {
  ref_no_pool()
  ex <- run_example("buf <- buffer(\"double\", dim = 5)
buf[1:5] <- 1:5
as.vector(buf)
buffer_close(buf)")
  expect_identical(ex$values[[3]], as.double(1:5))
})

test_that("buffer.txt example", {
  ref_no_pool()
  ex <- run_example("out <- buffer(\"double\", dim = 100)
out[1:10] <- rnorm(10)
result <- out[]")
  expect_length(ex$env$result, 100)
  expect_identical(ex$env$result[11:100], double(90))
  expect_true(all(ex$env$result[1:10] != 0))
})

test_that("buffer_advise.txt example", {
  ref_no_pool()
  ex <- run_example("buf <- buffer(\"double\", dim = 10L)
buffer_advise(buf, \"sequential\")")
  expect_identical(ex$values[[2]], TRUE)
})

test_that("buffer_close.txt example", {
  ref_no_pool()
  ex <- run_example("buf <- buffer(\"double\", dim = 10)
buffer_close(buf)")
  expect_false(file.exists(ex$env$buf$path))
})

test_that("buffer_diagnostics.txt example", {
  ref_no_pool()
  ex <- run_example("buffer_diagnostics()")
  expect_named(ex$values[[1]], c("writes", "bytes", "reads", "read_bytes", "init_writes", "init_bytes"))
})

test_that("buffer_info.txt example", {
  ref_no_pool()
  ex <- run_example("buf <- buffer(\"integer\", dim = c(5, 5))
buffer_info(buf)
buffer_close(buf)")
  expect_identical(ex$values[[2]]$type, "integer")
  expect_identical(ex$values[[2]]$dim, c(5, 5))
  expect_true(all(c("type", "dim", "n", "bytes", "backing", "path", "readonly") %in% names(ex$values[[2]])))
})

test_that("buffer_open.txt example", {
  ref_no_pool()
  ex <- run_example("buf <- buffer(\"double\", dim = 10)
path <- buffer_path(buf)
buf2 <- buffer_open(path, type = \"double\", dim = 10, backing = \"mmap\")
buffer_close(buf2, unlink = FALSE)
buffer_close(buf)")
  expect_s3_class(ex$env$buf2, "shard_buffer")
  expect_false(file.exists(ex$env$path))
})

test_that("buffer_path.txt example", {
  ref_no_pool()
  ex <- run_example("buf <- buffer(\"double\", dim = 10)
buffer_path(buf)
buffer_close(buf)")
  expect_match(ex$values[[2]], "^shard-buf:[0-9a-f]+$")   # the handle as text: a buffer has no file
})

test_that("copy_report.txt example", {
  ref_no_pool()
  ex <- run_example("res <- shard_map(shards(100, workers = 2), function(s) sum(s$idx), workers = 2)
pool_stop()
copy_report(res)")
  expect_s3_class(ex$values[[3]], "shard_report")
  expect_identical(ex$values[[3]]$type, "copy")
  expect_identical(ex$values[[3]]$buffer_writes, 0)
})

test_that("cow_report.txt example", {
  ref_no_pool()
  ex <- run_example("res <- shard_map(shards(100, workers = 2), function(s) sum(s$idx), workers = 2)
pool_stop()
cow_report(res)")
  expect_identical(ex$values[[3]]$type, "cow")
  expect_identical(ex$values[[3]]$policy, "deny")
})

test_that("dim.shard_buffer.txt example", {
  ref_no_pool()
  ex <- run_example("buf <- buffer(\"double\", dim = c(4, 5))
dim(buf)
buffer_close(buf)")
  expect_identical(ex$values[[2]], c(4L, 5L))
})

test_that("dispatch_chunks.txt example", {
  ref_no_pool()
  ex <- run_example("pool_create(2)
chunks <- list(list(id = 1L, x = 1), list(id = 2L, x = 2))
result <- dispatch_chunks(chunks, function(chunk) chunk$x * 2, pool = pool_get())
pool_stop()")
  expect_identical(ex$env$result$results, list(`1` = 2, `2` = 4))
  expect_s3_class(ex$env$result, "shard_dispatch_result")
})

test_that("idx_range.txt example", {
  ref_no_pool()
  ex <- run_example("r <- idx_range(1, 100)
r")
  expect_identical(ex$output, "<shard_idx_range> 1:100 (100 elements)")
})

test_that("is_view.txt example", {
  ref_no_pool()
  ex <- run_example("m <- share(matrix(1:20, nrow = 4))
v <- view_block(m, cols = idx_range(1, 2))
is_view(v)
is_block_view(v)")
  expect_identical(ex$values[3:4], list(TRUE, TRUE))
})

test_that("length.shard_buffer.txt example", {
  ref_no_pool()
  ex <- run_example("buf <- buffer(\"double\", dim = 20)
length(buf)
buffer_close(buf)")
  expect_identical(ex$values[[2]], 20L)
})

test_that("length.shard_descriptor.txt example", {
  ref_no_pool()
  ex <- run_example("sh <- shards(100, block_size = 25)
length(sh)")
  expect_identical(ex$values[[2]], 4L)
})

test_that("length.shard_descriptor_lazy.txt example", {
  ref_no_pool()
  ex <- run_example("sh <- shards(100, block_size = 25)
length(sh)")
  expect_identical(ex$values[[2]], 4L)
})

test_that("mem_report.txt example", {
  ref_no_pool()
  ex <- run_example("p <- pool_create(2)
mem_report(p)
pool_stop(p)")
  expect_identical(ex$values[[2]]$type, "memory")
  expect_identical(ex$values[[2]]$n_workers, 2L)
  expect_length(ex$values[[2]]$workers, 2L)
})

test_that("print.shard_buffer.txt example", {
  ref_no_pool()
  ex <- run_example("buf <- buffer(\"double\", dim = 10)
print(buf)
buffer_close(buf)")
  expect_match(ex$output[1], "<shard_buffer> double \\[10\\]")
})

test_that("print.shard_descriptor.txt example", {
  ref_no_pool()
  ex <- run_example("sh <- shards(100, block_size = 25)
print(sh)")
  expect_match(ex$output[1], "100 items in 4 shards")
})

test_that("print.shard_descriptor_lazy.txt example", {
  ref_no_pool()
  ex <- run_example("sh <- shards(100, block_size = 25)
print(sh)")
  expect_match(ex$output[1], "100 items in 4 shards")
})

test_that("print.shard_dispatch_result.txt example", {
  ref_no_pool()
  ex <- run_example("pool_create(2)
chunks <- list(list(id = 1L, x = 1), list(id = 2L, x = 2))
result <- dispatch_chunks(chunks, function(chunk) chunk$x, pool = pool_get())
print(result)
pool_stop()")
  expect_match(ex$output[1], "<shard_dispatch_result> 2 chunks")
})

test_that("print.shard_idx_range.txt example", {
  ref_no_pool()
  ex <- run_example("r <- idx_range(1, 10)
print(r)")
  expect_identical(ex$output, "<shard_idx_range> 1:10 (10 elements)")
})

test_that("print.shard_reduce_result.txt example", {
  ref_no_pool()
  ex <- run_example("res <- shard_reduce(4L, map = function(s) sum(s$idx),
  combine = `+`, init = 0, workers = 2)
pool_stop()
print(res)")
  expect_identical(ex$env$res$value, 10)
  expect_match(ex$output[1], "<shard_reduce_result>")
})

test_that("print.shard_report.txt example", {
  ref_no_pool()
  ex <- run_example("res <- shard_map(shards(100, workers = 2), function(s) sum(s$idx), workers = 2)
pool_stop()
rpt <- report(result = res)
print(rpt)")
  expect_match(ex$output[1], "<shard_report> summary report")
  expect_true(any(grepl("last result: 8 shards", ex$output)))
})

test_that("print.shard_result.txt example", {
  ref_no_pool()
  ex <- run_example("result <- shard_map(4L, function(shard) shard$idx, workers = 2)
pool_stop()
print(result)")
  expect_match(ex$output[1], "<shard_result> [0-9]+ shards")
  expect_identical(sort(unlist(ex$env$result$results)), 1:4)
})

test_that("recommendations.txt example", {
  ref_no_pool()
  ex <- run_example("res <- shard_map(shards(100, workers = 2), function(s) sum(s$idx), workers = 2)
pool_stop()
recommendations(res)")
  expect_type(ex$values[[3]], "character")
})

test_that("report.txt example", {
  ref_no_pool()
  ex <- run_example("res <- shard_map(shards(100, workers = 2), function(s) sum(s$idx), workers = 2)
pool_stop()
report(result = res)")
  expect_identical(ex$values[[3]]$level, "summary")
  expect_identical(ex$values[[3]]$result_diagnostics$shards_total, 8L)
})

test_that("results.txt example", {
  ref_no_pool()
  ex <- run_example("result <- shard_map(4L, function(shard) shard$idx[[1L]], workers = 2)
pool_stop()
results(result)")
  expect_identical(sort(ex$values[[3]]), 1:4)
})

test_that("shard_apply_matrix.txt example", {
  ref_no_pool()
  ex <- run_example("X <- matrix(rnorm(400), 20, 20)
shard_apply_matrix(X, MARGIN = 2, FUN = mean)
pool_stop()")
  expect_equal(ex$values[[2]], colMeans(ex$env$X))
})

test_that("shard_apply_policy.txt example", {
  ref_no_pool()
  ex <- run_example("cfg <- shard_apply_policy()
cfg")
  expect_s3_class(ex$env$cfg, "shard_apply_policy")
  expect_match(ex$output[1], "<shard_apply_policy>")
})

test_that("shard_crossprod.txt example", {
  ref_no_pool()
  ex <- run_example("X <- matrix(rnorm(2000), 100, 20)
Y <- matrix(rnorm(2000), 100, 20)
res <- shard_crossprod(X, Y, block_x = 50, block_y = 10, workers = 2)
pool_stop()
res$value")
  expect_equal(ex$values[[5]], crossprod(ex$env$X, ex$env$Y))
  expect_identical(ex$env$res$tile, c(block_x = 20L, block_y = 10L))   # block_x clamped to ncol(X)
})

test_that("shard_lapply_shared.txt example", {
  ref_no_pool()
  ex <- run_example("res <- shard_lapply_shared(as.list(1:4), function(x) x^2)
pool_stop()
res")
  expect_identical(ex$values[[3]], list(1, 4, 9, 16))
})

test_that("shard_map.txt example", {
  ref_no_pool()
  ex <- run_example("blocks <- shards(1000, workers = 2)
result <- shard_map(blocks, function(shard) {
  sum(shard$idx^2)
}, workers = 2)
pool_stop()")
  expect_true(succeeded(ex$env$result))
  expect_identical(sum(unlist(ex$env$result$results)), sum((1:1000)^2))
})

test_that("shard_reduce.txt example", {
  ref_no_pool()
  ex <- run_example("res <- shard_reduce(
  100L,
  map = function(s) sum(s$idx),
  combine = function(acc, x) acc + x,
  init = 0,
  workers = 2
)
pool_stop()
res$value")
  expect_identical(ex$values[[3]], 5050)
})

test_that("shards.txt example", {
  ref_no_pool()
  ex <- run_example("blocks <- shards(1e6, workers = 8)
length(blocks$shards)

blocks <- shards(1000, block_size = 100)

blocks$shards[[1]]$idx")
  expect_identical(ex$values[[2]], 32L)
  expect_identical(ex$values[[4]], 1:100)
})

test_that("shards_list.txt example", {
  ref_no_pool()
  ex <- run_example("sh <- shards_list(list(1:10, 11:20, 21:30))
length(sh)")
  expect_identical(ex$values[[2]], 3L)
})

test_that("shared_view.txt example", {
  ref_no_pool()
  ex <- run_example("seg <- segment_create(800)
segment_write(seg, 1:100, offset = 0)
x <- shared_vector(seg, \"integer\", length = 100)

y <- shared_view(x, start = 10, length = 11)
y[1]")
  expect_identical(ex$values[[5]], 10L)
})

test_that("sub-.shard_buffer.txt example", {
  ref_no_pool()
  ex <- run_example("buf <- buffer(\"double\", dim = 10)
buf[1:5] <- 1:5
buf[1:3]
buffer_close(buf)")
  expect_identical(ex$values[[3]], c(1, 2, 3))
})

test_that("sub-.shard_descriptor.txt example", {
  ref_no_pool()
  ex <- run_example("sh <- shards(100, block_size = 25)
sh[1:2]")
  expect_identical(length(ex$values[[2]]), 2L)
})

test_that("sub-.shard_descriptor_lazy.txt example", {
  ref_no_pool()
  ex <- run_example("sh <- shards(100, block_size = 25)
sh[1:2]")
  expect_identical(length(ex$values[[2]]), 2L)
})

test_that("sub-sub-.shard_descriptor.txt example", {
  ref_no_pool()
  ex <- run_example("sh <- shards(100, block_size = 25)
sh[[1]]")
  expect_identical(ex$values[[2]]$idx, 1:25)
})

test_that("sub-sub-.shard_descriptor_lazy.txt example", {
  ref_no_pool()
  ex <- run_example("sh <- shards(100, block_size = 25)
sh[[1]]")
  expect_identical(ex$values[[2]]$idx, 1:25)
})

test_that("subset-.shard_buffer.txt example", {
  ref_no_pool()
  ex <- run_example("buf <- buffer(\"double\", dim = 10)
buf[1:5] <- rnorm(5)
buffer_close(buf)")
  expect_false(file.exists(ex$env$buf$path))
})

test_that("succeeded.txt example", {
  ref_no_pool()
  ex <- run_example("result <- shard_map(4L, function(shard) shard$idx[[1L]], workers = 2)
pool_stop()
succeeded(result)")
  expect_identical(ex$values[[3]], TRUE)
})

test_that("task_report.txt example", {
  ref_no_pool()
  ex <- run_example("res <- shard_map(shards(100, workers = 2), function(s) sum(s$idx), workers = 2)
pool_stop()
task_report(res)")
  expect_identical(ex$values[[3]]$type, "task")
  expect_identical(ex$values[[3]]$shards_processed, 8L)
})

test_that("view.txt example", {
  ref_no_pool()
  ex <- run_example("m <- share(matrix(1:20, nrow = 4))
v <- view(m, cols = idx_range(1, 2))")
  expect_s3_class(ex$env$v, "shard_view_block")
})

test_that("view_block.txt example", {
  ref_no_pool()
  ex <- run_example("m <- share(matrix(1:20, nrow = 4))
v <- view_block(m, cols = idx_range(1, 2))")
  expect_identical(materialize(ex$env$v), matrix(1:8, 4))
})

test_that("view_gather.txt example", {
  ref_no_pool()
  ex <- run_example("m <- share(matrix(1:20, nrow = 4))
v <- view_gather(m, cols = c(1L, 3L))")
  expect_identical(materialize(ex$env$v), matrix(1:20, nrow = 4)[, c(1, 3)])
})

test_that("view_info.txt example", {
  ref_no_pool()
  ex <- run_example("m <- share(matrix(1:20, nrow = 4))
v <- view_block(m, cols = idx_range(1, 2))
view_info(v)")
  expect_identical(ex$values[[3]]$slice_dim, c(4, 2))
  expect_true(ex$values[[3]]$fast_path)
})
