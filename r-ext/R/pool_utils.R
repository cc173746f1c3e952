# Small utilities of the pool (see ?utils, ?is_windows): the platform, the
# default number of workers, and byte sizes written as text ("2GB").

#' @export
is_windows <- function() identical(.Platform$OS.type, "windows")

# The default pool size: detectCores() - 1 (at least 1), at most 2 while
# R CMD check runs (CRAN's limit on cores used by checks).
.default_workers <- function() {
  cores <- tryCatch(parallel::detectCores(), error = function(e) NA_integer_)
  n <- if (is.na(cores)) 1L else max(1L, as.integer(cores) - 1L)
  checking <- nzchar(Sys.getenv("_R_CHECK_PACKAGE_NAME_")) ||
    tolower(Sys.getenv("_R_CHECK_LIMIT_CORES_")) %in% c("true", "warn", "1")
  if (checking) n <- min(n, 2L)
  n
}

# A size in bytes from a number (bytes) or text: "2GB", "512 MB", "1.5GiB",
# "100k", "4096". Units are binary whether written KB or KiB (1 KB = 1024
# bytes, "2GB" = 2 * 1024^3), case-insensitive; a bare letter (k, m, g, t)
# means the same. NULL or Inf means no limit.
parse_bytes <- function(x, arg = "size") {
  bad <- function() stop(sprintf(paste0("shard: `%s` must be a number of bytes or a size such as \"2GB\", ",
                                        "\"512MB\" or \"1.5GiB\" (got %s)"), arg,
                                 paste(deparse(x, nlines = 1L), collapse = "")), call. = FALSE)
  if (is.null(x)) return(Inf)
  if (length(x) != 1L || is.na(x)) bad()
  if (is.numeric(x)) {
    if (x <= 0) bad()
    return(as.numeric(x))
  }
  if (!is.character(x)) bad()
  m <- regmatches(x, regexec("^\\s*([0-9]*\\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\\s*([A-Za-z]*)\\s*$", x, perl = TRUE))[[1]]
  if (length(m) != 3L) bad()
  value <- as.numeric(m[2])
  unit <- toupper(m[3])
  if (!nzchar(unit)) unit <- "B"
  mult <- switch(unit, "B" = 1,
                 "K" = , "KB" = , "KIB" = 1024, "M" = , "MB" = , "MIB" = 1024^2,
                 "G" = , "GB" = , "GIB" = 1024^3, "T" = , "TB" = , "TIB" = 1024^4, NA_real_)
  if (is.na(mult) || !is.finite(value) || value <= 0) bad()
  value * mult
}
