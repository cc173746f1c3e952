# shard vs the usual ways of getting an R object to another R process, in one run:
#   share()+fetch() of this package; serialize()/unserialize(); bigmemory
#   (as.big.matrix + describe + attach.big.matrix); a PSOCK clusterExport();
#   and shard -> PSOCK (share() in the master, fetch() in the worker).
# For double matrices of 1 MiB, 64 MiB and 1 GiB and for 100 000 small vectors:
# time (median of repeats, interleaved), data copies, bytes sent over sockets,
# fds, mappings, PSS and hugetlb memory held. Then, for the 1 GiB matrix: share()
# vs serialize() vs a plain copy (duplicate = memcpy into fresh memory), with
# huge pages on and off; fetch() in a fresh PSOCK worker, 1 MiB vs 1 GiB; a full
# sum() over the fetched matrix in a fresh worker vs over a resident R vector;
# and the same for bigmemory.
#
#   R_LIBS=/tmp/lib-bench Rscript benches/r/compare.R
#
# Environment (defaults in brackets):
#   SHARD_BENCH_MAX_BYTES  largest object [1G]; sizes above it are skipped
#   SHARD_BENCH_SMALL_N    number of small objects [100000]
#   SHARD_BENCH_BIGMEM_SMALL_N  small objects for bigmemory [100]: it makes one
#                          shm segment per object at ~0.1 s each here
#   SHARD_BENCH_REPS       repeats per method and size [5]; fresh-worker and
#                          small-object sections use max(3, REPS - 2)
#   SHARD_BENCH_HUGEPAGES  2 MiB huge pages to reserve for the run (root only;
#                          restored after) [1200]; 0 = leave as is
#   SHARD_BENCH_OUT        results directory [benches/r/results]
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), "common.R"))
suppressPackageStartupMessages(library(bigmemory))
options(bigmemory.allow.dimnames = TRUE, warn = 1)

max_bytes <- env_num("SHARD_BENCH_MAX_BYTES", 2^30)
small_n <- env_num("SHARD_BENCH_SMALL_N", 1e5)
bm_small_n <- min(small_n, env_num("SHARD_BENCH_BIGMEM_SMALL_N", 100))
reps <- env_num("SHARD_BENCH_REPS", 5)
reps_few <- max(3, reps - 2)
out_dir <- Sys.getenv("SHARD_BENCH_OUT", "benches/r/results")
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

sizes <- c(2^20, 2^26, 2^30)
sizes <- sizes[sizes <= max_bytes]
if (!length(sizes)) stop("SHARD_BENCH_MAX_BYTES is below 1 MiB: nothing to do")

report <- character()
emit <- function(...) {
  txt <- paste0(...)
  cat(txt, "\n", sep = "")
  report <<- c(report, txt)
}
csv <- list()
keep <- function(section, size, df) {
  df$section <- section
  df$size <- size
  csv[[length(csv) + 1L]] <<- df
}

