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

arg_count <- function(value, arg, min = 0) {
  if (!is.numeric(value) || length(value) != 1L || is.na(value) || !is.finite(value) ||
      value != round(value) || value < min)
    stop(sprintf("shard: `%s` must be a single whole number >= %d", arg, min), call. = FALSE)
  as.numeric(value)
}

# Refuses what cannot be shared as data: functions, external pointers, weak refs,
# anywhere in lists, data.frame columns, attributes, S4 slots or component
# environments (the error names the path). find_unshareable() (deep.R) walks
# iteratively, so any depth works.
check_shareable <- function(x, path) {
  bad <- find_unshareable(x, path)
  if (!is.null(bad))
    stop(sprintf("shard: cannot share %s (at %s): share data, not code or pointers", bad$what, bad$path), call. = FALSE)
  invisible(TRUE)
}

unshareable_type <- function(x) {
  switch(typeof(x), closure = , builtin = , special = "a function",
         externalptr = "an external pointer", weakref = "a weak reference", NULL)
}

child_path <- function(path, nms, i) {
  if (!is.null(nms) && !is.na(nms[i]) && nzchar(nms[i])) {
    nm <- nms[i]
    if (grepl("^[A-Za-z.][A-Za-z0-9._]*$", nm)) paste0(path, "$", nm) else paste0(path, "$`", nm, "`")
  } else sprintf("%s[[%d]]", path, i)
}
