# One copy per node: share(x, cluster = cl) for parallel/snow clusters and share_mpi()
# over Rmpi. This file owns node identity as R sees it, the grouping of workers or ranks
# by node, moving the value once per node through the engine the user already runs (the
# cluster's own connections, MPI point-to-point), the per-node holders, and the
# shard_cluster_shared object whose fetch() resolves to the copy of the node it runs on.
#
# Nothing here opens a transport of its own and nothing here attaches another node's
# memory: a node's copy is made by a process on that node with share(), and fetch() only
# ever looks up the handle recorded for the caller's own node.

# ---- node identity ---------------------------------------------------------------------

# What makes a node: the kernel's boot id (differs between machines, and between boots)
# plus the PID namespace (containers and pretend nodes on one kernel); the hostname is for
# messages. Two processes with the same key can attach each other's shared objects.
node_identity <- function() {
  pid <- Sys.getpid()
  id <- .shard_state$node_identity
  if (is.null(id) || !identical(id$pid, pid)) {
    boot <- tryCatch(readLines("/proc/sys/kernel/random/boot_id", n = 1L, warn = FALSE),
                     error = function(e) NA_character_)
    if (length(boot) != 1L) boot <- NA_character_
    pidns <- Sys.readlink("/proc/self/ns/pid")
    if (!nzchar(pidns)) pidns <- NA_character_
    host <- Sys.info()[["nodename"]]
    key <- paste0(boot, "/", sub("^pid:\\[([0-9]+)\\]$", "\\1", pidns))
    id <- list(host = host, boot = boot, pidns = pidns, pid = pid, key = key,
               pid_key = paste0(key, "/", pid))   # this process, on this node
    .shard_state$node_identity <- id
  }
  id
}

node_label <- function(host, key) sprintf("'%s' (node %s)", host, key)

# ---- per-node holders (in the worker or rank that made a node's copy) -------------------

.shard_cluster <- new.env(parent = emptyenv())
.shard_cluster$held <- list()     # id -> this process's copy (kept until close())
.shard_cluster$masters <- list()  # id -> list(cluster, leaders): how close() reaches them
.shard_cluster$counter <- 0L

cluster_new_id <- function() {
  .shard_cluster$counter <- .shard_cluster$counter + 1L
  me <- node_identity()
  # No RNG: share() must not change the user's random stream.
  sprintf("%s-%d-%.0f-%d", me$host, me$pid, as.numeric(Sys.time()) * 1e6, .shard_cluster$counter)
}

# Runs on the node leader: share x here and keep the copy alive until close().
cluster_hold <- function(x, id, args) {
  s <- do.call(share, c(list(x), args))
  .shard_cluster$held[[id]] <- s
  list(node = node_identity(), shared = s)
}

cluster_release <- function(id) {
  s <- .shard_cluster$held[[id]]
  .shard_cluster$held[[id]] <- NULL
  if (!is.null(s)) close(s)
  invisible(!is.null(s))
}

cluster_worker_identity <- function() node_identity()

# ---- share(x, cluster = cl) -------------------------------------------------------------

# The package whose internals drive this cluster: snow's MPI/SOCK clusters dispatch on
# snow's generics, parallel's PSOCK/fork clusters on parallel's.
cluster_ns <- function(cl) {
  if (inherits(cl, c("MPIcluster", "spawnedMPIcluster")) || inherits(cl[[1L]], "MPInode")) {
    if (!requireNamespace("snow", quietly = TRUE))
      stop("shard: `cluster` is a snow MPI cluster but package snow cannot be loaded", call. = FALSE)
    return("snow")
  }
  "parallel"
}

# clusterCall() on the nodes idx of cl, with the package that owns the cluster.
cluster_call <- function(cl, idx, fun, ...) {
  call <- utils::getFromNamespace("clusterCall", cluster_ns(cl))
  sub <- structure(unclass(cl)[idx], class = class(cl))
  call(sub, fun, ...)
}

check_cluster <- function(cl) {
  if (!inherits(cl, "cluster") || length(cl) < 1L)
    stop("shard: `cluster` must be a cluster from parallel::makeCluster(), makePSOCKcluster(), ",
         "makeForkCluster() or snow::makeMPIcluster() with at least one worker (got an object of class ",
         paste(class(cl), collapse = "/"), ")", call. = FALSE)
  cl
}

