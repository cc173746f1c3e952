# close() of a shard_shared object: C takes the handle from the object (no `$`
# call for class exactly "shard_shared"; through `$` for a subclass). The same
# results and errors as con$handle gave.

test_that("close() returns TRUE, then FALSE, and the object is closed", {
  s <- share(c(1, 2))
  y <- fetch(s)
  expect_true(withVisible(close(s))$value)
  expect_false(withVisible(close(s))$visible)
  expect_false(close(s))
  expect_error(fetch(s), "closed")
  expect_error(y[1:2] + 0, "closed")
})

test_that("a subclass of shard_shared closes through `$`, the same way", {
  s <- share(c(1, 2))
  class(s) <- c("my_shared", "shard_shared")
  expect_identical(fetch(s), c(1, 2))
  expect_true(close(s))
  expect_false(close(s))
  expect_error(fetch(s), "closed")
  # A `$` method of the subclass is honoured (it is what con$handle called).
  s2 <- share(c(3, 4))
  other <- share(c(5, 6))
  fake <- structure(list(handle = other$handle, real = s2$handle), class = c("alias_shared", "shard_shared"))
  registerS3method("$", "alias_shared", function(x, name) .subset2(x, if (name == "handle") "real" else name))
  expect_true(close(fake))                   # closed s2, not `other`
  expect_error(fetch(s2), "closed")
  expect_identical(fetch(other), c(5, 6))
  close(other)
})

test_that("close() of a damaged shard_shared object is the same clear error", {
  s <- share(c(1, 2))
  on.exit(close(s), add = TRUE)
  bad <- s
  bad$handle <- NULL
  expect_error(close(bad), "a handle must be a raw vector")
  bad <- s
  bad$handle <- list(s$handle)
  expect_error(close(bad), "a handle must be a raw vector")
  bad <- s
  bad$handle <- "not a handle"
  expect_error(close(bad), "a handle must be a raw vector")
  bad <- s
  bad$handle <- s$handle[-1]
  expect_error(close(bad), "handle")
  # The real object is still open after those.
  expect_identical(fetch(s), c(1, 2))
})
