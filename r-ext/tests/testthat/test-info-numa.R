# shared_info()$numa is the policy asked for at share time; $numa_nodes is where
# the pages really are (move_pages), in this process and in another.

test_that("shared_info() reports the measured NUMA placement of the object's pages", {
  x <- runif(3e5)                           # 2.4 MB: ~586 pages of 4 KiB
  s <- share(x)
  on.exit(close(s))
  info <- shared_info(s)
  expect_identical(info$numa, "default")
  nn <- info$numa_nodes
  if (length(nn) == 1L && is.na(nn)) skip("move_pages(2) is not available here")
  expect_true(is.numeric(nn) && !is.null(names(nn)))
  expect_true(all(grepl("^[0-9]+$", names(nn))))
  pages <- ceiling(info$data_bytes / info$page_size)
  # Every page of the data was written: all present, on the nodes listed.
  expect_equal(attr(nn, "absent"), 0)
  expect_gte(sum(nn), pages)
  expect_lte(sum(nn), pages + 1)
  nodes <- list.files("/sys/devices/system/node", pattern = "^node[0-9]+$")
  if (length(nodes)) expect_true(all(names(nn) %in% sub("node", "", nodes)))
  # A fetched vector reports the same placement, and so does a forked child.
  y <- fetch(s)
  expect_identical(names(shared_info(y)$numa_nodes), names(nn))
  job <- parallel::mcparallel(shared_info(s)$numa_nodes)
  expect_identical(names(parallel::mccollect(job)[[1]]), names(nn))
})

test_that("with a binding policy the measured placement is on that node", {
  nodes <- list.files("/sys/devices/system/node", pattern = "^node[0-9]+$")
  if (!length(nodes)) skip("no NUMA topology in sysfs")
  node <- sub("node", "", nodes[1])
  withr::with_options(list(shard.numa = paste0("bind:", node)), {
    s <- share(runif(3e5))
  })
  on.exit(close(s))
  info <- shared_info(s)
  if (length(info$numa_nodes) == 1L && is.na(info$numa_nodes)) skip("move_pages(2) is not available here")
  expect_identical(info$numa, paste0("bind:", node))
  expect_identical(names(info$numa_nodes), node)
})
