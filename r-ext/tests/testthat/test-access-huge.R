# Huge pages (issue 11, point 4): reads that ask R for a writable pointer
# (range, which.max, ==, identical) of a hugetlb object never copy it; a write
# still goes to a private copy and never reaches the shared bytes.

hugetlb_vector <- function(bytes = 32 * 2^20) {
  old <- options(shard.huge_pages = TRUE)
  on.exit(options(old))
  x <- as.double(seq_len(bytes / 8))
  s <- share(x)
  page <- shared_info(s)$page_size
  if (!isTRUE(page >= 2^21)) {
    close(s)
    message("SKIPPED: the object got ", page, "-byte pages, not hugetlb (no free huge pages?)")
    testthat::skip("no hugetlb pages for the object (see /proc/meminfo HugePages_Free)")
  }
  list(x = x, s = s)
}

test_that("reads of a hugetlb object that ask for a writable pointer do not copy it", {
  h <- hugetlb_vector()
  y <- fetch(h$s)
  d0 <- shard_diagnostics()
  expect_identical(range(y), range(h$x))
  expect_identical(which.max(y), which.max(h$x))
  expect_identical(y == 7, h$x == 7)
  expect_identical(identical(y, h$x), TRUE)
  expect_identical(sort(y, decreasing = TRUE)[1:3], sort(h$x, decreasing = TRUE)[1:3])
  d1 <- shard_diagnostics()
  expect_equal(d1$copies - d0$copies, 0)
  expect_equal(d1$copy_bytes - d0$copy_bytes, 0)
  expect_equal(d1$cow_mappings - d0$cow_mappings, 0)
  expect_equal(d1$readonly_grants - d0$readonly_grants, 1)   # once per vector, not per call
  # A write goes to a private copy of the duplicate R makes; the shared bytes stay.
  y2 <- y
  y2[1] <- -1
  expect_identical(y2[1:2], c(-1, 2))
  expect_identical(y[1:2], c(1, 2))
  expect_identical(fetch(h$s)[1:2], c(1, 2))
  close(h$s)
})

test_that("a hugetlb vector unserialized in this process is not mutable either (R duplicates before writing)", {
  h <- hugetlb_vector()
  y <- unserialize(serialize(fetch(h$s), NULL))
  d0 <- shard_diagnostics()
  expect_identical(range(y), range(h$x))
  expect_equal(shard_diagnostics()$copies - d0$copies, 0)
  y[3] <- 0
  expect_identical(y[3], 0)
  expect_identical(fetch(h$s)[3], 3)
  close(h$s)
})
