# Low-level segments: raw shared memory that its creator writes, then seals.
# segment_create/open/write/read/info/protect/close.

.segment_types <- c("raw", "double", "integer", "logical", "complex")
.type_size <- c(raw = 1, double = 8, integer = 4, logical = 4, complex = 16)

#' @export
segment_create <- function(size, backing = c("auto", "mmap", "shm"), path = NULL, readonly = FALSE, name = NULL) {
  if (missing(size)) stop("shard: `size` is missing: segment_create(size) needs a size in bytes", call. = FALSE)
  size <- arg_count(size, "size", min = 1)
  # The C entry point's bound (doubles are exact below it); without this check its
  # message said "must be a positive number of bytes" of a positive size.
  if (size > 9e15)
    stop(sprintf("shard: `size` %.0f bytes is more than a segment can hold (at most 9e15 bytes)", size), call. = FALSE)
  backing <- arg_choice(backing, c("auto", "mmap", "shm"), "backing")
  readonly <- arg_flag(readonly, "readonly")
  name <- path_as_name(path, name)
  opts <- share_opts(backing, FALSE, name)
  handle <- store_call(.Call(C_segment_create, size, opts), name)
  seg <- tryCatch(new_segment(handle, name, size), error = function(e) {
    try(.Call(C_close, handle), silent = TRUE)
    stop(e)
  })
  # readonly = TRUE (reference): written once, then sealed; the first segment_write()
  # seals it (see segment_write()). The handle stays writable until then.
  seg$seal_after_write <- readonly
  remember_segment(seg)
  seg
}

# The reference's `path =` (a file path for mmap, a name for shm) maps onto our
# `name =`: the store chooses file locations itself, so `path` must be a name.
path_as_name <- function(path, name) {
  if (is.null(path)) return(arg_name(name))
  if (!is.null(name) && !identical(path, name))
    stop("shard: give `path` or `name`, not both (they are the same thing here)", call. = FALSE)
  if (is.character(path) && length(path) == 1L && !is.na(path) && grepl("/", path, fixed = TRUE))
    stop("shard: `path` must be a name such as \"my-data\" (letters, digits, '.', '_', '-'), not a file path: ",
         "shard places segment files itself; open the segment elsewhere with segment_open(\"my-data\")",
         call. = FALSE)
  tryCatch(arg_name(path), error = function(e)
    stop(sub("`name`", "`path`", conditionMessage(e), fixed = TRUE), call. = FALSE))
}

# Segments this session created or opened, by path, for segment_open(path) and
# segment_report(). Entries go when the segment is closed.
.shard_segments <- new.env(parent = emptyenv())   # a path registry (R/paths.R)

remember_segment <- function(seg) {
  registry_add(.shard_segments, seg$path, seg$handle, seg$name)
  invisible(seg)
}

new_segment <- function(handle, name, size) {
  h <- decode_handle(handle)
  structure(list(path = handle_path(h, name), backing = h$backing, size = size,
                 readonly = !h$writable, handle = handle, name = name, owner_pid = h$owner_pid),
            class = "shard_segment")
}

