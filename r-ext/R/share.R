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
                  mode = c("balanced", "strict"), cluster = NULL) {
  if (missing(x)) stop("shard: `x` is missing: share(x) needs an R object to share", call. = FALSE)
  # share(x) alone of a vector without attributes (the common case, e.g.
  # lapply(xs, share)): one C call does share_one()'s work; NULL when it cannot.
  # (With one argument, `cluster` is NULL: checked after this.)
  if (nargs() == 1L && !is.null(out <- .Call(C_share_plain, x))) return(out)
  if (!is.null(cluster))   # one copy per node of a parallel/snow cluster: R/cluster.R
    return(share_cluster(x, cluster, list(backing = backing, readonly = readonly, name = name, deep = deep,
                                          min_bytes = min_bytes, cycle = cycle, mode = mode)))
  if (is.object(x)) {
    if (inherits(x, c("shard_shared", "shard_deep_shared"))) return(x)
    if (inherits(x, "shard_segment"))
      stop("shard: `x` is a shard_segment (already shared memory): use fetch() or segment_read() on it",
           call. = FALSE)
  }
  # share(x) with every argument at its default (the common case, e.g. lapply(xs, share))
  # skips the argument checks: each costs a closure call, ~1 us.
  if (missing(backing) && missing(readonly) && missing(name) && missing(deep) &&
      missing(min_bytes) && missing(cycle) && missing(mode)) {
    if (!is.atomic(x) || !is.null(attributes(x))) check_shareable(x, "x")
    return(share_one(x, "auto", TRUE, NULL))
  }
  backing <- arg_choice(backing, c("auto", "mmap", "shm"), "backing")
  readonly <- arg_flag(readonly, "readonly")
  deep <- arg_flag(deep, "deep")
  name <- arg_name(name)
  min_bytes <- arg_bytes(min_bytes, "min_bytes")
  cycle <- arg_choice(cycle, c("error", "skip"), "cycle")
  mode <- arg_choice(mode, c("balanced", "strict"), "mode")
  if (deep) {
    check_options()
    return(share_deep(x, backing = backing, readonly = readonly, name = name,
                      min_bytes = min_bytes, cycle = cycle, mode = mode))
  }
  check_shareable(x, "x")
  share_one(x, backing, readonly, name)
}

# Options passed to C: list(backing, readonly, huge_pages, copy_threads, name, placement).
# Read (and checked) in C; an option in an unusual form goes through check_options(),
# which names a bad one.
share_opts <- function(backing, readonly, name) {
  code <- .backing_code[[backing]]
  opts <- .Call(C_share_opts, code, readonly, name)
  if (is.null(opts)) {
    o <- check_options()
    opts <- list(code, readonly, o$huge_pages, as.integer(o$copy_threads), name, o$numa)
  }
  opts
}

# The shard.* options in force, validated (each error names the option).
check_options <- function() {
  placement <- getOption("shard.numa")
  if (!is.null(placement)) {
    if (!(is.character(placement) && length(placement) == 1L && !is.na(placement) &&
          grepl("^(default|local|interleave|bind:[0-9]+|preferred:[0-9]+)$", placement)))
      stop("shard: option shard.numa must be one of \"default\", \"local\", \"interleave\", ",
           "\"bind:N\" or \"preferred:N\" (N a NUMA node number)", call. = FALSE)
    if (placement == "default") placement <- NULL
  }
  huge <- getOption("shard.huge_pages", TRUE)
  if (!(is.logical(huge) && length(huge) == 1L && !is.na(huge)))
    stop("shard: option shard.huge_pages must be TRUE or FALSE", call. = FALSE)
  threads <- getOption("shard.copy_threads", 0L)
  if (!identical(threads, 0L) &&
      !(is.numeric(threads) && length(threads) == 1L && !is.na(threads) && threads >= 0 &&
        threads <= 256 && threads == round(threads)))
    stop("shard: option shard.copy_threads must be a whole number from 0 (choose) to 256", call. = FALSE)
  cow <- getOption("shard.cow", "allow")
  if (!identical(cow, "allow") && !(is.character(cow) && length(cow) == 1L && !is.na(cow) && cow == "error"))
    stop("shard: option shard.cow must be \"allow\" or \"error\"", call. = FALSE)
  ser <- getOption("shard.serialize", "handle")
  if (!identical(ser, "handle") && !(is.character(ser) && length(ser) == 1L && !is.na(ser) && ser == "data"))
    stop("shard: option shard.serialize must be \"handle\" or \"data\"", call. = FALSE)
  list(numa = placement, huge_pages = huge, copy_threads = threads, cow = cow, serialize = ser)
}

