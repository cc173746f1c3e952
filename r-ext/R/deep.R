# share(deep = TRUE): walks lists, data.frames, S4 slots and environments, shares
# each component of at least `min_bytes` in a segment of its own, and keeps the
# rest in place in a "skeleton" (the object with shard_deep_ref placeholders).
# The same object reached twice is shared once (alias kept); environments that
# refer back to themselves follow `cycle`; per-class hooks steer the walk.
#
# Paths name components the way R would reach them: x$a, x[[2]], x@slot, x$env$b.

#' @export
shard_share_hook <- function(x, ctx) UseMethod("shard_share_hook")

#' @export
shard_share_hook.default <- function(x, ctx) list()

share_deep <- function(x, backing, readonly, name, min_bytes, cycle, mode) {
  st <- new.env(parent = emptyenv())
  st$opts <- list(backing = backing, readonly = readonly, min_bytes = min_bytes, cycle = cycle,
                  strict = mode == "strict", mode = mode)
  st$memo <- new.env(hash = TRUE, parent = emptyenv())   # address -> segment id
  st$envs <- new.env(hash = TRUE, parent = emptyenv())   # address -> list(copy, done)
  st$segments <- list()
  st$keep <- list()        # objects made by rewrite(): alive while their addresses are memo keys
  st$skip <- character()
  st$force <- character()
  st$log <- new.env(hash = TRUE, parent = emptyenv())   # "1", "2", ... -> record (O(1) appends)
  st$n <- 0L
  ok <- FALSE
  on.exit(if (!ok) for (s in st$segments) try(close(s), silent = TRUE))
  skeleton <- deep_walk(x, "x", st)
  log <- if (st$n) mget(as.character(seq_len(st$n)), envir = st$log) else list()
  actions <- vapply(log, `[[`, "", "action")
  components <- data.frame(path = vapply(log, `[[`, "", "path"), action = actions,
                           bytes = vapply(log, function(e) as.numeric(e$bytes), 0),
                           segment = vapply(log, function(e) as.integer(e$segment), 0L),
                           stringsAsFactors = FALSE, row.names = NULL)
  envs <- lapply(ls(st$envs, all.names = TRUE), function(a) get(a, st$envs)$copy)
  segs <- st$segments
  seg_bytes <- vapply(segs, function(s) as.numeric(s$size), 0)
  out <- structure(list(
    path = vapply(segs, `[[`, "", "path"),
    backing = if (length(segs)) segs[[1]]$backing else if (backing == "auto") "memfd" else backing,
    size = sum(seg_bytes),
    readonly = readonly,
    class_info = list(class = class(x), type = typeof(x), length = length(x), dim = dim(x), layout = "deep"),
    segments = segs,
    skeleton = skeleton,
    envs = envs,
    summary = deep_summary(actions, sum(seg_bytes)),
    components = components,
    name = name,
    min_bytes = min_bytes,
    mode = mode,
    cycle = cycle
  ), class = "shard_deep_shared")
  if (!is.null(name)) {
    # The deep object itself (segment handles and skeleton) is shared under the name.
    out$index <- share_one(out, backing, TRUE, name, meta = serialize(list(shard = "deep"), NULL))
  }
  ok <- TRUE
  out
}

# The reference's summary (shared_count, alias_count, kept_count, ...); the names this
# package used before (shared, aliased, kept, skipped, cycles) still index it.
# Hook errors are kept in place and count as skipped (also hook_error_count).
deep_summary <- function(actions, bytes) {
  structure(list(shared_count = sum(actions == "shared"), alias_count = sum(actions == "aliased"),
                 kept_count = sum(actions == "kept"),
                 skipped_count = sum(actions %in% c("skipped", "hook_error")),
                 cycle_count = sum(actions == "cycle"), hook_error_count = sum(actions == "hook_error"),
                 total_shared_bytes = bytes),
            class = "shard_deep_summary")
}

.summary_old_names <- c(shared = "shared_count", aliased = "alias_count", kept = "kept_count",
                        skipped = "skipped_count", cycles = "cycle_count")

#' @export
`[[.shard_deep_summary` <- function(x, i, ...) {
  if (is.character(i) && length(i) == 1L && i %in% names(.summary_old_names)) i <- .summary_old_names[[i]]
  unclass(x)[[i]]
}

#' @export
`$.shard_deep_summary` <- function(x, name) x[[name]]

#' @export
print.shard_deep_summary <- function(x, ...) {
  cat(sprintf("%d shared (%s), %d aliased, %d kept, %d skipped (%d hook errors), %d cycles\n",
              x$shared_count, format_bytes(x$total_shared_bytes), x$alias_count, x$kept_count,
              x$skipped_count, x$hook_error_count, x$cycle_count))
  invisible(x)
}

