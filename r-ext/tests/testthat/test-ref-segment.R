# Reference pages segment*, segment_advise/close/create/info/open/path/protect/read/
# report/size/write, available_backings, print.shard_segment: documented arguments,
# defaults, return fields and errors; our earlier argument names keep working.

ref_formals <- function(f) lapply(formals(f), function(v) if (is.symbol(v) && !nzchar(as.character(v))) NULL else v)

test_that("segment functions have the reference's arguments and defaults", {
  f <- ref_formals(segment_create)
  expect_identical(names(f)[1:4], c("size", "backing", "path", "readonly"))
  expect_identical(f$backing, quote(c("auto", "mmap", "shm")))
  expect_null(f$path)
  expect_false(f$readonly)
  expect_identical(names(formals(segment_close))[1:2], c("x", "unlink"))
  expect_null(formals(segment_close)$unlink)
  f <- ref_formals(segment_read)
  expect_identical(names(f)[1:3], c("x", "offset", "size"))
  expect_identical(f$offset, 0)
  expect_null(f$size)
  expect_identical(names(formals(segment_write)), c("x", "data", "offset"))
  expect_identical(formals(segment_write)$offset, 0)
  f <- ref_formals(segment_open)
  expect_identical(names(f)[1:3], c("path", "backing", "readonly"))
  expect_identical(f$backing, quote(c("mmap", "shm")))
  expect_true(f$readonly)
  f <- formals(segment_advise)
  expect_identical(names(f), c("seg", "advice"))
  expect_identical(f$advice, quote(c("normal", "sequential", "random", "willneed", "dontneed")))
  for (fn in list(segment_info, segment_path, segment_size, segment_protect))
    expect_identical(names(formals(fn)), "x")
  expect_length(formals(segment_report), 0L)
  expect_length(formals(available_backings), 0L)
})

test_that("segment_create(path =) names the segment; a file path is refused with advice", {
  seg <- segment_create(64, backing = "mmap", path = "shard-test-ref-path")
  on.exit(segment_close(seg))
  expect_identical(seg$name, "shard-test-ref-path")
  o <- segment_open("shard-test-ref-path", backing = "mmap")
  expect_s3_class(o, "shard_segment")
  expect_error(segment_create(64, path = "/tmp/x.bin"), "`path` must be a name")
  expect_error(segment_create(64, path = "a", name = "b"), "`path` or `name`, not both")
  expect_error(segment_create(64, path = 3), "`path`")
  expect_error(segment_create(64, readonly = NA), "`readonly`")
})

test_that("segment_create(readonly = TRUE): read-only after the initial write", {
  seg <- segment_create(16, readonly = TRUE)
  on.exit(segment_close(seg))
  expect_false(segment_info(seg)$readonly)
  expect_identical(segment_write(seg, 1:4), 16)
  expect_true(segment_info(seg)$readonly)
  expect_error(segment_write(seg, 1L), "protected")
  expect_identical(segment_read(seg, 0, 4, "integer"), 1:4)
})

test_that("segment_read(size =) counts bytes; length = and positional typed reads count values", {
  seg <- segment_create(1024)
  on.exit(segment_close(seg))
  expect_identical(segment_write(seg, as.integer(1:4), offset = 0), 16)
  r <- segment_read(seg, offset = 0, size = 16)
  expect_identical(r, as.raw(c(1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0)))
  expect_identical(segment_read(seg, 0, size = 16, type = "integer"), 1:4)
  expect_identical(segment_read(seg, 0, length = 4, type = "integer"), 1:4)
  expect_identical(segment_read(seg, 0, 4, "integer"), 1:4)       # earlier positional form
  expect_identical(segment_read(seg, 4, 8), r[5:12])
  expect_error(segment_read(seg, 0, size = 6, type = "integer"), "not a whole number of integer values")
  expect_error(segment_read(seg, 0, size = 4, length = 1), "not both")
  expect_error(segment_read(seg, 0, size = 2000), "overflows")
  expect_error(segment_read(seg, 0, size = -1), "`size`")
})

test_that("segment_info() has the reference's fields; segment_path()/segment_size()", {
  seg <- segment_create(1024, backing = "mmap")
  info <- segment_info(seg)
  for (f in c("size", "backing", "path", "readonly", "owns")) expect_true(f %in% names(info), info = f)
  expect_identical(info$size, 1024)
  expect_identical(info$backing, "mmap")
  expect_true(info$owns)
  expect_false(info$readonly)
  expect_identical(info$owner, info$owns)     # earlier name
  p <- segment_path(seg)
  expect_true(is.character(p) && length(p) == 1L && file.exists(p))
  expect_identical(p, info$path)
  expect_identical(segment_size(seg), 1024)
  segment_close(seg)
  expect_false(segment_info(seg)$attached)
  expect_error(segment_size(1), "must be a shard_segment")
})

