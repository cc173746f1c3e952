# shard_diagnostics() reports the allocator's kept empty slab regions
# (retained_regions: held now; regions_kept: times a region whose last object
# left was kept instead of released). Each case runs in a fresh process, so that
# no other test's object shares the small-object region.

test_that("shard_diagnostics() has retained_regions and regions_kept as numbers", {
  d <- shard_diagnostics()
  for (nm in c("retained_regions", "regions_kept")) {
    expect_true(nm %in% names(d), info = nm)
    expect_true(is.numeric(d[[nm]]) && length(d[[nm]]) == 1L && d[[nm]] >= 0, info = nm)
  }
  expect_lte(d$retained_regions, d$regions)
})

test_that("sharing and closing a lone small object keeps its region, and diagnostics show it", {
  skip_if_not_installed("callr")
  cycle <- function() {
    library(shard)
    d0 <- shard_diagnostics()
    s <- share(c(1, 2))
    d1 <- shard_diagnostics()
    y <- fetch(s)
    close(s)
    d2 <- shard_diagnostics()
    s <- share(c(3, 4))            # reuses the kept region
    d3 <- shard_diagnostics()
    close(s)
    d4 <- shard_diagnostics()
    f <- function(d) c(d$regions, d$retained_regions, d$regions_kept, d$regions_created, d$regions_released)
    rbind(f(d0), f(d1), f(d2), f(d3), f(d4))
  }
  m <- callr_r(cycle)
  colnames(m) <- c("regions", "retained", "kept", "created", "released")
  # A fresh process: nothing held or kept yet.
  expect_equal(unname(m[1, c("regions", "retained", "kept")]), c(0, 0, 0))
  # Live object: one region, in use, not a kept one.
  expect_equal(unname(m[2, c("regions", "retained", "kept")]), c(1, 0, 0))
  # Closed: the region stays, counted as retained, and kept once.
  expect_equal(unname(m[3, c("regions", "retained", "kept")]), c(1, 1, 1))
  expect_equal(m[3, "released"], m[1, "released"])
  # The next small object takes the kept region: no new one.
  expect_equal(unname(m[4, c("regions", "retained")]), c(1, 0))
  expect_equal(m[4, "created"], m[3, "created"])
  # Closed again: kept a second time, still one region.
  expect_equal(unname(m[5, c("regions", "retained", "kept")]), c(1, 1, 2))

  # With the policy off (SHARD_RETAIN_EMPTY_REGIONS=0) nothing is kept.
  m0 <- callr::r(cycle, libpath = .libPaths(),
                 env = c(callr::rcmd_safe_env(), R_LIBS = paste(.libPaths(), collapse = ":"),
                         SHARD_RETAIN_EMPTY_REGIONS = "0"))
  expect_equal(unname(m0[5, 1:3]), c(0, 0, 0))
  expect_equal(m0[5, 5] - m0[1, 5], 2)
})
