# Writable shared output buffers: buffer(), buffer_open(), buffer_close(),
# buffer_seal(), reading and writing with `[` / `[<-`, coercions, info.
#
# A buffer is one of the store's writable buffers: an anonymous memfd region
# of its own (src/buffer.c over the C ABI shard_buffer_*; src/store/buffer.rs
# explains the checks and the lifetime: no name, no file, nothing left behind
# by a killed owner). The R object is a small list: type, dim, the buffer's
# handle (a raw vector) and its path (the handle as text, "shard-buf:<hex>",
# what buffer_path() gives and buffer_open() takes), and the mapping of the
# process that made it (an external pointer, plus that process's pid). Sent to
# a worker (as part of shard_map()'s out=), the pointer arrives empty: the
# worker opens the buffer by its handle on first use and keeps that mapping in
# .buffer_maps for the rest of the run, so a buffer travels as a few hundred
# bytes.
#
# Workers write disjoint parts with `[<-` (no lock: see buffer.c for what
# overlapping writes do). After a run, buffer_seal() seals the buffer
# read-only for good (the kernel refuses while a worker still maps it
# writable), and as.vector()/as.matrix()/... of a sealed buffer are zero-copy
# ALTREP vectors over it; before sealing they are copies (the buffer may
# still change, and an R value must not).

.buffer_kind <- c(double = 1L, integer = 2L, logical = 3L, raw = 4L)
.buffer_size <- c(double = 8, integer = 4, logical = 4, raw = 1)
.buffer_maps <- new.env(parent = emptyenv())   # path -> mapping, in workers (and buffer_open())
.buffer_path_prefix <- "shard-buf:"

#' @export
buffer <- function(type = c("double", "integer", "logical", "raw"), dim, init = NULL,
                   backing = c("auto", "mmap", "shm")) {
  type <- arg_choice(type, names(.buffer_kind), "type")
  backing <- arg_choice(backing, c("auto", "mmap", "shm"), "backing")
  if (missing(dim)) stop("shard: buffer() needs `dim`: a length (e.g. 100) or dimensions (e.g. c(nrow, ncol))",
                         call. = FALSE)
  dim <- check_buffer_dim(dim)
  n <- prod(dim)
  bytes <- n * .buffer_size[[type]]
  huge <- getOption("shard.huge_pages", TRUE)   # as share(): large buffers may get huge pages
  if (!isTRUE(huge) && !isFALSE(huge)) stop("shard: option shard.huge_pages must be TRUE or FALSE", call. = FALSE)
  ptr <- .Call(C_buffer_create, bytes, huge)
  buf <- new_buffer(type, dim, ptr, backing)
  if (!is.null(init) && length(init)) {
    if (length(init) != 1L) stop("shard: `init` must be a single value (or NULL for zeros)", call. = FALSE)
    .Call(C_buffer_fill, ptr, .buffer_kind[[type]], buffer_coerce(init, type))
  }
  buf
}

# `backing` is what the caller asked for; every buffer is a memfd region (the
# allocator's buffer kind): buffer_info() and print() say "memfd".
new_buffer <- function(type, dim, ptr, backing, readonly = FALSE) {
  st <- .Call(C_buffer_state, ptr)
  structure(list(type = type, dim = as.numeric(dim), n = prod(dim), bytes = st$bytes,
                 path = buffer_handle_path(st$handle), handle = st$handle,
                 backing = backing, readonly = readonly, ptr = ptr, pid = Sys.getpid()),
            class = "shard_buffer")
}

# A buffer's path: its handle as text (a buffer has no name: it is an anonymous
# memfd region; the handle is what another process opens it by).
buffer_handle_path <- function(handle) paste0(.buffer_path_prefix, paste(as.character(handle), collapse = ""))

