# share(x, cluster = cl) with a snow MPI cluster (RMPISNOW under mpirun; started by
# tests/nodes/mpi.sh): rank 0 is the master, on node1 with two workers; two workers on node2.
# Prints PASS:/FAIL: lines and SNOW-DONE.
suppressPackageStartupMessages(library(shard))
cl <- getMPIcluster()
failed <- FALSE
check <- function(what, ok, detail = NULL) {
  ok <- isTRUE(ok)
  cat(if (ok) "PASS: " else "FAIL: ", what, if (!ok && length(detail)) paste0("  [", paste(detail, collapse = " "), "]"), "\n", sep = "")
  if (!ok) failed <<- TRUE
}
memfds <- function() {
  m <- grep("/memfd:", readLines("/proc/self/maps"), value = TRUE)
  unique(vapply(strsplit(m, "[[:space:]]+"), function(f) f[5], ""))
}
environment(memfds) <- globalenv()
where <- unlist(snow::clusterCall(cl, function() Sys.getenv("SHARD_PRETEND_NODE")))
me <- Sys.getenv("SHARD_PRETEND_NODE")
before <- snow::clusterCall(cl, memfds)
n <- 1e6; x <- seq_len(n) * 0.5
s <- share(x, cluster = cl)
check(sprintf("snow MPI cluster: master on %s, workers on %s", me, paste(where, collapse = ",")),
      length(unique(c(me, where))) == 2L)
check("snow MPI cluster: one copy per node (master's node + 1 other)", length(s$nodes) == 2L, length(s$nodes))
check("snow MPI cluster: value sent once (to the other node)", abs(s$bytes_sent - 8 * n) < 1e5, s$bytes_sent)
res <- snow::clusterApply(cl, before, function(b, s, memfds) {
  v <- shard::fetch(s); assign(".v", v, globalenv())
  list(ok = identical(v, seq_len(1e6) * 0.5), inodes = setdiff(memfds(), b))
}, s, memfds)
check("snow MPI cluster: every worker reads the right values", all(vapply(res, `[[`, NA, "ok")))
mine <- setdiff(memfds(), character(0))
per_node <- lapply(unique(where), function(nd) unique(unlist(lapply(res[where == nd], `[[`, "inodes"))))
check("snow MPI cluster: one region per node, different on the two nodes",
      all(lengths(per_node) == 1L) && length(unique(unlist(per_node))) == 2L, unlist(per_node))
close(s)
cat(if (failed) "SNOW-FAILED\n" else "SNOW-DONE\n")
