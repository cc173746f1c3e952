# Owner process for kill-owner.R: shares two stable objects, publishes their
# handles, then shares (and closes) objects in a loop until it is SIGKILLed, so
# the kill lands at a random point of share(): while reserving, copying,
# publishing, sealing, registering a name, or closing.
#   Rscript lib/owner.R DIR SEED STABLE_BACKING
suppressMessages(library(shard))
args <- commandArgs(TRUE)
dir <- args[[1]]; seed <- as.integer(args[[2]]); stable_backing <- args[[3]]
set.seed(seed)
publish <- function(obj, name) {
  tmp <- file.path(dir, paste0(name, ".tmp"))
  saveRDS(obj, tmp)
  file.rename(tmp, file.path(dir, name))
}
# s1: attached by the reader before the kill; s2: never attached by the reader
# before the kill (a region of its own: > own_region_threshold), for "new attach".
x1 <- as.double(seq_len(2e5)) * seed
s1 <- share(x1, backing = stable_backing)
x2 <- as.double(seq_len(2.2e6)) + seed
s2 <- share(x2)
# Data prepared up front so the loop's time is spent in share()/close().
pool <- list(runif(10), runif(1e3), runif(1e5), as.integer(seq_len(3e4)),
             runif(2.1e6), letters, list(a = 1:10, b = runif(100)),
             data.frame(x = 1:1000, y = runif(1000)))
publish(list(s1 = s1, s2 = s2, sum1 = sum(x1), sum2 = sum(x2), n1 = length(x1),
             pid = Sys.getpid()), "ready.rds")
keep <- list()
i <- 0L
repeat {
  i <- i + 1L
  obj <- pool[[sample.int(length(pool), 1L, prob = c(3, 3, 2, 2, 1, 1, 1, 1))]]
  b <- sample(c("auto", "auto", "shm", "mmap"), 1L)
  nm <- if (runif(1) < 0.15) sprintf("kill-%d-%d", Sys.getpid(), i) else NULL
  keep[[length(keep) + 1L]] <- share(obj, backing = b, name = nm)
  if (length(keep) > 6L) {
    close(keep[[1L]])
    keep[[1L]] <- NULL
  }
  if (i %% 5L == 0L) shard_seal()
}
