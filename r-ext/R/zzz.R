#' @useDynLib shard, .registration = TRUE
NULL

.onLoad <- function(libname, pkgname) {
  # Remove what dead owners left in /dev/shm and the per-user directory.
  try(.Call(C_sweep), silent = TRUE)
  try(user_id(), silent = TRUE)
  # At the end of the session, remove the per-user directory if nothing is left
  # in it (see remove_empty_user_dir()).
  reg.finalizer(.exit_hook, function(e) remove_empty_user_dir(), onexit = TRUE)
  invisible()
}

.exit_hook <- new.env(parent = emptyenv())

# Removes the per-user directory (`<TMPDIR>/shard-<uid>`: names, mmap backing
# files) and its `names/` (and, when node-scoped, its node subdirectory) where
# they are empty: a session that used names or mmap-backed shares and closed
# them leaves nothing in TMPDIR (R CMD check reports any file left there as
# detritus; on a cluster a job's TMPDIR stays clean). A directory that still
# holds anything (another process's names or files, an object not closed) is
# kept: rmdir(2), which file.remove() calls for a directory, removes only empty
# ones, so this never removes another process's entry. The store creates the
# directories again on next use.
remove_empty_user_dir <- function() {
  d <- tryCatch(shard_tmpdir(), error = function(e) NULL)
  if (is.null(d) || !dir.exists(d)) return(invisible(FALSE))
  dirs <- c(file.path(d, "names"), d)
  if (startsWith(basename(d), "node-")) dirs <- c(dirs, dirname(d))
  for (x in dirs) if (dir.exists(x)) suppressWarnings(file.remove(x))
  invisible(!dir.exists(d))
}
