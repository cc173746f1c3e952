# Fault injection: SIGKILL the owner of shared objects at random points of
# share() (and of a pool_lapply() run, when the pool exists), N times.
#
#   Rscript reliability/kill-owner.R [N] [MODE]     N default 1000; MODE share|pool|all
#   (CI: Rscript reliability/kill-owner.R 50)
#
# This process is the surviving reader. Each iteration:
#   1. start an owner (lib/owner.R) that shares s1 (backing auto/shm/mmap, chosen
#      in turn) and s2, then shares/closes objects in a loop;
#   2. attach s1 here (fetch) and verify its checksum;
#   3. after a random delay (0-400 ms) SIGKILL the owner, reap it;
#   4. s1 still reads correct data here; a new attach (s2, whose region this
#      process never mapped) fails with a clear "owner ... has exited" error, and
#      every FRESH_EVERY iterations a fresh process's fetch(s1) does too;
#   5. shard_sweep() removes what the dead owner left: no /dev/shm/shard-UID-PID-*,
#      no region file or name of that pid in the per-user directory;
#   6. after dropping s1's vector, this process maps no shard region and holds no
#      shard fd (counted from /proc/self/fd and /proc/self/maps), i.e. the
#      survivor leaks nothing, iteration after iteration.
# Exit status 0 when every check held; otherwise the failures are listed.
suppressMessages({ library(shard); library(processx) })
args <- commandArgs(TRUE)
N <- if (length(args) >= 1L) as.integer(args[[1]]) else 1000L
mode <- if (length(args) >= 2L) args[[2]] else "all"
fresh_every <- as.integer(Sys.getenv("FRESH_EVERY", "10"))
here <- local({
  a <- grep("^--file=", commandArgs(FALSE), value = TRUE)
  dirname(normalizePath(sub("^--file=", "", a[[1]])))
})
rscript <- file.path(R.home("bin"), "Rscript")
uid <- as.integer(system("id -u", intern = TRUE))
# A private per-user directory for this run, so other users of /tmp do not
# disturb the file counts (the mmap backing and names live there).
tmpbase <- tempfile("shard-kill-")
dir.create(tmpbase)
Sys.setenv(SHARD_TMPDIR = tmpbase)
userdir <- file.path(tmpbase, paste0("shard-", uid))
set.seed(as.integer(Sys.getenv("KILL_SEED", "1")))

failures <- character()
fail <- function(i, msg) {
  failures <<- c(failures, sprintf("iteration %d: %s", i, msg))
  message("FAIL iteration ", i, ": ", msg)
}

shard_fds <- function() {
  fds <- list.files("/proc/self/fd", full.names = TRUE)
  l <- suppressWarnings(Sys.readlink(fds))
  sum(grepl("memfd:shard|/dev/shm/shard-|/shard-[0-9]+-[0-9]+-", l))
}
shard_maps <- function() {
  m <- readLines("/proc/self/maps")
  sum(grepl("memfd:shard|/dev/shm/shard-|/shard-[0-9]+/shard-", m))
}
all_fds <- function() length(list.files("/proc/self/fd"))
leftovers <- function(pid) {
  pat <- sprintf("^shard-%d-%d-", uid, pid)
  c(file.path("/dev/shm", grep(pat, list.files("/dev/shm"), value = TRUE)),
    file.path(userdir, grep(pat, list.files(userdir), value = TRUE)),
    grep(sprintf("^(kill-%d-|\\.tmp-%d-)", pid, pid),
         list.files(file.path(userdir, "names"), all.files = TRUE), value = TRUE))
}
fresh_fetch_error <- function(rds) {
  out <- suppressWarnings(system2(rscript, c("-e", shQuote(sprintf(
    "suppressMessages(library(shard)); r <- readRDS('%s'); x <- tryCatch(fetch(r$s1), error = function(e) e); if (inherits(x, 'error')) cat('ERR:', conditionMessage(x)) else cat('OK', sum(x))",
    rds))), stdout = TRUE, stderr = TRUE))
  paste(out, collapse = " ")
}

wait_for <- function(path, proc, secs = 20) {
  t0 <- Sys.time()
  while (!file.exists(path)) {
    if (!proc$is_alive()) return(FALSE)
    if (as.numeric(Sys.time() - t0, units = "secs") > secs) return(FALSE)
    Sys.sleep(0.005)
  }
  TRUE
}

