# Every example of the reference pages in scope (/work/shared/spec/reference, group
# "share / fetch / segments / pools", pool pages excluded) run verbatim against this package,
# as example() would (run_example(), helper-examples.R: top-level expressions in turn,
# visible values printed). Generated from the pages' Examples sections; hook methods the
# examples define live in the example's environment only.

test_that("reference example of as_shared runs verbatim", {
  expect_no_error(run_example({
    x <- as_shared(1:100)
    is_shared_vector(x)

    y <- x[1:10]
    is_shared_vector(y)
  }))
})

test_that("reference example of available_backings runs verbatim", {
  expect_no_error(run_example({
    available_backings()
  }))
})

test_that("reference example of fetch runs verbatim", {
  expect_no_error(run_example({
    x <- 1:100
    shared <- share(x)
    recovered <- fetch(shared)
    identical(x, recovered)
    close(shared)
  }))
})

test_that("reference example of is_shared runs verbatim", {
  expect_no_error(run_example({
    is_shared(1:10)

    shared <- share(1:10)
    is_shared(shared)
    close(shared)
  }))
})

test_that("reference example of is_shared_vector runs verbatim", {
  expect_no_error(run_example({
    seg <- segment_create(400)
    segment_write(seg, 1:100, offset = 0)
    x <- shared_vector(seg, "integer", length = 100)

    is_shared_vector(x)
    is_shared_vector(1:10)
  }))
})

test_that("reference example of materialize runs verbatim", {
  expect_no_error(run_example({
    shared <- share(1:100)
    data <- materialize(shared)
    close(shared)
  }))
})

test_that("reference example of print.shard_deep_shared runs verbatim", {
  expect_no_error(run_example({
    lst <- list(a = 1:10, b = 11:20)
    shared <- share(lst, deep = TRUE, min_bytes = 1)
    print(shared)
    close(shared)
  }))
})

test_that("reference example of print.shard_segment runs verbatim", {
  expect_no_error(run_example({
    seg <- segment_create(1024)
    print(seg)
    segment_close(seg)
  }))
})

test_that("reference example of print.shard_shared runs verbatim", {
  expect_no_error(run_example({
    shared <- share(1:10)
    print(shared)
    close(shared)
  }))
})

test_that("reference example of segment_advise runs verbatim", {
  expect_no_error(run_example({
    seg <- segment_create(1024)
    segment_advise(seg, "sequential")
  }))
})

test_that("reference example of segment_close runs verbatim", {
  expect_no_error(run_example({
    seg <- segment_create(1024)
    segment_close(seg)
  }))
})

test_that("reference example of segment_create runs verbatim", {
  expect_no_error(run_example({
    seg <- segment_create(1024 * 1024)
    segment_info(seg)
    segment_close(seg)
  }))
})

test_that("reference example of segment_info runs verbatim", {
  expect_no_error(run_example({
    seg <- segment_create(1024)
    segment_info(seg)
    segment_close(seg)
  }))
})

test_that("reference example of segment_open runs verbatim", {
  expect_no_error(run_example({
    seg <- segment_create(1024, backing = "mmap")
    path <- segment_path(seg)
    seg2 <- segment_open(path, backing = "mmap", readonly = TRUE)
    segment_close(seg2, unlink = FALSE)
    segment_close(seg)
  }))
})

test_that("reference example of segment_path runs verbatim", {
  expect_no_error(run_example({
    seg <- segment_create(1024, backing = "mmap")
    segment_path(seg)
    segment_close(seg)
  }))
})

test_that("reference example of segment_protect runs verbatim", {
  expect_no_error(run_example({
    seg <- segment_create(1024)
    segment_protect(seg)
    segment_close(seg)
  }))
})

test_that("reference example of segment_read runs verbatim", {
  expect_no_error(run_example({
    seg <- segment_create(1024)
    segment_write(seg, as.integer(1:4), offset = 0)
    segment_read(seg, offset = 0, size = 16)
    segment_close(seg)
  }))
})

test_that("reference example of segment_report runs verbatim", {
  expect_no_error(run_example({
    segment_report()
  }))
})

test_that("reference example of segment_size runs verbatim", {
  expect_no_error(run_example({
    seg <- segment_create(1024)
    segment_size(seg)
    segment_close(seg)
  }))
})

test_that("reference example of segment_write runs verbatim", {
  expect_no_error(run_example({
    seg <- segment_create(1024)
    segment_write(seg, as.integer(1:10), offset = 0)
    segment_close(seg)
  }))
})

test_that("reference example of shard_share_hook runs verbatim", {
  expect_no_error(run_example({
    shard_share_hook.MyModelClass <- function(x, ctx) {
        list(
            skip_slots = "cache",
            force_share_paths = paste0(ctx$path, "@coefficients")
        )
    }

    shard_share_hook.LazyData <- function(x, ctx) {
        list(
            rewrite = function(obj) {
                obj$data <- as.matrix(obj$data)
                obj
            }
        )
    }
  }))
})

test_that("reference example of share runs verbatim", {
  expect_no_error(run_example({
    mat <- matrix(rnorm(1e4), nrow = 100)
    shared_mat <- share(mat)
    recovered <- fetch(shared_mat)
    identical(mat, recovered)
    close(shared_mat)
  }))
})

test_that("reference example of share_open runs verbatim", {
  expect_no_error(run_example({
    shared <- share(1:50)
    info <- shared_info(shared)
    reopened <- share_open(info$path, backing = "mmap")
    close(reopened)
    close(shared)
  }))
})

test_that("reference example of shared_advise runs verbatim", {
  expect_no_error(run_example({
    x <- as_shared(1:100)
    shared_advise(x, "sequential")
  }))
})

test_that("reference example of shared_diagnostics runs verbatim", {
  expect_no_error(run_example({
    seg <- segment_create(400)
    segment_write(seg, 1:100, offset = 0)
    x <- shared_vector(seg, "integer", length = 100)

    sum(x)

    shared_diagnostics(x)
  }))
})

test_that("reference example of shared_info runs verbatim", {
  expect_no_error(run_example({
    shared <- share(1:100)
    shared_info(shared)
    close(shared)
  }))
})

test_that("reference example of shared_reset_diagnostics runs verbatim", {
  expect_no_error(run_example({
    seg <- segment_create(400)
    segment_write(seg, 1:100, offset = 0)
    x <- shared_vector(seg, "integer", length = 100)

    sum(x)
    shared_diagnostics(x)$dataptr_calls

    shared_reset_diagnostics(x)
    shared_diagnostics(x)$dataptr_calls
  }))
})

test_that("reference example of shared_segment runs verbatim", {
  expect_no_error(run_example({
    x <- as_shared(1:100)
    shared_segment(x)
  }))
})

test_that("reference example of shared_vector runs verbatim", {
  expect_no_error(run_example({
    seg <- segment_create(400)
    segment_write(seg, 1:100, offset = 0)

    x <- shared_vector(seg, "integer", length = 100)
    x[1:10]

    shared_diagnostics(x)
  }))
})
