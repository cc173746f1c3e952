# Pool part of kill-owner.R (sourced there when shard has pool_lapply()).
# 1. The owner of a pool is SIGKILLed during pool_lapply(): its workers exit (no
#    orphans within 10 s) and nothing of it is left after a sweep.
# 2. A worker is SIGKILLed mid-task: pool_lapply() either returns the right result
#    or a clear R error, and the next pool_lapply() works (the pool recovers).
run_pool <- function(n) {
  for (i in seq_len(n)) {
    d <- tempfile("pool-", tmpdir = tmpbase)
    dir.create(d)
    p <- process$new(rscript, c(file.path(here, "lib", "pool-owner.R"), d),
                     stdout = file.path(d, "out"), stderr = "2>&1", env = c("current", SHARD_TMPDIR = tmpbase))
    rds <- file.path(d, "ready.rds")
    if (!wait_for(rds, p, 60)) {
      p$kill(); fail(-i, paste("pool owner did not start:", paste(readLines(file.path(d, "out")), collapse = " | ")))
      next
    }
    r <- readRDS(rds)
    if (length(r$workers) < 2L) fail(-i, "pool owner reported fewer than 2 workers")
    Sys.sleep(runif(1, 0.05, 0.5))
    p$kill(); p$wait()
    t1 <- Sys.time()
    alive <- function() r$workers[file.exists(file.path("/proc", r$workers))]
    while (length(alive()) && Sys.time() - t1 < 10) Sys.sleep(0.1)
    if (length(alive())) {
      fail(-i, paste("pool workers still running 10 s after their owner was killed:", paste(alive(), collapse = ",")))
      tools::pskill(alive(), tools::SIGKILL)
    }
    invisible(shard_sweep())
    left <- leftovers(r$pid)
    if (length(left)) fail(-i, paste("pool run left behind:", paste(left, collapse = ", ")))
    unlink(d, recursive = TRUE)
  }
  # Worker killed mid-task, in this process's own pool.
  pool_create(2)
  on.exit(if (exists("pool_stop", envir = asNamespace("shard"))) try(shard::pool_stop(), silent = TRUE))
  x <- as.double(seq_len(1e5)); s <- share(x)
  outcome <- c(correct = 0L, error = 0L)
  for (k in seq_len(max(3L, n %/% 2L))) {
    kids <- pool_status()$pid
    if (!length(kids)) { fail(-1000 - k, "pool has no worker processes to kill"); break }
    victim <- kids[[1]]
    killer <- process$new("sh", c("-c", sprintf("sleep %.2f; kill -9 %d", runif(1, 0.05, 0.3), victim)))
    r <- tryCatch(pool_lapply(1:20, function(i) { Sys.sleep(0.05); sum(fetch(s)) + i }), error = function(e) e)
    killer$wait()
    if (inherits(r, "error")) outcome[["error"]] <- outcome[["error"]] + 1L else outcome[["correct"]] <- outcome[["correct"]] + 1L
    if (!inherits(r, "error") && !identical(unlist(r), sum(x) + 1:20))
      fail(-1000 - k, "pool_lapply returned wrong results after a worker was killed")
    r2 <- tryCatch(pool_lapply(1:4, function(i) sum(fetch(s)) + i), error = function(e) e)
    if (inherits(r2, "error") || !identical(unlist(r2), sum(x) + 1:4))
      fail(-1000 - k, paste("the pool did not recover after a worker was killed:",
                            if (inherits(r2, "error")) conditionMessage(r2) else "wrong result"))
  }
  close(s)
  message(sprintf("kill-owner: pool: %d owner kills (workers gone, nothing left); %d worker kills mid-task: %d runs still returned the right result, %d gave an R error; the pool worked again after each",
                  n, max(3L, n %/% 2L), outcome[["correct"]], outcome[["error"]]))
}
