# Reliability: bad input from R never crashes the session (issue 7).
#
# Every argument of every exported function is given wrong types, NA, NULL,
# negative, huge and hostile values; handles are corrupted (random bytes,
# truncated, bit flips, another user's, a dead owner's, after close()); hostile
# objects (cycles through environments, external pointers, functions, deep
# nesting) are shared. The calls run in a child R process, so a crash is reported
# as a failure naming the last call instead of ending the test run; each must end
# in a value or an R error, and the child's session must keep working afterwards.

rel_child <- function(fun, args = list(), timeout = 300) {
  # SHARD_REL_IN_PROCESS=1 runs the calls in this process (for R -d valgrind,
  # which does not follow child processes).
  if (identical(Sys.getenv("SHARD_REL_IN_PROCESS"), "1"))
    return(do.call(fun, c(list(progress = tempfile("rel-progress-")), args)))
  if (!requireNamespace("callr", quietly = TRUE)) testthat::skip("callr is not installed: cannot run hostile calls in a child R process")
  progress <- tempfile("rel-progress-")
  file.create(progress)
  res <- tryCatch(
    callr::r(fun, c(list(progress = progress), args), libpath = .libPaths(), timeout = timeout,
             env = c(callr::rcmd_safe_env(), R_LIBS = paste(.libPaths(), collapse = ":"))),
    error = function(e) {
      last <- readLines(progress, warn = FALSE)
      structure(list(error = conditionMessage(e), last = utils::tail(last, 1)), class = "rel_crash")
    })
  unlink(progress)
  res
}

expect_no_crash <- function(res) {
  if (inherits(res, "rel_crash")) {
    testthat::fail(sprintf("the child R process died (crash, hang or abort) during: %s\n%s", res$last, res$error))
  } else {
    testthat::succeed()
  }
  invisible(res)
}

# The matrix: every exported function, every formal argument, every hostile value.
rel_matrix <- function(progress) {
  suppressMessages(library(shard))
  note <- function(...) cat(..., "\n", file = progress, append = TRUE, sep = "")
  xp <- new("externalptr")
  hostile <- list(
    "NULL" = NULL, "NA" = NA, "NA_integer_" = NA_integer_, "NA_real_" = NA_real_,
    "NA_character_" = NA_character_, "-1" = -1, "-1e18" = -1e18, "1e18" = 1e18,
    "2^31-1" = .Machine$integer.max, "2^53+1" = 2^53 + 1, "Inf" = Inf, "-Inf" = -Inf, "NaN" = NaN,
    "0" = 0, "1.5" = 1.5, "\"\"" = "", "\"x\"" = "x", "c(1,2)" = c(1, 2), "character(0)" = character(0),
    "list()" = list(), "list(1)" = list(1), "TRUE" = TRUE, "c(TRUE,FALSE)" = c(TRUE, FALSE),
    "raw(0)" = raw(0), "as.raw(1:5)" = as.raw(1:5), "1i" = 1i, "factor" = factor("a"),
    "env" = new.env(), "function" = function() 1, "externalptr" = xp, "symbol" = quote(a),
    "formula" = y ~ x, "\"../../etc/passwd\"" = "../../etc/passwd", "\"a\\nb\"" = "a\nb",
    "long string" = strrep("z", 5000), "UTF-8 string" = "\u00e9\u4e2d",
    "fake shard_shared" = structure(list(handle = as.raw(seq_len(shard:::handle_len()) %% 256L)), class = "shard_shared"),
    "fake shard_segment" = structure(list(handle = as.raw(seq_len(shard:::handle_len()) %% 256L)), class = "shard_segment"),
    "data.frame" = data.frame(a = 1)
  )
  s <- share(as.double(1:100))
  seg <- if (exists("segment_create")) tryCatch(segment_create(4096), error = function(e) NULL)
  # A valid call of each known function; the argument under test replaces its entry.
  base <- list(
    share = list(x = 1:10), fetch = list(x = s), is_shared = list(x = s), materialize = list(x = s),
    shared_info = list(x = s), shard_diagnostics = list(), share_open = list(name = "rel-no-such-name"),
    shard_sweep = list(), shard_seal = list(),
    segment_create = list(size = 1024), segment_open = list(x = seg), segment_write = list(x = seg, data = as.raw(1:4)),
    segment_read = list(x = seg, offset = 0, length = 4), segment_info = list(x = seg),
    segment_protect = list(x = seg), segment_close = list(x = seg),
    pool_create = list(n = 1), pool_lapply = list(X = 1:2, FUN = identity), pool_stop = list(),
    pool_sapply = list(X = 1:2, FUN = identity), pool_status = list(),
    shard_share_hook = list(x = 1)
  )
  # Functions that would end the objects the rest of the matrix uses, or stop the
  # child: run them last on their own copies.
  exports <- sort(getNamespaceExports("shard"))
  out <- list()
  for (f in exports) {
    fn <- get(f, envir = asNamespace("shard"))
    if (!is.function(fn)) next
    fmls <- setdiff(names(formals(fn)), "...")
    known <- f %in% names(base)
    for (a in fmls) {
      for (lab in names(hostile)) {
        args <- if (known) base[[f]] else list()
        if (f %in% c("segment_protect", "segment_close", "segment_write") && !is.null(seg)) {
          args$x <- tryCatch(segment_create(1024), error = function(e) NULL)
          if (f == "segment_write") args$data <- as.raw(1:4)
        }
        args[a] <- list(hostile[[lab]])
        call_txt <- sprintf("%s(%s = %s)", f, a, lab)
        note(call_txt)
        r <- tryCatch({ withCallingHandlers(do.call(fn, args), warning = function(w) invokeRestart("muffleWarning")); NULL },
                      error = function(e) conditionMessage(e))
        out[[length(out) + 1L]] <- data.frame(fn = f, arg = a, value = lab, known = known,
                                              error = if (is.null(r)) NA_character_ else r,
                                              stringsAsFactors = FALSE)
      }
    }
    # And with no arguments at all.
    note(sprintf("%s()", f))
    r <- tryCatch({ fn(); NULL }, error = function(e) conditionMessage(e))
  }
  note("session still works")
  y <- runif(1000)
  ok <- identical(fetch(share(y)), y)
  list(results = do.call(rbind, out), still_works = ok, exports = exports,
       unknown = setdiff(exports, names(base)))
}

