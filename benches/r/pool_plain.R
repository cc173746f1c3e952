# The spec's example in pool workers, per task: `data <- fetch(shared_mat);
# sum(data[i, ])`, plain (a pool whose init_expr sets
# options(shard.plain_min_bytes = 65536): numeric vectors >= 64 KiB plain over
# the shared pages) against ALTREP (the workers' default). Each worker does TASKS
# tasks in one pool_lapply call (chunk_size = TASKS / workers, so the
# scheduler's round trips weigh the same on both sides); inside a task the
# worker fetches the matrix and sums ROWS rows, timed in the worker (fetch and
# the row sums; the scheduler's part is the same code on both sides). The two
# pools alternate, REPS rounds, medians. Second part: the matrix fetched once
# per worker and kept (what shard_map does with borrowed inputs).
#
#   R_LIBS=/work/rlib/plain2 Rscript benches/r/pool_plain.R
#   MATRIX=64M TASKS=200 ROWS=20 REPS=5 Rscript benches/r/pool_plain.R
suppressPackageStartupMessages(library(shard))
options(shard.huge_pages = FALSE)
env_num <- function(name, default) as.numeric(Sys.getenv(name, default))
MATRIX <- env_num("MATRIX", 256 * 2^20)   # bytes of the shared matrix
TASKS <- env_num("TASKS", 400)            # tasks per round
ROWS <- env_num("ROWS", 20)               # rows summed per task
REPS <- as.integer(env_num("REPS", 7))
W <- as.integer(env_num("WORKERS", 2))
loadavg <- function() paste(strsplit(readLines("/proc/loadavg"), " ")[[1]][1:3], collapse = " ")
cat(sprintf("R %s, %d CPUs; matrix %.0f MiB, %d workers, %.0f tasks x %.0f rows, REPS %d; load average %s\n",
            getRversion(), parallel::detectCores(), MATRIX / 2^20, W, TASKS, ROWS, REPS, loadavg()))

nc <- 4096L
nr <- as.integer(MATRIX / 8 / nc)
m <- matrix(runif(nr * nc), nr, nc)
s <- share(m)
set.seed(2)
rows <- matrix(sample.int(nr, TASKS * ROWS, replace = TRUE), ROWS)

task <- function(j, s, rows) {
  t0 <- as.numeric(bench::hires_time())
  data <- fetch(s)
  tot <- 0
  for (i in rows[, j]) tot <- tot + sum(data[i, ])
  t1 <- as.numeric(bench::hires_time())
  c(t = t1 - t0, plain = .Call(shard:::C_is_plain_vector, data), sum = tot)
}
# In this process first: the cost of a fresh plain mapping (first row read)
# against the ALTREP vector, and warm random rows (REPS rounds, medians).
one <- function(pl) {
  t0 <- bench::hires_time(); y <- fetch(s, plain = pl); t1 <- bench::hires_time()
  a <- sum(y[17L, ]); t2 <- bench::hires_time(); b <- sum(y[18L, ]); t3 <- bench::hires_time()
  c(fetch = t1 - t0, row1 = t2 - t1, row2 = t3 - t2)
}
fr <- lapply(1:REPS, function(k) { r <- rbind(plain = one(TRUE), altrep = one(FALSE)); invisible(gc()); r })
fr <- apply(simplify2array(fr), 1:2, median) * 1e3
cat(sprintf("one process, fresh fetch: plain fetch %.3f ms + first row %.3f ms + next row %.3f ms; ALTREP %.3f + %.3f + %.3f ms\n",
            fr["plain", "fetch"], fr["plain", "row1"], fr["plain", "row2"], fr["altrep", "fetch"], fr["altrep", "row1"],
            fr["altrep", "row2"]))
