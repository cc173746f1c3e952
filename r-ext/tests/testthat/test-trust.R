# Issue 12 ("Trust"): one regression test per numbered finding. Every case that
# could crash runs in a child R process (callr), so a segfault or SIGBUS is a
# failed expectation here, never a dead test runner. Each test failed on the code
# before the fix (d1110aa); docs/RELIABILITY.md "Trust (issue 12)" says how.

# A child R process; its value, or a failure that says how the child died.
trust_child <- function(fun, args = list(), env = character()) {
  skip_if_no_callr()
  e <- c(callr::rcmd_safe_env(), R_LIBS = paste(.libPaths(), collapse = ":"), env)
  tryCatch(callr::r(fun, args, libpath = .libPaths(), env = e),
           error = function(err) {
             msg <- conditionMessage(err)
             if (!is.null(err$parent)) msg <- paste(msg, conditionMessage(err$parent))
             if (!is.null(err$stderr)) msg <- paste(msg, "stderr:", substr(err$stderr, 1, 2000))
             if (!is.null(err$status)) msg <- paste(msg, "exit status:", err$status)
             fail(paste("the child R process failed or crashed:", msg))
             NULL
           })
}

test_that("finding 1: a forged length in a serialized shared vector is a clean error, never a crash", {
  res <- trust_child(function() {
    library(shard)
    s <- share(as.numeric(1:1000))
    b <- serialize(fetch(s), NULL)
    find_all <- function(b, pat) which(vapply(seq_len(length(b) - length(pat) + 1L), function(i)
      identical(b[i:(i + length(pat) - 1L)], pat), logical(1)))
    hits <- find_all(b, writeBin(1000, raw(), endian = "big"))
    forged <- b
    for (h in hits) forged[h:(h + 7L)] <- writeBin(1e12, raw(), endian = "big")
    msg <- tryCatch({ z <- unserialize(forged); z[length(z)]; "no error" },
                    error = function(e) conditionMessage(e))
    # Every byte of the state's values (the 180 handle bytes, the offset, length
    # and count doubles, the kind integer) replaced by three values: each forgery
    # is refused or restores a vector whose every element reads within the object.
    # (R's own structure bytes are left alone: a length byte made 0x7f has R's
    # unserialize allocate and fill a 2^31-element list, whatever the class.)
    handle <- .Call(shard:::C_vector_handle, fetch(s))$handle
    at_h <- find_all(b, handle)
    stopifnot(length(at_h) == 1L)
    after <- function(from, pat) from - 1L + find_all(b[from:length(b)], pat)[1]
    d1 <- after(at_h + 180L, writeBin(0, raw(), endian = "big"))
    d2 <- after(d1 + 8L, writeBin(8000, raw(), endian = "big"))
    d3 <- after(d2 + 8L, writeBin(1000, raw(), endian = "big"))
    k <- after(d3 + 8L, writeBin(1L, raw(), endian = "big"))
    stopifnot(!anyNA(c(d1, d2, d3, k)))
    state <- c(at_h + 0:179, d1 + 0:7, d2 + 0:7, d3 + 0:7, k + 0:3)
    calls <- 0L; refused <- 0L; restored <- 0L; wrong <- 0L
    for (i in state) for (v in as.raw(c(0x00, 0x7f, 0xff))) {
      if (b[i] == v) next
      f <- b; f[i] <- v
      calls <- calls + 1L
      z <- tryCatch(unserialize(f), error = function(e) NULL)
      if (is.null(z)) { refused <- refused + 1L; next }
      restored <- restored + 1L
      ok <- tryCatch({ n <- length(z); x <- z[n]; sum(as.numeric(z[seq_len(n)]))
        # A restored shard vector is the object itself: values 1..1000.
        !is.numeric(z) || identical(as.numeric(z[seq_len(n)]), as.numeric(1:1000)[seq_len(n)]) },
        error = function(e) TRUE)
      if (!isTRUE(ok)) wrong <- wrong + 1L
    }
    list(hits = length(hits), msg = msg, calls = calls, refused = refused, restored = restored, wrong = wrong,
         intact = identical(unserialize(b), as.numeric(1:1000)))
  })
  if (is.null(res)) return(invisible())   # the child failed: already a failure
  expect_gte(res$hits, 1L)
  expect_match(res$msg, "cannot restore a shared vector.*1000000000000", info = res$msg)
  message("finding 1: ", res$calls, " forged states, ", res$refused, " refused, ", res$restored, " restored the intact object")
  expect_gt(res$calls, 400L)
  expect_gt(res$refused, 0L)
  expect_equal(res$wrong, 0L)
  expect_true(res$intact)
})

