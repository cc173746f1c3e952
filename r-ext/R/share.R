# share(), fetch(), close() and friends: the high-level API of
# ../shared/spec/share-reference.md.

# Object kinds stored in the arena (match shard::format::Kind).
.kind <- c(bytes = 0L, double = 1L, integer = 2L, logical = 3L, raw = 4L,
           complex = 5L, character = 6L, composite = 7L, serialized = 8L)
.native_types <- c("double", "integer", "logical", "raw", "complex", "character")
.backing_code <- c(auto = 0L, memfd = 1L, shm = 2L, mmap = 3L)

#' @export
share <- function(x, backing = c("auto", "mmap", "shm"), readonly = TRUE, name = NULL,
                  deep = FALSE, min_bytes = 64 * 1024 * 1024, cycle = c("error", "skip"),
                  mode = c("balanced", "strict")) {
  if (inherits(x, c("shard_shared", "shard_deep_shared"))) return(x)
  backing <- arg_choice(backing, c("auto", "mmap", "shm"), "backing")
  readonly <- arg_flag(readonly, "readonly")
  deep <- arg_flag(deep, "deep")
  name <- arg_name(name)
  min_bytes <- arg_bytes(min_bytes, "min_bytes")
  cycle <- arg_choice(cycle, c("error", "skip"), "cycle")
  mode <- arg_choice(mode, c("balanced", "strict"), "mode")
  if (deep) {
    return(share_deep(x, backing = backing, readonly = readonly, name = name,
                      min_bytes = min_bytes, cycle = cycle, mode = mode))
  }
  check_shareable(x, "x")
  share_one(x, backing, readonly, name)
}

# Options passed to C: list(backing, readonly, huge_pages, copy_threads, name, placement).
share_opts <- function(backing, readonly, name) {
  placement <- getOption("shard.numa", NULL)
  if (!is.null(placement) && !(is.character(placement) && length(placement) == 1L && !is.na(placement)))
    stop("shard: option shard.numa must be a single string such as \"interleave\" or \"bind:0\"", call. = FALSE)
  huge <- getOption("shard.huge_pages", TRUE)
  if (!(is.logical(huge) && length(huge) == 1L && !is.na(huge)))
    stop("shard: option shard.huge_pages must be TRUE or FALSE", call. = FALSE)
  threads <- getOption("shard.copy_threads", 0L)
  if (!(is.numeric(threads) && length(threads) == 1L && !is.na(threads) && threads >= 0))
    stop("shard: option shard.copy_threads must be a non-negative number", call. = FALSE)
  list(.backing_code[[backing]], readonly, huge, as.integer(threads), name, placement)
}

# How x is laid out in the arena: "vector", "composite" or "serialized".
layout_of <- function(x) {
  if (is.atomic(x) && typeof(x) %in% .native_types && !isS4(x)) return("vector")
  if (is.list(x) && !isS4(x) && is.null(attr(x, "shard_deep")) &&
      all(vapply(x, function(e) is.atomic(e) && typeof(e) %in% .native_types && !isS4(e) && !is.null(e),
                 logical(1))) && length(x) > 0L)
    return("composite")
  "serialized"
}

attrs_blob <- function(x) {
  a <- .Call(C_get_attrib, x)
  if (is.null(a)) NULL else serialize(a, NULL, xdr = FALSE)
}

share_one <- function(x, backing, readonly, name, collect = TRUE) {
  opts <- share_opts(backing, readonly, name)
  layout <- layout_of(x)
  handle <- switch(layout,
    vector = .Call(C_share_vector, x, attrs_blob(x), opts),
    composite = {
      leaves <- lapply(seq_along(x), function(i) x[[i]])
      meta <- serialize(list(attrs = .Call(C_get_attrib, x),
                             leaf_attrs = lapply(leaves, function(e) .Call(C_get_attrib, e))),
                        NULL, xdr = FALSE)
      .Call(C_share_composite, leaves, meta, opts)
    },
    serialized = .Call(C_share_serialized, serialize(x, NULL, xdr = FALSE), NULL, opts))
  warn_fallbacks()
  new_shared(handle, layout, x, readonly, name)
}

new_shared <- function(handle, layout, x, readonly, name) {
  h <- decode_handle(handle)
  structure(list(
    path = handle_path(h, name),
    backing = h$backing,
    size = h$len,
    readonly = readonly,
    class_info = list(class = class(x), type = typeof(x), length = length(x),
                      dim = dim(x), layout = layout),
    handle = handle,
    name = name
  ), class = "shard_shared")
}

#' @export
fetch <- function(x, ...) UseMethod("fetch")

#' @export
fetch.shard_shared <- function(x, ...) {
  strict <- identical(getOption("shard.cow", "allow"), "error")
  holder <- .Call(C_attach, x$handle)
  info <- .Call(C_view_info, holder)
  restore_from_view(holder, x$handle, info, strict)
}

