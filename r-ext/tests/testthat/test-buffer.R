# buffer(): writable shared buffers (src/buffer.c, R/buffer.R).

test_that("buffer() makes zero-filled buffers of each type, with dim and length", {
  for (type in c("double", "integer", "logical", "raw")) {
    b <- buffer(type, dim = 7)
    v <- b[]
    expect_identical(typeof(v), type)
    expect_length(v, 7)
    expect_true(all(v == switch(type, double = 0, integer = 0L, logical = FALSE, raw = as.raw(0))))
    expect_identical(length(b), 7L)
    expect_null(dim(b))
    buffer_close(b)
  }
  m <- buffer("integer", dim = c(3, 4))
  expect_identical(dim(m), c(3L, 4L))
  expect_identical(length(m), 12L)
  expect_identical(m[], matrix(0L, 3, 4))
  buffer_close(m)
  expect_identical(buffer("double", dim = 0)[], double(0))
})

test_that("init fills every element; type default is double", {
  b <- buffer(dim = 5, init = 2.5)
  expect_identical(b[], rep(2.5, 5))
  expect_identical(buffer("integer", 4, init = 7L)[], rep(7L, 4))
  expect_identical(buffer("logical", 3, init = TRUE)[], rep(TRUE, 3))
  expect_identical(buffer("raw", 3, init = as.raw(9))[], as.raw(rep(9, 3)))
  expect_identical(buffer("integer", 3, init = NA)[], rep(NA_integer_, 3))
  expect_error(buffer("double", 3, init = 1:2), "single value")
})

test_that("bad arguments are clear errors", {
  expect_error(buffer("complex", 3), "type")
  expect_error(buffer("double"), "needs `dim`")
  expect_error(buffer("double", dim = -1), "whole numbers >= 0")
  expect_error(buffer("double", dim = 1.5), "whole numbers")
  expect_error(buffer("double", dim = "a"), "whole numbers")
  expect_error(buffer("double", 3, backing = "disk"), "backing")
  expect_error(buffer_info(1:3), "must be a buffer")
  expect_error(buffer_open(1, "double", 3), "path")
})

test_that("[<- and [ on vectors: ranges, scattered, logical, negative, recycling", {
  b <- buffer("double", dim = 10)
  b[1:5] <- 1:5
  expect_identical(b[1:3], c(1, 2, 3))
  b[c(10, 7)] <- c(100, 70)
  expect_identical(b[c(7, 10)], c(70, 100))
  b[b[] > 50] <- -1
  expect_identical(b[10], -1)
  b[-(1:9)] <- 42
  expect_identical(b[10], 42)
  b[6:9] <- 0.5
  expect_identical(b[6:9], rep(0.5, 4))
  b[1:4] <- c(8, 9)
  expect_identical(b[1:4], c(8, 9, 8, 9))
  b[] <- 3
  expect_identical(b[], rep(3, 10))
  expect_error(b[11] <- 1, "out of bounds")
  expect_error(b[1:3] <- 1:2, "divides")
  expect_error(b[1] <- list(1), "atomic")
  expect_error(b[0:11], "out of bounds")
  expect_error(b[NA_real_], "NA")
  expect_error(b[c(-1, 2)], "mix")
  buffer_close(b)
})

test_that("[<- and [ on matrices and arrays index by dimension", {
  m <- buffer("double", dim = c(3, 4))
  m[, 2] <- 1:3
  m[2, ] <- 9
  ref <- matrix(0, 3, 4); ref[, 2] <- 1:3; ref[2, ] <- 9
  expect_identical(m[], ref)
  expect_identical(m[, 2], ref[, 2])
  expect_identical(m[1:2, 3:4], ref[1:2, 3:4])
  expect_identical(m[1, , drop = FALSE], ref[1, , drop = FALSE])
  expect_identical(m[5], ref[5])
  expect_identical(as.matrix(m), ref)
  expect_error(m[1, 5], "out of bounds")
  expect_error(m[1, 2, 3], "takes 1 or 2 indices")
  a <- buffer("integer", dim = c(2, 3, 4))
  a[, , 2] <- 1:6
  ra <- array(0L, c(2, 3, 4)); ra[, , 2] <- 1:6
  expect_identical(as.array(a), ra)
  expect_identical(a[2, 3, 2], ra[2, 3, 2])
  expect_identical(a[, , 2], ra[, , 2])
  expect_error(as.matrix(a), "2-dimensional")
})

test_that("coercions return the buffer's values", {
  b <- buffer("double", dim = 5)
  b[1:5] <- 1:5
  expect_identical(as.vector(b), as.double(1:5))
  expect_identical(as.vector(b, mode = "integer"), 1:5)
  expect_identical(as.double(b), as.double(1:5))
  expect_identical(as.integer(b), 1:5)
  expect_identical(as.logical(b), rep(TRUE, 5))
  expect_identical(as.raw(b), as.raw(1:5))
  expect_identical(as.array(b), as.double(1:5))
  l <- buffer("logical", dim = 2)
  l[2] <- TRUE
  expect_identical(as.logical(l), c(FALSE, TRUE))
})

