# Draws the figures of docs/PERFORMANCE.md (R comparison, Scaling) from the CSV
# files the benchmark scripts wrote, with base R graphics.
#   Rscript benches/r/plots.R [RESULTS_DIR [IMG_DIR]]   (defaults: benches/r/results docs/img)
args <- commandArgs(TRUE)
res <- if (length(args) >= 1) args[1] else "benches/r/results"
img <- if (length(args) >= 2) args[2] else "docs/img"
dir.create(img, showWarnings = FALSE, recursive = TRUE)
lab <- function(b) ifelse(b >= 2^30, paste0(b / 2^30, "G"), ifelse(b >= 2^20, paste0(b / 2^20, "M"),
                   ifelse(b >= 2^10, paste0(b / 2^10, "K"), b)))
blab <- function(b) ifelse(b >= 2^30, paste0(b / 2^30, " GiB"), ifelse(b >= 2^20, paste0(b / 2^20, " MiB"),
                    ifelse(b >= 2^10, paste0(b / 2^10, " KiB"), paste0(b, " B"))))
tlab <- function(s) ifelse(s >= 1, paste0(signif(s, 2), " s"), ifelse(s >= 1e-3, paste0(signif(s * 1e3, 2), " ms"),
                    paste0(signif(s * 1e6, 2), " µs")))
made <- character()
done <- function(f) { dev.off(); made <<- c(made, f) }

# --- compare.csv: the R comparison -------------------------------------------
f <- file.path(res, "compare.csv")
if (file.exists(f)) {
  d <- read.csv(f, stringsAsFactors = FALSE)
  o <- d[d$section == "objects", ]
  if (nrow(o)) {
    out <- file.path(img, "compare_sizes.png")
    png(out, width = 1300, height = 520, res = 110)
    sizes <- sort(unique(o$size))
    meths <- unique(o$method)
    cols <- c("#1b9e77", "#66c2a5", "#d95f02", "#fc8d62", "#7570b3", "#e7298a")[seq_along(meths)]
    par(mfrow = c(1, length(sizes)), mar = c(4, 1, 3, 1), oma = c(0, 17, 2, 0))
    for (z in sizes) {
      m <- sapply(meths, function(k) median(o$seconds[o$size == z & o$method == k]))
      lo <- sapply(meths, function(k) min(o$seconds[o$size == z & o$method == k]))
      hi <- sapply(meths, function(k) max(o$seconds[o$size == z & o$method == k]))
      y <- barplot(rev(m), horiz = TRUE, log = "x", col = rev(cols), names.arg = if (z == sizes[1]) rev(meths) else NA,
                   las = 1, xlim = c(min(lo) / 2, max(hi) * 3), main = paste(blab(z), "double matrix"),
                   xlab = "seconds (log)", cex.names = 0.85)
      arrows(rev(lo), y, rev(hi), y, angle = 90, code = 3, length = 0.03)
      text(rev(hi), y, tlab(rev(m)), pos = 4, cex = 0.75, offset = 0.4)
    }
    mtext("Getting an object to another R process: median time (bars) and min..max (whiskers), one run",
          outer = TRUE, cex = 0.95)
    done(out)
  }
  w <- d[d$section == "fresh_worker", ]
  if (nrow(w)) {
    out <- file.path(img, "compare_fresh_worker.png")
    png(out, width = 1400, height = 500, res = 110)
    par(mfrow = c(1, 2), mar = c(4, 15, 3, 2.5), cex.main = 0.95)
    g <- unique(w$size)
    keys <- c(fetch_1m = "shard fetch() 1 MiB", fetch_1g = sprintf("shard fetch() %s, huge pages", blab(g)),
              fetch_1g_4k = sprintf("shard fetch() %s, 4 KiB pages", blab(g)),
              attach_bm_1m = "bigmemory attach 1 MiB", attach_bm_1g = sprintf("bigmemory attach %s", blab(g)))
    m <- sapply(names(keys), function(k) median(w$seconds[w$method == k]))
    y <- barplot(rev(m) * 1e3, horiz = TRUE, names.arg = rev(keys), las = 1, xlim = c(0, max(m) * 1e3 * 1.3),
                 col = rev(c("#1b9e77", "#1b9e77", "#66c2a5", "#7570b3", "#7570b3")),
                 xlab = "milliseconds (median)", main = "fetch()/attach in a fresh PSOCK worker", cex.names = 0.85)
    text(rev(m) * 1e3, y, tlab(rev(m)), pos = 4, cex = 0.8)
    keys <- c(sum_resident = "resident R vector (baseline)", sum_fetched_cold = "fetched, huge pages, 1st pass",
              sum_fetched_warm = "fetched, huge pages, 2nd pass", sum_fetched_4k_cold = "fetched, 4 KiB pages, 1st pass",
              sum_bigmemory_copy = "bigmemory sum(bm[, ])")
    m <- sapply(names(keys), function(k) median(w$seconds[w$method == k]))
    y <- barplot(rev(m / m[1]), horiz = TRUE, names.arg = rev(keys), las = 1, xlim = c(0, max(m / m[1]) * 1.25),
                 col = rev(c("grey60", "#1b9e77", "#1b9e77", "#66c2a5", "#7570b3")),
                 xlab = "time / time over the resident vector", main = sprintf("sum() over %s in a fresh worker", blab(g)),
                 cex.names = 0.85)
    abline(v = c(1, 1.2), lty = c(1, 2), col = "grey30")
    text(rev(m / m[1]), y, sprintf("%.2fx", rev(m / m[1])), pos = 4, cex = 0.8)
    done(out)
  }
}

