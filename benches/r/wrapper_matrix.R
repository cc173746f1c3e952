# R itself, no shard: matrix row/column subsets of an ordinary matrix against R's own
# ALTREP wrapper class over it (.Internal(wrap_meta(x, 0L, 0L))), to show that any
# ALTREP vector pays R's per-element dispatch in MatrixSubset, on R 4.2 and on R 4.5
# (PERFORMANCE.md, "Quiet reruns"). Run: Rscript benches/r/wrapper_matrix.R, and in
# the R 4.5 chroot: cp it to $root/tmp, bash scripts/r45-chroot.sh run Rscript /tmp/wrapper_matrix.R
set.seed(1); x <- matrix(rnorm(2^22), 2048); w <- .Internal(wrap_meta(x, 0L, 0L))
rows <- sample(2048, 500); cols <- sample(2048, 32)
t <- function(m) { r <- numeric(0); for (k in 1:15) r <- c(r, system.time(for (j in 1:5) m[rows, ])[["elapsed"]]); median(r) }
tc <- function(m) { r <- numeric(0); for (k in 1:15) r <- c(r, system.time(for (j in 1:200) m[, cols])[["elapsed"]]); median(r) }
cat(R.version.string, "\n")
cat("rows: resident", t(x), "wrapper", t(w), "\n")
cat("cols: resident", tc(x), "wrapper", tc(w), "\n")
