# Serializing a fetched vector sends the handle, not the data: PSOCK workers,
# foreach/doParallel and future attach zero-copy. Saving to disk stores a handle
# by default (clear error once the owner is gone), values with
# options(shard.serialize = "data") or after materialize().

test_that("a fetched vector serializes to a few hundred bytes; a modified one to its values", {
  x <- rnorm(1e6)
  s <- share(x)
  y <- fetch(s)
  expect_lt(length(serialize(y, NULL)), 500)
  m <- matrix(rnorm(1e6), 1000)
  ym <- fetch(sm <- share(m))
  expect_lt(length(serialize(ym, NULL)), 800)
  expect_identical(unserialize(serialize(ym, NULL)), m)
  df <- fetch(sd <- share(data.frame(a = rnorm(1e5), b = sample(letters, 1e5, TRUE))))
  expect_lt(length(serialize(df, NULL)), 2000)
  expect_identical(unserialize(serialize(df, NULL)), materialize(df))
  z <- y; z[1] <- 0
  expect_gt(length(serialize(z, NULL)), 8e6)
  expect_identical(unserialize(serialize(z, NULL)), replace(x, 1, 0))
  mk <- function(v) { force(v); function(i) v[i] }
  environment(mk) <- globalenv()   # not the test's frame, which holds x
  mk <- removeSource(mk)           # and no srcref (which holds the whole test file)
  expect_lt(length(serialize(mk(y), NULL)), 2000)
  close(s); close(sm); close(sd)
})

test_that("PSOCK workers attach fetched vectors zero-copy and can fetch() a handle", {
  x <- rnorm(1e6)
  s <- share(x)
  y <- fetch(s)
  cl <- psock_cluster(2)
  on.exit(parallel::stopCluster(cl))
  r <- parallel::clusterCall(cl, function(v) {
    list(sum = sum(v), shared = shard::is_shared(v), foreign = shard::shard_diagnostics()$attaches_foreign)
  }, y)
  for (w in r) {
    expect_identical(w$sum, sum(x))
    expect_true(w$shared)
    expect_gte(w$foreign, 1)
  }
  r2 <- parallel::parLapply(cl, 1:4, function(i, s) sum(shard::fetch(s)[i]), s)
  expect_identical(unlist(r2), x[1:4])
  mk <- function(v) { force(v); function(i) v[i] * 2 }
  environment(mk) <- globalenv()
  mk <- removeSource(mk)
  f <- mk(y)
  expect_lt(length(serialize(f, NULL)), 2000)
  r3 <- parallel::parSapply(cl, 1:4, function(i, f) f(i), f)
  expect_identical(r3, x[1:4] * 2)
  # a worker's modification stays in the worker
  r4 <- parallel::clusterCall(cl, function(v) { v[1] <- -1; v[1] }, y)
  expect_identical(r4[[1]], -1)
  expect_identical(y[1], x[1])
  # data.frames and deep shares too
  d <- share(list(a = rnorm(1e4), b = 1:10), deep = TRUE, min_bytes = 1000)
  r5 <- parallel::clusterCall(cl, function(d) { v <- shard::fetch(d); c(sum(v$a), shard::is_shared(v$a)) }, d)
  expect_equal(r5[[1]], c(sum(fetch(d)$a), 1))
  close(d)
  close(s)
})

test_that("forked workers (mclapply) read shared data through inherited mappings", {
  skip_if_no_fork()
  x <- rnorm(1e6)
  s <- share(x)
  y <- fetch(s)
  r <- parallel::mclapply(1:4, function(i) c(sum(y), sum(fetch(s)), is_shared(y)), mc.cores = 2)
  for (w in r) expect_identical(w, c(sum(x), sum(x), 1))
  close(s)
})

test_that("foreach + doParallel sends handles", {
  if (!requireNamespace("foreach", quietly = TRUE) || !requireNamespace("doParallel", quietly = TRUE))
    skip("foreach or doParallel is not installed")
  x <- rnorm(1e5)
  s <- share(x)
  y <- fetch(s)
  cl <- psock_cluster(1)
  on.exit(parallel::stopCluster(cl))
  doParallel::registerDoParallel(cl)
  `%dopar%` <- foreach::`%dopar%`
  r <- foreach::foreach(i = 1:3, .combine = c, .packages = "shard") %dopar% c(y[i] + is_shared(y) * 0)
  expect_identical(r, x[1:3])
  foreach::registerDoSEQ()
  close(s)
})

test_that("future (multisession / cluster) sends handles", {
  if (!requireNamespace("future", quietly = TRUE)) skip("future is not installed")
  x <- rnorm(1e5)
  s <- share(x)
  y <- fetch(s)
  old <- future::plan(future::multisession, workers = 1)
  on.exit(future::plan(old))
  f <- future::future({ c(sum(y), shard::is_shared(y)) }, packages = "shard")
  expect_identical(future::value(f), c(sum(x), 1))
  close(s)
})

test_that("saveRDS/readRDS in the same session restores the shared vector", {
  x <- rnorm(1e5)
  s <- share(x)
  y <- fetch(s)
  tf <- tempfile(fileext = ".rds")
  saveRDS(y, tf)
  expect_lt(file.size(tf), 1000)
  z <- readRDS(tf)
  expect_identical(z, x)
  expect_true(is_shared(z))
  close(s)
  expect_error(sum(readRDS(tf)), "closed|cannot restore")
})

test_that("readRDS after the owner exited fails with a clear message; the data option saves values", {
  skip_if_no_callr()
  tf <- tempfile(fileext = ".rds")
  tf2 <- tempfile(fileext = ".rds")
  callr_r(function(tf, tf2) {
    library(shard)
    y <- fetch(share(seq(0, 1, length.out = 1e5)))
    saveRDS(y, tf)
    options(shard.serialize = "data")
    saveRDS(y, tf2)
  }, list(tf, tf2))
  expect_lt(file.size(tf), 1000)
  expect_error(readRDS(tf), "owner of this shared object \\(pid [0-9]+\\) has exited.*materialize\\(\\).*shard.serialize")
  expect_gt(file.size(tf2), 1e5)
  expect_identical(readRDS(tf2), seq(0, 1, length.out = 1e5))
  # materialize() before saving embeds the values as an ordinary vector
  s <- share(1:10)
  saveRDS(materialize(fetch(s)), tf)
  close(s)
  expect_identical(readRDS(tf), 1:10)
})

test_that("a shard_shared handle can be fetched in another R process while the owner lives", {
  skip_if_no_callr()
  x <- rnorm(1e4)
  s <- share(x)
  got <- callr_r(function(s) { library(shard); v <- fetch(s); list(sum(v), is_shared(v), shared_info(v)$local) }, list(s))
  expect_identical(got[[1]], sum(x))
  expect_true(got[[2]])
  expect_false(got[[3]])
  close(s)
})