share_cluster <- function(x, cluster, args) {
  cl <- check_cluster(cluster)
  # An already shared object: share its value (sending the object would send a handle to
  # memory on this node, and share() would hand it back unchanged on the leader).
  if (inherits(x, c("shard_shared", "shard_deep_shared", "shard_cluster_shared"))) x <- fetch(x)
  # The master's own copy first: it checks every argument (same errors as share()) and
  # serves the master and every worker on the master's node.
  local <- do.call(share, c(list(x), args))
  id <- cluster_new_id()
  ok <- FALSE
  held_remote <- integer(0)
  on.exit(if (!ok) {
    try(close(local), silent = TRUE)
    if (length(held_remote)) try(cluster_call(cl, held_remote, cluster_release, id), silent = TRUE)
  })
  me <- node_identity()
  ids <- tryCatch(cluster_call(cl, seq_along(cl), cluster_worker_identity),
                  error = function(e) stop("shard: share(cluster =): could not ask the workers which node they run on: ",
                                           conditionMessage(e), ". Is package shard installed on every node?",
                                           call. = FALSE))
  keys <- vapply(ids, function(i) i$key, "")
  hosts <- vapply(ids, function(i) i$host, "")
  remote_keys <- setdiff(unique(keys), me$key)
  leaders <- match(remote_keys, keys)          # the first worker of each other node
  nodes <- list()
  nodes[[me$key]] <- local
  node_hosts <- stats::setNames(me$host, me$key)
  bytes <- 0
  if (length(leaders)) {
    # Fetched shared vectors inside x must travel as their values, not as handles to
    # memory on this node.
    old <- options(shard.serialize = "data")
    on.exit(options(old), add = TRUE)
    bytes <- length(serialize(x, NULL, xdr = FALSE)) * length(leaders)
    held_remote <- leaders    # on failure, release whatever copies were made (idempotent)
    res <- tryCatch(cluster_call(cl, leaders, cluster_hold, x, id, args),
                    error = function(e) {
                      stop("shard: share(cluster =): sharing on a node failed: ", conditionMessage(e), call. = FALSE)
                    })
    options(old)
    for (i in seq_along(res)) {
      k <- res[[i]]$node$key
      if (!identical(k, remote_keys[i]))
        stop("shard: share(cluster =): worker ", leaders[i], " changed node while sharing", call. = FALSE)
      nodes[[k]] <- res[[i]]$shared
      node_hosts[[k]] <- res[[i]]$node$host
    }
  }
  .shard_cluster$held[[id]] <- local
  .shard_cluster$masters[[id]] <- list(cluster = cl, leaders = leaders)
  ok <- TRUE
  structure(list(id = id, engine = "cluster", master = me$pid_key, nodes = nodes, hosts = node_hosts,
                 workers = data.frame(worker = seq_along(cl), host = hosts, node = keys,
                                      stringsAsFactors = FALSE),
                 bytes_sent = bytes, size = local$size %||% NA_real_,
                 class_info = local$class_info),
            class = "shard_cluster_shared")
}

`%||%` <- function(a, b) if (is.null(a)) b else a

# ---- fetch / close / print --------------------------------------------------------------

#' @export
fetch.shard_cluster_shared <- function(x, ..., wait = 0, plain = NULL) {
  check_plain(plain)
  me <- node_identity()
  if (identical(x$engine, "batch")) return(fetch(batch_node_copy(x, me, wait), ..., plain = plain))
  s <- x$nodes[[me$key]]
  if (is.null(s)) {
    stop(sprintf(paste0("shard: this process runs on node %s, which holds no copy of this shared object ",
                        "(copies are on: %s). Share it with a cluster that has a worker on this node ",
                        "(share(x, cluster = cl) or share_mpi()), or share() the value here."),
                 node_label(me$host, me$key),
                 paste(vapply(names(x$hosts), function(k) node_label(x$hosts[[k]], k), ""), collapse = ", ")),
         call. = FALSE)
  }
  if (is.null(plain)) fetch(s, ...) else fetch(s, ..., plain = plain)
}

