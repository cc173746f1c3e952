# Shard descriptors: how the work of shard_map() is split (shards(),
# shards_list(), and the 2-D tiles of shard_crossprod()).
#
# A descriptor is a list: n (items), block_size, strategy, num_shards, and
# shards, a list of shards, each list(id, start, end, idx, len) (idx is a
# compact R sequence for contiguous shards: a few bytes, whatever the length).
# When there are more than getOption("shard.lazy_threshold", 1e5) shards the
# descriptor is lazy (class shard_descriptor_lazy): the shards are computed on
# demand from (n, block_size), so a million tiny shards cost no list.

#' @export
shards <- function(n, block_size = "auto", workers = NULL, strategy = c("contiguous", "strided"),
                   min_shards_per_worker = 4L, max_shards_per_worker = 64L, scratch_bytes_per_item = 0,
                   scratch_budget = 0) {
  if (!is.numeric(n) || length(n) != 1L || is.na(n) || n < 1 || n != round(n) || !is.finite(n))
    stop("shard: `n` must be a whole number of items >= 1", call. = FALSE)
  strategy <- arg_choice(strategy, c("contiguous", "strided"), "strategy")
  min_spw <- arg_count(min_shards_per_worker, "min_shards_per_worker", min = 1)
  max_spw <- arg_count(max_shards_per_worker, "max_shards_per_worker", min = 1)
  if (max_spw < min_spw) stop("shard: `max_shards_per_worker` must be >= `min_shards_per_worker`", call. = FALSE)
  if (!is.numeric(scratch_bytes_per_item) || length(scratch_bytes_per_item) != 1L || is.na(scratch_bytes_per_item) ||
      scratch_bytes_per_item < 0)
    stop("shard: `scratch_bytes_per_item` must be a number of bytes >= 0", call. = FALSE)
  budget <- if (identical(scratch_budget, 0) || identical(scratch_budget, 0L)) 0 else parse_bytes(scratch_budget, "scratch_budget")
  if (is.null(workers)) {
    p <- pool_get()
    workers <- if (!is.null(p)) p$n else .default_workers()
  }
  workers <- arg_count(workers, "workers", min = 1)
  bs <- shard_block_size(n, block_size, workers, min_spw, max_spw, scratch_bytes_per_item, budget)
  make_descriptor(n, bs, strategy)
}

shard_block_size <- function(n, block_size, workers, min_spw, max_spw, per_item, budget) {
  if (identical(block_size, "auto")) {
    # About min_shards_per_worker shards per worker (load balance), no more than
    # max_shards_per_worker (per-shard overhead) ...
    bs <- ceiling(n / (workers * min_spw))
    bs <- max(bs, ceiling(n / (workers * max_spw)))
    # ... and no shard whose scratch needs exceed the budget's share per worker.
    if (per_item > 0 && budget > 0) bs <- min(bs, max(1, floor(budget / workers / per_item)))
    return(max(1, bs))
  }
  if (is.character(block_size)) {
    if (length(block_size) != 1L || is.na(block_size))
      stop("shard: `block_size` must be \"auto\", a number of items or a count such as \"10K\"", call. = FALSE)
    m <- regmatches(block_size, regexec("^\\s*([0-9]*\\.?[0-9]+)\\s*([kKmMgG]?)\\s*$", block_size))[[1]]
    if (length(m) != 3L)
      stop(sprintf("shard: `block_size` = \"%s\" is not \"auto\", a number or a count such as \"10K\"", block_size),
           call. = FALSE)
    block_size <- as.numeric(m[2]) * switch(toupper(m[3]), K = 1e3, M = 1e6, G = 1e9, 1)
  }
  if (!is.numeric(block_size) || length(block_size) != 1L || is.na(block_size) || block_size < 1)
    stop("shard: `block_size` must be \"auto\" or a whole number of items >= 1", call. = FALSE)
  min(n, floor(block_size))
}

make_descriptor <- function(n, bs, strategy) {
  k <- ceiling(n / bs)
  d <- list(n = n, block_size = bs, strategy = strategy, num_shards = k)
  if (k > getOption("shard.lazy_threshold", 1e5)) {
    class(d) <- c("shard_descriptor_lazy", "shard_descriptor")
    return(d)
  }
  d$shards <- lapply(seq_len(k), function(i) shard_at(d, i))
  class(d) <- "shard_descriptor"
  d
}

# Shard i of a (contiguous or strided) descriptor.
shard_at <- function(d, i) {
  if (d$strategy == "strided") {
    idx <- seq.int(as.integer(i), as.integer(d$n), by = as.integer(d$num_shards))
    return(list(id = as.integer(i), start = idx[1], end = idx[length(idx)], idx = idx, len = length(idx)))
  }
  s <- (i - 1) * d$block_size + 1
  e <- min(d$n, i * d$block_size)
  if (s <= .Machine$integer.max && e <= .Machine$integer.max) { s <- as.integer(s); e <- as.integer(e) }
  list(id = as.integer(i), start = s, end = e, idx = s:e, len = as.integer(e - s + 1))
}

