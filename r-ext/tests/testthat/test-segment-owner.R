# Only a segment's owner writes or protects it: in another process (a forked child
# here) the store's own answer is a permission error that names the owner, not
# "closed".

test_that("writing another process's segment is a permission error naming the owner", {
  skip_on_os("windows")
  seg <- segment_create(64)
  on.exit(segment_close(seg))
  segment_write(seg, as.raw(1:8))
  job <- parallel::mcparallel({
    c(r = tryCatch({ segment_write(seg, as.raw(1)); "ok" }, error = conditionMessage),
      c = tryCatch({ .Call(shard:::C_segment_write, seg$handle, 0, as.raw(1)); "ok" }, error = conditionMessage),
      p = tryCatch({ .Call(shard:::C_protect, seg$handle); "ok" }, error = conditionMessage))
  })
  out <- parallel::mccollect(job)[[1]]
  expect_match(out[["r"]], sprintf("only the process that created this segment \\(pid %d\\) can write it", Sys.getpid()))
  expect_match(out[["c"]], sprintf("permission denied: segment [0-9]+ is owned by process %d; only its owner can write it",
                                   Sys.getpid()))
  expect_match(out[["p"]], sprintf("is owned by process %d; only its owner can protect it", Sys.getpid()))
  # The owner still can.
  segment_write(seg, as.raw(9), offset = 8)
  expect_identical(segment_read(seg, 8, 1), as.raw(9))
})