#' @export
close.shard_cluster_shared <- function(con, ...) {
  if (identical(con$engine, "batch")) return(invisible(batch_close(con)))
  id <- con$id
  m <- .shard_cluster$masters[[id]]
  # A cluster's copies are the master's to close: close() on a worker (which may be its
  # node's leader) must not pull the copy from under the other workers there.
  if (is.null(m) && identical(con$engine, "cluster") && !identical(con$master, node_identity()$pid_key))
    return(invisible(FALSE))
  if (!is.null(m)) {
    .shard_cluster$masters[[id]] <- NULL
    if (length(m$leaders))
      tryCatch(cluster_call(m$cluster, m$leaders, cluster_release, id),
               error = function(e) warning("shard: close(): could not reach every node to close its copy (",
                                           conditionMessage(e), "); a node's copy goes when its worker exits",
                                           call. = FALSE))
  }
  invisible(cluster_release(id))
}

#' @export
print.shard_cluster_shared <- function(x, ...) {
  ci <- x$class_info
  cat("<shard_cluster_shared> ", paste(ci$class, collapse = "/"),
      if (!is.null(ci$dim)) paste0(" [", paste(ci$dim, collapse = " x "), "]") else
        paste0(" of length ", ci$length), "\n", sep = "")
  if (identical(x$engine, "batch")) {
    cat("  engine: batch   directory: ", x$dir, "\n  one copy per node once shard_node_hold() runs there\n", sep = "")
    return(invisible(x))
  }
  cat("  engine: ", x$engine, "   nodes: ", length(x$nodes), " (",
      paste(unname(x$hosts), collapse = ", "), ")   size: ",
      if (is.na(x$size)) "NA" else format_bytes(x$size),
      "   bytes sent between nodes: ", format_bytes(x$bytes_sent), "\n", sep = "")
  invisible(x)
}

# ---- share_mpi(): Rmpi ------------------------------------------------------------------

# Whether this process was started as a rank of an MPI job: the variables OpenMPI's
# mpirun, MPICH/Intel MPI's hydra (PMI) and Slurm's srun (PMI-2, PMIx) set.
in_mpi_job <- function()
  any(nzchar(Sys.getenv(c("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK"))))

