# The pool's only contact with `parallel`'s internals: how a message reaches a
# worker and how its answer comes back.
#
# Workers are ordinary `parallel` cluster nodes started with parallel's exported
# makePSOCKcluster() / makeForkCluster(); they run parallel's own worker loop
# (parallel:::workLoop), which reads one message at a time from its socket:
#
#   list(type = "EXEC", data = list(fun = , args = , return = TRUE, tag = ), tag = )
#     -> runs do.call(fun, args) and answers
#   list(type = "VALUE", value = , success = , time = <proc.time diff>, tag = data$tag)
#   list(type = "DONE", ...) -> closes its socket and exits
#
# each message one R serialization on the node's socket (`node$con`), with
# `xdr = FALSE` for nodes of class "SOCK0node" (makePSOCKcluster(useXDR = FALSE),
# fork nodes) and XDR otherwise. That is what parallel's unexported sendCall(),
# recvData() and postNode() do; `parallel` exports no function that sends a call
# to one node without waiting for its answer (clusterCall() waits for every
# node), and dynamic load balancing needs exactly that.
#
# Why we write the messages ourselves instead of calling
# getFromNamespace("sendCall", "parallel"): the message layout above is the
# wire protocol between two parts of the *same* `parallel` (master side and
# worker loop), unchanged since `snow`, and a change to it would have to keep
# parallel's own workers answering; an unexported function's name or signature
# can change with no such constraint. Writing the serialization here also gives
# the exact bytes of each message (pool_status() reports bytes sent) instead of
# an estimate. recvData() is no more than unserialize(node$con) for socket nodes,
# so the answer is read the same way. If parallel ever changes the protocol,
# transport_recv() fails loudly on the first answer ("not a VALUE message")
# rather than misreading it.
#
# Nothing else in the package touches node internals: the rest of the pool sees
# nodes only through the functions below.

# Starts `k` nodes of `type` ("psock" or "fork"); the returned cluster's nodes
# have not run anything yet. PSOCK workers find this package through R_LIBS
# (the caller's library paths).
transport_start <- function(type, k, libs) {
  if (type == "fork") return(parallel::makeForkCluster(k))
  old <- Sys.getenv("R_LIBS", unset = NA)
  Sys.setenv(R_LIBS = paste(libs, collapse = .Platform$path.sep))
  on.exit(if (is.na(old)) Sys.unsetenv("R_LIBS") else Sys.setenv(R_LIBS = old))
  parallel::makePSOCKcluster(k, useXDR = FALSE)
}

# Runs fun(...) on every node of a cluster and waits (parallel's exported API).
transport_call_all <- function(cl, fun, ...) parallel::clusterCall(cl, fun, ...)

# The node's socket connection.
transport_con <- function(node) node$con

transport_xdr <- function(node) !inherits(node, "SOCK0node")

# Sends do.call(fun, args) to one node without waiting for the answer; returns
# the bytes written. Errors if the socket is gone.
transport_send <- function(node, fun, args, tag) transport_write(node, transport_encode(node, fun, args, tag))

# The same in two steps: the message's bytes (an error here is the message's,
# e.g. something that cannot be serialized) and writing them (an error here is
# the socket's: the worker is gone). Returns the bytes written.
transport_encode <- function(node, fun, args, tag) {
  serialize(list(type = "EXEC", data = list(fun = fun, args = args, return = TRUE, tag = tag), tag = NULL), NULL,
            xdr = transport_xdr(node))
}

transport_write <- function(node, raw) {
  writeBin(raw, node$con)
  length(raw)
}

# Reads the next answer of one node (blocks): list(tag, value, success, time).
# Errors when the socket hits end of file (the worker is gone).
transport_recv <- function(node) {
  msg <- unserialize(node$con)
  if (!is.list(msg) || !identical(msg$type, "VALUE"))
    stop("shard: a pool worker sent a message that is not parallel's VALUE answer ",
         "(has the `parallel` package's protocol changed?)", call. = FALSE)
  list(tag = msg$tag, value = msg$value, success = msg$success,
       time = if (length(msg$time) >= 3L) msg$time[[3L]] else NA_real_)
}

# Which of `nodes` have something to read (an answer, or end of file) within
# `timeout` seconds.
transport_ready <- function(nodes, timeout) {
  socketSelect(lapply(nodes, transport_con), FALSE, timeout = timeout)
}

# The same for the nodes' connections (transport_con() of each, kept by the
# pool in pool$cons: the scheduler selects on them once per message).
transport_ready_cons <- function(cons, timeout) socketSelect(cons, FALSE, timeout = timeout)

# Asks a node to exit (parallel's DONE message) and closes its socket.
transport_stop <- function(node) {
  if (!transport_open(node)) return(invisible())
  try(serialize(list(type = "DONE", data = NULL, tag = NULL), node$con, xdr = transport_xdr(node)),
      silent = TRUE)
  transport_close(node)
}

# Whether the node's socket is still the connection it was made with. R numbers
# connections by slot and gives a closed connection's number to the next one
# opened, and close() of a stale connection object closes whatever holds that
# number now: a pool that closed a lost worker's socket and started a new worker
# would close the new worker's socket when closing the old node again (both
# slots then shared one worker and the other exited: test-pool.R "interrupted").
# The object's conn_id names the connection it was made for.
transport_open <- function(node) {
  con <- node$con
  cur <- tryCatch(getConnection(as.integer(con)), error = function(e) NULL)
  !is.null(cur) && identical(attr(cur, "conn_id"), attr(con, "conn_id"))
}

transport_close <- function(node) if (transport_open(node)) try(close(node$con), silent = TRUE)

# Bytes of an EXEC message around `args` (for size warnings before anything is sent).
transport_message_bytes <- function(fun, args) {
  length(serialize(list(type = "EXEC", data = list(fun = fun, args = args, return = TRUE, tag = "shard:0:0:0"),
                        tag = NULL), NULL, xdr = FALSE))
}