#' @export
segment_open <- function(path, backing = c("mmap", "shm"), readonly = TRUE, x = NULL) {
  # `x` is this package's earlier name of the first argument.
  if (missing(path)) {
    if (is.null(x)) stop("shard: `path` is missing: segment_open() needs a segment's path (segment_path()), its name, a shard_segment or a handle", call. = FALSE)
    path <- x
  }
  arg <- if (missing(path)) "x" else "path"
  backing <- arg_choice(backing, c("mmap", "shm"), "backing")   # checked; the handle says the real one
  readonly <- arg_flag(readonly, "readonly")
  x <- path
  name <- NULL
  one_string <- is.character(x) && length(x) == 1L && !is.na(x) && nzchar(x)
  if (inherits(x, "shard_segment")) {
    handle <- x$handle
    name <- x$name
  } else if (is.raw(x)) {
    if (length(x) != handle_len()) {
      # A handle of another version has another length: C (Rust) names the version.
      if (length(x) > 4L && identical(x[1:4], charToRaw("SHH1"))) .Call(C_handle_node, x)
      stop(sprintf("shard: `%s` must be a segment handle (a raw vector of %d bytes), not a raw vector of ",
                   arg, handle_len()), length(x), " bytes", call. = FALSE)
    }
    handle <- x
  } else if (one_string && !is.null(known <- registry_find(.shard_segments, x))) {
    handle <- known$handle    # a path from segment_path() in this session
    name <- known$name
  } else if (one_string && grepl("/", x, fixed = TRUE)) {
    stop("shard: no segment of this session has the path \"", x, "\"; another process opens a segment by ",
         "the name it was created with (segment_create(size, path = \"my-data\")), by its handle or by the ",
         "shard_segment object", call. = FALSE)
  } else if (is.character(x)) {
    if (!one_string) stop(sprintf("shard: `%s` must be a single non-empty name or path", arg), call. = FALSE)
    name <- tryCatch(arg_name(x), error = function(e)
      stop(sub("`name`", sprintf("`%s` (a segment name)", arg), conditionMessage(e), fixed = TRUE), call. = FALSE))
    handle <- .Call(C_lookup_name, name)
  } else {
    stop(sprintf("shard: `%s` must be a shard_segment, a segment handle (raw) or a segment path or name (string), not ",
                 arg), paste(class(x), collapse = "/"), call. = FALSE)
  }
  holder <- tryCatch(.Call(C_attach, handle), error = function(e)
    stop(sprintf("shard: cannot open the segment `%s` gives: %s", arg, sub("^shard: ", "", conditionMessage(e))),
         call. = FALSE))
  v <- .Call(C_view_info, holder)
  if (v$kind != .kind[["bytes"]])
    stop("shard: `x` names a shared object, not a segment: use share_open() for objects made by share()",
         call. = FALSE)
  seg <- new_segment(handle, name, v$data_len)
  seg$readonly <- readonly || !v$writable || all(c("write", "shrink", "grow") %in% seal_names(v$seals))
  seg$opened <- TRUE
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
  h <- decode_handle(handle)
  holder <- tryCatch(.Call(C_attach, handle), error = function(e) e)
  if (inherits(holder, "error") && !grepl("closed", conditionMessage(holder), fixed = TRUE)) stop(holder)
  if (inherits(holder, "error") || isTRUE(.Call(C_view_info, holder)$closed))
    stop("shard: `x` has been closed (segment_close() or close() was called on it); it can no longer be written",
         call. = FALSE)
  v <- .Call(C_view_info, holder)
  if (!isTRUE(.Call(C_owns, handle)))
    stop(sprintf("shard: only the process that created this segment (pid %.0f) can write it; this is pid %d",
                 h$owner_pid, Sys.getpid()), call. = FALSE)
  if (!h$writable)
    stop("shard: `x` is read-only (it was shared with readonly = TRUE)", call. = FALSE)
  # Only layouts without internal headers take raw writes: a segment, or one plain
  # vector of fixed-size values (offsets then address values). Strings, data.frame
  # and list composites and serialized objects keep counts and offsets in the bytes
  # that readers trust, so a write there could expose a forged header to them.
  kind <- names(.kind)[match(v$kind, .kind)]
  if (!kind %in% c("bytes", "double", "integer", "logical", "raw", "complex"))
    stop(sprintf("shard: segment_write() cannot write into a shared %s: its layout has internal headers that readers rely on. ",
                 switch(kind, character = "character vector", composite = "list or data.frame", "serialized object")),
         "Share the vectors to update one by one (share(column, readonly = FALSE)), or use segment_create()",
         call. = FALSE)
  n <- length(data) * .type_size[[typeof(data)]]
  len <- v$data_len
  if (offset + n > len)
    stop(sprintf("shard: writing %.0f bytes at `offset` %.0f overflows the segment of %.0f bytes",
                 n, offset, len), call. = FALSE)
  tryCatch(.Call(C_segment_write, handle, offset, data), error = function(e) {
    if (grepl("read-only", conditionMessage(e), fixed = TRUE))
      stop("shard: the segment is protected (segment_protect() sealed it); it can no longer be written",
           call. = FALSE)
    stop(e)
  })
  if (isTRUE(x$seal_after_write)) .Call(C_protect, handle)   # segment_create(readonly = TRUE)
  invisible(n)
}

