# How share() and attach (fetch) cost grows with object size and with the number
# of objects, and how many-thread alloc/free scales with threads. Baselines in
# the same run: serialize()/unserialize() of the same objects; the system
# allocator for the thread test.
#
#   R_LIBS=/tmp/lib-bench Rscript benches/r/scaling.R     (then benches/r/plots.R draws docs/img/)
#
# Environment (defaults in brackets):
#   SHARD_BENCH_MAX_BYTES  largest object [1G] (the size series is 1 KiB, 4 KiB, ..., x4)
#   SHARD_BENCH_MAX_COUNT  most objects [100000] (1, 10, ..., x10; up to 1e6)
#   SHARD_BENCH_REPS       repeats per point [5] (3 above 64 MiB; 1 at >= 10 000 objects)
#   SHARD_BENCH_THREADS    thread counts for alloc/free [1,2,4,8]
#   SHARD_BENCH_HUGEPAGES  2 MiB huge pages to reserve for the run (root only;
#                          restored after) [1200]; 0 = leave as is
#   SHARD_TUNE_BIN         the shard-tune binary [target/release/shard-tune]
#   SHARD_BENCH_OUT        results directory [benches/r/results]
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), "common.R"))
options(warn = 1)

max_bytes <- env_num("SHARD_BENCH_MAX_BYTES", 2^30)
max_count <- env_num("SHARD_BENCH_MAX_COUNT", 1e5)
reps <- env_num("SHARD_BENCH_REPS", 5)
threads <- Sys.getenv("SHARD_BENCH_THREADS", "1,2,4,8")
tune_bin <- Sys.getenv("SHARD_TUNE_BIN", "target/release/shard-tune")
out_dir <- Sys.getenv("SHARD_BENCH_OUT", "benches/r/results")
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