deep_log <- function(st, path, action, bytes = NA_real_, segment = NA_integer_) {
  n <- st$n + 1L
  st$n <- n
  assign(as.character(n), list(path = path, action = action, bytes = bytes, segment = segment), envir = st$log)
}

# Bytes of the data of x (exact for atomic vectors; object.size otherwise).
deep_bytes <- function(x) {
  sz <- switch(typeof(x), double = 8, integer = 4, logical = 4, complex = 16, raw = 1, NA)
  if (!is.na(sz)) return(as.numeric(length(x)) * sz)
  as.numeric(utils::object.size(x))
}

special_env <- function(e) {
  identical(e, globalenv()) || identical(e, baseenv()) || identical(e, emptyenv()) ||
    isNamespace(e) || !is.null(attr(e, "name", exact = TRUE)) || environmentName(e) %in% search()
}

deep_fail <- function(st, path, what) {
  if (st$opts$strict) stop(sprintf("shard: %s (at %s; mode = \"strict\")", what, path), call. = FALSE)
}

# The first function, external pointer or weak reference in x (list elements,
# attributes, S4 slots), as list(what, path); NULL if none. An environment that is
# a component (not a global, package or namespace one) is walked too, for pointers
# only: serialize() keeps its functions but turns an external pointer into NULL,
# silently. Environments reached through attributes or closures (a formula's, a
# function's) are not walked: they are context, not data. Iterative: any depth.
find_unshareable <- function(x, path, via_attr = FALSE) {
  todo <- list(list(x, path, FALSE, via_attr))   # node, path, inside an environment, via attribute
  seen <- character()
  while (length(todo)) {
    item <- todo[[length(todo)]]
    todo[[length(todo)]] <- NULL
    node <- item[[1]]
    p <- item[[2]]
    in_env <- item[[3]]
    bad <- unshareable_type(node)
    if (!is.null(bad) && !(in_env && bad == "a function")) return(list(what = bad, path = p))
    if (is.environment(node)) {
      if (item[[4]] || special_env(node)) next
      addr <- .Call(C_address, node)
      if (addr %in% seen) next
      seen <- c(seen, addr)
      for (nm in ls(node, all.names = TRUE)) {
        if (bindingIsActive(nm, node)) next
        todo[[length(todo) + 1L]] <- list(get(nm, envir = node, inherits = FALSE), paste0(p, "$", nm), TRUE, FALSE)
      }
      next
    }
    if (typeof(node) == "list") {
      nms <- names(node)
      for (i in rev(seq_along(node)))
        todo[[length(todo) + 1L]] <- list(.subset2(node, i), child_path(p, nms, i), in_env, item[[4]])
    }
    if (typeof(node) == "closure") next
    a <- attributes(node)
    for (nm in setdiff(names(a), c("names", "dim", "dimnames", "class", "levels", "row.names", "tsp", "comment")))
      todo[[length(todo) + 1L]] <- list(a[[nm]], if (isS4(node)) paste0(p, "@", nm) else sprintf("attr(%s, \"%s\")", p, nm),
                                        in_env, !isS4(node))
  }
  NULL
}

# Resolves hook paths: relative to the hooked object ("$a", "[[2]]", "@s", or a bare
# name), or absolute (starting with the object's own path, or "<root>" for "x").
hook_paths <- function(p, base, field, path) {
  if (is.null(p) || length(p) == 0L) return(character())
  if (!is.character(p) || anyNA(p))
    stop(sprintf("shard_share_hook() for %s returned a `%s` that is not a character vector", path, field))
  p <- sub("^<root>", "x", p)
  abs <- p == base | startsWith(p, paste0(base, "$")) | startsWith(p, paste0(base, "@")) |
    startsWith(p, paste0(base, "[["))
  ifelse(abs, p, ifelse(grepl("^(\\$|\\[\\[|@)", p), paste0(base, p), paste0(base, "$", p)))
}

# Calls the hook of node's class with the reference's context; a method written for
# this package's earlier signature (x, path = , ...) gets `path =`.
call_hook <- function(node, ctx) {
  m <- NULL
  for (cl in class(node)) {
    m <- utils::getS3method("shard_share_hook", cl, optional = TRUE, envir = asNamespace("shard"))
    if (!is.null(m)) break
  }
  if (is.null(m)) return(NULL)
  f <- names(formals(m))
  if ("ctx" %in% f) return(m(node, ctx = ctx))
  if ("path" %in% f) return(m(node, path = ctx$path))
  if ("..." %in% f) return(m(node, ctx, path = ctx$path))
  m(node, ctx)
}

