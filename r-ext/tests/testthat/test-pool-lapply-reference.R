# pool_lapply() / pool_sapply() against their reference pages (behaviour is in
# test-pool.R): the reference's arguments, in its order, with ours after.

test_that("pool_lapply() and pool_sapply() take the reference's arguments", {
  fl <- formals(pool_lapply)
  expect_identical(names(fl)[1:5], c("X", "FUN", "...", "pool", "chunk_size"))
  expect_null(fl$pool)
  expect_identical(fl$chunk_size, 1L)
  fs <- formals(pool_sapply)
  expect_identical(names(fs)[1:5], c("X", "FUN", "...", "simplify", "pool"))
  expect_identical(fs$simplify, TRUE)
  expect_null(fs$pool)
})

test_that("pool_lapply() returns a list; pool_sapply() simplifies or not; `...` reaches FUN", {
  p <- pool_create(2, set_default = FALSE)
  withr::defer(pool_stop(p))
  expect_identical(pool_lapply(1:5, function(x, k) x * k, 3L, pool = p, chunk_size = 2L),
                   lapply(1:5, function(x, k) x * k, 3L))
  expect_identical(pool_sapply(1:3, function(x) c(x, x^2), pool = p), sapply(1:3, function(x) c(x, x^2)))
  expect_identical(pool_sapply(1:3, function(x) x, simplify = FALSE, pool = p), list(1L, 2L, 3L))
  expect_identical(pool_sapply(list(a = 1, b = 2), function(x) x + 1, pool = p), c(a = 2, b = 3))
  expect_error(pool_lapply(1:2, identity, pool = p, chunk_size = 0), "`chunk_size` must be a single whole number >= 1")
  expect_error(pool_sapply(1:2, identity, simplify = "yes", pool = p), "`simplify` must be TRUE, FALSE or \"array\"")
})
