# Helpers shared by the R benchmark scripts (sourced, not a package).
#
# Timing: bench::hires_time() around the timed part only; an untimed setup and
# teardown (close, rm, gc) around it, so that each repeat starts from the same
# state and a 1 GiB object is released before the next one is made (bench::mark
# has no per-iteration teardown, so it fits only the cases that hold nothing).
# Repeats of the methods being compared are interleaved (round-robin), so a slow
# spell on this shared machine hits every method alike. Figures are medians.

suppressPackageStartupMessages({
  library(shard)
  library(parallel)
  library(bench)
})

now <- function() as.numeric(bench::hires_time())

env_num <- function(name, default) {
  v <- Sys.getenv(name, "")
  if (!nzchar(v)) return(default)
  m <- regmatches(v, regexec("^([0-9.]+)\\s*([KMGT]?)i?B?$", toupper(trimws(v))))[[1]]
  if (!length(m)) stop(sprintf("%s=%s: expected a number, optionally with K/M/G/T", name, v), call. = FALSE)
  as.numeric(m[2]) * 1024^match(m[3], c("", "K", "M", "G", "T"), nomatch = 1L) / 1024
}

fmt_bytes <- function(b) {
  ifelse(is.na(b), "NA",
  ifelse(abs(b) >= 2^30, sprintf("%.3g GiB", b / 2^30),
  ifelse(abs(b) >= 2^20, sprintf("%.3g MiB", b / 2^20),
  ifelse(abs(b) >= 2^10, sprintf("%.3g KiB", b / 2^10), sprintf("%.0f B", b)))))
}
size_label <- function(b) {
  ifelse(b >= 2^30, paste0(b / 2^30, " GiB"), ifelse(b >= 2^20, paste0(b / 2^20, " MiB"),
         ifelse(b >= 2^10, paste0(b / 2^10, " KiB"), paste0(b, " B"))))
}
fmt_time <- function(s) {
  ifelse(is.na(s), "NA",
  ifelse(s >= 1, sprintf("%.3g s", s), ifelse(s >= 1e-3, sprintf("%.3g ms", s * 1e3),
         ifelse(s >= 1e-6, sprintf("%.3g µs", s * 1e6), sprintf("%.3g ns", s * 1e9)))))
}
spread <- function(t) if (length(t) > 1) sprintf("%s..%s", fmt_time(min(t)), fmt_time(max(t))) else ""

# Kernel objects and memory of a process: fds, mappings, PSS (smaps_rollup: it
# counts only pages mapped in the process's page tables, and no hugetlb pages),
# and PSS of anonymous + file pages (for the full account, see mem_now()).
proc_stat <- function(pid = Sys.getpid()) {
  d <- file.path("/proc", pid)
  roll <- readLines(file.path(d, "smaps_rollup"), warn = FALSE)
  kb <- function(key) {
    l <- grep(paste0("^", key, ":"), roll, value = TRUE)
    if (length(l)) as.numeric(sub("^[^:]+:\\s+([0-9]+) kB.*", "\\1", l)) * 1024 else 0
  }
  c(fds = length(list.files(file.path(d, "fd"))),
    maps = length(readLines(file.path(d, "maps"), warn = FALSE)),
    pss = kb("Pss"),
    pss_private = kb("Pss_Anon") + kb("Pss_File"))
}
# System-wide shared memory: shmem/tmpfs/memfd pages (/proc/meminfo Shmem, which
# includes /dev/shm files and memfd regions whether or not mapped) and hugetlb
# pages in use.
sys_shared <- function() {
  mi <- readLines("/proc/meminfo")
  v <- function(k) as.numeric(sub("^[^:]+:\\s+([0-9]+).*", "\\1", grep(paste0("^", k, ":"), mi, value = TRUE)))
  c(shmem = v("Shmem") * 1024, hugetlb = (v("HugePages_Total") - v("HugePages_Free")) * v("Hugepagesize") * 1024)
}
stat_sum <- function(pids) Reduce(`+`, lapply(pids, proc_stat))

