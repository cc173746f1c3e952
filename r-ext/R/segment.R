# Low-level segments: raw shared memory that its creator writes, then seals.
# segment_create/open/write/read/info/protect/close.

.segment_types <- c("raw", "double", "integer", "logical", "complex")
.type_size <- c(raw = 1, double = 8, integer = 4, logical = 4, complex = 16)

#' @export
segment_create <- function(size, backing = c("auto", "mmap", "shm"), name = NULL) {
  if (missing(size)) stop("shard: `size` is missing: segment_create(size) needs a size in bytes", call. = FALSE)
  size <- arg_count(size, "size", min = 1)
  backing <- arg_choice(backing, c("auto", "mmap", "shm"), "backing")
  name <- arg_name(name)
  opts <- share_opts(backing, FALSE, name)
  handle <- store_call(.Call(C_segment_create, size, opts), name)
  tryCatch(new_segment(handle, name, size), error = function(e) {
    try(.Call(C_close, handle), silent = TRUE)
    stop(e)
  })
}

new_segment <- function(handle, name, size) {
  h <- decode_handle(handle)
  structure(list(path = handle_path(h, name), backing = h$backing, size = size,
                 readonly = !h$writable, handle = handle, name = name, owner_pid = h$owner_pid),
            class = "shard_segment")
}

#' @export
segment_open <- function(x) {
  if (missing(x)) stop("shard: `x` is missing: segment_open() needs a shard_segment, a handle or a name", call. = FALSE)
  name <- NULL
  if (inherits(x, "shard_segment")) {
    handle <- x$handle
    name <- x$name
  } else if (is.raw(x)) {
    if (length(x) != 92L)
      stop("shard: `x` must be a segment handle (a raw vector of 92 bytes), not a raw vector of ",
           length(x), " bytes", call. = FALSE)
    handle <- x
  } else if (is.character(x)) {
    name <- arg_name(x)
    if (is.null(name)) stop("shard: `x` must be a single non-empty name", call. = FALSE)
    handle <- .Call(C_lookup_name, name)
  } else {
    stop("shard: `x` must be a shard_segment, a segment handle (raw) or a segment name (string), not ",
         paste(class(x), collapse = "/"), call. = FALSE)
  }
  holder <- .Call(C_attach, handle)
  v <- .Call(C_view_info, holder)
  if (v$kind != .kind[["bytes"]])
    stop("shard: `x` names a shared object, not a segment: use share_open() for objects made by share()",
         call. = FALSE)
  seg <- new_segment(handle, name, v$data_len)
  seg$readonly <- !v$writable || all(c("write", "shrink", "grow") %in% seal_names(v$seals))
  seg
}

# The handle of a segment, or of a writable shared object (share(readonly = FALSE)).
segment_handle <- function(x, what) {
  if (inherits(x, c("shard_segment", "shard_shared"))) return(x$handle)
  stop(sprintf("shard: `%s` must be a shard_segment (from segment_create() or segment_open())%s, not %s",
               "x", if (what == "write") " or an object from share(readonly = FALSE)" else "",
               paste(class(x), collapse = "/")), call. = FALSE)
}

segment_len <- function(handle) {
  holder <- .Call(C_attach, handle)
  .Call(C_view_info, holder)$data_len
}

#' @export
segment_write <- function(x, data, offset = 0) {
  handle <- segment_handle(x, "write")
  if (missing(data)) stop("shard: `data` is missing", call. = FALSE)
  if (!(is.atomic(data) && typeof(data) %in% .segment_types))
    stop("shard: `data` must be a raw, logical, integer, double or complex vector, not ",
         paste(class(data), collapse = "/"), call. = FALSE)
  offset <- arg_count(offset, "offset", min = 0)
  if (!isTRUE(.Call(C_owns, handle)))
    stop(sprintf("shard: only the process that created this segment (pid %.0f) can write it; this is pid %d",
                 decode_handle(handle)$owner_pid, Sys.getpid()), call. = FALSE)
  if (!decode_handle(handle)$writable)
    stop("shard: `x` is read-only (it was shared with readonly = TRUE)", call. = FALSE)
  n <- length(data) * .type_size[[typeof(data)]]
  len <- segment_len(handle)
  if (offset + n > len)
    stop(sprintf("shard: writing %.0f bytes at `offset` %.0f overflows the segment of %.0f bytes",
                 n, offset, len), call. = FALSE)
  tryCatch(.Call(C_segment_write, handle, offset, data), error = function(e) {
    if (grepl("read-only", conditionMessage(e), fixed = TRUE))
      stop("shard: the segment is protected (segment_protect() sealed it); it can no longer be written",
           call. = FALSE)
    stop(e)
  })
  invisible(x)
}

