# shard_map(): each argument, its errors, results() and succeeded().

stop_pool <- function(env = parent.frame()) withr::defer(if (!is.null(p <- pool_get())) pool_stop(p), envir = env)

test_that("shard_map runs fun over every shard and keeps shard order", {
  stop_pool()
  res <- shard_map(shards(1000, block_size = 100), function(shard) sum(shard$idx), workers = 2)
  expect_s3_class(res, "shard_result")
  expect_true(succeeded(res))
  expect_identical(results(res), vapply(split(1:1000, rep(1:10, each = 100)), sum, 0L), ignore_attr = TRUE)
  expect_identical(length(res$results), 10L)
  expect_identical(res$diagnostics$shards_total, 10L)
  expect_identical(pool_get()$n, 2L)
  # an integer N is split for the pool
  r2 <- shard_map(4L, function(shard) shard$idx[[1L]], workers = 2)
  expect_identical(sort(unlist(r2$results)), c(1L, 2L, 3L, 4L))
  out <- capture.output(print(res))
  expect_match(out[1], "<shard_result> 10 shards in 10 tasks")
})

test_that("borrow= inputs are shared once and read zero-copy in the workers", {
  stop_pool()
  x <- runif(2e5)
  res <- shard_map(shards(4, block_size = 1), function(shard, X) {
    c(shared = isTRUE(.Call(shard:::C_is_shard_vector, X)), s = sum(X))
  }, borrow = list(X = x), workers = 2)
  r <- do.call(rbind, res$results)
  expect_true(all(r[, "shared"] == 1))
  expect_equal(r[, "s"], rep(sum(x), 4))
  # the job carried a handle, not the 1.6 MB vector
  expect_lt(res$diagnostics$bytes$job, 50000)
  expect_identical(res$diagnostics$borrow$exports, 1L)
  # an already shared object is passed as it is
  s <- share(x)
  res2 <- shard_map(shards(2, block_size = 1), function(shard, X) sum(X), borrow = list(X = s), workers = 2)
  expect_equal(unlist(res2$results), rep(sum(x), 2))
  expect_error(shard_map(2, function(s, X) 1, borrow = list(1:3)), "unique name")
  expect_error(shard_map(2, function(s, X) 1, borrow = 1:3), "named list")
})

test_that("out= buffers are written in place; only O(shards) bytes come back", {
  stop_pool()
  n <- 1e5
  out <- buffer("double", dim = n)
  res <- shard_map(shards(n, block_size = 1e4), function(shard, out) {
    out[shard$idx] <- sqrt(shard$idx)
    NULL
  }, out = list(out = out), workers = 2)
  expect_equal(out[], sqrt(seq_len(n)))
  expect_lt(res$diagnostics$bytes$results, 100 * 10)
  expect_equal(res$diagnostics$buffer$bytes, n * 8)
  expect_equal(res$diagnostics$buffer$writes, 10)
  expect_error(shard_map(2, function(s, out) 1, out = list(out = 1:3)), "must be a buffer")
  b <- buffer("double", 3); buffer_seal(b)
  expect_error(shard_map(2, function(s, out) 1, out = list(out = b)), "sealed")
  b2 <- buffer("double", 3)
  expect_error(shard_map(2, function(s, x) 1, borrow = list(x = 1), out = list(x = b2)), "same name")
})

test_that("workers= sizes the pool; chunk_size batches shards per task", {
  stop_pool()
  res <- shard_map(shards(12, block_size = 1), function(shard) Sys.getpid(), workers = 1)
  expect_length(unique(unlist(res$results)), 1L)
  res <- shard_map(shards(12, block_size = 1), function(shard) shard$id, workers = 2, chunk_size = 5)
  expect_identical(unlist(res$results), 1:12)
  expect_identical(res$diagnostics$chunks, 3L)
  expect_identical(res$diagnostics$tasks$shards, c(5L, 5L, 2L))
  expect_error(shard_map(2, function(s) 1, workers = 0), "workers")
  expect_error(shard_map(2, function(s) 1, chunk_size = 0), "chunk_size")
})

test_that("seed= gives the same streams for any number of workers and chunk size", {
  stop_pool()
  f <- function(shard) runif(3)
  a <- shard_map(shards(20, block_size = 2), f, seed = 7, workers = 2)
  b <- shard_map(shards(20, block_size = 2), f, seed = 7, workers = 1, chunk_size = 4)
  c <- shard_map(shards(20, block_size = 2), f, seed = 8, workers = 1)
  expect_identical(a$results, b$results)
  expect_false(identical(a$results, c$results))
  expect_false(any(duplicated(unlist(a$results))))
  # with N the split does not depend on the workers
  d1 <- shard_map(50, function(s) sum(runif(length(s$idx))), seed = 3, workers = 2)
  d2 <- shard_map(50, function(s) sum(runif(length(s$idx))), seed = 3, workers = 1)
  expect_identical(d1$results, d2$results)
  # the master's RNG state and kind are left as found
  set.seed(1); before <- .Random.seed; kind <- RNGkind()
  shard_map(2, function(s) 1, seed = 1, workers = 1)
  expect_identical(.Random.seed, before)
  expect_identical(RNGkind(), kind)
  expect_error(shard_map(2, f, seed = "x"), "seed")
})

