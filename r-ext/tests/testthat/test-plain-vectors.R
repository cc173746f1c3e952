# Plain vectors over shared pages (r-ext/src/mapped.c): with
# options(shard.plain_min_bytes = N), fetch() returns numeric vectors of N bytes
# or more of a read-only object as ordinary R vectors whose data pointer is the
# object's pages (a private copy-on-write mapping), not as ALTREP vectors.

is_plain <- function(x) .Call(shard:::C_is_plain_vector, x)
is_altrep_shard <- function(x) grepl("shard", utils::capture.output(.Internal(inspect(x)))[1], fixed = TRUE)
plain_live <- function() shard_diagnostics()$plain_vectors
with_plain <- function(expr, bytes = 65536) {
  old <- options(shard.plain_min_bytes = bytes)
  on.exit(options(old))
  expr
}

test_that("off unless the option is set: fetch() gives the ALTREP vector", {
  old <- options(shard.plain_min_bytes = NULL)
  on.exit(options(old))
  s <- share(runif(1e5))
  on.exit(close(s), add = TRUE)
  y <- fetch(s)
  expect_false(is_plain(y))
  expect_true(is_altrep_shard(y))
  expect_false(shared_info(y)$plain)
})

test_that("every numeric type of at least the threshold is plain and identical to the original", {
  vals <- list(double = c(runif(2e4), NA, NaN, Inf, -0), integer = c(sample.int(1e6, 2e4), NA),
               logical = c(rep(c(TRUE, FALSE), 1e4), NA), raw = as.raw(sample(0:255, 1e5, TRUE)),
               complex = complex(real = runif(5e3), imaginary = c(NA, runif(4999))))
  for (nm in names(vals)) {
    x <- vals[[nm]]
    s <- share(x)
    y <- with_plain(fetch(s))
    expect_true(is_plain(y), label = paste(nm, "is plain"))
    expect_false(is_altrep_shard(y), label = paste(nm, "is not ALTREP"))
    expect_identical(y, x, label = nm)
    expect_identical(y[c(5, NA, 0, -1)[-4]], x[c(5, NA, 0, -1)[-4]], label = paste(nm, "subset"))
    expect_true(is_shared_vector(y), label = paste(nm, "is_shared_vector"))
    expect_true(is_shared(y), label = paste(nm, "is_shared"))
    i <- shared_info(y)
    expect_true(i$plain)
    expect_identical(i$kind, c(double = "double", integer = "integer", logical = "logical", raw = "raw",
                               complex = "complex")[[nm]])
    expect_identical(i$owner_pid, Sys.getpid())
    expect_false(i$closed)
    expect_false(i$private_copy)
    close(s)
  }
})

test_that("below the threshold, strings, writable segments and strict mode stay ALTREP", {
  s1 <- share(runif(100))
  s2 <- share(sprintf("k%06d", 1:2e4))
  seg <- segment_create(1e6)
  s3 <- share(runif(1e5))
  on.exit({ close(s1); close(s2); segment_close(seg); close(s3) })
  with_plain({
    expect_false(is_plain(fetch(s1)))
    expect_true(is_altrep_shard(fetch(s2)))
    expect_false(is_plain(fetch(seg)))
  })
  old <- options(shard.cow = "error")
  y <- with_plain(fetch(s3))
  options(old)
  expect_false(is_plain(y))
  expect_true(is_plain(with_plain(fetch(s3), bytes = 0)))
})

test_that("a bad option value is a clear error", {
  s <- share(runif(1e5))
  on.exit(close(s))
  for (bad in list("64k", NA_real_, -1, c(1, 2)))
    expect_error(with_plain(fetch(s), bytes = bad), "shard.plain_min_bytes) must be one number of bytes")
})

