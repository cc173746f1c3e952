# Reading fetched objects (issue 11): every fast path (Elt through the cached data
# pointer, Get_region, Extract_subset, the string cache) returns exactly what base
# R returns on the ordinary vector, and after close() every bulk path errors.

same_as_resident <- function(x) {
  s <- share(x)
  y <- fetch(s)
  list(s = s, y = y)
}

test_that("vector indexing matches base R: NA, zero, negative, out of range, logical, double, names", {
  x <- c(a = 1.5, b = NA, c = -Inf, d = 4, e = NaN)
  f <- fetch(s <- share(x))
  idx <- list(2L, c(2, NA, 0, 7), c(1.9, 4.2), c(-1, 0), -(1:5), c(TRUE, FALSE), c(TRUE, NA),
              c(FALSE, FALSE, FALSE, FALSE, FALSE, TRUE), integer(0), NA, NA_integer_, 5:1, c("b", "zz", NA),
              c(3e9, 1), rep(1L, 10))
  for (i in idx) expect_identical(f[i], x[i], info = deparse(i))
  expect_identical(f[], x[])
  expect_identical(f[["d"]], x[["d"]])
  expect_identical(f[[3]], x[[3]])
  expect_error(f[[9]], "subscript out of bounds")
  expect_error(f[c(-1, 2)], "negative")
  close(s)
})

test_that("every atomic type subsets like base R (integer, logical, raw, complex, double)", {
  vals <- list(c(1L, NA, -3L, .Machine$integer.max), c(TRUE, NA, FALSE), as.raw(c(0, 1, 255)),
               c(1 + 2i, NA, complex(real = NA, imaginary = 1)), c(0.1, NA, 1e300))
  for (x in vals) {
    f <- fetch(s <- share(x))
    for (i in list(c(1, NA, 99), 0, -1, c(TRUE, NA, FALSE, TRUE), c(3L, 3L, 1L), 2.7))
      expect_identical(f[i], x[i], info = paste(typeof(x), deparse(i)))
    expect_identical(vapply(seq_along(x), function(k) identical(f[[k]], x[[k]]), TRUE), rep(TRUE, length(x)))
    close(s)
  }
})

test_that("matrix row, column and element subsetting match base R (drop =, dimnames, NA rows)", {
  m <- matrix(c(1:11, NA), 4, 3, dimnames = list(letters[1:4], LETTERS[1:3]))
  for (x in list(m, m * 1.5, m > 5)) {
    f <- fetch(s <- share(x))
    expect_identical(f[2:3, ], x[2:3, ])
    expect_identical(f[, 2], x[, 2])
    expect_identical(f[, 2, drop = FALSE], x[, 2, drop = FALSE])
    expect_identical(f[c("d", "a"), "B"], x[c("d", "a"), "B"])
    expect_identical(f[c(NA, 1), ], x[c(NA, 1), ])
    expect_identical(f[-1, -2], x[-1, -2])
    expect_identical(f[f[, 1] > 2, ], x[x[, 1] > 2, ])
    expect_identical(f[cbind(c(1, 4), c(3, 2))], x[cbind(c(1, 4), c(3, 2))])
    expect_identical(sum(f[3, ]), sum(x[3, ]))
    expect_identical(colSums(f), colSums(x))
    expect_error(f[5, ], "subscript out of bounds")
    close(s)
  }
  a <- array(as.double(1:24), 2:4)
  f <- fetch(s <- share(a))
  expect_identical(f[2, , 3:4], a[2, , 3:4])
  close(s)
})

test_that("Get_region and whole-vector reads match base R", {
  x <- c(rnorm(5000), NA, Inf)
  f <- fetch(s <- share(x))
  expect_identical(sum(f), sum(x))
  expect_identical(mean(f), mean(x))
  expect_identical(range(f, na.rm = TRUE), range(x, na.rm = TRUE))
  expect_identical(which.max(f), which.max(x))
  expect_identical(f == x[3], x == x[3])
  expect_identical(cumsum(f[1:10]), cumsum(x[1:10]))
  expect_identical(sort(f), sort(x))
  expect_identical(rev(f), rev(x))
  close(s)
})

test_that("double indices (R's form for long vectors) past 2^31, NaN and Inf subset like base R", {
  # Extract_subset reads double indices; a short vector takes the same code path
  # as a long one (test-long.R shares a real long vector where memory allows).
  x <- as.double(1:10)
  f <- fetch(s <- share(x))
  i <- c(1, 10, 11, 2^31 + 1, NA, NaN, Inf, -Inf)
  expect_identical(f[i], x[i])
  close(s)
})

test_that("character vectors: ==, nchar, match, NA_character_, encodings and names match base R", {
  utf8 <- "\u00e9t\u00e9"
  latin1 <- iconv(utf8, "UTF-8", "latin1")
  bytes <- "\xff\xfe"
  Encoding(bytes) <- "bytes"
  x <- c(a = "k1", b = NA, c = "", d = utf8, e = latin1, f = bytes, g = "k1", h = "")
  f <- fetch(s <- share(x))
  expect_identical(f, x)
  expect_identical(Encoding(f), Encoding(x))
  expect_identical(f[c(2, 3, NA, 0, 12)], x[c(2, 3, NA, 0, 12)])
  expect_identical(f[-1], x[-1])
  expect_identical(f[c(TRUE, FALSE)], x[c(TRUE, FALSE)])
  expect_identical(f[["d"]], x[["d"]])
  expect_identical(f == "k1", x == "k1")
  expect_identical(nchar(f, type = "bytes"), nchar(x, type = "bytes"))
  expect_identical(is.na(f), is.na(x))
  expect_identical(match(c("k1", NA, "", latin1), f), match(c("k1", NA, "", latin1), x))
  expect_identical(f %in% c("", NA), x %in% c("", NA))
  expect_identical(unique(f), unique(x))
  expect_identical(order(f[c(1, 3, 4, 7)]), order(x[c(1, 3, 4, 7)]))
  expect_identical(factor(f[-6]), factor(x[-6]))
  expect_identical(paste0(f[-6], "!"), paste0(x[-6], "!"))
  expect_identical(grepl("k", f[-6]), grepl("k", x[-6]))
  # Reading again uses the cache and gives the same CHARSXPs (identical to base).
  expect_identical(f[c(4, 4, 5)], x[c(4, 4, 5)])
  close(s)
})