test_that("segment_open(path, backing, readonly) opens a path of this session; x = still works", {
  seg <- segment_create(1024, backing = "mmap")
  segment_write(seg, 7L)
  o <- segment_open(segment_path(seg), backing = "mmap", readonly = TRUE)
  expect_true(o$readonly)
  expect_true(segment_info(o)$readonly)
  expect_identical(segment_read(o, 0, 1, "integer"), 7L)
  expect_false(segment_close(o, unlink = FALSE))
  expect_identical(segment_read(seg, 0, 1, "integer"), 7L)   # still open
  o2 <- segment_open(x = seg)
  expect_identical(o2$handle, seg$handle)
  expect_false(segment_close(o2))   # opened: the default is not to unlink
  expect_true(segment_close(seg))
  expect_error(segment_open("/no/such/shard/segment"), "no segment of this session has the path")
  expect_error(segment_open(seg$path, backing = "disk"), "`backing`")
  expect_error(segment_open(), "`path` is missing")
})

test_that("segment_close(unlink =): owner keeps with FALSE, frees with TRUE; others cannot unlink", {
  seg <- segment_create(64)
  expect_false(segment_close(seg, unlink = FALSE))
  expect_identical(segment_read(seg, 0, 1), as.raw(0))
  expect_true(segment_close(seg, unlink = TRUE))
  expect_error(segment_read(seg), "closed")
  expect_error(segment_close(seg, unlink = NA), "`unlink`")
  seg2 <- segment_create(64)
  on.exit(segment_close(seg2))
  got <- callr_r(function(seg) {
    c(tryCatch({ shard::segment_close(seg, unlink = TRUE); "closed" }, error = conditionMessage),
      as.character(shard::segment_close(seg)))
  }, list(seg2))
  expect_match(got[1], "only the process that created this segment")
  expect_identical(got[2], "TRUE")   # detached there
  expect_identical(segment_read(seg2, 0, 1), as.raw(0))   # still alive here
})

test_that("segment_write() after segment_close() says the segment is closed (issue 12 point 8)", {
  seg <- segment_create(100)
  segment_close(seg)
  err <- tryCatch(segment_write(seg, 1L), error = conditionMessage)
  expect_match(err, "has been closed")
  expect_false(grepl("only the process", err))
})

test_that("segment_write() refuses layouts with internal headers (issue 12 point 2 / writable composites)", {
  s <- share(data.frame(a = c(1, 2, 3)), readonly = FALSE)
  expect_error(segment_write(s, 42, offset = 16), "list or data.frame: its layout has internal headers")
  expect_identical(sum(fetch(s)$a), 6)
  close(s)
  s2 <- share(c("a", "bb", "ccc"), readonly = FALSE)
  expect_error(segment_write(s2, 42, offset = 0), "character vector")
  expect_identical(fetch(s2), c("a", "bb", "ccc"))
  close(s2)
  s3 <- share(list(f = quote(x)), readonly = FALSE)
  expect_error(segment_write(s3, as.raw(0), offset = 0), "serialized object")
  close(s3)
  # a plain vector's offsets address its values: allowed
  s4 <- share(c(1, 2, 3), readonly = FALSE)
  segment_write(s4, 20, offset = 8)
  expect_identical(fetch(s4), c(1, 20, 3))
  close(s4)
})

test_that("segment_advise() checks its arguments and returns a logical scalar", {
  seg <- segment_create(4096)
  on.exit(segment_close(seg))
  for (a in c("normal", "sequential", "random", "willneed", "dontneed")) {
    r <- segment_advise(seg, a)
    expect_true(r)                                   # the kernel took the hint
  }
  expect_identical(segment_read(seg, 0, 4), raw(4))   # advice never changes the data
  expect_error(segment_advise(seg, "fast"), "`advice` must be one of")
  expect_error(segment_advise(1:3), "must be a shard_segment")
})

test_that("available_backings() lists what can be created here", {
  b <- available_backings()
  expect_type(b, "character")
  expect_true("auto" %in% b)
  expect_true(all(b %in% c("auto", "mmap", "shm")))
  for (k in b) {
    seg <- segment_create(64, backing = k)
    expect_true(segment_close(seg))
  }
})

test_that("segment_report() is a shard_report of this session's open segments", {
  seg <- segment_create(4096)
  rep <- segment_report()
  expect_s3_class(rep, "shard_report")
  for (f in c("type", "timestamp", "n_segments", "total_bytes", "segments")) expect_true(f %in% names(rep), info = f)
  expect_identical(rep$type, "segment")
  expect_s3_class(rep$timestamp, "POSIXct")
  paths <- vapply(rep$segments, `[[`, "", "path")
  expect_true(segment_path(seg) %in% paths)
  expect_identical(rep$n_segments, length(rep$segments))
  expect_gte(rep$total_bytes, 4096)
  expect_output(print(rep), "shard_report")
  segment_close(seg)
  expect_false(segment_path(seg) %in% vapply(segment_report()$segments, `[[`, "", "path"))
})

test_that("print.shard_segment() prints and returns x invisibly", {
  seg <- segment_create(1024)
  on.exit(segment_close(seg))
  expect_output(res <- withVisible(print(seg)), "shard_segment")
  expect_false(res$visible)
  expect_identical(res$value, seg)
  expect_identical(withVisible(segment_protect(seg))$visible, FALSE)
})
