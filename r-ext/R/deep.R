# share(deep = TRUE): walks lists, data.frames, S4 slots and environments, shares
# each component of at least `min_bytes` in a segment of its own, and keeps the
# rest in place in a "skeleton" (the object with shard_deep_ref placeholders).
# The same object reached twice is shared once (alias kept); environments that
# refer back to themselves follow `cycle`; per-class hooks steer the walk.
#
# Paths name components the way R would reach them: x$a, x[[2]], x@slot, x$env$b.

#' @export
shard_share_hook <- function(x, ...) UseMethod("shard_share_hook")

#' @export
shard_share_hook.default <- function(x, ...) NULL

share_deep <- function(x, backing, readonly, name, min_bytes, cycle, mode) {
  st <- new.env(parent = emptyenv())
  st$opts <- list(backing = backing, readonly = readonly, min_bytes = min_bytes, cycle = cycle,
                  strict = mode == "strict")
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
  counts <- c(shared = sum(actions == "shared"), aliased = sum(actions == "aliased"),
              kept = sum(actions == "kept"), skipped = sum(actions == "skipped"),
              cycles = sum(actions == "cycle"))
  components <- data.frame(path = vapply(log, `[[`, "", "path"), action = actions,
                           bytes = vapply(log, function(e) as.numeric(e$bytes), 0),
                           segment = vapply(log, function(e) as.integer(e$segment), 0L),
                           stringsAsFactors = FALSE, row.names = NULL)
  envs <- lapply(ls(st$envs, all.names = TRUE), function(a) get(a, st$envs)$copy)
  segs <- st$segments
  out <- structure(list(
    path = vapply(segs, `[[`, "", "path"),
    backing = if (length(segs)) segs[[1]]$backing else if (backing == "auto") "memfd" else backing,
    size = sum(vapply(segs, function(s) as.numeric(s$size), 0)),
    readonly = readonly,
    class_info = list(class = class(x), type = typeof(x), length = length(x), dim = dim(x), layout = "deep"),
    segments = segs,
    skeleton = skeleton,
    envs = envs,
    summary = counts,
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

# Resolves hook paths (relative to the hooked object: "$a", "[[2]]", "@s", or a bare name).
hook_paths <- function(p, base, field, path) {
  if (is.null(p)) return(character())
  if (!is.character(p) || anyNA(p))
    stop(sprintf("shard_share_hook() for %s returned a `%s` that is not a character vector", path, field))
  ifelse(grepl("^(\\$|\\[\\[|@)", p), paste0(base, p), paste0(base, "$", p))
}

run_hook <- function(node, path, st) {
  h <- tryCatch({
    h <- shard_share_hook(node, path = path)
    if (!is.null(h) && !is.list(h)) stop("it returned ", class(h)[1], ", not a list or NULL")
    if (!is.null(h$rewrite) && !is.function(h$rewrite)) stop("its `rewrite` is not a function")
    list(skip = hook_paths(h$skip_paths, path, "skip_paths", path),
         force = hook_paths(h$force_share_paths, path, "force_share_paths", path),
         rewrite = h$rewrite)
  }, error = function(e) e)
  if (inherits(h, "error")) {
    deep_fail(st, path, paste("shard_share_hook() failed:", conditionMessage(h)))
    deep_log(st, path, "hook_error")
    return(node)
  }
  st$skip <- c(st$skip, h$skip)
  st$force <- c(st$force, h$force)
  if (is.function(h$rewrite)) {
    new <- tryCatch(h$rewrite(node), error = function(e) e)
    if (inherits(new, "error")) {
      deep_fail(st, path, paste("the rewrite function of shard_share_hook() failed:", conditionMessage(new)))
      deep_log(st, path, "hook_error")
      return(node)
    }
    st$keep[[length(st$keep) + 1L]] <- new
    return(new)
  }
  node
}

deep_walk <- function(node, path, st) {
  bad <- unshareable_type(node)
  if (!is.null(bad)) {
    deep_fail(st, path, paste("cannot share", bad))
    deep_log(st, path, "skipped")
    return(node)
  }
  if (path %in% st$skip) {
    deep_log(st, path, "skipped", deep_bytes(node))
    return(node)
  }
  if (is.object(node) && !is.environment(node) || isS4(node)) node <- run_hook(node, path, st)
  addr <- .Call(C_address, node)
  if (!is.null(id <- st$memo[[addr]])) {
    deep_log(st, path, "aliased", st$segments[[id]]$size, id)
    return(deep_ref(id))
  }
  if (is.environment(node)) return(deep_env(node, addr, path, st))
  forced <- path %in% st$force
  walkable <- typeof(node) == "list" || (isS4(node) && typeof(node) == "S4")
  if (forced || (!walkable && is.vector_like(node) && deep_bytes(node) >= st$opts$min_bytes)) {
    chk <- tryCatch(check_shareable(node, path), error = function(e) e)
    if (inherits(chk, "error")) {
      deep_fail(st, path, sub("^shard: ", "", conditionMessage(chk)))
      deep_log(st, path, "skipped")
      return(node)
    }
    seg <- share_one(node, st$opts$backing, st$opts$readonly, NULL)
    id <- length(st$segments) + 1L
    st$segments[[id]] <- seg
    assign(addr, id, envir = st$memo)
    deep_log(st, path, "shared", seg$size, id)
    return(deep_ref(id))
  }
  if (typeof(node) == "list") {
    nms <- names(node)
    vals <- vector("list", length(node))
    changed <- logical(length(node))
    for (i in seq_along(node)) {
      old <- .subset2(node, i)
      new <- deep_walk(old, child_path(path, nms, i), st)
      if (!identical(.Call(C_address, new), .Call(C_address, old))) {
        changed[i] <- TRUE
        if (!is.null(new)) vals[[i]] <- new
      }
    }
    idx <- which(changed)
    if (length(idx)) node <- .Call(C_list_replace, node, idx, vals[idx])
  }
  if (isS4(node)) {
    a <- attributes(node)
    for (nm in setdiff(names(a), "class")) {
      new <- deep_walk(a[[nm]], paste0(path, "@", nm), st)
      if (!identical(.Call(C_address, new), .Call(C_address, a[[nm]]))) attr(node, nm) <- new
    }
  }
  if (!walkable) deep_log(st, path, "kept", deep_bytes(node))
  node
}

is.vector_like <- function(x) !is.environment(x) && !is.symbol(x) && !is.null(x)

deep_ref <- function(id) structure(list(id = id), class = "shard_deep_ref")

deep_env <- function(node, addr, path, st) {
  if (special_env(node)) {
    deep_log(st, path, "kept")
    return(node)
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
    return(e$copy)
  }
  copy <- new.env(parent = parent.env(node))
  assign(addr, list(copy = copy, done = FALSE), envir = st$envs)
  for (nm in sort(ls(node, all.names = TRUE))) {
    if (bindingIsActive(nm, node)) {
      deep_fail(st, paste0(path, "$", nm), "cannot share an active binding")
      deep_log(st, paste0(path, "$", nm), "skipped")
      next
    }
    assign(nm, deep_walk(get(nm, envir = node, inherits = FALSE), paste0(path, "$", nm), st), envir = copy)
  }
  a <- attributes(node)
  if (length(a)) attributes(copy) <- a
  assign(addr, list(copy = copy, done = TRUE), envir = st$envs)
  copy
}

#' @export
fetch.shard_deep_shared <- function(x, ...) {
  vals <- lapply(x$segments, fetch)
  envs <- new.env(hash = TRUE, parent = emptyenv())
  ours <- vapply(x$envs, function(e) .Call(C_address, e), "")
  deep_rebuild(x$skeleton, vals, ours, envs)
}

deep_rebuild <- function(node, vals, ours, envs) {
  if (inherits(node, "shard_deep_ref") && typeof(node) == "list") return(vals[[node$id]])
  if (typeof(node) == "list") {
    new <- vector("list", length(node))
    changed <- logical(length(node))
    for (i in seq_along(node)) {
      old <- .subset2(node, i)
      v <- deep_rebuild(old, vals, ours, envs)
      if (!identical(.Call(C_address, v), .Call(C_address, old))) {
        changed[i] <- TRUE
        if (!is.null(v)) new[[i]] <- v
      }
    }
    idx <- which(changed)
    if (length(idx)) node <- .Call(C_list_replace, node, idx, new[idx])
  }
  if (isS4(node) && typeof(node) == "S4") {
    a <- attributes(node)
    for (nm in setdiff(names(a), "class")) {
      v <- deep_rebuild(a[[nm]], vals, ours, envs)
      if (!identical(.Call(C_address, v), .Call(C_address, a[[nm]]))) attr(node, nm) <- v
    }
  }
  if (is.environment(node)) {
    addr <- .Call(C_address, node)
    if (!addr %in% ours) return(node)
    if (!is.null(e <- envs[[addr]])) return(e)
    e <- new.env(parent = parent.env(node))
    assign(addr, e, envir = envs)
    for (nm in ls(node, all.names = TRUE)) assign(nm, deep_rebuild(get(nm, envir = node), vals, ours, envs), envir = e)
    a <- attributes(node)
    if (length(a)) attributes(e) <- a
    return(e)
  }
  node
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
              s[["shared"]], s[["aliased"]], s[["kept"]], s[["skipped"]],
              if (s[["cycles"]] > 0) sprintf(", %d cycles", s[["cycles"]]) else "",
              format_bytes(x$min_bytes), x$mode))
  invisible(x)
}
