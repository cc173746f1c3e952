# Reads of views that ask R for a writable data pointer (var(), sd(), range(),
# identical(), x[x > 0], ...) copy nothing: src/cow.c makes a private
# copy-on-write mapping of the pages that hold the view's bytes, wherever the
# view starts (before: only a vector spanning a whole page-aligned data section
# got one; every view was copied whole).

test_that("sd()/var()/range() of a 1-column view at an odd row offset copy nothing and equal base R", {
  set.seed(11)
  n <- 1e5
  x <- matrix(rnorm(n * 4), ncol = 4)
  s <- share(x)
  m <- fetch(s)
  first <- n + 3                    # column 2, row 3: not on a page boundary
  len <- 5e4 + 1
  ref <- as.vector(x)[first:(first + len - 1)]
  v <- shared_view(m, first, len)
  expect_true((.Call(shard:::C_view_span, v)$byte_offset) %% 4096 != 0)
  before <- cow_counters()
  got_sd <- sd(v)
  got_var <- var(v)
  got_range <- range(v)
  got_pos <- v[v > 0]
  same <- identical(v, ref)
  after <- cow_counters()
  expect_identical(after[["copies"]] - before[["copies"]], 0)
  expect_identical(after[["copy_bytes"]] - before[["copy_bytes"]], 0)
  # one private mapping (of the pages under the view), made once
  expect_identical(after[["cow_mappings"]] - before[["cow_mappings"]], 1)
  expect_identical(after[["cow_bytes"]] - before[["cow_bytes"]], len * 8)
  expect_identical(got_sd, sd(ref))
  expect_identical(got_var, var(ref))
  expect_identical(got_range, range(ref))
  expect_identical(got_pos, ref[ref > 0])
  expect_true(same)
  # the view reads nothing it had no right to: its neighbours in the shared
  # pages are unchanged, and so are its own values
  expect_identical(v[c(1, len)], ref[c(1, len)])
  expect_identical(m[n + 2], x[2, 2])
  expect_identical(fetch(s), x)
  close(s)
  expect_error(sd(v), "closed")
})

test_that("a view at every byte offset within a page reads through a mapping, not a copy", {
  x <- as.double(1:20000)
  s <- share(x)
  m <- fetch(s)
  for (first in c(2, 7, 511, 512, 513, 1001)) {
    len <- 1024 + first                      # >= one page of bytes
    ref <- x[first:(first + len - 1)]
    v <- shared_view(m, first, len)
    before <- cow_counters()
    expect_identical(sd(v), sd(ref))
    expect_identical(which.max(v), which.max(ref))
    after <- cow_counters()
    expect_identical(after[["copies"]] - before[["copies"]], 0, info = paste("first =", first))
    expect_identical(after[["cow_mappings"]] - before[["cow_mappings"]], 1, info = paste("first =", first))
  }
  close(s)
})

test_that("integer and logical views at odd offsets read without a copy", {
  xi <- c(NA_integer_, sample.int(1e6, 3e4, replace = TRUE))
  xl <- rep(c(TRUE, NA, FALSE), 1e4)
  si <- share(xi); sl <- share(xl)
  vi <- shared_view(fetch(si), 3, 2e4)
  vl <- shared_view(fetch(sl), 5, 2e4)
  before <- cow_counters()
  expect_identical(range(vi), range(xi[3:(2e4 + 2)]))
  expect_identical(range(vi, na.rm = TRUE), range(xi[3:(2e4 + 2)], na.rm = TRUE))
  expect_identical(which(vl), which(xl[5:(2e4 + 4)]))
  expect_identical(vl == TRUE, xl[5:(2e4 + 4)] == TRUE)
  after <- cow_counters()
  expect_identical(after[["copies"]] - before[["copies"]], 0)
  close(si); close(sl)
})

test_that("a view shorter than one page is copied (a mapping would cost more); values equal base R", {
  x <- as.double(1:20000)
  s <- share(x)
  v <- shared_view(fetch(s), 101, 100)        # 800 bytes
  before <- cow_counters()
  expect_identical(sd(v), sd(x[101:200]))
  after <- cow_counters()
  expect_identical(after[["copies"]] - before[["copies"]], 1)
  expect_identical(after[["copy_bytes"]] - before[["copy_bytes"]], 800)
  expect_identical(after[["cow_mappings"]] - before[["cow_mappings"]], 0)
  close(s)
})

test_that("a changed view stays private: the shared bytes and other readers are unchanged", {
  x <- as.double(1:20000)
  s <- share(x)
  m <- fetch(s)
  v <- shared_view(m, 1001, 5000)
  w <- v
  w[3] <- -1                                  # R duplicates first: w is its own vector
  expect_identical(w[3], -1)
  expect_identical(v[3], 1003)
  expect_identical(m[1003], 1003)
  expect_identical(fetch(s), x)
  close(s)
})