#' @export
segment_read <- function(x, offset = 0, length = NULL, type = c("raw", "double", "integer", "logical", "complex")) {
  handle <- segment_handle(x, "read")
  offset <- arg_count(offset, "offset", min = 0)
  type <- arg_choice(type, .segment_types, "type")
  holder <- .Call(C_attach, handle)
  len <- .Call(C_view_info, holder)$data_len
  es <- .type_size[[type]]
  if (is.null(length)) {
    if (offset > len) stop(sprintf("shard: `offset` %.0f is past the end of the segment (%.0f bytes)", offset, len),
                           call. = FALSE)
    length <- floor((len - offset) / es)
  } else {
    length <- arg_count(length, "length", min = 0)
    if (offset + length * es > len)
      stop(sprintf("shard: `length` %.0f (%s values, %.0f bytes) at `offset` %.0f overflows the segment of %.0f bytes",
                   length, type, length * es, offset, len), call. = FALSE)
  }
  .Call(C_segment_read, holder, offset, length, type)
}

#' @export
segment_info <- function(x) {
  handle <- segment_handle(x, "info")
  h <- decode_handle(handle)
  holder <- tryCatch(.Call(C_attach, handle), error = function(e) e)
  if (inherits(holder, "error"))
    return(list(path = handle_path(h, x$name), backing = h$backing, size = NA_real_, owner_pid = h$owner_pid,
                attached = FALSE, error = conditionMessage(holder)))
  v <- .Call(C_view_info, holder)
  seals <- seal_names(v$seals)
  sealed <- all(c("write", "shrink", "grow") %in% seals)
  list(path = handle_path(h, x$name), backing = h$backing, size = v$data_len,
       readonly = !v$writable || sealed, sealed = sealed, seals = seals, page_size = v$page_size,
       owner_pid = h$owner_pid, owner = isTRUE(.Call(C_owns, handle)), name = x$name,
       closed = v$closed, attached = TRUE)
}

#' @export
segment_protect <- function(x) {
  handle <- segment_handle(x, "write")
  if (!isTRUE(.Call(C_owns, handle)))
    stop(sprintf("shard: only the process that created this segment (pid %.0f) can protect it",
                 decode_handle(handle)$owner_pid), call. = FALSE)
  .Call(C_protect, handle)
  x$readonly <- TRUE
  invisible(x)
}

#' @export
segment_close <- function(x) {
  handle <- segment_handle(x, "close")
  res <- tryCatch({ .Call(C_close, handle); TRUE },
                  error = function(e) {
                    if (grepl("has been closed", conditionMessage(e), fixed = TRUE)) FALSE else stop(e)
                  })
  invisible(res)
}

#' @export
close.shard_segment <- function(con, ...) segment_close(con)

#' @export
fetch.shard_segment <- function(x, ...) {
  holder <- .Call(C_attach, x$handle)
  info <- .Call(C_view_info, holder)
  .Call(C_view_vector, holder, x$handle, TRUE)
}

#' @export
print.shard_segment <- function(x, ...) {
  info <- tryCatch(segment_info(x), error = function(e) NULL)
  if (isTRUE(info$attached)) x$readonly <- info$readonly
  cat("<shard_segment> ", format_bytes(x$size), "   backing: ", x$backing,
      "   readonly: ", x$readonly, "   owner pid: ", format(x$owner_pid), "\n", sep = "")
  cat("  path: ", x$path, if (!is.null(x$name)) paste0("   name: ", x$name), "\n", sep = "")
  invisible(x)
}

seal_names <- function(bits) names(.seal_bits)[bitwAnd(bits, .seal_bits) != 0L]
