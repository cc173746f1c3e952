# Reference pages altrep, as_shared, shared_vector, is_shared_vector, shared_segment,
# shared_advise, shared_diagnostics, shared_reset_diagnostics, the replacement methods
# of shard_shared_vector, print.shard_shared_vector, close.shard_shared_vector: the
# cow policy (deny / audit / allow).

test_that("the shared-vector functions have the reference's arguments and defaults", {
  f <- formals(as_shared)
  expect_identical(names(f), c("x", "readonly", "backing", "cow", "path"))
  expect_true(f$readonly)
  expect_identical(f$backing, "auto")
  expect_null(f$cow)
  expect_null(f$path)
  f <- formals(shared_vector)
  expect_identical(names(f), c("segment", "type", "offset", "length", "readonly", "cow"))
  expect_identical(f$type, quote(c("double", "integer", "logical", "raw")))
  expect_identical(f$offset, 0)
  expect_null(f$length)
  expect_true(f$readonly)
  expect_null(f$cow)
  expect_identical(formals(shared_advise)$advice, quote(c("normal", "sequential", "random", "willneed", "dontneed")))
  for (fn in list(is_shared_vector, shared_segment, shared_diagnostics, shared_reset_diagnostics))
    expect_identical(names(formals(fn)), "x")
})

test_that("as_shared() returns a zero-copy shared vector with x's values, names and dim", {
  x <- as_shared(1:100)
  expect_s3_class(x, "shard_shared_vector")
  expect_true(is_shared_vector(x))
  expect_identical(sum(x), 5050L)
  expect_identical(x[1:10], 1:10)
  expect_identical(typeof(x), "integer")
  m <- as_shared(matrix(as.numeric(1:6), 2, dimnames = list(c("a", "b"), NULL)))
  expect_identical(dim(m), c(2L, 3L))
  expect_identical(rownames(m), c("a", "b"))
  expect_identical(m[2, 3], c(b = 6))
  expect_identical(shared_diagnostics(m)$cow, "deny")
  for (t in list(TRUE, as.raw(1:3), c(1.5, 2))) expect_true(is_shared_vector(as_shared(t)))
  expect_error(as_shared(list(1)), "`x` must be an integer, double, logical or raw vector")
  expect_error(as_shared(letters), "`x` must be")
  expect_error(as_shared(NULL), "`x` must be")
  expect_error(as_shared(1, cow = "sometimes"), "`cow` must be one of \"deny\", \"audit\", \"allow\"")
  expect_error(as_shared(1, readonly = NA), "`readonly`")
  expect_error(as_shared(1, backing = "disk"), "`backing`")
  expect_error(as_shared(1, path = "/tmp/x"), "`path` must be a name")
  close(x); close(m)
  expect_error(sum(x), "closed")
})

test_that("as_shared(path =) makes the object open-able by name in another process", {
  x <- as_shared(c(1.5, 2.5), path = "shard-test-ref-asshared")
  got <- callr_r(function() sum(shard::fetch(shard::share_open("shard-test-ref-asshared"))))
  expect_identical(got, 4)
  close(x)
})

test_that("is_shared_vector() is FALSE for ordinary vectors and for results computed from shared ones", {
  x <- as_shared(as.numeric(1:10))
  expect_false(is_shared_vector(1:10))
  expect_false(is_shared_vector(list()))
  expect_false(is_shared_vector(NULL))
  expect_false(is_shared_vector(x + 1))
  expect_true(is_shared_vector(fetch(share(1:3))))   # any fetched vector is shared memory
  # a derived vector is private: no wrapper class, no state, no policy
  y <- x * 2
  expect_null(attributes(y))
  y[1] <- 0
  expect_identical(y[1:2], c(0, 4))
  expect_null(attributes(sqrt(x)))
  expect_identical(x > 5, as.numeric(1:10) > 5)
  close(x)
})