hook_ctx <- function(node, path, st) {
  list(path = path, class = class(node), mode = st$opts$mode, min_bytes = st$opts$min_bytes,
       types = c("double", "integer", "logical", "raw", "complex", "character"), deep = TRUE)
}

# Runs the hook: list(node, error) where error is TRUE when the hook failed (the node
# is then kept in place, counted as skipped, and not walked).
run_hook <- function(node, path, st) {
  h <- tryCatch({
    h <- call_hook(node, hook_ctx(node, path, st))
    if (!is.null(h) && !is.list(h)) stop("it returned ", class(h)[1], ", not a list or NULL")
    if (!is.null(h$rewrite) && !is.function(h$rewrite)) stop("its `rewrite` is not a function")
    if (!is.null(h$skip_slots) && (!is.character(h$skip_slots) || anyNA(h$skip_slots)))
      stop("its `skip_slots` is not a character vector")
    list(skip = c(hook_paths(h$skip_paths, path, "skip_paths", path),
                  if (length(h$skip_slots)) paste0(path, "@", h$skip_slots)),
         force = hook_paths(h$force_share_paths, path, "force_share_paths", path),
         rewrite = h$rewrite)
  }, error = function(e) e)
  if (inherits(h, "error")) {
    deep_fail(st, path, paste("shard_share_hook() failed:", conditionMessage(h)))
    deep_log(st, path, "hook_error")
    return(list(node = node, error = TRUE))
  }
  st$skip <- c(st$skip, h$skip)
  st$force <- c(st$force, h$force)
  if (is.function(h$rewrite)) {
    new <- tryCatch(h$rewrite(node), error = function(e) e)
    if (inherits(new, "error")) {
      deep_fail(st, path, paste("the rewrite function of shard_share_hook() failed:", conditionMessage(new)))
      deep_log(st, path, "hook_error")
      return(list(node = node, error = TRUE))
    }
    st$keep[[length(st$keep) + 1L]] <- new
    return(list(node = new, error = FALSE))
  }
  list(node = node, error = FALSE)
}

# The walk keeps its own stack (no R recursion), so any nesting depth works. A frame
# is an environment: the node being rebuilt, its children still to visit and their
# new values. deep_enter() decides a node at once (a leaf: shared, aliased, kept,
# skipped) or opens a frame for a list, S4 object or environment.
deep_walk <- function(root, path, st) {
  active <- function(f, ch) {
    if (ch$type != "bind" || !bindingIsActive(ch$key, f$node)) return(FALSE)
    deep_fail(st, ch$path, "cannot share an active binding")
    deep_log(st, ch$path, "skipped")
    TRUE
  }
  deep_iterate(deep_enter(root, path, st), function(old, ch) deep_enter(old, ch$path, st),
               function(f) deep_finish(f, st), skip = active)
}

# The one loop of both iterative walks (deep_walk() when sharing, deep_rebuild()
# when fetching). `first` is done(value) or a frame: an environment with the
# node, its children (list(type = "elt"/"attr"/"bind", key)), the index of the
# last one visited (i) and the new values collected (vals). `enter(old, ch)`
# decides a child: done(value) or a frame of its own; `finish(f)` makes a
# frame's new node once its children are visited; `skip(f, ch)`, when given,
# is TRUE for a child to leave as it is without reading it.
deep_iterate <- function(first, enter, finish, skip = NULL) {
  if (!is.environment(first)) return(first$value)
  stack <- list(first)
  repeat {
    f <- stack[[length(stack)]]
    if (f$i < length(f$children)) {
      f$i <- f$i + 1L
      ch <- f$children[[f$i]]
      if (!is.null(skip) && skip(f, ch)) next
      old <- switch(ch$type, elt = .subset2(f$node, ch$key), attr = attr(f$node, ch$key, exact = TRUE),
                    bind = get(ch$key, envir = f$node, inherits = FALSE))
      r <- enter(old, ch)
      if (is.environment(r)) {
        r$parent_old <- old
        stack[[length(stack) + 1L]] <- r
      } else {
        deep_deliver(f, ch, old, r$value)
      }
      next
    }
    value <- finish(f)
    stack[[length(stack)]] <- NULL
    if (!length(stack)) return(value)
    p <- stack[[length(stack)]]
    deep_deliver(p, p$children[[p$i]], f$parent_old, value)
  }
}

