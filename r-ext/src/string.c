/*
 * The character ALTREP class. A character vector lies in the arena as
 * [n u64][offsets u64 x (n+1)][encoding u8 x n, padded to 8][bytes], decoded
 * and validated by shard_payload_strings() (Rust) in make_vec(). R needs a CHARSXP per element; each is made once
 * (mkCharLenCE: hash plus R's global CHARSXP cache) on first access and kept in
 * a per-vector cache, an ordinary STRSXP in data2, so later reads are a load
 * (Elt through elt_slots). The cache counts as unfilled where it holds "" (what
 * allocVector fills it with): an element that really is "" is rebuilt from the
 * arena each time, at the price of a length check, never a CHARSXP.
 * Set_elt fills the whole cache first and marks the vector modified: the cache
 * is then the vector's value (serialized as values, duplicated by R).
 */
#include "shard_int.h"

/* Bytes held by the string caches of live vectors (the STRSXP cells plus the
 * strings made) and the elements they hold; reported by shard_diagnostics(). */
double str_cache_bytes = 0, str_cache_elts = 0;

static SEXP str_cache(SEXP x, shard_vec *s) {
    SEXP c = R_altrep_data2(x);
    if (c != R_NilValue) return c;
    c = PROTECT(Rf_allocVector(STRSXP, s->length)); /* all "" */
    R_set_altrep_data2(x, c);
    UNPROTECT(1);
    double b = 8.0 * (double) s->length;
    s->cache_bytes += b;
    str_cache_bytes += b;
    vec_set_data(x, s, STRING_PTR_RO(c));
    return c;
}

/* Element i from the arena. The layout was validated by shard_payload_strings()
 * when the vector was made; a writable object can change after that, so the two
 * offsets are read once each (volatile: not re-read after the check) and checked
 * again, and a read never leaves the strings' byte section. */
static SEXP str_from_arena(shard_vec *s, R_xlen_t i) {
    const shard_strings *t = &s->str;
    uint8_t e = ((const volatile uint8_t *) t->encodings)[i];
    if (e == SHARD_STRING_NA) return NA_STRING;
    const volatile uint64_t *off = (const volatile uint64_t *) t->offsets;
    uint64_t a = off[i], b = off[i + 1];
    if (!(a <= b && b <= t->bytes_len) || b - a > INT_MAX)
        Rf_error("shard: corrupt character data in a shared object (string %.0f lies outside its data); "
                 "the object was changed after it was shared", (double) i + 1);
    if (a == b) return R_BlankString;
    cetype_t ce = e == 1 ? CE_UTF8 : e == 2 ? CE_LATIN1 : e == 3 ? CE_BYTES : CE_NATIVE;
    return Rf_mkCharLenCE((const char *) t->bytes + a, (int) (b - a), ce);
}

/* A cache miss: make element i (the object must be open: the arena is read).
 * Not inlined, so that the hit path in str_get() saves no registers. */
static SEXP __attribute__((noinline)) str_fill(SEXP x, shard_vec *s, R_xlen_t i) {
    SEXP c = str_cache(x, s);
    SEXP v = STRING_ELT(c, i);
    if (v != R_BlankString || s->modified) return v;
    check_open_vec(s);
    v = str_from_arena(s, i);
    if (v != R_BlankString) {
        SET_STRING_ELT(c, i, v);
        double b = v == NA_STRING ? 0 : (double) LENGTH(v) + 1;
        s->cache_bytes += b;
        str_cache_bytes += b;
        s->cache_elts += 1;
        str_cache_elts += 1;
    }
    return v;
}

static SEXP __attribute__((noinline)) str_get_slow(SEXP x, R_xlen_t i) {
    const SEXP *c = (const SEXP *) vec_data(x);
    if (c && c[i] != R_BlankString) return c[i];
    return str_fill(x, vec_state(x), i);
}

/* The hit path: slot, load, compare; anything else is one tail call. */
static inline SEXP str_get(SEXP x, R_xlen_t i) {
    elt_slot *e = elt_slot_of(x);
    if (e->x == x && e->data) {
        SEXP v = ((const SEXP *) e->data)[i];
        if (v != R_BlankString) return v;
    }
    return str_get_slow(x, i);
}

static SEXP str_elt(SEXP x, R_xlen_t i) { return str_get(x, i); }

/* Every element made: the cache is the whole vector. */
static SEXP str_fill_all(SEXP x, shard_vec *s) {
    SEXP c = str_cache(x, s);
    if (s->modified || s->complete) return c;
    check_open_vec(s);
    for (R_xlen_t i = 0; i < s->length; i++)
        if (STRING_ELT(c, i) == R_BlankString) str_fill(x, s, i);
    s->complete = 1;
    return c;
}

/* R gets the cache's array. Writing a STRSXP through its data pointer bypasses
 * R's write barrier and R does not do it (it uses SET_STRING_ELT, i.e. Set_elt),
 * so a writable request does not mark the vector modified. */
