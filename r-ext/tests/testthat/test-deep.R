# share(deep = TRUE): components of at least min_bytes are shared, the rest kept;
# aliases shared once; cycles follow `cycle`; hooks; strict mode; summary.

test_that("the spec example: the same matrix referenced twice makes ONE shared segment", {
  big_mat <- matrix(rnorm(1e6), nrow = 1000)
  lst <- list(a = big_mat, b = big_mat)
  shared_lst <- share(lst, deep = TRUE, min_bytes = 1000)
  expect_s3_class(shared_lst, "shard_deep_shared")
  expect_length(shared_lst$segments, 1L)
  expect_length(shared_lst$path, 1L)
  expect_identical(shared_lst$summary[["shared"]], 1L)
  expect_identical(shared_lst$summary[["aliased"]], 1L)
  expect_true(all(c("path", "backing", "size", "readonly", "class_info") %in% names(shared_lst)))
  got <- fetch(shared_lst)
  expect_identical(got, lst)
  expect_true(is_shared(got$a) && is_shared(got$b))
  # both elements are the same vector in the arena (alias preserved)
  expect_identical(shared_info(got$a)$offset, shared_info(got$b)$offset)
  expect_output(print(shared_lst), "1 shared, 1 aliased")
  expect_true(close(shared_lst))
  expect_error(sum(got$a), "closed")
})

test_that("small components stay in place, large ones are shared; data.frames and nested lists", {
  x <- list(big = rnorm(1e4), small = 1:3, nested = list(big2 = runif(2e4), tiny = "a"),
            df = data.frame(u = rnorm(5000), v = 1:5000), fn_free = NULL)
  s <- share(x, deep = TRUE, min_bytes = 10000)
  expect_identical(s$summary[["shared"]], 4L)  # big, nested$big2, df$u, df$v
  expect_true(s$summary[["kept"]] >= 2L)
  comp <- s$components
  expect_identical(comp$action[comp$path == "x$big"], "shared")
  expect_identical(comp$action[comp$path == "x$small"], "kept")
  expect_identical(comp$action[comp$path == "x$nested$big2"], "shared")
  expect_identical(comp$action[comp$path == "x$df$u"], "shared")
  got <- fetch(s)
  expect_identical(got, x)
  expect_true(is_shared(got$big))
  expect_false(is_shared(got$small))
  expect_true(is_shared(got$df$u))
  expect_identical(.row_names_info(got$df), .row_names_info(x$df))
  # the handle object itself is small: the big parts are not in it
  expect_lt(length(serialize(s, NULL)), 20000)
  close(s)
})

test_that("the default min_bytes (64 MiB) keeps small objects in place", {
  s <- share(list(a = 1:10), deep = TRUE)
  expect_identical(s$summary[["shared"]], 0L)
  expect_identical(fetch(s), list(a = 1:10))
  close(s)
})

test_that("S4 slots are walked", {
  setClass("ShardDeepS4", representation(data = "numeric", label = "character", extra = "list"),
           where = globalenv())
  on.exit(removeClass("ShardDeepS4", where = globalenv()))
  v <- rnorm(1e4)
  obj <- new("ShardDeepS4", data = v, label = "lab", extra = list(again = v, small = 1))
  s <- share(obj, deep = TRUE, min_bytes = 1000)
  expect_identical(s$summary[["shared"]], 1L)
  expect_identical(s$summary[["aliased"]], 1L)
  expect_true("x@data" %in% s$components$path)
  got <- fetch(s)
  expect_identical(got, obj)
  expect_true(is_shared(got@data))
  expect_true(is_shared(got@extra$again))
  close(s)
})

test_that("cycles through environments: error by default, skip keeps them", {
  e <- new.env()
  e$big <- rnorm(1e4)
  e$me <- list(back = e)
  x <- list(env = e)
  expect_error(share(x, deep = TRUE, min_bytes = 1000), "cycle at x\\$env\\$me\\$back")
  s <- share(x, deep = TRUE, min_bytes = 1000, cycle = "skip")
  expect_identical(s$summary[["cycles"]], 1L)
  expect_identical(s$summary[["shared"]], 1L)
  got <- fetch(s)
  expect_true(is.environment(got$env))
  expect_identical(got$env$big, e$big)
  expect_true(is_shared(got$env$big))
  expect_identical(got$env$me$back, got$env)     # the cycle points at the rebuilt environment
  expect_false(identical(got$env, e))           # a copy, the original is untouched
  expect_identical(e$big, x$env$big)
  close(s)
  # an environment referenced twice (no cycle) is rebuilt once
  e2 <- new.env(); e2$v <- rnorm(1e4)
  s2 <- share(list(a = e2, b = e2), deep = TRUE, min_bytes = 1000)
  g2 <- fetch(s2)
  expect_identical(g2$a, g2$b)
  close(s2)
  # global and namespace environments are kept as references
  s3 <- share(list(g = globalenv(), n = asNamespace("stats")), deep = TRUE, min_bytes = 0)
  expect_identical(fetch(s3)$g, globalenv())
  close(s3)
})