test_that("buffer_path, buffer_info, buffer_open share the same memory; close unlinks", {
  b <- buffer("integer", dim = c(5, 5))
  p <- buffer_path(b)
  expect_true(file.exists(p))
  expect_match(p, "^/dev/shm/shard-buf-")
  expect_identical(file.info(p)$mode, as.octmode("600"))
  i <- buffer_info(b)
  expect_identical(i$type, "integer")
  expect_identical(i$dim, c(5, 5))
  expect_identical(i$n, 25)
  expect_identical(i$bytes, 100)
  expect_identical(i$path, p)
  expect_false(i$readonly)
  b2 <- buffer_open(p, type = "integer", dim = c(5, 5), backing = "mmap")
  b2[3, 3] <- 33L
  expect_identical(b[3, 3], 33L)
  b[1, 1] <- 11L
  expect_identical(b2[1, 1], 11L)
  ro <- buffer_open(p, type = "integer", dim = c(5, 5), readonly = TRUE)
  expect_true(buffer_info(ro)$readonly)
  expect_error(ro[1] <- 1L, "cannot be written")
  expect_error(buffer_open(p, type = "double", dim = 100), "fewer than")
  buffer_close(b2, unlink = FALSE)
  expect_true(file.exists(p))
  expect_invisible(buffer_close(b))
  expect_false(file.exists(p))
  expect_error(b[1], "closed")
  expect_error(buffer_open(p, "integer", 25), "could not open")
})

test_that("buffer_advise and buffer_diagnostics", {
  b <- buffer("double", dim = 1000)
  for (a in c("normal", "sequential", "random", "willneed", "dontneed")) expect_true(buffer_advise(b, a))
  expect_error(buffer_advise(b, "sideways"), "advice")
  d0 <- buffer_diagnostics()
  expect_named(d0, c("writes", "bytes", "reads", "read_bytes", "init_writes", "init_bytes"))
  b[1:10] <- 1
  x <- b[1:4]
  d1 <- buffer_diagnostics()
  expect_equal(d1$writes - d0$writes, 1)
  expect_equal(d1$bytes - d0$bytes, 80)
  expect_equal(d1$reads - d0$reads, 1)
  expect_equal(d1$read_bytes - d0$read_bytes, 32)
  buffer(dim = 10, init = 1)
  expect_equal(buffer_diagnostics()$init_bytes - d1$init_bytes, 80)
})

test_that("print shows type, dim, state and first values", {
  b <- buffer("double", dim = 10)
  b[1:2] <- c(1.5, 2)
  out <- capture.output(r <- print(b))
  expect_identical(r, b)
  expect_match(out[1], "<shard_buffer> double \\[10\\], 80 B, writable")
  expect_match(out[3], "1.5")
  buffer_close(b)
  expect_match(capture.output(print(b))[1], "closed")
})

test_that("a sealed buffer is read without a copy (ALTREP over its pages) and refuses writes", {
  b <- buffer("double", dim = c(1000, 10))
  b[, 3] <- 1:1000
  expect_false(buffer_info(b)$sealed)
  v0 <- as.vector(b)                      # not sealed: a copy
  expect_false(grepl("shard buffer view", paste(capture.output(.Internal(inspect(v0))), collapse = "")))
  buffer_seal(b)
  expect_true(buffer_info(b)$sealed)
  expect_error(b[1] <- 1, "sealed")
  m <- as.matrix(b)
  expect_match(capture.output(.Internal(inspect(m)))[1], "shard buffer view")
  expect_identical(m[, 3], as.double(1:1000))
  expect_identical(dim(m), c(1000L, 10L))
  m2 <- m
  m2[1, 1] <- 5                           # R copies; the buffer is unchanged
  expect_identical(m[1, 1], 0)
  expect_identical(b[1, 1], 0)
  # the pages outlive buffer_close() while a vector reads them
  buffer_close(b)
  gc()
  expect_equal(sum(m[, 3]), sum(1:1000))
  expect_identical(unserialize(serialize(m, NULL))[, 3], as.double(1:1000))
})

test_that("several workers write disjoint ranges concurrently without locks", {
  p <- pool_create(3, set_default = FALSE)
  on.exit(pool_stop(p))
  n <- 300000
  b <- buffer("double", dim = n)
  # interleaved blocks of 1000 elements: every worker writes next to the others
  blocks <- split(seq_len(n), rep(seq_len(n / 1000), each = 1000))
  pool_lapply(blocks, function(idx, b) { b[idx] <- idx * 2; Sys.getpid() }, b = b, pool = p)
  expect_identical(b[], seq_len(n) * 2)
  # strided (every third element per worker): element-wise disjoint writes
  b2 <- buffer("integer", dim = 30000)
  pool_lapply(1:3, function(k, b) { i <- seq.int(k, 30000, by = 3); b[i] <- rep(k, length(i)); k }, b = b2, pool = p)
  expect_identical(b2[], rep(1:3, 10000))
  buffer_close(b); buffer_close(b2)
})

test_that("a crashed owner's buffer file is swept by the next buffer()", {
  skip_if_no_callr()
  # the child makes a buffer and is killed before it can unlink it
  killed <- tryCatch(callr_r(function() {
    b <- shard::buffer("double", dim = 10)
    tools::pskill(Sys.getpid(), tools::SIGKILL)
  }), error = function(e) "killed")
  expect_identical(killed, "killed")
  files <- Sys.glob(sprintf("/dev/shm/shard-buf-%s-*", shard:::user_id()))
  dead <- files[vapply(files, function(f) {
    pid <- as.integer(strsplit(basename(f), "-")[[1]][4])
    !file.exists(sprintf("/proc/%d", pid))
  }, TRUE)]
  expect_gt(length(dead), 0)
  assign("swept", FALSE, envir = shard:::.buffer_state)
  b <- buffer("double", dim = 1)
  expect_false(any(file.exists(dead)))
  buffer_close(b)
})
