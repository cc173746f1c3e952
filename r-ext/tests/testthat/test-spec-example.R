# The example of the API reference (share-reference.md), run as written: at top
# level (in the global environment, as a user would), with the pool part when the
# pool (pool_create()/pool_lapply()) is in this build. Without it, that part is
# skipped loudly and the same work runs on a PSOCK cluster instead.

spec_example_head <- '
# Share a large matrix
mat <- matrix(rnorm(1e6), nrow = 1000)
shared_mat <- share(mat)

# The shared object is lightweight - only metadata
print(object.size(shared_mat))  # Small

# Get the data back with fetch()
recovered <- fetch(shared_mat)
identical(mat, recovered)  # TRUE
'
spec_example_pool <- '
# Use in parallel (workers access without copying)
pool_create(4)
result <- pool_lapply(1:10, function(i) {
  # Workers can access shared_mat efficiently
  data <- fetch(shared_mat)
  sum(data[i, ])
})
'
spec_example_tail <- '
# Clean up when done
close(shared_mat)

# Deep sharing with alias preservation
big_mat <- matrix(rnorm(1e6), nrow = 1000)
lst <- list(a = big_mat, b = big_mat)  # Same object referenced twice
shared_lst <- share(lst, deep = TRUE, min_bytes = 1000)
# Creates only ONE shared segment - both \'a\' and \'b\' reference it
'

test_that("the reference example runs as written", {
  ge <- globalenv()
  made <- c("mat", "shared_mat", "recovered", "result", "big_mat", "lst", "shared_lst")
  had <- made[vapply(made, exists, logical(1), envir = ge, inherits = FALSE)]
  saved <- mget(had, envir = ge)
  on.exit({
    rm(list = intersect(made, ls(ge)), envir = ge)
    list2env(saved, envir = ge)
  })
  run <- function(code) {
    exprs <- parse(text = code)
    out <- NULL
    for (e in exprs) out <- withVisible(eval(e, envir = ge))
    out$value
  }
  expect_output(run(spec_example_head), "bytes")
  expect_true(identical(ge$mat, ge$recovered))
  expect_lt(as.numeric(object.size(ge$shared_mat)), 20000)

  # The pool part on a PSOCK cluster
  cl <- psock_cluster(2)
  result_psock <- parallel::parLapply(cl, 1:10, function(i, shared_mat) {
    data <- shard::fetch(shared_mat)
    sum(data[i, ])
  }, ge$shared_mat)
  parallel::stopCluster(cl)
  expect_equal(unlist(result_psock), rowSums(ge$mat)[1:10])

  ns <- asNamespace("shard")
  pool_ok <- all(c("pool_create", "pool_lapply") %in% getNamespaceExports(ns))
  if (pool_ok) {
    run(spec_example_pool)
    expect_equal(unlist(ge$result), rowSums(ge$mat)[1:10])
    for (stopper in c("pool_stop", "pool_close", "pool_shutdown"))
      if (stopper %in% getNamespaceExports(ns)) { get(stopper, envir = ns)(); break }
  }

  run(spec_example_tail)
  expect_length(ge$shared_lst$segments, 1L)   # only ONE shared segment
  expect_identical(fetch(ge$shared_lst), ge$lst)
  close(ge$shared_lst)
  if (!pool_ok) skip("pool_create()/pool_lapply() are not exported by this build of shard: the pool part of the example ran on a PSOCK cluster instead")
})