# How x is laid out in the arena: "vector", "composite" or "serialized".
layout_of <- function(x) {
  if (is.atomic(x)) return(if (typeof(x) %in% .native_types && !isS4(x)) "vector" else "serialized")
  if (typeof(x) == "list" && !isS4(x) && length(x) > 0L &&
      all(vapply(x, function(e) is.atomic(e) && typeof(e) %in% .native_types && !isS4(e),
                 logical(1))))
    return("composite")
  "serialized"
}

attrs_blob <- function(x) {
  a <- .Call(C_get_attrib, x)
  if (is.null(a)) NULL else serialize(a, NULL, xdr = FALSE)
}

# Runs a store call; a taken name becomes an error that names `name`.
store_call <- function(expr, name) {
  tryCatch(expr, error = function(e) {
    msg <- conditionMessage(e)
    if (!is.null(name) && grepl("already used by a live shared object", msg, fixed = TRUE))
      stop(sprintf("shard: `name` \"%s\" is already taken by a live shared object; choose another name or close() that object first",
                   name), call. = FALSE)
    stop(e)
  })
}

share_one <- function(x, backing, readonly, name, meta = NULL) {
  code <- .backing_code[[backing]]
  opts <- .Call(C_share_opts, code, readonly, name)   # NULL: check_options() has to look
  if (is.null(opts)) opts <- share_opts(backing, readonly, name)
  # Plain atomic vectors (the common case) inline; lists and the rest in share_call().
  plain <- is.atomic(x) && !is.null(x) && !is.object(x)
  if (plain) {
    layout <- "vector"
    handle <- if (is.null(name)) {
      .Call(C_share_vector, x, if (is.null(attributes(x))) NULL else attrs_blob(x), opts)
    } else store_call(.Call(C_share_vector, x, attrs_blob(x), opts), name)
  } else {
    layout <- layout_of(x)
    handle <- if (is.null(name)) share_call(x, layout, meta, opts) else
      store_call(share_call(x, layout, meta, opts), name)
  }
  # Nothing after the share may leave it live without an R object: close it on error.
  done <- FALSE
  on.exit(if (!done) try(.Call(C_close, handle), silent = TRUE))
  out <- .Call(C_shared_object, handle, x, layout, readonly, name, opts,
               if (plain) NULL else list(class = class(x), type = typeof(x), length = length(x),
                                         dim = dim(x), layout = layout))
  if (is.null(out$path)) out$path <- handle_path(decode_handle(handle), name)
  # The fallback warning comes before `done`: where it becomes an error
  # (options(warn = 2), a calling handler), the object is closed, not orphaned.
  if (!is.null(what <- .Call(C_take_fallback))) warn_fallback(what)
  done <- TRUE
  out
}

share_call <- function(x, layout, meta, opts) {
  switch(layout,
    vector = .Call(C_share_vector, x, attrs_blob(x), opts),
    composite = {
      leaves <- lapply(seq_along(x), function(i) .subset2(x, i))
      meta <- serialize(list(attrs = .Call(C_get_attrib, x),
                             leaf_attrs = lapply(leaves, function(e) .Call(C_get_attrib, e))),
                        NULL, xdr = FALSE)
      .Call(C_share_composite, leaves, meta, opts)
    },
    serialized = .Call(C_share_serialized, serialize(x, NULL, xdr = FALSE), meta, opts))
}

#' @export
fetch <- function(x, ..., plain = NULL) {
  # fetch(s) alone, of a shard_shared object's plain vector, is finished in C
  # without S3 dispatch: given a list, C_fetch checks the class and takes
  # x$handle itself (NULL: not that case, dispatch as usual). Any other
  # argument (plain =, wait =) goes through the methods.
  if (nargs() == 1L && is.list(x) && !is.null(v <- .Call(C_fetch, x))) return(v)
  UseMethod("fetch")
}

#' @export
fetch.shard_shared <- function(x, ..., plain = NULL) with_plain_mode(plain, fetch_shared(x))

