# share(x) alone (issue 11, point 5) takes one C call for a vector without
# attributes; the object it returns is the one the general path builds.

test_that("share(x) alone builds the same shard_shared object as the general path", {
  for (x in list(c(1, 2), 1:3, c(TRUE, NA), as.raw(1:4), c(1i, NA), c("a", NA), numeric(0))) {
    fast <- share(x)
    slow <- share(x, readonly = TRUE)       # any argument given: the R path
    expect_identical(class(fast), "shard_shared")
    expect_identical(names(fast), names(slow))
    expect_identical(fast$class_info, slow$class_info)
    expect_identical(fast$options, slow$options)
    expect_identical(fast$backing, slow$backing)
    expect_identical(fast$readonly, TRUE)
    expect_null(fast$name)
    expect_match(fast$path, "^/proc/[0-9]+/fd/[0-9]+$")
    expect_identical(fetch(fast), x)
    expect_true(close(fast))
    close(slow)
  }
})

test_that("share(x) alone leaves vectors with attributes, objects and lists to the general path", {
  for (x in list(matrix(1:4, 2), c(a = 1), factor("a"), list(1, "b"), as.Date("2020-01-01"))) {
    s <- share(x)
    expect_identical(fetch(s), x)
    close(s)
  }
})

test_that("the constant parts of shard_shared objects are not shared by reference", {
  a <- share(c(1, 2)); b <- share(c(3, 4))
  a$class_info$class[1] <- "changed"
  names(a)[1] <- "p"
  expect_identical(b$class_info$class, "numeric")
  expect_identical(names(b)[1], "path")
  expect_identical(share(5)$class_info$class, "numeric")
  close(b)
  close(structure(unclass(a), names = names(b), class = "shard_shared"))
})

test_that("share(x) alone with a bad option names the option (the R path validates it)", {
  old <- options(shard.numa = "bogus")
  on.exit(options(old))
  expect_error(share(c(1, 2)), "shard.numa")
})
