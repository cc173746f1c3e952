# Owner for the pool part of kill-owner.R: creates a pool, shares an object, and
# runs pool_lapply() over it in a loop until SIGKILLed.
#   Rscript lib/pool-owner.R DIR
suppressMessages(library(shard))
dir <- commandArgs(TRUE)[[1]]
pool_create(2)
x <- as.double(seq_len(1e6))
s <- share(x)
kids <- pool_status()$pid   # PSOCK workers are not our children (started through a shell)
saveRDS(list(pid = Sys.getpid(), workers = kids, s = s, sum = sum(x)), file.path(dir, "ready.rds.tmp"))
file.rename(file.path(dir, "ready.rds.tmp"), file.path(dir, "ready.rds"))
repeat {
  r <- pool_lapply(1:8, function(i) sum(fetch(s)) + i)
  stopifnot(identical(unlist(r), sum(x) + 1:8))
}
