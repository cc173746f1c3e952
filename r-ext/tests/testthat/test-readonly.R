# Read-only semantics: no R operation on a fetched vector changes the shared bytes
# or another R object; reads that ask for a writable pointer do not copy; writes
# give a private copy-on-write mapping (or an error with shard.cow = "error");
# after close(), use is an R error, never a crash.

test_that("reads that ask R for a writable pointer do not copy the vector", {
  x <- rnorm(2e6)
  s <- share(x)
  y <- fetch(s)
  before <- cow_counters()
  expect_identical(range(y), range(x))
  expect_identical(which.max(y), which.max(x))
  expect_identical(sum(y == x[1]), 1L)
  expect_true(identical(y, x))
  expect_identical(order(y)[1:5], order(x)[1:5])
  expect_identical(y[y > 0], x[x > 0])
  expect_identical(sort(y)[1:3], sort(x)[1:3])
  expect_equal(mean(y), mean(x))
  after <- cow_counters()
  # no whole copies; at most O(1) private mappings (never copied pages)
  expect_identical(after[["copies"]], before[["copies"]])
  expect_identical(after[["copy_bytes"]], before[["copy_bytes"]])
  expect_lte(after[["cow_mappings"]] - before[["cow_mappings"]], 3)
  info <- shared_info(y)
  expect_false(isTRUE(info$private_copy))
  close(s)
})

test_that("modifying a fetched vector gives a private copy; the shared bytes and other objects stay", {
  x <- rnorm(1e6)
  s <- share(x)
  y1 <- fetch(s)
  y2 <- fetch(s)
  alias <- y1
  before <- cow_counters()
  y1[1] <- 42
  expect_identical(y1[1], 42)
  expect_identical(y2[1], x[1])      # another fetch() in the same process
  expect_identical(alias[1], x[1])   # another R object bound to the same vector
  expect_identical(fetch(s)[1], x[1])
  expect_identical(x[2:1e6], y1[2:1e6])
  after <- cow_counters()
  expect_gt(after[["cow_mappings"]], before[["cow_mappings"]])   # page-granular private mapping
  expect_identical(after[["copies"]], before[["copies"]])
  expect_true(shared_info(y1)$private_copy)
  # attribute changes do not reach the shared object
  names(y2) <- NULL
  dim(y2) <- c(1000, 1000)
  expect_null(dim(fetch(s)))
  # in place modification inside a function
  f <- function(v) { v[10] <- -1; v }
  z <- f(fetch(s))
  expect_identical(z[10], -1)
  expect_identical(fetch(s)[10], x[10])
  close(s)
})

test_that("modifying columns of a fetched data.frame or list leaves the shared object", {
  df <- data.frame(a = 1:10, b = letters[1:10], stringsAsFactors = FALSE)
  s <- share(df)
  y <- fetch(s)
  y$a[3] <- 100L
  y$b[1] <- "zz"
  y[2, "a"] <- -1L
  expect_identical(fetch(s), df)
  expect_identical(y$a[3], 100L)
  expect_identical(y$b[1], "zz")
  l <- fetch(share(list(v = c(1, 2, 3))))
  l$v[2] <- 0
  expect_identical(l$v, c(1, 0, 3))
  close(s)
})

test_that("string vectors can be modified privately", {
  x <- c("a", "b", NA)
  s <- share(x)
  y <- fetch(s)
  y[2] <- "B"
  expect_identical(y, c("a", "B", NA))
  expect_identical(fetch(s), x)
  close(s)
})