rel_cache <- new.env()
rel_matrix_result <- function() {
  if (is.null(rel_cache$matrix)) rel_cache$matrix <- rel_child(rel_matrix)
  rel_cache$matrix
}

test_that("every argument of every exported function survives hostile values (no crash)", {
  res <- expect_no_crash(rel_matrix_result())
  if (inherits(res, "rel_crash")) return()
  expect_true(res$still_works)
  r <- res$results
  expect_gt(nrow(r), 100)
  if (length(res$unknown))
    message("test-reliability-input: exported functions without a valid baseline call here (hostile values tried with no other arguments): ",
            paste(res$unknown, collapse = ", "))
})

test_that("errors for option-like arguments name the argument", {
  res <- rel_matrix_result()
  if (inherits(res, "rel_crash")) testthat::skip("the matrix crashed: see the previous test")
  r <- res$results
  # Option-like arguments (not the object operated on): wrong type/NA/NULL/negative
  # values that raise an error must say which argument was wrong.
  opt <- r[r$known & !is.na(r$error) & !(r$arg %in% c("x", "con", "X", "FUN", "data")), ]
  named <- mapply(function(a, e) grepl(a, e, fixed = TRUE), opt$arg, opt$error)
  miss <- opt[!named, ]
  expect(nrow(miss) == 0L, paste0(
    "errors that do not name their argument:\n",
    paste(sprintf("  %s(%s = %s): %s", miss$fn, miss$arg, miss$value, miss$error), collapse = "\n")))
})

# --- corrupted handles --------------------------------------------------------------

