# pool_get() against its reference page.

test_that("pool_get() returns the current pool, or NULL", {
  if (!is.null(old <- pool_get())) pool_stop(old)
  expect_identical(formals(pool_get), NULL)
  expect_null(pool_get())
  p <- pool_create(1)
  withr::defer(pool_stop(p))
  expect_identical(pool_get(), p)
  other <- pool_create(1, set_default = FALSE)      # not the current pool
  withr::defer(pool_stop(other))
  expect_identical(pool_get(), p)
  pool_stop(p)
  expect_null(pool_get())
})
