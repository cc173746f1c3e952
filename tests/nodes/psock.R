# share(x, cluster = cl) on a PSOCK cluster whose workers run inside pretend nodes
# (tests/nodes/psock.sh starts the nodes). Prints PASS:/FAIL: lines; exits 1 when a check
# failed. Usage: Rscript psock.R NODE... (two workers per node; the master runs outside
# every node, so every node's copy travels once over the cluster's connections).
suppressPackageStartupMessages({ library(parallel); library(shard) })
nodes <- commandArgs(TRUE)
stopifnot(length(nodes) >= 2L)
failed <- FALSE
check <- function(what, ok, detail = NULL) {
  ok <- isTRUE(ok)
  cat(if (ok) "PASS: " else "FAIL: ", what, if (!ok && length(detail)) paste0("  [", paste(detail, collapse = " "), "]"),
      "\n", sep = "")
  if (!ok) failed <<- TRUE
  invisible(ok)
}
root <- normalizePath(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))), "../.."))
hosts <- rep(nodes, each = 2L)
cl <- makePSOCKcluster(hosts, master = "127.0.0.1", homogeneous = TRUE,
                       rshcmd = file.path(root, "scripts/nodes/node-rsh.sh"))
on.exit(stopCluster(cl))
# Which pretend node each worker is in: enter-node.sh sets SHARD_PRETEND_NODE (also in the
# no-namespace negative control, where hostnames and namespaces are all the same).
wnode <- unlist(clusterCall(cl, function() Sys.getenv("SHARD_PRETEND_NODE")))
check("every worker started in the node it was meant for", identical(wnode, hosts), wnode)

# memfd inodes this process maps (the regions it sees), and its PSS on a set of them.
probe <- function() {
  maps <- readLines("/proc/self/maps")
  m <- grep("/memfd:", maps, value = TRUE)
  unique(vapply(strsplit(m, "[[:space:]]+"), function(f) f[5], ""))
}
pss_of <- function(inodes) {
  sm <- readLines("/proc/self/smaps")
  head <- grep("^[0-9a-f]+-[0-9a-f]+ ", sm)
  ino <- vapply(strsplit(sm[head], "[[:space:]]+"), function(f) f[5], "")
  kb <- 0
  for (i in which(ino %in% inodes)) {
    end <- if (i < length(head)) head[i + 1L] - 1L else length(sm)
    p <- grep("^Pss:", sm[head[i]:end], value = TRUE)
    kb <- kb + sum(as.numeric(sub("^Pss:\\s+([0-9]+) kB", "\\1", p)))
  }
  kb * 1024
}
environment(probe) <- globalenv(); environment(pss_of) <- globalenv()
clusterExport(cl, c("probe", "pss_of"))
before <- clusterCall(cl, function() probe())

# Bytes the master sends over its TCP connections (kernel counters, via ss).
master_sent <- function() {
  out <- system2("ss", c("-tinpH"), stdout = TRUE)
  i <- grep(sprintf("pid=%d,", Sys.getpid()), out, fixed = TRUE)
  sum(as.numeric(sub(".*bytes_sent:([0-9]+).*", "\\1", grep("bytes_sent:", out[i + 1L], value = TRUE))))
}
n <- 4e6                                  # 32 MB of doubles
x <- seq_len(n) * 0.5
size <- 8 * n
sent0 <- master_sent()
s <- share(x, cluster = cl)
sent <- master_sent() - sent0
nn <- length(nodes)
check("share(cluster =) returns one object of class shard_cluster_shared", inherits(s, "shard_cluster_shared"))
check(sprintf("one copy per node plus the master's: %d copies", nn + 1L), length(s$nodes) == nn + 1L, length(s$nodes))
check(sprintf("bytes the master sent while sharing ~ size x nodes (%.0f MB for %d nodes of %.0f MB)",
              sent / 1e6, nn, size / 1e6),
      sent >= size * nn && sent < size * nn * 1.05 + 1e6, sent)
check("the object's own count of bytes sent matches", abs(s$bytes_sent - size * nn) < 1e5 * nn, s$bytes_sent)
check("fetch() on the master gives the value", identical(fetch(s), x))

res <- clusterApply(cl, before, function(before, s) {
  v <- shard::fetch(s)
  assign(".held_v", v, globalenv())        # keep the mapping while others are counted
  ok <- identical(v, seq_len(4e6) * 0.5)
  total <- sum(v)                          # touch every page (for PSS)
  new <- setdiff(probe(), before)
  list(ok = ok, total = total, inodes = new, pid = Sys.getpid())
}, s)
check("every worker on every node reads the right values", all(vapply(res, `[[`, NA, "ok")))
per_node <- lapply(nodes, function(nd) unique(unlist(lapply(res[hosts == nd], `[[`, "inodes"))))
check("exactly one shared region (memfd inode) mapped on each node",
      all(lengths(per_node) == 1L), vapply(per_node, paste, "", collapse = ","))
check("the nodes' regions are different regions (one copy per node, not one for all)",
      length(unique(unlist(per_node))) == nn, unlist(per_node))
pss <- unlist(clusterCall(cl, function(ino) pss_of(ino), unique(unlist(per_node))))
pss_node <- vapply(nodes, function(nd) sum(pss[hosts == nd]), 0)
check(sprintf("PSS per node ~ 1x the object (%s)", paste(sprintf("%.2fx", pss_node / size), collapse = ", ")),
      all(pss_node > 0.9 * size & pss_node < 1.3 * size), pss_node)

# A node missing from the object: the clear error, not another node's memory.
s2 <- s
key2 <- clusterCall(cl[which(hosts == nodes[2])[1]], function() shard:::node_identity()$key)[[1]]
s2$nodes[[key2]] <- NULL
e <- clusterCall(cl[which(hosts == nodes[2])[1]], function(s) tryCatch({ shard::fetch(s); "fetched" },
                                                                       error = conditionMessage), s2)[[1]]
check("fetch() on a node with no copy fails with the node error", grepl("holds no copy of this shared object", e), e)
# A handle to node 1's copy used on node 2 (pids collide across the namespaces): an error.
key1 <- clusterCall(cl[1], function() shard:::node_identity()$key)[[1]]
h1 <- s$nodes[[key1]]
e <- clusterCall(cl[which(hosts == nodes[2])[1]], function(h) tryCatch({ v <- shard::fetch(h); paste("attached", length(v)) },
                                                                      error = conditionMessage), h1)[[1]]
check("node 1's handle used on node 2 is an error, never another node's object", !startsWith(e, "attached"), e)
cat("  (node 1 handle on node 2 said: ", e, ")\n", sep = "")
# A fetched vector serialized on node 1 and read on node 2: an error, or node 2's data, never wrong data.
raw1 <- clusterCall(cl[1], function() serialize(get(".held_v", globalenv()), NULL))[[1]]
e <- clusterCall(cl[which(hosts == nodes[2])[1]], function(r) tryCatch({ v <- unserialize(r); sum(v) },
                                                                      error = conditionMessage), raw1)[[1]]
check("a fetched vector serialized on node 1 fails clearly on node 2", is.character(e), e)

# close(): every node's holder lets go.
close(s)
held <- unlist(clusterCall(cl, function() length(shard:::.shard_cluster$held)))
check("close() releases every node's copy", all(held == 0L), held)
invisible(clusterCall(cl, function() rm(".held_v", envir = globalenv())))
quit(status = if (failed) 1L else 0L, save = "no")