# The handle in a path from buffer_handle_path() (an error for anything else).
buffer_path_handle <- function(path) {
  hex <- substring(path, nchar(.buffer_path_prefix) + 1L)
  if (!startsWith(path, .buffer_path_prefix) || !nzchar(hex) || nchar(hex) %% 2L ||
      !grepl("^[0-9a-f]+$", hex))
    stop(sprintf("shard: `path` must be a buffer's path from buffer_path() (\"%s\" and the hex digits of its handle), not \"%s\"",
                 .buffer_path_prefix, if (nchar(path) > 40) paste0(substr(path, 1, 40), "...") else path),
         call. = FALSE)
  n <- nchar(hex)
  as.raw(strtoi(substring(hex, seq.int(1L, n, 2L), seq.int(2L, n, 2L)), 16L))
}

check_buffer_dim <- function(dim) {
  if (!is.numeric(dim) || !length(dim) || anyNA(dim) || any(dim < 0) || any(dim != round(dim)) ||
      any(!is.finite(dim)))
    stop("shard: `dim` must be a length or a vector of dimensions: whole numbers >= 0 (got ",
         paste(deparse(dim, nlines = 1L), collapse = ""), ")", call. = FALSE)
  as.numeric(dim)
}

buffer_coerce <- function(value, type) {
  if (typeof(value) == type) return(value)
  if (!is.atomic(value))
    stop("shard: a ", type, " buffer takes atomic values (got ", class(value)[1], ")", call. = FALSE)
  # Text (or complex) into a numeric buffer is a mistake, not a conversion: it
  # would store NA (or drop the imaginary part) with only a warning.
  if (is.character(value) || (is.complex(value) && type != "complex"))
    stop("shard: a ", type, " buffer does not take ", typeof(value),
         " values; convert them first (e.g. as.numeric())", call. = FALSE)
  # A conversion that loses values (NA from out-of-range integers, raw out of
  # 0..255) is an error too: nothing is written.
  withCallingHandlers(
    switch(type, double = as.double(value), integer = as.integer(value), logical = as.logical(value),
           raw = as.raw(value)),
    warning = function(w) stop("shard: writing ", typeof(value), " values into a ", type,
                               " buffer would lose values (", conditionMessage(w), "); nothing was written",
                               call. = FALSE))
}

# The mapping of buffer x in this process (mapped on first use in a worker).
buf_ptr <- function(x) {
  if (identical(x$pid, Sys.getpid())) return(x$ptr)
  p <- .buffer_maps[[x$path]]
  if (is.null(p) || !isTRUE(.Call(C_buffer_state, p)$mapped)) {
    p <- .Call(C_buffer_open, if (is.raw(x$handle)) x$handle else buffer_path_handle(x$path), x$bytes,
               isTRUE(x$readonly))
    assign(x$path, p, envir = .buffer_maps)
  }
  p
}

check_buffer <- function(x) {
  if (!inherits(x, "shard_buffer"))
    stop("shard: `x` must be a buffer from buffer() or buffer_open() (got an object of class ",
         paste(class(x), collapse = "/"), ")", call. = FALSE)
  x
}

#' @export
buffer_open <- function(path, type, dim, backing = c("mmap", "shm"), readonly = FALSE) {
  if (!(is.character(path) && length(path) == 1L && !is.na(path)) && !is.raw(path))
    stop("shard: `path` must be the path of a buffer (buffer_path()) or its handle (a raw vector)", call. = FALSE)
  type <- arg_choice(type, names(.buffer_kind), "type")
  backing <- arg_choice(backing, c("mmap", "shm"), "backing")
  readonly <- arg_flag(readonly, "readonly")
  dim <- check_buffer_dim(dim)
  handle <- if (is.raw(path)) path else buffer_path_handle(path)
  ptr <- .Call(C_buffer_open, handle, prod(dim) * .buffer_size[[type]], readonly)
  new_buffer(type, dim, ptr, backing, readonly = readonly)
}

