# Reading fetched objects (issue 11): every read in the issue's table and the
# string / data.frame / huge-page / small-object cases, on three copies of the
# same data in one process:
#   resident  an ordinary R object
#   fetched   fetch(share(x)) as ALTREP vectors over shared memory (the default)
#   plain     fetch(share(x), plain = TRUE): an ordinary R object, numeric
#             vectors as plain R vectors over the shared pages
#             (r-ext/src/mapped.c), character vectors materialized (an
#             ordinary STRSXP made in one pass by fetch())
#   wrapper   R's own ALTREP wrapper class over the resident object,
#             .Internal(wrap_meta(x, 0L, 0L)) (per column for data.frames)
# Methods are interleaved round-robin, REPS repeats, medians; ratios are
# fetched/resident, plain/resident and wrapper/resident from the same run. Reads of character
# data are timed after a first untimed touch ("after the first touch"); the
# first full pass is its own row, against unserialize() of the same vector
# (fetched: nchar() of the ALTREP vector; plain: fetch(s, plain = TRUE), which
# makes every string, then nchar()).
#
#   R_LIBS=/work/rlib/cext Rscript benches/r/access.R            # full sizes
#   MATRIX=64M VEC=2e6 ROWS=2e5 REPS=5 Rscript benches/r/access.R  # smaller
#   SECTIONS=df,firstpass Rscript benches/r/access.R   # some of: matrix, vector, df,
#                                                      # firstpass, huge, small
#
# Objects use 4 KiB pages (options(shard.huge_pages = FALSE)) so that fetched
# and resident memory have the same page size; the huge-page section shares its
# own object with huge pages when the kernel has them.
suppressPackageStartupMessages({
  library(shard)
  library(bench)
})
options(shard.huge_pages = FALSE)
now <- function() as.numeric(bench::hires_time())
env_bytes <- function(name, default) {
  v <- toupper(Sys.getenv(name, ""))
  if (!nzchar(v)) return(default)
  m <- regmatches(v, regexec("^([0-9.E+]+)([KMG]?)$", v))[[1]]
  as.numeric(m[2]) * 1024^match(m[3], c("", "K", "M", "G"), nomatch = 1L) / 1024
}
MATRIX <- env_bytes("MATRIX", 256 * 2^20)         # bytes of the matrix
VEC <- as.numeric(Sys.getenv("VEC", "1e7"))         # length of the double vector
ROWS <- as.numeric(Sys.getenv("ROWS", "1e6"))       # rows of the data.frame
REPS <- as.integer(Sys.getenv("REPS", "7"))
# GC_EACH=1 (default): an untimed gc() before every timed call. All objects live
# in one process, so which object's call pays a collection depends on where the
# round-robin stands when the heap crosses R's threshold, not on the object: the
# same pattern recurs every round, so one column can pay it in every round (seen
# as plain `which(v > 0.99)` 1.42-1.49x in two runs, 1.00-1.04x with gc() first).
GC_EACH <- Sys.getenv("GC_EACH", "1") != "0"
SECTIONS <- strsplit(Sys.getenv("SECTIONS", "matrix,vector,df,firstpass,huge,small"), ",")[[1]]
section <- function(name) name %in% SECTIONS
set.seed(1)
keys <- sprintf("k%07d", sample.int(ROWS / 10, ROWS, replace = TRUE))

wrap <- function(x) .Internal(wrap_meta(x, 0L, 0L))
wrap_df <- function(d) { for (j in seq_along(d)) d[[j]] <- wrap(d[[j]]); d }
fmt_t <- function(s) ifelse(s >= 1e-3, sprintf("%.3g ms", s * 1e3), sprintf("%.3g us", s * 1e6))