test_that("errors in fun are retried up to max_retries, then reported", {
  stop_pool()
  dir <- tempfile(); dir.create(dir)
  res <- suppressWarnings(shard_map(shards(3, block_size = 1), function(shard, dir) {
    if (shard$id == 2) {
      cat("x", file = file.path(dir, "tries"), append = TRUE)
      stop("shard two fails")
    }
    shard$id
  }, dir = dir, workers = 2, max_retries = 2))
  expect_false(succeeded(res))
  expect_identical(nchar(readLines(file.path(dir, "tries"), warn = FALSE)), 3L)   # 1 + 2 retries
  expect_identical(names(res$failures), "2")
  expect_match(res$failures[["2"]]$message, "shard two fails")
  expect_identical(res$failures[["2"]]$attempts, 3L)
  expect_identical(res$results[c(1, 3)], list(1L, 3L))
  expect_identical(res$diagnostics$error_retries, 2L)
  expect_identical(task_report(res)$total_retries, 2L)
  # a failure that goes away on retry succeeds
  unlink(file.path(dir, "flag"))
  res2 <- shard_map(shards(1, block_size = 1), function(shard, dir) {
    f <- file.path(dir, "flag")
    if (!file.exists(f)) { file.create(f); stop("first try fails") }
    "ok"
  }, dir = dir, workers = 1, max_retries = 1)
  expect_true(succeeded(res2))
  expect_identical(res2$results[[1]], "ok")
  expect_error(shard_map(2, function(s) 1, max_retries = -1), "max_retries")
})

test_that("timeout= stops a shard that runs too long (its worker is replaced)", {
  stop_pool()
  res <- shard_map(shards(2, block_size = 1), function(shard) {
    if (shard$id == 1) Sys.sleep(30)
    shard$id
  }, workers = 2, timeout = 1, max_retries = 0)
  expect_false(succeeded(res))
  expect_identical(names(res$failures), "1")
  expect_match(res$failures[["1"]]$message, "timeout")
  expect_identical(res$results[[2]], 2L)
  expect_identical(res$diagnostics$timeouts, 1L)
  expect_gte(res$diagnostics$deaths, 1L)
  expect_error(shard_map(2, function(s) 1, timeout = 0), "timeout")
})

test_that("mem_cap= recycles a worker whose private memory passes it, between tasks", {
  stop_pool()
  # min_recycle_interval = 0: the default (1 s) defers recycling a worker younger
  # than that, and four short shards can finish inside it (see the test below)
  pool_create(1, min_recycle_interval = 0)
  # and read worker memory after every task (the default reads it at most once a
  # second per worker, so short tasks can all finish before the first reading)
  old_opt <- options(shard.pool_check_interval = 0)
  on.exit(options(old_opt), add = TRUE)
  res <- shard_map(shards(4, block_size = 1), function(shard) {
    .GlobalEnv$.keep <- c(.GlobalEnv$.keep, list(runif(3e7)))   # ~240 MB kept per task
    shard$id
  }, workers = 1, mem_cap = "200MB", recycle = FALSE)
  expect_true(succeeded(res))
  expect_gte(res$diagnostics$recycles, 1L)
  expect_gte(sum(res$diagnostics$workers$recycles), 1L)
  # the pool's own limits are restored after the run
  expect_identical(pool_get()$rss_limit_bytes, shard:::parse_bytes("2GB"))
  expect_error(shard_map(2, function(s) 1, mem_cap = "lots"), "mem_cap")
})

test_that("recycle= sets the drift threshold (FALSE turns drift recycling off)", {
  stop_pool()
  f <- function(shard) {
    .GlobalEnv$.keep <- c(.GlobalEnv$.keep, list(runif(2e7)))   # ~160 MB kept per task
    shard$id
  }
  off <- shard_map(shards(3, block_size = 1), f, workers = 1, recycle = FALSE)
  expect_identical(off$diagnostics$recycles, 0L)
  pool_stop()
  # health_check_interval = 1: the worker's memory is read after every shard.
  # The pool's min_recycle_interval (default 1 s) defers recycling a worker
  # younger than that: three short shards can all finish inside it, so the
  # pool is made with 0 here (shard_map() uses the ambient pool of that size).
  pool_create(1, min_recycle_interval = 0)
  # and read worker memory after every task (the default reads it at most once a
  # second per worker, so short tasks can all finish before the first reading)
  old_opt <- options(shard.pool_check_interval = 0)
  on.exit(options(old_opt), add = TRUE)
  on <- shard_map(shards(3, block_size = 1), f, workers = 1, recycle = 0.5, health_check_interval = 1)
  expect_gte(on$diagnostics$recycles, 1L)
  expect_error(shard_map(2, function(s) 1, recycle = "yes"), "recycle")
})

