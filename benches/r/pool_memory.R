# Memory proof: N pool workers reading every byte of one shared object hold it
# once (the sum of their PSS grows by ~1x the object), where parallel's
# clusterExport() of the ordinary object gives each worker its own copy (~Nx).
# Same run, interleaved repeats, medians.
#
#   Rscript benches/r/pool_memory.R
#   SHARD_BENCH_GB=1 SHARD_BENCH_WORKERS=2,4 SHARD_BENCH_REPS=3 Rscript benches/r/pool_memory.R
#   SHARD_BENCH_PART=dispatch Rscript benches/r/pool_memory.R   (only the per-task overhead part)
#
# PSS (proportional set size, /proc/<pid>/smaps_rollup) splits each page among
# the processes that map it, so summed over processes a shared page counts once.
# The object is put in 4 KiB shmem pages (options(shard.huge_pages = FALSE))
# because the kernel leaves hugetlb pages out of RSS and PSS; a hugetlb case,
# measured with /proc/meminfo (HugePages in use, system-wide), follows when
# enough huge pages are free.
suppressPackageStartupMessages({ library(shard); library(parallel) })

env_num <- function(name, default) { v <- Sys.getenv(name, ""); if (nzchar(v)) as.numeric(v) else default }
gb <- env_num("SHARD_BENCH_GB", 1)
reps <- env_num("SHARD_BENCH_REPS", 3)
ns <- as.integer(strsplit(Sys.getenv("SHARD_BENCH_WORKERS", "2,4"), ",")[[1]])
size <- round(gb * 2^30 / 8) * 8

fmt <- function(b) ifelse(abs(b) >= 2^30, sprintf("%.2f GiB", b / 2^30),
                   ifelse(abs(b) >= 2^20, sprintf("%.1f MiB", b / 2^20), sprintf("%.0f B", b)))
now <- function() proc.time()[["elapsed"]]
smaps <- function(pid) {
  l <- readLines(sprintf("/proc/%d/smaps_rollup", pid))
  get <- function(k) as.numeric(sub(paste0("^", k, ":\\s+([0-9]+) kB"), "\\1", grep(paste0("^", k, ":"), l, value = TRUE))) * 1024
  c(rss = get("Rss"), pss = get("Pss"), shmem = get("Pss_Shmem"), anon = get("Pss_Anon"))
}
mem_of <- function(pids) rowSums(vapply(pids, smaps, numeric(4)))
meminfo <- function(key) {
  l <- grep(paste0("^", key, ":"), readLines("/proc/meminfo"), value = TRUE)
  as.numeric(sub("^[^:]+:\\s+([0-9]+).*", "\\1", l)) * if (grepl("kB", l)) 1024 else 1
}

cpu <- sub("^model name\\s*:\\s*", "", grep("^model name", readLines("/proc/cpuinfo"), value = TRUE)[1])
cat(sprintf("machine: nproc %d, kernel %s, CPU %s, %s RAM; R %s\n", parallel::detectCores(),
            Sys.info()[["release"]], cpu, fmt(meminfo("MemTotal")), getRversion()))
cat(sprintf("object: %s double vector; workers: %s; repeats: %d (interleaved)\n\n", fmt(size),
            paste(ns, collapse = ", "), reps))

