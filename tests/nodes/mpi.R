# share_mpi() with ranks spread over pretend nodes (started by tests/nodes/mpi.sh under
# mpirun). Rank 0 prints PASS:/FAIL: lines and "MPI-DONE" at the end.
suppressPackageStartupMessages({ library(Rmpi); library(shard) })
comm <- 0L                                   # mpirun: MPI_COMM_WORLD is Rmpi's comm 0
rank <- mpi.comm.rank(comm); size <- mpi.comm.size(comm)
memfds <- function() {
  m <- grep("/memfd:", readLines("/proc/self/maps"), value = TRUE)
  unique(vapply(strsplit(m, "[[:space:]]+"), function(f) f[5], ""))
}
n <- 2e6
expect <- seq_len(n) * 0.5
before <- memfds()
x <- if (rank == 0L) expect else NULL
s <- share_mpi(x, root = 0L, comm = comm)
v <- fetch(s)
info <- list(rank = rank, node = Sys.getenv("SHARD_PRETEND_NODE"), ok = identical(v, expect),
             inodes = setdiff(memfds(), before), nodes_in_obj = length(s$nodes), bytes = s$bytes_sent)
all <- mpi.gather.Robj(info, root = 0L, comm = comm, simplify = FALSE)
ids <- mpi.gather.Robj(s$id, root = 0L, comm = comm, simplify = FALSE)
if (rank == 0L) {
  failed <- FALSE
  check <- function(what, ok, detail = NULL) {
    ok <- isTRUE(ok)
    cat(if (ok) "PASS: " else "FAIL: ", what, if (!ok && length(detail)) paste0("  [", paste(detail, collapse = " "), "]"), "\n", sep = "")
    if (!ok) failed <<- TRUE
  }
  nodes <- vapply(all, `[[`, "", "node")
  un <- unique(nodes)
  check(sprintf("%d ranks on %d pretend nodes (%s)", size, length(un), paste(nodes, collapse = ",")), length(un) >= 2L)
  check("every rank reads the right values", all(vapply(all, `[[`, NA, "ok")))
  check("every rank got the same object", length(unique(unlist(ids))) == 1L)
  check("the object has one copy per node", all(vapply(all, `[[`, 0L, "nodes_in_obj") == length(un)))
  per_node <- lapply(un, function(nd) unique(unlist(lapply(all[nodes == nd], `[[`, "inodes"))))
  check("exactly one shared region (memfd inode) mapped on each node", all(lengths(per_node) == 1L),
        vapply(per_node, paste, "", collapse = ","))
  check("the nodes' regions are different regions (one copy per node, not one for all)",
        length(unique(unlist(per_node))) == length(un), unlist(per_node))
  check(sprintf("root sent the value once per other node (%.0f MB)", s$bytes_sent / 1e6),
        abs(s$bytes_sent - 8 * n * (length(un) - 1L)) < 1e5)
}
invisible(mpi.barrier(comm))
invisible(close(s))
if (rank == 0L) cat(if (failed) "MPI-FAILED\n" else "MPI-DONE\n")
invisible(mpi.barrier(comm))
mpi.quit(save = "no")