# `unlink` is accepted (the reference's argument) and has no effect: a buffer
# has no name to unlink. The owner's close releases the buffer; another
# process's close unmaps its own mapping.
#' @export
buffer_close <- function(x, unlink = NULL) {
  check_buffer(x)
  if (!is.null(unlink)) unlink <- arg_flag(unlink, "unlink")
  if (identical(x$pid, Sys.getpid())) {
    .Call(C_buffer_close, x$ptr, if (is.null(unlink)) NA else unlink)
  } else if (!is.null(p <- .buffer_maps[[x$path]])) {
    .Call(C_buffer_close, p, if (is.null(unlink)) FALSE else unlink)
    rm(list = x$path, envir = .buffer_maps)
  }
  invisible(NULL)
}

#' @export
buffer_seal <- function(x) {
  check_buffer(x)
  .Call(C_buffer_seal, buf_ptr(x))
  invisible(x)
}

#' @export
buffer_path <- function(x) {
  check_buffer(x)
  x$path
}

#' @export
buffer_info <- function(x) {
  check_buffer(x)
  st <- .Call(C_buffer_state, buf_ptr_quiet(x))
  list(type = x$type, dim = x$dim, n = x$n, bytes = x$bytes, backing = "memfd", path = x$path,
       readonly = isTRUE(x$readonly) || isTRUE(st$sealed), sealed = isTRUE(st$sealed),
       closed = isTRUE(st$closed), views = st$views)
}

buf_ptr_quiet <- function(x) {
  if (identical(x$pid, Sys.getpid())) return(x$ptr)
  p <- .buffer_maps[[x$path]]
  if (is.null(p)) buf_ptr(x) else p
}

#' @export
buffer_advise <- function(x, advice = c("normal", "sequential", "random", "willneed", "dontneed")) {
  check_buffer(x)
  advice <- arg_choice(advice, c("normal", "sequential", "random", "willneed", "dontneed"), "advice")
  code <- match(advice, c("normal", "sequential", "random", "willneed", "dontneed")) - 1L
  .Call(C_buffer_advise, buf_ptr(x), code)
}

#' @export
buffer_diagnostics <- function() {
  d <- .Call(C_buffer_diag, FALSE)
  list(writes = as.integer(d$writes), bytes = d$bytes, reads = as.integer(d$reads), read_bytes = d$read_bytes,
       init_writes = as.integer(d$init_writes), init_bytes = d$init_bytes)
}

# ---------------------------------------------------------------------------
# Indexing

# Linear 1-based positions selected by the index arguments (a list, NULL for a
# missing one) of a buffer with dimensions `dim`; NULL means all elements.
buffer_positions <- function(idx, dim) {
  n <- prod(dim)
  one <- function(i, len, what) {
    if (is.null(i)) return(NULL)
    if (is.logical(i)) {
      if (length(i) > len) stop(sprintf("shard: logical %s index longer than the extent (%.0f)", what, len), call. = FALSE)
      return(which(rep_len(i, len)))
    }
    if (!is.numeric(i)) stop(sprintf("shard: buffer %s indices must be numeric or logical (got %s)", what,
                                     class(i)[1]), call. = FALSE)
    if (anyNA(i)) stop("shard: buffer indices must not be NA", call. = FALSE)
    if (length(i) && any(i < 0)) {
      if (any(i > 0)) stop("shard: buffer indices cannot mix positive and negative numbers", call. = FALSE)
      return(setdiff(seq_len(len), -i))
    }
    i <- i[i != 0]
    if (length(i) && (max(i) > len))
      stop(sprintf("shard: buffer %s index %.0f is out of bounds (extent %.0f)", what, max(i), len), call. = FALSE)
    i
  }
  if (length(idx) == 1L) return(one(idx[[1]], n, "element"))
  if (length(idx) != length(dim))
    stop(sprintf("shard: a buffer with %d dimension%s takes 1 or %d indices (got %d)", length(dim),
                 if (length(dim) == 1) "" else "s", length(dim), length(idx)), call. = FALSE)
  parts <- lapply(seq_along(idx), function(k) {
    p <- one(idx[[k]], dim[k], sprintf("dimension %d", k))
    if (is.null(p)) seq_len(dim[k]) else p
  })
  if (all(vapply(seq_along(idx), function(k) is.null(idx[[k]]), TRUE))) return(NULL)
  lin <- parts[[1]]
  stride <- dim[1]
  for (k in seq_along(parts)[-1]) {
    lin <- rep(lin, times = length(parts[[k]])) + rep((parts[[k]] - 1) * stride, each = length(lin))
    stride <- stride * dim[k]
  }
  structure(lin, extents = lengths(parts))
}