yp <- fetch(s, plain = TRUE); ya <- fetch(s, plain = FALSE)
rr <- sample.int(nr, 2000)
warm <- function(y) { t0 <- bench::hires_time(); tot <- 0; for (i in rr) tot <- tot + sum(y[i, ]); bench::hires_time() - t0 }
for (y in list(yp, ya, m)) warm(y)
wr <- apply(sapply(1:REPS, function(k) c(plain = warm(yp), altrep = warm(ya), resident = warm(m))), 1, median)
cat(sprintf("one process, 2000 random row sums after warm-up: plain %.1f ms, ALTREP %.1f ms, resident %.1f ms\n",
            wr[["plain"]] * 1e3, wr[["altrep"]] * 1e3, wr[["resident"]] * 1e3))
rm(yp, ya); invisible(gc())

pools <- list(plain = pool_create(W, set_default = FALSE, init_expr = quote(options(shard.plain_min_bytes = 65536))),
              altrep = pool_create(W, set_default = FALSE))
expect <- vapply(seq_len(TASKS), function(j) sum(vapply(rows[, j], function(i) sum(m[i, ]), 0)), 0)
run <- function(nm, fun = task) {
  t0 <- proc.time()[["elapsed"]]
  r <- pool_lapply(seq_len(TASKS), fun, s = s, rows = rows, pool = pools[[nm]], chunk_size = ceiling(TASKS / W))
  wall <- proc.time()[["elapsed"]] - t0
  r <- do.call(rbind, r)
  stopifnot(all(r[, "plain"] == (nm == "plain")), isTRUE(all.equal(r[, "sum"], expect)))
  c(task = median(r[, "t"]), wall = wall)
}
for (nm in names(pools)) run(nm)   # warm: both pools, pages touched
res <- list(plain = list(), altrep = list())
for (k in seq_len(REPS)) for (nm in if (k %% 2) names(pools) else rev(names(pools))) res[[nm]][[k]] <- run(nm)
med <- lapply(res, function(l) apply(do.call(rbind, l), 2, median))
cat(sprintf("per task (fetch + %d row sums), median: plain %.3f ms, ALTREP %.3f ms (plain/ALTREP %.2fx)\n",
            ROWS, med$plain[["task"]] * 1e3, med$altrep[["task"]] * 1e3, med$plain[["task"]] / med$altrep[["task"]]))
cat(sprintf("pool_lapply wall per round: plain %.3f s, ALTREP %.3f s (%.2fx)\n", med$plain[["wall"]],
            med$altrep[["wall"]], med$plain[["wall"]] / med$altrep[["wall"]]))
# Fetched once per worker (as shard_map does with its borrowed inputs: once
# per job, runtime_task()), then every task reads rows of the same vector.
task_once <- function(j, s, rows) {
  t0 <- as.numeric(bench::hires_time())
  if (is.null(data <- get0(".pool_plain_X", globalenv()))) assign(".pool_plain_X", data <- fetch(s), globalenv())
  tot <- 0
  for (i in rows[, j]) tot <- tot + sum(data[i, ])
  t1 <- as.numeric(bench::hires_time())
  c(t = t1 - t0, plain = .Call(shard:::C_is_plain_vector, data), sum = tot)
}
run_once <- function(nm) run(nm, task_once)
for (nm in names(pools)) run_once(nm)
res1 <- list(plain = list(), altrep = list())
for (k in seq_len(REPS)) for (nm in if (k %% 2) names(pools) else rev(names(pools))) res1[[nm]][[k]] <- run_once(nm)
med1 <- lapply(res1, function(l) apply(do.call(rbind, l), 2, median))
cat(sprintf("fetched once per worker: per task (%d row sums), median: plain %.3f ms, ALTREP %.3f ms (%.2fx)\n",
            ROWS, med1$plain[["task"]] * 1e3, med1$altrep[["task"]] * 1e3, med1$plain[["task"]] / med1$altrep[["task"]]))
cat("load average at the end:", loadavg(), "\n")
for (p in pools) pool_stop(p)
close(s)
