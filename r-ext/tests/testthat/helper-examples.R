# Runs a reference page's example as example() would, for the reference-example
# test files (test-ref-examples.R, test-runtime-reference-examples.R,
# test-pool-reference-examples.R): each top-level expression in turn, in a fresh
# environment whose parent is the global one, visible values printed. `code` is
# the example's text copied from its page, or the example itself as a braced
# block (`run_example({ ... })`, never evaluated in the caller). Returns the
# environment, the value of each top-level expression (NULL where it had none)
# and everything printed; an error in the example is an error of the call.
run_example <- function(code) {
  # Look at the argument unevaluated: forcing a block would run the example
  # here, in the caller's environment, outside capture.output().
  block <- substitute(code)
  exprs <- if (is.call(block) && identical(block[[1L]], as.name("{"))) {
    as.list(block)[-1L]
  } else {
    parse(text = code, keep.source = FALSE)
  }
  env <- new.env(parent = globalenv())
  values <- vector("list", length(exprs))
  out <- utils::capture.output({
    for (i in seq_along(exprs)) {
      r <- withVisible(eval(exprs[[i]], env))
      if (r$visible) print(r$value)
      if (!is.null(r$value)) values[i] <- list(r$value)
    }
  })
  list(env = env, values = values, output = out)
}

# No current pool around an example (the pool_get() example expects none, and a
# pool an example leaves is stopped when the calling test ends).
ref_no_pool <- function(env = parent.frame()) {
  if (!is.null(p <- pool_get())) pool_stop(p)
  withr::defer(if (!is.null(p <- pool_get())) pool_stop(p), envir = env)
}