test_that("shard_share_hook(): skip_paths, force_share_paths and rewrite", {
  x <- structure(list(cache = rnorm(1e4), data = rnorm(1e4), meta = 1:10, huge_list = list(1, 2)),
                 class = "shard_hooked")
  registerS3method("shard_share_hook", "shard_hooked", function(x, ...) {
    list(skip_paths = "cache", force_share_paths = c("$meta", "$huge_list"),
         rewrite = function(obj) { obj$added <- "by hook"; obj })
  }, envir = asNamespace("shard"))
  s <- share(x, deep = TRUE, min_bytes = 1000)
  comp <- s$components
  expect_identical(comp$action[comp$path == "x$cache"], "skipped")
  expect_identical(comp$action[comp$path == "x$data"], "shared")
  expect_identical(comp$action[comp$path == "x$meta"], "shared")
  expect_identical(comp$action[comp$path == "x$huge_list"], "shared")
  got <- fetch(s)
  expect_identical(got$added, "by hook")
  expect_false(is_shared(got$cache))
  expect_true(is_shared(got$meta))
  expect_identical(got$huge_list, list(1, 2))
  expect_identical(unclass(got)[c("cache", "data", "meta")], unclass(x)[c("cache", "data", "meta")])
  close(s)
})

test_that("mode = \"strict\" turns hook errors and unshareable types into errors naming the path", {
  x <- list(a = rnorm(1e4), inner = list(f = function() 1, p = 2))
  s <- share(x, deep = TRUE, min_bytes = 1000)  # balanced: the function is kept, counted skipped
  expect_identical(s$summary[["skipped"]], 1L)
  got <- fetch(s)
  expect_true(is.function(got$inner$f))
  close(s)
  expect_error(share(x, deep = TRUE, min_bytes = 1000, mode = "strict"),
               "cannot share a function \\(at x\\$inner\\$f; mode = \"strict\"\\)")
  y <- list(ok = 1, bad = structure(list(v = rnorm(1e4)), class = "shard_badhook"))
  registerS3method("shard_share_hook", "shard_badhook", function(x, ...) stop("hook exploded"),
                   envir = asNamespace("shard"))
  s2 <- share(y, deep = TRUE, min_bytes = 1000)
  expect_true("hook_error" %in% s2$components$action)
  expect_identical(fetch(s2), y)
  close(s2)
  expect_error(share(y, deep = TRUE, min_bytes = 1000, mode = "strict"),
               "shard_share_hook\\(\\) failed: hook exploded \\(at x\\$bad")
  ptr <- list(p = new("externalptr"))
  expect_error(share(ptr, deep = TRUE, mode = "strict"), "external pointer \\(at x\\$p")
})

test_that("deep shares: readonly = FALSE, mmap backing and names", {
  x <- list(a = rnorm(1e4), b = 1:2)
  s <- share(x, deep = TRUE, min_bytes = 1000, backing = "mmap", readonly = FALSE, name = "shard-test-deep")
  expect_identical(s$backing, "mmap")
  expect_false(s$readonly)
  expect_false(s$segments[[1]]$readonly)
  o <- share_open("shard-test-deep")
  expect_s3_class(o, "shard_deep_shared")
  expect_identical(fetch(o), x)
  expect_error(share(1, name = "shard-test-deep"), "already taken")
  close(s)
  expect_error(share_open("shard-test-deep"), "no shared object named")
})

test_that("shared_info() and print() of a deep share", {
  s <- share(list(a = rnorm(1e4), b = "x"), deep = TRUE, min_bytes = 1000)
  info <- shared_info(s)
  expect_length(info$segments, 1L)
  expect_identical(info$summary[["shared"]], 1L)
  expect_output(print(s), "shard_deep_shared")
  expect_true(is_shared(s))
  m <- materialize(s)
  close(s)
  expect_identical(m$b, "x")
  expect_false(is_shared(m$a))
})

test_that("an active binding in a shared environment is skipped (strict: an error naming it); the rest comes back", {
  e <- new.env()
  makeActiveBinding("a", function() stop("an active binding was read"), e)
  e$b <- 1:10
  s <- share(list(e = e), deep = TRUE, min_bytes = 1)
  on.exit(close(s))
  expect_identical(s$summary$skipped_count, 1L)
  expect_identical(s$summary$shared_count, 1L)
  f <- fetch(s)
  expect_identical(ls(f$e), "b")
  expect_identical(f$e$b, 1:10)
  expect_error(share(list(e = e), deep = TRUE, min_bytes = 1, mode = "strict"),
               "cannot share an active binding \\(at x\\$e\\$a")
})
