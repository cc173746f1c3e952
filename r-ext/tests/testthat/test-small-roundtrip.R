# The small-object round trip (issue 11, point 5): fetch()'s C fast path keeps
# every check of the slow path, the shared default $options list is never
# changed through another object, and a lone small object's share/close cycle
# reuses its (kept) region instead of creating one each time. No timings here:
# benches/r/access.R (SECTIONS=small) measures them.

test_that("fetch()'s fast path gives what the S3 method gives, and refuses what it refuses", {
  s <- share(c(1, 2))
  on.exit(close(s), add = TRUE)
  expect_identical(fetch(s), c(1, 2))
  expect_identical(shard:::fetch.shard_shared(s), c(1, 2))
  # Another class beside shard_shared: S3 dispatch, same result.
  s2 <- s
  class(s2) <- c("my_shared", "shard_shared")
  expect_identical(fetch(s2), c(1, 2))
  # A list that is not a shared object: fetch.default's error.
  expect_error(fetch(list(handle = s$handle)), "needs a shared object")
  expect_error(fetch(list()), "needs a shared object")
  # A shard_shared object whose handle is damaged: the handle check's error.
  bad <- s
  bad$handle <- list(s$handle)
  expect_error(fetch(bad), "a handle must be a raw vector")
  bad$handle <- NULL
  expect_error(fetch(bad), "a handle must be a raw vector")
  bad <- s
  bad$handle <- s$handle[-1]
  expect_error(fetch(bad), "handle")
  # A raw handle alone is not a shared object.
  expect_error(fetch(s$handle), "needs a shared object")
})

test_that("path, size and class_info reused from the last share are never changed through another object", {
  a <- share(c(1, 2))
  b <- share(c(3, 4))
  on.exit({ close(a); close(b) }, add = TRUE)
  ci <- list(class = "numeric", type = "double", length = 2L, dim = NULL, layout = "vector")
  expect_identical(a$class_info, ci)
  expect_identical(b$path, a$path)
  a$class_info$length <- 99L
  a$class_info$class <- "changed"
  a$size <- -1
  a$path <- "changed"
  expect_identical(b$class_info, ci)
  expect_false(identical(b$path, "changed"))
  expect_true(b$size > 0)
  d <- share(c(5, 6))
  on.exit(close(d), add = TRUE)
  expect_identical(d$class_info, ci)
  expect_identical(d$path, b$path)
  expect_identical(d$size, b$size)
  # Another type or length, or a dim: its own class_info.
  e <- share(1:3)
  on.exit(close(e), add = TRUE)
  expect_identical(e$class_info, list(class = "integer", type = "integer", length = 3L, dim = NULL,
                                      layout = "vector"))
  m <- share(matrix(c(1, 2), 1))
  on.exit(close(m), add = TRUE)
  expect_identical(m$class_info$dim, c(1L, 2L))
  f <- share(c(7, 8))
  on.exit(close(f), add = TRUE)
  expect_identical(f$class_info, ci)
})

test_that("fetch() after close() is a clean error on the fast path", {
  s <- share(c(1, 2))
  close(s)
  expect_error(fetch(s), "closed")
})

test_that("the default $options list is shared but never changed through another object", {
  # The default shard.* options (an earlier test file may have set some).
  withr::local_options(list(shard.copy_threads = NULL, shard.numa = NULL, shard.huge_pages = NULL))
  a <- share(c(1, 2))
  b <- share(c(3, 4))
  on.exit({ close(a); close(b) }, add = TRUE)
  want <- list(numa = "default", huge_pages = TRUE, copy_threads = 0L)
  expect_identical(a$options, want)
  a$options$numa <- "changed"
  a$options$copy_threads <- 7L
  expect_identical(b$options, want)
  d <- share(c(5, 6))
  on.exit(close(d), add = TRUE)
  expect_identical(d$options, want)
  # Options other than the defaults get a list of their own.
  withr::local_options(list(shard.copy_threads = 2, shard.huge_pages = FALSE))
  c2 <- share(c(7, 8))
  on.exit(close(c2), add = TRUE)
  expect_identical(c2$options, list(numa = "default", huge_pages = FALSE, copy_threads = 2L))
  expect_identical(b$options, want)
})

test_that("a lone small object's share/close cycle reuses its region", {
  skip_if_not_installed("callr")
  # In a fresh process, so that no other test's object shares the region (an
  # object live beside it would keep the region whatever the policy).
  cycles <- function() {
    library(shard)
    x <- c(1, 2)
    s <- share(x); y <- fetch(s); close(s)   # the region exists (kept) from here
    d0 <- shard_diagnostics()
    ok <- TRUE
    for (i in 1:50) {
      s <- share(x)
      ok <- ok && identical(fetch(s), x)
      close(s)
    }
    d1 <- shard_diagnostics()
    c(ok = ok, created = d1$regions_created - d0$regions_created,
      released = d1$regions_released - d0$regions_released,
      live = d1$live_objects - d0$live_objects)
  }
  r <- callr_r(cycles)
  expect_equal(r[["ok"]], 1)
  expect_equal(r[["live"]], 0)
  # Before the kept region, each cycle created and released a region (50 each).
  expect_equal(r[["created"]], 0)
  expect_equal(r[["released"]], 0)
  # The policy's knob: 0 releases at once, as before.
  r0 <- callr::r(cycles, libpath = .libPaths(),
                 env = c(callr::rcmd_safe_env(), R_LIBS = paste(.libPaths(), collapse = ":"),
                         SHARD_RETAIN_EMPTY_REGIONS = "0"))
  expect_equal(r0[["created"]], 50)
  expect_equal(r0[["released"]], 50)
})
