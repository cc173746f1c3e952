# Error reporting of pool_lapply(): failed elements become conditions that name
# the element (index and name), the worker and its pid, and carry the worker's
# message; a call that fails says which element failed first and lists the others.
#
# The scheduler (pool_scheduler.R) only records what happened to each task; the
# functions here turn that into what the caller sees: task_error() conditions
# for on_error = "return", and pool_raise_failures() at the end of a call.

task_error <- function(i, nms, message, worker, pid, call = NULL) {
  structure(class = c("shard_task_error", "error", "condition"),
            list(message = sprintf("element %s: %s", element_label(i, nms), message), call = NULL,
                 index = i, worker = worker, pid = pid, worker_message = message, worker_call = call))
}

element_label <- function(i, nms) {
  if (length(i) > 1) return(range_label(i))
  if (!is.null(nms) && !is.na(nms[i]) && nzchar(nms[i])) sprintf("%d (\"%s\")", i, nms[i]) else as.character(i)
}

range_label <- function(i) {
  i <- sort(i)
  if (length(i) > 1 && all(diff(i) == 1L)) return(sprintf("%d..%d", i[1], i[length(i)]))
  if (length(i) > 10) return(paste0(paste(i[1:10], collapse = ", "), ", ..."))
  paste(i, collapse = ", ")
}

# Warnings FUN raised on the workers come back as warnings naming the element.
pool_report_warnings <- function(warnings_seen, nms) {
  for (wn in warnings_seen)
    warning(sprintf("pool_lapply(): element %s (worker %d): %s", element_label(wn$index, nms), wn$worker, wn$message),
            call. = FALSE)
}

# At the end of a call: with on_error = "stop", the first worker death (class
# shard_worker_died) or the first element error (class shard_task_error) is
# raised; with "return", a warning lists the failed elements.
#   errors:          element index -> list(index, worker, pid, message, call)
#   worker_failures: list(task, pids) for tasks that lost their worker too often
pool_raise_failures <- function(errors, worker_failures, chunks, n, nms, on_error, retries) {
  if (length(worker_failures) && on_error == "stop") {
    f <- worker_failures[[1]]
    stop(structure(class = c("shard_worker_died", "shard_pool_error", "error", "condition"), list(
      message = sprintf(paste0("pool_lapply(): the worker running element%s %s died %d time%s (pid%s %s)%s; ",
                               "the element%s could not be computed"),
                        if (length(chunks[[f$task]]) > 1) "s" else "", element_label(chunks[[f$task]], nms),
                        length(f$pids), if (length(f$pids) > 1) "s" else "", if (length(f$pids) > 1) "s" else "",
                        paste(f$pids, collapse = ", "),
                        if (retries > 0) sprintf(", also when run again (%d retr%s)", retries,
                                                 if (retries > 1) "ies" else "y") else "",
                        if (length(chunks[[f$task]]) > 1) "s" else ""),
      call = NULL, index = chunks[[f$task]], pids = f$pids)))
  }
  if (length(errors) && on_error == "stop") {
    first <- errors[[order(vapply(errors, `[[`, 0, "index"))[1]]]
    more <- setdiff(sort(vapply(errors, `[[`, 0, "index")), first$index)
    stop(structure(class = c("shard_task_error", "shard_pool_error", "error", "condition"), list(
      message = sprintf("pool_lapply(): FUN failed on element %s of %d (worker %d, pid %d)%s: %s%s",
                        element_label(first$index, nms), n, first$worker, first$pid,
                        if (!is.null(first$call)) paste0(" in ", first$call) else "", first$message,
                        if (length(more)) sprintf(" [and %d more failed element%s: %s]", length(more),
                                                  if (length(more) > 1) "s" else "", range_label(more)) else ""),
      call = NULL, index = first$index, worker = first$worker, pid = first$pid,
      worker_message = first$message, failed = sort(c(first$index, more)))))
  }
  if (length(errors) || length(worker_failures)) {
    bad <- sort(unique(c(vapply(errors, `[[`, 0, "index"),
                         unlist(lapply(worker_failures, function(f) chunks[[f$task]])))))
    warning(sprintf("pool_lapply(): %d of %d elements failed (%s); their results are shard_task_error conditions",
                    length(bad), n, range_label(bad)), call. = FALSE)
  }
  invisible()
}
