# Introspection: shared_info(), shard_diagnostics(), open by name, sweep, seal.

.seal_bits <- c(seal = 1L, shrink = 2L, grow = 4L, write = 8L)

#' @export
shared_info <- function(x) {
  if (inherits(x, "shard_deep_shared")) {
    return(list(path = x$path, backing = x$backing, size = x$size, readonly = x$readonly,
                summary = x$summary, components = x$components,
                segments = lapply(x$segments, shared_info)))
  }
  if (inherits(x, "shard_segment")) return(segment_info(x))
  if (inherits(x, "shard_shared")) {
    handle <- x$handle
    opts <- x$options
  } else if (!is.null(vh <- .Call(C_vector_handle, x))) {
    handle <- vh$handle
    opts <- NULL
  } else {
    stop("shard: shared_info() needs a shard_shared object or a vector returned by fetch()", call. = FALSE)
  }
  h <- decode_handle(handle)
  holder <- tryCatch(.Call(C_attach, handle), error = function(e) e)
  if (inherits(holder, "error")) {
    msg <- conditionMessage(holder)
    return(list(path = handle_path(h, NULL), backing = h$backing, size = h$len, owner_pid = h$owner_pid,
                attached = FALSE, closed = grepl("has been closed", msg, fixed = TRUE), error = msg))
  }
  v <- .Call(C_view_info, holder)
  seals <- seal_names(v$seals)
  out <- list(
    path = handle_path(h, if (inherits(x, "shard_shared")) x$name),
    backing = h$backing,
    size = h$len,
    data_bytes = v$data_len,
    readonly = !v$writable,
    sealed = all(c("write", "shrink", "grow") %in% seals),
    seals = seals,
    page_size = v$page_size,
    huge_pages = v$page_size > 4096,
    numa = if (is.null(opts)) NA_character_ else opts$numa,
    numa_nodes = numa_nodes(holder),
    owner_pid = h$owner_pid,
    local = as.logical(v$local),
    closed = as.logical(v$closed),
    region_id = h$region_id,
    offset = h$offset,
    region_size = v$region_size,
    kind = names(.kind)[match(v$kind, .kind)]
  )
  if (is.null(vh <- if (inherits(x, "shard_shared")) NULL else vh)) out else
    c(out, list(private_copy = vh$changed))
}

# Where the object's pages really are: pages per NUMA node (named by node), measured
# with move_pages(2); attribute "absent": pages not present. NA where the kernel
# cannot say (no move_pages).
numa_nodes <- function(holder) {
  tryCatch(.Call(C_view_numa, holder), error = function(e) NA_real_)
}

#' @export
shard_diagnostics <- function() {
  s <- .Call(C_stats)
  s$pid <- as.integer(s$pid)
  s
}

#' @export
share_open <- function(name) {
  if (missing(name)) stop("shard: `name` is missing", call. = FALSE)
  name <- arg_name(name)
  if (is.null(name)) stop("shard: `name` must be a single non-empty string", call. = FALSE)
  handle <- .Call(C_lookup_name, name)
  holder <- .Call(C_attach, handle)
  v <- .Call(C_view_info, holder)
  h <- decode_handle(handle)
  meta <- if (v$meta_len > 0 && v$kind == .kind[["serialized"]]) unserialize(.Call(C_view_meta, holder)) else NULL
  if (identical(meta$shard, "deep")) {
    out <- unserialize(.Call(C_view_vector, holder, handle, TRUE))
    out$index <- structure(list(path = handle_path(h, name), backing = h$backing, size = h$len, readonly = TRUE,
                                class_info = list(layout = "serialized"), handle = handle, name = name),
                           class = "shard_shared")
    return(out)
  }
  if (v$kind == .kind[["bytes"]]) return(segment_open(name))
  layout <- if (v$kind == .kind[["composite"]]) "composite" else if (v$kind == .kind[["serialized"]]) "serialized" else "vector"
  structure(list(path = handle_path(h, name), backing = h$backing, size = h$len, readonly = !v$writable,
                 class_info = list(layout = layout), handle = handle, name = name,
                 options = list(numa = NA_character_, huge_pages = NA, copy_threads = NA)),
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
