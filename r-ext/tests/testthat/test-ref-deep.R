# Reference pages share (deep = TRUE), print.shard_deep_shared, shard_share_hook: the
# summary object, the hook context and results, and issue 12 point 8 (external
# pointers in environments and attributes, hook errors counted as skipped, deep
# nesting).

test_that("summary has the reference's fields; the earlier names still index it", {
  big <- matrix(rnorm(10000), nrow = 100)
  s <- share(list(a = big, b = big, small = 1:10), deep = TRUE, min_bytes = 1000)
  sm <- s$summary
  for (f in c("shared_count", "alias_count", "kept_count", "skipped_count", "cycle_count", "total_shared_bytes"))
    expect_true(f %in% names(sm), info = f)
  expect_equal(sm$shared_count, 1)
  expect_equal(sm$alias_count, 1)
  expect_equal(sm$kept_count, 1)
  expect_equal(sm$cycle_count, 0)
  expect_true(sm$total_shared_bytes >= 80000 && sm$total_shared_bytes < 100000)
  expect_identical(sm[["shared"]], 1L)
  expect_identical(sm[["aliased"]], 1L)
  expect_identical(sm[["kept"]], 1L)
  expect_identical(sm[["cycles"]], 0L)
  expect_output(print(sm), "1 shared")
  expect_output(res <- withVisible(print(s)), "shard_deep_shared")
  expect_false(res$visible)
  close(s)
})

test_that("shard_share_hook(x, ctx): the generic and default have the reference's signature", {
  expect_identical(names(formals(shard_share_hook)), c("x", "ctx"))
  expect_identical(names(formals(shard:::shard_share_hook.default)), c("x", "ctx"))
  expect_identical(shard:::shard_share_hook.default(1, list()), list())
})

test_that("the hook gets the documented context and may return skip_slots and absolute paths", {
  seen <- new.env()
  registerS3method("shard_share_hook", "shard_ref_ctx", function(x, ctx) {
    seen$ctx <- ctx
    list(force_share_paths = paste0(ctx$path, "$coefficients"), skip_paths = "cache")
  }, envir = asNamespace("shard"))
  m <- structure(list(coefficients = rnorm(10), cache = rnorm(1e4), data = rnorm(1e4)), class = "shard_ref_ctx")
  s <- share(list(model = m), deep = TRUE, min_bytes = 1000, mode = "balanced")
  ctx <- seen$ctx
  for (f in c("path", "class", "mode", "min_bytes", "types", "deep")) expect_true(f %in% names(ctx), info = f)
  expect_identical(ctx$path, "x$model")
  expect_identical(ctx$class, "shard_ref_ctx")
  expect_identical(ctx$mode, "balanced")
  expect_identical(ctx$min_bytes, 1000)
  expect_true(ctx$deep)
  expect_true(all(c("double", "integer") %in% ctx$types))
  comp <- s$components
  expect_identical(comp$action[comp$path == "x$model$coefficients"], "shared")
  expect_identical(comp$action[comp$path == "x$model$cache"], "skipped")
  expect_identical(comp$action[comp$path == "x$model$data"], "shared")
  expect_identical(unclass(fetch(s)$model), unclass(m))
  close(s)
  # "<root>" is the reference's name of the root
  registerS3method("shard_share_hook", "shard_ref_root", function(x, ctx) list(skip_paths = "<root>$big"),
                   envir = asNamespace("shard"))
  s2 <- share(structure(list(big = rnorm(1e4)), class = "shard_ref_root"), deep = TRUE, min_bytes = 1000)
  expect_identical(s2$components$action[s2$components$path == "x$big"], "skipped")
  close(s2)
})

test_that("skip_slots keeps S4 slots in place, unwalked", {
  setClass("ShardRefModel", representation(coefficients = "numeric", cache = "numeric"), where = globalenv())
  on.exit(removeClass("ShardRefModel", where = globalenv()))
  registerS3method("shard_share_hook", "ShardRefModel", function(x, ctx) list(skip_slots = "cache"),
                   envir = asNamespace("shard"))
  obj <- new("ShardRefModel", coefficients = rnorm(1e4), cache = rnorm(1e4))
  s <- share(obj, deep = TRUE, min_bytes = 1000)
  comp <- s$components
  expect_identical(comp$action[comp$path == "x@cache"], "skipped")
  expect_identical(comp$action[comp$path == "x@coefficients"], "shared")
  got <- fetch(s)
  expect_identical(got@cache, obj@cache)
  expect_false(is_shared(got@cache))
  expect_true(is_shared(got@coefficients))
  close(s)
})

test_that("hooks written for the earlier signature (x, path = , ...) still work", {
  registerS3method("shard_share_hook", "shard_ref_oldpath", function(x, path, ...) {
    list(force_share_paths = paste0(path, "$meta"))
  }, envir = asNamespace("shard"))
  registerS3method("shard_share_hook", "shard_ref_olddots", function(x, ...) {
    p <- list(...)$path
    list(skip_paths = if (is.character(p)) "big")
  }, envir = asNamespace("shard"))
  a <- structure(list(meta = 1:10), class = "shard_ref_oldpath")
  b <- structure(list(big = rnorm(1e4)), class = "shard_ref_olddots")
  s <- share(list(a = a, b = b), deep = TRUE, min_bytes = 1000)
  comp <- s$components
  expect_identical(comp$action[comp$path == "x$a$meta"], "shared")
  expect_identical(comp$action[comp$path == "x$b$big"], "skipped")
  close(s)
})