rel_corrupt <- function(progress) {
  suppressMessages(library(shard))
  note <- function(...) cat(..., "\n", file = progress, append = TRUE, sep = "")
  set.seed(7)
  s <- share(as.double(1:1000))
  h <- s$handle
  try_fetch <- function(handle, what) {
    note(what)
    x <- s
    x$handle <- handle
    tryCatch({ v <- fetch(x); if (is.numeric(v)) sum(v); "accepted" }, error = function(e) paste("error:", conditionMessage(e)))
  }
  out <- list()
  add <- function(what, r) out[[length(out) + 1L]] <<- data.frame(what = what, result = r, stringsAsFactors = FALSE)
  # every single-bit flip of the handle (shard:::handle_len() bytes)
  for (bit in 0:(length(h) * 8L - 1L)) {
    b <- h
    i <- bit %/% 8L + 1L
    b[i] <- as.raw(bitwXor(as.integer(b[i]), bitwShiftL(1L, bit %% 8L)))
    add(sprintf("bit flip %d", bit), try_fetch(b, sprintf("bit flip %d", bit)))
  }
  # every truncation, and extensions
  for (n in c(0:(length(h) - 1L))) add(sprintf("truncated to %d", n), try_fetch(h[seq_len(n)], sprintf("truncated %d", n)))
  add("extended by 1", try_fetch(c(h, as.raw(0)), "extended"))
  add("doubled", try_fetch(c(h, h), "doubled"))
  # random bytes of many lengths
  for (k in 1:300) {
    n <- sample(c(shard:::handle_len(), sample.int(300L, 1L)), 1L)
    add(sprintf("random %d bytes", n), try_fetch(as.raw(sample.int(256L, n, TRUE) - 1L), sprintf("random %d", k)))
  }
  # wrong R types in the handle slot
  for (v in list(NULL, NA, seq_len(shard:::handle_len()), as.character(h), list(h), as.double(h), TRUE)) {
    add(paste("handle of type", typeof(v)), try_fetch(v, paste("type", typeof(v))))
  }
  # other functions that take the object: shared_info, is_shared, materialize, close
  bad <- s
  bad$handle <- as.raw(sample.int(256L, shard:::handle_len(), TRUE) - 1L)
  for (f in c("shared_info", "is_shared", "materialize", "close")) {
    note(f)
    add(paste(f, "of a corrupted handle"),
        tryCatch({ get(f)(bad); "returned" }, error = function(e) paste("error:", conditionMessage(e))))
  }
  note("after close")
  close(s)
  add("fetch after close", try_fetch(h, "after close"))
  add("close after close", tryCatch({ close(s); "returned" }, error = function(e) paste("error:", conditionMessage(e))))
  add("shared_info after close", tryCatch({ shared_info(s); "returned" }, error = function(e) paste("error:", conditionMessage(e))))
  y <- runif(10)
  list(results = do.call(rbind, out), still_works = identical(fetch(share(y)), y))
}

test_that("corrupted handles (bit flips, truncation, random bytes, wrong types, after close) give R errors", {
  res <- expect_no_crash(rel_child(rel_corrupt))
  if (inherits(res, "rel_crash")) return()
  expect_true(res$still_works)
  r <- res$results
  fetches <- r[grepl("^(bit flip|truncated|extended|doubled|random|handle of type)", r$what), ]
  accepted <- fetches[!startsWith(fetches$result, "error:"), ]
  expect(nrow(accepted) == 0L, paste0("corrupted handles accepted:\n",
                                      paste(utils::head(accepted$what, 20), collapse = "\n")))
  expect_match(r$result[r$what == "fetch after close"], "^error: .*closed")
})

test_that("a handle from a dead owner gives a clear error", {
  skip_if_not_installed("callr")
  # Child shares and exits; its handle outlives it.
  s <- callr::r(function() { suppressMessages(library(shard)); share(as.double(1:5e6)) },
                libpath = .libPaths(), env = c(callr::rcmd_safe_env(), R_LIBS = paste(.libPaths(), collapse = ":")))
  expect_s3_class(s, "shard_shared")
  expect_error(fetch(s), "exited|owner")
  info <- shared_info(s)
  expect_false(isTRUE(info$attached))
  y <- 1:10
  expect_identical(fetch(share(y)), y)
})

test_that("another user's handle is refused in both directions", {
  other <- Sys.getenv("SHARD_TEST_OTHER_USER")
  if (!nzchar(other)) testthat::skip("SHARD_TEST_OTHER_USER is not set: cannot test another user's handles")
  if (Sys.info()[["effective_user"]] != "root") testthat::skip("needs root to run R as SHARD_TEST_OTHER_USER")
  if (!nzchar(Sys.which("runuser"))) testthat::skip("runuser not found")
  libs <- paste(.libPaths(), collapse = ":")
  d <- tempfile("rel-other-", tmpdir = "/tmp")  # R's own tempdir is 0700
  dir.create(d, mode = "0777")
  Sys.chmod(d, "0777", use_umask = FALSE)
  on.exit(unlink(d, recursive = TRUE), add = TRUE)
  rscript <- file.path(R.home("bin"), "Rscript")
  # 1. The other user shares and waits; we (root) try to attach: refused by the uid check.
  script <- file.path(d, "share.R")
  writeLines(c("suppressMessages(library(shard))",
               sprintf("s <- share(as.double(1:1000)); saveRDS(s, '%s/h.rds.tmp'); file.rename('%s/h.rds.tmp', '%s/h.rds')", d, d, d),
               sprintf("while (!file.exists('%s/done')) Sys.sleep(0.05)", d)), script)
  Sys.chmod(script, "0644")
  p <- processx::process$new("runuser", c("-u", other, "--", "env", paste0("R_LIBS=", libs),
                                          paste0("SHARD_TMPDIR=", d), rscript, script),
                             stdout = file.path(d, "out"), stderr = "2>&1")
  on.exit({ file.create(file.path(d, "done")); p$kill() }, add = TRUE, after = FALSE)
  t0 <- Sys.time()
  while (!file.exists(file.path(d, "h.rds")) && p$is_alive() && Sys.time() - t0 < 30) Sys.sleep(0.05)
  if (!file.exists(file.path(d, "h.rds")))
    testthat::skip(paste("the other user's R could not share:", paste(readLines(file.path(d, "out")), collapse = " ")))
  s <- readRDS(file.path(d, "h.rds"))
  expect_error(fetch(s), "permission|another user|uid")
  # 2. We share; the other user tries to attach: refused by the kernel (EACCES).
  mine <- share(as.double(1:1000))
  saveRDS(mine, file.path(d, "mine.rds"))
  Sys.chmod(file.path(d, "mine.rds"), "0644")
  out <- suppressWarnings(system2("runuser", c("-u", other, "--", "env", paste0("R_LIBS=", libs), paste0("SHARD_TMPDIR=", d),
                                               rscript, "-e", shQuote(sprintf(
    "suppressMessages(library(shard)); r <- tryCatch(fetch(readRDS('%s/mine.rds')), error = function(e) e); cat(if (inherits(r, 'error')) paste('ERR', conditionMessage(r)) else 'ACCEPTED')", d))),
    stdout = TRUE, stderr = TRUE))
  expect_match(paste(out, collapse = " "), "ERR.*(permission|another user|denied)")
  close(mine)
})