#' @export
segment_read <- function(x, offset = 0, size = NULL, type = c("raw", "double", "integer", "logical", "complex"),
                         length = NULL) {
  handle <- segment_handle(x, "read")
  offset <- arg_count(offset, "offset", min = 0)
  type <- arg_choice(type, .segment_types, "type")
  es <- .type_size[[type]]
  # `size` counts bytes (reference); `length` counts values (this package's name). An
  # unnamed third argument with a non-raw `type` keeps its earlier meaning: values.
  by_size <- FALSE
  if (!is.null(size)) {
    if (!is.null(length)) stop("shard: give `size` (bytes) or `length` (values), not both", call. = FALSE)
    call_names <- names(sys.call())
    positional <- is.null(call_names) || !any(call_names == "size")
    if (type != "raw" && positional) {
      length <- size
    } else {
      size <- arg_count(size, "size", min = 0)
      if (size %% es != 0)
        stop(sprintf("shard: `size` %.0f is not a whole number of %s values (%d bytes each); use `length` to count values",
                     size, type, es), call. = FALSE)
      length <- size / es
      by_size <- TRUE
    }
  }
  holder <- .Call(C_attach, handle)
  len <- .Call(C_view_info, holder)$data_len
  if (is.null(length)) {
    if (offset > len) stop(sprintf("shard: `offset` %.0f is past the end of the segment (%.0f bytes)", offset, len),
                           call. = FALSE)
    length <- floor((len - offset) / es)
  } else {
    length <- arg_count(length, "length", min = 0)
    if (offset + length * es > len) {
      if (by_size)
        stop(sprintf("shard: `size` %.0f bytes at `offset` %.0f overflows the segment of %.0f bytes",
                     size, offset, len), call. = FALSE)
      stop(sprintf("shard: `length` %.0f (%s values, %.0f bytes) at `offset` %.0f overflows the segment of %.0f bytes",
                   length, type, length * es, offset, len), call. = FALSE)
    }
  }
  .Call(C_segment_read, holder, offset, length, type)
}

#' @export
segment_info <- function(x) {
  handle <- segment_handle(x, "info")
  h <- decode_handle(handle)
  owns <- isTRUE(.Call(C_owns, handle))
  holder <- tryCatch(.Call(C_attach, handle), error = function(e) e)
  if (inherits(holder, "error"))
    return(list(path = handle_path(h, x$name), backing = h$backing, size = NA_real_, readonly = TRUE,
                owns = owns, owner_pid = h$owner_pid, attached = FALSE,
                closed = grepl("closed", conditionMessage(holder), fixed = TRUE), error = conditionMessage(holder)))
  v <- .Call(C_view_info, holder)
  seals <- seal_names(v$seals)
  sealed <- all(c("write", "shrink", "grow") %in% seals)
  list(path = handle_path(h, x$name), backing = h$backing, size = v$data_len,
       readonly = !v$writable || sealed || isTRUE(x$opened) && isTRUE(x$readonly), owns = owns,
       sealed = sealed, seals = seals, page_size = v$page_size,
       owner_pid = h$owner_pid, owner = owns, name = x$name,
       closed = v$closed, attached = TRUE)
}

#' @export
segment_path <- function(x) {
  handle <- segment_handle(x, "info")
  handle_path(decode_handle(handle), x$name)
}

#' @export
segment_size <- function(x) {
  handle <- segment_handle(x, "info")
  as.numeric(segment_len(handle))
}

.advice <- c(normal = 0L, random = 1L, sequential = 2L, willneed = 3L, dontneed = 4L)

#' @export
segment_advise <- function(seg, advice = c("normal", "sequential", "random", "willneed", "dontneed")) {
  handle <- segment_handle(seg, "info")
  advice <- arg_choice(advice, names(.advice)[c(1, 3, 2, 4, 5)], "advice")
  holder <- .Call(C_attach, handle)
  if (isTRUE(.Call(C_view_info, holder)$closed))
    stop("shard: `seg` has been closed; there is nothing to advise", call. = FALSE)
  view_advise(holder, advice)
}

# madvise(2) on a view's pages (r-ext/src/advise.c -> shard_view_advise ->
# allocator/src/sys/mman.rs); TRUE when the kernel took the hint. Only this
# process's mapping is affected; the shared bytes never change.
view_advise <- function(holder, advice) {
  isTRUE(.Call(C_view_advise, holder, .advice[[advice]]))
}