#' @export
shards_list <- function(idxs) {
  if (!is.list(idxs) || !length(idxs))
    stop("shard: `idxs` must be a non-empty list of index vectors", call. = FALSE)
  sh <- lapply(seq_along(idxs), function(i) {
    v <- idxs[[i]]
    if (!is.numeric(v) || anyNA(v) || any(v < 1) || any(v != round(v)))
      stop(sprintf("shard: element %d of `idxs` must be a vector of 1-based indices (whole numbers >= 1)", i),
           call. = FALSE)
    if (is.double(v) && all(v <= .Machine$integer.max)) v <- as.integer(v)
    list(id = as.integer(i), idx = v, len = length(v),
         start = if (length(v)) min(v) else NA_integer_, end = if (length(v)) max(v) else NA_integer_)
  })
  all_idx <- unlist(lapply(idxs, as.numeric))
  structure(list(n = if (length(all_idx)) max(all_idx) else 0, block_size = NA_real_, strategy = "list",
                 num_shards = length(sh), shards = sh), class = "shard_descriptor")
}

# 2-D tiles (shard_crossprod()): tile k covers columns x_start..x_end of X and
# y_start..y_end of Y.
tiles2d <- function(nx, ny, bx, by) {
  xs <- seq.int(1L, nx, by = bx)
  ys <- seq.int(1L, ny, by = by)
  grid <- expand.grid(i = seq_along(xs), j = seq_along(ys))
  sh <- lapply(seq_len(nrow(grid)), function(k) {
    x0 <- xs[grid$i[k]]; y0 <- ys[grid$j[k]]
    list(id = k, x_start = x0, x_end = min(nx, x0 + bx - 1L), y_start = y0, y_end = min(ny, y0 + by - 1L))
  })
  structure(list(n = length(sh), nx = nx, ny = ny, block_x = bx, block_y = by, strategy = "tiles2d",
                 num_shards = length(sh), shards = sh), class = c("shard_tiles", "shard_descriptor"))
}

#' @export
print.shard_tiles <- function(x, ...) {
  cat(sprintf("<shard_tiles> %d tiles of %d x %d columns over %d x %d\n", x$num_shards, x$block_x, x$block_y,
              x$nx, x$ny))
  invisible(x)
}

#' @export
length.shard_descriptor <- function(x) as.integer(x$num_shards)

#' @export
length.shard_descriptor_lazy <- function(x) as.integer(x$num_shards)

#' @export
`[[.shard_descriptor` <- function(x, i) {
  if (is.character(i)) return(.subset2(x, i))
  k <- check_shard_index(x, i, single = TRUE)
  if (inherits(x, "shard_descriptor_lazy")) shard_at(x, k) else .subset2(x, "shards")[[k]]
}

#' @export
`[[.shard_descriptor_lazy` <- function(x, i) {
  if (is.character(i)) return(`$.shard_descriptor_lazy`(x, i))
  shard_at(x, check_shard_index(x, i, single = TRUE))
}

#' @export
`$.shard_descriptor_lazy` <- function(x, name) {
  if (identical(name, "shards")) return(lapply(seq_len(.subset2(x, "num_shards")), function(i) shard_at(x, i)))
  .subset2(x, name)
}

check_shard_index <- function(x, i, single = FALSE) {
  n <- .subset2(x, "num_shards")
  if (!is.numeric(i) || anyNA(i) || (single && length(i) != 1L) || any(i < 1) || any(i > n) || any(i != round(i)))
    stop(sprintf("shard: shard index must be %s from 1 to %d", if (single) "one number" else "numbers", n),
         call. = FALSE)
  as.integer(i)
}

#' @export
`[.shard_descriptor` <- function(x, i) {
  if (is.logical(i)) i <- which(rep_len(i, length(x)))
  k <- check_shard_index(x, i)
  sh <- if (inherits(x, "shard_descriptor_lazy")) lapply(k, function(j) shard_at(x, j)) else .subset2(x, "shards")[k]
  out <- unclass(x)
  out$shards <- sh
  out$num_shards <- length(sh)
  out$n <- sum(vapply(sh, function(s) as.numeric(s$len %||% 1), 0))
  out$strategy <- if (.subset2(x, "strategy") == "tiles2d") "tiles2d" else "list"
  class(out) <- if (inherits(x, "shard_tiles")) class(x) else "shard_descriptor"
  out
}

#' @export
`[.shard_descriptor_lazy` <- function(x, i) `[.shard_descriptor`(x, i)

`%||%` <- function(a, b) if (is.null(a)) b else a

#' @export
print.shard_descriptor <- function(x, ...) {
  k <- .subset2(x, "num_shards")
  cat(sprintf("<shard_descriptor> %s items in %d shard%s (%s%s)\n", format(.subset2(x, "n"), big.mark = ","), k,
              if (k == 1) "" else "s", .subset2(x, "strategy"),
              if (!is.na(.subset2(x, "block_size") %||% NA)) sprintf(", block size %s", format(.subset2(x, "block_size"), big.mark = ",")) else ""))
  show <- min(k, 3L)
  for (i in seq_len(show)) {
    s <- x[[i]]
    cat(sprintf("  shard %d: %s\n", s$id, if (!is.null(s$idx)) sprintf("%d items (%s)", length(s$idx), range_label(s$idx)) else
      sprintf("cols %d:%d x %d:%d", s$x_start, s$x_end, s$y_start, s$y_end)))
  }
  if (k > show) cat(sprintf("  ... %d more\n", k - show))
  invisible(x)
}

#' @export
print.shard_descriptor_lazy <- function(x, ...) {
  cat("(lazy: shards are computed on demand)\n")
  print.shard_descriptor(x, ...)
}
