# Introspection: shared_info(), shard_diagnostics(), open by name, sweep, seal.

.seal_bits <- c(seal = 1L, shrink = 2L, grow = 4L, write = 8L)

#' @export
shared_info <- function(x) {
  if (inherits(x, "shard_deep_shared")) {
    return(list(path = x$path, backing = x$backing, size = x$size, readonly = x$readonly,
                class_info = x$class_info,
                segment_info = list(n_segments = length(x$segments), layout = "deep"),
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
                attached = FALSE, closed = grepl("has been closed", msg, fixed = TRUE), error = msg,
                node = handle_node(handle)))
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
    kind = names(.kind)[match(v$kind, .kind)],
    node = handle_node(handle)
  )
  ci <- if (inherits(x, "shard_shared")) x$class_info else
    list(class = class(x), type = typeof(x), length = length(x), dim = dim(x), layout = "vector")
  out$class_info <- ci
  out$segment_info <- layout_info(ci, out)
  remember_object(out$path, handle, if (inherits(x, "shard_shared")) x$name)
  if (is.null(vh <- if (inherits(x, "shard_shared")) NULL else vh)) out else
    c(out, list(private_copy = vh$changed, plain = isTRUE(vh$plain)))
}

# Fetched vectors of at least getOption("shard.plain_min_bytes") bytes (unset:
# none) are plain R vectors over the object's pages (r-ext/src/mapped.c); the
# callers that need the ALTREP class's hooks (the cow policy of shared vectors and
# of shard_map's borrowed inputs: Dataptr and Duplicate are where "deny" and
# "audit" act) fetch under this.
with_altrep <- function(expr) {
  old <- options(shard.plain_min_bytes = Inf)
  on.exit(options(old))
  expr
}

# What the bytes hold (the reference's segment_info): type, length, nrow/ncol (NA
# without dim), layout, and where it lives.
layout_info <- function(ci, out) {
  d <- ci$dim
  list(type = ci$type, length = ci$length,
       nrow = if (length(d) >= 1L) as.integer(d[[1]]) else NA_integer_,
       ncol = if (length(d) >= 2L) as.integer(d[[2]]) else NA_integer_,
       layout = ci$layout, path = out$path, backing = out$backing, size = out$size,
       data_bytes = out$data_bytes, readonly = out$readonly, owns = out$owner_pid == Sys.getpid())
}

# Shared objects whose path this session has handed out (shared_info()), so that
# share_open(path) finds them.
.shard_objects <- new.env(parent = emptyenv())   # a path registry (R/paths.R)

remember_object <- function(path, handle, name) registry_add(.shard_objects, path, handle, name)

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
  c(s, .Call(C_plain_stats))
}

#' @export
share_open <- function(path, backing = c("mmap", "shm"), size = NULL, name = NULL) {
  # `name` is this package's earlier (and still preferred) name of the first argument.
  if (missing(path)) {
    if (is.null(name)) stop("shard: `path`/`name` is missing: share_open() needs the name an object was shared under (or a path from shared_info())", call. = FALSE)
    path <- name
  }
  size_given <- !missing(size)
  backing <- arg_choice(backing, c("mmap", "shm"), "backing")  # the handle says the real one
  if (!is.null(size)) size <- arg_count(size, "size", min = 0)
  if (is.character(path) && length(path) == 1L && !is.na(path) && grepl("/", path, fixed = TRUE)) {
    known <- registry_find(.shard_objects, path, size)
    if (is.null(known)) known <- registry_find(.shard_segments, path, size)
    if (is.null(known))
      stop("shard: no shared object of this session has the path \"", path, "\"; a path names a memory region, ",
           "not the object in it. Share under a name (share(x, name = \"my-data\")) and open it anywhere with ",
           "share_open(\"my-data\"), or pass the shard_shared object itself", call. = FALSE)
    out <- open_handle(known$handle, known$name)
  } else {
    what <- "`path` (the `name`)"
    name <- tryCatch(arg_name(path), error = function(e)
      stop(sub("`name`", what, conditionMessage(e), fixed = TRUE), call. = FALSE))
    if (is.null(name)) stop(sprintf("shard: %s must be a single non-empty string", what), call. = FALSE)
    handle <- tryCatch(.Call(C_lookup_name, name), error = function(e) {
      if (size_given) stop(conditionMessage(e), " (so `size` could not be checked)", call. = FALSE)
      stop(e)
    })
    out <- open_handle(handle, name)
  }
  if (!is.null(size) && inherits(out, "shard_shared") && size != out$size)
    stop(sprintf("shard: `size` %.0f does not match the object's size (%.0f bytes); leave size = NULL to detect it",
                 size, out$size), call. = FALSE)
  out
}

open_handle <- function(handle, name) {
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
  if (v$kind == .kind[["bytes"]]) return(segment_open(handle))
  layout <- if (v$kind == .kind[["composite"]]) "composite" else if (v$kind == .kind[["serialized"]]) "serialized" else "vector"
  # The class and shape, from the object itself (fetch() restores them).
  val <- tryCatch(restore_from_view(holder, handle, v), error = function(e) NULL)
  ci <- if (is.null(val)) list(layout = layout) else
    list(class = class(val), type = typeof(val), length = length(val), dim = dim(val), layout = layout)
  # "shard_opened": close() detaches this copy, it never frees its owner's object.
  structure(list(path = handle_path(h, name), backing = h$backing, size = h$len, readonly = !v$writable,
                 class_info = ci, handle = handle, name = name,
                 options = list(numa = NA_character_, huge_pages = NA, copy_threads = NA)),
            class = c("shard_opened", "shard_shared"))
}

#' @export
close.shard_opened <- function(con, ...) {
  # In the owner's process the object is its owner's to close; elsewhere this detaches.
  if (isTRUE(.Call(C_owns, con$handle))) return(invisible(FALSE))
  invisible(.Call(C_close_if_open, con$handle))
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
