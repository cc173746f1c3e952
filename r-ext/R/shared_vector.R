# The shared-vector layer of the reference API: as_shared(), shared_vector(),
# is_shared_vector(), shared_segment(), shared_advise(), shared_diagnostics(),
# shared_reset_diagnostics(), and the copy-on-write policy `cow` of a
# "shard_shared_vector" (replacement methods, print, close).
#
# A shard_shared_vector is one of our ALTREP vectors (the vector fetch() returns:
# zero-copy, marked not mutable, so R duplicates before any write and the write
# lands in a private copy-on-write mapping, never in the shared bytes) with two
# attributes: class c("shard_shared_vector", <original class>) and "shard_state",
# an environment holding the policy, the shared object behind it and the counters
# (an environment so that copies R makes of the vector share one set of counters).
# The design of `cow` over our copy-on-write mappings and strict mode is in
# docs/ARCHITECTURE.md ("Copy-on-write policy").

.cow_policies <- c("deny", "audit", "allow")
.vector_types <- c("double", "integer", "logical", "raw")

#' @export
as_shared <- function(x, readonly = TRUE, backing = "auto", cow = NULL, path = NULL) {
  if (missing(x)) stop("shard: `x` is missing: as_shared(x) needs an atomic vector", call. = FALSE)
  if (!is.atomic(x) || is.null(x) || !typeof(x) %in% c(.vector_types, "numeric", "complex"))
    stop("shard: `x` must be an integer, double, logical or raw vector, not ",
         if (is.null(x)) "NULL" else paste(typeof(x), "/", paste(class(x), collapse = "/")),
         "; use share() for other objects", call. = FALSE)
  readonly <- arg_flag(readonly, "readonly")
  backing <- arg_choice(backing, c("auto", "mmap", "shm"), "backing")
  cow <- cow_arg(cow, readonly)
  name <- path_as_name(path, NULL)
  cls <- oldClass(x)
  if (is.object(x)) x <- unclass(x)
  s <- tryCatch(share(x, backing = backing, readonly = readonly, name = name), error = function(e)
    stop(sub("`name`", "`path`", conditionMessage(e), fixed = TRUE), call. = FALSE))
  ok <- FALSE
  on.exit(if (!ok) close(s))
  v <- with_altrep(fetch(s))  # the cow policy acts in the ALTREP class's hooks
  out <- wrap_shared_vector(v, cls, list(object = s, segment = NULL, cow = cow, readonly = readonly,
                                         type = typeof(x), offset = 0, snapshot = FALSE))
  ok <- TRUE
  out
}

#' @export
shared_vector <- function(segment, type = c("double", "integer", "logical", "raw"), offset = 0,
                          length = NULL, readonly = TRUE, cow = NULL) {
  if (missing(segment) || !inherits(segment, "shard_segment"))
    stop("shard: `segment` must be a shard_segment (from segment_create() or segment_open())", call. = FALSE)
  if (identical(type, "numeric")) type <- "double"
  type <- arg_choice(type, .vector_types, "type")
  offset <- arg_count(offset, "offset", min = 0)
  readonly <- arg_flag(readonly, "readonly")
  cow <- cow_arg(cow, readonly)
  es <- .type_size[[type]]
  total <- segment_size(segment)
  if (offset > total)
    stop(sprintf("shard: `offset` %.0f is past the end of the segment (%.0f bytes)", offset, total), call. = FALSE)
  if (is.null(length)) {
    length <- floor((total - offset) / es)
  } else {
    length <- arg_count(length, "length", min = 0)
    if (offset + length * es > total)
      stop(sprintf("shard: `length` %.0f (%s values, %.0f bytes) at `offset` %.0f overflows the segment of %.0f bytes",
                   length, type, length * es, offset, total), call. = FALSE)
  }
  if (offset %% es != 0)
    stop(sprintf("shard: `offset` %.0f is not a multiple of %d, the size of a %s value", offset, es, type),
         call. = FALSE)
  state <- list(object = NULL, segment = segment, cow = cow, readonly = readonly, type = type,
                offset = offset, snapshot = FALSE)
  # A zero-copy view of those bytes (C_view_typed, views.c: a shard vector at a
  # byte offset of the segment's mapping): it sees later segment_write()s.
  v <- with_altrep(fetch(segment))
  if (!(type == "raw" && offset == 0 && length == total)) v <- with_altrep(.Call(C_view_typed, v, offset, length, type))
  wrap_shared_vector(v, NULL, state)
}

