/*
 * Small queries of the store that have no better home: access-pattern hints
 * (segment_advise(), shared_advise(): madvise(2) on the pages of one attached
 * object through shard_view_advise; only this process's mapping is affected and
 * the shared bytes never change), and the per-user directory (shard_user_dir).
 */
#include "shard_int.h"

/* holder: the view holder from C_attach; code: 0 normal, 1 random,
 * 2 sequential, 3 willneed, 4 dontneed. TRUE when the kernel took the hint. */
SEXP C_view_advise(SEXP holder, SEXP code) {
    shard_view *v = holder_view(holder);
    if (!v) Rf_error("shard: released view");
    if (TYPEOF(code) != INTSXP || XLENGTH(code) != 1 || INTEGER(code)[0] == NA_INTEGER)
        Rf_error("shard: the advice code must be one integer");
    if (shard_view_advise(v, INTEGER(code)[0]) != SHARD_OK) rust_error("advise");
    return Rf_ScalarLogical(TRUE);
}

/* The per-user directory for names and mmap backing files, as the store
 * computes it (node-scoped on shared filesystems): R never rebuilds it. */
SEXP C_user_dir(void) {
    char buf[4096];
    if (shard_user_dir(buf, sizeof buf) != SHARD_OK) rust_error("per-user directory");
    return Rf_mkString(buf);
}