restore_from_view <- function(holder, handle, info, strict) {
  meta <- if (info$meta_len > 0) unserialize(.Call(C_view_meta, holder)) else NULL
  kind <- info$kind
  if (kind == .kind[["serialized"]]) {
    return(unserialize(.Call(C_view_vector, holder, handle, FALSE)))
  }
  if (kind == .kind[["composite"]]) {
    leaves <- .Call(C_view_vector, holder, handle, FALSE)
    for (i in seq_along(leaves)) {
      leaves[[i]] <- .Call(C_set_attrib, leaves[[i]], meta$leaf_attrs[[i]], strict)
    }
    return(.Call(C_set_attrib, leaves, meta$attrs, FALSE))
  }
  v <- .Call(C_view_vector, holder, handle, FALSE)
  .Call(C_set_attrib, v, meta, strict)
}

#' @export
fetch.default <- function(x, ...) {
  stop("shard: fetch() needs a shared object from share() (got an object of class ",
       paste(class(x), collapse = "/"), ")", call. = FALSE)
}

#' @export
close.shard_shared <- function(con, ...) {
  res <- tryCatch({ .Call(C_close, con$handle); TRUE },
                  error = function(e) {
                    if (grepl("has been closed", conditionMessage(e), fixed = TRUE)) FALSE else stop(e)
                  })
  invisible(res)
}

#' @export
is_shared <- function(x) {
  inherits(x, c("shard_shared", "shard_deep_shared")) || !is.null(.Call(C_vector_handle, x))
}

#' @export
materialize <- function(x) {
  if (inherits(x, "shard_shared")) x <- fetch(x)
  if (inherits(x, "shard_deep_shared")) x <- fetch(x)
  materialize_value(x)
}

materialize_value <- function(x) {
  if (is.list(x) && !is.null(x)) {
    a <- .Call(C_get_attrib, x)
    out <- lapply(seq_along(x), function(i) materialize_value(x[[i]]))
    return(.Call(C_set_attrib, out, a, FALSE))
  }
  .Call(C_materialize, x)
}

#' @export
print.shard_shared <- function(x, ...) {
  ci <- x$class_info
  cat("<shard_shared> ", paste(ci$class, collapse = "/"),
      if (!is.null(ci$dim)) paste0(" [", paste(ci$dim, collapse = " x "), "]") else
        paste0(" of length ", ci$length), "\n", sep = "")
  cat("  backing: ", x$backing, "   size: ", format_bytes(x$size),
      "   readonly: ", x$readonly, "   layout: ", ci$layout, "\n", sep = "")
  cat("  path: ", x$path, if (!is.null(x$name)) paste0("   name: ", x$name), "\n", sep = "")
  invisible(x)
}

format_bytes <- function(n) {
  units <- c("B", "KiB", "MiB", "GiB", "TiB")
  i <- if (n > 0) min(length(units), floor(log(n, 1024)) + 1) else 1
  paste0(format(round(n / 1024^(i - 1), 1), nsmall = 0), " ", units[i])
}

# Decodes the fields of a handle that R reports (see docs/FORMAT.md).
decode_handle <- function(h) {
  u32 <- function(at) {
    v <- readBin(h[at:(at + 3L)], "integer", size = 4L, endian = "little")
    if (v < 0) v + 2^32 else v
  }
  u64 <- function(at) u32(at) + u32(at + 4L) * 2^32
  list(kind = as.integer(h[6L]), writable = as.integer(h[7L]) == 1L,
       backing = c("memfd", "shm", "mmap")[as.integer(h[8L]) + 1L],
       owner_pid = u32(9L), region_id = u32(13L), owner_start = u64(17L), fd = u32(25L),
       generation = u32(29L), offset = u64(65L), len = u64(73L), region_size = u64(81L))
}

handle_path <- function(h, name) {
  base <- sprintf("shard-%d-%.0f-%.0f-%.0f", user_id(), h$owner_pid, h$owner_start, h$region_id)
  switch(h$backing,
         memfd = sprintf("/proc/%.0f/fd/%.0f", h$owner_pid, h$fd),
         shm = file.path("/dev/shm", base),
         mmap = file.path(shard_tmpdir(), base))
}

user_id <- function() {
  st <- readLines("/proc/self/status", warn = FALSE)
  as.integer(strsplit(sub("^Uid:\\s*", "", st[startsWith(st, "Uid:")]), "\\s+")[[1]][1])
}

shard_tmpdir <- function() {
  base <- Sys.getenv("SHARD_TMPDIR", Sys.getenv("TMPDIR", "/tmp"))
  file.path(base, paste0("shard-", user_id()))
}

.shard_state <- new.env(parent = emptyenv())
.shard_state$fallbacks <- 0

warn_fallbacks <- function() {
  n <- .Call(C_stats)$fallbacks
  if (n > .shard_state$fallbacks && .shard_state$fallbacks == 0) {
    warning("shard: huge pages were not available for a large object; it uses smaller pages. ",
            "See shard_diagnostics() (warned once per session).", call. = FALSE)
  }
  .shard_state$fallbacks <- n
}
