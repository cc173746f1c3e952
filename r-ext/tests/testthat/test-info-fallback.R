# The huge-page fallback warning says what the object really got, and fires only
# for a real fallback (to 4 KiB pages or shmem THP), not for a hugetlb-size step.

test_that("the huge-page fallback warning fires only when the object got small pages, and says so", {
  skip_if_not_installed("callr")
  res <- callr::r(function() {
    library(shard)
    x <- as.double(seq_len(5e6))            # 40 MB: asks for huge pages
    w <- character()
    s <- withCallingHandlers(share(x), warning = function(c) {
      w <<- c(w, conditionMessage(c)); invokeRestart("muffleWarning")
    })
    page <- shared_info(s)$page_size
    # A second large share never warns again (once per session).
    s2 <- withCallingHandlers(share(x + 1), warning = function(c) {
      w <<- c(w, conditionMessage(c)); invokeRestart("muffleWarning")
    })
    small <- withCallingHandlers(share(runif(10)), warning = function(c) {
      w <<- c(w, conditionMessage(c)); invokeRestart("muffleWarning")
    })
    list(page = page, warnings = w, fallbacks = shard_diagnostics()$fallbacks)
  })
  if (res$page >= 2^21) {
    expect_length(res$warnings, 0)
  } else {
    expect_length(res$warnings, 1)
    expect_match(res$warnings, "huge pages were not available for a large object: it uses (4 KiB pages|shmem transparent)")
    expect_match(res$warnings, "hugetlb 2MiB|shmem THP")
    expect_gt(res$fallbacks, 0)
  }
})

test_that("options(shard.huge_pages = FALSE) never warns about huge pages", {
  skip_if_not_installed("callr")
  w <- callr::r(function() {
    library(shard)
    options(shard.huge_pages = FALSE)
    w <- character()
    s <- withCallingHandlers(share(as.double(seq_len(5e6))), warning = function(c) {
      w <<- c(w, conditionMessage(c)); invokeRestart("muffleWarning")
    })
    w
  })
  expect_length(w, 0)
})
