# Child of inject.R: waits until strace is attached, runs a share/fetch/close
# scenario in which one system call fails (or the process is killed) by strace's
# fault injection, then (after strace detached) checks that the session still
# works and nothing leaked: every object is either shared (and fetches the right
# bytes) or failed with an R error; live objects = objects shared and not closed;
# after closing all of them, no shard fd or mapping is left.
#   Rscript lib/inject-child.R DIR
suppressMessages(library(shard))
dir <- commandArgs(TRUE)[[1]]
f <- function(n) file.path(dir, n)
shard_fds <- function() sum(grepl("memfd:shard|/dev/shm/shard-|/shard-[0-9]+/shard-", suppressWarnings(Sys.readlink(list.files("/proc/self/fd", full.names = TRUE)))))
shard_maps <- function() sum(grepl("memfd:shard|/dev/shm/shard-|/shard-[0-9]+/shard-", readLines("/proc/self/maps")))
data <- list(small = runif(1e3), medium = runif(1e5), own = runif(2.2e6), shm = runif(1e4), mmap = runif(1e4),
             named = 1:10, chr = c("a", NA, "b"), df = data.frame(a = 1:3, b = c("x", "y", "z")))
backing <- c(small = "auto", medium = "auto", own = "auto", shm = "shm", mmap = "mmap", named = "auto", chr = "auto", df = "auto")
fds0 <- shard_fds(); maps0 <- shard_maps(); live0 <- shard_diagnostics()$live_objects
writeLines(as.character(Sys.getpid()), f("pid.tmp")); invisible(file.rename(f("pid.tmp"), f("pid")))
while (!file.exists(f("go"))) Sys.sleep(0.01)
# --- under injection: nothing here may crash; each step is a value or an R error
shared <- list(); errors <- character()
for (nm in names(data)) {
  r <- tryCatch(share(data[[nm]], backing = backing[[nm]],
                      name = if (nm == "named") paste0("inject-", Sys.getpid()) else NULL),
                error = function(e) e)
  if (inherits(r, "error")) errors <- c(errors, paste0(nm, ": ", conditionMessage(r))) else shared[[nm]] <- r
}
fetched <- list()
for (nm in names(shared)) {
  r <- tryCatch(fetch(shared[[nm]]), error = function(e) e)
  if (inherits(r, "error")) errors <- c(errors, paste0("fetch ", nm, ": ", conditionMessage(r))) else fetched[[nm]] <- r
}
r <- tryCatch(shard_seal(), error = function(e) errors <<- c(errors, paste0("seal: ", conditionMessage(e))))
for (nm in intersect(c("small", "shm"), names(shared))) {
  r <- tryCatch(close(shared[[nm]]), error = function(e) e)
  if (inherits(r, "error")) errors <- c(errors, paste0("close ", nm, ": ", conditionMessage(r)))
  else { shared[[nm]] <- NULL; fetched[[nm]] <- NULL }
}
writeLines("done", f("scenario")); while (!file.exists(f("verify"))) Sys.sleep(0.01)
# --- strace detached: verify
problems <- character()
for (nm in names(fetched)) {
  v <- tryCatch(fetch(shared[[nm]]), error = function(e) e)
  if (inherits(v, "error")) problems <- c(problems, paste("refetch", nm, conditionMessage(v)))
  else if (!identical(v, data[[nm]]) && !(nm == "df" && identical(as.data.frame(v), data[[nm]])))
    problems <- c(problems, paste("wrong bytes for", nm))
}
live <- shard_diagnostics()$live_objects - live0
if (live != length(shared)) problems <- c(problems, sprintf("%d live objects, %d shared R objects (leaked or lost)", live, length(shared)))
for (s in shared) tryCatch(close(s), error = function(e) problems <<- c(problems, paste("close:", conditionMessage(e))))
rm(fetched, shared, v); invisible(gc()); invisible(gc())
if (shard_diagnostics()$live_objects != live0) problems <- c(problems, "live objects remain after closing all")
if (shard_fds() != fds0 || shard_maps() != maps0)
  problems <- c(problems, sprintf("shard fds %d->%d, mappings %d->%d after closing all", fds0, shard_fds(), maps0, shard_maps()))
y <- runif(100)
if (!identical(fetch(share(y)), y)) problems <- c(problems, "session no longer shares")
saveRDS(list(errors = errors, problems = problems), f("result.rds"))
