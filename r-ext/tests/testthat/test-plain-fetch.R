# fetch(x, plain =) and the plain-vector policy (r-ext/src/mapped.c, R/share.R,
# R/pool_worker.R): NULL = the policy (ALTREP in the master, numeric vectors of
# 64 KiB or more plain in pool workers), TRUE = an ordinary R object (plain
# vectors over the shared pages, copies below 4096 bytes or where no mapping
# can be made, strings materialized), FALSE = ALTREP everywhere.

is_plain <- function(x) .Call(shard:::C_is_plain_vector, x)
plain_mode <- function() .Call(shard:::C_plain_mode, NULL)
# The ALTREP class of an atomic vector ("" for an ordinary one), from R's inspect.
altrep_class <- function(x) {
  l <- utils::capture.output(.Internal(inspect(x, 0L)))[1]
  m <- regmatches(l, regexpr("\\]\\s+[a-z_]+", l))
  if (length(m)) sub("^\\]\\s+", "", m) else ""
}
# Every ALTREP vector in x (lists and attributes walked), by path.
altrep_in <- function(x, path = "x") {
  out <- character()
  if (is.atomic(x) && !is.null(x) && nzchar(altrep_class(x))) out <- paste0(path, " (", altrep_class(x), ")")
  if (is.list(x)) for (i in seq_along(x)) out <- c(out, altrep_in(x[[i]], paste0(path, "[[", i, "]]")))
  for (a in setdiff(names(attributes(x)), "row.names"))
    out <- c(out, altrep_in(attr(x, a, exact = TRUE), paste0(path, "@", a)))
  out
}
is_altrep_shard <- function(x) startsWith(altrep_class(x), "shard")

values <- function() {
  s <- c("a", NA, "", "\u00e9t\u00e9 UTF-8 \u4e2d", iconv("caf\u00e9", "UTF-8", "latin1"), "plain", "k0000042")
  Encoding(s[5]) <- "latin1"
  b <- "\xff\xfe bytes"
  Encoding(b) <- "bytes"
  s <- c(s, b)
  n <- 2e4
  list(
    double = c(runif(n), NA, NaN, Inf, -Inf, -0),
    integer = c(sample.int(1e6, n), NA),
    logical = c(rep(c(TRUE, FALSE), n / 2), NA),
    raw = as.raw(sample(0:255, 1e5, TRUE)),
    complex = complex(real = runif(5000), imaginary = c(NA, runif(4999))),
    small_double = c(a = 1, b = NA, c = 3),
    small_int = 1:10 + 0L,
    empty_double = double(0), empty_int = integer(0), empty_chr = character(0), empty_lgl = logical(0),
    named = setNames(runif(1e4), paste0("n", 1:1e4)),
    matrix = matrix(runif(2e4), 200, dimnames = list(paste0("r", 1:200), paste0("c", 1:100))),
    array = array(sample.int(100L, 3e4, TRUE), c(10, 30, 100)),
    factor = factor(sample(c("lo", "mid", NA, "hi"), 2e4, TRUE), levels = c("lo", "mid", "hi")),
    date = as.Date("2020-01-01") + c(0:9999, NA),
    posixct = as.POSIXct("2024-03-01 12:00:00", tz = "UTC") + c(seq(0, 1e6, length.out = 1e4), NA),
    strings = c(rep(s, 2000), sprintf("k%07d", 1:5e3)),
    strings_small = s,
    df = data.frame(v = runif(2e4), i = sample.int(5L, 2e4, TRUE), s = sprintf("k%05d", 1:2e4),
                    f = factor(sample(letters[1:4], 2e4, TRUE)), d = as.Date("2021-05-05") + 0:19999,
                    t = as.POSIXct(1.7e9 + 0:19999, origin = "1970-01-01", tz = "UTC"),
                    e = c(s, rep(NA_character_, 2e4 - length(s))), stringsAsFactors = FALSE),
    list = list(a = runif(1e4), b = c("x", NA), c = list(d = 1:3))
  )
}

test_that("every mode returns exactly the shared value (NA, names, dims, classes, encodings, empty)", {
  old <- options(shard.plain_min_bytes = NULL)
  on.exit(options(old))
  for (nm in names(values())) {
    x <- values()[[nm]]
    s <- share(x)
    for (m in list(NULL, TRUE, FALSE)) {
      y <- fetch(s, plain = m)
      lab <- paste0(nm, ", plain = ", format(m))
      expect_identical(y, x, label = lab)
      if (is.character(x)) expect_identical(Encoding(y), Encoding(x), label = lab)
      if (isTRUE(m)) expect_identical(altrep_in(y), character(), label = lab)
    }
    close(s)
  }
  expect_identical(plain_mode(), -1L)
})

