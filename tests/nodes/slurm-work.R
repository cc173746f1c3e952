# A task of tests/nodes/slurm-job.sh: fetch this node's copy and report what it mapped.
s <- readRDS(file.path(Sys.getenv("SHARE_DIR"), "s.rds"))
v <- shard::fetch(s, wait = 60)
m <- grep("/memfd:", readLines("/proc/self/maps"), value = TRUE)
cat(sprintf("TASK host=%s ok=%s inodes=%s\n", Sys.info()[["nodename"]],
            identical(v, readRDS(Sys.getenv("BIG"))),
            paste(unique(vapply(strsplit(m, "[[:space:]]+"), function(f) f[5], "")), collapse = ",")))
