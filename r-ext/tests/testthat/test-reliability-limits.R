# Reliability: resource limits (issue 7). Each limit gives a clear R error or a
# recorded fallback, and the session keeps working. Every case runs in a child R
# process started under the limit (prlimit, a private mount namespace with a small
# tmpfs, a lowered sysctl), and prints what happened; the parent checks it.
# Cases that need root or a kernel feature skip, saying why.

rel_rscript <- function(code, prefix = character(), env = character(), timeout = 300) {
  f <- tempfile("rel-limit-", fileext = ".R")
  writeLines(c("suppressMessages(library(shard))", code), f)
  on.exit(unlink(f))
  rscript <- file.path(R.home("bin"), "Rscript")
  libs <- paste(.libPaths(), collapse = ":")
  cmd <- c(prefix, "env", paste0("R_LIBS=", libs), env, rscript, f)
  out <- suppressWarnings(system2(cmd[1], cmd[-1], stdout = TRUE, stderr = TRUE, timeout = timeout))
  list(out = paste(out, collapse = "\n"), status = attr(out, "status") %||% 0L)
}
`%||%` <- function(a, b) if (is.null(a)) b else a

is_root <- function() identical(Sys.info()[["effective_user"]], "root")
skip_unless_root <- function(what) if (!is_root()) testthat::skip(paste("needs root:", what))
has_cmd <- function(x) nzchar(Sys.which(x))

# Lines "KEY=value" printed by the child.
kv <- function(res, key) {
  m <- regmatches(res$out, regexpr(paste0(key, "=[^\n]*"), res$out))
  if (length(m)) sub(paste0("^", key, "="), "", m) else NA_character_
}

test_that("RLIMIT_NOFILE 64: 100 000 small objects share in few fds; running out of fds is a clear error", {
  if (!has_cmd("prlimit")) testthat::skip("prlimit (util-linux) not found")
  res <- rel_rscript(c(
    "`%||%` <- function(a, b) if (is.null(a)) b else a",
    # R refuses to start below ~170 fds (R_MAX_NUM_DLLS >= 100 needs 0.6 * limit),
    # so the limit is lowered once R runs.
    "invisible(system(sprintf('prlimit --pid %d --nofile=64:64', Sys.getpid())))",
    "cat('LIMIT=', system(sprintf('prlimit --pid %d --nofile --noheadings -o SOFT', Sys.getpid()), intern = TRUE), '\\n', sep = '')",
    "n <- 100000L",
    "hs <- vector('list', n)",
    "for (i in seq_len(n)) hs[[i]] <- share(c(i, i + 0.5))",
    "cat('SHARED=', n, '\\n', sep = '')",
    "ok <- all(vapply(sample(n, 2000), function(i) identical(fetch(hs[[i]]), c(i, i + 0.5)), TRUE))",
    "cat('FETCH_OK=', ok, '\\n', sep = '')",
    "cat('FDS=', length(list.files('/proc/self/fd')), '\\n', sep = '')",
    "cat('MAPS=', sum(grepl('memfd:shard', readLines('/proc/self/maps'))), '\\n', sep = '')",
    # Now exhaust the fd limit with large objects (a region each): a clear error.
    "big <- list(); err <- NULL",
    "for (k in 1:200) { r <- tryCatch(share(as.double(seq_len(2.5e6))), error = function(e) e)",
    "  if (inherits(r, 'error')) { err <- conditionMessage(r); break }; big[[k]] <- r }",
    "cat('BIG_SHARED=', length(big), '\\n', sep = '')",
    "cat('ERR=', gsub('\\n', ' ', err %||% 'none'), '\\n', sep = '')",
    # A failed share must not leave a live object behind without an R handle.
    "cat('LIVE=', shard_diagnostics()$live_objects, '\\n', sep = '')",
    "cat('EXPECTED_LIVE=', n + length(big), '\\n', sep = '')",
    "for (b in big) close(b)",
    "y <- runif(100); cat('STILL_WORKS=', identical(fetch(share(y)), y), '\\n', sep = '')"))
  expect_equal(res$status, 0L, info = res$out)
  expect_equal(trimws(kv(res, "LIMIT")), "64")
  expect_equal(kv(res, "SHARED"), "100000")
  expect_equal(kv(res, "FETCH_OK"), "TRUE")
  expect_lt(as.integer(kv(res, "FDS")), 64L)
  expect_lt(as.integer(kv(res, "MAPS")), 64L, label = "shard mappings for 100 000 small objects")
  expect_lt(as.integer(kv(res, "BIG_SHARED")), 200L, label = "large shares before the fd limit")
  expect_match(kv(res, "ERR"), "open files|file descriptor|fd limit|RLIMIT_NOFILE|EMFILE", ignore.case = TRUE)
  expect_equal(kv(res, "LIVE"), kv(res, "EXPECTED_LIVE"), label = "live objects after the failed share")
  expect_equal(kv(res, "STILL_WORKS"), "TRUE")
})