test_that("finding 1: a serialized state of the wrong shape is a clean error", {
  res <- trust_child(function() {
    library(shard)
    z <- fetch(share(as.numeric(1:10)))
    b <- serialize(z, NULL)
    # The bytes are [header][ALTREP info][state: a list of 5][attributes: NULL]:
    # splice in other states, serialized by R itself.
    hdr <- length(serialize(NULL, NULL)) - 4L
    body <- function(x) { s <- serialize(x, NULL); s[(hdr + 1L):length(s)] }
    list5 <- as.raw(c(0x00, 0x00, 0x00, 0x13, 0x00, 0x00, 0x00, 0x05))
    at <- which(vapply(seq_len(length(b) - 7L), function(i) identical(b[i:(i + 7L)], list5), logical(1)))
    stopifnot(length(at) == 1L)
    prefix <- b[seq_len(at - 1L)]
    handle <- .Call(shard:::C_vector_handle, z)$handle
    states <- list(four = list(handle, 0, 80, 10),
                   kind_double = list(handle, 0, 80, 10, 1),
                   kind_two = list(handle, 0, 80, 10, 1:2),
                   handle_short = list(handle[1:10], 0, 80, 10, 1L),
                   offset_chr = list(handle, "0", 80, 10, 1L),
                   not_list = 1:5,
                   offset_nan = list(handle, NaN, 80, 10, 1L),
                   len_neg = list(handle, 0, -80, -10, 1L),
                   kind_str = list(handle, 0, 80, 10, 6L),
                   fraction = list(handle, 0.5, 80, 10, 1L),
                   good = list(handle, 0, 80, 10, 1L))
    vapply(states, function(st) tryCatch({
      v <- unserialize(c(prefix, body(st), as.raw(c(0x00, 0x00, 0x00, 0xfe))))
      paste("restored", sum(v))
    }, error = function(e) conditionMessage(e)), "")
  })
  if (is.null(res)) return(invisible())   # the child failed: already a failure
  expect_equal(unname(res["good"]), "restored 55")
  bad <- res[names(res) != "good"]
  for (k in names(bad)) expect_match(bad[[k]], "shard: cannot restore a shared vector", info = paste(k, ":", bad[[k]]))
})

