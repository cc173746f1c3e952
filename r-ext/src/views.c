/*
 * Zero-copy views of shared vectors (R/views.R): a contiguous element range of
 * a shard vector is itself a shard vector over the same shared bytes, built by
 * make_vec() (vec.c) at a byte offset. O(1): no element is read or copied. A
 * block of whole columns of a column-major matrix is such a range.
 */
#include <math.h>
#include "shard_int.h"

static int is_shard_vec(SEXP x) {
    return ALTREP(x) && (R_altrep_inherits(x, cls_real) || R_altrep_inherits(x, cls_int) ||
                         R_altrep_inherits(x, cls_lgl) || R_altrep_inherits(x, cls_raw) ||
                         R_altrep_inherits(x, cls_cplx));
}

/* TRUE when x is a (non-character) shard vector whose bytes are the shared ones
 * (not a private copy R made after a write). */
SEXP C_is_shard_vector(SEXP x) {
    if (plain_lookup(x, NULL)) return Rf_ScalarLogical(!ALTREP(x)); /* plain (mapped.c); not R's wrapper */
    if (!is_shard_vec(x)) return Rf_ScalarLogical(FALSE);
    shard_vec *s = vec_state(x);
    return Rf_ScalarLogical(s->priv_data == NULL && s->priv == NULL);
}

/* Elements start .. start+n-1 (0-based start) of shard vector x, as a new shard
 * vector over the same shared bytes (not mutable: R copies before writing). */
SEXP C_view_range(SEXP x, SEXP start_, SEXP n_) {
    plain_info pi;
    if (!ALTREP(x) && plain_lookup(x, &pi)) {
        double st = Rf_asReal(start_), n = Rf_asReal(n_);
        uint64_t es = elt_size(pi.kind);
        if (!(st >= 0) || !(n >= 0) || st + n > (double) XLENGTH(x))
            Rf_error("shard: view of %.0f elements from %.0f is outside the vector (length %.0f)", n, st + 1,
                     (double) XLENGTH(x));
        return plain_subview(x, pi.kind, (uint64_t) st * es, (uint64_t) n * es, (R_xlen_t) n);
    }
    if (!is_shard_vec(x))
        Rf_error("shard: a view needs a shared vector (from share() then fetch(), or a shared matrix); got a %s",
                 ALTREP(x) ? "vector that is not shared" : Rf_type2char(TYPEOF(x)));
    shard_vec *s = vec_state(x);
    check_open_vec(s);
    if (s->priv_data || s->priv)
        Rf_error("shard: this vector was modified in this process (it holds a private copy); views read the shared bytes only");
    double st = Rf_asReal(start_), n = Rf_asReal(n_);
    if (!(st >= 0) || !(n >= 0) || st + n > (double) s->length)
        Rf_error("shard: view of %.0f elements from %.0f is outside the vector (length %.0f)", n, st + 1,
                 (double) s->length);
    uint64_t es = elt_size(s->kind);
    SEXP r = PROTECT(make_vec(HOLDER(x), HANDLE(x), s->kind, s->byte_offset + (uint64_t) st * es,
                              (uint64_t) n * es, (R_xlen_t) n));
    MARK_NOT_MUTABLE(r);
    UNPROTECT(1);
    return r;
}

/* A typed view of the bytes of shard vector x (usually a segment's raw vector):
 * `n` elements of `type` ("double", "integer", "logical" or "raw") from byte
 * `byte_off` of x, a new shard vector over the same shared bytes (O(1), no copy;
 * it sees later writes to a writable segment). shared_vector() (R) checks that
 * byte_off is a multiple of the element size, so the data stays aligned. */
SEXP C_view_typed(SEXP x, SEXP byte_off_, SEXP n_, SEXP type_) {
    if (!is_shard_vec(x))
        Rf_error("shard: a typed view needs a shared vector (a segment's bytes); got a %s",
                 ALTREP(x) ? "vector that is not shared" : Rf_type2char(TYPEOF(x)));
    shard_vec *s = vec_state(x);
    check_open_vec(s);
    if (s->priv_data || s->priv)
        Rf_error("shard: this vector was modified in this process (it holds a private copy); views read the shared bytes only");
    const char *t = CHAR(STRING_ELT(type_, 0));
    int kind = !strcmp(t, "double") ? K_F64 : !strcmp(t, "integer") ? K_I32 : !strcmp(t, "logical") ? K_LGL
             : !strcmp(t, "raw") ? K_RAW : -1;
    if (kind < 0) Rf_error("shard: a typed view is double, integer, logical or raw, not \"%s\"", t);
    uint64_t es = elt_size(kind);
    double off = Rf_asReal(byte_off_), n = Rf_asReal(n_);
    if (!(off >= 0) || !(n >= 0) || off + n * (double) es > (double) s->byte_len || fmod(off, (double) es) != 0)
        Rf_error("shard: a view of %.0f %s values at byte %.0f does not fit the %.0f bytes (or is not aligned)",
                 n, t, off, (double) s->byte_len);
    SEXP r = PROTECT(make_vec(HOLDER(x), HANDLE(x), kind, s->byte_offset + (uint64_t) off, (uint64_t) n * es,
                              (R_xlen_t) n));
    MARK_NOT_MUTABLE(r);
    UNPROTECT(1);
    return r;
}

/* Where a shard vector's bytes are: list(byte_offset, byte_len) or NULL. */
SEXP C_view_span(SEXP x) {
    plain_info pi;
    if (!ALTREP(x) && plain_lookup(x, &pi)) {
        const char *nm[] = {"byte_offset", "byte_len", ""};
        SEXP r = PROTECT(Rf_mkNamed(VECSXP, nm));
        SET_VECTOR_ELT(r, 0, Rf_ScalarReal((double) pi.byte_offset));
        SET_VECTOR_ELT(r, 1, Rf_ScalarReal((double) pi.byte_len));
        UNPROTECT(1);
        return r;
    }
    if (!is_shard_vec(x)) return R_NilValue;
    shard_vec *s = vec_state(x);
    const char *names[] = {"byte_offset", "byte_len", ""};
    SEXP r = PROTECT(Rf_mkNamed(VECSXP, names));
    SET_VECTOR_ELT(r, 0, Rf_ScalarReal((double) s->byte_offset));
    SET_VECTOR_ELT(r, 1, Rf_ScalarReal((double) s->byte_len));
    UNPROTECT(1);
    return r;
}