test_that("cow = \"deny\" (default for readonly): every replacement method refuses", {
  x <- as_shared(c(a = 1, b = 2, c = 3, d = 4))
  msg <- "cannot modify a shared vector .* under cow = \"deny\""
  expect_error(x[1] <- 0, msg)
  expect_error(x[[2]] <- 0, msg)
  expect_error(names(x) <- letters[1:4], msg)
  expect_error(dim(x) <- c(2L, 2L), msg)
  expect_error(dimnames(x) <- list(NULL), msg)
  expect_error(shard:::`attr<-.shard_shared_vector`(x, "foo", 1), msg)
  expect_error(shard:::`attributes<-.shard_shared_vector`(x, NULL), msg)
  expect_identical(as.numeric(x), c(1, 2, 3, 4))
  expect_identical(shared_diagnostics(x)$cow_events, 0)
  close(x)
  # long vectors too: R wraps them (shallow_duplicate) before the method runs
  big <- as_shared(rnorm(1e5))
  expect_error(big[1] <- 0, msg)
  f <- function(v) { v[[3]] <- 0; v }
  expect_error(f(big), msg)
  g <- function(v) { names(v) <- NULL; v }
  expect_error(g(big), msg)
  close(big)
})

test_that("cow = \"audit\": modifications go through, privately, and are recorded", {
  invisible(shard_cow_log(reset = TRUE))
  x <- as_shared(as.numeric(1:10), cow = "audit")
  x[1] <- 100
  x[[2]] <- 200
  expect_identical(x[1:3], c(100, 200, 3))
  d <- shared_diagnostics(x)
  expect_identical(d$cow, "audit")
  expect_identical(d$cow_events, 2)
  expect_true(d$materialize_calls >= 1 && d$materialize_calls <= 2)
  expect_true(d$private_copy)
  log <- shard_cow_log()
  expect_identical(log$what, c("[<-", "[[<-"))
  expect_identical(log$type, c("double", "double"))
  expect_identical(nrow(shard_cow_log(reset = TRUE)), 2L)
  expect_identical(nrow(shard_cow_log()), 0L)
  # the shared memory itself is unchanged: a fresh view sees the original values
  expect_identical(segment_read(shared_segment(x), 0, 2, "double"), c(1, 2))
  close(x)
})

test_that("cow = \"allow\": copy-on-write; the shared bytes never change; budget applies", {
  invisible(shard_cow_log(reset = TRUE))
  x <- as_shared(1:10, readonly = FALSE)
  expect_identical(shared_diagnostics(x)$cow, "allow")     # the default for readonly = FALSE
  y <- x
  x[2] <- 99L
  names(x) <- letters[1:10]
  expect_identical(unname(x[1:3]), c(1L, 99L, 3L))
  expect_identical(y[1:3], 1:3)
  expect_identical(nrow(shard_cow_log()), 0L)            # allow: not audited
  z <- as_shared(rnorm(1e5), cow = "allow")
  old <- options(shard.cow_budget = 1000)
  on.exit(options(old))
  expect_error(z[1] <- 0, "past the copy-on-write budget")
  options(shard.cow_budget = "lots")
  expect_error(z[1] <- 0, "option shard.cow_budget must be")
  options(shard.cow_budget = NULL)
  z[1] <- 0
  expect_identical(z[1], 0)
  close(x); close(z)
})

test_that("strict mode (options(shard.cow = \"error\")) also stops allowed modifications", {
  x <- as_shared(as.numeric(1:4), cow = "allow")
  old <- options(shard.cow = "error")
  on.exit(options(old))
  expect_error(x[1] <- 0, "not allowed")
  options(old)
  close(x)
})

