# pool_create() against its reference page: arguments, defaults, returned
# object and fields, errors (and our additions `type`, `set_default`).

test_that("pool_create() has the reference's arguments and defaults, then ours", {
  f <- formals(pool_create)
  expect_identical(names(f), c("n", "rss_limit", "rss_drift_threshold", "heartbeat_interval",
                               "min_recycle_interval", "init_expr", "packages", "type", "set_default"))
  expect_identical(f$n, quote(.default_workers()))
  expect_identical(f$rss_limit, "2GB")
  expect_identical(f$rss_drift_threshold, 0.5)
  expect_identical(f$heartbeat_interval, 5)
  expect_identical(f$min_recycle_interval, 1)
  expect_null(f$init_expr)
  expect_null(f$packages)
  expect_identical(f$set_default, TRUE)
})

test_that(".default_workers() is detectCores() - 1, at least 1, at most 2 under R CMD check", {
  cores <- parallel::detectCores()
  withr::local_envvar(c("_R_CHECK_PACKAGE_NAME_" = "", "_R_CHECK_LIMIT_CORES_" = ""))
  expect_identical(shard:::.default_workers(), max(1L, as.integer(cores) - 1L))
  withr::local_envvar(c("_R_CHECK_LIMIT_CORES_" = "TRUE"))
  expect_lte(shard:::.default_workers(), 2L)
  expect_gte(shard:::.default_workers(), 1L)
})

test_that("pool_create() returns the pool invisibly, stores it, and has the reference's fields", {
  if (!is.null(old <- pool_get())) pool_stop(old)
  vis <- withVisible(pool_create(1, rss_limit = 3e9, rss_drift_threshold = 2, min_recycle_interval = 0.5,
                                 packages = "tools", init_expr = quote(y <- 1)))
  p <- vis$value
  withr::defer(pool_stop(p))
  expect_false(vis$visible)
  expect_s3_class(p, "shard_pool")
  expect_identical(pool_get(), p)                       # "also stored in the package environment"
  expect_equal(p$n, 1L)
  expect_equal(p$rss_limit_bytes, 3e9)
  expect_equal(p$rss_drift_threshold, 2)
  expect_equal(p$heartbeat_interval, 5)
  expect_equal(p$min_recycle_interval, 0.5)
  expect_identical(p$packages, "tools")
  expect_identical(p$init_expr, quote(y <- 1))
  expect_s3_class(p$created_at, "POSIXct")
  expect_length(p$workers, 1)
  expect_s3_class(p$workers[[1]], "shard_worker")
  expect_named(p$stats, c("total_recycles", "total_deaths", "total_retries", "total_tasks"))
  expect_identical(p$type, "psock")
  # the workers are supervised from the start: each has a baseline
  expect_true(p$workers[[1]]$rss_baseline > 0)
})

test_that("rss_limit takes bytes or sizes as text", {
  pb <- shard:::parse_bytes
  expect_equal(pb("2GB"), 2 * 1024^3)
  expect_equal(pb("512MB"), 512 * 1024^2)
  expect_equal(pb("512 mb"), 512 * 1024^2)
  expect_equal(pb("1.5GiB"), 1.5 * 1024^3)
  expect_equal(pb("100k"), 102400)
  expect_equal(pb("4096"), 4096)
  expect_equal(pb(1e9), 1e9)
  expect_equal(pb(Inf), Inf)
  expect_equal(pb(NULL), Inf)
  for (bad in list("abc", "2XB", -1, 0, "", NA, c(1, 2), TRUE))
    expect_error(pool_create(1, rss_limit = bad), "`rss_limit` must be a number of bytes or a size such as \"2GB\"")
})

test_that("pool_create() refuses bad arguments before starting anything, saying what to pass", {
  expect_error(pool_create(0), "`n` must be a single whole number >= 1")
  expect_error(pool_create(1.5), "`n` must be a single whole number >= 1")
  expect_error(pool_create(1, rss_drift_threshold = 0), "`rss_drift_threshold` must be a single number > 0")
  expect_error(pool_create(1, rss_drift_threshold = "a"), "`rss_drift_threshold` must be")
  expect_error(pool_create(1, heartbeat_interval = -1), "`heartbeat_interval` must be a single number of seconds > 0")
  expect_error(pool_create(1, min_recycle_interval = -1), "`min_recycle_interval` must be a single non-negative")
  expect_error(pool_create(1, min_recycle_interval = NA), "`min_recycle_interval` must be")
  expect_error(pool_create(1, packages = 1), "`packages` must be NULL or a character vector")
  expect_error(pool_create(1, packages = NA_character_), "`packages` must be NULL or a character vector")
  expect_error(pool_create(1, init_expr = 42), "`init_expr` must be NULL, a quoted expression")
  expect_error(pool_create(1, type = "mpi"), "`type` must be one of")
  expect_error(pool_create(1, set_default = NA), "`set_default` must be TRUE or FALSE")
})

test_that("heartbeat_interval is deprecated: a non-default value warns and changes nothing", {
  expect_warning(p <- pool_create(1, heartbeat_interval = 2, set_default = FALSE),
                 "`heartbeat_interval` is deprecated and has no effect")
  withr::defer(pool_stop(p))
  expect_identical(pool_sapply(1:2, function(i) i, pool = p), 1:2)
  expect_no_warning(p2 <- pool_create(1, heartbeat_interval = 5, set_default = FALSE))
  pool_stop(p2)
})

test_that("our earlier form pool_create(n, type) still works; type = \"fork\" as well", {
  skip_if_no_fork()
  p <- pool_create(1, "fork", set_default = FALSE)
  withr::defer(pool_stop(p))
  expect_identical(p$type, "fork")
  expect_equal(p$rss_limit_bytes, 2 * 1024^3)
  expect_identical(pool_sapply(1:3, function(i) i * 2L, pool = p), c(2L, 4L, 6L))
})