deep_deliver <- function(f, ch, old, new) {
  if (ch$type == "bind") {
    assign(ch$key, new, envir = f$copy)
  } else if (!identical(.Call(C_address, new), .Call(C_address, old))) {
    f$vals[[length(f$vals) + 1L]] <- list(ch = ch, value = new)
  }
}

done <- function(value) list(value = value)

deep_enter <- function(node, path, st) {
  bad <- unshareable_type(node)
  if (!is.null(bad)) {
    deep_fail(st, path, paste("cannot share", bad))
    deep_log(st, path, "skipped")
    return(done(node))
  }
  if (path %in% st$skip) {
    deep_log(st, path, "skipped", deep_bytes(node))
    return(done(node))
  }
  if (is.object(node) && !is.environment(node) || isS4(node)) {
    h <- run_hook(node, path, st)
    if (h$error) return(done(node))
    node <- h$node
  }
  addr <- .Call(C_address, node)
  if (!is.null(id <- st$memo[[addr]])) {
    deep_log(st, path, "aliased", st$segments[[id]]$size, id)
    return(done(deep_ref(id)))
  }
  if (is.environment(node)) return(deep_env(node, addr, path, st))
  forced <- path %in% st$force
  walkable <- typeof(node) == "list" || (isS4(node) && typeof(node) == "S4")
  if (forced || (!walkable && is.vector_like(node) && deep_bytes(node) >= st$opts$min_bytes)) {
    bad <- find_unshareable(node, path)
    if (!is.null(bad)) {
      deep_fail(st, bad$path, paste("cannot share", bad$what))
      deep_log(st, bad$path, "skipped")
      return(done(node))
    }
    seg <- share_one(node, st$opts$backing, st$opts$readonly, NULL)
    id <- length(st$segments) + 1L
    st$segments[[id]] <- seg
    assign(addr, id, envir = st$memo)
    deep_log(st, path, "shared", seg$size, id)
    return(done(deep_ref(id)))
  }
  # Attributes that are not walked (all but S4 slots) stay in place as they are: a
  # function or pointer among them is an error in strict mode, else counted skipped.
  if (!isS4(node) && !is.null(a <- attributes(node))) {
    a <- a[setdiff(names(a), c("names", "dim", "dimnames", "class", "levels", "row.names", "tsp", "comment"))]
    for (nm in names(a)) {
      bad <- find_unshareable(a[[nm]], sprintf("attr(%s, \"%s\")", path, nm), via_attr = TRUE)
      if (!is.null(bad)) {
        deep_fail(st, bad$path, paste("cannot share", bad$what))
        deep_log(st, bad$path, "skipped")
      }
    }
  }
  if (!walkable && !isS4(node)) {
    deep_log(st, path, "kept", deep_bytes(node))
    return(done(node))
  }
  f <- new.env(parent = emptyenv())
  f$node <- node
  f$path <- path
  f$kind <- "obj"
  f$walkable <- walkable
  f$i <- 0L
  f$vals <- list()
  ch <- list()
  if (typeof(node) == "list") {
    nms <- names(node)
    ch <- lapply(seq_along(node), function(i) list(type = "elt", key = i, path = child_path(path, nms, i)))
  }
  if (isS4(node)) {
    for (nm in setdiff(names(attributes(node)), "class"))
      ch[[length(ch) + 1L]] <- list(type = "attr", key = nm, path = paste0(path, "@", nm))
  }
  f$children <- ch
  f
}

deep_finish <- function(f, st) {
  if (f$kind == "env") {
    a <- attributes(f$node)
    if (length(a)) attributes(f$copy) <- a
    assign(f$addr, list(copy = f$copy, done = TRUE), envir = st$envs)
    return(f$copy)
  }
  node <- f$node
  elts <- Filter(function(v) v$ch$type == "elt", f$vals)
  if (length(elts)) {
    idx <- vapply(elts, function(v) as.integer(v$ch$key), 0L)
    node <- .Call(C_list_replace, node, idx, lapply(elts, `[[`, "value"))
  }
  for (v in Filter(function(v) v$ch$type == "attr", f$vals)) attr(node, v$ch$key) <- v$value
  if (!f$walkable) deep_log(st, f$path, "kept", deep_bytes(node))
  node
}

is.vector_like <- function(x) !is.environment(x) && !is.symbol(x) && !is.null(x)

deep_ref <- function(id) structure(list(id = id), class = "shard_deep_ref")

