# Worker slots of a pool: starting workers, setting them up, replacing a worker
# that died, and the process facts (alive? memory?) read from /proc.
#
# A pool has `n` slots; slot i holds one worker process at a time (pool$cl[[i]],
# pool$pids[i]). A worker that dies is replaced in its slot; the slot number is
# what users see as "worker i". Nodes are reached only through pool_transport.R.

# Starts `k` workers of the pool's type (a parallel cluster, not yet set up).
pool_make_cluster <- function(pool, k) transport_start(pool$type, k, pool$libs)

# Sets the library paths and attaches shard on each node; returns the pids.
pool_init_nodes <- function(pool, cl) {
  init <- function(libs, pkg) {
    .libPaths(libs)
    ok <- suppressPackageStartupMessages(require(pkg, character.only = TRUE, quietly = TRUE))
    if (!ok) stop(sprintf("package %s could not be loaded from %s", pkg, paste(libs, collapse = ":")))
    Sys.getpid()
  }
  environment(init) <- globalenv()
  pids <- tryCatch(transport_call_all(cl, init, pool$libs, "shard"),
                   error = function(e) stop("shard: pool workers could not start: ", conditionMessage(e),
                                            call. = FALSE))
  as.integer(unlist(pids))
}

# Replaces worker slot `i` by a fresh worker (the old one is killed if still there).
pool_replace_worker <- function(pool, i) {
  node <- pool$cl[[i]]
  if (!is.null(node)) transport_close(node)
  pid <- pool$pids[i]
  if (!is.na(pid) && proc_alive(pid)) tools::pskill(pid, tools::SIGKILL)
  pool$dead[i] <- TRUE
  cl1 <- pool_make_cluster(pool, 1L)
  newpid <- tryCatch(pool_init_nodes(pool, cl1), error = function(e) {
    try(parallel::stopCluster(cl1), silent = TRUE)
    stop(e)
  })
  cl <- pool$cl
  cl[[i]] <- cl1[[1L]]
  pool$cl <- cl
  pool$pids[i] <- newpid
  pool$dead[i] <- FALSE
  pool$job_of[i] <- NA_integer_
  pool$replaced <- pool$replaced + 1L
  invisible(newpid)
}

# Marks slot `w` lost: its socket is closed and its process killed; the slot is
# replaced by pool_replace_worker() (now, or by pool_heal() at the next call).
pool_drop_worker <- function(pool, w) {
  if (!is.null(pool$cl[[w]])) transport_close(pool$cl[[w]])
  if (proc_alive(pool$pids[w])) try(tools::pskill(pool$pids[w], tools::SIGKILL), silent = TRUE)
  pool$dead[w] <- TRUE
}

# Replaces the workers that have died since they were last used (an idle
# worker's socket that is readable has hit end of file: its process is gone).
pool_heal <- function(pool) {
  for (i in seq_len(pool$n)) {
    dead <- pool$dead[i] || is.null(pool$cl[[i]]) || !proc_alive(pool$pids[i])
    if (!dead) {
      ready <- tryCatch(transport_ready(list(pool$cl[[i]]), timeout = 0), error = function(e) TRUE)
      dead <- isTRUE(ready[1])
    }
    if (dead) pool_replace_worker(pool, i)
  }
}

# A process that exists and is not a zombie.
proc_alive <- function(pid) {
  if (is.na(pid)) return(FALSE)
  s <- tryCatch(suppressWarnings(readLines(sprintf("/proc/%d/stat", as.integer(pid)), warn = FALSE)),
                error = function(e) character())
  if (!length(s)) return(FALSE)
  state <- sub("^.*\\) (.).*$", "\\1", s[1])
  !(state %in% c("Z", "X", "x"))
}

# Memory of a process from /proc/<pid>/smaps_rollup, in bytes (NA when gone).
proc_memory <- function(pid) {
  keys <- c(rss = "Rss", pss = "Pss", pss_anon = "Pss_Anon", pss_shmem = "Pss_Shmem",
            shared_hugetlb = "Shared_Hugetlb", private_hugetlb = "Private_Hugetlb")
  out <- stats::setNames(rep(NA_real_, length(keys)), names(keys))
  if (is.na(pid)) return(out)
  l <- tryCatch(suppressWarnings(readLines(sprintf("/proc/%d/smaps_rollup", as.integer(pid)), warn = FALSE)),
                error = function(e) character())
  if (!length(l)) return(out)
  key <- sub(":.*$", "", l)
  val <- suppressWarnings(as.numeric(sub("^[^:]+:\\s+([0-9]+) kB.*$", "\\1", l))) * 1024
  for (k in names(keys)) {
    hit <- which(key == keys[[k]])
    out[[k]] <- if (length(hit)) val[hit[1]] else 0
  }
  out
}