test_that("changing a copy never reaches the shared bytes; R duplicates the not-mutable vector", {
  x <- runif(1e5)
  s <- share(x)
  on.exit(close(s))
  y <- with_plain(fetch(s))
  z <- y
  z[1] <- -1
  expect_identical(z[1], -1)
  expect_identical(y[1], x[1])
  expect_identical(with_plain(fetch(s))[1], x[1])
  expect_false(is_shared_vector(z))
  expect_true(is_shared_vector(y))
})

test_that("matrices and data.frames (factors, Dates, POSIXct) come back identical, numeric columns plain", {
  m <- matrix(runif(2e5), 500)
  df <- data.frame(v = runif(3e4), i = sample.int(100L, 3e4, TRUE), s = sprintf("k%05d", 1:3e4),
                   f = factor(sample(letters, 3e4, TRUE)), d = as.Date("2020-01-01") + 1:3e4,
                   t = as.POSIXct("2020-01-01", tz = "UTC") + runif(3e4, 0, 1e8), stringsAsFactors = FALSE)
  sm <- share(m)
  sd <- share(df)
  on.exit({ close(sm); close(sd) })
  fm <- with_plain(fetch(sm))
  fd <- with_plain(fetch(sd))
  expect_identical(fm, m)
  expect_true(is_plain(fm))
  expect_identical(fm[c(3, 77), ], m[c(3, 77), ])
  expect_identical(fm[, 5:9], m[, 5:9])
  expect_identical(sum(fm[17, ]), sum(m[17, ]))
  expect_identical(fd, df)
  expect_identical(vapply(fd, is_plain, TRUE), c(v = TRUE, i = TRUE, s = FALSE, f = TRUE, d = TRUE, t = TRUE))
  expect_identical(fd[fd$v > 0.5, ], df[df$v > 0.5, ])
  expect_identical(table(fd$f), table(df$f))
  expect_identical(split(fd$v, fd$f), split(df$v, df$f))
  expect_identical(range(fd$t), range(df$t))
  expect_identical(fd[fd$d > as.Date("2050-01-01"), ], df[df$d > as.Date("2050-01-01"), ])
})

test_that("after close() a plain vector keeps reading its old values; shared_info says closed", {
  x <- runif(1e5)
  s <- share(x)
  y <- with_plain(fetch(s))
  close(s)
  expect_identical(sum(y), sum(x))
  expect_identical(y[c(1, 1e5)], x[c(1, 1e5)])
  expect_true(is_shared_vector(y))
  expect_true(shared_info(y)$closed)
  expect_identical(materialize(y), x)
  # A view of it needs the object: a clear error.
  expect_error(.Call(shard:::C_view_range, y, 0, 10), "has been closed")
})

test_that("the garbage collector unmaps a plain vector (the registry and counters follow)", {
  s <- share(runif(1e5))
  on.exit(close(s))
  invisible(gc())
  before <- plain_live()
  made <- shard_diagnostics()$plain_made
  y <- with_plain(fetch(s))
  expect_identical(plain_live(), before + 1)
  expect_identical(shard_diagnostics()$plain_made, made + 1)
  expect_gte(shard_diagnostics()$plain_bytes, 8e5)
  rm(y)
  invisible(gc())
  expect_identical(plain_live(), before)
  # many vectors over one object, made and dropped
  for (k in 1:50) y <- with_plain(fetch(s))
  rm(y)
  invisible(gc())
  expect_identical(plain_live(), before)
})

test_that("serialize() writes a plain vector's values; a handle-serialized vector unserializes as plain", {
  x <- runif(1e5)
  s <- share(x)
  on.exit(close(s))
  y <- with_plain(fetch(s))
  r <- serialize(y, NULL)
  expect_gt(length(r), 8e5)
  u <- unserialize(r)
  expect_identical(u, x)
  expect_false(is_shared_vector(u))
  a <- with_plain(fetch(s), bytes = Inf)   # ALTREP: serialized as its handle
  ra <- serialize(a, NULL)
  expect_lt(length(ra), 1e4)
  ua <- with_plain(unserialize(ra))
  expect_true(is_plain(ua))
  expect_identical(ua, x)
})

