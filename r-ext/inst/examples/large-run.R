# The larger run of the main job: a SHARD_DEMO_GB GiB (default 2) double matrix
# is shared once and read by SHARD_DEMO_WORKERS (default 4) pool workers; each
# computes the row sums of its block of rows. Prints the time of each step and
# the memory the workers hold: the sum of their PSS (proportional set size,
# /proc/<pid>/smaps_rollup) against the size of the data. Then the same work
# with plain parallel: clusterExport() of the ordinary matrix (one copy per
# worker) and parLapply(); skipped when MemAvailable is too small for N copies.
#
#   Rscript -e 'library(shard); source(system.file("examples", "large-run.R", package = "shard"))'
#   SHARD_DEMO_GB=0.25 Rscript large-run.R       (a smaller run)
#   SHARD_DEMO_HUGE=0: no huge pages (4 KiB shmem pages, which PSS counts);
#   SHARD_DEMO_BASELINE=no|yes: skip / force the clusterExport comparison.
suppressPackageStartupMessages({ library(shard); library(parallel) })

gb <- as.numeric(Sys.getenv("SHARD_DEMO_GB", "2"))
workers <- as.integer(Sys.getenv("SHARD_DEMO_WORKERS", "4"))
baseline <- Sys.getenv("SHARD_DEMO_BASELINE", "auto")    # auto | yes | no
stopifnot(!is.na(gb), gb > 0, !is.na(workers), workers >= 1)
if (Sys.getenv("SHARD_DEMO_HUGE", "") == "0") options(shard.huge_pages = FALSE)   # 4 KiB shmem pages

nr <- 2^14
nc <- max(1, round(gb * 2^30 / 8 / nr))
bytes <- 8 * nr * nc
fmt <- function(b) if (abs(b) >= 2^30) sprintf("%.2f GiB", b / 2^30) else if (abs(b) >= 2^20) sprintf("%.1f MiB", b / 2^20) else sprintf("%.0f KiB", b / 2^10)
secs <- function(expr) { t0 <- proc.time()[["elapsed"]]; force(expr); proc.time()[["elapsed"]] - t0 }
meminfo <- function(key) {
  l <- grep(paste0("^", key, ":"), readLines("/proc/meminfo"), value = TRUE)
  as.numeric(sub("^[^:]+:\\s+([0-9]+).*", "\\1", l)) * if (grepl("kB", l)) 1024 else 1
}
pss_of <- function(pid) {
  l <- grep("^Pss:", readLines(sprintf("/proc/%d/smaps_rollup", pid)), value = TRUE)
  as.numeric(sub("^Pss:\\s+([0-9]+) kB", "\\1", l)) * 1024
}
hugetlb_used <- function() (meminfo("HugePages_Total") - meminfo("HugePages_Free")) * meminfo("Hugepagesize")

cat(sprintf("== large run: %s double matrix (%d x %d), %d workers; machine: %d cores, %s RAM, kernel %s ==\n",
            fmt(bytes), nr, nc, workers, parallel::detectCores(), fmt(meminfo("MemTotal")),
            Sys.info()[["release"]]))

t_make <- secs({ x <- runif(nr * nc); dim(x) <- c(nr, nc) })
cat(sprintf("make the matrix (runif):             %6.2f s\n", t_make))
expected <- rowSums(x)

# Row blocks, one per worker; each worker sums its rows over column chunks of
# 256 (16 MiB at a time), so its private memory stays small.
per <- ceiling(nr / workers)
rows_of <- function(b) ((b - 1) * per + 1):min(nr, b * per)
block_sums <- function(m, rows) {
  acc <- numeric(length(rows))
  for (j0 in seq(1, ncol(m), by = 256)) {
    j1 <- min(ncol(m), j0 + 255)
    acc <- acc + rowSums(m[rows, j0:j1, drop = FALSE])
  }
  acc
}

# --- shard: one shared copy --------------------------------------------------------
huge0 <- hugetlb_used()
t_share <- secs(s <- share(x))
info <- shared_info(s)
cat(sprintf("share():                             %6.2f s   (%s, page size %s, sealed %s)\n",
            t_share, info$backing, fmt(info$page_size), info$sealed))
t_pool <- secs(pool_create(workers))
cat(sprintf("pool_create(%d):                      %6.2f s\n", workers, t_pool))
st0 <- pool_status()
t_run <- secs(res <- pool_lapply(seq_len(workers), function(b) {
  m <- fetch(s)                                      # O(1): a view of the shared pages
  assign(".large_run_keep", m, envir = globalenv())  # held while the memory is measured
  block_sums(m, rows_of(b))
}))
st1 <- pool_status()
huge1 <- hugetlb_used()
lr <- attr(st1, "last_run")
stopifnot(isTRUE(all.equal(unlist(res), expected)))
cat(sprintf("pool_lapply(row sums of %d blocks):    %6.2f s   results equal rowSums(): TRUE\n", workers, t_run))
cat(sprintf("bytes sent: job (FUN, the handle, block_sums, rows_of) %d B per worker, %.0f B per task; the data: %s\n",
            lr$job_bytes, lr$task_bytes_median, fmt(bytes)))
