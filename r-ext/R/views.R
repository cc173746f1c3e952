# Views: slice descriptors over shared matrices (view(), view_block(),
# view_gather(), view_info(), materialize() of a view) and shared_view() of a
# shared vector; idx_range().
#
# A view carries the shared matrix (the fetched ALTREP vector, a few hundred
# bytes when sent to a worker: its handle) and the selectors; nothing is read
# until it is materialized. A block of whole columns of a column-major matrix
# is one contiguous range of its bytes, so materialize() of such a block is an
# ALTREP matrix over that range (src/views.c: O(1), no element copied). Any
# other block (a row range) and gather views are copied out, and the bytes
# copied are counted (view_diagnostics(), and shard_map()'s copy_report()).

.view_diag <- new.env(parent = emptyenv())
view_diag_reset <- function() {
  .view_diag$created <- 0
  .view_diag$materialized <- 0
  .view_diag$zero_copy <- 0
  .view_diag$materialized_bytes <- 0
  .view_diag$packed_bytes <- 0
}
view_diag_reset()

#' @export
idx_range <- function(start, end) {
  ok <- function(v) is.numeric(v) && length(v) == 1L && !is.na(v) && v == round(v) && v >= 1
  if (!ok(start) || !ok(end))
    stop("shard: idx_range() needs whole numbers start >= 1 and end (1-based, inclusive)", call. = FALSE)
  if (end < start) stop(sprintf("shard: idx_range(%.0f, %.0f): `end` is before `start`", start, end), call. = FALSE)
  structure(list(start = as.numeric(start), end = as.numeric(end)), class = "shard_idx_range")
}

#' @export
print.shard_idx_range <- function(x, ...) {
  cat(sprintf("<shard_idx_range> %.0f:%.0f (%.0f element%s)\n", x$start, x$end, x$end - x$start + 1,
              if (x$end == x$start) "" else "s"))
  invisible(x)
}

#' @export
length.shard_idx_range <- function(x) x$end - x$start + 1

# The shared matrix behind x: a fetched shard matrix (from share() or a worker's
# borrow=), checked.
view_base <- function(x) {
  if (inherits(x, "shard_shared")) x <- fetch(x)
  d <- dim(x)
  if (length(d) != 2L || !typeof(x) %in% c("double", "integer", "logical", "raw"))
    stop("shard: a view needs a shared atomic matrix (double, integer, logical or raw) from share(); got ",
         if (length(d) != 2L) "an object without 2 dimensions" else paste("a", typeof(x), "matrix"), call. = FALSE)
  list(x = x, shared = isTRUE(.Call(C_is_shard_vector, x)), dim = d)
}

check_range <- function(r, extent, what) {
  if (is.null(r)) return(NULL)
  if (!inherits(r, "shard_idx_range"))
    stop(sprintf("shard: `%s` must be NULL (all) or an idx_range() (got %s)", what, class(r)[1]), call. = FALSE)
  if (r$end > extent)
    stop(sprintf("shard: `%s` = %.0f:%.0f is outside the matrix (%.0f %s)", what, r$start, r$end, extent, what),
         call. = FALSE)
  r
}

#' @export
view <- function(x, rows = NULL, cols = NULL, type = c("auto", "block", "gather")) {
  type <- arg_choice(type, c("auto", "block", "gather"), "type")
  gather <- type == "gather" || (type == "auto" && !is.null(cols) && !inherits(cols, "shard_idx_range"))
  if (gather) {
    if (inherits(cols, "shard_idx_range")) cols <- seq(cols$start, cols$end)
    if (is.null(cols)) stop("shard: a gather view needs `cols` (column indices)", call. = FALSE)
    return(view_gather(x, rows = rows, cols = cols))
  }
  view_block(x, rows = rows, cols = cols)
}

#' @export
view_block <- function(x, rows = NULL, cols = NULL) {
  b <- view_base(x)
  rows <- check_range(rows, b$dim[1], "rows")
  cols <- check_range(cols, b$dim[2], "cols")
  .view_diag$created <- .view_diag$created + 1
  structure(list(base = b$x, rows = rows, cols = cols, dim = b$dim, dtype = typeof(b$x),
                 base_is_shared = b$shared), class = c("shard_view_block", "shard_view"))
}

#' @export
view_gather <- function(x, rows = NULL, cols) {
  b <- view_base(x)
  rows <- check_range(rows, b$dim[1], "rows")
  if (missing(cols) || !is.numeric(cols) || !length(cols) || anyNA(cols) || any(cols != round(cols)) ||
      any(cols < 1) || any(cols > b$dim[2]))
    stop(sprintf("shard: `cols` of a gather view must be column indices from 1 to %.0f", b$dim[2]), call. = FALSE)
  .view_diag$created <- .view_diag$created + 1
  structure(list(base = b$x, rows = rows, cols = as.integer(cols), dim = b$dim, dtype = typeof(b$x),
                 base_is_shared = b$shared), class = c("shard_view_gather", "shard_view"))
}

#' @export
is_view <- function(x) inherits(x, "shard_view")

#' @export
is_block_view <- function(x) inherits(x, "shard_view_block")