test_that("finding 2: a write into a writable data.frame or character vector never crashes a reader", {
  res <- trust_child(function() {
    library(shard)
    out <- list()
    s <- share(data.frame(a = c(1, 2, 3)), readonly = FALSE)
    w <- tryCatch({ segment_write(s, 42, offset = 16); "written" }, error = function(e) conditionMessage(e))
    r <- tryCatch(sum(fetch(s)$a), error = function(e) conditionMessage(e))
    out$df <- list(write = w, read = r)
    s <- share(c("a", "bb", "ccc", NA), readonly = FALSE)
    w <- tryCatch({ segment_write(s, 1e12, offset = 16); "written" }, error = function(e) conditionMessage(e))
    r <- tryCatch(paste(fetch(s), collapse = ","), error = function(e) conditionMessage(e))
    out$chr <- list(write = w, read = r)
    # Every 8-byte offset of the character vector's bytes, every value kind.
    n <- 0L; bad <- 0L
    for (off in seq(0, 96, by = 8)) for (v in list(1e12, -1, 2^53, 3)) {
      s <- share(c("a", "bb", "ccc", NA), readonly = FALSE)
      n <- n + 1L
      ok <- tryCatch({ segment_write(s, v, offset = off); TRUE }, error = function(e) FALSE)
      r <- tryCatch(fetch(s), error = function(e) NULL)
      if (!is.null(r) && !identical(as.character(r), c("a", "bb", "ccc", NA))) bad <- bad + 1L
      close(s)
    }
    out$tries <- n; out$wrong <- bad
    out
  })
  if (is.null(res)) return(invisible())   # the child failed: already a failure
  # Refused (the layout has headers) or, if written, readers still never crash
  # and never return data outside the object.
  expect_true(res$df$write != "written" || is.character(res$df$read) || res$df$read == 6,
              info = paste(res$df, collapse = " / "))
  if (res$df$write != "written") expect_equal(res$df$read, 6)
  expect_true(res$chr$write != "written" || is.character(res$chr$read))
  if (res$chr$write != "written") expect_equal(res$chr$read, "a,bb,ccc,NA")
  expect_equal(res$tries, 52L)
  expect_equal(res$wrong, 0L)
})

test_that("finding 3: a stale vector in a worker never shows a later object's values after close()", {
  skip_if_no_callr()
  w <- callr::r_session$new(callr::r_session_options(
    libpath = .libPaths(), env = c(callr::rcmd_safe_env(), R_LIBS = paste(.libPaths(), collapse = ":"))))
  on.exit(w$close(), add = TRUE)
  keep <- share(runif(10))                       # keeps the region alive
  s1 <- share(as.numeric(1:10))                  # sum 55
  first <- w$run(function(s) { library(shard); cached <<- fetch(s); sum(cached) }, list(s1))
  expect_equal(first, 55)
  close(s1)
  s2 <- share(as.numeric(1:10) + 100)            # same size: sum 1055
  expect_equal(sum(fetch(s2)), 1055)
  after <- w$run(function() tryCatch(sum(cached), error = function(e) paste("error:", conditionMessage(e))))
  # Documented in ?close: the stale vector keeps its old values (55), or errors.
  expect_true(identical(after, 55) || (is.character(after) && grepl("^error:", after)), info = format(after))
  expect_false(identical(after, 1055))
  expect_identical(after, 55)
  close(s2); close(keep)
})

test_that("finding 3, name-based backings: a stale vector keeps its values and the name goes at close", {
  skip_if_no_callr()
  w <- callr::r_session$new(callr::r_session_options(
    libpath = .libPaths(), env = c(callr::rcmd_safe_env(), R_LIBS = paste(.libPaths(), collapse = ":"))))
  on.exit(w$close(), add = TRUE)
  for (b in c("shm", "mmap")) {
    keep <- share(runif(10), backing = b)
    s1 <- share(as.numeric(1:10), backing = b)   # sum 55
    expect_true(file.exists(s1$path), info = b)
    first <- w$run(function(s) { library(shard); cached <<- fetch(s); sum(cached) }, list(s1))
    expect_equal(first, 55)
    close(s1)
    # Its own region: released at close, so its shm object / file goes now,
    # although the worker still maps it (the worker's mapping keeps the pages).
    expect_false(file.exists(s1$path), info = b)
    s2 <- share(as.numeric(1:10) + 100, backing = b)   # same size: sum 1055
    expect_equal(sum(fetch(s2)), 1055)
    expect_false(identical(s2$path, s1$path), info = b)
    after <- w$run(function() tryCatch(sum(cached), error = function(e) paste("error:", conditionMessage(e))))
    expect_identical(after, 55, info = b)
    close(s2); close(keep)
  }
})