pss_shard_delta <- sum(st1$pss - st0$pss)
shmem_delta <- sum(st1$pss_shmem - st0$pss_shmem)
anon_delta <- sum(st1$pss_anon - st0$pss_anon)
rss_shard_delta <- sum(st1$rss - st0$rss)
huge_data <- if (info$page_size > 4096) huge1 - huge0 else 0
master_shmem <- { l <- readLines("/proc/self/smaps_rollup"); as.numeric(sub("^Pss_Shmem:\\s+([0-9]+) kB", "\\1", grep("^Pss_Shmem:", l, value = TRUE))) * 1024 }
cat(sprintf("workers' RSS added: %s = %.2f x the data (each worker maps what it reads; RSS counts shared pages in full)\n",
            fmt(rss_shard_delta), rss_shard_delta / bytes))
cat(sprintf("workers' PSS added: %s = %.2f x the data: shared pages (Pss_Shmem) %s = %.2f x, private (Pss_Anon) %s = %.2f x\n",
            fmt(pss_shard_delta), pss_shard_delta / bytes, fmt(shmem_delta), shmem_delta / bytes,
            fmt(anon_delta), anon_delta / bytes))
if (huge_data > 0) {
  cat(sprintf(paste0("the data is in hugetlb pages (page size %s), which RSS/PSS leave out: hugetlb in use\n",
                     "  system-wide grew by %s = %.2f x the data, once, though every worker maps it (column hugetlb)\n"),
              fmt(info$page_size), fmt(huge_data), huge_data / bytes))
} else {
  cat(sprintf("the data's pages over all processes (workers' + this process's Pss_Shmem): %s = %.2f x the data\n",
              fmt(sum(st1$pss_shmem) + master_shmem), (sum(st1$pss_shmem) + master_shmem) / bytes))
}
mem_shard <- pss_shard_delta + huge_data
cat(sprintf("memory the workers' run costs (PSS added + hugetlb data pages): %s = %.2f x the data\n",
            fmt(mem_shard), mem_shard / bytes))
print(st1[, c("worker", "pid", "alive", "rss", "pss", "pss_shmem", "hugetlb", "tasks", "bytes_sent")], row.names = FALSE)
pool_stop()
close(s)
rm(s)
invisible(gc())

# --- parallel: clusterExport of the ordinary matrix (N copies) ------------------------
need <- workers * bytes * 1.15 + 2^30
avail <- meminfo("MemAvailable")
run_base <- switch(baseline, yes = TRUE, no = FALSE, avail > need)
if (baseline == "no") {
  cat("baseline skipped (SHARD_DEMO_BASELINE=no)\n")
} else if (!run_base) {
  cat(sprintf("baseline skipped: it needs about %s (N copies), MemAvailable is %s (SHARD_DEMO_BASELINE=yes forces it)\n",
              fmt(need), fmt(avail)))
} else {
  t_cl <- secs(cl <- makePSOCKcluster(workers))
  wp <- unlist(clusterCall(cl, Sys.getpid))
  b0 <- vapply(wp, pss_of, 0)
  t_exp <- secs(clusterExport(cl, c("x", "per", "nr", "rows_of", "block_sums")))
  t_base <- secs(res2 <- parLapply(cl, seq_len(workers), function(b) block_sums(x, rows_of(b))))
  b1 <- vapply(wp, pss_of, 0)
  stopifnot(isTRUE(all.equal(unlist(res2), expected)))
  stopCluster(cl)
  cat(sprintf("baseline makePSOCKcluster(%d):         %6.2f s\n", workers, t_cl))
  cat(sprintf("baseline clusterExport(x):            %6.2f s   (%s sent to each worker)\n", t_exp, fmt(bytes)))
  cat(sprintf("baseline parLapply(row sums):         %6.2f s\n", t_base))
  cat(sprintf("baseline workers' PSS: %s in all, %s added = %.2f x the data\n",
              fmt(sum(b1)), fmt(sum(b1 - b0)), sum(b1 - b0) / bytes))
  cat(sprintf("same run: shard's workers cost %.2f x the data, clusterExport's %.2f x (%.1f times more); ",
              mem_shard / bytes, sum(b1 - b0) / bytes, sum(b1 - b0) / mem_shard))
  cat(sprintf("getting the data to the workers: share() %.2f s vs clusterExport %.2f s\n", t_share, t_exp))
}