#' @export
share_mpi <- function(x, root = 0L, comm = 1L, ...) {
  root <- as_whole(root, "root")
  comm <- as_whole(comm, "comm")
  # Loading Rmpi starts MPI (MPI_Init): outside an MPI job that makes a one-rank
  # world and leaves OpenMPI's session directory (ompi.<host>.<uid>) in TMPDIR.
  # So Rmpi is loaded here only inside a job, or where the caller loaded it.
  if (!isNamespaceLoaded("Rmpi") && !in_mpi_job())
    stop("shard: share_mpi() runs inside an MPI job (started by mpirun, mpiexec or srun; ",
         "none found: OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMI_RANK and PMIX_RANK are unset), or after ",
         "library(Rmpi) with spawned workers. On one machine use share(); for workers on ",
         "several nodes, share(x, cluster = cl)", call. = FALSE)
  if (!requireNamespace("Rmpi", quietly = TRUE))
    stop("shard: share_mpi() needs package Rmpi (Debian: apt-get install r-cran-rmpi)", call. = FALSE)
  mpi <- function(f) getExportedValue("Rmpi", f)
  # Rmpi indexes a fixed table of communicators without checking: an out-of-range number
  # crashes R, so check it here.
  maxc <- mpi("mpi.comm.maxsize")()
  if (comm >= maxc)
    stop(sprintf("shard: share_mpi(): `comm` is %d but Rmpi has communicators 0..%d", comm, maxc - 1L),
         call. = FALSE)
  size <- mpi("mpi.comm.size")(comm)
  if (size < 1L)
    stop("shard: share_mpi(): communicator ", comm, " has no ranks. In a job started with mpirun, ",
         "Rmpi's MPI_COMM_WORLD is comm = 0 (or run Rmpi::mpi.comm.dup(0, 1) first); with spawned ",
         "workers (mpi.spawn.Rslaves) use comm = 1", call. = FALSE)
  if (root >= size)
    stop(sprintf("shard: share_mpi(): `root` is %d but communicator %d has ranks 0..%d", root, comm, size - 1L),
         call. = FALSE)
  rank <- mpi("mpi.comm.rank")(comm)
  args <- list(...)
  tag_data <- 31001L; tag_handle <- 31002L
  me <- node_identity()
  # Every rank learns every rank's node (Debian's Rmpi has no mpi.comm.split; gather at
  # the root, then broadcast: mpi.bcast.Robj returns nothing at the root).
  ids <- mpi("mpi.gather.Robj")(list(key = me$key, host = me$host), root = root, comm = comm, simplify = FALSE)
  if (rank == root) mpi("mpi.bcast.Robj")(ids, rank = root, comm = comm) else
    ids <- mpi("mpi.bcast.Robj")(NULL, rank = root, comm = comm)
  keys <- vapply(ids, function(i) i$key, "")
  hosts <- vapply(ids, function(i) i$host, "")
  ranks <- seq_along(keys) - 1L
  node_keys <- unique(keys)
  # The root leads its own node; elsewhere the lowest rank of each node.
  leader <- vapply(node_keys, function(k) if (k == keys[root + 1L]) root else min(ranks[keys == k]), 0L)
  my_leader <- leader[[me$key]]
  id <- NULL
  if (rank == root) {
    if (missing(x))
      stop("shard: share_mpi(): `x` is missing on the root rank (", root, "): the root passes the value ",
           "to share; other ranks may pass NULL", call. = FALSE)
    id <- cluster_new_id()
    old <- options(shard.serialize = "data")
    for (l in setdiff(leader, root)) mpi("mpi.send.Robj")(list(x = x, id = id), dest = l, tag = tag_data, comm = comm)
    options(old)
    bytes <- if (length(leader) > 1L) length(serialize(x, NULL, xdr = FALSE)) * (length(leader) - 1L) else 0
  } else if (rank == my_leader) {
    msg <- mpi("mpi.recv.Robj")(source = root, tag = tag_data, comm = comm)
    x <- msg$x; id <- msg$id
  }
  # Each leader shares on its node and keeps the copy until close().
  mine <- NULL
  if (rank == my_leader) mine <- cluster_hold(x, id, args)$shared
  # The root collects one handle per node and sends the whole object to every rank.
  if (rank == root) {
    nodes <- list()
    nodes[[me$key]] <- mine
    for (l in setdiff(leader, root)) {
      got <- mpi("mpi.recv.Robj")(source = l, tag = tag_handle, comm = comm)
      nodes[[got$key]] <- got$shared
    }
    out <- structure(list(id = id, engine = "mpi", nodes = nodes[node_keys],
                          hosts = stats::setNames(hosts[match(node_keys, keys)], node_keys),
                          workers = data.frame(rank = ranks, host = hosts, node = keys, stringsAsFactors = FALSE),
                          bytes_sent = bytes, size = mine$size %||% NA_real_, class_info = mine$class_info),
                     class = "shard_cluster_shared")
    mpi("mpi.bcast.Robj")(out, rank = root, comm = comm)
  } else {
    if (rank == my_leader)
      mpi("mpi.send.Robj")(list(key = me$key, shared = mine), dest = root, tag = tag_handle, comm = comm)
    out <- mpi("mpi.bcast.Robj")(NULL, rank = root, comm = comm)
  }
  out
}

as_whole <- function(v, what) {
  if (!(is.numeric(v) && length(v) == 1L && !is.na(v) && v >= 0 && v == round(v) && v <= .Machine$integer.max))
    stop(sprintf("shard: `%s` must be a single whole number >= 0", what), call. = FALSE)
  as.integer(v)
}

# ---- batch schedulers: share_batch() + one holder step per node ------------------------
#
# Slurm (or any scheduler with a shared filesystem) starts jobs, not workers that answer
# calls, so the value travels through the cluster filesystem: share_batch() writes it
# once under `dir`; on each node one job runs shard_node_hold(s), which reads it, shares
# it on that node, publishes its handle as dir/<id>/node-<boot id>-<pid ns>.rds and keeps
# the copy until close(s); every other job on the node fetch()es that copy. The files
# hold only the value (once) and one small handle per node.