test_that("the string cache keeps each CHARSXP once, is reported, and the first touch fills it", {
  x <- sprintf("s%06d", 1:2000)
  invisible(gc())                          # caches of earlier tests' vectors go first
  d0 <- shard_diagnostics()
  f <- fetch(s <- share(x))
  invisible(f[1:10])
  d1 <- shard_diagnostics()
  expect_equal(d1$string_cache_elements - d0$string_cache_elements, 10)
  expect_gte(d1$string_cache_bytes - d0$string_cache_bytes, 8 * 2000)
  invisible(nchar(f))
  d2 <- shard_diagnostics()
  expect_equal(d2$string_cache_elements - d0$string_cache_elements, 2000)
  invisible(nchar(f)); invisible(f == "s000001")
  expect_equal(shard_diagnostics()$string_cache_elements, d2$string_cache_elements)
  # The cache goes with its vector.
  rm(f); invisible(gc())
  expect_lt(shard_diagnostics()$string_cache_bytes, d2$string_cache_bytes)
  expect_lte(shard_diagnostics()$string_cache_elements, d0$string_cache_elements)
  close(s)
})

test_that("modifying a fetched character vector changes only the copy; unchanged ones serialize as handles", {
  x <- c("a", "b", NA, "")
  s <- share(x)
  f <- fetch(s)
  g <- f
  g[2] <- "z"
  expect_identical(g, c("a", "z", NA, ""))
  expect_identical(f, x)
  expect_identical(fetch(s), x)
  expect_identical(unserialize(serialize(g, NULL)), c("a", "z", NA, ""))
  # A touched but unchanged vector still goes as a handle (small), not as values.
  invisible(nchar(f))
  expect_true(is_shared(unserialize(serialize(f, NULL))))
  close(s)
})

test_that("data.frames, factors, Dates and POSIXct take the same paths and match base R", {
  df <- data.frame(v = c(0.1, 0.9, NA, 0.6), i = c(3L, NA, 1L, 2L), s = c("x", "y", NA, "x"),
                   f = factor(c("b", "a", NA, "b")), d = as.Date("2020-01-01") + c(0, 10, NA, 3),
                   t = as.POSIXct("2020-01-01", tz = "UTC") + c(1, NA, 3, 4), stringsAsFactors = FALSE)
  f <- fetch(s <- share(df))
  expect_identical(f, df)
  expect_identical(f[f$v > 0.5 & !is.na(f$v), ], df[df$v > 0.5 & !is.na(df$v), ])
  expect_identical(f[order(f$v), ], df[order(df$v), ])
  expect_identical(f[c(2, NA), c("s", "f")], df[c(2, NA), c("s", "f")])
  expect_identical(table(f$f), table(df$f))
  expect_identical(split(f$v, f$f), split(df$v, df$f))
  expect_identical(tapply(f$v, f$f, sum), tapply(df$v, df$f, sum))
  expect_identical(aggregate(v ~ f, f, mean), aggregate(v ~ f, df, mean))
  lk <- data.frame(s = c("x", "y"), w = 1:2)
  expect_identical(merge(f, lk, by = "s"), merge(df, lk, by = "s"))
  expect_identical(f$d[f$d > as.Date("2020-01-02") & !is.na(f$d)], df$d[df$d > as.Date("2020-01-02") & !is.na(df$d)])
  expect_identical(range(f$t, na.rm = TRUE), range(df$t, na.rm = TRUE))
  expect_identical(f$f[2:1], df$f[2:1])
  expect_identical(levels(droplevels(f$f[1])), "b")
  close(s)
})

test_that("after close() every bulk path is an R error; lengths and element reads never crash", {
  x <- rnorm(1e4)
  s <- share(x)
  y <- fetch(s)
  m <- fetch(share_m <- share(matrix(as.double(1:20), 4)))
  st <- fetch(s_str <- share(c("p", "q", "r")))
  invisible(st[1])                        # one element cached
  close(s); close(share_m); close(s_str)
  msg <- "shared memory has been closed"
  expect_error(y[1:3], msg)               # Extract_subset
  expect_error(y[c(TRUE, FALSE)], msg)
  expect_error(sum(y), msg)               # Dataptr_or_null -> Get_region
  expect_error(range(y), msg)             # Dataptr (writable)
  expect_error(duplicate_fn <- (function(v) { v[1] <- 0; v })(y), msg)  # Duplicate
  expect_error(serialize(y, NULL), msg)   # Serialized_state
  expect_error(sum(m), msg)
  # R's matrix subsetting reads element by element (Elt): not checked, the pages
  # stay mapped while m lives, so it returns the old values (nothing reused them here).
  expect_identical(m[1:2, 2], c(5, 6))
  expect_error(st[2:3], msg)              # strings: Extract_subset
  expect_error(nchar(st), msg)            # strings: an element never made needs the arena
  expect_error(serialize(st, NULL), msg)
  expect_identical(length(y), 1e4L)
  expect_identical(st[[1]], "p")          # cached before close: the old value
  expect_true(is.double(y[[2]]))          # one element: no check, no crash
})