# --- hostile objects ------------------------------------------------------------------

rel_hostile_objects <- function(progress) {
  suppressMessages(library(shard))
  note <- function(...) cat(..., "\n", file = progress, append = TRUE, sep = "")
  e1 <- new.env(); e1$self <- e1                               # env cycle
  e2 <- new.env(); e3 <- new.env(); e2$next_ <- e3; e3$next_ <- e2; e2$data <- runif(10)
  deep <- list(); for (i in 1:5000) deep <- list(deep)          # deep nesting
  f_env <- new.env(); f_env$f <- function() 1                   # a function inside an env
  l_xp <- list(a = 1, p = new("externalptr"))
  cases <- list(
    "env with itself" = e1, "env cycle of two" = e2, "list holding an env cycle" = list(a = e2, b = 1:3),
    "deep list (5000)" = deep, "env holding a function" = f_env, "list with an external pointer" = l_xp,
    "closure" = function(x) x, "builtin" = sum, "external pointer" = new("externalptr"),
    "formula" = y ~ x + z, "call" = quote(f(x, y)), "symbol" = quote(a), "S4 object" = methods::new("numeric"),
    "data.frame with list column" = data.frame(a = 1:2, b = I(list(1, "a"))),
    "NULL" = NULL, "zero-length" = double(0), "ALTREP compact seq" = 1:1e7,
    "string with NUL-like bytes" = c("a\001b", NA, ""), "huge attribute" = structure(1:3, big = runif(1e5)),
    "nested attributes cycle-free" = structure(list(1), class = c("a", "b"), extra = list(e1)),
    "env-based R5-like object" = local({ o <- new.env(); o$get <- function() o; class(o) <- "rc"; o })
  )
  out <- list()
  for (nm in names(cases)) {
    note(nm)
    x <- cases[[nm]]
    r <- tryCatch({
      s <- share(x)
      v <- fetch(s)
      close(s)
      "shared"
    }, error = function(e) paste("error:", conditionMessage(e)))
    out[[length(out) + 1L]] <- data.frame(what = nm, result = r, stringsAsFactors = FALSE)
    if (nm != "deep list (5000)") {
      note(paste(nm, "deep = TRUE"))
      r2 <- tryCatch({ s <- share(x, deep = TRUE); v <- fetch(s); close(s); "shared" },
                     error = function(e) paste("error:", conditionMessage(e)))
      out[[length(out) + 1L]] <- data.frame(what = paste(nm, "(deep)"), result = r2, stringsAsFactors = FALSE)
    }
  }
  y <- runif(10)
  list(results = do.call(rbind, out), still_works = identical(fetch(share(y)), y))
}

test_that("hostile objects (cycles, environments, pointers, functions, deep nesting) give a value or an R error", {
  res <- expect_no_crash(rel_child(rel_hostile_objects))
  if (inherits(res, "rel_crash")) return()
  expect_true(res$still_works)
  r <- res$results
  code <- r[r$what %in% c("closure", "builtin", "external pointer", "list with an external pointer"), ]
  expect_true(all(startsWith(code$result, "error:")), info = paste(code$what, code$result, collapse = "; "))
})
