//! shard object store (work in progress).