test_that("ENOMEM (RLIMIT_AS): a share that cannot be mapped is a clear error and the session keeps working", {
  if (!has_cmd("prlimit")) testthat::skip("prlimit (util-linux) not found")
  # Address space: enough for R and a 400 MB vector, not for a second 400 MB mapping.
  res <- rel_rscript(c(
    "x <- runif(5e7)",
    "r <- tryCatch(share(x), error = function(e) e)",
    "cat('ERR=', if (inherits(r, 'error')) gsub('\\n', ' ', conditionMessage(r)) else 'none', '\\n', sep = '')",
    "rm(x); invisible(gc())",
    "y <- runif(1e5); cat('STILL_WORKS=', identical(fetch(share(y)), y), '\\n', sep = '')",
    "d <- shard_diagnostics(); cat('LIVE=', d$live_objects, '\\n', sep = '')"),
    prefix = c("prlimit", paste0("--as=", 1200 * 2^20)))
  expect_equal(res$status, 0L, info = res$out)
  expect_match(kv(res, "ERR"), "memory|ENOMEM|Cannot allocate", ignore.case = TRUE)
  expect_equal(kv(res, "STILL_WORKS"), "TRUE")
  expect_equal(kv(res, "LIVE"), "1")
})

rel_unshare_prefix <- function(setup) {
  c("unshare", "--mount", "--propagation", "private", "sh", "-c", shQuote(paste(setup, '&& exec "$@"')), "sh")
}

test_that("a 64 MiB /dev/shm (as in containers): shm share larger than it is a clear error, nothing left; memfd is not limited", {
  skip_unless_root("mounts a 64 MiB tmpfs over /dev/shm in a private mount namespace")
  if (!has_cmd("unshare")) testthat::skip("unshare (util-linux) not found")
  res <- rel_rscript(c(
    "before <- list.files('/dev/shm')",
    "r <- tryCatch(share(runif(1.2e7), backing = 'shm'), error = function(e) e)",   # 96 MB
    "cat('ERR=', if (inherits(r, 'error')) gsub('\\n', ' ', conditionMessage(r)) else 'none', '\\n', sep = '')",
    "cat('LEFT=', length(setdiff(list.files('/dev/shm'), before)), '\\n', sep = '')",
    "s <- share(runif(1e6), backing = 'shm'); v <- fetch(s); cat('SMALL_SHM_OK=', length(v) == 1e6, '\\n', sep = '')",
    "close(s)   # unlinked at close(), while v still maps it",
    "x <- runif(2.5e7); m <- share(x)",   # 200 MB through memfd: not bounded by /dev/shm
    "cat('MEMFD_OK=', identical(fetch(m), x), '\\n', sep = '')",
    "close(m)",
    "cat('LEFT_END=', length(setdiff(list.files('/dev/shm'), before)), '\\n', sep = '')",
    "cat('DF=', system('df -m /dev/shm | tail -1', intern = TRUE), '\\n', sep = '')"),
    prefix = rel_unshare_prefix("mount -t tmpfs -o size=64m tmpfs /dev/shm"))
  if (grepl("unshare failed|Operation not permitted", res$out))
    testthat::skip(paste("cannot make a mount namespace here:", res$out))
  expect_equal(res$status, 0L, info = res$out)
  expect_match(kv(res, "ERR"), "space|ENOSPC|full|No space", ignore.case = TRUE)
  expect_equal(kv(res, "LEFT"), "0")
  expect_equal(kv(res, "SMALL_SHM_OK"), "TRUE")
  expect_equal(kv(res, "MEMFD_OK"), "TRUE")
  expect_equal(kv(res, "LEFT_END"), "0")
})