test_that("finding 5: a fallback warning turned into an error does not orphan the object", {
  free_f <- "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"
  if (!file.exists(free_f)) {
    message("SKIPPED: no 2 MiB huge pages in this kernel: no fallback to force")
    skip("no 2 MiB huge page support")
  }
  free <- as.integer(readLines(free_f))
  # An object larger than every free huge page must fall back (to THP or 4 KiB).
  n <- ceiling((free + 48) * 2^21 / 8)
  if (n * 8 > 1.5 * 2^30) {
    message("SKIPPED: ", free, " free huge pages: forcing a fallback would take over 1.5 GiB")
    skip("too many free huge pages to force a fallback")
  }
  for (how in c("plain", "classed", "handler")) {
    res <- trust_child(function(n, how) {
      library(shard)
      x <- as.double(seq_len(n))
      if (how == "classed") x <- structure(x, class = "myclass")   # share()'s R path
      before <- shard_diagnostics()$live_objects
      if (how == "handler") {
        r <- tryCatch(share(x), warning = function(w) conditionMessage(w))
      } else {
        options(warn = 2)
        r <- tryCatch(share(x), error = function(e) conditionMessage(e))
        options(warn = 0)
      }
      list(msg = if (is.character(r)) r else "no warning", live_before = before,
           live_after = shard_diagnostics()$live_objects, fallbacks = shard_diagnostics()$fallbacks)
    }, list(n = n, how = how))
    if (is.null(res)) next
    if (res$fallbacks == 0) {
      message("SKIPPED (", how, "): the object got huge pages after all; no fallback to test")
      next
    }
    expect_match(res$msg, "huge pages were not available", info = how)
    expect_equal(res$live_after, res$live_before, info = paste(how, ": the object must be closed"))
  }
})

test_that("finding 6: pre-created (squatted) shm names of the old scheme do not stop backing = 'shm'", {
  res <- trust_child(function() {
    library(shard)
    st <- readLines("/proc/self/stat")
    fields <- strsplit(sub("^.*\\) ", "", st), " ")[[1]]
    start <- fields[20]                       # field 22 of /proc/<pid>/stat
    uid <- system("id -u", intern = TRUE)
    squat <- file.path("/dev/shm", sprintf("shard-%s-%d-%s-%d", uid, Sys.getpid(), start, 0:1023))
    made <- file.create(squat)
    Sys.chmod(squat[made], "0444")
    on.exit(unlink(squat))
    x <- as.double(1:1000)
    r <- tryCatch({
      s <- share(x, backing = "shm")
      list(ok = identical(fetch(s), x), path = shared_info(s)$path)
    }, error = function(e) list(ok = FALSE, path = conditionMessage(e)))
    r$made <- sum(made)
    r$squatted <- r$path %in% squat
    r
  })
  if (is.null(res)) return(invisible())   # the child failed: already a failure
  expect_equal(res$made, 1024L)
  expect_true(res$ok, info = res$path)
  expect_false(res$squatted)
})

test_that("finding 7: kill -9 of an owner leaves nothing in /dev/shm or the per-user directory", {
  skip_if_no_callr()
  if (identical(Sys.getenv("SHARD_TRACKER"), "0")) skip("SHARD_TRACKER=0: the resource tracker is off")
  p <- callr::r_bg(function() {
    library(shard)
    a <- share(runif(1000), backing = "shm")
    b <- share(runif(1000), backing = "mmap")
    c <- share(runif(5e5), backing = "shm")
    cat(shared_info(a)$path, shared_info(b)$path, shared_info(c)$path, sep = "\n")
    cat("READY\n")
    Sys.sleep(600)
  }, libpath = .libPaths(), env = c(callr::rcmd_safe_env(), R_LIBS = paste(.libPaths(), collapse = ":")),
  stdout = "|", stderr = "|")
  on.exit(p$kill(), add = TRUE)
  out <- character()
  for (i in 1:600) {                      # a generous start-up deadline (60 s)
    p$poll_io(100)
    out <- c(out, p$read_output_lines())
    if ("READY" %in% out || !p$is_alive()) break
  }
  expect_true("READY" %in% out, info = paste(c(out, p$read_error_lines()), collapse = "\n"))
  paths <- setdiff(out, "READY")
  expect_length(paths, 3L)
  expect_true(all(file.exists(paths)))
  pid <- p$get_pid()
  tools::pskill(pid, tools::SIGKILL)
  p$wait(10000)
  prefix <- sprintf("shard-%s-%d-", system("id -u", intern = TRUE), pid)
  left <- function() c(paths[file.exists(paths)],
                       grep(prefix, c(list.files("/dev/shm"), list.files(dirname(paths[2]))), value = TRUE, fixed = TRUE))
  for (i in 1:300) {                      # a generous deadline (30 s); usually at once
    if (length(left()) == 0L) break
    Sys.sleep(0.1)
  }
  expect_equal(left(), character(), info = "the resource tracker unlinks a dead owner's entries")
})