test_that("shared_vector(): whole-segment and typed/offset views are zero-copy and live", {
  seg <- segment_create(400)
  segment_write(seg, 1:100, offset = 0)
  x <- shared_vector(seg, "integer", length = 100)
  expect_identical(x[1:10], 1:10)
  expect_true(is_shared_vector(x))
  expect_identical(shared_segment(x), seg)
  d <- shared_diagnostics(x)
  expect_false(d$snapshot)
  expect_identical(d$length, 100L)
  expect_identical(d$type, "integer")
  expect_identical(d$cow, "deny")
  y <- shared_vector(seg, "integer", offset = 40, length = 5)
  expect_identical(y[1:5], 11:15)
  expect_identical(shared_diagnostics(y)$offset, 40)
  # typed views read the segment's bytes in place: a later write shows through
  segment_write(seg, 99L, offset = 40)
  expect_identical(y[1], 99L)
  expect_identical(x[11], 99L)
  expect_true(.Call(shard:::C_is_shard_vector, y))   # the shared bytes, not a copy
  expect_identical(length(shared_vector(seg, "numeric")), 50L)
  r <- shared_vector(seg, "raw")
  expect_false(shared_diagnostics(r)$snapshot)
  segment_write(seg, as.raw(255), offset = 0)
  expect_identical(r[1], as.raw(255))              # live
  expect_error(shared_vector(seg, "integer", offset = 2), "not a multiple of 4")
  expect_error(shared_vector(seg, "integer", length = 101), "`length` 101 .* overflows the segment")
  expect_error(shared_vector(seg, "double", offset = 500), "past the end")
  expect_error(shared_vector(seg, "character"), "`type` must be one of")
  expect_error(shared_vector(1:3), "`segment` must be a shard_segment")
  close(x)
  segment_close(seg)
})

test_that("shared_segment(), shared_advise(), diagnostics reset, print and close", {
  x <- as_shared(1:100)
  seg <- shared_segment(x)
  expect_s3_class(seg, "shard_segment")
  expect_identical(segment_read(seg, 0, 3, "integer"), 1:3)
  expect_false(segment_close(seg))                 # a window: never frees x's object
  expect_identical(sum(x), 5050L)
  a <- shared_advise(x, "sequential")
  expect_true(a)                                     # the kernel took the hint
  expect_error(shared_advise(x, "fast"), "`advice`")
  expect_error(shared_advise(1:3), "needs a shared vector")
  d <- shared_diagnostics(x)
  for (f in c("dataptr_calls", "materialize_calls", "coerce_calls", "length", "offset", "readonly", "type"))
    expect_true(f %in% names(d), info = f)
  y <- as_shared(c(1, 2), cow = "audit")
  y[1] <- 5
  expect_identical(shared_diagnostics(y)$cow_events, 1)
  expect_identical(withVisible(shared_reset_diagnostics(y))$visible, FALSE)
  expect_identical(shared_diagnostics(y)$cow_events, 0)
  expect_identical(shared_diagnostics(y)$materialize_calls, 0)
  expect_error(shared_diagnostics(1:3), "needs a shared vector")
  expect_identical(shared_diagnostics(x)$coerce_calls, 0)
  expect_identical(as.double(x), as.double(1:100))
  expect_identical(as.character(x)[1:2], c("1", "2"))
  expect_identical(as.integer(x), 1:100)          # same type: not a coercion
  expect_identical(shared_diagnostics(x)$coerce_calls, 2)
  shared_reset_diagnostics(x)
  expect_identical(shared_diagnostics(x)$coerce_calls, 0)
  out <- capture.output(res <- withVisible(print(x)))
  expect_false(res$visible)
  expect_identical(out, capture.output(print(1:100)))      # wrapper class and state not shown
  expect_null(withVisible(close(x))$value)
  expect_error(x[1], "closed")
  invisible(shard_cow_log(reset = TRUE))
  close(y)
})

test_that("materialize_shared_vector() (for share.R's materialize()) gives a plain private copy, counted", {
  x <- as_shared(c(a = 1, b = 2))
  m <- shard:::materialize_shared_vector(x)
  expect_identical(m, c(a = 1, b = 2))
  expect_false(is_shared_vector(m))
  m[1] <- 0                                   # no policy on the copy
  expect_identical(shared_diagnostics(x)$materialize_calls, 1)
  expect_identical(x[[1]], 1)
  close(x)
})