test_that("plain = TRUE: large numeric vectors are mapped (no copy), small ones copied, strings materialized", {
  s_big <- share(runif(1e5))
  s_small <- share(runif(100))
  s_chr <- share(sprintf("k%06d", 1:2e4))
  on.exit({ close(s_big); close(s_small); close(s_chr) })
  d0 <- shard_diagnostics()
  y <- fetch(s_big, plain = TRUE)
  expect_true(is_plain(y))
  expect_true(is_shared(y))
  expect_true(shared_info(y)$plain)
  z <- fetch(s_small, plain = TRUE)
  expect_false(is_plain(z))
  expect_identical(altrep_class(z), "")
  expect_false(is_shared(z))     # a copy: an ordinary vector of its own
  d1 <- shard_diagnostics()
  expect_identical(d1$plain_made - d0$plain_made, 1)
  expect_identical(d1$plain_copies - d0$plain_copies, 1)
  w <- fetch(s_chr, plain = TRUE)
  expect_identical(altrep_class(w), "")
  expect_identical(w, sprintf("k%06d", 1:2e4))
  expect_false(is_shared(w))
  # the string cache of the ALTREP path is not used (nor filled) by this
  expect_identical(shard_diagnostics()$plain_copies - d1$plain_copies, 0)
})

test_that("plain = FALSE: ALTREP even where the option makes vectors plain; NULL follows the option", {
  old <- options(shard.plain_min_bytes = 65536)
  on.exit(options(old))
  s <- share(runif(1e5))
  on.exit(close(s), add = TRUE)
  expect_true(is_altrep_shard(fetch(s, plain = FALSE)))
  expect_true(is_plain(fetch(s, plain = NULL)))
  expect_true(is_plain(fetch(s)))
  options(shard.plain_min_bytes = NULL)
  expect_true(is_altrep_shard(fetch(s)))              # the one-argument fast path: the master's policy
  expect_true(is_altrep_shard(fetch(s, plain = NULL)))
  expect_true(is_plain(fetch(s, plain = TRUE)))
  expect_identical(plain_mode(), -1L)
})

test_that("bad plain= values are a clear error, and leave the mode alone", {
  s <- share(runif(10))
  on.exit(close(s))
  for (bad in list("yes", NA, c(TRUE, FALSE), 1, list(TRUE), logical(0)))
    expect_error(fetch(s, plain = bad), "fetch\\(plain =\\) must be NULL \\(the default policy\\), TRUE .* or FALSE")
  d <- share(list(a = runif(10)), deep = TRUE)
  on.exit(close(d), add = TRUE)
  expect_error(fetch(d, plain = "no"), "must be NULL")
  expect_identical(plain_mode(), -1L)
})

test_that("the mode is restored when the fetch fails (closed object)", {
  s <- share(runif(1e5))
  close(s)
  expect_error(fetch(s, plain = TRUE), "closed|not open|no longer")
  expect_identical(plain_mode(), -1L)
  expect_error(fetch(s, plain = FALSE), "closed|not open|no longer")
  expect_identical(plain_mode(), -1L)
})

test_that("a segment: plain = TRUE is an error naming segment_read(); NULL and FALSE give its ALTREP raw vector", {
  seg <- segment_create(1e5)
  on.exit(segment_close(seg))
  expect_error(fetch(seg, plain = TRUE), "does not apply to a shard_segment.*segment_read\\(\\)")
  expect_true(is_altrep_shard(fetch(seg, plain = FALSE)))
  expect_true(is_altrep_shard(fetch(seg, plain = NULL)))
  expect_identical(plain_mode(), -1L)
})

test_that("after close() in the master: an ALTREP vector errors, a plain = TRUE one keeps its values", {
  x <- runif(1e5)
  s <- share(x)
  a <- fetch(s)                     # the master's default: ALTREP
  p <- fetch(s, plain = TRUE)
  ch <- share(c("u", "v", NA))
  pc <- fetch(ch, plain = TRUE)
  ac <- fetch(ch)
  close(s)
  close(ch)
  expect_error(sum(a), "closed")
  expect_identical(p, x)
  expect_identical(sum(p), sum(x))
  expect_true(shared_info(p)$closed)
  expect_identical(pc, c("u", "v", NA))
  expect_error(ac[1], "closed")
})

