# Per-call cost of small objects, for an A/B of two builds in one sitting: N
# vectors of 512 B shared one by one (all kept live, as in scaling.R's count
# series), fetched, closed; serialize(xdr = FALSE)/unserialize() of each as the
# same-process baseline; then bench::mark of one share()+close() against one
# serialize()+unserialize() with nothing else live. Per-object medians of 3.
#
#   for lib in /tmp/lib-old /tmp/lib-new; do TAG=$lib R_LIBS=$lib N=20000 Rscript benches/r/small_ab.R; done
suppressMessages(library(shard))
n <- as.numeric(Sys.getenv("N", "20000"))
objs <- lapply(seq_len(n), function(i) as.double(i + seq_len(64)))
invisible(close(share(objs[[1]])))
res <- NULL
for (rep in 1:3) {
  invisible(gc())
  t_share <- system.time(ss <- lapply(objs, share))[[3]]
  t_fetch <- system.time(ys <- lapply(ss, fetch))[[3]]
  t_close <- system.time(invisible(lapply(ss, close)))[[3]]
  rm(ss, ys); invisible(gc())
  t_ser <- system.time(sers <- lapply(objs, serialize, NULL, xdr = FALSE))[[3]]
  t_un <- system.time(uns <- lapply(sers, unserialize))[[3]]
  rm(sers, uns)
  res <- rbind(res, c(share = t_share, fetch = t_fetch, close = t_close, ser = t_ser, unser = t_un) / n * 1e6)
}
x <- as.double(1:64)
b <- bench::mark(share_close = close(share(x)), ser_unser = unserialize(serialize(x, NULL, xdr = FALSE)),
                 check = FALSE, min_iterations = 5000)
med <- apply(res, 2, median)
cat(sprintf("%s n=%d per-object medians: share %.1f fetch %.1f close %.1f | ser %.2f unser %.2f | share/ser %.2f | mark share+close %.1f us ser+unser %.1f us ratio %.2f\n",
    Sys.getenv("TAG"), n, med[["share"]], med[["fetch"]], med[["close"]], med[["ser"]], med[["unser"]], med[["share"]] / med[["ser"]],
    as.numeric(b$median[1]) * 1e6, as.numeric(b$median[2]) * 1e6, as.numeric(b$median[1] / b$median[2])))
