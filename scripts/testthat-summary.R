# Runs a testthat directory against the installed package, prints every
# failure and skip (skips loudly), and ends with "testthat: N passed, N failed, N skipped".
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
cat(sprintf("testthat: %d passed, %d failed, %d skipped\n", passed, failed, skipped))
quit(status = if (failed > 0) 1 else 0)
