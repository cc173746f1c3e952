/*
 * Numeric ALTREP classes (double, integer, logical, raw, complex): the state of a
 * shared vector, the methods R calls on it (length, data pointer, element, region,
 * duplicate, serialize/unserialize, inspect), class creation and make_vec(), which
 * builds every shard vector of any type.
 */
#include "shard_int.h"

R_altrep_class_t cls_real, cls_int, cls_lgl, cls_raw, cls_cplx, cls_str;

void vec_finalize(SEXP p) {
    shard_vec *s = (shard_vec *) R_ExternalPtrAddr(p);
    if (s) {
        if (s->priv) shard_private_free(s->priv);
        free(s);
        R_ClearExternalPtr(p);
    }
}

int vec_closed(SEXP x) {
    shard_view *v = holder_view(HOLDER(x));
    return v == NULL || shard_view_closed(v);
}

void check_open(SEXP x) {
    if (vec_closed(x))
        Rf_error("shard: this vector's shared memory has been closed (close() was called on its shared object); "
                 "use materialize() before close() to keep a copy");
}

SEXPTYPE kind_type(int kind) {
    switch (kind) {
    case K_F64: return REALSXP;
    case K_I32: return INTSXP;
    case K_LGL: return LGLSXP;
    case K_RAW: case K_SERIALIZED: case K_BYTES: return RAWSXP;
    case K_CPLX: return CPLXSXP;
    case K_STR: return STRSXP;
    default: return NILSXP;
    }
}

static R_xlen_t vec_length(SEXP x) { return VEC(x)->length; }

static void *vec_dataptr(SEXP x, Rboolean writable) {
    shard_vec *s = VEC(x);
    if (s->priv_data) { check_open(x); return s->priv_data; }
    if (writable) return writable_data(x);
    check_open(x);
    return (void *) s->base;
}

static const void *vec_dataptr_or_null(SEXP x) {
    shard_vec *s = VEC(x);
    if (vec_closed(x)) return NULL; /* callers fall back to Elt, which errors */
    return s->priv_data ? s->priv_data : (const void *) s->base;
}

static SEXP vec_duplicate(SEXP x, Rboolean deep) {
    shard_vec *s = VEC(x);
    if (strict_mode())
        Rf_error("shard: modifying or copying a shared vector is not allowed (options(shard.cow = \"error\")); "
                 "use materialize() for a private copy");
    if (vec_changed(x)) {
        /* The vector has private changes: R copies them (count it). */
        n_copies += 1;
        bytes_copies += (double) s->byte_len;
        return NULL;
    }
    check_open(x);
    /* Unchanged: a new vector over the same shared bytes, O(1). */
    return make_vec(HOLDER(x), HANDLE(x), s->kind, s->byte_offset, s->byte_len, s->length);
}

SEXP vec_serialized_state(SEXP x) {
    shard_vec *s = VEC(x);
    SEXP o = Rf_GetOption1(Rf_install("shard.serialize"));
    int as_data = TYPEOF(o) == STRSXP && XLENGTH(o) == 1 && strcmp(CHAR(STRING_ELT(o, 0)), "data") == 0;
    /* Private changes, closed memory or the "data" option: serialize the values. */
    if (as_data || vec_closed(x) || vec_changed(x)) return NULL;
    SEXP st = PROTECT(Rf_allocVector(VECSXP, 5));
    SET_VECTOR_ELT(st, 0, HANDLE(x));
    SET_VECTOR_ELT(st, 1, Rf_ScalarReal((double) s->byte_offset));
    SET_VECTOR_ELT(st, 2, Rf_ScalarReal((double) s->byte_len));
    SET_VECTOR_ELT(st, 3, Rf_ScalarReal((double) s->length));
    SET_VECTOR_ELT(st, 4, Rf_ScalarInteger(s->kind));
    UNPROTECT(1);
    return st;
}

static SEXP vec_unserialize(SEXP cls, SEXP st) {
    SEXP handle = VECTOR_ELT(st, 0);
    SEXP holder = PROTECT(attach_holder(handle));
    if (holder == R_NilValue) {
        const char *m = shard_last_error();
        size_t n = strlen(m) + 1;
        char *buf = R_alloc(n, 1);
        memcpy(buf, m, n);
        Rf_error("shard: cannot restore a shared vector: %s. It was serialized as a handle to shared memory, "
                 "not as values: to save or send the values, call materialize() on it first or set "
                 "options(shard.serialize = \"data\") before serializing", buf);
    }
    SEXP r = make_vec(holder, handle, INTEGER(VECTOR_ELT(st, 4))[0], (uint64_t) REAL(VECTOR_ELT(st, 1))[0],
                      (uint64_t) REAL(VECTOR_ELT(st, 2))[0], (R_xlen_t) REAL(VECTOR_ELT(st, 3))[0]);
    UNPROTECT(1);
    return r;
}