#' @export
available_backings <- function() {
  # memfd is what "auto" chooses; "mmap" needs the per-user directory, "shm" /dev/shm.
  out <- "auto"
  if (dir.exists("/dev/shm") && file.access("/dev/shm", 2L) == 0L) out <- c(out, "shm")
  # the per-user directory, or the nearest existing directory above it (it is
  # created on first use): writable means "mmap" can work
  d <- shard_tmpdir()
  while (!dir.exists(d) && dirname(d) != d) d <- dirname(d)
  if (file.access(d, 2L) == 0L) out <- c(out, "mmap")
  c("auto", "mmap", "shm")[c("auto", "mmap", "shm") %in% out]
}

#' @export
segment_report <- function() {
  segs <- list()
  for (e in registry_live(.shard_segments)) {
    holder <- .Call(C_attach, e$handle)
    v <- .Call(C_view_info, holder)
    h <- decode_handle(e$handle)
    segs[[length(segs) + 1L]] <- list(path = e$path, name = e$name, backing = h$backing, size = v$data_len,
                                      readonly = !v$writable || all(c("write", "shrink", "grow") %in% seal_names(v$seals)),
                                      owns = isTRUE(.Call(C_owns, e$handle)), owner_pid = h$owner_pid)
  }
  structure(list(type = "segment", timestamp = Sys.time(), n_segments = length(segs),
                 total_bytes = sum(vapply(segs, function(s) as.numeric(s$size), 0)), segments = segs),
            class = "shard_report")
}

#' @export
print.shard_report <- function(x, ...) {
  cat("<shard_report> ", x$type, " report at ", format(x$timestamp), "\n", sep = "")
  if (identical(x$type, "segment")) {
    cat("  ", x$n_segments, " segment", if (x$n_segments != 1) "s", ", ", format_bytes(x$total_bytes), "\n", sep = "")
    for (s in x$segments)
      cat("  ", format_bytes(s$size), "  ", s$backing, if (s$readonly) "  readonly", if (s$owns) "  owned",
          "  ", s$path, "\n", sep = "")
  }
  invisible(x)
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

# Returns TRUE when this call closed the segment, FALSE when there was nothing to do
# (already closed, or unlink = FALSE); invisibly. The reference returns NULL.
#' @export
segment_close <- function(x, unlink = NULL) {
  handle <- segment_handle(x, "close")
  if (!is.null(unlink)) unlink <- arg_flag(unlink, "unlink")
  owns <- isTRUE(.Call(C_owns, handle))
  # Default (reference): unlink what this process created, only detach what it opened.
  if (is.null(unlink)) unlink <- owns && !isTRUE(x$opened)
  if (!owns && unlink)
    stop(sprintf("shard: only the process that created this segment (pid %.0f) can unlink it; use segment_close(x, unlink = FALSE) to detach",
                 decode_handle(handle)$owner_pid), call. = FALSE)
  # The owner keeps the object for its other users (until it closes it with
  # unlink = TRUE, or exits): in the owner's process detaching would close it.
  if (owns && !unlink) return(invisible(FALSE))
  # Owner and unlink: the object is freed. Another process: its views are detached.
  res <- tryCatch({ .Call(C_close, handle); TRUE },
                  error = function(e) {
                    if (grepl("has been closed", conditionMessage(e), fixed = TRUE)) FALSE else stop(e)
                  })
  if (inherits(x, "shard_segment")) registry_remove(.shard_segments, x$path, handle)
  invisible(res)
}

#' @export
close.shard_segment <- function(con, ...) segment_close(con, ...)

#' @export
fetch.shard_segment <- function(x, ..., plain = NULL) {
  # A segment is writable memory that other processes change: its raw vector
  # stays ALTREP (plain = NULL or FALSE); an ordinary vector would be a snapshot.
  if (isTRUE(check_plain(plain)))
    stop("shard: fetch(plain = TRUE) does not apply to a shard_segment (writable shared memory whose bytes ",
         "can change): use segment_read() for an ordinary copy of its bytes", call. = FALSE)
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

# The length of a handle of this build (SHARD_HANDLE_LEN in shard.h), from C.
handle_len <- function() .Call(C_handle_len)
