# Benchmark of share(x, cluster = cl) across pretend nodes (run by scripts/nodes/bench.sh,
# which starts nodes node1, node2). Workers: 1 on the master's node ("localhost") and 2 on
# each pretend node. For each size: bytes the master sends (kernel TCP counters via ss)
# for share(cluster =) vs sending x to every worker (what clusterExport() does), PSS per
# node over the object's size, and the first fetch() (attach) in a worker on a remote
# node vs on the master's node. Medians of `reps` runs; ratios are from the same run.
suppressPackageStartupMessages({ library(parallel); library(shard) })
root <- normalizePath(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))), "../.."))
sizes_mb <- as.numeric(strsplit(Sys.getenv("BENCH_SIZES_MB", "8,64,256"), ",")[[1]])
reps <- as.integer(Sys.getenv("BENCH_REPS", "5"))
hosts <- c("localhost", "node1", "node1", "node2", "node2")
cl <- makePSOCKcluster(hosts, master = "127.0.0.1", homogeneous = TRUE,
                       rshcmd = file.path(root, "scripts/nodes/node-rsh.sh"))
on.exit(stopCluster(cl))
where <- unlist(clusterCall(cl, function() Sys.getenv("SHARD_PRETEND_NODE", "master-node")))
master_sent <- function() {
  out <- system2("ss", "-tinpH", stdout = TRUE)
  i <- grep(sprintf("pid=%d,", Sys.getpid()), out, fixed = TRUE)
  sum(as.numeric(sub(".*bytes_sent:([0-9]+).*", "\\1", grep("bytes_sent:", out[i + 1L], value = TRUE))))
}
memfds <- function() {
  m <- grep("/memfd:", readLines("/proc/self/maps"), value = TRUE)
  unique(vapply(strsplit(m, "[[:space:]]+"), function(f) f[5], ""))
}
pss_of <- function(inodes) {
  # PSS of this process's mappings of the given memfd inodes.
  sm <- readLines("/proc/self/smaps")
  head <- grep("^[0-9a-f]+-[0-9a-f]+ ", sm)
  f5 <- vapply(strsplit(sm[head], "[[:space:]]+"), function(f) f[5], "")
  kb <- 0
  for (i in which(f5 %in% inodes)) {
    end <- if (i < length(head)) head[i + 1L] - 1L else length(sm)
    p <- grep("^Pss:", sm[head[i]:end], value = TRUE)
    kb <- kb + sum(as.numeric(sub("^Pss:\\s+([0-9]+) kB", "\\1", p)))
  }
  kb * 1024
}
environment(pss_of) <- globalenv(); environment(memfds) <- globalenv()
clusterExport(cl, c("pss_of", "memfds"))
# PSS counts 4 KiB (and THP) pages, not hugetlb ones: measure with 4 KiB pages unless
# BENCH_HUGE=1 (then the PSS columns read 0 for objects that got hugetlb pages).
huge <- Sys.getenv("BENCH_HUGE", "0") == "1"
options(shard.huge_pages = huge)
invisible(clusterCall(cl, function(h) options(shard.huge_pages = h), huge))
cat(sprintf("load average before: %s\n", readLines("/proc/loadavg")))
# Warm-up: load shard in every worker (the first fetch() would pay for it).
invisible(clusterCall(cl, function() { loadNamespace("shard"); loadNamespace("bench"); NULL }))
rows <- list()
for (mb in sizes_mb) {
  x <- seq_len(mb * 2^20 / 8) + 0.5     # a real vector (as.numeric(1:n) serializes compactly)
  size <- 8 * length(x)
  r <- replicate(reps, {
    s0 <- master_sent(); t0 <- proc.time()[["elapsed"]]
    s <- share(x, cluster = cl)
    t_share <- proc.time()[["elapsed"]] - t0; sent_share <- master_sent() - s0
    f <- clusterCall(cl, function(s) {
      before <- memfds()
      t0 <- bench::hires_time(); v <- shard::fetch(s); t <- bench::hires_time() - t0
      total <- sum(v)                            # touch every page
      assign(".bench_v", v, globalenv())
      list(fetch_s = t, inodes = setdiff(memfds(), before))
    }, s)
    # The regions each node mapped anew (the node leader already had its own), then every
    # worker's PSS on its node's regions.
    node_inodes <- lapply(split(lapply(f, `[[`, "inodes"), where), function(l) unique(unlist(l)))
    pss <- unlist(clusterApply(cl, node_inodes[where], function(ino) pss_of(ino)))
    f <- cbind(fetch_s = vapply(f, `[[`, 0, "fetch_s"))
    pss_node <- tapply(pss, where, sum)
    invisible(clusterCall(cl, function() rm(".bench_v", envir = globalenv())))
    close(s)
    s0 <- master_sent(); t0 <- proc.time()[["elapsed"]]
    invisible(clusterCall(cl, function(x) length(x), x))   # x to every worker
    t_all <- proc.time()[["elapsed"]] - t0; sent_all <- master_sent() - s0
    c(t_share = t_share, sent_share = sent_share, t_all = t_all, sent_all = sent_all,
      fetch_remote = median(f[where != "master-node", "fetch_s"]),
      fetch_local = median(f[where == "master-node", "fetch_s"]),
      pss_node1 = pss_node[["node1"]] / size, pss_node2 = pss_node[["node2"]] / size)
  })
  m <- apply(r, 1, median)
  rows[[length(rows) + 1L]] <- data.frame(
    size_mb = mb, nodes_remote = 2, workers = length(cl),
    share_sent_over_size = m[["sent_share"]] / size, all_workers_sent_over_size = m[["sent_all"]] / size,
    share_s = m[["t_share"]], all_workers_s = m[["t_all"]],
    pss_node1_x = m[["pss_node1"]], pss_node2_x = m[["pss_node2"]],
    fetch_remote_us = 1e6 * m[["fetch_remote"]], fetch_local_us = 1e6 * m[["fetch_local"]],
    fetch_remote_over_local = m[["fetch_remote"]] / m[["fetch_local"]])
}
out <- do.call(rbind, rows)
print(format(out, digits = 3), row.names = FALSE)
cat(sprintf("load average after: %s\n", readLines("/proc/loadavg")))