static Rboolean vec_inspect(SEXP x, int pre, int deep, int pvec, void (*inspect_subtree)(SEXP, int, int, int)) {
    shard_vec *s = VEC(x);
    Rprintf(" shard %s [%s%s] length %.0f, %.0f bytes at data offset %.0f\n", Rf_type2char(TYPEOF(x)),
            vec_closed(x) ? "closed" : "open", s->priv ? ", private copy-on-write" :
            (R_altrep_data2(x) != R_NilValue ? ", private copy" : ""),
            (double) s->length, (double) s->byte_len, (double) s->byte_offset);
    return TRUE;
}

#define ELT_PTR(x, T) ((const T *) vec_dataptr(x, FALSE))

static double real_elt(SEXP x, R_xlen_t i) { return ELT_PTR(x, double)[i]; }

static int int_elt(SEXP x, R_xlen_t i) { return ELT_PTR(x, int)[i]; }

static Rbyte raw_elt(SEXP x, R_xlen_t i) { return ELT_PTR(x, Rbyte)[i]; }

static Rcomplex cplx_elt(SEXP x, R_xlen_t i) { return ELT_PTR(x, Rcomplex)[i]; }

#define GET_REGION(name, T)                                                  \
    static R_xlen_t name(SEXP x, R_xlen_t i, R_xlen_t n, T *buf) {           \
        const T *p = ELT_PTR(x, T);                                          \
        R_xlen_t len = VEC(x)->length;                                       \
        R_xlen_t k = (i + n > len) ? len - i : n;                            \
        if (k > 0) memcpy(buf, p + i, (size_t) k * sizeof(T));               \
        return k < 0 ? 0 : k;                                                \
    }

GET_REGION(real_region, double)
GET_REGION(int_region, int)
GET_REGION(raw_region, Rbyte)
GET_REGION(cplx_region, Rcomplex)

R_altrep_class_t make_class(const char *name, DllInfo *dll, int type) {
    R_altrep_class_t c;
    switch (type) {
    case REALSXP: c = R_make_altreal_class(name, "shard", dll); break;
    case INTSXP: c = R_make_altinteger_class(name, "shard", dll); break;
    case LGLSXP: c = R_make_altlogical_class(name, "shard", dll); break;
    case RAWSXP: c = R_make_altraw_class(name, "shard", dll); break;
    case CPLXSXP: c = R_make_altcomplex_class(name, "shard", dll); break;
    default: c = R_make_altstring_class(name, "shard", dll); break;
    }
    R_set_altrep_Length_method(c, vec_length);
    R_set_altrep_Inspect_method(c, vec_inspect);
    R_set_altrep_Unserialize_method(c, vec_unserialize);
    if (type == STRSXP) {
        str_set_methods(c);
        return c;
    } else {
        R_set_altrep_Duplicate_method(c, vec_duplicate);
        R_set_altrep_Serialized_state_method(c, vec_serialized_state);
        R_set_altvec_Dataptr_method(c, vec_dataptr);
        R_set_altvec_Dataptr_or_null_method(c, vec_dataptr_or_null);
    }
    switch (type) {
    case REALSXP: R_set_altreal_Elt_method(c, real_elt); R_set_altreal_Get_region_method(c, real_region); break;
    case INTSXP: R_set_altinteger_Elt_method(c, int_elt); R_set_altinteger_Get_region_method(c, int_region); break;
    case LGLSXP: R_set_altlogical_Elt_method(c, int_elt); R_set_altlogical_Get_region_method(c, int_region); break;
    case RAWSXP: R_set_altraw_Elt_method(c, raw_elt); R_set_altraw_Get_region_method(c, raw_region); break;
    case CPLXSXP: R_set_altcomplex_Elt_method(c, cplx_elt); R_set_altcomplex_Get_region_method(c, cplx_region); break;
    default: break;
    }
    return c;
}

SEXP make_vec(SEXP holder, SEXP handle, int kind, uint64_t byte_offset, uint64_t byte_len, R_xlen_t n) {
    shard_view *v = holder_view(holder);
    if (v == NULL) Rf_error("shard: the shared object's view has been released");
    R_altrep_class_t c;
    switch (kind) {
    case K_F64: c = cls_real; break;
    case K_I32: c = cls_int; break;
    case K_LGL: c = cls_lgl; break;
    case K_RAW: case K_SERIALIZED: case K_BYTES: c = cls_raw; break;
    case K_CPLX: c = cls_cplx; break;
    case K_STR: c = cls_str; break;
    default: Rf_error("shard: kind %d is not a vector", kind);
    }
    shard_vec *s = (shard_vec *) calloc(1, sizeof(shard_vec));
    if (!s) Rf_error("shard: out of memory");
    s->base = shard_view_data(v) + byte_offset;
    s->length = n;
    s->kind = kind;
    s->byte_offset = byte_offset;
    s->byte_len = byte_len;
    SEXP p = PROTECT(R_MakeExternalPtr(s, handle, holder));
    R_RegisterCFinalizerEx(p, vec_finalize, TRUE);
    SEXP r = R_new_altrep(c, p, R_NilValue);
    UNPROTECT(1);
    return r;
}
