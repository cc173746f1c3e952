# Runs a testthat directory against the installed package, prints every
# failure and skip (skips loudly), checks that the run left no worker process,
# cluster connection or pool behind (a leftover counts as a failure), and ends
# with "testthat: N passed, N failed, N skipped".
#
# processx (loaded by testthat, used through callr) installs its own SIGCHLD
# handler when it starts a process; unless told to pass signals on, parallel's
# forked children (mclapply, fork pools) that exit afterwards are never reaped
# by parallel, and R prints "Error while shutting down parallel: unable to
# terminate some child processes" after a 10 s wait at exit. processx reads this
# variable when it is loaded, so it is set before testthat is.
Sys.setenv(PROCESSX_NOTIFY_OLD_SIGCHLD = "true")
args <- commandArgs(TRUE)
suppressPackageStartupMessages({ library(testthat); library(shard) })
res <- testthat::test_dir(args[1], package = "shard", load_package = "installed",
                          reporter = ProgressReporter$new(show_praise = FALSE), stop_on_failure = FALSE)
df <- as.data.frame(res)
passed <- sum(df$nb) - sum(df$failed) - sum(df$skipped) - sum(df$error)
failed <- sum(df$failed) + sum(df$error)
skipped <- sum(df$skipped)
if (skipped > 0) {
  cat("SKIPPED tests (each says why):\n")
  print(df[df$skipped > 0, c("file", "test")], row.names = FALSE)
}

# What the run left behind: child processes (unreaped forked workers show up as
# zombies), open socket connections (PSOCK cluster nodes), an ambient shard pool.
leftovers <- function() {
  left <- character()
  pool <- tryCatch(get(".pool_state", envir = asNamespace("shard"))$current, error = function(e) NULL)
  if (!is.null(pool) && !isTRUE(pool$stopped)) left <- c(left, "an ambient shard pool (pool_create() without pool_stop())")
  cons <- showConnections(all = TRUE)
  socks <- cons[cons[, "class"] %in% c("sockconn", "servsockconn"), , drop = FALSE]
  if (nrow(socks)) left <- c(left, sprintf("socket connection %s (%s): a PSOCK cluster not stopped?", rownames(socks), socks[, "description"]))
  if (requireNamespace("ps", quietly = TRUE)) {
    for (p in ps::ps_children(ps::ps_handle())) {
      d <- tryCatch(sprintf("child process %d (%s, %s): %s", ps::ps_pid(p), ps::ps_name(p), ps::ps_status(p),
                            paste(ps::ps_cmdline(p), collapse = " ")), error = function(e) NULL)
      if (!is.null(d)) left <- c(left, d)
    }
  }
  left
}
left <- leftovers()
for (i in 1:50) { if (!length(left)) break; Sys.sleep(0.1); left <- leftovers() }  # exiting children
if (length(left)) {
  cat("LEFTOVER after the testthat run (counted as 1 failure):\n", paste0("  ", left, "\n"), sep = "")
  failed <- failed + 1
}
cat(sprintf("testthat: %d passed, %d failed, %d skipped\n", passed, failed, skipped))
quit(status = if (failed > 0) 1 else 0)