#' @export
share_batch <- function(x, dir) {
  if (missing(dir) || !(is.character(dir) && length(dir) == 1L && !is.na(dir) && nzchar(dir)))
    stop("shard: share_batch() needs `dir`: a directory on a filesystem every node of the cluster sees ",
         "(e.g. a project or scratch directory; not /tmp, which is node-local)", call. = FALSE)
  if (inherits(x, c("shard_shared", "shard_deep_shared", "shard_cluster_shared"))) x <- fetch(x)
  id <- cluster_new_id()
  d <- file.path(normalizePath(dir, mustWork = FALSE), id)
  if (!dir.create(d, recursive = TRUE, mode = "0700") )
    stop("shard: share_batch(): could not create ", d, call. = FALSE)
  old <- options(shard.serialize = "data")
  on.exit(options(old))
  tmp <- file.path(d, "value.rds.tmp")
  saveRDS(x, tmp, compress = FALSE)
  file.rename(tmp, file.path(d, "value.rds"))
  me <- node_identity()
  structure(list(id = id, engine = "batch", dir = d, nodes = list(), hosts = character(0),
                 bytes_sent = file.size(file.path(d, "value.rds")), size = NA_real_,
                 class_info = list(class = class(x), length = length(x), dim = dim(x)),
                 master = me$key),
            class = "shard_cluster_shared")
}

batch_node_file <- function(x, key) file.path(x$dir, paste0("node-", gsub("[^0-9A-Za-z-]", "-", key), ".rds"))

#' @export
shard_node_hold <- function(s, timeout = 3600, poll = 0.2) {
  if (!inherits(s, "shard_cluster_shared") || !identical(s$engine, "batch"))
    stop("shard: shard_node_hold() needs the object share_batch() returned", call. = FALSE)
  if (!(is.numeric(timeout) && length(timeout) == 1L && !is.na(timeout) && timeout >= 0))
    stop("shard: `timeout` must be a number of seconds >= 0", call. = FALSE)
  me <- node_identity()
  f <- batch_node_file(s, me$key)
  # One holder per node: the first to create the lock directory.
  if (!dir.create(paste0(f, ".lock"), showWarnings = FALSE))
    return(invisible(list(node = me$host, held = FALSE)))
  if (file.exists(file.path(s$dir, "closed"))) return(invisible(list(node = me$host, held = FALSE)))
  val <- tryCatch(readRDS(file.path(s$dir, "value.rds")),
                  error = function(e) stop("shard: shard_node_hold(): cannot read the shared value in ", s$dir,
                                           " (", conditionMessage(e), "): is `dir` on a filesystem this node sees?",
                                           call. = FALSE))
  local <- share(val)
  rm(val)
  on.exit(close(local))
  saveRDS(list(key = me$key, host = me$host, shared = local), paste0(f, ".tmp"))
  file.rename(paste0(f, ".tmp"), f)
  t0 <- Sys.time()
  while (!file.exists(file.path(s$dir, "closed")) &&
         as.numeric(difftime(Sys.time(), t0, units = "secs")) < timeout) Sys.sleep(poll)
  unlink(f)
  invisible(list(node = me$host, held = TRUE))
}

batch_node_copy <- function(x, me, wait) {
  f <- batch_node_file(x, me$key)
  t0 <- Sys.time()
  while (!file.exists(f) && as.numeric(difftime(Sys.time(), t0, units = "secs")) < wait) Sys.sleep(0.1)
  if (!file.exists(f))
    stop(sprintf(paste0("shard: no copy of this shared object on node %s yet: run shard_node_hold(s) in one job ",
                        "on this node first (see ?share_batch), or fetch(s, wait = SECONDS) to wait for it"),
                 node_label(me$host, me$key)), call. = FALSE)
  readRDS(f)$shared
}

batch_close <- function(x) {
  if (!dir.exists(x$dir)) return(FALSE)
  file.create(file.path(x$dir, "closed"))
  unlink(file.path(x$dir, "value.rds"))
  TRUE
}