report <- character()
emit <- function(...) {
  txt <- paste0(...)
  cat(txt, "\n", sep = "")
  report <<- c(report, txt)
}
hp <- reserve_hugepages(env_num("SHARD_BENCH_HUGEPAGES", 1200))
tryCatch(local({
started <- Sys.time()
emit("# Scaling\n")
emit("Command: `", if (nzchar(Sys.getenv("R_LIBS"))) paste0("R_LIBS=", Sys.getenv("R_LIBS"), " ") else "", "Rscript benches/r/scaling.R` (`make bench-r`), ",
     format(started, "%Y-%m-%d %H:%M UTC", tz = "UTC"), ". Machine: ", machine_line(),
     "; 2 MiB huge pages: ", hp$now, " reserved (", hp$old, " before; ", hp$warmed, ").\n")

cl <- new_psock(1)
wpid <- worker_pids(cl)
# Times fetch() of each handle in the worker (the handles are sent first, untimed).
worker_fetch <- wfun(function(hs) {
  t0 <- as.numeric(bench::hires_time())
  ys <- lapply(hs, shard::fetch)
  t <- as.numeric(bench::hires_time()) - t0
  assign("held", ys, .GlobalEnv)
  t
})
worker_drop <- wfun(function() { if (exists("held", .GlobalEnv)) rm("held", envir = .GlobalEnv); invisible(gc()); NULL })

# One share/fetch/close in each process first: loading the store, its first region.
invisible(clusterCall(cl, wfun(function(h) { shard::fetch(h); NULL }), w <- share(c(1, 2, 3))))
invisible(fetch(w)); close(w)

# --- size ---------------------------------------------------------------------
sizes <- 2^(seq(10, 40, by = 2))
sizes <- sizes[sizes <= max_bytes]
rows <- list()
for (size in sizes) {
  x <- seq_len(size / 8) + 0.5
  r <- if (size > 2^26) max(3, reps - 2) else reps
  message("size ", size_label(size))
  live <- list()
  for (i in seq_len(r)) {
    t0 <- now(); s <- share(x); t_share <- now() - t0
    t0 <- now(); y <- fetch(s); t_fetch <- now() - t0
    clusterCall(cl, wfun(function(h) { assign("h", h, .GlobalEnv); NULL }), s)
    t_wfetch <- clusterCall(cl, wfun(function() {
      t0 <- as.numeric(bench::hires_time()); y <- shard::fetch(h)
      t <- as.numeric(bench::hires_time()) - t0
      assign("y", y, .GlobalEnv); t
    }))[[1]]
    t0 <- now(); ser <- serialize(x, NULL, xdr = FALSE); t_ser <- now() - t0
    t0 <- now(); un <- unserialize(ser); t_unser <- now() - t0
    page <- shared_info(y)$page_size
    rows[[length(rows) + 1L]] <- data.frame(
      size = size, rep = i, share = t_share, fetch_local = t_fetch, fetch_worker = t_wfetch,
      serialize = t_ser, unserialize = t_unser, page_size = page)
    rm(y, ser, un)
    clusterEvalQ(cl, { rm(y, h); invisible(gc()) })
    if (size > 2^26) close(s) else live[[i]] <- s
    rm(s)
    invisible(gc())
  }
  for (s in live) close(s)
  rm(live, x)
  invisible(gc())
}
by_size <- do.call(rbind, rows)
write.csv(by_size, file.path(out_dir, "scaling_size.csv"), row.names = FALSE)
med <- aggregate(cbind(share, fetch_local, fetch_worker, serialize, unserialize) ~ size, by_size, median)
pg <- aggregate(page_size ~ size, by_size, function(p) max(p))
emit("## Cost vs object size\n")
emit("A double vector of each size: share() in the master; fetch() in the master (local) and in a ",
     "running PSOCK worker (attach: first sight of a region maps it); serialize(xdr = FALSE) and ",
     "unserialize() of the same vector as the baseline. Medians of ", reps, " repeats (",
     max(3, reps - 2), " above 64 MiB). Objects below 64 MiB stay alive until their size is done, ",
     "so later repeats reuse the region (steady state); larger ones are closed after each repeat. ",
     "Plot: docs/img/scaling_size.png.\n")
tab <- data.frame(
  size = size_label(med$size), "pages" = fmt_bytes(pg$page_size), "share()" = fmt_time(med$share),
  "share GB/s" = sprintf("%.2f", med$size / med$share / 1e9),
  "serialize()" = fmt_time(med$serialize), "share vs serialize" = sprintf("%.2fx", med$serialize / med$share),
  "fetch() local" = fmt_time(med$fetch_local), "fetch() in worker" = fmt_time(med$fetch_worker),
  "unserialize()" = fmt_time(med$unserialize),
  "worker fetch vs unserialize" = sprintf("%.2fx", med$unserialize / med$fetch_worker),
  check.names = FALSE, stringsAsFactors = FALSE)
emit(md_table(tab), "\n")
emit("\"x vs y\" = time of y / time of x: above 1, shard is faster. fetch() should stay flat ",
     "(O(1) in size) while unserialize() grows linearly.\n")

# --- count --------------------------------------------------------------------
counts <- 10^(0:6)
counts <- counts[counts <= max_count]
rows <- list()
for (n in counts) {
  objs <- lapply(seq_len(n), function(i) as.double(i + seq_len(64)))   # 512 B each
  r <- if (n >= 1e4) 1 else min(reps, 3)
  message("count ", n)
  for (i in seq_len(r)) {
    invisible(gc())
    b <- stat_sum(Sys.getpid()); bw <- stat_sum(wpid)
    t0 <- now(); ss <- lapply(objs, share); t_share <- now() - t0
    t0 <- now(); ys <- lapply(ss, fetch); t_fetch <- now() - t0
    t_wfetch <- clusterCall(cl, worker_fetch, ss)[[1]]
    a <- stat_sum(Sys.getpid()); aw <- stat_sum(wpid)
    regions <- shard_diagnostics()$regions
    t0 <- now(); sers <- lapply(objs, serialize, NULL, xdr = FALSE); t_ser <- now() - t0
    t0 <- now(); uns <- lapply(sers, unserialize); t_unser <- now() - t0
    clusterCall(cl, worker_drop)
    rm(ys, sers, uns)
    t0 <- now(); invisible(lapply(ss, close)); t_close <- now() - t0
    rm(ss)
    invisible(gc())
    rows[[length(rows) + 1L]] <- data.frame(
      count = n, rep = i, share = t_share, fetch_local = t_fetch, fetch_worker = t_wfetch,
      close = t_close, serialize = t_ser, unserialize = t_unser, regions = regions,
      fds = a[["fds"]] - b[["fds"]], maps = a[["maps"]] - b[["maps"]],
      worker_fds = aw[["fds"]] - bw[["fds"]], worker_maps = aw[["maps"]] - bw[["maps"]])
  }
  rm(objs)
  invisible(gc())
}
stopCluster(cl)
by_count <- do.call(rbind, rows)
write.csv(by_count, file.path(out_dir, "scaling_count.csv"), row.names = FALSE)
med <- aggregate(. ~ count, by_count[, setdiff(names(by_count), "rep")], median)
emit("## Cost vs number of objects\n")
emit("N double vectors of 64 elements (512 B): share() each, fetch() each in the master and in a ",
     "running PSOCK worker, close() each; serialize(xdr = FALSE)/unserialize() each as the ",
     "baseline. Times per object; fds and mappings added while all N are held, in the master and ",
     "in the worker. Repeats: ", min(reps, 3), " below 10 000 objects, 1 from 10 000 on. ",
     "Plot: docs/img/scaling_count.png.\n")
tab <- data.frame(
  objects = format(med$count, big.mark = " ", scientific = FALSE),
  "share() per object" = fmt_time(med$share / med$count),
  "serialize() per object" = fmt_time(med$serialize / med$count),
  "share vs serialize" = sprintf("%.3fx", med$serialize / med$share),
  "fetch() local" = fmt_time(med$fetch_local / med$count),
  "fetch() in worker" = fmt_time(med$fetch_worker / med$count),
  "unserialize()" = fmt_time(med$unserialize / med$count),
  "close()" = fmt_time(med$close / med$count),
  regions = med$regions,
  "fds master/worker" = sprintf("%+d / %+d", med$fds, med$worker_fds),
  "maps master/worker" = sprintf("%+d / %+d", med$maps, med$worker_maps),
  check.names = FALSE, stringsAsFactors = FALSE)
emit(md_table(tab), "\n")

# --- threads ------------------------------------------------------------------
emit("## Many-thread alloc/free\n")
if (file.exists(tune_bin)) {
  message("threads ", threads)
  csvf <- file.path(out_dir, "threads.csv")
  out <- system2(tune_bin, c("threads", "--threads", threads, "--ops", "400000", "--reps", as.character(reps),
                             "--out", csvf), stdout = TRUE, stderr = FALSE)
  emit("`", tune_bin, " threads --threads ", threads, " --ops 400000 --reps ", reps, "` (tuning/src/threads.rs): ",
       "T threads share one allocator; each keeps a ring of 32 live blocks of 64 B..4 KiB, ",
       "allocating one, touching it and freeing the oldest, 400 000 times; the system allocator ",
       "(glibc malloc) does the same in the same run. Total operations per second over wall time, ",
       "medians of ", reps, " repeats. **This machine has ", parallel::detectCores(), " cores**: ",
       "above that, threads time-share cores, so the curve shows contention cost, not parallel ",
       "speed-up. Plot: docs/img/scaling_threads.png.\n")
  emit(paste(out, collapse = "\n"), "\n")
} else {
  emit("Skipped: ", tune_bin, " not built (`cargo build --release -p shard-tuning`).\n")
}
emit("Wall time of this script: ", sprintf("%.0f s", as.numeric(difftime(Sys.time(), started, units = "secs"))),
     "; load average at the end: ", strsplit(readLines("/proc/loadavg"), " ")[[1]][1], ".")
writeLines(report, file.path(out_dir, "scaling.md"))
message("wrote ", file.path(out_dir, "scaling.md"))
}), finally = hp$restore())