# Is `p` (increasing positions) one contiguous run? Returns its start or NA.
contiguous_start <- function(p) {
  m <- length(p)
  if (m == 0L) return(NA_real_)
  if (p[m] - p[1] == m - 1 && (m < 3L || !is.unsorted(p, strictly = TRUE))) p[1] else NA_real_
}

index_args <- function(nidx, i, j, dots, mi, mj) {
  # (list elements set with `[<-` and list(): a NULL must stay, meaning "all")
  out <- vector("list", nidx)
  if (nidx >= 1L && !mi) out[1] <- list(i)
  if (nidx >= 2L && !mj) out[2] <- list(j)
  if (nidx > 2L) out[3:nidx] <- dots
  out
}

# Sets dim on a fresh vector in place (a vector over a sealed buffer is marked
# not mutable: `dim<-` would copy it).
set_dim <- function(v, d, x) {
  sealed <- isTRUE(.Call(C_buffer_state, buf_ptr(x))$sealed)
  .Call(C_set_attrib, v, as.pairlist(list(dim = as.integer(d))), sealed)
}

#' @export
`[.shard_buffer` <- function(x, i, j, ..., drop = TRUE) {
  nidx <- nargs() - 1L - !missing(drop)
  dots <- if (nidx > 2L) lapply(seq_len(nidx - 2L), function(k) tryCatch(...elt(k), error = function(e) NULL)) else list()
  idx <- index_args(nidx, if (missing(i)) NULL else i, if (missing(j)) NULL else j, dots, missing(i), missing(j))
  kind <- .buffer_kind[[x$type]]
  p <- buf_ptr(x)
  dim <- x$dim
  pos <- if (length(idx)) buffer_positions(idx, dim) else NULL
  if (is.null(pos)) {
    out <- .Call(C_buffer_read, p, kind, NULL, 1, x$n)
    if (length(dim) > 1L) dim(out) <- dim
    return(out)
  }
  st <- contiguous_start(pos)
  out <- if (!is.na(st)) .Call(C_buffer_read, p, kind, NULL, st, length(pos)) else
    .Call(C_buffer_read, p, kind, pos, 1, 0)
  ext <- attr(pos, "extents")
  if (!is.null(ext) && length(ext) > 1L) {
    if (isTRUE(drop)) {
      keep <- ext[ext != 1L]
      if (length(keep) > 1L) dim(out) <- keep
    } else dim(out) <- ext
  }
  out
}

#' @export
`[<-.shard_buffer` <- function(x, i, j, ..., value) {
  nidx <- nargs() - 2L
  dots <- if (nidx > 2L) lapply(seq_len(nidx - 2L), function(k) tryCatch(...elt(k), error = function(e) NULL)) else list()
  idx <- index_args(nidx, if (missing(i)) NULL else i, if (missing(j)) NULL else j, dots, missing(i), missing(j))
  if (!is.atomic(value) || is.null(value))
    stop("shard: values written to a buffer must be an atomic vector (got ", class(value)[1], ")", call. = FALSE)
  value <- buffer_coerce(value, x$type)
  kind <- .buffer_kind[[x$type]]
  p <- buf_ptr(x)
  pos <- if (length(idx)) buffer_positions(idx, x$dim) else NULL
  m <- if (is.null(pos)) x$n else length(pos)
  if (m == 0) return(invisible(x))
  nv <- length(value)
  if (nv == 0L) stop("shard: replacement has length zero", call. = FALSE)
  if (nv != m && nv != 1L) {
    if (m %% nv != 0) stop(sprintf("shard: %.0f values for %.0f buffer elements: give 1 value, or a number of values that divides %.0f",
                                   nv, m, m), call. = FALSE)
    value <- rep_len(value, m)
  }
  st <- if (is.null(pos)) 1 else contiguous_start(pos)
  if (!is.na(st)) {
    if (length(value) == 1L && m > 1) value <- rep_len(value, m)
    .Call(C_buffer_write, p, kind, NULL, st, value, FALSE)
  } else {
    .Call(C_buffer_write, p, kind, pos, 1, value, FALSE)
  }
  invisible(x)
}