test_that("finding 7 (isolated): a dead owner's entries go at once even when no other process of its user runs", {
  # On a shared machine any later process of the same user sweeps a dead owner's
  # entries; run the owner as another user, with a private SHARD_TMPDIR, so that
  # only the resource tracker can have removed them.
  other <- Sys.getenv("SHARD_TEST_OTHER_USER")
  if (!nzchar(other)) {
    message("SKIPPED: SHARD_TEST_OTHER_USER is not set: cannot isolate the owner from this user's sweeps")
    skip("SHARD_TEST_OTHER_USER is not set")
  }
  if (Sys.info()[["effective_user"]] != "root") skip("needs root to run R as SHARD_TEST_OTHER_USER")
  if (!nzchar(Sys.which("runuser"))) skip("runuser not found")
  d <- tempfile("trust-f7-", tmpdir = "/tmp")
  dir.create(d)
  Sys.chmod(d, "0777", use_umask = FALSE)
  on.exit(unlink(d, recursive = TRUE), add = TRUE)
  script <- file.path(d, "owner.R")
  writeLines(c("suppressMessages(library(shard))",
               "a <- share(runif(1000), backing = 'shm'); b <- share(runif(1000), backing = 'mmap')",
               "c <- share(runif(5e5), backing = 'shm')",
               sprintf("writeLines(c(Sys.getpid(), shared_info(a)$path, shared_info(b)$path, shared_info(c)$path), '%s/p.tmp')", d),
               sprintf("file.rename('%s/p.tmp', '%s/p')", d, d),
               "Sys.sleep(600)"), script)
  Sys.chmod(script, "0644")
  p <- processx::process$new("runuser", c("-u", other, "--", "env", paste0("R_LIBS=", paste(.libPaths(), collapse = ":")),
                                          paste0("SHARD_TMPDIR=", d), file.path(R.home("bin"), "Rscript"), script),
                             stdout = file.path(d, "out"), stderr = "2>&1")
  on.exit(p$kill(), add = TRUE, after = FALSE)
  for (i in 1:600) {                      # a generous start-up deadline (60 s)
    if (file.exists(file.path(d, "p")) || !p$is_alive()) break
    Sys.sleep(0.1)
  }
  if (!file.exists(file.path(d, "p")))
    skip(paste("the other user's R could not share:", paste(readLines(file.path(d, "out")), collapse = " ")))
  info <- readLines(file.path(d, "p"))
  pid <- as.integer(info[1]); paths <- info[-1]
  expect_length(paths, 3L)
  expect_true(all(file.exists(paths)))
  tools::pskill(pid, tools::SIGKILL)
  p$wait(10000)
  for (i in 1:300) {                      # a generous deadline (30 s); usually at once
    if (!any(file.exists(paths))) break
    Sys.sleep(0.1)
  }
  expect_equal(paths[file.exists(paths)], character(), info = "the resource tracker unlinks a dead owner's entries")
  unlink(paths[file.exists(paths)])       # not left behind when the test fails
})
