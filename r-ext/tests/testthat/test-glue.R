# Integration of the merged branches: handle length and versions, node identity
# in R, check_shareable() through find_unshareable(), iterative materialize(),
# materialize() of shared vectors, zero-copy typed segment views.

crc32_raw <- function(b) {
  tab <- vapply(0:255, function(n) {
    c <- n
    for (k in 1:8) c <- if (bitwAnd(c, 1L)) bitwXor(bitwShiftR(c, 1L), -306674912L) else bitwShiftR(c, 1L)
    c
  }, 0L)
  crc <- -1L
  for (x in as.integer(b)) crc <- bitwXor(tab[bitwAnd(bitwXor(crc, x), 255L) + 1L], bitwShiftR(crc, 8L))
  crc <- bitwNot(crc)
  as.raw(vapply(0:3, function(i) bitwAnd(bitwShiftR(crc, 8L * i), 255L), 0L))
}

test_that("the handle length comes from C and a version-1 handle is told to share again", {
  n <- shard:::handle_len()
  expect_identical(n, 180L)
  s <- share(as.double(1:10))
  on.exit(close(s))
  expect_length(s$handle, n)
  # the CRC helper agrees with the handle's own CRC (bytes 176..180)
  expect_identical(crc32_raw(s$handle[1:176]), s$handle[177:180])
  old <- s$handle[1:92]
  old[5] <- as.raw(1)
  msg <- "version 1 was made by an older shard.*share the object again"
  expect_error(fetch(structure(list(handle = old), class = "shard_shared")), msg)
  expect_error(segment_open(old), msg)
  expect_error(segment_open(raw(10)), sprintf("raw vector of %d bytes", n))
})

test_that("shared_info() and print() show the node; a foreign node's error reaches R verbatim", {
  s <- share(as.double(1:10))
  on.exit(close(s))
  me <- shard_node()
  expect_true(me$local)
  expect_true(nzchar(me$hostname))
  expect_match(me$id, "^[0-9a-f]{32}-[0-9]+$")
  inf <- shared_info(s)
  expect_identical(inf$node, me)
  expect_identical(shared_info(fetch(s))$node$id, me$id)
  expect_true(any(grepl(paste0("node: ", me$hostname, " (", me$id, ", this node)"),
                        capture.output(print(s)), fixed = TRUE)))
  # A handle from another node: flip the boot id (bytes 88..104), fix the CRC.
  h <- s$handle
  h[89:104] <- as.raw(bitwXor(as.integer(h[89:104]), 0x5AL))
  h[177:180] <- crc32_raw(h[1:176])
  f <- s
  f$handle <- h
  err <- tryCatch(fetch(f), error = conditionMessage)
  expect_match(err, "lives on another node", fixed = TRUE)
  expect_match(err, substr(me$id, 1, 8), fixed = TRUE)        # names this node
  nd <- shared_info(f)
  expect_false(nd$attached)
  expect_false(nd$node$local)
  expect_false(identical(nd$node$id, me$id))
  expect_match(nd$error, "lives on another node", fixed = TRUE)
  expect_true(any(grepl("ANOTHER node", capture.output(print(f)), fixed = TRUE)))
})

test_that("share() refuses an environment holding an external pointer and shares a list 5000 deep", {
  e <- new.env()
  e$p <- new("externalptr")
  expect_error(share(list(a = 1, env = e)), "cannot share an external pointer \\(at x\\$env\\$p\\)")
  deep <- 1
  for (i in 1:5000) deep <- list(deep)
  s <- share(deep)
  on.exit(close(s))
  got <- fetch(s)
  m <- materialize(s)
  expect_identical(m, deep)
  leaf <- m
  for (i in 1:5000) leaf <- leaf[[1]]
  expect_identical(leaf, 1)
})

test_that("materialize() copies every shared vector of a nested value and keeps attributes", {
  x <- list(a = as.double(1:5), b = list(c = 1:3, d = list(e = letters[1:2])), f = NULL)
  attr(x, "note") <- "kept"
  s <- share(x)
  m <- materialize(s)
  close(s)
  expect_identical(m, x)
  expect_false(is_shared(m$a))
  expect_false(is_shared(m$b$c))
})

test_that("materialize() of a shard_shared_vector is a plain copy without the wrapper", {
  v <- as_shared(c(a = 1, b = 2, c = 3))
  on.exit(close(v))
  m <- materialize(v)
  expect_identical(m, c(a = 1, b = 2, c = 3))
  expect_null(attr(m, "shard_state"))
  expect_false(inherits(m, "shard_shared_vector"))
  expect_false(is_shared_vector(m))
  m[1] <- 10                                   # no policy applies to the copy
  expect_identical(m[[1]], 10)
  expect_identical(shared_diagnostics(v)$materialize_calls, 1)
})