test_that("cow= deny refuses to modify borrowed inputs, audit counts, allow permits", {
  stop_pool()
  x <- runif(1e5)
  f <- function(shard, X) { X[1] <- 0; sum(X) }
  deny <- shard_map(shards(2, block_size = 1), f, borrow = list(X = x), workers = 2, max_retries = 0)
  expect_false(succeeded(deny))
  expect_match(deny$failures[[1]]$message, "not allowed")
  audit <- shard_map(shards(2, block_size = 1), f, borrow = list(X = x), workers = 2, cow = "audit")
  expect_true(succeeded(audit))
  expect_gte(cow_report(audit)$violations, 2)
  expect_identical(cow_report(audit)$policy, "audit")
  allow <- shard_map(shards(2, block_size = 1), f, borrow = list(X = x), workers = 2, cow = "allow")
  expect_true(succeeded(allow))
  expect_equal(unlist(allow$results), rep(sum(x) - x[1], 2))
  expect_identical(cow_report(allow)$violations, 0)
  expect_gte(cow_report(allow)$copies_triggered, 2)
  # reading is fine under deny
  ok <- shard_map(shards(2, block_size = 1), function(shard, X) sum(X[1:10]) + mean(X), borrow = list(X = x),
                  workers = 2)
  expect_true(succeeded(ok))
  expect_error(shard_map(2, f, cow = "maybe"), "cow")
})

test_that("packages= and init_expr= run in each worker before its shards", {
  stop_pool()
  res <- shard_map(shards(2, block_size = 1), function(shard) {
    c(attached = "package:tools" %in% search(), init = get0(".rt_init", envir = globalenv(), ifnotfound = 0))
  }, workers = 2, packages = "tools", init_expr = quote(.rt_init <- 42))
  r <- do.call(rbind, res$results)
  expect_true(all(r[, "attached"] == 1))
  expect_true(all(r[, "init"] == 42))
  bad <- shard_map(shards(1, block_size = 1), function(shard) 1, workers = 1, packages = "notapkg.shard",
                   max_retries = 0)
  expect_false(succeeded(bad))
  expect_match(bad$failures[[1]]$message, "notapkg.shard")
  expect_error(shard_map(2, function(s) 1, packages = 1), "packages")
  expect_error(shard_map(2, function(s) 1, init_expr = 1), "init_expr")
})

test_that("diagnostics= and health_check_interval=; ... goes to fun", {
  stop_pool()
  res <- shard_map(shards(4, block_size = 1), function(shard, mult) shard$id * mult, mult = 10, workers = 2,
                   diagnostics = FALSE, health_check_interval = 1)
  expect_identical(unlist(res$results), c(10, 20, 30, 40))
  expect_false(res$diagnostics$collected)
  expect_identical(res$diagnostics$bytes$results, 0)
  on <- shard_map(shards(4, block_size = 1), function(shard) 1, workers = 2)
  expect_gt(on$diagnostics$bytes$results, 0)
  expect_true(all(!is.na(on$diagnostics$workers$peak_rss)))
  expect_error(shard_map(2, function(s) 1, diagnostics = NA), "diagnostics")
  expect_error(shard_map(2, function(s) 1, health_check_interval = 0), "health_check_interval")
})

test_that("arguments that select what this version lacks are clear errors", {
  expect_error(shard_map(2, kernel = "crossprod"), "kernels")
  expect_error(shard_map(2, function(s) 1, dispatch_mode = "shm_queue"), "not available")
  expect_error(shard_map(2, NULL), "`fun` must be a function")
  expect_error(shard_map("a", function(s) 1, workers = 1), "descriptor")
  expect_error(shard_map(2, function(s) 1, profile = "fast"), "profile")
  expect_error(shard_map(2, function(s) 1, autotune = 3), "autotune")
  expect_error(shard_map(2, function(s) 1, scheduler_policy = 3), "scheduler_policy")
  expect_error(shard_map(2, function(s) 1, dispatch_opts = 3), "dispatch_opts")
})

test_that("results() flattens; succeeded() checks failures", {
  r <- structure(list(results = list(1, 2, 3), failures = list()), class = "shard_result")
  expect_identical(results(r), c(1, 2, 3))
  expect_identical(results(r, flatten = FALSE), list(1, 2, 3))
  r$results <- list(list(1, 2), list(3))
  expect_identical(results(r), list(1, 2, 3))
  expect_true(succeeded(r))
  r$failures <- list(`1` = list())
  expect_false(succeeded(r))
  expect_error(results(list()), "shard_map")
  expect_error(succeeded(1), "shard_map")
})

test_that("progress on long runs is printed to stderr", {
  stop_pool()
  old <- options(shard.progress = TRUE)
  on.exit(options(old))
  msgs <- capture.output(shard_map(shards(6, block_size = 1), function(s) { Sys.sleep(1); 1 }, workers = 2),
                         type = "message")
  expect_true(any(grepl("shard_map: [0-9]+/6 shards", msgs)))
})