test_that("hook errors are counted as skipped and keep the component in place (issue 12 point 8)", {
  registerS3method("shard_share_hook", "shard_ref_badhook", function(x, ctx) stop("hook exploded"),
                   envir = asNamespace("shard"))
  y <- list(ok = rnorm(1e4), bad = structure(list(v = rnorm(1e4)), class = "shard_ref_badhook"))
  s <- share(y, deep = TRUE, min_bytes = 1000)
  expect_identical(s$summary$skipped_count, 1L)
  expect_identical(s$summary$hook_error_count, 1L)
  expect_identical(s$summary$shared_count, 1L)    # only x$ok: x$bad is not walked
  got <- fetch(s)
  expect_identical(got, y)
  expect_false(is_shared(got$bad$v))
  close(s)
  expect_error(share(y, deep = TRUE, min_bytes = 1000, mode = "strict"), "hook exploded \\(at x\\$bad")
})

test_that("strict mode catches external pointers in attributes (issue 12 point 8)", {
  x <- list(a = structure(1:3, p = new("externalptr")), b = rnorm(10))
  expect_error(share(x, deep = TRUE, mode = "strict"),
               "cannot share an external pointer \\(at attr\\(x\\$a, \"p\"\\); mode = \"strict\"\\)")
  l <- structure(list(v = 1), fn = function() 1)
  expect_error(share(list(l = l), deep = TRUE, mode = "strict"), "a function \\(at attr\\(x\\$l, \"fn\"\\)")
  s <- share(x, deep = TRUE)   # balanced: kept in place, counted skipped
  expect_identical(s$summary$skipped_count, 1L)
  expect_identical(s$components$path[s$components$action == "skipped"], "attr(x$a, \"p\")")
  close(s)
})

test_that("an environment holding an external pointer is not shared silently (issue 12 point 8)", {
  e <- new.env()
  e$p <- new("externalptr")
  e$v <- rnorm(1e4)
  expect_error(share(list(env = e), deep = TRUE, min_bytes = 1000, mode = "strict"),
               "external pointer \\(at x\\$env\\$p")
  s <- share(list(env = e), deep = TRUE, min_bytes = 1000)
  expect_identical(s$summary$skipped_count, 1L)
  expect_identical(s$components$action[s$components$path == "x$env$p"], "skipped")
  expect_identical(s$components$action[s$components$path == "x$env$v"], "shared")
  close(s)
  # The check share(x) (not deep) needs: environments walked, any depth.
  bad <- shard:::find_unshareable(list(a = 1, env = e), "x")
  expect_identical(bad, list(what = "an external pointer", path = "x$env$p"))
  expect_null(shard:::find_unshareable(list(a = 1, e = new.env()), "x"))
  expect_null(shard:::find_unshareable(list(g = globalenv()), "x"))
  # functions inside environments serialize fine (only pointers are lost): allowed
  obj <- new.env(); obj$method <- function() 1; obj$data <- 1:3
  expect_null(shard:::find_unshareable(obj, "x"))
  obj$inner <- new.env()
  obj$inner$conn <- new("externalptr")
  expect_identical(shard:::find_unshareable(list(o = obj), "x")$path, "x$o$inner$conn")
  # environments reached through attributes or closures are context, not walked
  make_formula <- function() { p <- new("externalptr"); y ~ x }
  expect_null(shard:::find_unshareable(list(f = make_formula()), "x"))
  make_closure <- function() { p <- new("externalptr"); function() p }
  expect_null(shard:::find_unshareable(list(e = list2env(list(cl = make_closure()))), "x"))
  # S4 slots are components
  expect_identical(shard:::find_unshareable(list(a = 1, x = structure(1, p = new("externalptr"))), "x")$path,
                   "attr(x$x, \"p\")")
  f <- make_formula()
  s3 <- share(list(f = f, v = rnorm(1e4)), deep = TRUE, min_bytes = 1000, mode = "strict")
  expect_identical(s3$summary$skipped_count, 0L)
  close(s3)
  # a function that is itself a component is still refused (data, not code)
  expect_identical(shard:::find_unshareable(list(f = sum), "x")$what, "a function")
})

nest <- function(n, leaf) { x <- list(leaf); for (i in seq_len(n)) x <- list(x); x }

test_that("deep sharing walks lists nested 5000 deep (issue 12 point 8: iterative, not recursive)", {
  x <- nest(5000, rnorm(1e4))
  s <- share(x, deep = TRUE, min_bytes = 1000)
  expect_identical(s$summary$shared_count, 1L)
  got <- fetch(s)
  expect_identical(got, x)
  leaf <- got
  for (i in seq_len(5001)) leaf <- leaf[[1]]
  expect_true(is_shared(leaf))
  close(s)
  expect_null(shard:::find_unshareable(x, "x"))
  y <- nest(5000, new("externalptr"))
  expect_match(shard:::find_unshareable(y, "x")$what, "external pointer")
  expect_error(share(y, deep = TRUE, mode = "strict"), "external pointer")
  # environments nested deep, too
  e <- new.env(); cur <- e
  for (i in 1:3000) { cur$child <- new.env(); cur <- cur$child }
  cur$v <- rnorm(1e4)
  s2 <- share(list(e = e), deep = TRUE, min_bytes = 1000)
  expect_identical(s2$summary$shared_count, 1L)
  got2 <- fetch(s2)$e
  for (i in 1:3000) got2 <- got2$child
  expect_identical(got2$v, cur$v)
  close(s2)
})