test_that("a forked child reads the parent's plain vector", {
  skip_if_no_fork()
  x <- runif(1e5)
  s <- share(x)
  on.exit(close(s))
  y <- with_plain(fetch(s))
  r <- parallel::mccollect(parallel::mcparallel(list(sum = sum(y), plain = shared_info(y)$plain,
                                                     pid = Sys.getpid())))[[1]]
  expect_identical(r$sum, sum(x))
  expect_true(r$plain)
  expect_false(r$pid == Sys.getpid())
})

test_that("views of a plain vector are shard vectors over the same object", {
  m <- matrix(runif(2e5), 1000)
  s <- share(m)
  on.exit(close(s))
  fm <- with_plain(fetch(s))
  expect_true(isTRUE(.Call(shard:::C_is_shard_vector, fm)))
  r <- with_plain(.Call(shard:::C_view_range, fm, 1000 * 10, 1000 * 20))
  expect_identical(as.vector(r), as.vector(m[, 11:30]))
  expect_true(is_plain(r))
  expect_identical(shared_info(r)$offset, shared_info(fm)$offset)
  small <- .Call(shard:::C_view_range, fm, 5, 10)   # 80 bytes: ALTREP
  expect_identical(as.vector(small), as.vector(m)[6:15])
  expect_true(is_altrep_shard(small))
  expect_identical(.Call(shard:::C_view_span, r), list(byte_offset = 80000, byte_len = 160000))
  expect_error(.Call(shard:::C_view_range, fm, 0, 1e6), "outside the vector")
})

test_that("the cow policy layers stay ALTREP: as_shared() and shared_vector()", {
  with_plain({
    v <- as_shared(runif(1e5))
    expect_true(is_altrep_shard(v))
    expect_error(v[1] <- 0, "cow = \"deny\"")
  })
})

test_that("hugetlb objects stay ALTREP (a private mapping would need a reservation)", {
  old <- options(shard.huge_pages = TRUE)
  on.exit(options(old))
  s <- share(runif(32 * 2^20 / 8))   # large enough for a hugetlb region
  on.exit(close(s), add = TRUE)
  if (!isTRUE(shared_info(s)$page_size >= 2^21))
    skip(sprintf("SKIPPED: the object got %s-byte pages (no hugetlb pages free?)", shared_info(s)$page_size))
  expect_false(is_plain(with_plain(fetch(s))))
})

test_that("deep shares come back with plain numeric leaves", {
  # (share() of a list without deep = TRUE stores it serialized: its fetch is
  # unserialize(), ordinary vectors either way.)
  x <- list(a = runif(2e5), b = sample.int(10L, 3e5, TRUE), s = letters, n = list(m = matrix(runif(2e5), 100)))
  s <- share(x, deep = TRUE, min_bytes = 1e5)
  on.exit(close(s))
  y <- with_plain(fetch(s))
  expect_identical(y, x)
  expect_true(is_plain(y$a))
  expect_true(is_plain(y$b))
  expect_true(is_plain(y$n$m))
})

test_that("shard_map: borrowed inputs are plain under cow = \"allow\", ALTREP under \"deny\" and \"audit\"", {
  x <- runif(1e5)
  s <- share(x)
  on.exit(close(s))
  probe <- function(shard, X) c(plain = .Call(shard:::C_is_plain_vector, X), s = sum(X))
  for (cow in c("allow", "deny", "audit")) {
    res <- shard_map(shards(2, block_size = 1), probe, borrow = list(X = s), workers = 1, cow = cow,
                     init_expr = quote(options(shard.plain_min_bytes = 65536)))
    r <- do.call(rbind, res$results)
    expect_equal(r[, "s"], rep(sum(x), 2), label = cow)
    expect_identical(as.logical(r[, "plain"]), rep(cow == "allow", 2), label = cow)
  }
})
