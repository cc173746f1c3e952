# shard_reduce(), dispatch_chunks(), the apply wrappers and shard_crossprod().

stop_pool <- function(env = parent.frame()) withr::defer(if (!is.null(p <- pool_get())) pool_stop(p), envir = env)

test_that("shard_reduce folds partials in chunk order; init is combined once", {
  stop_pool()
  res <- shard_reduce(100L, map = function(s) sum(s$idx), combine = `+`, init = 10, workers = 2)
  expect_s3_class(res, "shard_reduce_result")
  expect_identical(res$value, 5060)
  for (cs in c(1L, 3L, 100L)) {
    r <- shard_reduce(shards(20, block_size = 1), map = function(s) s$id, combine = function(a, b) c(a, b),
                      init = integer(0), workers = 2, chunk_size = cs)
    expect_identical(r$value, 1:20)                 # order kept whatever the chunking
    expect_identical(r$diagnostics$reduce$chunk_size, cs)
  }
  auto <- shard_reduce(shards(40, block_size = 1), map = function(s) 1, combine = `+`, init = 0, workers = 2)
  expect_identical(auto$diagnostics$reduce$chunk_size, 5L)     # ceiling(40 / (2 * 4))
  expect_identical(auto$diagnostics$chunks, 8L)
  expect_true(succeeded(auto))
  expect_match(capture.output(print(res))[2], "value: 5060")
  expect_error(shard_reduce(10, map = 1, combine = `+`, init = 0), "map")
  expect_error(shard_reduce(10, map = identity, combine = 1, init = 0), "combine")
  expect_error(shard_reduce(10, map = identity, combine = `+`), "init")
  expect_error(shard_reduce(10, map = identity, combine = `+`, init = 0, chunk_size = 0), "chunk_size")
})

test_that("shard_reduce with borrow, seed and a failing chunk", {
  stop_pool()
  x <- runif(1000)
  r <- shard_reduce(shards(1000, block_size = 100), map = function(s, x) sum(x[s$idx]), combine = `+`, init = 0,
                    borrow = list(x = x), workers = 2)
  expect_equal(r$value, sum(x))
  a <- shard_reduce(shards(10, block_size = 1), map = function(s) runif(1), combine = `+`, init = 0, seed = 5,
                    workers = 2, chunk_size = 2)
  b <- shard_reduce(shards(10, block_size = 1), map = function(s) runif(1), combine = `+`, init = 0, seed = 5,
                    workers = 1, chunk_size = 2)
  expect_identical(a$value, b$value)
  f <- suppressWarnings(shard_reduce(shards(4, block_size = 1), map = function(s) if (s$id == 3) stop("no") else s$id,
                                     combine = `+`, init = 0, workers = 2, chunk_size = 1, max_retries = 0))
  expect_false(succeeded(f))
  expect_identical(f$value, 7)
  expect_identical(names(f$failures), "3")
})

test_that("dispatch_chunks runs fun(chunk, ...) with retries and on_result", {
  stop_pool()
  p <- pool_create(2)
  seen <- new.env()
  chunks <- lapply(1:6, function(i) list(id = i * 10L, x = i))
  r <- dispatch_chunks(chunks, function(chunk, k) chunk$x * k, k = 3, pool = p,
                       on_result = function(tag, value, worker_id) assign(tag, c(value, worker_id), envir = seen))
  expect_s3_class(r, "shard_dispatch_result")
  expect_identical(unname(unlist(r$results)), (1:6) * 3)
  expect_identical(names(r$results), as.character((1:6) * 10L))
  expect_setequal(ls(seen), as.character((1:6) * 10L))
  expect_true(all(vapply(ls(seen), function(k) seen[[k]][2] %in% 1:2, TRUE)))
  r2 <- dispatch_chunks(chunks, function(chunk) chunk$x, store_results = FALSE, retain_chunks = TRUE,
                        diagnostics = FALSE)
  expect_length(r2$results, 0)
  expect_identical(r2$chunks, chunks)
  bad <- suppressWarnings(dispatch_chunks(list(list(id = 1L)), function(chunk) stop("boom"), max_retries = 1))
  expect_false(succeeded(bad))
  expect_match(bad$failures[["1"]]$message, "boom")
  expect_identical(bad$failures[["1"]]$chunk, list(id = 1L))
  expect_identical(bad$diagnostics$error_retries, 1L)
  expect_match(capture.output(print(r))[1], "<shard_dispatch_result> 6 chunks")
  expect_error(dispatch_chunks(1:3, identity), "list")
  expect_error(dispatch_chunks(list(1), 1), "fun")
  expect_error(dispatch_chunks(list(1), identity, on_result = 1), "on_result")
  expect_error(dispatch_chunks(list(1), identity, timeout = -1), "timeout")
  pool_stop(p)
  expect_error(dispatch_chunks(list(1), identity), "no worker pool")
})

