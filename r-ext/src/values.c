/*
 * Helpers on R values for the R code (attributes as a pairlist, materialize(),
 * object identity, list element replacement for deep sharing) and the low-level
 * segments (create, write, read, protect).
 */
#include "shard_int.h"

/* Attributes travel as the serialized ATTRIB pairlist, so compact row names and
 * every internal form survive exactly. (ATTRIB is not API from R 4.5 and R 4.5
 * has no replacement that returns the pairlist: a follow-up.) */
SEXP C_get_attrib(SEXP x) { return ATTRIB(x); }

/* Restores the pairlist on a fresh vector, one attribute at a time through
 * setAttrib() (SET_ATTRIB/SET_OBJECT are not API from R 4.5): in pairlist order,
 * so dim comes before dimnames, and compact row names c(NA, -n) stay compact
 * (R's row.names setter keeps that form). setAttrib sets the object bit. */
SEXP C_set_attrib(SEXP x, SEXP attrs, SEXP strict) {
    if (attrs != R_NilValue && TYPEOF(attrs) != LISTSXP) Rf_error("shard: corrupt attributes");
    for (SEXP a = attrs; a != R_NilValue; a = CDR(a)) {
        if (TYPEOF(TAG(a)) != SYMSXP) Rf_error("shard: corrupt attributes");
        Rf_setAttrib(x, TAG(a), CAR(a));
    }
    if (Rf_asLogical(strict) == TRUE) MARK_NOT_MUTABLE(x);
    return x;
}

/* An ordinary R copy of a shard vector (attributes included). */
SEXP C_materialize(SEXP x) {
    if (C_vector_handle(x) == R_NilValue) return x;
    R_xlen_t n = XLENGTH(x);
    SEXP r = PROTECT(Rf_allocVector(TYPEOF(x), n));
    if (TYPEOF(x) == STRSXP) {
        for (R_xlen_t i = 0; i < n; i++) SET_STRING_ELT(r, i, STRING_ELT(x, i));
    } else if (n > 0) {
        const void *src = DATAPTR_RO(x);
        memcpy(vec_ptr(r), src, (size_t) n * (TYPEOF(x) == REALSXP ? 8 : TYPEOF(x) == CPLXSXP ? 16 :
                                               TYPEOF(x) == RAWSXP ? 1 : 4));
    }
    DUPLICATE_ATTRIB(r, x);
    UNPROTECT(1);
    return r;
}

/* Identity of an R object (its address), for alias detection in deep sharing. */
SEXP C_address(SEXP x) {
    char buf[32];
    snprintf(buf, sizeof buf, "%p", (void *) x);
    return Rf_mkString(buf);
}

/* A shallow copy of list x (attributes kept) with elements idx (1-based) replaced. */
SEXP C_list_replace(SEXP x, SEXP idx, SEXP vals) {
    if (TYPEOF(x) != VECSXP || TYPEOF(idx) != INTSXP || TYPEOF(vals) != VECSXP || XLENGTH(idx) != XLENGTH(vals))
        Rf_error("shard: internal: bad arguments to list_replace");
    SEXP r = PROTECT(Rf_shallow_duplicate(x));
    for (R_xlen_t j = 0; j < XLENGTH(idx); j++) {
        int i = INTEGER(idx)[j];
        if (i < 1 || i > XLENGTH(r)) Rf_error("shard: internal: index out of range");
        SET_VECTOR_ELT(r, i - 1, VECTOR_ELT(vals, j));
    }
    UNPROTECT(1);
    return r;
}

SEXP C_segment_create(SEXP size, SEXP opts) {
    double sz = Rf_asReal(size);
    if (!(sz >= 1) || sz > 9.0e15) Rf_error("shard: `size` must be a positive number of bytes");
    shard_share_opts o;
    parse_opts(opts, &o);
    SEXP h = PROTECT(Rf_allocVector(RAWSXP, SHARD_HANDLE_LEN));
    int rc = shard_segment_create(&o, (uint64_t) sz, RAW(h));
    if (rc != SHARD_OK) rust_error("segment_create");
    UNPROTECT(1);
    return h;
}

static size_t type_elt_size(SEXPTYPE t) {
    switch (t) {
    case REALSXP: return 8;
    case INTSXP: case LGLSXP: return 4;
    case RAWSXP: return 1;
    case CPLXSXP: return 16;
    default: return 0;
    }
}

/* Writes the bytes of atomic vector `data` at byte `offset` of a writable object. */
SEXP C_segment_write(SEXP handle, SEXP offset, SEXP data) {
    if (TYPEOF(handle) != RAWSXP) Rf_error("shard: a handle must be a raw vector");
    size_t es = type_elt_size(TYPEOF(data));
    if (es == 0) Rf_error("shard: `data` must be a raw, logical, integer, double or complex vector");
    uint64_t n = (uint64_t) XLENGTH(data) * es;
    const void *src = n ? DATAPTR_RO(data) : NULL;
    int rc = shard_segment_write(RAW(handle), (uint64_t) XLENGTH(handle), (uint64_t) Rf_asReal(offset), src, n);
    if (rc != SHARD_OK) rust_error("segment_write");
    return R_NilValue;
}

/* Copies `n` elements of `type` from byte `offset` of an attached object. */
SEXP C_segment_read(SEXP holder, SEXP offset, SEXP n, SEXP type) {
    shard_view *v = holder_view(holder);
    if (!v) Rf_error("shard: released view");
    shard_view_info i;
    if (shard_view_info_get(v, &i) != SHARD_OK) rust_error("view info");
    if (i.closed) Rf_error("shard: the segment has been closed");
    SEXPTYPE t = Rf_str2type(CHAR(STRING_ELT(type, 0)));
    size_t es = type_elt_size(t);
    if (es == 0) Rf_error("shard: `type` must be one of \"raw\", \"logical\", \"integer\", \"double\", \"complex\"");
    double off = Rf_asReal(offset), cnt = Rf_asReal(n);
    if (off < 0 || cnt < 0 || off + cnt * (double) es > (double) i.data_len)
        Rf_error("shard: reading %.0f %s values at offset %.0f overflows a segment of %.0f bytes",
                 cnt, CHAR(STRING_ELT(type, 0)), off, (double) i.data_len);
    SEXP r = PROTECT(Rf_allocVector(t, (R_xlen_t) cnt));
    if (cnt > 0) memcpy(vec_ptr(r), shard_view_data(v) + (uint64_t) off, (size_t) cnt * es);
    UNPROTECT(1);
    return r;
}

SEXP C_protect(SEXP handle) {
    if (TYPEOF(handle) != RAWSXP) Rf_error("shard: a handle must be a raw vector");
    if (shard_protect(RAW(handle), (uint64_t) XLENGTH(handle)) != SHARD_OK) rust_error("segment_protect");
    return R_NilValue;
}