parts <- strsplit(Sys.getenv("SHARD_BENCH_PART", "memory,dispatch"), ",")[[1]]
if ("memory" %in% parts) {
x <- runif(size / 8)
total <- sum(x)
options(shard.huge_pages = FALSE)
t0 <- now(); s <- share(x); t_share <- now() - t0
info <- shared_info(s)
stopifnot(info$page_size == 4096)

# shard: a fresh pool of n workers; each fetches the object and sum()s all of it.
run_shard <- function(n) {
  t0 <- now()
  p <- pool_create(n, set_default = FALSE)
  t_start <- now() - t0
  on.exit(pool_stop(p))
  before <- mem_of(p$pids)
  t0 <- now()
  got <- pool_lapply(seq_len(n), function(i) {
    v <- fetch(s)
    assign(".bench_keep", v, envir = globalenv())   # keep the mapping while measuring
    c(pid = Sys.getpid(), sum = sum(v))
  }, pool = p)
  t_read <- now() - t0
  after <- mem_of(p$pids)
  pids <- vapply(got, `[[`, 0, "pid")
  stopifnot(setequal(pids, p$pids), all(vapply(got, `[[`, 0, "sum") == total))
  lr <- attr(pool_status(p), "last_run")
  d <- after - before
  list(pss = d[["pss"]], shmem = d[["shmem"]], anon = d[["anon"]], rss = d[["rss"]],
       start = t_start, ship = 0, read = t_read, job_bytes = lr$job_bytes, task_bytes = lr$task_bytes_median)
}

# parallel: a fresh PSOCK cluster; clusterExport() of the ordinary vector, then sum().
run_export <- function(n) {
  t0 <- now()
  cl <- makePSOCKcluster(n)
  t_start <- now() - t0
  on.exit(stopCluster(cl))
  pids <- unlist(clusterCall(cl, Sys.getpid))
  before <- mem_of(pids)
  t0 <- now()
  clusterExport(cl, "x", envir = globalenv())
  t_ship <- now() - t0
  t0 <- now()
  sums <- unlist(parLapply(cl, seq_len(n), function(i) sum(x)))
  t_read <- now() - t0
  after <- mem_of(pids)
  stopifnot(all(sums == total))
  d <- after - before
  list(pss = d[["pss"]], shmem = d[["shmem"]], anon = d[["anon"]], rss = d[["rss"]],
       start = t_start, ship = t_ship, read = t_read, job_bytes = length(serialize(x, NULL, xdr = FALSE)),
       task_bytes = NA_real_)
}

rows <- list()
for (r in seq_len(reps)) {
  for (n in ns) {
    for (method in c("shard", "export")) {
      res <- if (method == "shard") run_shard(n) else run_export(n)
      rows[[length(rows) + 1L]] <- data.frame(rep = r, n = n, method = method, res)
      invisible(gc())
      cat(sprintf("  rep %d  n=%d  %-6s  PSS added %s (%.2fx)  read %.2f s\n", r, n, method, fmt(res$pss),
                  res$pss / size, res$read))
    }
  }
}
all <- do.call(rbind, rows)

cat("\nmedians (PSS/RSS added to the workers by the read, summed over the workers; ratios to the object size):\n")
med <- aggregate(cbind(pss, shmem, anon, rss, start, ship, read, job_bytes, task_bytes) ~ n + method, data = all,
                 FUN = stats::median, na.action = na.pass)
med <- med[order(med$n, med$method != "shard"), ]
tab <- data.frame(
  workers = med$n, method = ifelse(med$method == "shard", "shard pool_lapply", "clusterExport+parLapply"),
  pss_added = fmt(med$pss), pss_x = sprintf("%.2f", med$pss / size),
  shmem_x = sprintf("%.2f", med$shmem / size), anon_x = sprintf("%.2f", med$anon / size),
  rss_x = sprintf("%.2f", med$rss / size),
  start_s = sprintf("%.2f", med$start), ship_s = sprintf("%.2f", med$ship), read_s = sprintf("%.2f", med$read),
  sent_per_worker = fmt(med$job_bytes), sent_per_task = ifelse(is.na(med$task_bytes), "-", fmt(med$task_bytes)))
print(tab, row.names = FALSE)
cat("\nsame-run ratios (clusterExport PSS added / shard PSS added, per repeat, median):\n")
for (n in ns) {
  a <- all[all$n == n & all$method == "shard", ]
  b <- all[all$n == n & all$method == "export", ]
  cat(sprintf("  n=%d: %.2f  (shard %.2fx the object, clusterExport %.2fx)\n", n,
              stats::median(b$pss[order(b$rep)] / a$pss[order(a$rep)]), stats::median(a$pss) / size,
              stats::median(b$pss) / size))
}
cat(sprintf("share() of the object: %.2f s (4 KiB pages)\n", t_share))
close(s)
rm(s)
invisible(gc())

# hugetlb: PSS leaves these pages out; count them system-wide instead.
free_huge <- meminfo("HugePages_Free") * meminfo("Hugepagesize")
if (free_huge >= size + 64 * 2^20) {
  options(shard.huge_pages = TRUE)
  n <- max(ns)
  used0 <- (meminfo("HugePages_Total") - meminfo("HugePages_Free")) * meminfo("Hugepagesize")
  s <- share(x)
  hinfo <- shared_info(s)
  p <- pool_create(n, set_default = FALSE)
  before <- mem_of(p$pids)
  got <- pool_lapply(seq_len(n), function(i) { v <- fetch(s); assign(".bench_keep", v, envir = globalenv()); sum(v) }, pool = p)
  stopifnot(all(unlist(got) == total))
  used1 <- (meminfo("HugePages_Total") - meminfo("HugePages_Free")) * meminfo("Hugepagesize")
  st <- pool_status(p)
  after <- mem_of(p$pids)
  cat(sprintf(paste0("\nhugetlb (page size %s), %d workers: hugetlb in use grew by %s = %.2fx the object, system-wide; ",
                     "each worker maps %s of hugetlb (column hugetlb); workers' PSS added %s (private only)\n"),
              fmt(hinfo$page_size), n, fmt(used1 - used0), (used1 - used0) / size, fmt(stats::median(st$hugetlb)),
              fmt(after[["pss"]] - before[["pss"]])))
  pool_stop(p)
  close(s)
} else {
  cat(sprintf("\nhugetlb case skipped: %s of huge pages free, %s needed (echo N > /proc/sys/vm/nr_hugepages)\n",
              fmt(free_huge), fmt(size + 64 * 2^20)))
}
}

