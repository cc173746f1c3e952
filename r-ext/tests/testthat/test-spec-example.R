# The example of the API reference (share-reference.md), run as written. The
# pool part needs pool_create()/pool_lapply() from the pool module; where they
# are missing that part is skipped loudly and the same work runs on a PSOCK
# cluster instead.

test_that("the reference example runs as written", {
  # Share a large matrix
  mat <- matrix(rnorm(1e6), nrow = 1000)
  shared_mat <- share(mat)

  # The shared object is lightweight - only metadata
  expect_output(print(object.size(shared_mat)), "bytes")  # Small
  expect_lt(as.numeric(object.size(shared_mat)), 20000)

  # Get the data back with fetch()
  recovered <- fetch(shared_mat)
  expect_true(identical(mat, recovered))  # TRUE

  # Workers access without copying: the same work on a PSOCK cluster
  cl <- psock_cluster(2)
  result_psock <- parallel::parLapply(cl, 1:10, function(i, shared_mat) {
    data <- shard::fetch(shared_mat)
    sum(data[i, ])
  }, shared_mat)
  parallel::stopCluster(cl)
  expect_equal(unlist(result_psock), rowSums(mat)[1:10])

  pool_ok <- exists("pool_create", envir = asNamespace("shard")) &&
             exists("pool_lapply", envir = asNamespace("shard"))
  if (pool_ok) {
    pool_create <- get("pool_create", envir = asNamespace("shard"))
    pool_lapply <- get("pool_lapply", envir = asNamespace("shard"))
    # Use in parallel (workers access without copying)
    pool_create(4)
    result <- pool_lapply(1:10, function(i) {
      # Workers can access shared_mat efficiently
      data <- fetch(shared_mat)
      sum(data[i, ])
    })
    expect_equal(unlist(result), rowSums(mat)[1:10])
    if (exists("pool_stop", envir = asNamespace("shard"))) get("pool_stop", envir = asNamespace("shard"))()
  }

  # Clean up when done
  close(shared_mat)

  # Deep sharing with alias preservation
  big_mat <- matrix(rnorm(1e6), nrow = 1000)
  lst <- list(a = big_mat, b = big_mat)  # Same object referenced twice
  shared_lst <- share(lst, deep = TRUE, min_bytes = 1000)
  # Creates only ONE shared segment - both 'a' and 'b' reference it
  expect_length(shared_lst$segments, 1L)
  expect_identical(fetch(shared_lst), lst)
  close(shared_lst)
  if (!pool_ok) skip("pool_create()/pool_lapply() are not in this build of shard: the pool part of the example ran on a PSOCK cluster instead")
})