test_that("shared_vector() typed/offset views are zero-copy views of the segment", {
  seg <- segment_create(800)
  on.exit(segment_close(seg))
  segment_write(seg, as.double(1:100), offset = 0)
  v <- shared_vector(seg, "double", offset = 80, length = 10)
  expect_identical(as.numeric(v[1:10]), as.double(11:20))
  expect_true(.Call(shard:::C_is_shard_vector, v))
  segment_write(seg, 42, offset = 80)
  expect_identical(v[[1]], 42)
  expect_error(v[1] <- 0, "cow = \"deny\"")
  expect_error(.Call(shard:::C_view_typed, fetch(seg), 4, 10, "double"), "not aligned")
  expect_error(.Call(shard:::C_view_typed, fetch(seg), 0, 101, "double"), "does not fit")
  expect_error(.Call(shard:::C_view_typed, 1:3, 0, 1, "double"), "needs a shared vector")
})

test_that("cow = \"deny\" is enforced in C: reads through the writable pointer make no private copy", {
  cnt <- function() unlist(shard_diagnostics()[c("cow_mappings", "copies")])
  x <- as_shared(as.double(1:1e5))               # readonly: cow = "deny"
  on.exit(close(x))
  expect_true(.Call(shard:::C_vector_handle, x)$deny)
  before <- cnt()
  expect_identical(range(x), c(1, 1e5))          # R asks for a writable pointer to read
  expect_identical(which.max(x), 1e5L)
  expect_identical(cnt(), before)                # ... and got the shared bytes, no copy
  expect_false(shared_diagnostics(x)$private_copy)
  y <- as_shared(as.double(1:1e5), readonly = FALSE, cow = "allow")
  on.exit(close(y), add = TRUE)
  expect_false(.Call(shard:::C_vector_handle, y)$deny)
  before <- cnt()
  range(y)
  expect_gt(sum(cnt()), sum(before))             # not denied: a private mapping/copy
  # a duplicate is the caller's own vector: not denied
  z <- sort(x, decreasing = TRUE)
  expect_identical(z[1:2], c(1e5, 1e5 - 1))
})

test_that("dataptr_calls counts data pointer requests (not element reads) and resets", {
  x <- as_shared(as.double(1:1000))
  on.exit(close(x))
  d0 <- shared_diagnostics(x)$dataptr_calls
  expect_true(is.numeric(d0) && !is.na(d0))
  for (i in 1:10) x[[i]]
  expect_identical(shared_diagnostics(x)$dataptr_calls, d0)    # Elt is not counted
  range(x)
  d1 <- shared_diagnostics(x)$dataptr_calls
  expect_gt(d1, d0)
  shared_reset_diagnostics(x)
  expect_identical(shared_diagnostics(x)$dataptr_calls, 0)
})

test_that("C_vector_handle() sees our vector inside R's wrapper ALTREP", {
  s <- share(as.double(1:1e5))
  on.exit(close(s))
  x <- fetch(s)
  w <- .Internal(wrap_meta(x, 1L, 1L))          # R's wrapper around our vector
  expect_true(is_shared_vector(w))
  expect_identical(.Call(shard:::C_vector_handle, w)$handle, s$handle)
  expect_identical(shared_info(w)$node$id, shard_node()$id)
  w2 <- w
  w2[1] <- 0                                     # the write lands in a private copy
  expect_true(.Call(shard:::C_vector_handle, w2)$changed)
  expect_false(.Call(shard:::C_vector_handle, w)$changed)
  expect_identical(x[[1]], 1)
  expect_false(is_shared_vector(1:10))
})

test_that("a single-node pool sends borrow= inputs the normal way; a multi-node pool through share(cluster =)", {
  pool <- pool_create(2)
  on.exit(pool_stop(pool))
  me <- shard:::node_identity()$key
  expect_identical(pool$node_keys, rep(me, 2))      # every worker reported its node
  expect_false(shard:::pool_multi_node(pool))
  big <- as.double(1:1e5)
  cleanup <- new.env()
  cleanup$shared <- list()
  b <- shard:::runtime_borrow(list(X = big, small = 1:3), cleanup, pool = pool)
  expect_s3_class(b$X, "shard_shared")                # the normal path
  expect_identical(b$small, 1:3)
  for (s in cleanup$shared) close(s)
  res <- shard_map(shards(4, block_size = 1), function(shard, X) sum(X), borrow = list(X = big), workers = 2)
  expect_identical(unlist(results(res)), rep(sum(big), 4))
  # A worker reported on another node (forged: the test machine has one node):
  # large and shared inputs go out with share(x, cluster = ), one copy per node,
  # and each worker's fetch() resolves its own node's copy.
  pool$node_keys[2] <- "0000-forged-node/1"
  expect_true(shard:::pool_multi_node(pool))
  cleanup$shared <- list()
  sx <- share(big)
  b <- shard:::runtime_borrow(list(X = big, S = sx, small = 1:3), cleanup, pool = pool)
  expect_s3_class(b$X, "shard_cluster_shared")
  expect_s3_class(b$S, "shard_cluster_shared")
  expect_identical(b$small, 1:3)
  expect_identical(fetch(b$X)[1:3], c(1, 2, 3))
  for (s in cleanup$shared) close(s)
  res <- shard_map(shards(4, block_size = 1), function(shard, X, S) sum(X) + sum(S),
                   borrow = list(X = big, S = sx), workers = 2)
  expect_identical(unlist(results(res)), rep(2 * sum(big), 4))
  close(sx)
})
