# Syscall fault injection with strace: in a running R session, the k-th call of one
# system call made by shard (memfd_create, ftruncate, fallocate, mmap, munmap,
# fcntl [F_ADD_SEALS], openat, fchmod, unlink, getrandom, ...) fails with a chosen
# errno, or the process is SIGKILLed there ("kill exactly before sealing").
# After each: the failure is an R error (or the step succeeded), the session keeps
# working, nothing leaks (lib/inject-child.R checks), and for kills, nothing of the
# dead process is left after shard_sweep().
#   Rscript reliability/inject.R [K_MAX]     (root or ptrace rights; strace >= 5.3)
suppressMessages({ library(shard); library(processx) })
kmax <- as.integer(commandArgs(TRUE)[1]); if (is.na(kmax)) kmax <- 4L
if (!nzchar(Sys.which("strace"))) { cat("inject: SKIPPED: strace not installed\n"); quit(status = 0) }
here <- local({ a <- grep("^--file=", commandArgs(FALSE), value = TRUE); dirname(normalizePath(sub("^--file=", "", a[[1]]))) })
rscript <- file.path(R.home("bin"), "Rscript")
tmpbase <- tempfile("shard-inject-"); dir.create(tmpbase); Sys.setenv(SHARD_TMPDIR = tmpbase)
uid <- as.integer(system("id -u", intern = TRUE))
faults <- list(
  c("memfd_create", "EMFILE"), c("memfd_create", "ENOMEM"), c("ftruncate", "ENOSPC"), c("fallocate", "ENOSPC"),
  c("mmap", "ENOMEM"), c("munmap", "ENOMEM"), c("fcntl", "EBUSY"), c("fcntl", "EPERM"), c("openat", "EMFILE"),
  c("openat", "EACCES"), c("newfstatat", "EIO"), c("fstat", "EIO"), c("statx", "EIO"), c("fchmod", "EPERM"),
  c("unlink", "EIO"), c("getrandom", "EIO"), c("mkdir", "EACCES"), c("link", "EIO"), c("linkat", "EIO"),
  c("pread64", "EIO"), c("read", "EIO"), c("madvise", "EINVAL"), c("mbind", "EIO"), c("getdents64", "EIO"),
  c("fcntl", "KILL"), c("memfd_create", "KILL"), c("munmap", "KILL"), c("ftruncate", "KILL"), c("fchmod", "KILL"))
runs <- 0L; findings <- character(); notes <- character(); clean_errors <- 0L; injected_ok <- 0L
for (fl in faults) for (k in seq_len(kmax)) {
  sc <- fl[[1]]; what <- fl[[2]]; kill <- what == "KILL"
  d <- tempfile("inj-", tmpdir = tmpbase); dir.create(d)
  ch <- process$new(rscript, c(file.path(here, "lib", "inject-child.R"), d), stdout = file.path(d, "out"), stderr = "2>&1",
                    env = c("current", SHARD_TMPDIR = tmpbase))
  t0 <- Sys.time(); while (!file.exists(file.path(d, "pid")) && ch$is_alive() && Sys.time() - t0 < 30) Sys.sleep(0.01)
  pid <- ch$get_pid()
  inj <- if (kill) sprintf("%s:signal=KILL:when=%d", sc, k) else sprintf("%s:error=%s:when=%d", sc, what, k)
  st <- process$new("strace", c("-f", "-qq", "-p", pid, "-e", paste0("trace=", sc), "-e", paste0("inject=", inj),
                                "-o", file.path(d, "strace.txt")), stderr = file.path(d, "strace.err"))
  Sys.sleep(0.4)   # attached (strace -p attaches synchronously at start)
  file.create(file.path(d, "go"))
  t0 <- Sys.time(); while (!file.exists(file.path(d, "scenario")) && ch$is_alive() && Sys.time() - t0 < 60) Sys.sleep(0.01)
  st$signal(tools::SIGTERM); st$wait(5000); if (st$is_alive()) st$kill()
  file.create(file.path(d, "verify"))
  ch$wait(60000)
  runs <- runs + 1L
  trace <- if (file.exists(file.path(d, "strace.txt"))) readLines(file.path(d, "strace.txt")) else character()
  fired <- any(grepl("INJECTED|\\+\\+\\+ killed by SIGKILL", trace))
  label <- sprintf("%s %s #%d", sc, what, k)
  if (kill) {
    if (ch$is_alive()) { ch$kill(); ch$wait() }
    shard_sweep()
    pat <- sprintf("^shard-%d-%d-", uid, pid)
    left <- c(grep(pat, list.files("/dev/shm"), value = TRUE), grep(pat, list.files(file.path(tmpbase, paste0("shard-", uid))), value = TRUE),
              grep(sprintf("^(inject-%d|\\.tmp-%d-)", pid, pid), list.files(file.path(tmpbase, paste0("shard-", uid), "names"), all.files = TRUE), value = TRUE))
    if (length(left)) findings <- c(findings, paste(label, "left after sweep:", paste(left, collapse = ",")))
    if (fired) injected_ok <- injected_ok + 1L
  } else {
    res <- file.path(d, "result.rds")
    if (!file.exists(res)) {
      findings <- c(findings, sprintf("%s: child died (exit %s): %s", label, format(ch$get_exit_status()),
                                      paste(utils::tail(readLines(file.path(d, "out")), 5), collapse = " | ")))
    } else {
      r <- readRDS(res)
      # A failed munmap leaves that mapping in place by definition (the kernel did
      # not unmap it): reported, not counted as a leak.
      if (sc == "munmap") { notes <- c(notes, paste0(label, ": ", r$problems)); r$problems <- character() }
      if (length(r$problems)) findings <- c(findings, paste0(label, ": ", r$problems))
      clean_errors <- clean_errors + length(r$errors)
      if (fired) injected_ok <- injected_ok + 1L
      if (length(r$errors) && Sys.getenv("INJECT_VERBOSE") == "1") cat(label, "->", r$errors, sep = "\n  ")
    }
  }
  unlink(d, recursive = TRUE)
}
invisible(shard_sweep()); unlink(tmpbase, recursive = TRUE)
cat(sprintf("inject: %d runs (%d with the fault fired), %d clean R errors, %d findings\n", runs, injected_ok, clean_errors, length(findings)))
if (length(notes)) cat(paste0("  note ", notes, "\n"), sep = "")
if (length(findings)) { cat(paste0("  FINDING ", findings, "\n"), sep = ""); quit(status = 1) }
cat("inject: every injected fault gave a value or a clean R error; nothing leaked\n")
