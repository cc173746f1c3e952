# buffer(): writable shared buffers (src/buffer.c, R/buffer.R; the store's
# src/store/buffer.rs underneath).

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
  old <- options(shard.huge_pages = "yes")
  expect_error(buffer("double", 3), "shard.huge_pages must be TRUE or FALSE")
  options(shard.huge_pages = FALSE)
  b <- buffer("double", 5e6, init = 1)            # 40 MB, 4 KiB pages
  expect_identical(sum(b[]), 5e6)
  buffer_close(b)
  options(old)
  expect_error(buffer_info(1:3), "must be a buffer")
  expect_error(buffer_open(1, "double", 3), "path")
})

test_that("values that would be lost in conversion are refused, nothing written", {
  b <- buffer("double", 3, init = 7)
  expect_error(b[1] <- "a", "double buffer does not take character values")
  expect_error(b[2] <- 1i, "does not take complex values")
  expect_identical(b[], c(7, 7, 7))
  i <- buffer("integer", 2)
  expect_error(i[1:2] <- c(1, 2^40), "would lose values")
  expect_identical(i[], c(0L, 0L))
  r <- buffer("raw", 2)
  expect_error(r[1] <- 300, "would lose values")
  expect_error(buffer("integer", 2, init = "x"), "does not take character")
  i[1:2] <- c(3, 4)                               # exact doubles convert fine
  expect_identical(i[], c(3L, 4L))
  b[3] <- TRUE
  expect_identical(b[3], 1)
  buffer_close(b); buffer_close(i); buffer_close(r)
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

test_that("buffer_path, buffer_info, buffer_open share the same memory; close releases", {
  b <- buffer("integer", dim = c(5, 5))
  p <- buffer_path(b)
  # no file: the path is the buffer's handle as text
  expect_match(p, sprintf("^shard-buf:[0-9a-f]{%d}$", 2L * shard:::handle_len()), perl = TRUE)
  expect_false(file.exists(p))
  i <- buffer_info(b)
  expect_identical(i$type, "integer")
  expect_identical(i$dim, c(5, 5))
  expect_identical(i$n, 25)
  expect_identical(i$bytes, 100)
  expect_identical(i$path, p)
  expect_identical(i$backing, "memfd")
  expect_false(i$readonly)
  b2 <- buffer_open(p, type = "integer", dim = c(5, 5), backing = "mmap")
  b2[3, 3] <- 33L
  expect_identical(b[3, 3], 33L)
  b[1, 1] <- 11L
  expect_identical(b2[1, 1], 11L)
  expect_identical(buffer_path(b2), p)
  # the handle itself opens it too
  b3 <- buffer_open(b$handle, type = "integer", dim = 25)
  expect_identical(b3[13], 33L)
  buffer_close(b3)
  ro <- buffer_open(p, type = "integer", dim = c(5, 5), readonly = TRUE)
  expect_true(buffer_info(ro)$readonly)
  expect_identical(ro[1, 1], 11L)
  expect_error(ro[1] <- 1L, "cannot be written")
  expect_error(buffer_open(p, type = "double", dim = 100), "fewer than")
  expect_error(buffer_open("/dev/shm/shard-buf-0-1-abc", "integer", 25), "buffer_path\\(\\)")
  expect_error(buffer_open("shard-buf:00ff", "integer", 25), "handle")
  buffer_close(b2, unlink = FALSE)
  expect_identical(b[3, 3], 33L)
  expect_invisible(buffer_close(b))
  expect_error(b[1], "closed")
  expect_error(buffer_open(p, "integer", 25), "could not open.*closed")
  buffer_close(ro)
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

test_that("forked children (mclapply) open the buffer by its handle and write disjoint ranges", {
  skip_if_no_fork()
  b <- buffer("integer", dim = 4000)
  r <- parallel::mclapply(1:4, function(k) {
    i <- ((k - 1) * 1000 + 1):(k * 1000)
    b[i] <- rep(k, 1000)
    gc()          # the child's copy of the owner's mapping is not the child's to unmap
    Sys.getpid()
  }, mc.cores = 2)
  expect_false(any(unlist(r) == Sys.getpid()))
  expect_identical(b[], rep(1:4, each = 1000))
  b[1] <- 9L      # the owner's mappings are intact after the children exited
  expect_identical(b[1:2], c(9L, 1L))
  # mclapply() returns once the children sent their results, maybe before they
  # exited (a child's mappings go when it exits): wait until each is gone or a
  # zombie, then the seal must succeed at once.
  exited <- function(pid) {
    st <- tryCatch(suppressWarnings(readLines(sprintf("/proc/%d/status", pid), warn = FALSE)),
                   error = function(e) NULL)
    is.null(st) || any(grepl("^State:\\s+Z", st))
  }
  deadline <- Sys.time() + 10
  while (!all(vapply(unlist(r), exited, TRUE)) && Sys.time() < deadline) Sys.sleep(0.02)
  expect_true(all(vapply(unlist(r), exited, TRUE)))
  buffer_seal(b)  # and the children's mappings are gone
  expect_true(buffer_info(b)$sealed)
  buffer_close(b)
})

test_that("the seal is refused while another mapping can write, and waits for nobody after", {
  b <- buffer("double", dim = 10)
  w <- buffer_open(buffer_path(b), "double", 10)   # as a worker would map it
  w[2] <- 5
  expect_error(buffer_seal(b), "retry")
  expect_false(buffer_info(b)$sealed)
  b[1] <- 4                                         # nothing changed: still writable
  buffer_close(w)
  buffer_seal(b)
  expect_true(buffer_info(b)$sealed)
  expect_identical(b[1:2], c(4, 5))
  # opened after the seal: read-only, zero-copy
  r <- buffer_open(buffer_path(b), "double", 10)
  expect_true(buffer_info(r)$sealed)
  expect_error(r[1] <- 1, "sealed")
  expect_match(capture.output(.Internal(inspect(as.vector(r))))[1], "shard buffer view")
  buffer_close(r)
  buffer_close(b)
})

test_that("workers' mappings go at the end of a shard_map() run: the buffer seals after it", {
  out <- buffer("double", dim = 100)
  res <- shard_map(shards(100, block_size = 25), function(s, out) { out[s$idx] <- s$idx * 3; NULL },
                   out = list(out = out), workers = 2)
  expect_true(succeeded(res))
  buffer_seal(out)
  expect_identical(as.vector(out), seq_len(100) * 3)
  expect_match(capture.output(.Internal(inspect(as.vector(out))))[1], "shard buffer view")
  # a worker cannot seal (only the process that made the buffer can)
  p <- pool_create(1, set_default = FALSE)
  on.exit(pool_stop(p))
  b <- buffer("double", dim = 4)
  r <- pool_lapply(1, function(i, b) tryCatch({ buffer_seal(b); "sealed" }, error = conditionMessage),
                   b = b, pool = p)
  expect_match(r[[1]], "only the process that created a buffer can seal it")
  buffer_close(b)
  buffer_close(out)
})

test_that("a killed owner leaves nothing behind; no buffer ever makes a file", {
  skip_if_no_callr()
  shm_before <- dir("/dev/shm", all.files = TRUE)
  ud <- shard:::shard_tmpdir()
  # the child makes a buffer, writes it, and is killed (SIGKILL) before any cleanup
  info <- tempfile()
  killed <- tryCatch(callr_r(function(info) {
    b <- shard::buffer("double", dim = 1e5, init = 1)
    writeLines(c(as.character(Sys.getpid()), shard::buffer_path(b)), info)
    tools::pskill(Sys.getpid(), tools::SIGKILL)
  }, args = list(info = info)), error = function(e) "killed")
  expect_identical(killed, "killed")
  l <- readLines(info)
  pid <- l[1]
  unlink(info)
  # (every file name the store, or the buffers of older builds, gave a process's files holds "-<pid>-")
  mine <- function(files) files[grepl(sprintf("-%s-", pid), files, fixed = TRUE)]
  expect_identical(mine(dir("/dev/shm", all.files = TRUE)), character(0))
  if (dir.exists(ud)) expect_identical(mine(dir(ud, all.files = TRUE, recursive = TRUE)), character(0))
  expect_error(buffer_open(l[2], "double", 1e5), "exited")
  # and no buffer of this process made a file either (other processes of the
  # machine may come and go in /dev/shm meanwhile: only names of this one count)
  b <- buffer("double", dim = 10)
  b2 <- buffer("raw", dim = 1e6)
  new <- setdiff(dir("/dev/shm", all.files = TRUE), shm_before)
  expect_false(any(grepl(sprintf("-%d-", Sys.getpid()), new, fixed = TRUE)))
  expect_length(Sys.glob(sprintf("/dev/shm/shard-buf-*-%d-*", Sys.getpid())), 0)
  buffer_close(b)
  buffer_close(b2)
})
