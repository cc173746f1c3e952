# Path registries: the objects (and segments) this session handed out a path for, so
# that share_open(path) and segment_open(path) find them. A path names a memory
# region, not an object: small objects share a region, so one path can hold several
# live objects. Lookups keep only live entries and refuse an ambiguous path rather
# than guess (a wrong guess would be wrong data). A registry is an environment:
# path -> list of entries keyed by handle.


handle_key <- function(handle) paste(as.character(handle), collapse = "")

entry_live <- function(e) {
  holder <- tryCatch(.Call(C_attach, e$handle), error = function(err) NULL)
  !is.null(holder) && !isTRUE(.Call(C_view_info, holder)$closed)
}

registry_add <- function(reg, path, handle, name) {
  if (!(is.character(path) && length(path) == 1L && !is.na(path))) return(invisible())
  # Prune closed entries when the count doubles since the last prune: O(1) amortized.
  n <- attr(reg, "added")
  n <- if (is.null(n)) 1 else n + 1
  if (n >= 2 * max(2048, attr(reg, "live_after_prune") %||% 0)) {
    live <- length(registry_live(reg))
    attr(reg, "live_after_prune") <- live
    n <- live + 1
  }
  attr(reg, "added") <- n
  entries <- if (exists(path, envir = reg, inherits = FALSE)) get(path, envir = reg) else list()
  entries[[handle_key(handle)]] <- list(handle = handle, name = name, path = path)
  assign(path, entries, envir = reg)
  invisible()
}

registry_remove <- function(reg, path, handle) {
  if (!(is.character(path) && length(path) == 1L && !is.na(path)) ||
      !exists(path, envir = reg, inherits = FALSE)) return(invisible())
  entries <- get(path, envir = reg)
  entries[[handle_key(handle)]] <- NULL
  if (length(entries)) assign(path, entries, envir = reg) else rm(list = path, envir = reg)
  invisible()
}

# The live entries of every path (closed ones are dropped as they are found).
registry_live <- function(reg) {
  out <- list()
  for (p in ls(reg, all.names = TRUE)) {   # paths start with "/": nothing else is in reg
    entries <- Filter(entry_live, get(p, envir = reg))
    if (length(entries)) assign(p, entries, envir = reg) else rm(list = p, envir = reg)
    out <- c(out, unname(entries))
  }
  out
}

`%||%` <- function(a, b) if (is.null(a)) b else a

# The one live entry under `path` (of `size` bytes, when given); NULL if none; an
# error if several.
registry_find <- function(reg, path, size = NULL) {
  if (!exists(path, envir = reg, inherits = FALSE)) return(NULL)
  entries <- Filter(entry_live, get(path, envir = reg))
  if (length(entries)) assign(path, entries, envir = reg) else rm(list = path, envir = reg)
  if (length(entries) > 1L && !is.null(size))
    entries <- Filter(function(e) decode_handle(e$handle)$len == size, entries)
  if (length(entries) > 1L)
    stop(sprintf(paste0("shard: the path \"%s\" holds %d live shared objects (small objects share a memory region), ",
                        "so it does not say which to open: give its `size`, open it by name (share(x, name = \"my-data\")) ",
                        "or pass the shared object itself"), path, length(entries)), call. = FALSE)
  if (length(entries)) entries[[1]] else NULL
}