# --- scaling_size.csv ------------------------------------------------------------
f <- file.path(res, "scaling_size.csv")
if (file.exists(f)) {
  d <- read.csv(f)
  ks <- c(share = "share()", serialize = "serialize(xdr=FALSE)", fetch_local = "fetch() local",
          fetch_worker = "fetch() in a PSOCK worker", unserialize = "unserialize()")
  cols <- c("#1b9e77", "#d95f02", "#66c2a5", "#7570b3", "#fc8d62")
  m <- aggregate(d[, names(ks)], list(size = d$size), median)
  out <- file.path(img, "scaling_size.png")
  png(out, width = 1000, height = 600, res = 110)
  par(mar = c(4, 4.5, 3, 1))
  matplot(m$size, m[, names(ks)], log = "xy", type = "b", pch = 19, lty = 1, col = cols, xaxt = "n", yaxt = "n",
          xlab = "object size (bytes)", ylab = "time (median)", main = "Cost vs object size (one run)")
  axis(1, at = m$size, labels = lab(m$size))
  yt <- 10^(-7:2); axis(2, at = yt, labels = tlab(yt), las = 1, cex.axis = 0.8)
  legend("topleft", legend = ks, col = cols, pch = 19, lty = 1, bty = "n", cex = 0.85)
  done(out)
}

# --- scaling_count.csv -----------------------------------------------------------
f <- file.path(res, "scaling_count.csv")
if (file.exists(f)) {
  d <- read.csv(f)
  m <- aggregate(d[, setdiff(names(d), c("count", "rep"))], list(count = d$count), median)
  out <- file.path(img, "scaling_count.png")
  png(out, width = 1300, height = 550, res = 110)
  par(mfrow = c(1, 2), mar = c(4, 4.5, 3, 1))
  ks <- c(share = "share()", serialize = "serialize(xdr=FALSE)", fetch_local = "fetch() local",
          fetch_worker = "fetch() in a PSOCK worker", unserialize = "unserialize()", close = "close()")
  cols <- c("#1b9e77", "#d95f02", "#66c2a5", "#7570b3", "#fc8d62", "grey40")
  per <- m[, names(ks)] / m$count
  clab <- format(m$count, big.mark = " ", scientific = FALSE, trim = TRUE)
  matplot(m$count, per, log = "xy", type = "b", pch = 19, lty = 1, col = cols, yaxt = "n", xaxt = "n",
          ylim = range(per) * c(1, 20),
          xlab = "number of 512 B objects", ylab = "time per object (median)", main = "Cost per object vs count")
  axis(1, at = m$count, labels = clab, cex.axis = 0.8)
  yt <- 10^(-8:0); axis(2, at = yt, labels = tlab(yt), las = 1, cex.axis = 0.8)
  legend("top", legend = ks, col = cols, pch = 19, lty = 1, bty = "n", cex = 0.75, ncol = 2)
  kk <- c(fds = "fds, master", maps = "mappings, master", worker_fds = "fds, worker", worker_maps = "mappings, worker")
  cols <- c("#1b9e77", "#d95f02", "#66c2a5", "#fc8d62")
  v <- pmax(as.matrix(m[, names(kk)]), 0.5)
  matplot(m$count, v, log = "xy", type = "b", pch = 19, lty = 1, col = cols, xaxt = "n", yaxt = "n",
          ylim = c(0.5, max(m$count) * 2),
          xlab = "number of 512 B objects", ylab = "added while all are held (0 drawn at 0.5)",
          main = "Kernel objects vs count: O(regions), not O(objects)")
  axis(1, at = m$count, labels = clab, cex.axis = 0.8)
  axis(2, at = m$count, labels = clab, las = 1, cex.axis = 0.7)
  lines(m$count, m$count, lty = 2, col = "grey60")
  text(m$count[length(m$count)], m$count[length(m$count)], "one per object", pos = 2, cex = 0.8, col = "grey40")
  legend("topleft", legend = kk, col = cols, pch = 19, lty = 1, bty = "n", cex = 0.8)
  done(out)
}

# --- threads.csv -------------------------------------------------------------------
f <- file.path(res, "threads.csv")
if (file.exists(f)) {
  d <- read.csv(f, stringsAsFactors = FALSE)
  m <- aggregate(ops_per_s ~ threads + impl, d, median)
  out <- file.path(img, "scaling_threads.png")
  png(out, width = 900, height = 550, res = 110)
  par(mar = c(4, 4.5, 3, 1))
  th <- sort(unique(m$threads))
  s <- m$ops_per_s[m$impl == "shard"][order(m$threads[m$impl == "shard"])]
  y <- m$ops_per_s[m$impl == "system"][order(m$threads[m$impl == "system"])]
  plot(th, y / 1e6, log = "xy", type = "b", pch = 19, col = "#d95f02", ylim = range(c(s, y) / 1e6) * c(0.7, 1.4),
       xaxt = "n", xlab = sprintf("threads (this machine: %s cores)", parallel::detectCores()),
       ylab = "alloc+free, million ops/s (total)", main = "Many-thread alloc/free (small blocks), one run")
  axis(1, at = th)
  lines(th, s / 1e6, type = "b", pch = 19, col = "#1b9e77")
  abline(v = parallel::detectCores(), lty = 3, col = "grey50")
  text(th, s / 1e6, sprintf("%.2fx", s / y), pos = 1, cex = 0.75, col = "#1b9e77")
  legend("bottomright", legend = c("system allocator (glibc)", "shard-alloc (labels: shard / system)"),
         col = c("#d95f02", "#1b9e77"), pch = 19, lty = 1, bty = "n", cex = 0.85)
  done(out)
}
cat(if (length(made)) paste("wrote", made, collapse = "\n") else "no results to plot", "\n")
