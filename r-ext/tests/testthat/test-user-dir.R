# The per-user directory (<TMPDIR>/shard-<uid>) is removed at the end of a
# session that left nothing in it (R CMD check reports anything left in its
# TMPDIR), and kept while anything is in it.

user_dir_session <- function(tmpdir, code) {
  script <- tempfile(fileext = ".R")
  on.exit(unlink(script))
  writeLines(c("suppressPackageStartupMessages(library(shard))", code), script)
  # env -u: an empty SHARD_TMPDIR is not the same as none.
  out <- suppressWarnings(system2("env", c("-u", "SHARD_TMPDIR", paste0("TMPDIR=", tmpdir),
                                           paste0("R_LIBS=", paste(.libPaths(), collapse = ":")),
                                           "SHARD_NODE_SCOPED=0", file.path(R.home("bin"), "Rscript"), script),
                                  stdout = TRUE, stderr = TRUE))
  status <- attr(out, "status")
  list(status = if (is.null(status)) 0L else status, out = paste(out, collapse = "\n"))
}

test_that("a session that closed its named and mmap shares leaves no per-user directory", {
  d <- tempfile("userdir-")
  dir.create(d)
  on.exit(unlink(d, recursive = TRUE))
  r <- user_dir_session(d, c(
    "s <- share(1:5, name = 'ud-test'); stopifnot(identical(fetch(share_open('ud-test')), 1:5))",
    "m <- share(runif(10), backing = 'mmap')",
    "cat('DIR=', basename(shard:::shard_tmpdir()), ' ', dir.exists(shard:::shard_tmpdir()), '\\n', sep = '')",
    "close(s); close(m)"))
  expect_equal(r$status, 0L, info = r$out)
  expect_match(r$out, "DIR=shard-[0-9]+ TRUE", info = r$out)
  expect_identical(list.files(d, all.files = TRUE, no.. = TRUE), character(), info = r$out)
})

test_that("the per-user directory is kept at exit while it holds anything", {
  d <- tempfile("userdir-")
  dir.create(d)
  on.exit(unlink(d, recursive = TRUE))
  # Another process's entry (a file the session did not make) stays, and with it the directory.
  r <- user_dir_session(d, c(
    "s <- share(1:5, name = 'ud-keep'); close(s)",
    "writeLines('x', file.path(shard:::shard_tmpdir(), 'names', 'not-mine'))"))
  expect_equal(r$status, 0L, info = r$out)
  udir <- list.files(d, pattern = "^shard-[0-9]+$", full.names = TRUE)
  expect_length(udir, 1L)
  expect_identical(readLines(file.path(udir, "names", "not-mine")), "x")
})