fetch_shared <- function(x) {
  h <- x$handle
  # C_fetch takes a list as a whole object (fetch()'s first step); a handle that
  # is a list goes in as NULL: "a handle must be a raw vector of N bytes".
  if (is.list(h)) h <- NULL
  holder <- .Call(C_fetch, h)   # a plain vector is finished in C
  if (typeof(holder) != "externalptr") return(holder)
  info <- .Call(C_view_info, holder)
  restore_from_view(holder, x$handle, info)
}

# fetch(plain =): TRUE, FALSE, or NULL (the policy: ALTREP unless
# options(shard.plain_min_bytes) says otherwise; docs/ARCHITECTURE.md "Plain
# vectors over shared pages"). Anything else is an error.
check_plain <- function(plain) {
  if (!is.null(plain) && !(is.logical(plain) && length(plain) == 1L && !is.na(plain)))
    stop("shard: fetch(plain =) must be NULL (the default policy), TRUE (an ordinary R object, no ALTREP) ",
         "or FALSE (ALTREP vectors); got ", if (is.atomic(plain) && length(plain) == 1L)
           paste0("`", format(plain), "` (", typeof(plain), ")") else
           paste0("an object of class ", paste(class(plain), collapse = "/"), " and length ", length(plain)),
         call. = FALSE)
  plain
}

# Evaluates `expr` (a fetch) under the C-level plain mode (mapped.c: 1 = ordinary
# vectors, mapped or copied; 0 = ALTREP), restored on exit, errors included;
# under TRUE, character vectors left ALTREP are then materialized in one pass.
with_plain_mode <- function(plain, expr) {
  if (is.null(check_plain(plain))) return(expr)
  old <- .Call(C_plain_mode, NULL)
  on.exit(.Call(C_plain_mode, old))
  .Call(C_plain_mode, if (plain) 1L else 0L)
  v <- expr
  if (plain) .Call(C_plain_finish, v) else v
}

# Fetched vectors are marked not mutable, so that R duplicates (O(1): a new view)
# before any modification; options(shard.cow = "error") turns that into an error.
restore_from_view <- function(holder, handle, info) {
  kind <- info$kind
  if (kind == .kind[["serialized"]]) {
    return(unserialize(.Call(C_view_vector, holder, handle, TRUE)))
  }
  meta <- if (info$meta_len > 0) unserialize(.Call(C_view_meta, holder)) else NULL
  if (kind == .kind[["composite"]]) {
    leaves <- .Call(C_view_vector, holder, handle, TRUE)
    for (i in seq_along(leaves)) {
      leaves[[i]] <- .Call(C_set_attrib, leaves[[i]], meta$leaf_attrs[[i]], TRUE)
    }
    return(.Call(C_set_attrib, leaves, meta$attrs, FALSE))
  }
  v <- .Call(C_view_vector, holder, handle, TRUE)
  .Call(C_set_attrib, v, meta, TRUE)
}

#' @export
fetch.default <- function(x, ..., plain = NULL) {
  stop("shard: fetch() needs a shared object from share() or segment_create() (got an object of class ",
       paste(class(x), collapse = "/"), ")", call. = FALSE)
}

#' @export
close.shard_shared <- function(con, ...) {
  # C takes con$handle (without the `$` call for class exactly "shard_shared").
  invisible(.Call(C_close_if_open, con))
}

#' @export
is_shared <- function(x) {
  inherits(x, c("shard_shared", "shard_deep_shared", "shard_segment")) ||
    !is.null(.Call(C_vector_handle, x))
}

#' @export
materialize <- function(x) UseMethod("materialize")

# (a generic since the runtime: views have methods, see views.R)
#' @export
materialize.default <- function(x) {
  if (inherits(x, c("shard_shared", "shard_deep_shared", "shard_segment"))) x <- fetch(x)
  materialize_value(x)
}