cow_arg <- function(cow, readonly) {
  if (is.null(cow)) return(if (readonly) "deny" else "allow")
  arg_choice(cow, .cow_policies, "cow")
}

wrap_shared_vector <- function(v, cls, state) {
  st <- new.env(parent = emptyenv())
  for (nm in names(state)) assign(nm, state[[nm]], envir = st)
  st$length <- length(v)
  st$cow_events <- 0
  st$materialize_calls <- 0
  st$coerce_calls <- 0
  st$created <- Sys.time()
  a <- attributes(v)
  a$shard_state <- st
  a$class <- c("shard_shared_vector", cls)
  # v is ours alone (fresh from fetch()): set attributes in place, no duplicate.
  out <- .Call(C_set_attrib, v, as.pairlist(a), TRUE)
  # cow = "deny" is also enforced in C (writable_data, cow.c): C code asking for
  # a writable pointer never gets a private copy of a denied vector.
  .Call(C_vector_set_deny, out, identical(state$cow, "deny"))
  out
}

shared_state <- function(x) {
  st <- attr(x, "shard_state", exact = TRUE)
  if (is.environment(st)) st else NULL
}

#' @export
is_shared_vector <- function(x) {
  !is.null(.Call(C_vector_handle, x))
}

need_shared_vector <- function(x, fn, private_ok = FALSE) {
  # A shard_shared_vector that R copied to ordinary memory (some replacement
  # functions do) keeps its state: its diagnostics still make sense.
  if (private_ok && !is.null(shared_state(x))) return(invisible())
  if (is.null(.Call(C_vector_handle, x)))
    stop(sprintf("shard: %s() needs a shared vector (from as_shared(), shared_vector() or fetch()), not %s",
                 fn, paste(class(x), collapse = "/")), call. = FALSE)
}

#' @export
shared_segment <- function(x) {
  need_shared_vector(x, "shared_segment", private_ok = TRUE)
  st <- shared_state(x)
  if (!is.null(st) && !is.null(st$segment)) return(st$segment)
  vh <- .Call(C_vector_handle, x)
  handle <- if (!is.null(vh)) vh$handle else st$object$handle
  holder <- .Call(C_attach, handle)
  v <- .Call(C_view_info, holder)
  seg <- new_segment(handle, NULL, v$data_len)
  # A window on the vector's shared object: segment_close() on it never frees that
  # object (close() the vector, or its shard_shared, for that).
  seg$opened <- TRUE
  seg$readonly <- !v$writable || all(c("write", "shrink", "grow") %in% seal_names(v$seals))
  seg
}

#' @export
shared_advise <- function(x, advice = c("normal", "sequential", "random", "willneed", "dontneed")) {
  need_shared_vector(x, "shared_advise")
  advice <- arg_choice(advice, c("normal", "sequential", "random", "willneed", "dontneed"), "advice")
  vh <- .Call(C_vector_handle, x)
  if (isTRUE(vh$closed)) stop("shard: the shared vector has been closed; there is nothing to advise", call. = FALSE)
  view_advise(.Call(C_attach, vh$handle), advice)
}

#' @export
shared_diagnostics <- function(x) {
  need_shared_vector(x, "shared_diagnostics", private_ok = TRUE)
  vh <- .Call(C_vector_handle, x)
  if (is.null(vh)) vh <- list(byte_offset = 0, changed = TRUE, closed = NA)
  st <- shared_state(x)
  list(
    # Dataptr requests of this vector (counted in C, vec.c; Elt is not counted).
    # NA once R copied the vector to ordinary memory.
    dataptr_calls = if (is.null(vh$dataptr_calls)) NA_real_ else vh$dataptr_calls,
    materialize_calls = if (is.null(st)) NA_real_ else st$materialize_calls,
    coerce_calls = if (is.null(st)) NA_real_ else st$coerce_calls,
    length = length(x),
    # A shared_vector() of a segment is a view at its byte offset in the
    # segment's data (vh$byte_offset); R's private copy has none: the state's.
    offset = if (!is.na(vh$closed)) vh$byte_offset else if (is.null(st)) 0 else st$offset,
    readonly = if (is.null(st)) TRUE else st$readonly,
    type = typeof(x),
    cow = if (is.null(st)) NA_character_ else st$cow,
    cow_events = if (is.null(st)) NA_real_ else st$cow_events,
    private_copy = isTRUE(vh$changed),
    snapshot = if (is.null(st)) FALSE else isTRUE(st$snapshot),
    closed = vh$closed
  )
}

