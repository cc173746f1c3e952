# Introspection: shared_info(), shard_diagnostics(), open by name, sweep, seal.

.seal_bits <- c(seal = 1L, shrink = 2L, grow = 4L, write = 8L)

#' @export
shared_info <- function(x) {
  if (inherits(x, "shard_shared")) {
    handle <- x$handle
  } else if (!is.null(vh <- .Call(C_vector_handle, x))) {
    handle <- vh$handle
  } else {
    stop("shard: shared_info() needs a shard_shared object or a vector returned by fetch()", call. = FALSE)
  }
  h <- decode_handle(handle)
  holder <- tryCatch(.Call(C_attach, handle), error = function(e) e)
  if (inherits(holder, "error")) {
    return(list(path = handle_path(h, NULL), backing = h$backing, size = h$len, owner_pid = h$owner_pid,
                attached = FALSE, error = conditionMessage(holder)))
  }
  v <- .Call(C_view_info, holder)
  seals <- names(.seal_bits)[bitwAnd(v$seals, .seal_bits) != 0L]
  list(
    path = handle_path(h, if (inherits(x, "shard_shared")) x$name),
    backing = h$backing,
    size = h$len,
    data_bytes = v$data_len,
    readonly = !v$writable,
    sealed = all(c("write", "shrink", "grow") %in% seals),
    seals = seals,
    page_size = v$page_size,
    numa = getOption("shard.numa", "default"),
    owner_pid = h$owner_pid,
    local = v$local,
    closed = v$closed,
    region_id = h$region_id,
    offset = h$offset,
    region_size = v$region_size,
    kind = names(.kind)[match(v$kind, .kind)]
  )
}

#' @export
shard_diagnostics <- function() {
  s <- .Call(C_stats)
  s$pid <- as.integer(s$pid)
  s
}

#' @export
share_open <- function(name) {
  name <- arg_name(name)
  if (is.null(name)) stop("shard: `name` must be a single non-empty string", call. = FALSE)
  handle <- .Call(C_lookup_name, name)
  holder <- .Call(C_attach, handle)
  v <- .Call(C_view_info, holder)
  h <- decode_handle(handle)
  layout <- if (v$kind == .kind[["composite"]]) "composite" else if (v$kind == .kind[["serialized"]]) "serialized" else "vector"
  structure(list(path = handle_path(h, name), backing = h$backing, size = h$len, readonly = !v$writable,
                 class_info = list(layout = layout), handle = handle, name = name),
            class = "shard_shared")
}

#' @export
shard_sweep <- function() {
  .Call(C_sweep)
}

#' @export
shard_seal <- function() {
  .Call(C_seal_all)
  invisible(TRUE)
}
