# Ergonomic wrappers over shard_map(): shard_apply_policy(),
# shard_lapply_shared(), shard_apply_matrix(), shard_crossprod(). Each shares
# its large inputs once (closed again when the call ends), runs shard_map() and
# returns an ordinary R value; outputs of known size go through buffers rather
# than a gather.

#' @export
shard_apply_policy <- function(auto_share_min_bytes = "1MB", max_gather_bytes = "256MB",
                               cow = c("deny", "audit", "allow"), profile = c("default", "memory", "speed"),
                               block_size = "auto", backing = c("auto", "mmap", "shm")) {
  structure(list(auto_share_min_bytes = parse_bytes(auto_share_min_bytes, "auto_share_min_bytes"),
                 max_gather_bytes = parse_bytes(max_gather_bytes, "max_gather_bytes"),
                 cow = arg_choice(cow, c("deny", "audit", "allow"), "cow"),
                 profile = arg_choice(profile, c("default", "memory", "speed"), "profile"),
                 block_size = { shard_block_size(1, block_size, 1, 1, 1, 0, 0); block_size },
                 backing = arg_choice(backing, c("auto", "mmap", "shm"), "backing")),
            class = "shard_apply_policy")
}

#' @export
print.shard_apply_policy <- function(x, ...) {
  cat("<shard_apply_policy>\n")
  cat(sprintf("  auto-share objects from %s; refuse gathers over %s\n", format_bytes(x$auto_share_min_bytes),
              format_bytes(x$max_gather_bytes)))
  cat(sprintf("  cow: %s; profile: %s; block size: %s; backing: %s\n", x$cow, x$profile, format(x$block_size),
              x$backing))
  invisible(x)
}

check_policy <- function(policy) {
  if (!inherits(policy, "shard_apply_policy"))
    stop("shard: `policy` must come from shard_apply_policy()", call. = FALSE)
  policy
}

# VARS, with large atomic values shared (recorded in `cleanup` to be closed).
apply_vars <- function(VARS, policy, cleanup) {
  if (is.null(VARS)) return(list())
  VARS <- runtime_check_named_list(VARS, "VARS")
  for (nm in names(VARS)) {
    v <- VARS[[nm]]
    if (is.atomic(v) && !is.null(v) && !is_shared(v) && as.numeric(utils::object.size(v)) >= policy$auto_share_min_bytes) {
      s <- share(v, backing = policy$backing)
      cleanup$shared[[length(cleanup$shared) + 1L]] <- s
      VARS[[nm]] <- s
    }
  }
  VARS
}

apply_cleanup <- function(cleanup) for (s in cleanup$shared) try(close(s), silent = TRUE)

#' @export
shard_lapply_shared <- function(x, FUN, VARS = NULL, workers = NULL, ..., policy = shard_apply_policy()) {
  if (!is.list(x)) stop("shard: `x` must be a list", call. = FALSE)
  FUN <- match.fun(FUN)
  policy <- check_policy(policy)
  n <- length(x)
  if (n == 0L) return(list())
  cleanup <- new.env(parent = emptyenv())
  cleanup$shared <- list()
  on.exit(apply_cleanup(cleanup))
  VARS <- apply_vars(VARS, policy, cleanup)
  dots <- list(...)
  # guardrail: the gathered size, estimated from one probe call on the master
  probe <- do.call(FUN, c(list(x[[1]]), lapply(VARS, runtime_fetch), dots))
  est <- as.numeric(utils::object.size(probe)) * n
  if (est > policy$max_gather_bytes)
    stop(sprintf(paste0("shard: shard_lapply_shared() would gather about %s of results (%s per element x %d), ",
                        "more than policy$max_gather_bytes (%s); write into a buffer() with shard_map(), or raise the limit"),
                 format_bytes(est), format_bytes(est / n), n, format_bytes(policy$max_gather_bytes)), call. = FALSE)
  elems <- x
  big <- vapply(x, function(e) is.atomic(e) && !is.null(e) && as.numeric(utils::object.size(e)) >= policy$auto_share_min_bytes, TRUE)
  for (i in which(big)) {
    s <- share(x[[i]], backing = policy$backing)
    cleanup$shared[[length(cleanup$shared) + 1L]] <- s
    elems[[i]] <- s
  }
  # FUN and `...` travel with worker_fun (captured here; the pool sends FUN
  # with the globals it uses)
  worker_fun <- function(shard, .elems, .vars) {
    lapply(shard$idx, function(i) do.call(FUN, c(list(runtime_fetch(.elems[[i]])), .vars, dots), quote = TRUE))
  }
  bs <- policy$block_size
  desc <- if (identical(bs, "auto")) shards(n, workers = workers) else shards(n, block_size = bs)
  res <- shard_map(desc, worker_fun, borrow = list(.elems = elems, .vars = VARS),
                   workers = workers, cow = policy$cow, profile = policy$profile)
  if (!succeeded(res)) {
    f <- res$failures[[1]]
    stop(sprintf("shard: shard_lapply_shared(): FUN failed on shard %s: %s", f$id, f$message), call. = FALSE)
  }
  out <- do.call(c, unname(res$results))
  names(out) <- names(x)
  out
}