test_that("a 64 MiB tmpfs as SHARD_TMPDIR: mmap share larger than it is a clear error, nothing left behind", {
  skip_unless_root("mounts a 64 MiB tmpfs in a private mount namespace")
  if (!has_cmd("unshare")) testthat::skip("unshare (util-linux) not found")
  dir <- tempfile("rel-tmpfs-", tmpdir = "/tmp")
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE))
  res <- rel_rscript(c(
    sprintf("d <- '%s'", dir),
    "ud <- file.path(d, paste0('shard-', system('id -u', intern = TRUE)))",
    "r <- tryCatch(share(runif(1.2e7), backing = 'mmap'), error = function(e) e)",
    "cat('ERR=', if (inherits(r, 'error')) gsub('\\n', ' ', conditionMessage(r)) else 'none', '\\n', sep = '')",
    "cat('LEFT=', length(list.files(ud, pattern = '^shard-')), '\\n', sep = '')",
    "s <- share(runif(1e6), backing = 'mmap'); cat('SMALL_OK=', length(fetch(s)) == 1e6, '\\n', sep = '')",
    "close(s)   # the file is unlinked at close(), even while a fetched vector maps it",
    "cat('LEFT_END=', length(list.files(ud, pattern = '^shard-')), '\\n', sep = '')"),
    prefix = rel_unshare_prefix(sprintf("mount -t tmpfs -o size=64m tmpfs %s", dir)),
    env = paste0("SHARD_TMPDIR=", dir))
  if (grepl("unshare failed|Operation not permitted", res$out))
    testthat::skip(paste("cannot make a mount namespace here:", res$out))
  expect_equal(res$status, 0L, info = res$out)
  expect_match(kv(res, "ERR"), "space|ENOSPC|full|No space", ignore.case = TRUE)
  expect_equal(kv(res, "LEFT"), "0")
  expect_equal(kv(res, "SMALL_OK"), "TRUE")
  expect_equal(kv(res, "LEFT_END"), "0")
})

