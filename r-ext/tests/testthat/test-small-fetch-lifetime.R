# A small fetched vector frees its view with its own state (one finalizer, no
# separate one on the view holder) until a second vector is made from the same
# holder (a duplicate, a view), which gives the holder its own finalizer first
# (vec.c, holder_tag). These cases check that every vector stays readable while
# it lives, whichever dies first, and that the view really goes with the last.

test_that("a duplicate outlives the fetched vector it was made from", {
  s <- share(c(1, 2, 3))
  on.exit(close(s), add = TRUE)
  for (i in 1:20) {
    y <- fetch(s)
    z <- y
    z[1] <- 10 + i          # R duplicates y (a second vector of the holder), then writes
    w <- y
    rm(y)
    invisible(gc())
    expect_identical(z[1:3] + 0, c(10 + i, 2, 3))
    expect_identical(w[1:3] + 0, c(1, 2, 3))
    rm(w)
    invisible(gc())
    expect_identical(sum(z), 10 + i + 5)
    rm(z)
  }
  invisible(gc())
  expect_identical(fetch(s), c(1, 2, 3))
})

test_that("small character and logical vectors, dropped and collected, then the object closes cleanly", {
  s1 <- share(c("a", NA, "ccc"))
  s2 <- share(c(TRUE, NA, FALSE))
  for (i in 1:50) {
    a <- fetch(s1)
    b <- fetch(s2)
    expect_identical(a == "ccc", c(FALSE, NA, TRUE))
    expect_identical(sum(b, na.rm = TRUE), 1L)
    if (i %% 10 == 0) invisible(gc())
  }
  keep <- fetch(s1)
  rm(a, b)
  invisible(gc())
  expect_true(close(s1))
  expect_true(close(s2))
  expect_error(keep[1:2], "closed")
  expect_error(fetch(s1), "closed")
})

test_that("each fetched small vector's view goes with it (another process maps the region again)", {
  skip_if_not_installed("callr")
  s <- share(c(1, 2))
  on.exit(close(s), add = TRUE)
  r <- callr_r(function(s) {
    library(shard)
    d0 <- shard_diagnostics()$foreign_regions_mapped
    ok <- TRUE
    for (i in 1:5) {
      y <- fetch(s)
      ok <- ok && identical(y[1:2] + 0, c(1, 2))
      rm(y)
      invisible(gc())
    }
    d1 <- shard_diagnostics()$foreign_regions_mapped
    # A duplicate keeps the view after its original is collected.
    y <- fetch(s)
    z <- y
    z[2] <- 5
    rm(y)
    invisible(gc())
    ok2 <- identical(z[1:2] + 0, c(1, 5))
    list(ok = ok, maps = d1 - d0, ok2 = ok2)
  }, list(s))
  expect_true(r$ok)
  expect_true(r$ok2)
  # The region mapping lives while a view of it does (the registry holds it
  # weakly): five fetches, each collected before the next, map it five times.
  # A view that outlived its vector would keep it mapped: 1.
  expect_equal(r$maps, 5)
})
