# fetch(share(x)) gives back x exactly (identical, no extra class or attribute), as
# ALTREP vectors in the arena for atomic vectors, strings, data.frames and lists
# of vectors, and via serialization for everything else.

roundtrip <- function(x, ...) {
  s <- share(x, ...)
  y <- fetch(s)
  expect_identical(y, x)
  expect_identical(class(y), class(x))
  expect_identical(attributes(y), attributes(x))
  invisible(s)
}

test_that("a double vector round-trips zero-copy", {
  x <- rnorm(1e5)
  s <- share(x)
  expect_s3_class(s, "shard_shared")
  expect_named(s, c("path", "backing", "size", "readonly", "class_info", "handle", "name", "options"))
  expect_true(s$readonly)
  expect_identical(s$backing, "memfd")
  expect_true(s$size >= 8e5)
  expect_identical(s$class_info$class, "numeric")
  y <- fetch(s)
  expect_identical(x, y)
  expect_true(is_shared(y))
  expect_false(is_shared(x))
  expect_equal(sum(y), sum(x))
  expect_true(shared_info(y)$kind == "double")
  close(s)
})

test_that("every atomic type, matrix and array round-trips as an ALTREP vector in the arena", {
  vals <- list(
    dbl = c(1.5, NA, NaN, Inf, -Inf, -0, 0),
    int = c(1L, NA, .Machine$integer.max, -.Machine$integer.max),
    lgl = c(TRUE, FALSE, NA),
    raw = as.raw(0:255),
    cplx = c(1 + 2i, NA, complex(real = NA_real_, imaginary = 1), complex(real = NaN, imaginary = -Inf)),
    mat = matrix(rnorm(20), 4, dimnames = list(letters[1:4], LETTERS[1:5])),
    arr = array(1:24, c(2, 3, 4)),
    named = c(a = 1, b = 2)
  )
  for (nm in names(vals)) {
    x <- vals[[nm]]
    s <- share(x)
    y <- fetch(s)
    expect_identical(y, x, info = nm)
    expect_true(is_shared(y), info = nm)
    expect_identical(shared_info(y)$kind, typeof(x), info = nm)
    close(s)
  }
  # -0 keeps its sign, NaN stays NaN (not NA)
  y <- fetch(share(c(-0, NaN)))
  expect_identical(1 / y[1], -Inf)
  expect_true(is.nan(y[2]))
})

test_that("classes and attributes survive: factors, Dates, POSIXct with tzone, names, dimnames", {
  roundtrip(factor(c("b", "a", NA, "b"), levels = c("b", "a", "z")))
  roundtrip(ordered(c("lo", "hi"), levels = c("lo", "hi")))
  roundtrip(as.Date("2024-02-29") + 0:9)
  roundtrip(as.POSIXct("2024-01-01 10:00:00", tz = "America/New_York") + 0:5)
  roundtrip(as.POSIXct("2024-01-01 10:00:00", tz = "UTC"))
  roundtrip(structure(1:3, myattr = list(a = 1), class = "myclass"))
  roundtrip(table(c("a", "b", "a")))
  roundtrip(ts(1:10, start = 2000, frequency = 4))
})

test_that("zero-length vectors of every type round-trip", {
  for (x in list(numeric(0), integer(0), logical(0), raw(0), complex(0), character(0),
                 list(), factor(character(0)), matrix(numeric(0), 0, 3)))
    roundtrip(x)
})

test_that("character vectors: ALTREP strings with NA and encodings kept", {
  x <- c("a", NA, "", enc2utf8("caf\u00e9"), iconv("caf\u00e9", "UTF-8", "latin1"),
         "\u65e5\u672c", "plain")
  b <- "\xff\xfe"; Encoding(b) <- "bytes"
  x <- c(x, b)
  s <- share(x)
  y <- fetch(s)
  expect_true(is_shared(y))
  expect_identical(y, x)
  expect_identical(Encoding(y), Encoding(x))
  expect_true(is.na(y[2]))
  expect_identical(nchar(y[4]), 4L)
  close(s)
  roundtrip(c(a = "x", b = NA))
})