# Per-task overhead: 2000 tiny elements on 2 workers, pool_lapply (chunk_size 1
# and 100, prefetch off/on) against parLapplyLB(chunk.size = 1) and parLapply().
if ("dispatch" %in% parts) {
  p <- pool_create(2, set_default = FALSE)
  cl <- makePSOCKcluster(2)
  f <- function(i) i + 1
  m <- 2000
  invisible(pool_lapply(1:100, f, pool = p)); invisible(parLapplyLB(cl, 1:100, f))
  tm <- function(expr) { t0 <- now(); force(expr); now() - t0 }
  res <- NULL
  for (r in seq_len(max(reps, 5))) {
    options(shard.pool_prefetch = FALSE)
    a <- tm(pool_lapply(1:m, f, pool = p))
    b <- tm(pool_lapply(1:m, f, pool = p, chunk_size = 100))
    options(shard.pool_prefetch = TRUE)
    c <- tm(pool_lapply(1:m, f, pool = p))
    options(shard.pool_prefetch = FALSE)
    d <- tm(parLapplyLB(cl, 1:m, f, chunk.size = 1))
    e <- tm(parLapply(cl, 1:m, f))
    res <- rbind(res, c(pool_chunk1 = a, pool_chunk100 = b, pool_chunk1_prefetch = c, parLapplyLB_chunk1 = d, parLapply = e))
  }
  stopCluster(cl)
  pool_stop(p)
  med <- apply(res, 2, stats::median)
  cat(sprintf("\nper-task overhead, %d tiny elements on 2 workers (medians of %d interleaved repeats; load average %s):\n",
              m, nrow(res), paste(readLines("/proc/loadavg"), collapse = "")))
  print(data.frame(method = names(med), seconds = sprintf("%.3f", med), us_per_element = sprintf("%.0f", med / m * 1e6),
                   vs_parLapplyLB = sprintf("%.2f", med / med[["parLapplyLB_chunk1"]])), row.names = FALSE)
  cat(sprintf("same-run ratio pool_lapply(chunk 1) / parLapplyLB(chunk 1), median of per-repeat ratios: %.2f\n",
              stats::median(res[, "pool_chunk1"] / res[, "parLapplyLB_chunk1"])))
}