deep_env <- function(node, addr, path, st) {
  if (special_env(node)) {
    deep_log(st, path, "kept")
    return(done(node))
  }
  if (!is.null(e <- st$envs[[addr]])) {
    if (!e$done) {
      if (st$opts$cycle == "error")
        stop(sprintf("shard: cycle at %s: it refers back to an environment that contains it (use cycle = \"skip\" to keep such references without walking them again)",
                     path), call. = FALSE)
      deep_log(st, path, "cycle")
    } else {
      deep_log(st, path, "aliased")
    }
    return(done(e$copy))
  }
  copy <- new.env(parent = parent.env(node))
  assign(addr, list(copy = copy, done = FALSE), envir = st$envs)
  f <- new.env(parent = emptyenv())
  f$node <- node
  f$copy <- copy
  f$addr <- addr
  f$path <- path
  f$kind <- "env"
  f$i <- 0L
  f$vals <- list()
  f$children <- lapply(sort(ls(node, all.names = TRUE)),
                       function(nm) list(type = "bind", key = nm, path = paste0(path, "$", nm)))
  f
}

#' @export
fetch.shard_deep_shared <- function(x, ..., plain = NULL) {
  # Each segment's fetch() applies `plain` (and finishes its strings) itself;
  # plain = NULL keeps fetch()'s one-argument fast path.
  vals <- if (is.null(check_plain(plain))) lapply(x$segments, fetch) else lapply(x$segments, fetch, plain = plain)
  envs <- new.env(hash = TRUE, parent = emptyenv())
  ours <- vapply(x$envs, function(e) .Call(C_address, e), "")
  deep_rebuild(x$skeleton, vals, ours, envs)
}

# Puts the fetched segments back in place of their references. Iterative, like
# deep_walk(): frames for lists, S4 objects and our environments.
deep_rebuild <- function(root, vals, ours, envs) {
  enter <- function(node) {
    if (inherits(node, "shard_deep_ref") && typeof(node) == "list") return(done(vals[[node$id]]))
    if (is.environment(node)) {
      addr <- .Call(C_address, node)
      if (!addr %in% ours) return(done(node))
      if (!is.null(e <- envs[[addr]])) return(done(e))
      e <- new.env(parent = parent.env(node))
      assign(addr, e, envir = envs)
      f <- new.env(parent = emptyenv())
      f$node <- node; f$copy <- e; f$kind <- "env"; f$i <- 0L; f$vals <- list()
      f$children <- lapply(ls(node, all.names = TRUE), function(nm) list(type = "bind", key = nm))
      return(f)
    }
    ch <- list()
    if (typeof(node) == "list") ch <- lapply(seq_along(node), function(i) list(type = "elt", key = i))
    if (isS4(node) && typeof(node) == "S4")
      for (nm in setdiff(names(attributes(node)), "class")) ch[[length(ch) + 1L]] <- list(type = "attr", key = nm)
    if (!length(ch)) return(done(node))
    f <- new.env(parent = emptyenv())
    f$node <- node; f$kind <- "obj"; f$i <- 0L; f$vals <- list(); f$children <- ch
    f
  }
  finish <- function(f) {
    if (f$kind == "env") {
      a <- attributes(f$node)
      if (length(a)) attributes(f$copy) <- a
      return(f$copy)
    }
    node <- f$node
    elts <- Filter(function(v) v$ch$type == "elt", f$vals)
    if (length(elts))
      node <- .Call(C_list_replace, node, vapply(elts, function(v) as.integer(v$ch$key), 0L),
                    lapply(elts, `[[`, "value"))
    for (v in Filter(function(v) v$ch$type == "attr", f$vals)) attr(node, v$ch$key) <- v$value
    node
  }
  deep_iterate(enter(root), function(old, ch) enter(old), finish)
}

#' @export
close.shard_deep_shared <- function(con, ...) {
  res <- vapply(con$segments, function(s) isTRUE(close(s)), logical(1))
  if (!is.null(con$index)) close(con$index)
  invisible(all(res))
}

#' @export
print.shard_deep_shared <- function(x, ...) {
  ci <- x$class_info
  s <- x$summary
  cat("<shard_deep_shared> ", paste(ci$class, collapse = "/"), " of length ", ci$length, "\n", sep = "")
  cat("  ", length(x$segments), " shared segment", if (length(x$segments) != 1) "s", " (", format_bytes(x$size),
      ", backing ", x$backing, ", readonly ", x$readonly, ")", if (!is.null(x$name)) paste0("   name: ", x$name),
      "\n", sep = "")
  cat(sprintf("  components: %d shared, %d aliased, %d kept, %d skipped%s (min_bytes %s, mode %s)\n",
              s$shared_count, s$alias_count, s$kept_count, s$skipped_count,
              if (s$cycle_count > 0) sprintf(", %d cycles", s$cycle_count) else "",
              format_bytes(x$min_bytes), x$mode))
  invisible(x)
}