test_that("data.frames round-trip with ALTREP columns (compact and character row names)", {
  df <- data.frame(a = 1:5, b = c(0.5, NA, 2, 3, 4), c = c("x", "y", NA, "z", "w"),
                   f = factor(c("u", "v", "u", NA, "v")), d = as.Date("2020-01-01") + 0:4,
                   l = c(TRUE, NA, FALSE, TRUE, TRUE), stringsAsFactors = FALSE)
  s <- roundtrip(df)
  expect_identical(s$class_info$layout, "composite")
  y <- fetch(s)
  expect_true(all(vapply(y, is_shared, logical(1))))
  # compact row names stay compact
  expect_identical(.row_names_info(y), .row_names_info(df))
  roundtrip(data.frame(v = c(1, 2), row.names = c("r1", "r2")))
  roundtrip(data.frame())
  roundtrip(mtcars)
  roundtrip(iris)
})

test_that("lists of vectors are laid out natively; other objects are serialized once", {
  l <- list(a = 1:3, b = letters, c = c(x = 1.5))
  s <- roundtrip(l)
  expect_identical(s$class_info$layout, "composite")
  expect_true(is_shared(fetch(s)$b))
  nested <- list(a = 1, b = list(c = 2, d = list(e = "f")))
  expect_identical(roundtrip(nested)$class_info$layout, "serialized")
  roundtrip(list(1, NULL, "a"))
  setClass("ShardTestS4", representation(x = "numeric", y = "character"), where = globalenv())
  on.exit(removeClass("ShardTestS4", where = globalenv()))
  obj <- new("ShardTestS4", x = 1:3 + 0.5, y = "k")
  expect_identical(roundtrip(obj)$class_info$layout, "serialized")
  roundtrip(quote(a + b))
  roundtrip(stats::as.formula("y ~ x", env = globalenv()))
  roundtrip(NULL)
  e <- new.env(); e$v <- 1:3
  got <- fetch(share(list(env = e)))
  expect_identical(got$env$v, 1:3)
})

test_that("fetch() is O(1) in the object's size (no copy)", {
  x <- rnorm(4e6)
  s <- share(x)
  before <- cow_counters()
  t <- system.time(for (i in 1:20) y <- fetch(s))[["elapsed"]]
  expect_lt(t, 0.5)
  expect_identical(cow_counters(), before)
  expect_identical(y[4e6], x[4e6])
  close(s)
})

test_that("share() of an already shared object returns it unchanged", {
  s <- share(1:10)
  expect_identical(share(s), s)
  d <- share(list(a = rnorm(100)), deep = TRUE, min_bytes = 10)
  expect_identical(share(d), d)
  close(s); close(d)
})

test_that("print() of a shared object shows what it is", {
  s <- share(matrix(1:6, 2))
  expect_output(print(s), "shard_shared.*matrix.*2 x 3")
  expect_output(print(s), "backing: memfd")
  close(s)
})

test_that("backings mmap and shm work and report their path", {
  for (b in c("mmap", "shm")) {
    x <- rnorm(1000)
    s <- share(x, backing = b)
    expect_identical(s$backing, b)
    expect_identical(fetch(s), x)
    if (b == "shm") expect_match(s$path, "^/dev/shm/shard-")
    else expect_true(file.exists(s$path))
    close(s)
  }
})

test_that("materialize() gives ordinary vectors that outlive close()", {
  x <- data.frame(a = rnorm(10), b = letters[1:10])
  s <- share(x)
  m <- materialize(s)
  close(s)
  expect_identical(m, x)
  expect_false(is_shared(m$a))
  expect_false(is_shared(m))
  y <- c(1, 2, 3)
  expect_identical(materialize(y), y)
})
