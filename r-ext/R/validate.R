# Argument checks: every error names the argument.

arg_choice <- function(value, choices, arg) {
  if (identical(value, choices)) return(choices[[1]])
  if (!is.character(value) || length(value) != 1L || is.na(value))
    stop(sprintf("shard: `%s` must be one of %s", arg, paste0('"', choices, '"', collapse = ", ")), call. = FALSE)
  if (!value %in% choices)
    stop(sprintf("shard: `%s` must be one of %s, not \"%s\"", arg,
                 paste0('"', choices, '"', collapse = ", "), value), call. = FALSE)
  value
}

arg_flag <- function(value, arg) {
  if (!is.logical(value) || length(value) != 1L || is.na(value))
    stop(sprintf("shard: `%s` must be TRUE or FALSE", arg), call. = FALSE)
  value
}

arg_name <- function(name) {
  if (is.null(name)) return(NULL)
  if (!is.character(name) || length(name) != 1L || is.na(name) || !nzchar(name))
    stop("shard: `name` must be NULL or a single non-empty string", call. = FALSE)
  if (!grepl("^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$", name))
    stop("shard: `name` may use only letters, digits, '.', '_' and '-' (at most 200, not starting with '.'): \"",
         name, "\"", call. = FALSE)
  name
}

arg_bytes <- function(value, arg) {
  if (!is.numeric(value) || length(value) != 1L || is.na(value) || value < 0 || !is.finite(value))
    stop(sprintf("shard: `%s` must be a single non-negative number of bytes", arg), call. = FALSE)
  value
}

# Refuses what cannot be shared as data: functions, external pointers, weak refs.
check_shareable <- function(x, path, seen = new.env(parent = emptyenv())) {
  bad <- switch(typeof(x), closure = , builtin = , special = "a function",
                externalptr = "an external pointer", weakref = "a weak reference", NULL)
  if (!is.null(bad))
    stop(sprintf("shard: cannot share %s (at %s): share data, not code or pointers", bad, path), call. = FALSE)
  if (is.list(x) && !is.pairlist(x)) {
    nms <- names(x)
    for (i in seq_along(x)) {
      sub <- if (!is.null(nms) && nzchar(nms[i])) paste0(path, "$", nms[i]) else sprintf("%s[[%d]]", path, i)
      check_shareable(x[[i]], sub, seen)
    }
  }
  invisible(TRUE)
}