test_that("strict mode: the policy keeps ALTREP, an explicit plain = TRUE still gives an ordinary object", {
  s <- share(runif(1e5))
  on.exit(close(s))
  old <- options(shard.cow = "error", shard.plain_min_bytes = 65536)
  on.exit(options(old), add = TRUE)
  expect_true(is_altrep_shard(fetch(s)))
  y <- fetch(s, plain = TRUE)
  expect_true(is_plain(y))
  y[1] <- 0                          # R's ordinary copy: no strict error, the shared bytes unchanged
  expect_identical(fetch(s, plain = FALSE)[1], fetch(s, plain = TRUE)[1])
})

test_that("deep shares with aliases: identical in every mode, no ALTREP under plain = TRUE", {
  a <- runif(2e5)
  e <- new.env()
  e$v <- sprintf("e%05d", 1:1e4)
  x <- list(a = a, a2 = a, s = c(letters, NA), m = matrix(runif(2e5), 100),
            d = data.frame(q = runif(2e4), r = sprintf("r%05d", 1:2e4)), small = c(1.5, NA))
  s <- share(x, deep = TRUE, min_bytes = 1e3)
  on.exit(close(s))
  for (m in list(NULL, TRUE, FALSE)) expect_identical(fetch(s, plain = m), x, label = format(m))
  y <- fetch(s, plain = TRUE)
  expect_identical(altrep_in(y), character())
  expect_true(is_plain(y$a))
  expect_true(is_plain(y$m))
  f <- fetch(s, plain = FALSE)
  expect_true(is_altrep_shard(f$a))
  expect_identical(plain_mode(), -1L)
})

test_that("hugetlb objects: plain = TRUE copies (a private mapping needs a reservation), the policy stays ALTREP", {
  old <- options(shard.huge_pages = TRUE, shard.plain_min_bytes = 65536)
  on.exit(options(old))
  x <- runif(32 * 2^20 / 8)
  s <- share(x)
  on.exit(close(s), add = TRUE)
  if (!isTRUE(shared_info(s)$page_size >= 2^21))
    skip(sprintf("SKIPPED: the object got %s-byte pages (no hugetlb pages free?)", shared_info(s)$page_size))
  expect_true(is_altrep_shard(fetch(s)))
  c0 <- shard_diagnostics()$plain_copies
  y <- fetch(s, plain = TRUE)
  expect_identical(altrep_class(y), "")
  expect_false(is_plain(y))
  expect_identical(shard_diagnostics()$plain_copies - c0, 1)
  expect_identical(y, x)
})

test_that("the cap on live plain vectors: derived from vm.max_map_count; beyond it ALTREP (policy) or a copy", {
  mmc <- suppressWarnings(as.numeric(readLines("/proc/sys/vm/max_map_count", warn = FALSE)))
  if (length(mmc) == 1L && !is.na(mmc)) expect_identical(shard_diagnostics()$plain_cap, floor(mmc / 8))
  gc()
  live <- shard_diagnostics()$plain_vectors
  old_cap <- .Call(shard:::C_plain_cap, live + 2)
  on.exit(.Call(shard:::C_plain_cap, -1), add = TRUE)
  old <- options(shard.plain_min_bytes = 65536)
  on.exit(options(old), add = TRUE)
  ss <- lapply(1:4, function(i) share(runif(1e5)))
  on.exit(for (s in ss) close(s), add = TRUE)
  c0 <- shard_diagnostics()$plain_capped
  y1 <- fetch(ss[[1]]); y2 <- fetch(ss[[2]]); y3 <- fetch(ss[[3]])
  expect_true(is_plain(y1))
  expect_true(is_plain(y2))
  expect_true(is_altrep_shard(y3))
  y4 <- fetch(ss[[4]], plain = TRUE)
  expect_identical(altrep_class(y4), "")
  expect_false(is_plain(y4))
  expect_identical(shard_diagnostics()$plain_capped - c0, 2)
  expect_identical(y4, fetch(ss[[4]], plain = FALSE))
  rm(y1); gc()                      # a slot frees when the GC unmaps one
  expect_true(is_plain(fetch(ss[[3]])))
  .Call(shard:::C_plain_cap, -1)
  expect_identical(shard_diagnostics()$plain_cap, old_cap)
})

