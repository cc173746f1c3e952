# Reference pages share, fetch, materialize, is_shared, close.shard_shared, share_open,
# shared_info, print.shard_shared: documented arguments, defaults, fields, errors.

test_that("share() has the reference's arguments and defaults", {
  f <- formals(share)
  expect_identical(names(f), c("x", "backing", "readonly", "name", "deep", "min_bytes", "cycle", "mode", "cluster"))
  expect_identical(f$backing, quote(c("auto", "mmap", "shm")))
  expect_true(f$readonly)
  expect_null(f$name)
  expect_false(f$deep)
  expect_identical(eval(f$min_bytes), 64 * 1024 * 1024)
  expect_identical(f$cycle, quote(c("error", "skip")))
  expect_identical(f$mode, quote(c("balanced", "strict")))
  # plain = is this package's addition (fetch(x, plain =), ?fetch)
  expect_identical(names(formals(fetch)), c("x", "...", "plain"))
  expect_identical(names(formals(is_shared)), "x")
  expect_identical(names(formals(materialize)), "x")
  expect_identical(names(formals(shared_info)), "x")
  f <- formals(share_open)
  expect_identical(names(f)[1:3], c("path", "backing", "size"))
  expect_identical(f$backing, quote(c("mmap", "shm")))
  expect_null(f$size)
})

test_that("a shard_shared object has the documented fields", {
  mat <- matrix(rnorm(1e4), nrow = 100)
  s <- share(mat)
  for (f in c("path", "backing", "size", "readonly", "class_info")) expect_true(f %in% names(s), info = f)
  expect_true(s$readonly)
  expect_identical(s$class_info$dim, c(100L, 100L))
  expect_identical(fetch(s), mat)
  expect_identical(materialize(s), mat)
  expect_true(is_shared(s))
  expect_false(is_shared(mat))
  expect_output(res <- withVisible(print(s)), "shard_shared")
  expect_false(res$visible)
  close(s)
  expect_error(fetch(s)[1], "closed")
})

test_that("shared_info() has class_info and segment_info (type, nrow, ncol, ...)", {
  s <- share(matrix(1:6, nrow = 2))
  info <- shared_info(s)
  for (f in c("path", "backing", "size", "readonly", "class_info", "segment_info"))
    expect_true(f %in% names(info), info = f)
  expect_identical(info$class_info$type, "integer")
  expect_identical(info$class_info$dim, c(2L, 3L))
  si <- info$segment_info
  expect_identical(si$type, "integer")
  expect_identical(si$nrow, 2L)
  expect_identical(si$ncol, 3L)
  expect_identical(si$length, 6L)
  expect_identical(si$layout, "vector")
  expect_true(si$owns)
  close(s)
  v <- share(c(a = 1, b = 2))
  si <- shared_info(fetch(v))$segment_info
  expect_identical(si$type, "double")
  expect_true(is.na(si$nrow) && is.na(si$ncol))
  close(v)
  d <- share(list(a = rnorm(1e3)), deep = TRUE, min_bytes = 1)
  info <- shared_info(d)
  expect_identical(info$class_info$layout, "deep")
  expect_identical(info$segment_info$n_segments, 1L)
  close(d)
})

test_that("share_open(path, backing) reopens by the path of shared_info(); close() leaves the owner's object", {
  shared <- share(1:50)
  info <- shared_info(shared)
  reopened <- share_open(info$path, backing = "mmap")
  expect_s3_class(reopened, "shard_shared")
  expect_identical(reopened$class_info$type, "integer")
  expect_identical(fetch(reopened), 1:50)
  expect_error(share_open(info$path, size = 1), "`size` 1 does not match")
  expect_identical(fetch(share_open(info$path, size = shared$size)), 1:50)
  close(reopened)
  expect_identical(fetch(shared), 1:50)     # the owner's object is still open
  close(shared)
  expect_error(share_open("/proc/1/fd/99999"), "no shared object of this session has the path")
  expect_error(share_open(info$path, backing = "disk"), "`backing`")
})

test_that("share_open(path) refuses a path that holds several live objects rather than guess", {
  a <- share(1:50)
  b <- share(101:160)
  pa <- shared_info(a)$path
  pb <- shared_info(b)$path
  if (identical(pa, pb)) {
    expect_error(share_open(pa), "holds 2 live shared objects")
    expect_identical(fetch(share_open(pb, size = b$size)), 101:160)   # the size tells them apart
    close(b)
    expect_identical(fetch(share_open(pa)), 1:50)    # one live object left: unambiguous
  } else {
    expect_identical(fetch(share_open(pb)), 101:160)
    expect_identical(fetch(share_open(pa)), 1:50)
    close(b)
  }
  close(a)
  expect_error(share_open(pa), "no shared object of this session has the path")
})

test_that("share_open(name) and share_open(name =) both work; another process can detach", {
  s <- share(c(2.5, 3.5), name = "shard-test-ref-open")
  expect_identical(fetch(share_open("shard-test-ref-open")), c(2.5, 3.5))
  expect_identical(fetch(share_open(name = "shard-test-ref-open")), c(2.5, 3.5))
  got <- callr_r(function() {
    o <- shard::share_open("shard-test-ref-open", backing = "shm")
    v <- sum(shard::fetch(o))
    close(o)
    c(v, tryCatch({ shard::fetch(o); 0 }, error = function(e) -1))
  })
  expect_identical(got[1], 6)
  expect_identical(fetch(s), c(2.5, 3.5))
  close(s)
})

test_that("close() of a shard_shared returns invisibly; materialize() gives an ordinary copy", {
  s <- share(1:100)
  d <- materialize(s)
  expect_false(is_shared(d))
  expect_identical(d, 1:100)
  res <- withVisible(close(s))
  expect_false(res$visible)
  expect_identical(d, 1:100)
})

test_that("the path registry drops closed objects as it grows (amortized)", {
  reg <- new.env(parent = emptyenv())
  seg <- segment_create(64)
  live <- seg$handle
  closed <- segment_create(64)
  segment_close(closed)
  for (i in 1:5000) shard:::registry_add(reg, sprintf("/fake/%d", i), closed$handle, NULL)
  shard:::registry_add(reg, "/fake/live", live, NULL)
  expect_lt(length(ls(reg)), 5000L)          # pruned on the way
  expect_identical(shard:::registry_find(reg, "/fake/live")$handle, live)
  expect_null(shard:::registry_find(reg, "/fake/4999"))
  expect_length(shard:::registry_live(reg), 1L)
  segment_close(seg)
})