#' @export
shared_reset_diagnostics <- function(x) {
  need_shared_vector(x, "shared_reset_diagnostics", private_ok = TRUE)
  st <- shared_state(x)
  if (!is.null(st)) {
    st$cow_events <- 0
    st$materialize_calls <- 0
    st$coerce_calls <- 0
  }
  .Call(C_vector_reset_counts, x)
  invisible(x)
}

# ---- copy-on-write policy -------------------------------------------------

# Every modification of a shard_shared_vector through a replacement function comes
# here first: "deny" refuses it, "audit" records it (shard_cow_log()), "allow" lets
# it through. The write itself then goes to a private copy (never the shared bytes).
cow_check <- function(x, what) {
  st <- shared_state(x)
  if (is.null(st)) return(invisible("allow"))
  policy <- st$cow
  if (policy == "deny")
    stop(sprintf("shard: cannot modify a shared vector (%s) under cow = \"deny\": shared inputs are read-only. ",
                 what), "Use materialize(x) for a private copy, or create it with cow = \"audit\" or \"allow\"",
         call. = FALSE)
  # Before a replacement function runs, R may have wrapped x (shallow_duplicate of a
  # long vector gives an R "wrapper" around our ALTREP vector), so x need not look
  # shared here: a first write (no private data yet, or cannot tell) makes a copy.
  vh <- .Call(C_vector_handle, x)
  first <- is.null(vh) || !isTRUE(vh$changed)
  if (first) cow_budget_check(as.numeric(length(x)) * .type_size[[typeof(x)]])
  st$cow_events <- st$cow_events + 1
  if (first) st$materialize_calls <- st$materialize_calls + 1
  if (policy == "audit") {
    n <- length(.shard_state$cow_log) + 1L
    .shard_state$cow_log[[n]] <- list(time = Sys.time(), what = what, type = typeof(x), length = length(x),
                                      call = deparse(sys.call(-2L), nlines = 1L)[1])
  }
  invisible(policy)
}

# Results computed from a shared vector (x + 1, sqrt(x), x > 0) are new, private
# vectors: R would copy the wrapper class and state onto them; drop both.
#' @export
Ops.shard_shared_vector <- function(e1, e2) strip_shared(NextMethod())

#' @export
Math.shard_shared_vector <- function(x, ...) strip_shared(NextMethod())

# Coercions to another type allocate a new vector (they never copy the shared data
# into the shared vector): counted in shared_diagnostics()$coerce_calls.
coerce_note <- function(x, to) {
  st <- shared_state(x)
  if (!is.null(st) && typeof(x) != to) st$coerce_calls <- st$coerce_calls + 1
  invisible()
}

#' @export
as.integer.shard_shared_vector <- function(x, ...) { coerce_note(x, "integer"); strip_shared(NextMethod()) }

#' @export
as.double.shard_shared_vector <- function(x, ...) { coerce_note(x, "double"); strip_shared(NextMethod()) }

#' @export
as.logical.shard_shared_vector <- function(x, ...) { coerce_note(x, "logical"); strip_shared(NextMethod()) }

#' @export
as.raw.shard_shared_vector <- function(x) { coerce_note(x, "raw"); strip_shared(NextMethod()) }

#' @export
as.character.shard_shared_vector <- function(x, ...) { coerce_note(x, "character"); strip_shared(NextMethod()) }

# materialize() of a shard_shared_vector: an ordinary copy without the wrapper
# (class, policy), counted in shared_diagnostics()$materialize_calls.
#' @export
materialize.shard_shared_vector <- function(x) materialize_shared_vector(x)

materialize_shared_vector <- function(x) {
  st <- shared_state(x)
  if (!is.null(st)) st$materialize_calls <- st$materialize_calls + 1
  strip_shared(materialize_value(x))
}