test_that("shard_apply_matrix: per-column values through a buffer; VARS and ... reach FUN", {
  stop_pool()
  X <- matrix(rnorm(600), 30, 20, dimnames = list(NULL, paste0("c", 1:20)))
  expect_equal(shard_apply_matrix(X, 2, mean, workers = 2), colMeans(X))
  v <- shard_apply_matrix(X, 2, function(v, w, k) sum(v * w) + k, VARS = list(w = seq_len(30)), k = 1, workers = 2)
  expect_equal(v, colSums(X * seq_len(30)) + 1)
  expect_identical(shard_apply_matrix(X > 0, 2, function(v) sum(v), workers = 2), as.integer(colSums(X > 0)), ignore_attr = TRUE)
  s <- share(X)
  expect_equal(shard_apply_matrix(s, 2, max, workers = 2), apply(X, 2, max), ignore_attr = TRUE)
  expect_error(shard_apply_matrix(X, 1, mean), "MARGIN = 2")
  expect_error(shard_apply_matrix(letters, 2, mean), "matrix")
  expect_error(shard_apply_matrix(X, 2, range), "one atomic value")
  expect_error(shard_apply_matrix(X, 2, mean, policy = list()), "shard_apply_policy")
})

test_that("shard_lapply_shared: results in order; large elements shared; gather guardrail", {
  stop_pool()
  big <- list(a = runif(3e5), b = runif(3e5), c = 1:3)
  r <- shard_lapply_shared(big, function(v, off) c(sum(v), isTRUE(.Call(shard:::C_is_shard_vector, v))) + off,
                           off = 0, workers = 2)
  expect_named(r, c("a", "b", "c"))
  expect_equal(r$a, c(sum(big$a), 1))
  expect_equal(r$c, c(6, 0))
  expect_identical(shard_lapply_shared(as.list(1:5), function(x, k) x * k, VARS = list(k = 2L), workers = 2),
                   as.list((1:5) * 2L))
  pol <- shard_apply_policy(max_gather_bytes = "1KB")
  expect_error(shard_lapply_shared(as.list(1:10), function(x) runif(100), policy = pol), "max_gather_bytes")
  expect_identical(shard_lapply_shared(list(), identity), list())
  expect_error(shard_lapply_shared(1:3, identity), "list")
})

test_that("shard_apply_policy validates and prints", {
  p <- shard_apply_policy(auto_share_min_bytes = 100, cow = "allow", block_size = 5)
  expect_identical(p$auto_share_min_bytes, 100)
  expect_identical(p$cow, "allow")
  expect_match(capture.output(print(p))[1], "<shard_apply_policy>")
  expect_error(shard_apply_policy(max_gather_bytes = "huge"), "max_gather_bytes")
  expect_error(shard_apply_policy(cow = "x"), "cow")
  expect_error(shard_apply_policy(block_size = "x"), "block_size")
})

test_that("shard_crossprod equals crossprod; materialize and tiles", {
  stop_pool()
  X <- matrix(rnorm(3000), 100, 30)
  Y <- matrix(rnorm(1500), 100, 15)
  r <- shard_crossprod(X, Y, block_x = 7, block_y = 4, workers = 2)
  expect_equal(r$value, crossprod(X, Y))
  expect_identical(r$tile, c(block_x = 7L, block_y = 4L))
  expect_identical(r$run$diagnostics$shards_total, 5L * 4L)
  expect_equal(r$run$diagnostics$views$zero_copy, 2 * 20)
  n <- shard_crossprod(X, Y, workers = 2, materialize = "never")
  expect_null(n$value)
  expect_equal(as.matrix(n$buffer), crossprod(X, Y))
  expect_error(shard_crossprod(X, Y[1:50, ]), "same number of rows")
  expect_error(shard_crossprod(X, 1:3), "double matrix")
  expect_error(shard_crossprod(X, Y, materialize = "x"), "materialize")
})
