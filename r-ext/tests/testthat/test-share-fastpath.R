# share() with default arguments takes a fast path (options read in C, the
# shard_shared object built in C, fetch() of a plain vector finished in C): it
# must give exactly what the general path gives.

test_that("the default-argument fast path gives the same object as the general path", {
  for (x in list(as.double(1:10), 1:5, c(TRUE, NA), as.raw(0:3), complex(real = 1:2, imaginary = 3),
                 c("a", NA, "b"), matrix(1:6, 2), array(1:24, 2:4), array(1:3, 3),
                 c(a = 1, b = 2), factor(c("u", "v")), structure(1:3, class = "myclass"),
                 list(1, "a"), data.frame(a = 1:2, b = c("x", "y")), NULL, quote(a + b))) {
    fast <- share(x)
    slow <- share(x, backing = "auto", readonly = TRUE)
    expect_identical(names(fast), names(slow))
    for (f in setdiff(names(fast), c("handle", "path"))) expect_identical(fast[[f]], slow[[f]], info = f)
    expect_identical(class(fast), "shard_shared")
    expect_identical(fast$class_info$class, class(x))
    expect_identical(fast$class_info$length, length(x))
    expect_identical(fast$class_info$dim, dim(x))
    expect_match(fast$path, "^/proc/[0-9]+/fd/[0-9]+$")
    expect_identical(fetch(fast), x)
    expect_identical(fetch(slow), x)
    expect_true(close(fast))
    expect_false(close(fast))
    close(slow)
  }
})

test_that("options in unusual but valid forms still work, and bad ones are still named", {
  x <- runif(10)
  withr::with_options(list(shard.copy_threads = 2, shard.numa = "default", shard.huge_pages = FALSE,
                           shard.cow = "allow", shard.serialize = "handle"), {
    s <- share(x)
    expect_identical(s$options$copy_threads, 2L)
    expect_identical(s$options$numa, "default")
    expect_false(s$options$huge_pages)
    expect_identical(fetch(s), x)
    close(s)
  })
  withr::with_options(list(shard.copy_threads = 2.5), expect_error(share(x), "shard.copy_threads"))
  withr::with_options(list(shard.copy_threads = TRUE), expect_error(share(x), "shard.copy_threads"))
  withr::with_options(list(shard.numa = "bind:x"), expect_error(share(x), "shard.numa"))
  withr::with_options(list(shard.huge_pages = NA), expect_error(share(x), "shard.huge_pages"))
  withr::with_options(list(shard.cow = "nope"), expect_error(share(x), "shard.cow"))
  withr::with_options(list(shard.serialize = c("handle", "data")), expect_error(share(x), "shard.serialize"))
})

test_that("fetch() of a vector with attributes or of a list still restores them", {
  x <- matrix(runif(6), 2, dimnames = list(c("a", "b"), NULL))
  s <- share(x)
  expect_identical(fetch(s), x)
  expect_identical(shared_info(fetch(s))$kind, "double")
  close(s)
  expect_error(fetch(s), "closed")
})

test_that("a small share() + close() costs no more than a few serialize() calls", {
  # Another object stays live, so that the loop does not measure the slab region
  # being released and re-created at every close (an allocator cost, see
  # docs/PERFORMANCE.md "R comparison").
  keep <- share(runif(10))
  on.exit(close(keep))
  x <- as.double(1:64)
  for (i in 1:200) close(share(x))   # warm up
  n <- 2000
  t_share <- system.time(for (i in seq_len(n)) close(share(x)))[["elapsed"]]
  t_ser <- system.time(for (i in seq_len(n)) unserialize(serialize(x, NULL, xdr = FALSE)))[["elapsed"]]
  # 1.5-3x on this 2-CPU VM, quiet or loaded; it was ~25x before issue #6. Loose
  # bound for noisy machines.
  expect_lt(t_share, 10 * max(t_ser, 0.01))
})