strip_shared <- function(v) {
  if (is.null(attr(v, "shard_state", exact = TRUE))) return(v)
  attr(v, "shard_state") <- NULL
  cls <- setdiff(oldClass(v), "shard_shared_vector")
  class(v) <- if (length(cls)) cls else NULL
  v
}

.shard_state$cow_log <- list()

# "allow" and "audit" copy within a budget: option shard.cow_budget, bytes of private
# copies (copy-on-write mappings and copies) this session may make; default no limit.
cow_budget_check <- function(need) {
  budget <- getOption("shard.cow_budget", Inf)
  if (!(is.numeric(budget) && length(budget) == 1L && !is.na(budget) && budget >= 0))
    stop("shard: option shard.cow_budget must be a number of bytes >= 0 (or Inf)", call. = FALSE)
  if (is.infinite(budget)) return(invisible())
  d <- .Call(C_stats)
  used <- d$cow_bytes + d$copy_bytes
  if (used + need > budget)
    stop(sprintf("shard: modifying this shared vector needs a private copy of %s, past the copy-on-write budget (options(shard.cow_budget = %.0f); %s used): raise the budget or materialize() the vector first",
                 format_bytes(need), budget, format_bytes(used)), call. = FALSE)
  invisible()
}

#' @export
shard_cow_log <- function(reset = FALSE) {
  reset <- arg_flag(reset, "reset")
  log <- .shard_state$cow_log
  if (reset) .shard_state$cow_log <- list()
  data.frame(time = .POSIXct(vapply(log, function(e) as.numeric(e$time), 0)),
             what = vapply(log, `[[`, "", "what"), type = vapply(log, `[[`, "", "type"),
             length = vapply(log, function(e) as.numeric(e$length), 0),
             call = vapply(log, `[[`, "", "call"), stringsAsFactors = FALSE)
}

#' @export
`[<-.shard_shared_vector` <- function(x, ..., value) {
  cow_check(x, "[<-")
  NextMethod()
}

#' @export
`[[<-.shard_shared_vector` <- function(x, ..., value) {
  cow_check(x, "[[<-")
  NextMethod()
}

#' @export
`names<-.shard_shared_vector` <- function(x, value) {
  cow_check(x, "names<-")
  NextMethod()
}

#' @export
`dim<-.shard_shared_vector` <- function(x, value) {
  cow_check(x, "dim<-")
  NextMethod()
}

#' @export
`dimnames<-.shard_shared_vector` <- function(x, value) {
  cow_check(x, "dimnames<-")
  NextMethod()
}

#' @export
`attr<-.shard_shared_vector` <- function(x, which, value) {
  cow_check(x, "attr<-")
  st <- shared_state(x)
  y <- unclass_shared(x)
  attr(y, which) <- value
  rewrap(y, x, st)
}

#' @export
`attributes<-.shard_shared_vector` <- function(x, value) {
  cow_check(x, "attributes<-")
  st <- shared_state(x)
  y <- unclass_shared(x)
  attributes(y) <- value
  # attributes(x) <- NULL (or a list without class) drops the wrapper: a plain vector.
  if (!"shard_shared_vector" %in% class(x) || is.null(value) || !"shard_shared_vector" %in% value$class)
    return(y)
  rewrap(y, x, st)
}

# x without the wrapper class and state (a new view over the same bytes: O(1)).
unclass_shared <- function(x) {
  a <- attributes(x)
  a$shard_state <- NULL
  cls <- setdiff(a$class, "shard_shared_vector")
  a$class <- if (length(cls)) cls else NULL
  y <- x
  attributes(y) <- if (length(a)) a else NULL
  y
}

rewrap <- function(y, x, st) {
  cls <- c("shard_shared_vector", oldClass(y))
  attr(y, "shard_state") <- st
  class(y) <- cls
  y
}

#' @export
print.shard_shared_vector <- function(x, ...) {
  print(unclass_shared(x), ...)
  invisible(x)
}

#' @export
close.shard_shared_vector <- function(con, ...) {
  st <- shared_state(con)
  if (!is.null(st) && !is.null(st$object)) close(st$object)
  invisible(NULL)
}