# A private copy of x: every shard vector in it (list elements, S4 slots) copied
# to ordinary memory. Iterative, so an object of any depth works: a stack of the
# lists being copied, each an environment (its source, attributes, the copied
# elements so far and the next index); a list is finished (its attributes set
# back) once all its elements are. The copied elements are taken out of their
# environment before each write so R updates them in place (as sched_set()).
materialize_value <- function(x) {
  if (typeof(x) != "list") return(materialize_leaf(x))
  frame <- function(l) {
    f <- new.env(parent = emptyenv())
    f$src <- l
    f$attr <- .Call(C_get_attrib, l)
    f$out <- vector("list", length(l))
    f$i <- 1L
    f
  }
  stack <- list()
  fr <- frame(x)
  repeat {
    src <- fr$src
    out <- fr$out
    fr$out <- NULL
    i <- fr$i
    down <- NULL
    while (i <= length(src)) {
      el <- .subset2(src, i)
      if (typeof(el) == "list") { down <- el; break }
      out[i] <- list(materialize_leaf(el))
      i <- i + 1L
    }
    fr$out <- out
    out <- NULL
    fr$i <- i
    if (!is.null(down)) {
      stack[[length(stack) + 1L]] <- fr
      fr <- frame(down)
      next
    }
    done <- .Call(C_set_attrib, fr$out, fr$attr, FALSE)
    if (!length(stack)) return(done)
    fr <- stack[[length(stack)]]
    stack[[length(stack)]] <- NULL
    out <- fr$out
    fr$out <- NULL
    out[fr$i] <- list(done)
    fr$out <- out
    out <- NULL
    fr$i <- fr$i + 1L
  }
}

materialize_leaf <- function(x) {
  if (isS4(x) && typeof(x) == "S4") {
    for (nm in setdiff(names(attributes(x)), "class")) attr(x, nm) <- materialize_value(attr(x, nm))
    return(x)
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
  nd <- handle_node(x$handle)
  if (!is.null(nd))
    cat("  node: ", nd$hostname, " (", nd$id, if (nd$local) ", this node" else ", ANOTHER node", ")\n", sep = "")
  invisible(x)
}

# The node a handle was shared on: list(hostname, id, local) (shard_handle_node:
# decodes the handle, attaches nothing); NULL for a handle that does not decode.
handle_node <- function(handle) tryCatch(.Call(C_handle_node, handle), error = function(e) NULL)

#' @export
shard_node <- function() .Call(C_node_info)

format_bytes <- function(n) {
  units <- c("B", "KiB", "MiB", "GiB", "TiB")
  i <- if (n > 0) min(length(units), floor(log(n, 1024)) + 1) else 1
  paste0(format(round(n / 1024^(i - 1), 1), nsmall = 0), " ", units[i])
}

# Decodes the fields of a handle that R reports (see docs/FORMAT.md): kind, writable,
# backing, owner_pid, region_id, owner_start, fd, generation, offset, len, region_size.
decode_handle <- function(h) .Call(C_decode_handle, h)

handle_path <- function(h, name) {
  switch(h$backing,
         memfd = sprintf("/proc/%.0f/fd/%.0f", h$owner_pid, h$fd),
         shm = file.path("/dev/shm", handle_base(h)),
         mmap = file.path(shard_tmpdir(), handle_base(h)))
}

handle_base <- function(h)
  sprintf("shard-%d-%.0f-%.0f-%.0f", user_id(), h$owner_pid, h$owner_start, h$region_id)

# The real uid, read once (so that no file needs opening after a share, e.g. at the fd limit).
user_id <- function() {
  if (is.null(.shard_state$uid)) {
    st <- readLines("/proc/self/status", warn = FALSE)
    .shard_state$uid <- as.integer(strsplit(sub("^Uid:\\s*", "", st[startsWith(st, "Uid:")]), "\\s+")[[1]][1])
  }
  .shard_state$uid
}

# The per-user directory (names, mmap backing files) exactly as the store uses
# it: node-scoped on shared filesystems (docs/CLUSTERS.md), so never rebuilt here.
shard_tmpdir <- function() .Call(C_user_dir)

.shard_state <- new.env(parent = emptyenv())
.shard_state$warned_fallback <- FALSE

# Warns (once per session) when a large object really got smaller pages than it asked
# for: 4 KiB pages (or shmem THP). A step from 1 GiB to 2 MiB hugetlb pages is not one:
# the object still has huge pages (shard_diagnostics() counts every step).
warn_fallbacks <- function() {
  what <- .Call(C_take_fallback)
  if (!is.null(what)) warn_fallback(what)
}

warn_fallback <- function(what) {
  if (.shard_state$warned_fallback) return(invisible())
  .shard_state$warned_fallback <- TRUE
  warning("shard: huge pages were not available for a large object: ", what,
          ". See shard_diagnostics() (warned once per session).", call. = FALSE)
}