machine_line <- function() {
  cpu <- sub("^model name\\s*:\\s*", "", grep("^model name", readLines("/proc/cpuinfo"), value = TRUE)[1])
  mem <- as.numeric(sub("\\D+(\\d+).*", "\\1", grep("^MemTotal", readLines("/proc/meminfo"), value = TRUE)))
  sprintf("nproc %d, %s, kernel %s, %.1f GiB RAM, R %s, load average %s",
          parallel::detectCores(), cpu, readLines("/proc/sys/kernel/osrelease"), mem / 2^20,
          paste(R.version$major, R.version$minor, sep = "."),
          strsplit(readLines("/proc/loadavg"), " ")[[1]][1])
}
hugepages_free <- function() {
  as.integer(readLines("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"))
}

# Reserves `want` 2 MiB huge pages (as root) if fewer are configured; returns a
# function that restores the value found. Never lowers an existing reservation.
# Then touches the free pages once (shard-tune warm-hugepages): on this VM the
# first touch of memory the host never backed costs ~2 s per GiB, once; without
# this, whichever measurement first used the pool would pay it.
reserve_hugepages <- function(want, warm_bin = Sys.getenv("SHARD_TUNE_BIN", "target/release/shard-tune")) {
  p <- "/proc/sys/vm/nr_hugepages"
  old <- as.integer(readLines(p))
  keep <- want <= 0 || old >= want || file.access(p, 2) != 0
  if (!keep) writeLines(as.character(want), p)
  warmed <- if (file.exists(warm_bin)) system2(warm_bin, "warm-hugepages", stdout = TRUE, stderr = FALSE) else
    "not warmed (no shard-tune binary)"
  list(old = old, now = as.integer(readLines(p)), warmed = warmed,
       restore = if (keep) function() invisible(NULL) else function() {
         try(writeLines(as.character(old), p), silent = TRUE)
         invisible(NULL)
       })
}

# Times methods round-robin. `methods` is a named list of lists with functions
# setup() -> state, run(state) -> result (timed), teardown(state, result).
# Returns a data.frame (method, rep, seconds).
time_methods <- function(methods, reps, log = TRUE) {
  out <- vector("list", reps * length(methods))
  k <- 0L
  for (r in seq_len(reps)) {
    for (m in names(methods)) {
      f <- methods[[m]]
      st <- if (is.null(f$setup)) NULL else f$setup()
      t0 <- now()
      res <- f$run(st)
      t1 <- now()
      if (!is.null(f$teardown)) f$teardown(st, res)
      rm(res, st)
      invisible(gc(verbose = FALSE))
      k <- k + 1L
      out[[k]] <- data.frame(method = m, rep = r, seconds = t1 - t0, stringsAsFactors = FALSE)
    }
    if (log) message(sprintf("  rep %d/%d done", r, reps))
  }
  do.call(rbind, out)
}

# Resources held by one run of a method while its result is alive: changes of
# fds, mappings and PSS over `pids` (this process and any workers), and of the
# memory really held: PSS of anonymous and file pages of `pids` + system-wide
# shmem + hugetlb in use (system-wide terms also see other users' changes in the
# same instant: noise, usually small against the object sizes here).
held_by <- function(f, pids) {
  st <- if (is.null(f$setup)) NULL else f$setup()
  invisible(gc(verbose = FALSE))
  b <- stat_sum(pids); bs <- sys_shared()
  res <- f$run(st)
  a <- stat_sum(pids); as <- sys_shared()
  if (!is.null(f$teardown)) f$teardown(st, res)
  rm(res, st)
  invisible(gc(verbose = FALSE))
  d <- a - b
  c(d, memory = d[["pss_private"]] + sum(as - bs), hugetlb = as[["hugetlb"]] - bs[["hugetlb"]])
}

md_table <- function(df) {
  h <- paste0("| ", paste(names(df), collapse = " | "), " |")
  al <- vapply(df, function(c) if (is.numeric(c)) "---:" else "---", "")
  s <- paste0("|", paste(al, collapse = "|"), "|")
  rows <- apply(df, 1, function(r) paste0("| ", paste(r, collapse = " | "), " |"))
  paste(c(h, s, rows), collapse = "\n")
}

# A function to send to PSOCK workers: its environment becomes the global one,
# or serializing it would ship the enclosing frame (and any big object in it).
wfun <- function(f) {
  environment(f) <- globalenv()
  f
}

new_psock <- function(n = 1L) {
  cl <- makePSOCKcluster(n)
  clusterEvalQ(cl, suppressPackageStartupMessages({ library(shard); library(bench) }))
  cl
}
worker_pids <- function(cl) unlist(clusterCall(cl, Sys.getpid))