results <- list()
# Times f(obj) for each of the objects (a named list: resident, fetched, wrapper).
# `warm`: one untimed call per object first. `check`: results must be identical.
case <- function(label, objs, f, warm = FALSE, check = TRUE, reps = REPS) {
  if (warm || check) {
    outs <- lapply(objs, f)
    if (check) for (nm in names(objs)[-1])
      if (!identical(outs[[1]], outs[[nm]])) stop(sprintf("%s: %s differs from resident", label, nm))
    rm(outs)
  }
  t <- matrix(NA_real_, reps, length(objs), dimnames = list(NULL, names(objs)))
  for (r in seq_len(reps)) for (nm in names(objs)) {
    o <- objs[[nm]]
    if (GC_EACH) invisible(gc(verbose = FALSE))
    t0 <- now(); invisible(f(o)); t[r, nm] <- now() - t0
  }
  med <- apply(t, 2, median)
  row <- data.frame(case = label, resident = med[["resident"]], fetched = med[["fetched"]],
                    wrapper = if ("wrapper" %in% names(med)) med[["wrapper"]] else NA_real_,
                    plain = if ("plain" %in% names(med)) med[["plain"]] else NA_real_)
  row$fetched_ratio <- row$fetched / row$resident
  row$wrapper_ratio <- row$wrapper / row$resident
  row$plain_ratio <- row$plain / row$resident
  results[[length(results) + 1]] <<- row
  cat(sprintf("%-44s resident %10s  fetched %10s (%.2fx)  plain %10s (%s)  wrapper %10s (%s)\n", label,
              fmt_t(row$resident), fmt_t(row$fetched), row$fetched_ratio, fmt_t(row$plain),
              if (is.na(row$plain)) "-" else sprintf("%.2fx", row$plain_ratio), fmt_t(row$wrapper),
              if (is.na(row$wrapper)) "-" else sprintf("%.2fx", row$wrapper_ratio)))
  invisible(row)
}
fetch_altrep <- function(s) fetch(s, plain = FALSE)
is_plain <- function(x) isTRUE(shared_info(x)$plain)
three <- function(x, s) {
  p <- fetch(s, plain = TRUE)
  if (!is_plain(p)) stop("fetch(plain = TRUE) did not give a plain vector")
  list(resident = x, fetched = fetch_altrep(s), plain = p, wrapper = wrap(x))
}

loadavg <- function() paste(strsplit(readLines("/proc/loadavg"), " ")[[1]][1:3], collapse = " ")
cat(sprintf("R %s, %s, %d CPUs; MATRIX %.0f MiB, VEC %.0f, ROWS %.0f, REPS %d; load average %s\n", getRversion(),
            R.version$platform, parallel::detectCores(), MATRIX / 2^20, VEC, ROWS, REPS, loadavg()))

## --- matrix -------------------------------------------------------------------
if (section("matrix")) {
nc <- 4096L
nr <- as.integer(MATRIX / 8 / nc)
m <- matrix(runif(nr * nc), nr, nc)
sm <- share(m)
M <- three(m, sm)
rows <- sort(sample.int(nr, 500))
cols <- sort(sample.int(nc, 32))
case("x[rows, ] (500 rows)", M, function(x) x[rows, ])
case("x[, cols] (32 columns)", M, function(x) x[, cols])
case("sum(x[i, ]) (one row, spec example)", M, function(x) sum(x[17L, ]))
case("colSums(x)", M, colSums)
rm(M); close(sm); rm(m, sm); invisible(gc())
}

## --- double vector ------------------------------------------------------------
if (section("vector")) {
v <- runif(VEC)
sv <- share(v)
V <- three(v, sv)
idx <- sample.int(length(v), 1e6)
a <- as.integer(length(v) / 3); b <- a + 1e6L
case("v[idx] (1e6 random indices)", V, function(x) x[idx])
case("v[a:b] (1e6 contiguous)", V, function(x) x[a:b])
case("v[-(1:10)] (negative)", V, function(x) x[-(1:10)])
case("v[v > 0.5] (logical)", V, function(x) x[x > 0.5])
case("for (i ...) s <- s + v[[i]] (1e6)", V, function(x) { s <- 0; for (i in 1:1000000) s <- s + x[[i]]; s })
case("sum(v)", V, sum)
case("range(v)", V, range)
case("which.max(v)", V, which.max)
case("v == 0.5", V, function(x) x == 0.5)
v2 <- V$resident + 0
case("identical(v, v2)", V, function(x) identical(x, v2))
case("which(v > 0.99)", V, function(x) which(x > 0.99))
case("sort(v)", V, sort)
mv <- matrix(v[1:(1e6)], ncol = 100)
case("%*% (1e4 x 100 by 100)", list(resident = mv, fetched = { s2 <- share(mv); fetch_altrep(s2) }, plain = fetch(s2, plain = TRUE),
                                     wrapper = wrap(mv)),
     function(x) x %*% rep(1, 100))
close(s2)
rm(V); close(sv); rm(v, sv); invisible(gc())
}