#' @export
shard_apply_matrix <- function(X, MARGIN = 2, FUN, VARS = NULL, workers = NULL, ..., policy = shard_apply_policy()) {
  if (!identical(as.numeric(MARGIN), 2))
    stop("shard: shard_apply_matrix() supports MARGIN = 2 (columns) only; for rows use views or t(X)", call. = FALSE)
  FUN <- match.fun(FUN)
  policy <- check_policy(policy)
  cleanup <- new.env(parent = emptyenv())
  cleanup$shared <- list()
  on.exit(apply_cleanup(cleanup))
  Xs <- X
  if (!inherits(X, "shard_shared")) {
    if (!is.matrix(X) || !typeof(X) %in% c("double", "integer", "logical"))
      stop("shard: `X` must be a numeric, integer or logical matrix (or a share()d one)", call. = FALSE)
    if (!is_shared(X)) {
      Xs <- share(X, backing = policy$backing)
      cleanup$shared[[length(cleanup$shared) + 1L]] <- Xs
    }
  }
  Xv <- if (inherits(Xs, "shard_shared")) fetch(Xs) else Xs
  d <- dim(Xv)
  if (length(d) != 2L) stop("shard: `X` must be a matrix", call. = FALSE)
  VARS <- apply_vars(VARS, policy, cleanup)
  dots <- list(...)
  nc <- d[2]
  if (nc == 0) return(vector(mode = "double", length = 0))
  probe <- do.call(FUN, c(list(Xv[, 1]), lapply(VARS, runtime_fetch), dots))
  if (!is.atomic(probe) || length(probe) != 1L)
    stop("shard: FUN must return one atomic value per column (got length ", length(probe), ")", call. = FALSE)
  type <- typeof(probe)
  if (!type %in% c("double", "integer", "logical")) type <- "double"
  out <- buffer(type, dim = nc)
  on.exit(buffer_close(out), add = TRUE)
  # each column is a zero-copy view of the shared matrix (a shard vector over
  # the column's bytes); FUN and `...` travel with worker_fun
  worker_fun <- function(shard, X, .vars, out) {
    nr <- dim(X)[1]
    zero_copy <- isTRUE(.Call(C_is_shard_vector, X))
    for (j in shard$idx) {
      col <- if (zero_copy) .Call(C_view_range, X, (j - 1) * nr, nr) else X[, j]
      out[j] <- do.call(FUN, c(list(col), .vars, dots), quote = TRUE)
    }
    NULL
  }
  bs <- policy$block_size
  desc <- if (identical(bs, "auto")) shards(nc, workers = workers) else shards(nc, block_size = bs)
  res <- shard_map(desc, worker_fun, borrow = list(X = Xs, .vars = VARS), out = list(out = out), workers = workers,
                   cow = policy$cow, profile = policy$profile)
  if (!succeeded(res)) {
    f <- res$failures[[1]]
    stop(sprintf("shard: shard_apply_matrix(): FUN failed on shard %s: %s", f$id, f$message), call. = FALSE)
  }
  v <- out[]
  names(v) <- colnames(Xv)
  v
}

#' @export
shard_crossprod <- function(X, Y, workers = NULL, block_x = "auto", block_y = "auto", backing = c("mmap", "shm"),
                            materialize = c("auto", "never", "always"), materialize_max_bytes = 512 * 1024^2,
                            diagnostics = TRUE) {
  backing <- arg_choice(backing, c("mmap", "shm"), "backing")
  materialize <- arg_choice(materialize, c("auto", "never", "always"), "materialize")
  mmb <- parse_bytes(materialize_max_bytes, "materialize_max_bytes")
  cleanup <- new.env(parent = emptyenv())
  cleanup$shared <- list()
  on.exit(apply_cleanup(cleanup))
  prep <- function(M, what) {
    if (inherits(M, "shard_shared")) return(M)
    if (!is.matrix(M) || !is.double(M)) stop(sprintf("shard: `%s` must be a double matrix", what), call. = FALSE)
    s <- share(M, backing = backing)
    cleanup$shared[[length(cleanup$shared) + 1L]] <- s
    s
  }
  Xs <- prep(X, "X")
  Ys <- prep(Y, "Y")
  dx <- dim(fetch(Xs))
  dy <- dim(fetch(Ys))
  if (dx[1] != dy[1]) stop(sprintf("shard: `X` and `Y` must have the same number of rows (%d and %d)", dx[1], dy[1]),
                           call. = FALSE)
  p <- dx[2]
  v <- dy[2]
  nw <- if (is.null(workers)) { pl <- pool_get(); if (is.null(pl)) .default_workers() else pl$n } else workers
  auto_block <- function(b, ncols, what) {
    if (identical(b, "auto")) return(as.integer(max(1, ceiling(ncols / max(1, ceiling(sqrt(2 * nw)))))))
    as.integer(min(ncols, arg_count(b, what, min = 1)))
  }
  bx <- auto_block(block_x, p, "block_x")
  by <- auto_block(block_y, v, "block_y")
  tiles <- tiles2d(p, v, bx, by)
  out <- buffer("double", dim = c(p, v))
  worker_fun <- function(tile, X, Y, out) {
    xb <- materialize(view_block(X, cols = idx_range(tile$x_start, tile$x_end)))
    yb <- materialize(view_block(Y, cols = idx_range(tile$y_start, tile$y_end)))
    out[tile$x_start:tile$x_end, tile$y_start:tile$y_end] <- crossprod(xb, yb)
    NULL
  }
  environment(worker_fun) <- asNamespace("shard")
  run <- shard_map(tiles, worker_fun, borrow = list(X = Xs, Y = Ys), out = list(out = out), workers = workers,
                   cow = "allow", diagnostics = diagnostics)
  if (!succeeded(run)) {
    f <- run$failures[[1]]
    stop(sprintf("shard: shard_crossprod(): tile %s failed: %s", f$id, f$message), call. = FALSE)
  }
  want <- materialize == "always" || (materialize == "auto" && p * v * 8 <= mmb)
  list(buffer = out, value = if (want) as.matrix(out) else NULL, run = run, tile = c(block_x = bx, block_y = by))
}
