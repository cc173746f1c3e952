library(testthat)
library(shard)
test_check("shard")
