# Long vectors (more than 2^31 - 1 elements). They need several GiB of memory, so
# they run only with SHARD_TEST_LONG=1.

test_that("long vectors (> 2^31 elements) round-trip zero-copy", {
  if (!identical(Sys.getenv("SHARD_TEST_LONG"), "1"))
    skip("long-vector test needs about 5 GiB of memory: set SHARD_TEST_LONG=1 to run it")
  n <- 2^31 + 10
  x <- raw(n)
  x[c(1, n)] <- as.raw(c(7, 9))
  s <- suppressWarnings(share(x))   # the huge-page fallback warns once where there are none
  rm(x); gc()
  y <- fetch(s)
  expect_identical(length(y), n)
  expect_identical(y[c(1, n)], as.raw(c(7, 9)))
  expect_identical(y[n - 1], as.raw(0))
  expect_lt(length(serialize(y, NULL)), 500)
  y[n] <- as.raw(1)
  expect_identical(y[n], as.raw(1))
  expect_identical(fetch(s)[n], as.raw(9))
  # a forked worker reads it through the inherited mapping
  if (.Platform$OS.type == "unix")
    expect_identical(parallel::mclapply(1, function(i) fetch(s)[n], mc.cores = 1)[[1]], as.raw(9))
  # a long vector as a column of a list of vectors (composite layout)
  s2 <- suppressWarnings(share(list(a = as.raw(1:10), b = fetch(s))))
  z <- fetch(s2)
  expect_identical(length(z$b), n)
  expect_identical(z$b[n], as.raw(9))
  close(s2)
  close(s)
})