static void *str_dataptr(SEXP x, Rboolean writable) {
    shard_vec *s = vec_state(x);
    check_open_vec(s);
    return (void *) STRING_PTR_RO(str_fill_all(x, s));
}

static const void *str_dataptr_or_null(SEXP x) {
    /* Only a complete cache can stand for the vector (callers then fall back to
     * Elt, which fills it as it goes); and only while the object is open. */
    shard_vec *s = vec_state(x);
    if (!(s->modified || s->complete)) return NULL;
    if (!s->modified && s->open_epoch != close_epoch && shard_view_closed(s->view)) return NULL;
    return (const void *) STRING_PTR_RO(R_altrep_data2(x));
}

static void str_set_elt(SEXP x, R_xlen_t i, SEXP v) {
    shard_vec *s = vec_state(x);
    SEXP c = str_fill_all(x, s);
    s->modified = 1;
    SET_STRING_ELT(c, i, v);
}


static SEXP str_extract_subset(SEXP x, SEXP indx, SEXP call) {
    if (TYPEOF(indx) != INTSXP && TYPEOF(indx) != REALSXP) return NULL;
    shard_vec *s = vec_state(x);
    check_open_vec(s);
    R_xlen_t n = XLENGTH(indx), nx = s->length;
    SEXP r = PROTECT(Rf_allocVector(STRSXP, n));
    if (TYPEOF(indx) == INTSXP) {
        const int *pi = INTEGER_RO(indx);
        for (R_xlen_t k = 0; k < n; k++) {
            int ii = pi[k];
            SET_STRING_ELT(r, k, (ii > 0 && (R_xlen_t) ii <= nx) ? str_get(x, ii - 1) : NA_STRING);
        }
    } else {
        const double *pd = REAL_RO(indx);
        for (R_xlen_t k = 0; k < n; k++) {
            double dm = pd[k] - 1;
            SET_STRING_ELT(r, k, (R_FINITE(dm) && dm > -1 && dm < (double) nx) ? str_get(x, (R_xlen_t) dm)
                                                                                : NA_STRING);
        }
    }
    UNPROTECT(1);
    return r;
}

/* fetch(plain = TRUE): an ordinary STRSXP with x's values, in one pass. Each
 * CHARSXP is made once (str_from_arena, the same decoder as the class's reads;
 * one already in x's cache is taken from there) and not put in x's cache: x is
 * this fetch's own vector and goes away. A modified x: its cache is the value. */
SEXP str_plain(SEXP x) {
    shard_vec *s = vec_state(x);
    SEXP c = R_altrep_data2(x);
    if (s->modified) return Rf_duplicate(c);
    check_open_vec(s);
    R_xlen_t n = s->length;
    SEXP r = PROTECT(Rf_allocVector(STRSXP, n));
    if (c != R_NilValue) {
        for (R_xlen_t i = 0; i < n; i++) {
            SEXP v = STRING_ELT(c, i);
            SET_STRING_ELT(r, i, v != R_BlankString ? v : str_from_arena(s, i));
        }
    } else {
        for (R_xlen_t i = 0; i < n; i++) SET_STRING_ELT(r, i, str_from_arena(s, i));
    }
    UNPROTECT(1);
    return r;
}

static SEXP str_duplicate(SEXP x, Rboolean deep) {
    if (strict_mode()) strict_error();
    shard_vec *s = vec_state(x);
    check_open_vec(s);
    if (s->modified) return NULL; /* R copies the values */
    SEXP r = PROTECT(dup_vec(x, s));
    SEXP c = R_altrep_data2(x);
    if (c != R_NilValue) {
        /* The copy starts with the CHARSXPs made so far (its own cache: it may be
         * modified, the original may not). */
        shard_vec *t = VEC(r);
        SEXP cc = PROTECT(Rf_duplicate(c));
        R_set_altrep_data2(r, cc);
        t->cache_bytes = s->cache_bytes;
        t->cache_elts = s->cache_elts;
        str_cache_elts += t->cache_elts;
        t->complete = s->complete;
        str_cache_bytes += t->cache_bytes;
        vec_set_data(r, t, STRING_PTR_RO(cc));
        UNPROTECT(1);
    }
    UNPROTECT(1);
    return r;
}

static SEXP str_serialized_state(SEXP x) {
    shard_vec *s = vec_state(x);
    check_open_vec(s);
    if (s->modified) return NULL; /* changed: send the values */
    return vec_serialized_state(x);
}

void str_set_methods(R_altrep_class_t c) {
    R_set_altrep_Duplicate_method(c, str_duplicate);
    R_set_altrep_Serialized_state_method(c, str_serialized_state);
    R_set_altvec_Dataptr_method(c, str_dataptr);
    R_set_altvec_Dataptr_or_null_method(c, str_dataptr_or_null);
    R_set_altvec_Extract_subset_method(c, str_extract_subset);
    R_set_altstring_Elt_method(c, str_elt);
    R_set_altstring_Set_elt_method(c, str_set_elt);
}
