# Reads of views that ask R for a writable data pointer (sd()/var(): R's C code
# takes REAL(x), not REAL_RO): what they copy and how long they take.
# For each column j of a shared matrix, a 1-column view that starts one row in
# (an odd offset, not page-aligned: rows 2..n of column j) is made fresh and
# sd() of it is taken, as a shard_map() worker would; against sd() of the same
# values as an ordinary R vector (made beforehand, not timed). The copy
# counters of shard_diagnostics() say what the views cost in private memory.
# Methods interleaved per column, REPS passes over all columns, medians of the
# per-pass times.
#
#   R_LIBS=/work/rlib/tidy2 Rscript benches/r/view_reads.R
#   ROWS=32768 COLS=256 REPS=5 Rscript benches/r/view_reads.R   # the defaults (64 MiB)
suppressPackageStartupMessages(library(shard))
options(shard.huge_pages = FALSE)
rows <- as.integer(Sys.getenv("ROWS", "32768"))
cols <- as.integer(Sys.getenv("COLS", "256"))
reps <- as.integer(Sys.getenv("REPS", "5"))
set.seed(1)
x <- matrix(rnorm(rows * cols), nrow = rows)
s <- share(x)
X <- fetch(s)
resident <- lapply(seq_len(cols), function(j) x[2:rows, j])
counters <- function() unlist(shard_diagnostics()[c("cow_mappings", "cow_bytes", "copies", "copy_bytes")])
t_view <- t_res <- numeric(reps)
d_all <- 0
for (r in seq_len(reps)) {
  gc(FALSE)
  d0 <- counters()
  t0 <- proc.time()[["elapsed"]]
  for (j in seq_len(cols)) {
    v <- shared_view(X, (j - 1) * rows + 2, rows - 1)
    a <- sd(v)
  }
  t_view[r] <- proc.time()[["elapsed"]] - t0
  d_all <- d_all + (counters() - d0)
  stopifnot(identical(a, sd(resident[[cols]])))
  t0 <- proc.time()[["elapsed"]]
  for (j in seq_len(cols)) b <- sd(resident[[j]])
  t_res[r] <- proc.time()[["elapsed"]] - t0
}
per <- d_all / reps
cat(sprintf("matrix %d x %d doubles (%.0f MiB), view = rows 2..%d of one column (%.0f KiB), %d passes\n",
            rows, cols, rows * cols * 8 / 2^20, rows, (rows - 1) * 8 / 1024, reps))
cat(sprintf("per pass over %d columns: cow_mappings %.0f (%.1f MiB mapped), copies %.0f (%.1f MiB copied)\n",
            cols, per[["cow_mappings"]], per[["cow_bytes"]] / 2^20, per[["copies"]], per[["copy_bytes"]] / 2^20))
cat(sprintf("sd() of every column: view %.1f ms, resident %.1f ms (medians), view/resident %.2f\n",
            1e3 * median(t_view), 1e3 * median(t_res), median(t_view) / median(t_res)))
close(s)