view_slice_dim <- function(v) {
  nr <- if (is.null(v$rows)) v$dim[1] else v$rows$end - v$rows$start + 1
  nc <- if (inherits(v, "shard_view_gather")) length(v$cols) else
    if (is.null(v$cols)) v$dim[2] else v$cols$end - v$cols$start + 1
  c(nr, nc)
}

view_zero_copy <- function(v) {
  inherits(v, "shard_view_block") && isTRUE(v$base_is_shared) &&
    (is.null(v$rows) || (v$rows$start == 1 && v$rows$end == v$dim[1]))
}

#' @export
view_info <- function(v) {
  if (!is_view(v)) stop("shard: view_info() needs a view from view(), view_block() or view_gather()", call. = FALSE)
  sd <- view_slice_dim(v)
  gather <- inherits(v, "shard_view_gather")
  list(dtype = v$dtype, dim = as.integer(v$dim), slice_dim = sd, rows = v$rows, cols = v$cols,
       layout = if (gather) "gather" else if (is.null(v$rows) || (v$rows$start == 1 && v$rows$end == v$dim[1]))
         "col_block_contiguous" else "row_block_strided",
       fast_path = view_zero_copy(v),
       nbytes_est = prod(sd) * .buffer_size[[v$dtype]], base_is_shared = isTRUE(v$base_is_shared))
}

#' @export
view_diagnostics <- function() {
  list(created = .view_diag$created, materialized = .view_diag$materialized, zero_copy = .view_diag$zero_copy,
       materialized_bytes = .view_diag$materialized_bytes, packed_bytes = .view_diag$packed_bytes)
}

#' @export
materialize.shard_view_block <- function(x) {
  v <- x
  sd <- view_slice_dim(v)
  .view_diag$materialized <- .view_diag$materialized + 1
  if (view_zero_copy(v)) {
    c0 <- if (is.null(v$cols)) 0 else v$cols$start - 1
    r <- .Call(C_view_range, v$base, c0 * v$dim[1], prod(sd))
    .view_diag$zero_copy <- .view_diag$zero_copy + 1
    return(.Call(C_set_attrib, r, as.pairlist(list(dim = as.integer(sd))), TRUE))
  }
  rows <- if (is.null(v$rows)) seq_len(v$dim[1]) else seq(v$rows$start, v$rows$end)
  cols <- if (is.null(v$cols)) seq_len(v$dim[2]) else seq(v$cols$start, v$cols$end)
  out <- v$base[rows, cols, drop = FALSE]
  .view_diag$materialized_bytes <- .view_diag$materialized_bytes + prod(sd) * .buffer_size[[v$dtype]]
  out
}

#' @export
materialize.shard_view_gather <- function(x) {
  v <- x
  sd <- view_slice_dim(v)
  rows <- if (is.null(v$rows)) seq_len(v$dim[1]) else seq(v$rows$start, v$rows$end)
  out <- v$base[rows, v$cols, drop = FALSE]
  .view_diag$materialized <- .view_diag$materialized + 1
  .view_diag$materialized_bytes <- .view_diag$materialized_bytes + prod(sd) * .buffer_size[[v$dtype]]
  .view_diag$packed_bytes <- .view_diag$packed_bytes + prod(sd) * .buffer_size[[v$dtype]]
  out
}

view_label <- function(v) {
  r <- if (is.null(v$rows)) "all rows" else sprintf("rows %.0f:%.0f", v$rows$start, v$rows$end)
  c <- if (inherits(v, "shard_view_gather")) sprintf("cols %s", range_label(v$cols)) else
    if (is.null(v$cols)) "all cols" else sprintf("cols %.0f:%.0f", v$cols$start, v$cols$end)
  sprintf("%s, %s of a %.0f x %.0f %s matrix", r, c, v$dim[1], v$dim[2], v$dtype)
}

#' @export
print.shard_view_block <- function(x, ...) {
  i <- view_info(x)
  cat(sprintf("<shard_view_block> %s\n  slice %.0f x %.0f (%s), %s\n", view_label(x), i$slice_dim[1],
              i$slice_dim[2], format_bytes(i$nbytes_est),
              if (i$fast_path) "zero-copy (contiguous columns of a shared matrix)" else "materialize() copies it"))
  invisible(x)
}

#' @export
print.shard_view_gather <- function(x, ...) {
  i <- view_info(x)
  cat(sprintf("<shard_view_gather> %s\n  slice %.0f x %.0f (%s), materialize() packs the columns\n",
              view_label(x), i$slice_dim[1], i$slice_dim[2], format_bytes(i$nbytes_est)))
  invisible(x)
}

#' @export
shared_view <- function(x, start, length) {
  if (inherits(x, "shard_shared")) x <- fetch(x)
  if (!isTRUE(.Call(C_is_shard_vector, x)))
    stop("shard: shared_view() needs a shared vector (fetch() of a share()d vector, or shared_vector())",
         call. = FALSE)
  ok <- function(v) is.numeric(v) && base::length(v) == 1L && !is.na(v) && v == round(v)
  if (!ok(start) || start < 1 || !ok(length) || length < 0)
    stop("shard: shared_view() needs a whole `start` >= 1 and a whole `length` >= 0", call. = FALSE)
  .Call(C_view_range, x, start - 1, length)
}