test_that("pool workers: ALTREP by default (fetch per task); init_expr's option makes numeric vectors plain", {
  x <- matrix(runif(2e5), 500)
  st <- sprintf("k%06d", 1:2e4)
  s <- share(x)
  sc <- share(st)
  small <- share(runif(100))
  on.exit({ close(s); close(sc); close(small) })
  probe <- function(i, s, sc, small) {
    d <- fetch(s)
    ch <- fetch(sc)
    list(opt = getOption("shard.plain_min_bytes"), plain = .Call(shard:::C_is_plain_vector, d),
         chr_altrep = grepl("shard", utils::capture.output(.Internal(inspect(ch, 0L)))[1]),
         small_plain = .Call(shard:::C_is_plain_vector, fetch(small)),
         explicit = .Call(shard:::C_is_plain_vector, fetch(s, plain = TRUE)),
         row = sum(d[i, ]), d = d, ch = ch[1:3])
  }
  for (type in c("psock", "fork")) for (opt in c(FALSE, TRUE)) {
    p <- pool_create(1, type = type, set_default = FALSE,
                     init_expr = if (opt) quote(options(shard.plain_min_bytes = 65536)))
    r <- pool_lapply(1:2, probe, s = s, sc = sc, small = small, pool = p)
    pool_stop(p)
    lab <- paste(type, if (opt) "option set" else "default")
    for (i in 1:2) {
      expect_identical(r[[i]]$opt, if (opt) 65536 else NULL, label = lab)
      expect_identical(r[[i]]$plain, opt, label = lab)
      expect_true(r[[i]]$explicit, label = lab)
      expect_true(r[[i]]$chr_altrep, label = lab)
      expect_false(r[[i]]$small_plain, label = lab)
      expect_identical(r[[i]]$row, sum(x[i, ]), label = lab)
      expect_identical(r[[i]]$d, x, label = lab)   # a plain result travels as its values, identical
      expect_identical(r[[i]]$ch, st[1:3], label = lab)
    }
  }
})

test_that("shard_map with the option set in workers: audit still counts writes to borrowed inputs", {
  # R's duplicate of an ALTREP input is a new shard vector (make_vec); with the
  # option set it would be plain and the write unseen: audit jobs run with the
  # option at Inf (runtime_task).
  x <- runif(1e5)
  if (!is.null(p <- pool_get())) pool_stop(p)       # fresh workers: init_expr's option stays in them
  on.exit(if (!is.null(p <- pool_get())) pool_stop(p))
  init <- quote(options(shard.plain_min_bytes = 65536))
  f <- function(shard, X) { pl <- .Call(shard:::C_is_plain_vector, X); X[1] <- 0; c(plain = pl, s = sum(X)) }
  a <- shard_map(shards(2, block_size = 1), f, borrow = list(X = x), workers = 1, cow = "audit", init_expr = init)
  expect_true(succeeded(a))
  expect_gte(cow_report(a)$violations, 2)
  r <- do.call(rbind, a$results)
  expect_identical(as.logical(r[, "plain"]), c(FALSE, FALSE))
  al <- shard_map(shards(2, block_size = 1), f, borrow = list(X = x), workers = 1, cow = "allow", init_expr = init)
  r <- do.call(rbind, al$results)
  expect_identical(as.logical(r[, "plain"]), c(TRUE, TRUE))
  expect_equal(r[, "s"], rep(sum(x) - x[1], 2))
})

test_that("cluster shares pass plain = on to the node's copy; bad values error before any work", {
  cl <- psock_cluster(1L)
  on.exit(parallel::stopCluster(cl))
  x <- data.frame(v = runif(2e4), s = sprintf("s%05d", 1:2e4))
  s <- share(x, cluster = cl)
  on.exit(close(s), add = TRUE)
  y <- fetch(s, plain = TRUE)
  expect_identical(y, x)
  expect_true(is_plain(y$v))
  expect_identical(altrep_in(y), character())
  expect_true(is_altrep_shard(fetch(s, plain = FALSE)$v))
  expect_identical(fetch(s), x)
  expect_error(fetch(s, plain = "TRUE"), "must be NULL")
  got <- parallel::clusterCall(cl, function(s) {
    v <- shard::fetch(s, plain = TRUE)
    c(plain = .Call(shard:::C_is_plain_vector, v$v), same = identical(v$s, sprintf("s%05d", 1:2e4)))
  }, s)[[1]]
  expect_identical(got, c(plain = TRUE, same = TRUE))
  expect_identical(plain_mode(), -1L)
})