## --- data.frame ---------------------------------------------------------------
if (section("df")) {
df <- data.frame(v = runif(ROWS), i = sample.int(1000L, ROWS, replace = TRUE), s = keys,
                 f = factor(sample(letters, ROWS, replace = TRUE)),
                 d = as.Date("2020-01-01") + sample.int(1000L, ROWS, replace = TRUE),
                 t = as.POSIXct("2020-01-01", tz = "UTC") + runif(ROWS, 0, 1e8),
                 stringsAsFactors = FALSE)
sdf <- share(df)
D <- list(resident = df, fetched = fetch_altrep(sdf), plain = fetch(sdf, plain = TRUE), wrapper = wrap_df(df))
stopifnot(identical(D$fetched, df), identical(D$plain, df), is_plain(D$plain$v), !is_plain(D$fetched$v))
case("df[df$v > 0.5, ]", D, function(d) d[d$v > 0.5, ])
case("df[order(df$v)[1:1e5], ]", D, function(d) d[order(d$v)[1:1e5], ])
case("sum(df$s == k) (after first touch)", D, function(d) sum(d$s == "k0000042"), warm = TRUE)
case("sum(nchar(df$s)) (after first touch)", D, function(d) sum(nchar(d$s)), warm = TRUE)
case("match(df$s[1:1e4], df$s)", D, function(d) match(d$s[1:1e4], d$s), warm = TRUE)
case("df$s %in% df$s[1:100]", D, function(d) d$s %in% d$s[1:100], warm = TRUE)
case("paste(df$s, 'x')", D, function(d) paste(d$s, "x"), warm = TRUE)
case("order(df$s[1:1e5]) (locale collation)", D, function(d) order(d$s[1:1e5]), warm = TRUE)
case("unique(df$s)", D, function(d) unique(d$s), warm = TRUE)
case("factor(df$s)", D, function(d) factor(d$s), warm = TRUE)
case("grepl('^k00001', df$s)", D, function(d) grepl("^k00001", d$s), warm = TRUE)
case("table(df$f)", D, function(d) table(d$f))
case("split(df$v, df$f)", D, function(d) split(d$v, d$f))
case("tapply(df$v, df$f, sum)", D, function(d) tapply(d$v, d$f, sum))
case("aggregate(v ~ f, df, mean)", D, function(d) aggregate(v ~ f, d, mean))
case("df[df$d > as.Date('2021-06-01'), ] (Date)", D, function(d) d[d$d > as.Date("2021-06-01"), ])
case("range(df$t) (POSIXct)", D, function(d) range(d$t))
small <- df[1:1e4, c("i", "f")]
lk <- data.frame(i = 1:1000, w = runif(1000))
case("merge(df[1:1e4, ], lookup)", D, function(d) merge(d[1:1e4, c("i", "f")], lk, by = "i"))
rm(D); close(sdf); invisible(gc())
}

## --- first full pass over a character vector vs unserialize() -----------------
if (section("firstpass")) {
s_ser <- serialize(keys, NULL, xdr = FALSE)
sk <- share(keys)
fp <- function(kind) {
  if (kind == "resident") { t0 <- now(); y <- unserialize(s_ser); invisible(nchar(y)); return(now() - t0) }
  if (kind == "plain") { t0 <- now(); y <- fetch(sk, plain = TRUE); invisible(nchar(y)); return(now() - t0) }
  y <- fetch(sk); t0 <- now(); invisible(nchar(y)); now() - t0
}
kinds <- c("resident", "fetched", "plain")
tt <- sapply(1:REPS, function(r) sapply(if (r %% 2) kinds else rev(kinds), fp)[kinds])
med <- apply(tt, 1, median)
results[[length(results) + 1]] <- data.frame(case = "first pass: nchar(fetch(s)) vs unserialize()+nchar",
  resident = med[["resident"]], fetched = med[["fetched"]], wrapper = NA, plain = med[["plain"]],
  fetched_ratio = med[["fetched"]] / med[["resident"]], wrapper_ratio = NA,
  plain_ratio = med[["plain"]] / med[["resident"]])
cat(sprintf("%-44s unserialize %10s  fetched %10s (%.2fx)  fetch(plain = TRUE) %10s (%.2fx)\n",
            "first full pass (1e6 strings)", fmt_t(med[["resident"]]), fmt_t(med[["fetched"]]),
            med[["fetched"]] / med[["resident"]], fmt_t(med[["plain"]]), med[["plain"]] / med[["resident"]]))
d <- shard_diagnostics()
cat(sprintf("string cache: %.1f MiB for %.0f elements\n", d$string_cache_bytes / 2^20, d$string_cache_elements))
close(sk)
}

## --- huge pages: reads that ask for a writable pointer --------------------------
if (section("huge")) {
options(shard.huge_pages = TRUE)
hv <- runif(32 * 2^20 / 8)
hs <- share(hv)
hf <- fetch(hs)
page <- shared_info(hs)$page_size
if (!isTRUE(page >= 2^21)) {
  cat("SKIPPED huge-page section: the object got", page, "byte pages (no hugetlb pages free)\n")
} else {
  d0 <- shard_diagnostics()
  H <- list(resident = hv, fetched = hf, wrapper = wrap(hv))
  case("hugetlb: range(v)", H, range)
  case("hugetlb: which.max(v)", H, which.max)
  case("hugetlb: v == 0.5", H, function(x) x == 0.5)
  hv2 <- hv + 0
  case("hugetlb: identical(v, v2)", H, function(x) identical(x, hv2))
  d1 <- shard_diagnostics()
  cat(sprintf("hugetlb reads: copies %+.0f (%s bytes), read-only grants %+.0f\n", d1$copies - d0$copies,
              format(d1$copy_bytes - d0$copy_bytes, big.mark = ","), d1$readonly_grants - d0$readonly_grants))
}
rm(hf); close(hs); invisible(gc())
options(shard.huge_pages = FALSE)
}

