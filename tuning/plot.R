# Plots of a tuning run (base R graphics): knobs.png (throughput of each swept
# value relative to the value it was compared against, per workload) and
# sizes.png (throughput vs object size, default vs tuned).
#   Rscript tuning/plot.R DIR      (DIR holds sweep.csv, chosen.csv, sizes.csv)
args <- commandArgs(TRUE)
dir <- if (length(args)) args[1] else "tuning/report"
sw <- read.csv(file.path(dir, "sweep.csv"), stringsAsFactors = FALSE)
ch <- read.csv(file.path(dir, "chosen.csv"), stringsAsFactors = FALSE)
sz <- read.csv(file.path(dir, "sizes.csv"), stringsAsFactors = FALSE)
wl_col <- c(small = "#1b9e77", medium = "#d95f02", large = "#7570b3")

# Last pass of each knob.
last <- ch[!duplicated(ch$knob, fromLast = TRUE), ]
png(file.path(dir, "knobs.png"), width = 1400, height = 800, res = 110)
n <- nrow(last)
par(mfrow = c(2, ceiling(n / 2)), mar = c(4, 4, 2.5, 0.5), oma = c(0, 0, 2, 0))
for (i in seq_len(n)) {
  k <- last$knob[i]; p <- last$pass[i]
  d <- sw[sw$knob == k & sw$pass == p, ]
  vals <- setdiff(unique(d$value), paste(last$before[i], "(A/A)"))
  wls <- intersect(names(wl_col), unique(d$workload))
  rel <- sapply(wls, function(w) {
    m <- sapply(vals, function(v) median(d$throughput[d$workload == w & d$value == v]))
    m / m[vals == last$before[i]]
  })
  rel <- matrix(rel, nrow = length(vals), dimnames = list(vals, wls))
  lo <- sapply(wls, function(w) sapply(vals, function(v) {
    b <- median(d$throughput[d$workload == w & d$value == last$before[i]])
    min(d$throughput[d$workload == w & d$value == v]) / b
  }))
  hi <- sapply(wls, function(w) sapply(vals, function(v) {
    b <- median(d$throughput[d$workload == w & d$value == last$before[i]])
    max(d$throughput[d$workload == w & d$value == v]) / b
  }))
  lo <- matrix(lo, nrow = length(vals)); hi <- matrix(hi, nrow = length(vals))
  x <- seq_along(vals)
  yl <- range(c(lo, hi, 1), na.rm = TRUE)
  plot(NA, xlim = c(0.7, length(vals) + 0.3), ylim = yl, xaxt = "n", log = "y",
       xlab = k, ylab = "throughput / current value's", main = sprintf("%s: %s -> %s", k, last$before[i], last$chosen[i]),
       cex.main = 0.95)
  axis(1, at = x, labels = vals)
  abline(h = 1, col = "grey50", lty = 2)
  if (!is.null(last$margin)) abline(h = 1 + last$margin[i], col = "grey50", lty = 3)
  rect(which(vals == last$chosen[i]) - 0.3, yl[1], which(vals == last$chosen[i]) + 0.3, yl[2],
       col = "#ffff0040", border = NA)
  for (j in seq_along(wls)) {
    off <- (j - (length(wls) + 1) / 2) * 0.08
    segments(x + off, lo[, j], x + off, hi[, j], col = wl_col[wls[j]])
    lines(x + off, rel[, j], type = "b", pch = 19, col = wl_col[wls[j]])
  }
  if (i == 1) legend("bottomleft", legend = names(wl_col), col = wl_col, pch = 19, bty = "n", cex = 0.8)
}
mtext("shard tuning sweep: median (dots) and min..max (bars) per value, relative to the value it was compared against; dotted: margin to beat; chosen shaded",
      outer = TRUE, cex = 0.9)
dev.off()

png(file.path(dir, "sizes.png"), width = 900, height = 600, res = 110)
sets <- unique(sz$set); cols <- c(default = "grey30", tuned = "#d95f02")
sizes <- sort(unique(sz$size))
med <- sapply(sets, function(s) sapply(sizes, function(z) median(sz$throughput[sz$set == s & sz$size == z])))
med <- matrix(med, nrow = length(sizes))
par(mar = c(4, 4.5, 2.5, 1))
plot(NA, xlim = range(sizes), ylim = range(sz$throughput / 1e9), log = "xy", xaxt = "n",
     xlab = "object size", ylab = "GB/s (alloc + write + publish + free)",
     main = "Throughput vs object size, default vs tuned profile (same run)")
lab <- function(b) ifelse(b >= 2^30, paste0(b / 2^30, "G"), ifelse(b >= 2^20, paste0(b / 2^20, "M"),
                   ifelse(b >= 2^10, paste0(b / 2^10, "K"), b)))
axis(1, at = sizes, labels = lab(sizes))
for (j in seq_along(sets)) {
  s <- sets[j]
  pts <- sz[sz$set == s, ]
  points(pts$size * (1 + 0.04 * (j - 1.5)), pts$throughput / 1e9, col = adjustcolor(cols[s], 0.4), pch = 1)
  lines(sizes, med[, j] / 1e9, type = "b", pch = 19, col = cols[s], lwd = 2)
}
legend("topleft", legend = paste(sets, "(median; rings = repeats)"), col = cols[sets], pch = 19, lwd = 2, bty = "n")
dev.off()