#' @export
dim.shard_buffer <- function(x) if (length(x$dim) > 1L) as.integer(x$dim) else NULL

#' @export
length.shard_buffer <- function(x) {
  n <- x$n
  if (n <= .Machine$integer.max) as.integer(n) else n
}

# The buffer's values: zero-copy over the pages when sealed, else a copy.
buffer_values <- function(x) {
  p <- buf_ptr(x)
  kind <- .buffer_kind[[x$type]]
  if (isTRUE(.Call(C_buffer_state, p)$sealed)) .Call(C_buffer_vector, p, kind) else
    .Call(C_buffer_read, p, kind, NULL, 1, x$n)
}

#' @export
as.vector.shard_buffer <- function(x, mode = "any") {
  v <- buffer_values(x)
  if (identical(mode, "any")) v else as.vector(v, mode = mode)
}

#' @export
as.double.shard_buffer <- function(x, ...) {
  v <- buffer_values(x)
  if (is.double(v)) v else as.double(v)
}

#' @export
as.integer.shard_buffer <- function(x, ...) {
  v <- buffer_values(x)
  if (is.integer(v)) v else as.integer(v)
}

#' @export
as.logical.shard_buffer <- function(x, ...) {
  v <- buffer_values(x)
  if (is.logical(v)) v else as.logical(v)
}

#' @export
as.raw.shard_buffer <- function(x, ...) {
  v <- buffer_values(x)
  if (is.raw(v)) v else as.raw(v)
}

#' @export
as.matrix.shard_buffer <- function(x, ...) {
  if (length(x$dim) != 2L)
    stop(sprintf("shard: as.matrix() needs a 2-dimensional buffer (this one has dim %s); use as.vector() or as.array()",
                 paste(x$dim, collapse = " x ")), call. = FALSE)
  set_dim(buffer_values(x), x$dim, x)
}

#' @export
as.array.shard_buffer <- function(x, ...) {
  v <- buffer_values(x)
  if (length(x$dim) > 1L) set_dim(v, x$dim, x) else v
}

#' @export
print.shard_buffer <- function(x, ...) {
  st <- tryCatch(.Call(C_buffer_state, buf_ptr_quiet(x)), error = function(e) list(closed = TRUE, sealed = FALSE))
  state <- if (isTRUE(st$closed)) "closed" else if (isTRUE(st$sealed)) "sealed" else if (isTRUE(x$readonly))
    "read-only" else "writable"
  cat(sprintf("<shard_buffer> %s [%s], %s, %s\n", x$type, paste(x$dim, collapse = " x "), format_bytes(x$bytes), state))
  cat(sprintf("  backing: memfd   path: %s...\n", substr(x$path, 1, nchar(.buffer_path_prefix) + 16L)))
  if (!isTRUE(st$closed) && x$n > 0) {
    k <- min(x$n, 6)
    vals <- .Call(C_buffer_read, buf_ptr(x), .buffer_kind[[x$type]], NULL, 1, k)
    cat("  values: ", paste(format(vals), collapse = " "), if (x$n > k) " ..." else "", "\n", sep = "")
  }
  invisible(x)
}
