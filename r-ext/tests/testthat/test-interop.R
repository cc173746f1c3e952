# Handles and fetched vectors through the parallel frameworks R users already
# use: parallel (PSOCK, fork), foreach + doParallel, future (multisession,
# cluster) with future.apply and furrr, and BiocParallel. Each case checks the
# values the worker computed and that the worker attached the shared memory
# (zero copy) rather than receiving a deserialized copy: in the worker the
# vector is shard's ALTREP class (.Internal(inspect) names it), is_shared() is
# TRUE, its memory belongs to this process (owner_pid) and has no private copy.
# A framework that is not installed is a loud skip.

x <- as.numeric(seq_len(20000)) / 7
h <- share(x)
y0 <- fetch(h)
master <- Sys.getpid()

# What a worker reports about a vector it was given or fetched. Its environment
# is the global one so that sending it does not carry this file's frame along.
probe <- function(y) {
  info <- shard::shared_info(y)
  list(pid = Sys.getpid(), sum = sum(y), head = y[1:3], shared = shard::is_shared(y),
       owner = info$owner_pid, local = info$local, private_copy = info$private_copy,
       inspect = utils::capture.output(.Internal(inspect(y)))[1])
}
environment(probe) <- globalenv()

expect_attached <- function(r, fork = FALSE, label = "") {
  expect_false(r$pid == master, label = paste(label, "ran in another process"))
  expect_equal(r$sum, sum(x), label = paste(label, "sum"))
  expect_identical(r$head, x[1:3], label = paste(label, "values"))
  expect_true(r$shared, label = paste(label, "is_shared() in the worker"))
  expect_match(r$inspect, "shard double", label = paste(label, "worker's vector is shard's ALTREP"))
  expect_identical(r$owner, master, label = paste(label, "memory owned by the parent"))
  expect_false(r$private_copy, label = paste(label, "no private copy"))
  # Forked children inherit the parent's mappings; other workers attach to it.
  if (!fork) expect_false(r$local, label = paste(label, "attached (not local) in the worker"))
}

skip_without <- function(pkgs) {
  for (p in pkgs) if (!requireNamespace(p, quietly = TRUE)) {
    testthat::skip(sprintf("SKIPPED: %s is not installed (apt-get install r-cran-%s, or r-bioc-%s)",
                           p, tolower(p), tolower(p)))
  }
}

test_that("parallel PSOCK: a handle fetched in the worker, and a fetched vector sent as is", {
  cl <- psock_cluster(2L)
  on.exit(parallel::stopCluster(cl), add = TRUE)
  parallel::clusterExport(cl, "probe", envir = environment())
  via_handle <- parallel::parLapply(cl, 1:2, function(i, h) probe(shard::fetch(h)), h = h)
  via_vector <- parallel::parLapply(cl, 1:2, function(i, y) probe(y), y = y0)
  for (r in c(via_handle, via_vector)) expect_attached(r, label = "PSOCK")
})

test_that("parallel fork: makeForkCluster and mclapply", {
  skip_if_no_fork()
  cl <- parallel::makeForkCluster(2L)
  on.exit(parallel::stopCluster(cl), add = TRUE)
  res <- c(parallel::parLapply(cl, 1:2, function(i) probe(shard::fetch(h))),
           parallel::parLapply(cl, 1:2, function(i) probe(y0)))
  for (r in res) expect_attached(r, fork = TRUE, label = "fork cluster")
  res <- parallel::mclapply(1:2, function(i) if (i == 1) probe(y0) else probe(fetch(h)), mc.cores = 2L)
  for (r in res) expect_attached(r, fork = TRUE, label = "mclapply")
})

test_that("foreach + doParallel (PSOCK cluster)", {
  skip_without(c("foreach", "doParallel"))
  cl <- psock_cluster(2L)
  on.exit({ foreach::registerDoSEQ(); parallel::stopCluster(cl) }, add = TRUE)
  doParallel::registerDoParallel(cl)
  `%dopar%` <- foreach::`%dopar%`
  res <- foreach::foreach(i = 1:2, .export = c("probe", "h")) %dopar% probe(shard::fetch(h))
  res2 <- foreach::foreach(i = 1:2, .export = c("probe", "y0")) %dopar% probe(y0)
  for (r in c(res, res2)) expect_attached(r, label = "doParallel")
})

test_that("future multisession: future(), future.apply and furrr", {
  skip_without(c("future", "future.apply", "furrr"))
  old <- future::plan(future::multisession, workers = 2L)
  on.exit(future::plan(old), add = TRUE)
  f <- future::future(probe(shard::fetch(h)))
  expect_attached(future::value(f), label = "future(fetch(h))")
  f <- future::future(probe(y0))
  expect_attached(future::value(f), label = "future(y)")
  res <- future.apply::future_lapply(1:2, function(i) probe(shard::fetch(h)))
  for (r in res) expect_attached(r, label = "future_lapply")
  res <- furrr::future_map(1:2, function(i) probe(y0))
  for (r in res) expect_attached(r, label = "furrr::future_map")
})

test_that("future cluster plan over a PSOCK cluster", {
  skip_without(c("future", "future.apply"))
  cl <- psock_cluster(2L)
  old <- future::plan(future::cluster, workers = cl)
  on.exit({ future::plan(old); parallel::stopCluster(cl) }, add = TRUE)
  res <- future.apply::future_lapply(1:2, function(i) if (i == 1) probe(y0) else probe(shard::fetch(h)))
  for (r in res) expect_attached(r, label = "future cluster")
})

test_that("BiocParallel: SnowParam and MulticoreParam", {
  skip_without("BiocParallel")
  snow <- BiocParallel::SnowParam(workers = 2L)
  res <- BiocParallel::bplapply(1:2, function(i, h, probe) probe(shard::fetch(h)), h = h, probe = probe,
                                BPPARAM = snow)
  for (r in res) expect_attached(r, label = "SnowParam")
  res <- BiocParallel::bplapply(1:2, function(i, y, probe) probe(y), y = y0, probe = probe,
                                BPPARAM = BiocParallel::SnowParam(workers = 2L))
  for (r in res) expect_attached(r, label = "SnowParam (vector)")
  skip_if_no_fork()
  res <- BiocParallel::bplapply(1:2, function(i) probe(shard::fetch(h)),
                                BPPARAM = BiocParallel::MulticoreParam(workers = 2L))
  for (r in res) expect_attached(r, fork = TRUE, label = "MulticoreParam")
})

close(h)
