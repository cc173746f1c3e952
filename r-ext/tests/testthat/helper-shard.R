# Helpers for the shard tests. Skips say why, loudly.

cow_counters <- function() {
  d <- shard_diagnostics()
  c(cow_mappings = d$cow_mappings, cow_bytes = d$cow_bytes, copies = d$copies, copy_bytes = d$copy_bytes)
}

skip_if_no_callr <- function() {
  if (!requireNamespace("callr", quietly = TRUE)) testthat::skip("callr is not installed: cannot start another R process")
}

skip_if_no_fork <- function() {
  if (.Platform$OS.type != "unix") testthat::skip("forked workers need a unix system")
}

# A PSOCK cluster whose workers load shard from the same library as this process.
psock_cluster <- function(n = 1L) {
  cl <- parallel::makePSOCKcluster(n)
  libs <- .libPaths()
  parallel::clusterCall(cl, function(l) { .libPaths(l); invisible(NULL) }, libs)
  cl
}

callr_r <- function(fun, args = list()) {
  callr::r(fun, args, libpath = .libPaths(), env = c(callr::rcmd_safe_env(), R_LIBS = paste(.libPaths(), collapse = ":")))
}
