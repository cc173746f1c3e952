# future.batchtools jobs on a two-node Slurm cluster (tests/nodes/slurm.sh starts it),
# with the per-node holder pattern: share_batch() writes the value once to the shared
# filesystem, one holder job per node shares it there, work jobs pinned to each node
# fetch() their node's copy. Prints PASS:/FAIL: lines and SLURM-DONE.
suppressPackageStartupMessages({ library(future.batchtools); library(shard) })
failed <- FALSE
check <- function(what, ok, detail = NULL) {
  ok <- isTRUE(ok)
  cat(if (ok) "PASS: " else "FAIL: ", what, if (!ok && length(detail)) paste0("  [", paste(detail, collapse = " "), "]"), "\n", sep = "")
  if (!ok) failed <<- TRUE
}
here <- dirname(normalizePath(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))))
shared <- file.path(Sys.getenv("NODES_DIR"), "work")   # the cluster filesystem
dir.create(shared, showWarnings = FALSE)
setwd(shared)                                           # future.batchtools' registries go here
tmpl <- file.path(here, "slurm.tmpl")
on_node <- function(node) tweak(batchtools_slurm, template = tmpl, resources = list(node = node))
nodes <- c("node1", "node2")
n <- 2e6
s <- share_batch(seq_len(n) * 0.5, dir = file.path(shared, "shard"))
check("share_batch() wrote the value once to the shared filesystem",
      file.size(file.path(s$dir, "value.rds")) >= 8 * n)
holders <- lapply(nodes, function(nd) {
  plan(on_node(nd))
  future(shard::shard_node_hold(s, timeout = 120), seed = NULL)
})
work <- unlist(lapply(nodes, function(nd) lapply(1:2, function(k) {
  plan(on_node(nd))
  future({
    v <- shard::fetch(s, wait = 60)
    m <- grep("/memfd:", readLines("/proc/self/maps"), value = TRUE)
    list(host = Sys.info()[["nodename"]], ok = identical(v, seq_len(2e6) * 0.5),
         inodes = unique(vapply(strsplit(m, "[[:space:]]+"), function(f) f[5], "")),
         owner = shard::shared_info(v)$owner_pid, pidns = Sys.readlink("/proc/self/ns/pid"))
  }, seed = NULL)
})), recursive = FALSE)
res <- lapply(work, value)
hosts <- vapply(res, `[[`, "", "host")
check(sprintf("each job ran on the node it was pinned to (%s)", paste(hosts, collapse = ",")),
      identical(hosts, rep(nodes, each = 2L)), hosts)
check("every job read the right values", all(vapply(res, `[[`, NA, "ok")))
per_node <- lapply(nodes, function(nd) unique(unlist(lapply(res[hosts == nd], `[[`, "inodes"))))
check("exactly one shared region (memfd inode) on each node", all(lengths(per_node) == 1L),
      vapply(per_node, paste, "", collapse = ","))
check("the nodes' regions are different regions (one copy per node)",
      length(unique(unlist(per_node))) == length(nodes), unlist(per_node))
close(s)
h <- lapply(holders, value)
check("one holder per node held the copy and ended at close()", all(vapply(h, `[[`, NA, "held")),
      vapply(h, `[[`, "", "node"))
cat(if (failed) "SLURM-FAILED\n" else "SLURM-DONE\n")
