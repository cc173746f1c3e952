#' @useDynLib shard, .registration = TRUE
NULL

.onLoad <- function(libname, pkgname) {
  # Remove what dead owners left in /dev/shm and the per-user directory.
  try(.Call(C_sweep), silent = TRUE)
  try(user_id(), silent = TRUE)
  invisible()
}
