# processx (loaded through callr by some tests) swallows SIGCHLD unless told to pass
# it on; parallel then never reaps its forked children and R waits at exit.
# processx reads this only when it loads, so it must be set first.
Sys.setenv(PROCESSX_NOTIFY_OLD_SIGCHLD = "true")
library(testthat)
library(shard)
test_check("shard")