test_that("other processes do not see a modification (forked and another R process)", {
  skip_if_no_fork()
  x <- as.numeric(1:1e5)
  s <- share(x)
  y <- fetch(s)
  res <- parallel::mclapply(1:2, function(i) { v <- y; v[1:10] <- -i; sum(v) }, mc.cores = 2)
  expect_identical(unlist(res), sum(x) - sum(1:10) - c(1, 2) * 10)
  expect_identical(y, x)
  expect_identical(fetch(s), x)
  skip_if_no_callr()
  h <- s$handle
  got <- callr_r(function(s) { library(shard); v <- fetch(s); v[1] <- 99; c(v[1], fetch(s)[1]) }, list(s))
  expect_identical(got, c(99, 1))
  expect_identical(fetch(s)[1], 1)
  close(s)
})

test_that("options(shard.cow = \"error\") makes modification an error, reads still work", {
  x <- rnorm(1000)
  s <- share(x)
  old <- options(shard.cow = "error")
  on.exit(options(old))
  y <- fetch(s)
  expect_error(y[1] <- 0, "not allowed.*shard.cow")
  expect_error(names(y) <- NULL, NA)  # no names: nothing to change, no copy
  # new attributes do not touch the data: R wraps the vector (no copy), and a
  # later write to the wrapped data is still refused
  yn <- fetch(s)
  expect_error(names(yn) <- paste0("n", 1:1000), NA)
  expect_error(yn[3] <- 1, "not allowed")
  expect_error(y[[2]] <- 1, "not allowed")
  # a refused assignment can leave R's wrapper in `y` (documented): fetch again
  y <- fetch(s)
  expect_true(identical(y, x))
  expect_equal(range(y), range(x))
  expect_identical(which.max(y), which.max(x))
  expect_true(identical(y, x))
  expect_identical(y[y > 0], x[x > 0])
  expect_identical(order(y), order(x))
  z <- y + 1           # arithmetic makes new vectors: allowed
  expect_equal(z, x + 1)
  m <- materialize(y)  # the documented way to get a modifiable copy
  m[1] <- 0
  expect_identical(m[1], 0)
  s2 <- share(letters)
  w <- fetch(s2)
  expect_error(w[1] <- "A", "not allowed")
  close(s); close(s2)
})

test_that("diagnostics count copies (count and bytes) when a copy is unavoidable", {
  x <- c(0.5, 1.5, 2.5)          # small: lives in a slab, not page-aligned
  s <- share(x)
  y <- fetch(s)
  before <- cow_counters()
  y[1] <- 0
  after <- cow_counters()
  expect_identical(after[["copies"]] - before[["copies"]], 1)
  expect_identical(after[["copy_bytes"]] - before[["copy_bytes"]], 24)
  expect_identical(fetch(s), x)
  d <- shard_diagnostics()
  expect_true(all(c("cow_mappings", "cow_bytes", "copies", "copy_bytes", "regions", "live_objects") %in% names(d)))
  close(s)
})

test_that("after close(), using a vector is an R error, never a segfault", {
  x <- rnorm(1e5)
  s <- share(x)
  y <- fetch(s)
  m <- fetch(s); m[1] <- 0         # a private copy-on-write vector
  st <- fetch(share(c("a", "b")))
  df <- fetch(s2 <- share(data.frame(a = 1:3)))
  expect_true(close(s))
  expect_false(close(s))          # closing twice is harmless
  expect_identical(length(y), 1e5L)
  msg <- "shared memory has been closed"
  expect_error(sum(y), msg)
  expect_error(y[1:2], msg)
  # One element at a time is not checked (that would cost every subset a call):
  # the pages stay mapped while y lives, so the read returns the old value.
  expect_identical(y[[5]], x[[5]])
  expect_error(mean(y), msg)
  expect_error(range(y), msg)
  expect_error(y + 1, msg)
  expect_error(print(y), msg)
  expect_error(serialize(y, NULL), msg)
  expect_error(materialize(y), msg)
  expect_error(m[2:3], msg)
  expect_error(fetch(s), "closed")
  close(s2)
  expect_error(df$a[1:2], msg)
  expect_error(sum(df$a), msg)
  expect_identical(nrow(df), 3L)
  expect_identical(shared_info(y)$closed, TRUE)
})
