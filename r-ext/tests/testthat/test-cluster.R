# share(x, cluster =) and shard_cluster_shared on one machine (one node). The
# several-node scenarios (pretend nodes in PID/mount/UTS namespaces, mpirun) run as
# scripts: tests/nodes/run.sh.

test_that("share(cluster =) on one node keeps one copy: the master's, nothing sent", {
  cl <- psock_cluster(2L)
  on.exit(parallel::stopCluster(cl))
  x <- seq_len(1e5) * 0.25
  s <- share(x, cluster = cl)
  expect_s3_class(s, "shard_cluster_shared")
  expect_length(s$nodes, 1L)
  expect_identical(s$bytes_sent, 0)
  expect_identical(names(s$nodes), shard:::node_identity()$key)
  expect_identical(fetch(s), x)
  got <- parallel::clusterCall(cl, function(s) {
    v <- shard::fetch(s)
    list(same = identical(v, seq_len(1e5) * 0.25), node = shard:::node_identity()$key,
         owner = shard::shared_info(v)$owner_pid)
  }, s)
  expect_true(all(vapply(got, `[[`, NA, "same")))
  # Every worker attached the master's copy (same node, no second copy).
  expect_identical(unique(vapply(got, `[[`, 0L, "owner")), Sys.getpid())
  expect_output(print(s), "nodes: 1")
  # close() on a worker is not the worker's to do: the copy stays.
  expect_false(parallel::clusterCall(cl, function(s) close(s), s)[[1]])
  expect_identical(fetch(s), x)
  expect_true(close(s))
  expect_error(fetch(s$nodes[[1]]), "closed")
})

test_that("a node without a copy gets an error naming the nodes, not another node's data", {
  cl <- psock_cluster(1L)
  on.exit(parallel::stopCluster(cl))
  s <- share(1:10, cluster = cl)
  on.exit(close(s), add = TRUE)
  t <- s
  names(t$nodes) <- "0000-other-boot/4026531836"
  names(t$hosts) <- names(t$nodes)
  expect_error(fetch(t), "holds no copy of this shared object.*copies are on: .*other-boot")
  e <- parallel::clusterCall(cl, function(t) tryCatch(shard::fetch(t), error = conditionMessage), t)[[1]]
  expect_match(e, "holds no copy")
})

test_that("share(cluster =) shares the value of an already shared object, and checks its arguments", {
  cl <- psock_cluster(1L)
  on.exit(parallel::stopCluster(cl))
  s0 <- share(c(a = 1, b = 2))
  s <- share(s0, cluster = cl)
  expect_identical(fetch(s), c(a = 1, b = 2))
  expect_false(identical(s$nodes[[1]]$handle, s0$handle))
  close(s); close(s0)
  expect_error(share(1:3, cluster = list(1)), "`cluster` must be a cluster")
  expect_error(share(1:3, cluster = cl, backing = "disk"), "`backing` must be one of")
  # A failed share leaves nothing held.
  expect_length(shard:::.shard_cluster$held, 0L)
})

test_that("node identity is the boot id and the pid namespace", {
  id <- shard:::node_identity()
  expect_identical(id$boot, readLines("/proc/sys/kernel/random/boot_id"))
  expect_match(id$key, paste0("^", id$boot, "/[0-9]+$"))
  expect_identical(id$pid, Sys.getpid())
})

test_that("share_mpi() checks its arguments (before loading Rmpi)", {
  expect_error(share_mpi(1, root = -1), "`root` must be a single whole number")
  expect_error(share_mpi(1, comm = "a"), "`comm` must be a single whole number")
})

test_that("share_mpi() outside an MPI job stops without loading Rmpi (no MPI start-up, nothing left in TMPDIR)", {
  skip_if_no_callr()
  d <- withr::local_tempdir()
  r <- callr::r(function() {
    library(shard)
    e <- tryCatch(share_mpi(1:10, root = 0, comm = 0), error = conditionMessage)
    list(err = e, rmpi = isNamespaceLoaded("Rmpi"))
  }, libpath = .libPaths(),
  env = c(callr::rcmd_safe_env(), TMPDIR = d, OMPI_COMM_WORLD_SIZE = "", PMI_SIZE = "", PMI_RANK = "", PMIX_RANK = ""))
  expect_match(r$err, "share_mpi\\(\\) runs inside an MPI job .*On one machine use share\\(\\)")
  expect_false(r$rmpi)
  expect_identical(list.files(d, all.files = TRUE, no.. = TRUE), character())
})

test_that("share_batch(): the holder's copy is fetched on its node; close() ends the holder", {
  skip_if_no_callr()
  d <- withr::local_tempdir()
  x <- seq_len(5e4) * 2
  s <- share_batch(x, dir = d)
  expect_s3_class(s, "shard_cluster_shared")
  expect_true(file.size(file.path(s$dir, "value.rds")) >= 8 * 5e4)
  expect_error(fetch(s), "no copy of this shared object on node .* run shard_node_hold")
  h <- callr::r_bg(function(s) shard::shard_node_hold(s, timeout = 60), list(s), libpath = .libPaths())
  on.exit(h$kill(), add = TRUE)
  v <- fetch(s, wait = 30)
  expect_identical(v, x)
  expect_identical(shared_info(v)$owner_pid, h$get_pid())   # the holder's copy, not a new one
  # A second holder on the same node does not make a second copy.
  expect_false(shard_node_hold(s, timeout = 0)$held)
  expect_true(close(s))
  h$wait(20000)
  expect_false(h$is_alive())
  expect_true(h$get_result()$held)
  expect_false(file.exists(file.path(s$dir, "value.rds")))
  expect_error(share_batch(1, dir = NA), "needs `dir`")
  expect_error(shard_node_hold(list()), "needs the object share_batch\\(\\) returned")
})
