# share(x, deep = TRUE) + fetch(): the iterative walk (R/deep.R now) against the
# recursive walk it replaced, in the same process and run.
#
#   Rscript benches/r/deep_walk.R [old-git-revision]   (default d1110aa)
#
# The old walk is R code only: its deep.R is read from git and its functions are
# put in place of the new ones in the loaded namespace for the "old" repeats (the
# C and Rust code is the same for both). Repeats alternate old/new; medians.

suppressPackageStartupMessages(library(shard))
rev <- commandArgs(TRUE)[1]
if (is.na(rev)) rev <- "d1110aa"
ns <- asNamespace("shard")
names_deep <- c("share_deep", "deep_walk", "deep_env", "run_hook", "hook_paths", "deep_rebuild",
                "fetch.shard_deep_shared", "deep_log", "deep_fail", "deep_bytes", "deep_ref", "is.vector_like",
                "special_env")
load_impl <- function(src) {
  e <- new.env(parent = ns)
  eval(parse(text = src), envir = e)
  mget(intersect(names_deep, ls(e, all.names = TRUE)), envir = e)
}
old_src <- system2("git", c("show", paste0(rev, ":r-ext/R/deep.R")), stdout = TRUE)
impl <- list(new = mget(names_deep, envir = ns), old = load_impl(old_src))
use <- function(which) {
  for (nm in names(impl[[which]])) {
    unlockBinding(nm, ns)
    assign(nm, impl[[which]][[nm]], envir = ns)
  }
  registerS3method("fetch", "shard_deep_shared", impl[[which]][["fetch.shard_deep_shared"]], envir = ns)
}

nest <- function(n) { x <- list(rnorm(10)); for (i in seq_len(n)) x <- list(x, i); x }
cases <- list(
  "list of 20000 small vectors (kept)" = list(x = lapply(1:20000, function(i) c(i, i)), min_bytes = 1e6),
  "list of 200 vectors of 80 KB (shared)" = list(x = lapply(1:200, function(i) rnorm(1e4)), min_bytes = 1000),
  "data.frame, 50 columns x 1e5 rows" = list(x = as.data.frame(matrix(rnorm(5e6), ncol = 50)), min_bytes = 1000),
  "list nested 400 deep" = list(x = nest(400), min_bytes = 1e6)
)
reps <- 7L
res <- list()
for (nm in names(cases)) {
  cs <- cases[[nm]]
  t <- list(old = numeric(), new = numeric())
  for (r in seq_len(reps)) for (which in c("old", "new")) {
    use(which)
    gc(FALSE)
    t0 <- proc.time()[["elapsed"]]
    s <- share(cs$x, deep = TRUE, min_bytes = cs$min_bytes)
    y <- fetch(s)
    t[[which]] <- c(t[[which]], proc.time()[["elapsed"]] - t0)
    stopifnot(identical(length(y), length(cs$x)))
    close(s)
  }
  res[[nm]] <- data.frame(case = nm, old_ms = 1000 * median(t$old), new_ms = 1000 * median(t$new),
                          ratio_new_old = median(t$new) / median(t$old))
}
use("new")
out <- do.call(rbind, res)
rownames(out) <- NULL
print(out, digits = 3)