test_that("huge-page pool exhausted mid-run: later large objects fall back, recorded in shard_diagnostics()", {
  hp <- "/proc/sys/vm/nr_hugepages"
  free_f <- "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"
  if (!file.exists(free_f)) testthat::skip("no 2 MiB huge page support in this kernel")
  old <- as.integer(readLines(hp))
  free <- as.integer(readLines(free_f))
  # Objects take 20 pages each: at least two must fit before the pool runs out.
  if (free < 40L) {
    skip_unless_root("reserves 64 huge pages for the test (nr_hugepages is restored exactly)")
    writeLines(as.character(old + 64L), hp)
    on.exit(writeLines(as.character(old), hp), add = TRUE)
    free <- as.integer(readLines(free_f))
    if (free < 40L) testthat::skip(sprintf("could not reserve huge pages (free %d)", free))
  }
  if (free > 400L) testthat::skip(sprintf("%d free huge pages: exhausting them would take %d MB", free, free * 2L))
  # 40 MB objects take 20 huge pages each: the pool runs out after free/20 of them.
  n <- free %/% 20L + 3L
  res <- rel_rscript(c(
    sprintf("n <- %d", n),
    "pages <- character(n); ok <- logical(n); xs <- list(); ss <- list()",
    "f0 <- shard_diagnostics()$fallbacks",
    "warned <- 0L",
    "for (i in seq_len(n)) {",
    "  x <- as.double(seq_len(5e6)) + i",
    "  s <- withCallingHandlers(share(x), warning = function(w) { warned <<- warned + 1L; invokeRestart('muffleWarning') })",
    "  ss[[i]] <- s; pages[i] <- format(shared_info(s)$page_size); ok[i] <- identical(fetch(s), x)",
    "}",
    "cat('PAGES=', paste(pages, collapse = ','), '\\n', sep = '')",
    "cat('ALL_OK=', all(ok), '\\n', sep = '')",
    "cat('FALLBACKS=', shard_diagnostics()$fallbacks - f0, '\\n', sep = '')",
    "cat('WARNED=', warned, '\\n', sep = '')",
    "for (s in ss) close(s)",
    "y <- runif(10); cat('STILL_WORKS=', identical(fetch(share(y)), y), '\\n', sep = '')"))
  expect_equal(res$status, 0L, info = res$out)
  pages <- as.numeric(strsplit(kv(res, "PAGES"), ",")[[1]])
  expect_equal(kv(res, "ALL_OK"), "TRUE")
  expect_true(any(pages >= 2^21), info = paste("page sizes:", kv(res, "PAGES")))
  expect_true(any(pages < 2^21), info = paste("page sizes:", kv(res, "PAGES")))
  expect_gt(as.integer(kv(res, "FALLBACKS")), 0L)
  expect_equal(kv(res, "WARNED"), "1", info = "one warning per session for huge-page fallbacks")
  expect_equal(kv(res, "STILL_WORKS"), "TRUE")
})

test_that("vm.max_map_count pressure: running out of mappings is a clear error and the session keeps working", {
  if (!identical(Sys.getenv("SHARD_TEST_SYSCTL"), "1"))
    testthat::skip("SHARD_TEST_SYSCTL is not 1: lowering vm.max_map_count affects every process on the machine (reliability/limits.sh sets it)")
  skip_unless_root("lowers vm.max_map_count for a few seconds (restored exactly)")
  mm <- "/proc/sys/vm/max_map_count"
  old <- readLines(mm)
  on.exit(writeLines(old, mm), add = TRUE)
  # The child lowers the limit itself once started (its own baseline + 300 maps),
  # so the window in which the machine has a low limit is a few seconds.
  res <- rel_rscript(c(
    "base <- length(readLines('/proc/self/maps'))",
    sprintf("old <- readLines('%s')", mm),
    sprintf("writeLines(as.character(base + 300L), '%s')", mm),
    "ss <- list(); err <- NULL",
    "for (k in 1:1000) { r <- tryCatch(share(as.double(seq_len(2.2e6))), error = function(e) e)",
    "  if (inherits(r, 'error')) { err <- conditionMessage(r); break }; ss[[k]] <- r }",
    sprintf("writeLines(old, '%s')", mm),
    "cat('SHARED=', length(ss), '\\n', sep = '')",
    "cat('ERR=', if (is.null(err)) 'none' else gsub('\\n', ' ', err), '\\n', sep = '')",
    "for (s in ss) close(s)",
    "y <- runif(10); cat('STILL_WORKS=', identical(fetch(share(y)), y), '\\n', sep = '')"))
  writeLines(old, mm)
  expect_equal(res$status, 0L, info = res$out)
  expect_lt(as.integer(kv(res, "SHARED")), 1000L)
  expect_match(kv(res, "ERR"), "memory|ENOMEM|map", ignore.case = TRUE)
  expect_equal(kv(res, "STILL_WORKS"), "TRUE")
})