hp <- reserve_hugepages(env_num("SHARD_BENCH_HUGEPAGES", 1200))
main <- function() {
started <- Sys.time()
emit("# R comparison: shard vs serialize, bigmemory, PSOCK\n")
emit("Command: `", if (nzchar(Sys.getenv("R_LIBS"))) paste0("R_LIBS=", Sys.getenv("R_LIBS"), " ") else "", "Rscript benches/r/compare.R` (`make bench-r`), ",
     format(started, "%Y-%m-%d %H:%M UTC", tz = "UTC"), ".\n")
emit("Machine: ", machine_line(), "; 2 MiB huge pages: ", hp$now, " reserved for the run (",
     hp$old, " before), ", hugepages_free(), " free at start (", hp$warmed, ").\n")
emit("Medians of ", reps, " interleaved repeats (", reps_few, " for the fresh-worker and small-object ",
     "sections); min..max beside them. Ratios compare methods of this run. The machine is shared: ",
     "absolute times move with its load, ratios much less.\n")
emit("Columns: *copies* = full copies of the data the method makes (what the code does: a model, ",
     "corroborated by *memory*); *sent* = bytes serialized to the worker (length of serialize() of ",
     "what crosses the socket); *fds*, *maps*, *PSS*, *memory* = change while the result is held, ",
     "summed over master and worker: open fds (/proc/PID/fd), mappings (lines of /proc/PID/maps), ",
     "PSS (smaps_rollup; it counts only pages mapped in a process's page tables and no hugetlb ",
     "pages, so it misses shared pages nobody has touched yet), and *memory* = PSS of anonymous + ",
     "file pages + system-wide Shmem + hugetlb pages in use (/proc/meminfo), which counts shared ",
     "memory once whoever maps it.\n")

sent_of <- function(f) if (is.null(f)) "-" else fmt_bytes(f())
cl <- new_psock(1)
wpid <- worker_pids(cl)
pids <- c(Sys.getpid(), wpid)

# ---------------------------------------------------------------------------
emit("## Objects of 1 MiB .. ", size_label(max(sizes)), "\n")
big <- NULL
rows <- list()
for (size in sizes) {
  n <- size / 8
  x <- matrix(seq_len(n) + 0.5, ncol = 128)   # a plain (non-ALTREP) double matrix
  message(sprintf("size %s", size_label(size)))
  env <- environment()
  methods <- list(
    "shard share+fetch" = list(
      run = function(st) { s <- share(x); list(s = s, y = fetch(s)) },
      teardown = function(st, r) close(r$s), copies = 1),
    "serialize+unserialize" = list(
      run = function(st) { r <- serialize(x, NULL); list(r, unserialize(r)) }, copies = 2),
    "serialize(xdr=FALSE)+unserialize" = list(
      run = function(st) { r <- serialize(x, NULL, xdr = FALSE); list(r, unserialize(r)) }, copies = 2),
    "bigmemory as.big.matrix+describe+attach" = list(
      run = function(st) {
        b <- as.big.matrix(x, type = "double", shared = TRUE)
        list(b, attach.big.matrix(describe(b)))
      }, copies = 1),
    "PSOCK clusterExport" = list(
      run = function(st) clusterExport(cl, "x", envir = env),
      teardown = function(st, r) clusterEvalQ(cl, { rm(x); invisible(gc()) }), copies = 2,
      sent = function() length(serialize(x, NULL))),
    "shard share -> PSOCK fetch" = list(
      run = function(st) {
        s <- share(x)
        clusterCall(cl, wfun(function(s) { assign("y", shard::fetch(s), .GlobalEnv); NULL }), s)
        s
      },
      teardown = function(st, s) { clusterEvalQ(cl, { rm(y); invisible(gc()) }); close(s) }, copies = 1,
      sent = function() { s <- share(x); on.exit(close(s)); length(serialize(s, NULL)) })
  )
  tm <- time_methods(methods, reps)
  keep("objects", size, tm)
  base <- median(tm$seconds[tm$method == "serialize+unserialize"])
  for (m in names(methods)) {
    h <- held_by(methods[[m]], pids)
    t <- tm$seconds[tm$method == m]
    rows[[length(rows) + 1L]] <- data.frame(
      size = size_label(size), method = m, median = fmt_time(median(t)), "min..max" = spread(t),
      "vs serialize" = sprintf("%.2fx", base / median(t)), copies = methods[[m]]$copies,
      sent = sent_of(methods[[m]]$sent), fds = sprintf("%+d", h[["fds"]]),
      maps = sprintf("%+d", h[["maps"]]), PSS = fmt_bytes(h[["pss"]]), memory = fmt_bytes(h[["memory"]]),
      check.names = FALSE, stringsAsFactors = FALSE)
  }
  if (size == max(sizes)) big <- x
  rm(x)
  invisible(gc())
}
tab <- do.call(rbind, rows)
emit("\"vs serialize\" = median time of serialize()+unserialize() (default XDR, as PSOCK uses) / ",
     "median time of the method: above 1 is faster.\n")
emit(md_table(tab), "\n")
emit("bigmemory's attach returns a big.matrix, not an R vector: an R function that needs the ",
     "values as an R vector gets them with `bm[, ]`, a full copy (see the sum() table below). ",
     "shard's fetch() returns the R matrix itself (ALTREP over the shared pages).\n")

# ---------------------------------------------------------------------------
emit("## ", format(small_n, big.mark = " ", scientific = FALSE), " small objects\n")
objs <- lapply(seq_len(small_n), function(i) as.double(i + seq_len(64)))   # 512 B each
message(sprintf("%d small objects", small_n))
small <- list(
  "shard share+fetch each" = list(
    run = function(st) { s <- lapply(objs, share); list(s, lapply(s, fetch)) },
    teardown = function(st, r) invisible(lapply(r[[1]], close)), n = small_n, copies = 1),
  "shard share(list)+fetch (one composite object)" = list(
    run = function(st) { s <- share(objs); list(s, fetch(s)) },
    teardown = function(st, r) close(r[[1]]), n = small_n, copies = 1),
  "serialize+unserialize each" = list(
    run = function(st) { r <- lapply(objs, serialize, NULL); list(r, lapply(r, unserialize)) },
    n = small_n, copies = 2),
  "bigmemory as.big.matrix+describe+attach each" = list(
    run = function(st) {
      b <- lapply(objs[seq_len(bm_small_n)], function(o) as.big.matrix(matrix(o), type = "double", shared = TRUE))
      list(b, lapply(b, function(m) attach.big.matrix(describe(m))))
    }, n = bm_small_n, copies = 1),
  "PSOCK clusterExport(list)" = list(
    run = function(st) clusterExport(cl, "objs", envir = environment()),
    teardown = function(st, r) clusterEvalQ(cl, { rm(objs); invisible(gc()) }), n = small_n, copies = 2,
    sent = function() length(serialize(objs, NULL))),
  "shard share(list) -> PSOCK fetch" = list(
    run = function(st) {
      s <- share(objs)
      clusterCall(cl, wfun(function(s) { assign("y", shard::fetch(s), .GlobalEnv); NULL }), s)
      s
    },
    teardown = function(st, s) { clusterEvalQ(cl, { rm(y); invisible(gc()) }); close(s) }, n = small_n, copies = 1,
    sent = function() { s <- share(objs); on.exit(close(s)); length(serialize(s, NULL)) })
)
tm <- time_methods(small, reps_few)
keep("small", 512, tm)
per <- function(m) median(tm$seconds[tm$method == m]) / small[[m]]$n
base <- per("serialize+unserialize each")
rows <- list()
for (m in names(small)) {
  h <- held_by(small[[m]], pids)
  t <- tm$seconds[tm$method == m]
  rows[[length(rows) + 1L]] <- data.frame(
    method = m, objects = format(small[[m]]$n, big.mark = " ", scientific = FALSE), median = fmt_time(median(t)),
    "min..max" = spread(t), "per object" = fmt_time(per(m)),
    "vs serialize (per object)" = sprintf("%.2fx", base / per(m)), copies = small[[m]]$copies,
    sent = sent_of(small[[m]]$sent), fds = sprintf("%+d", h[["fds"]]),
    maps = sprintf("%+d", h[["maps"]]), PSS = fmt_bytes(h[["pss"]]), memory = fmt_bytes(h[["memory"]]),
    check.names = FALSE, stringsAsFactors = FALSE)
}
emit("Each object: a double vector of 64 elements (512 B). bigmemory makes one shared-memory ",
     "segment per object (a file in /dev/shm and its mappings), which costs tens of ms each here, ",
     "so it runs on ", format(bm_small_n, big.mark = " "), " objects: compare it per object. ",
     "\"shard share(list)\" shares the whole list as one object (a composite layout: one ",
     "allocation, ALTREP elements on fetch).\n")
emit(md_table(do.call(rbind, rows)), "\n")
rm(objs)
invisible(gc())
stopCluster(cl)

# ---------------------------------------------------------------------------
x <- big
rm(big)
gsize <- prod(dim(x)) * 8
emit("## A ", size_label(gsize), " double matrix\n")
emit("### share() vs serialize() vs a plain copy\n")
message("share vs serialize")
with_huge <- function(on, expr) {
  old <- options(shard.huge_pages = on)
  on.exit(options(old))
  expr
}
page_of <- new.env()
copy_methods <- list(
  "plain copy (duplicate: memcpy into fresh memory)" = list(
    run = function(st) { y <- x; y[1] <- 0; y }),
  "share(), huge pages on" = list(
    run = function(st) with_huge(TRUE, share(x)),
    teardown = function(st, s) { page_of$on <- shared_info(s)$page_size; close(s) }),
  "share(), huge pages off (4 KiB)" = list(
    run = function(st) with_huge(FALSE, share(x)),
    teardown = function(st, s) { page_of$off <- shared_info(s)$page_size; close(s) }),
  "serialize(xdr=FALSE) to raw" = list(run = function(st) serialize(x, NULL, xdr = FALSE)),
  "serialize() to raw" = list(run = function(st) serialize(x, NULL)),
  "bigmemory as.big.matrix" = list(run = function(st) as.big.matrix(x, type = "double", shared = TRUE))
)
tm <- time_methods(copy_methods, reps)
keep("copy", gsize, tm)
base <- median(tm$seconds[tm$method == names(copy_methods)[1]])
tab <- do.call(rbind, lapply(names(copy_methods), function(m) {
  t <- tm$seconds[tm$method == m]
  data.frame(method = m, median = fmt_time(median(t)), "min..max" = spread(t),
             "GB/s" = sprintf("%.2f", gsize / median(t) / 1e9),
             "speed vs plain copy" = sprintf("%.2fx", base / median(t)),
             check.names = FALSE, stringsAsFactors = FALSE)
}))
emit(md_table(tab), "\n")
emit("Page size the store really gave: huge pages on -> ", page_of$on, " B, off -> ", page_of$off,
     " B. Targets (docs/DESIGN): share() with 4 KiB pages >= 0.9x a memcpy into fresh anonymous ",
     "memory (the plain-copy row is that memcpy, page faults included); with 2 MiB pages >= 0.4x ",
     "a memcpy into already-faulted memory (measured by the criterion bench first_touch, see ",
     "## Allocator).\n")

# ---------------------------------------------------------------------------
emit("### fetch() and sum() in a fresh PSOCK worker\n")
message("fresh workers")
s_small <- share(matrix(seq_len(2^17) + 0.5, ncol = 128))          # 1 MiB
s_tiny <- share(c(1, 2, 3))                                       # warms the store up
s_big <- with_huge(TRUE, share(x))
s_big4k <- with_huge(FALSE, share(x))
b_small <- as.big.matrix(matrix(seq_len(2^17) + 0.5, ncol = 128), type = "double", shared = TRUE)
b_big <- as.big.matrix(x, type = "double", shared = TRUE)
b_tiny <- as.big.matrix(matrix(c(1, 2, 3)), type = "double", shared = TRUE)
d_small <- describe(b_small); d_big <- describe(b_big); d_tiny <- describe(b_tiny)
pg_big <- shared_info(s_big)$page_size
pg_4k <- shared_info(s_big4k)$page_size
nelem <- prod(dim(x))
rm(x)
invisible(gc())
fw <- list()
for (r in seq_len(reps_few)) {
  cl <- new_psock(1)
  clusterEvalQ(cl, suppressPackageStartupMessages(library(bigmemory)))
  res <- clusterCall(cl, wfun(function(s_tiny, s_small, s_big, s_big4k, d_tiny, d_small, d_big, nelem, flip) {
    now <- function() as.numeric(bench::hires_time())
    tm <- function(expr) { t0 <- now(); force(expr); now() - t0 }
    invisible(shard::fetch(s_tiny)); invisible(bigmemory::attach.big.matrix(d_tiny))  # one-time set-up
    out <- list()
    order <- if (flip) c("big", "small") else c("small", "big")
    for (o in order) {
      if (o == "small") {
        out$fetch_1m <- tm(y1 <- shard::fetch(s_small))
        out$attach_bm_1m <- tm(b1 <- bigmemory::attach.big.matrix(d_small))
      } else {
        out$fetch_1g <- tm(yb <- shard::fetch(s_big))
        out$fetch_1g_4k <- tm(y4 <- shard::fetch(s_big4k))
        out$attach_bm_1g <- tm(bb <- bigmemory::attach.big.matrix(d_big))
      }
    }
    out$sum_fetched_cold <- tm(a <- sum(yb))
    out$sum_fetched_warm <- tm(a2 <- sum(yb))
    out$sum_fetched_4k_cold <- tm(a3 <- sum(y4))
    resident <- double(nelem) + 1                                  # an ordinary, touched R vector
    out$sum_resident <- median(replicate(3, tm(sum(resident))))
    rm(resident); invisible(gc())
    out$sum_bigmemory_copy <- tm(a4 <- sum(bb[, ]))                 # bm[, ] copies into R, then sum
    out$same <- identical(a, a2) && identical(a, a3) && identical(a, a4)
    out
  }), s_tiny, s_small, s_big, s_big4k, d_tiny, d_small, d_big, nelem, r %% 2 == 0)[[1]]
  stopCluster(cl)
  if (!isTRUE(res$same)) warning("sums differ between fetched, bigmemory and 4 KiB copies")
  res$same <- NULL
  fw[[r]] <- data.frame(method = names(res), rep = r, seconds = unlist(res), stringsAsFactors = FALSE)
  message(sprintf("  fresh worker %d/%d", r, reps_few))
}
fw <- do.call(rbind, fw)
keep("fresh_worker", gsize, fw)
med <- function(m) median(fw$seconds[fw$method == m])
rng <- function(m) spread(fw$seconds[fw$method == m])
tab <- data.frame(
  measurement = c("shard fetch(), 1 MiB", sprintf("shard fetch(), %s (%s pages)", size_label(gsize), fmt_bytes(pg_big)),
                  sprintf("shard fetch(), %s (%s pages)", size_label(gsize), fmt_bytes(pg_4k)),
                  "bigmemory attach.big.matrix, 1 MiB", sprintf("bigmemory attach.big.matrix, %s", size_label(gsize))),
  median = fmt_time(c(med("fetch_1m"), med("fetch_1g"), med("fetch_1g_4k"), med("attach_bm_1m"), med("attach_bm_1g"))),
  "min..max" = c(rng("fetch_1m"), rng("fetch_1g"), rng("fetch_1g_4k"), rng("attach_bm_1m"), rng("attach_bm_1g")),
  "vs its 1 MiB" = c("1", sprintf("%.2fx", med("fetch_1g") / med("fetch_1m")),
                     sprintf("%.2fx", med("fetch_1g_4k") / med("fetch_1m")), "1",
                     sprintf("%.2fx", med("attach_bm_1g") / med("attach_bm_1m"))),
  check.names = FALSE, stringsAsFactors = FALSE)
emit("A new PSOCK worker per repeat (", reps_few, "); in it, after one fetch of a tiny object and one ",
     "tiny attach (one-time set-up: loading the store, its registry), each object is fetched once, ",
     "which includes attaching its region (open /proc/PID/fd/N, checks, mmap). The order of ",
     "the sizes alternates between repeats. Target: 1 GiB within 2x of 1 MiB, under 50 ms.\n")
emit(md_table(tab), "\n")
tab <- data.frame(
  measurement = c(sprintf("sum() over fetched %s, first pass (%s pages)", size_label(gsize), fmt_bytes(pg_big)),
                  "same object, second pass",
                  sprintf("sum() over fetched %s, first pass (%s pages)", size_label(gsize), fmt_bytes(pg_4k)),
                  "sum() over a resident R vector of the same length (baseline)",
                  "bigmemory: sum(bm[, ]) (copy into R, then sum)"),
  median = fmt_time(c(med("sum_fetched_cold"), med("sum_fetched_warm"), med("sum_fetched_4k_cold"),
                      med("sum_resident"), med("sum_bigmemory_copy"))),
  "min..max" = c(rng("sum_fetched_cold"), rng("sum_fetched_warm"), rng("sum_fetched_4k_cold"),
                 rng("sum_resident"), rng("sum_bigmemory_copy")),
  "vs resident" = sprintf("%.2fx", c(med("sum_fetched_cold"), med("sum_fetched_warm"), med("sum_fetched_4k_cold"),
                                     med("sum_resident"), med("sum_bigmemory_copy")) / med("sum_resident")),
  check.names = FALSE, stringsAsFactors = FALSE)
emit("In the same fresh workers. Target: first pass over the fetched object within 1.2x of the ",
     "resident vector with huge pages on.\n")
emit(md_table(tab), "\n")
close(s_small); close(s_tiny); close(s_big); close(s_big4k)
rm(b_small, b_big, b_tiny)
invisible(gc())

emit("Wall time of this script: ", sprintf("%.0f s", as.numeric(difftime(Sys.time(), started, units = "secs"))),
     "; load average at the end: ", strsplit(readLines("/proc/loadavg"), " ")[[1]][1], ".")
all <- do.call(rbind, lapply(csv, function(d) d[, c("section", "size", "method", "rep", "seconds")]))
write.csv(all, file.path(out_dir, "compare.csv"), row.names = FALSE)
writeLines(report, file.path(out_dir, "compare.md"))
message("wrote ", file.path(out_dir, "compare.md"), " and compare.csv")
}
tryCatch(main(), finally = hp$restore())