owner_error_re <- "exited|owner|no longer"
backings <- c("auto", "shm", "mmap")
stats <- c(iterations = 0, killed_while_sharing = 0, fresh_checked = 0, files_swept = 0)
fd0 <- all_fds()
run_share <- function(i) {
  d <- tempfile("kill-", tmpdir = tmpbase)
  dir.create(d)
  on.exit(unlink(d, recursive = TRUE))
  backing <- backings[(i - 1L) %% 3L + 1L]
  p <- process$new(rscript, c(file.path(here, "lib", "owner.R"), d, i, backing),
                   stdout = file.path(d, "owner.out"), stderr = "2>&1",
                   env = c("current", SHARD_TMPDIR = tmpbase))
  rds <- file.path(d, "ready.rds")
  if (!wait_for(rds, p)) {
    p$kill()
    fail(i, paste("owner did not start:", paste(readLines(file.path(d, "owner.out")), collapse = " | ")))
    return()
  }
  r <- readRDS(rds)
  x <- fetch(r$s1)
  if (sum(x) != r$sum1) fail(i, "s1 wrong before the kill")
  if (shard_maps() < 1L) fail(i, "s1 is not mapped after fetch")
  Sys.sleep(runif(1, 0, 0.4))
  if (!p$is_alive()) {
    fail(i, paste("owner died before the kill:", paste(readLines(file.path(d, "owner.out")), collapse = " | ")))
  } else {
    stats[["killed_while_sharing"]] <<- stats[["killed_while_sharing"]] + 1
  }
  p$kill()       # SIGKILL
  p$wait()       # reaped: no zombie holds the pid
  # 4. the survivor still reads correct data
  if (!(sum(x) == r$sum1 && length(x) == r$n1 && x[r$n1] == r$n1 * i))
    fail(i, "s1 reads wrong data after the owner was killed")
  # new attach of a region this process never mapped: a clear error
  e <- tryCatch({ fetch(r$s2); NULL }, error = function(e) conditionMessage(e))
  if (is.null(e)) fail(i, "fetch(s2) succeeded after its owner was killed")
  else if (!grepl(owner_error_re, e)) fail(i, paste("unclear error for a dead owner:", e))
  if (fresh_every > 0L && i %% fresh_every == 0L) {
    stats[["fresh_checked"]] <<- stats[["fresh_checked"]] + 1
    out <- fresh_fetch_error(rds)
    if (!grepl(paste0("^ERR:.*(", owner_error_re, ")"), out))
      fail(i, paste("fresh process fetch(s1) after the kill:", out))
  }
  # 5. sweep from a process other than the owner: nothing of the dead owner is left
  n <- shard_sweep()
  stats[["files_swept"]] <<- stats[["files_swept"]] + as.numeric(n)
  left <- leftovers(r$pid)
  if (length(left)) fail(i, paste("left behind after sweep:", paste(left, collapse = ", ")))
  # the data survives the sweep (unlinking does not unmap)
  if (sum(x) != r$sum1) fail(i, "s1 changed after sweep")
  # 6. no fd or mapping leak in the survivor
  rm(x, r); gc(verbose = FALSE); gc(verbose = FALSE)
  if (shard_maps() != 0L || shard_fds() != 0L)
    fail(i, sprintf("survivor still maps %d shard regions / holds %d shard fds after dropping them",
                    shard_maps(), shard_fds()))
  stats[["iterations"]] <<- stats[["iterations"]] + 1
}

pool_available <- exists("pool_lapply", envir = asNamespace("shard"), inherits = FALSE)
t0 <- Sys.time()
if (mode %in% c("share", "all")) {
  for (i in seq_len(N)) {
    run_share(i)
    if (i %% 50L == 0L) message(sprintf("kill-owner: %d/%d iterations, %d failures, %.0fs", i, N,
                                        length(failures), as.numeric(Sys.time() - t0, units = "secs")))
  }
}
if (mode %in% c("pool", "all")) {
  if (!pool_available) {
    message("kill-owner: SKIPPED pool mode: shard has no pool_lapply() yet (r-ext/R/pool.R not present)")
  } else {
    source(file.path(here, "lib", "kill-pool.R"), local = TRUE)
    run_pool(max(5L, N %/% 10L))
  }
}
# Nothing of any dead owner is left once every owner is gone.
invisible(shard_sweep())
left_all <- c(grep(sprintf("^shard-%d-", uid), list.files("/dev/shm"), value = TRUE),
              list.files(userdir, pattern = "^shard-"))
own_pids <- unique(sub(sprintf("^shard-%d-([0-9]+)-.*", uid), "\\1", left_all))
dead <- own_pids[!file.exists(file.path("/proc", own_pids))]
if (length(dead)) failures <- c(failures, paste("files of dead owners at the end:", paste(dead, collapse = ",")))
invisible(gc()); invisible(gc())   # processx objects close their pipes when collected
if (all_fds() > fd0 + 2L) {
  fds <- list.files("/proc/self/fd", full.names = TRUE)
  failures <- c(failures, sprintf("driver fds grew from %d to %d: %s", fd0, all_fds(),
                                  paste(suppressWarnings(Sys.readlink(fds)), collapse = " ")))
}
unlink(tmpbase, recursive = TRUE)
cat(sprintf("kill-owner: %d iterations (owner SIGKILLed while sharing in %d), %d fresh-process checks, %d files swept, %.0fs\n",
            stats[["iterations"]], stats[["killed_while_sharing"]], stats[["fresh_checked"]],
            stats[["files_swept"]], as.numeric(Sys.time() - t0, units = "secs")))
if (length(failures)) {
  cat("kill-owner: FAILURES\n", paste0("  ", unique(failures), "\n"), sep = "")
  quit(status = 1)
}
cat("kill-owner: all checks held\n")