## --- small objects: share() + fetch() + close() vs serialize() + unserialize() --
if (section("small")) {
# Twice: alone (the object's small-object region empties at every close: the
# allocator keeps it for the next share, `retain_empty_regions`; before, it
# was released and a new one created on every round trip) and with another
# small object live in the region (the usual state of a process that uses
# shard). The kept-region counters are printed with the rows.
x2 <- c(1, 2)
# SMALL_ROUNDS rounds (default REPS), each a bench::mark of both (5000
# iterations each at least, the order swapped every round), so a load spike on
# a shared machine lands on both sides; the row is the median over rounds of
# each side's median. Single rounds spread widely at load 5 (about 1.1-2.8x
# for one build), so the quartiles of the per-round ratios are printed with the
# row. Rounds after the first eight or so come out lower for both builds (R's
# heap has grown by then): more rounds lower the row, so compare runs made
# with the same SMALL_ROUNDS.
ROUNDS <- as.integer(Sys.getenv("SMALL_ROUNDS", REPS))
# SMALL_SIDES=shard (or serialize): time that side alone, without the other in
# the process, for absolute times between builds (the ratio is then NA). The
# serialize side's time moved with the shard build in the same process (a
# different heap), so absolute A/Bs of two builds use this.
SIDES <- strsplit(Sys.getenv("SMALL_SIDES", "shard,serialize"), ",")[[1]]
small_rt <- function(label) {
  sh <- se <- numeric(ROUNDS)
  for (i in seq_len(ROUNDS)) {
    shard_rt <- quote({ s <- share(x2); y <- fetch(s); close(s) })
    ser_rt <- quote(unserialize(serialize(x2, NULL, xdr = FALSE)))
    exprs <- if (i %% 2) list(shard = shard_rt, serialize = ser_rt) else list(serialize = ser_rt, shard = shard_rt)
    exprs <- exprs[names(exprs) %in% SIDES]
    b <- bench::mark(exprs = exprs, check = FALSE, min_iterations = 5000)
    m <- setNames(as.numeric(b$median), as.character(b$expression))
    sh[i] <- if ("shard" %in% names(m)) m[["shard"]] else NA
    se[i] <- if ("serialize" %in% names(m)) m[["serialize"]] else NA
  }
  r <- median(sh) / median(se)
  results[[length(results) + 1]] <<- data.frame(case = label, resident = median(se),
    fetched = median(sh), wrapper = NA, plain = NA, fetched_ratio = r, wrapper_ratio = NA,
    plain_ratio = NA)
  q <- quantile(sh / se, c(0.25, 0.75), names = FALSE, na.rm = TRUE)
  cat(sprintf("%-44s serialize %10s  shard %10s (%.2fx; per-round ratios: quartiles %.2f-%.2f, %d of %d rounds above 2x: %s)\n",
              label, fmt_t(median(se)), fmt_t(median(sh)), r, q[1], q[2], sum(sh / se > 2, na.rm = TRUE), ROUNDS,
              paste(sprintf("%.2f", sh / se), collapse = " ")))
}
d0 <- shard_diagnostics()
small_rt("share+fetch+close of c(1, 2), alone, vs serialize+unserialize")
d1 <- shard_diagnostics()
cat(sprintf("alone: regions created %+.0f, released %+.0f during the round trips\n",
            d1$regions_created - d0$regions_created, d1$regions_released - d0$regions_released))
keep <- share(c(3, 4))
small_rt("share+fetch+close of c(1, 2), region live, vs serialize+unserialize")
close(keep)
}

cat("load average at the end:", loadavg(), "\n")
out <- do.call(rbind, results)
dir.create("benches/r/results", showWarnings = FALSE)
write.csv(out, "benches/r/results/access.csv", row.names = FALSE)
cat("\n| operation | resident | fetched (ALTREP) / resident | plain / resident | wrapper / resident |\n|---|---|---|---|---|\n")
for (i in seq_len(nrow(out)))
  cat(sprintf("| %s | %s | %.2fx | %s | %s |\n", out$case[i], fmt_t(out$resident[i]), out$fetched_ratio[i],
              if (is.na(out$plain_ratio[i])) "-" else sprintf("%.2fx", out$plain_ratio[i]),
              if (is.na(out$wrapper_ratio[i])) "-" else sprintf("%.2fx", out$wrapper_ratio[i])))
