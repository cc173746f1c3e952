share_deep <- function(x, backing, readonly, name, min_bytes, cycle, mode) {
  stop("shard: deep = TRUE is not implemented yet", call. = FALSE)
}
