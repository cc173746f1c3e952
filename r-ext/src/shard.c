/*
 * shard R package: ALTREP vectors over shared memory, and the .Call entry points.
 *
 * Sections:
 *   1. State of a shared vector (shard_vec) and the view holder
 *   2. Guards: closed memory, private copy-on-write, strict mode, counters
 *   3. ALTREP methods common to all classes (length, dataptr, duplicate, serialize)
 *   4. Element methods per type (real, integer, logical, raw, complex, string)
 *   5. Class registration
 *   6. Writing objects into the arena (atomic, strings, composite)
 *   7. .Call entry points: share/attach/close, segments (create, write, read,
 *      protect), and two helpers for deep sharing (object identity, list replace)
 *
 * Rules: every Rust call returns before any R error is raised (no longjmp
 * crosses Rust frames); the shared bytes are never written; after close() every
 * access is an R error, never a segfault (the mapping lives until the last
 * vector is collected).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <limits.h>
#include <R.h>
#include <Rinternals.h>
#include <R_ext/Altrep.h>
#include <R_ext/Rdynload.h>
#include "shard.h"

/* Object kinds (match shard::format::Kind). */
enum { K_BYTES = 0, K_F64 = 1, K_I32 = 2, K_LGL = 3, K_RAW = 4, K_CPLX = 5,
       K_STR = 6, K_COMPOSITE = 7, K_SERIALIZED = 8 };
#define STR_NA_FLAG 255
#define LEAF_ENTRY_BYTES 32

/* ------------------------------------------------------------------ 1. state */

typedef struct {
    const uint8_t *base;      /* this vector's bytes in the arena */
    R_xlen_t length;
    int kind;
    uint64_t byte_offset;     /* offset of base inside the object's data section */
    uint64_t byte_len;        /* bytes of this vector in the data section */
    shard_private *priv;      /* private copy-on-write mapping, or NULL */
    void *priv_data;          /* writable data (priv mapping or data2 copy) */
} shard_vec;

static R_altrep_class_t cls_real, cls_int, cls_lgl, cls_raw, cls_cplx, cls_str;

/* Counters reported by shard_diagnostics(). */
static double n_cow_maps = 0, bytes_cow_maps = 0, n_copies = 0, bytes_copies = 0;

static void view_finalize(SEXP p) {
    shard_view *v = (shard_view *) R_ExternalPtrAddr(p);
    if (v) { shard_view_free(v); R_ClearExternalPtr(p); }
}

static void vec_finalize(SEXP p) {
    shard_vec *s = (shard_vec *) R_ExternalPtrAddr(p);
    if (s) {
        if (s->priv) shard_private_free(s->priv);
        free(s);
        R_ClearExternalPtr(p);
    }
}

static void rust_error(const char *what) {
    /* Copy the message: R_alloc'd memory survives until the error unwinds. */
    const char *m = shard_last_error();
    size_t n = strlen(m) + 1;
    char *buf = R_alloc(n, 1);
    memcpy(buf, m, n);
    Rf_error("shard: %s: %s", what, buf);
}

#define VEC(x) ((shard_vec *) R_ExternalPtrAddr(R_altrep_data1(x)))
#define HOLDER(x) R_ExternalPtrProtected(R_altrep_data1(x))
#define HANDLE(x) R_ExternalPtrTag(R_altrep_data1(x))

static shard_view *holder_view(SEXP holder) {
    return (shard_view *) R_ExternalPtrAddr(holder);
}

/* ------------------------------------------------------------------ 2. guards */

static int vec_closed(SEXP x) {
    shard_view *v = holder_view(HOLDER(x));
    return v == NULL || shard_view_closed(v);
}

static void check_open(SEXP x) {
    if (vec_closed(x))
        Rf_error("shard: this vector's shared memory has been closed (close() was called on its shared object); "
                 "use materialize() before close() to keep a copy");
}

static int strict_mode(void) {
    SEXP o = Rf_GetOption1(Rf_install("shard.cow"));
    return TYPEOF(o) == STRSXP && XLENGTH(o) == 1 && strcmp(CHAR(STRING_ELT(o, 0)), "error") == 0;
}

static SEXPTYPE kind_type(int kind) {
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

/* A writable pointer for R: a private copy-on-write mapping of the pages when the
 * data are page-aligned (O(1); only pages R writes are copied), else a copy. The
 * shared bytes are never handed out writable. */
static void *writable_data(SEXP x) {
    shard_vec *s = VEC(x);
    if (s->priv_data) return s->priv_data;
    check_open(x);
    shard_view *v = holder_view(HOLDER(x));
    shard_view_info info;
    if (shard_view_info_get(v, &info) != SHARD_OK) rust_error("view info");
    /* Only a vector that spans the whole data section can use the object's mapping. */
    if (s->byte_offset == 0 && s->byte_len == info.data_len && s->byte_len > 0) {
        shard_private *p = NULL;
        uint8_t *d = NULL;
        if (shard_view_private(v, &p, &d) != SHARD_OK) rust_error("private mapping");
        if (p) {
            s->priv = p;
            s->priv_data = d;
            n_cow_maps += 1;
            bytes_cow_maps += (double) s->byte_len;
            return d;
        }
    }
    SEXP copy = PROTECT(Rf_allocVector(kind_type(s->kind), s->length));
    if (s->byte_len) memcpy(DATAPTR(copy), s->base, s->byte_len);
    R_set_altrep_data2(x, copy);
    UNPROTECT(1);
    n_copies += 1;
    bytes_copies += (double) s->byte_len;
    s->priv_data = DATAPTR(copy);
    return s->priv_data;
}

/* ----------------------------------------------------- 3. common ALTREP methods */

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

static SEXP make_vec(SEXP holder, SEXP handle, int kind, uint64_t byte_offset, uint64_t byte_len, R_xlen_t n);

/* Whether R has written to this vector's private data. A private mapping that
 * only served reads (R asks for writable pointers in range(), ==, identical())
 * has no copied pages; a private copy is compared with the shared bytes. */
static int vec_changed(SEXP x) {
    shard_vec *s = VEC(x);
    if (s->priv) {
        int m = shard_private_modified(s->priv);
        return m != 0; /* an error counts as changed: never lose data */
    }
    SEXP c = R_altrep_data2(x);
    if (c == R_NilValue) return 0;
    if (TYPEOF(c) == STRSXP) return 1;
    if (vec_closed(x)) return 1;
    return s->byte_len && memcmp(DATAPTR(c), s->base, s->byte_len) != 0;
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

static SEXP vec_serialized_state(SEXP x) {
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

static SEXP attach_holder(SEXP handle) {
    if (TYPEOF(handle) != RAWSXP || XLENGTH(handle) != SHARD_HANDLE_LEN)
        Rf_error("shard: a handle must be a raw vector of %d bytes", SHARD_HANDLE_LEN);
    shard_view *v = NULL;
    if (shard_attach(RAW(handle), (uint64_t) XLENGTH(handle), &v) != SHARD_OK) return R_NilValue;
    SEXP h = PROTECT(R_MakeExternalPtr(v, Rf_install("shard_view"), R_NilValue));
    R_RegisterCFinalizerEx(h, view_finalize, TRUE);
    UNPROTECT(1);
    return h;
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

/* ------------------------------------------------------ 4. element methods */

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

/* Strings: [n u64][offsets u64 x (n+1)][encoding u8 x n, padded to 8][bytes]. */
typedef struct { uint64_t n; const uint64_t *off; const uint8_t *enc; const char *bytes; } str_layout;

static uint64_t str_header_bytes(uint64_t n) {
    return 8 + 8 * (n + 1) + ((n + 7) & ~(uint64_t) 7);
}

static str_layout str_read(const uint8_t *base) {
    str_layout l;
    memcpy(&l.n, base, 8);
    l.off = (const uint64_t *) (base + 8);
    l.enc = base + 8 + 8 * (l.n + 1);
    l.bytes = (const char *) (base + str_header_bytes(l.n));
    return l;
}

static SEXP str_make_elt(const str_layout *l, R_xlen_t i) {
    uint8_t e = l->enc[i];
    if (e == STR_NA_FLAG) return NA_STRING;
    cetype_t ce = e == 1 ? CE_UTF8 : e == 2 ? CE_LATIN1 : e == 3 ? CE_BYTES : CE_NATIVE;
    uint64_t len = l->off[i + 1] - l->off[i];
    return Rf_mkCharLenCE(l->bytes + l->off[i], (int) len, ce);
}

static SEXP str_elt(SEXP x, R_xlen_t i) {
    SEXP m = R_altrep_data2(x);
    if (m != R_NilValue) return STRING_ELT(m, i);
    check_open(x);
    str_layout l = str_read(VEC(x)->base);
    return str_make_elt(&l, i);
}

/* Strings have no arena representation R can point into: Dataptr materializes. */
static SEXP str_materialize(SEXP x) {
    SEXP m = R_altrep_data2(x);
    if (m != R_NilValue) return m;
    check_open(x);
    shard_vec *s = VEC(x);
    str_layout l = str_read(s->base);
    m = PROTECT(Rf_allocVector(STRSXP, s->length));
    for (R_xlen_t i = 0; i < s->length; i++) SET_STRING_ELT(m, i, str_make_elt(&l, i));
    R_set_altrep_data2(x, m);
    UNPROTECT(1);
    n_copies += 1;
    bytes_copies += (double) s->byte_len;
    return m;
}

static void *str_dataptr(SEXP x, Rboolean writable) { return DATAPTR(str_materialize(x)); }

static const void *str_dataptr_or_null(SEXP x) {
    SEXP m = R_altrep_data2(x);
    return m == R_NilValue ? NULL : DATAPTR(m);
}

static void str_set_elt(SEXP x, R_xlen_t i, SEXP v) {
    SET_STRING_ELT(str_materialize(x), i, v);
}

static SEXP str_duplicate(SEXP x, Rboolean deep) {
    if (strict_mode())
        Rf_error("shard: modifying or copying a shared vector is not allowed (options(shard.cow = \"error\")); "
                 "use materialize() for a private copy");
    if (R_altrep_data2(x) != R_NilValue) return NULL;
    check_open(x);
    shard_vec *s = VEC(x);
    return make_vec(HOLDER(x), HANDLE(x), s->kind, s->byte_offset, s->byte_len, s->length);
}

static SEXP str_serialized_state(SEXP x) {
    if (R_altrep_data2(x) != R_NilValue) {
        /* Unchanged materialized strings could still go as a handle, but changed ones
         * cannot; we do not track which, so send the values. */
        return NULL;
    }
    return vec_serialized_state(x);
}

/* ------------------------------------------------------ 5. class registration */

static R_altrep_class_t make_class(const char *name, DllInfo *dll, int type) {
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
        R_set_altrep_Duplicate_method(c, str_duplicate);
        R_set_altrep_Serialized_state_method(c, str_serialized_state);
        R_set_altvec_Dataptr_method(c, str_dataptr);
        R_set_altvec_Dataptr_or_null_method(c, str_dataptr_or_null);
        R_set_altstring_Elt_method(c, str_elt);
        R_set_altstring_Set_elt_method(c, str_set_elt);
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

static SEXP make_vec(SEXP holder, SEXP handle, int kind, uint64_t byte_offset, uint64_t byte_len, R_xlen_t n) {
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

/* ---------------------------------------------- 6. writing into the arena */

static int vec_kind(SEXP x) {
    switch (TYPEOF(x)) {
    case REALSXP: return K_F64;
    case INTSXP: return K_I32;
    case LGLSXP: return K_LGL;
    case RAWSXP: return K_RAW;
    case CPLXSXP: return K_CPLX;
    case STRSXP: return K_STR;
    default: return -1;
    }
}

static uint64_t elt_size(int kind) {
    switch (kind) {
    case K_F64: return 8;
    case K_I32: case K_LGL: return 4;
    case K_RAW: case K_SERIALIZED: case K_BYTES: return 1;
    case K_CPLX: return 16;
    default: return 0;
    }
}

static uint64_t leaf_bytes(SEXP x) {
    int k = vec_kind(x);
    uint64_t n = (uint64_t) XLENGTH(x);
    if (k != K_STR) return n * elt_size(k);
    uint64_t total = str_header_bytes(n);
    for (uint64_t i = 0; i < n; i++) {
        SEXP c = STRING_ELT(x, (R_xlen_t) i);
        if (c != NA_STRING) total += (uint64_t) LENGTH(c);
    }
    return total;
}

static void write_strings(SEXP x, uint8_t *dst) {
    uint64_t n = (uint64_t) XLENGTH(x);
    memcpy(dst, &n, 8);
    uint64_t *off = (uint64_t *) (dst + 8);
    uint8_t *enc = dst + 8 + 8 * (n + 1);
    memset(enc, 0, (n + 7) & ~(uint64_t) 7);
    char *bytes = (char *) (dst + str_header_bytes(n));
    uint64_t pos = 0;
    for (uint64_t i = 0; i < n; i++) {
        SEXP c = STRING_ELT(x, (R_xlen_t) i);
        off[i] = pos;
        if (c == NA_STRING) { enc[i] = STR_NA_FLAG; continue; }
        cetype_t ce = Rf_getCharCE(c);
        enc[i] = ce == CE_UTF8 ? 1 : ce == CE_LATIN1 ? 2 : ce == CE_BYTES ? 3 : 0;
        memcpy(bytes + pos, CHAR(c), (size_t) LENGTH(c));
        pos += (uint64_t) LENGTH(c);
    }
    off[n] = pos;
}

/* Writes leaf x at offset `at` of the writer's data section. */
static int write_leaf(shard_writer *w, SEXP x, uint64_t at) {
    int k = vec_kind(x);
    if (k == K_STR) { write_strings(x, shard_writer_data(w) + at); return SHARD_OK; }
    uint64_t n = leaf_bytes(x);
    if (n == 0) return SHARD_OK;
    return shard_writer_copy(w, at, DATAPTR_RO(x), n);
}

static void parse_opts(SEXP o, shard_share_opts *out) {
    memset(out, 0, sizeof *out);
    out->backing = Rf_asInteger(VECTOR_ELT(o, 0));
    out->readonly = Rf_asLogical(VECTOR_ELT(o, 1)) == TRUE;
    out->huge_pages = Rf_asLogical(VECTOR_ELT(o, 2)) == TRUE;
    out->copy_threads = Rf_asInteger(VECTOR_ELT(o, 3));
    SEXP nm = VECTOR_ELT(o, 4), pl = VECTOR_ELT(o, 5);
    out->name = TYPEOF(nm) == STRSXP ? CHAR(STRING_ELT(nm, 0)) : NULL;
    out->placement = TYPEOF(pl) == STRSXP ? CHAR(STRING_ELT(pl, 0)) : NULL;
}

static SEXP finish_or_error(shard_writer *w, int rc) {
    if (rc != SHARD_OK) { shard_abort(w); rust_error("writing the shared object"); }
    SEXP h = PROTECT(Rf_allocVector(RAWSXP, SHARD_HANDLE_LEN));
    if (shard_finish(w, RAW(h)) != SHARD_OK) rust_error("publishing the shared object");
    UNPROTECT(1);
    return h;
}

static const uint8_t *meta_ptr(SEXP meta, uint64_t *len) {
    if (TYPEOF(meta) == RAWSXP) { *len = (uint64_t) XLENGTH(meta); return RAW(meta); }
    *len = 0;
    return NULL;
}

/* ---------------------------------------------------------- 7. entry points */

/* Shares one atomic or character vector. */
static SEXP C_share_vector(SEXP x, SEXP meta, SEXP opts) {
    int k = vec_kind(x);
    if (k < 0) Rf_error("shard: cannot share a vector of type %s natively", Rf_type2char(TYPEOF(x)));
    shard_share_opts o;
    parse_opts(opts, &o);
    uint64_t mlen;
    const uint8_t *m = meta_ptr(meta, &mlen);
    uint64_t bytes = leaf_bytes(x);
    shard_writer *w = NULL;
    if (shard_begin(&o, (uint8_t) k, (uint64_t) XLENGTH(x), m, mlen, bytes, &w) != SHARD_OK)
        rust_error("share");
    return finish_or_error(w, write_leaf(w, x, 0));
}

/* Shares a raw vector holding R serialization output. */
static SEXP C_share_serialized(SEXP x, SEXP meta, SEXP opts) {
    if (TYPEOF(x) != RAWSXP) Rf_error("shard: internal: serialized data must be raw");
    shard_share_opts o;
    parse_opts(opts, &o);
    uint64_t mlen;
    const uint8_t *m = meta_ptr(meta, &mlen);
    uint64_t n = (uint64_t) XLENGTH(x);
    shard_writer *w = NULL;
    if (shard_begin(&o, K_SERIALIZED, 0, m, mlen, n, &w) != SHARD_OK) rust_error("share");
    int rc = n ? shard_writer_copy(w, 0, RAW(x), n) : SHARD_OK;
    return finish_or_error(w, rc);
}

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

/* Leaves of a composite start on 64 bytes, large ones on a page (so a leaf that
 * fills its pages could be mapped privately). */
static uint64_t leaf_align(uint64_t bytes) { return bytes >= (64u << 10) ? 4096 : 64; }

/* Shares a list of atomic/character leaves in one allocation:
 * [n u64][n x (kind u32, pad u32, count u64, offset u64, bytes u64)][leaves]. */
static SEXP C_share_composite(SEXP leaves, SEXP meta, SEXP opts) {
    R_xlen_t n = XLENGTH(leaves);
    uint64_t pos = align_up(8 + LEAF_ENTRY_BYTES * (uint64_t) n, 64);
    uint64_t *offs = (uint64_t *) R_alloc((size_t) n + 1, sizeof(uint64_t));
    for (R_xlen_t i = 0; i < n; i++) {
        SEXP x = VECTOR_ELT(leaves, i);
        if (vec_kind(x) < 0) Rf_error("shard: internal: composite leaf %ld is not a vector", (long) i + 1);
        uint64_t b = leaf_bytes(x);
        pos = align_up(pos, leaf_align(b));
        offs[i] = pos;
        pos += b;
    }
    shard_share_opts o;
    parse_opts(opts, &o);
    uint64_t mlen;
    const uint8_t *m = meta_ptr(meta, &mlen);
    shard_writer *w = NULL;
    if (shard_begin(&o, K_COMPOSITE, (uint64_t) n, m, mlen, pos, &w) != SHARD_OK) rust_error("share");
    uint8_t *d = shard_writer_data(w);
    uint64_t nn = (uint64_t) n;
    memcpy(d, &nn, 8);
    int rc = SHARD_OK;
    for (R_xlen_t i = 0; i < n && rc == SHARD_OK; i++) {
        SEXP x = VECTOR_ELT(leaves, i);
        uint32_t k = (uint32_t) vec_kind(x), pad = 0;
        uint64_t cnt = (uint64_t) XLENGTH(x), b = leaf_bytes(x);
        uint8_t *e = d + 8 + LEAF_ENTRY_BYTES * (uint64_t) i;
        memcpy(e, &k, 4); memcpy(e + 4, &pad, 4); memcpy(e + 8, &cnt, 8);
        memcpy(e + 16, &offs[i], 8); memcpy(e + 24, &b, 8);
        rc = write_leaf(w, x, offs[i]);
    }
    return finish_or_error(w, rc);
}

/* Attaches a handle: an external pointer holding the view (freed by the GC). */
static SEXP C_attach(SEXP handle) {
    SEXP h = attach_holder(handle);
    if (h == R_NilValue) rust_error("attach");
    return h;
}

static SEXP C_view_info(SEXP holder) {
    shard_view *v = holder_view(holder);
    if (!v) Rf_error("shard: released view");
    shard_view_info i;
    if (shard_view_info_get(v, &i) != SHARD_OK) rust_error("view info");
    const char *names[] = {"kind", "elem_count", "data_len", "meta_len", "page_size", "seals", "local",
                           "closed", "writable", "backing", "owner_pid", "region_id", "offset", "region_size", ""};
    SEXP r = PROTECT(Rf_mkNamed(VECSXP, names));
    SET_VECTOR_ELT(r, 0, Rf_ScalarInteger(i.kind));
    SET_VECTOR_ELT(r, 1, Rf_ScalarReal((double) i.elem_count));
    SET_VECTOR_ELT(r, 2, Rf_ScalarReal((double) i.data_len));
    SET_VECTOR_ELT(r, 3, Rf_ScalarReal((double) i.meta_len));
    SET_VECTOR_ELT(r, 4, Rf_ScalarReal((double) i.page_size));
    SET_VECTOR_ELT(r, 5, Rf_ScalarInteger((int) i.seals));
    SET_VECTOR_ELT(r, 6, Rf_ScalarLogical(i.local));
    SET_VECTOR_ELT(r, 7, Rf_ScalarLogical(i.closed));
    SET_VECTOR_ELT(r, 8, Rf_ScalarLogical(i.writable));
    SET_VECTOR_ELT(r, 9, Rf_ScalarInteger(i.backing));
    SET_VECTOR_ELT(r, 10, Rf_ScalarReal((double) i.owner_pid));
    SET_VECTOR_ELT(r, 11, Rf_ScalarReal((double) i.region_id));
    SET_VECTOR_ELT(r, 12, Rf_ScalarReal((double) i.offset));
    SET_VECTOR_ELT(r, 13, Rf_ScalarReal((double) i.region_size));
    UNPROTECT(1);
    return r;
}

static SEXP C_view_meta(SEXP holder) {
    shard_view *v = holder_view(holder);
    if (!v) Rf_error("shard: released view");
    uint64_t len = 0;
    const uint8_t *m = shard_view_meta(v, &len);
    if (!m) {
        if (shard_view_closed(v)) Rf_error("shard: the shared object has been closed");
        return Rf_allocVector(RAWSXP, 0);
    }
    SEXP r = PROTECT(Rf_allocVector(RAWSXP, (R_xlen_t) len));
    if (len) memcpy(RAW(r), m, len);
    UNPROTECT(1);
    return r;
}

/* The vector(s) of an attached object: one ALTREP vector, or a list of leaves. */
static SEXP C_view_vector(SEXP holder, SEXP handle, SEXP strict) {
    shard_view *v = holder_view(holder);
    if (!v) Rf_error("shard: released view");
    shard_view_info i;
    if (shard_view_info_get(v, &i) != SHARD_OK) rust_error("view info");
    if (i.closed) Rf_error("shard: the shared object has been closed");
    int mark = Rf_asLogical(strict) == TRUE;
    if (i.kind != K_COMPOSITE) {
        R_xlen_t n = i.kind == K_STR ? (R_xlen_t) str_read(shard_view_data(v)).n
                                     : (R_xlen_t) (i.data_len / (elt_size(i.kind) ? elt_size(i.kind) : 1));
        SEXP r = make_vec(holder, handle, i.kind, 0, i.data_len, n);
        if (mark) MARK_NOT_MUTABLE(r);
        return r;
    }
    const uint8_t *d = shard_view_data(v);
    uint64_t n;
    memcpy(&n, d, 8);
    if (8 + LEAF_ENTRY_BYTES * n > i.data_len) Rf_error("shard: corrupt composite object");
    SEXP out = PROTECT(Rf_allocVector(VECSXP, (R_xlen_t) n));
    for (uint64_t j = 0; j < n; j++) {
        const uint8_t *e = d + 8 + LEAF_ENTRY_BYTES * j;
        uint32_t k; uint64_t cnt, off, b;
        memcpy(&k, e, 4); memcpy(&cnt, e + 8, 8); memcpy(&off, e + 16, 8); memcpy(&b, e + 24, 8);
        if (off + b > i.data_len || kind_type((int) k) == NILSXP) Rf_error("shard: corrupt composite object");
        SEXP leaf = make_vec(holder, handle, (int) k, off, b, (R_xlen_t) cnt);
        if (mark) MARK_NOT_MUTABLE(leaf);
        SET_VECTOR_ELT(out, (R_xlen_t) j, leaf);
    }
    UNPROTECT(1);
    return out;
}

static SEXP C_close(SEXP handle) {
    if (TYPEOF(handle) != RAWSXP) Rf_error("shard: a handle must be a raw vector");
    if (shard_close(RAW(handle), (uint64_t) XLENGTH(handle)) != SHARD_OK) rust_error("close");
    return R_NilValue;
}

static SEXP C_owns(SEXP handle) {
    if (TYPEOF(handle) != RAWSXP) Rf_error("shard: a handle must be a raw vector");
    int r = shard_owns(RAW(handle), (uint64_t) XLENGTH(handle));
    if (r < 0) rust_error("handle");
    return Rf_ScalarLogical(r);
}

static SEXP C_lookup_name(SEXP name) {
    if (TYPEOF(name) != STRSXP || XLENGTH(name) != 1 || STRING_ELT(name, 0) == NA_STRING)
        Rf_error("shard: name must be a single string");
    SEXP h = PROTECT(Rf_allocVector(RAWSXP, SHARD_HANDLE_LEN));
    if (shard_lookup_name(CHAR(STRING_ELT(name, 0)), RAW(h)) != SHARD_OK) rust_error("open by name");
    UNPROTECT(1);
    return h;
}

static SEXP C_sweep(void) {
    uint64_t n = 0;
    if (shard_sweep(&n) != SHARD_OK) rust_error("sweep");
    return Rf_ScalarReal((double) n);
}

static SEXP C_seal_all(void) {
    if (shard_seal_all() != SHARD_OK) rust_error("seal");
    return R_NilValue;
}

static SEXP C_stats(void) {
    shard_stats s;
    if (shard_stats_get(&s) != SHARD_OK) rust_error("stats");
    const char *names[] = {"regions", "sealed_regions", "bytes_mapped", "bytes_live", "live_objects",
                           "fallbacks", "regions_created", "regions_released", "foreign_regions_mapped",
                           "attaches_local", "attaches_foreign", "pid", "cow_mappings", "cow_bytes",
                           "copies", "copy_bytes", ""};
    double vals[] = {s.regions, s.sealed_regions, s.bytes_mapped, s.bytes_live, s.live_objects, s.fallbacks,
                     s.regions_created, s.regions_released, s.foreign_regions_mapped, s.attaches_local,
                     s.attaches_foreign, s.pid, n_cow_maps, bytes_cow_maps, n_copies, bytes_copies};
    SEXP r = PROTECT(Rf_mkNamed(VECSXP, names));
    for (int i = 0; i < 16; i++) SET_VECTOR_ELT(r, i, Rf_ScalarReal(vals[i]));
    UNPROTECT(1);
    return r;
}

/* Closes an object: TRUE, or FALSE when it was already closed (any other failure
 * is an error). */
static SEXP C_close_if_open(SEXP handle) {
    if (TYPEOF(handle) != RAWSXP) Rf_error("shard: a handle must be a raw vector");
    int rc = shard_close(RAW(handle), (uint64_t) XLENGTH(handle));
    if (rc == SHARD_CLOSED) return Rf_ScalarLogical(FALSE);
    if (rc != SHARD_OK) rust_error("close");
    return Rf_ScalarLogical(TRUE);
}

/* The option `nm` when it is NULL or a single string among `ok` (then *out is it,
 * or `dflt` for NULL); 0 when R must validate it. */
static int opt_string(const char *nm, const char *const *ok, int nok, SEXP *out) {
    SEXP o = Rf_GetOption1(Rf_install(nm));
    *out = o;
    if (o == R_NilValue) return 1;
    if (TYPEOF(o) != STRSXP || XLENGTH(o) != 1 || STRING_ELT(o, 0) == NA_STRING) return 0;
    for (int i = 0; i < nok; i++)
        if (strcmp(CHAR(STRING_ELT(o, 0)), ok[i]) == 0) return 1;
    return 0;
}

static int digits_after(const char *s, const char *prefix) {
    size_t n = strlen(prefix);
    if (strncmp(s, prefix, n) != 0 || s[n] == 0) return 0;
    for (const char *p = s + n; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    return 1;
}

/* The options list passed to the share entry points, list(backing, readonly,
 * huge_pages, copy_threads, name, placement), from the shard.* options; NULL when
 * an option is not in a plain valid form (R's check_options() then validates it
 * and names the bad one). The usual case costs no R closure call. */
static SEXP C_share_opts(SEXP backing, SEXP readonly, SEXP name) {
    SEXP numa = Rf_GetOption1(Rf_install("shard.numa"));
    if (numa != R_NilValue) {
        if (TYPEOF(numa) != STRSXP || XLENGTH(numa) != 1 || STRING_ELT(numa, 0) == NA_STRING) return R_NilValue;
        const char *p = CHAR(STRING_ELT(numa, 0));
        if (strcmp(p, "default") == 0) numa = R_NilValue;
        else if (!(strcmp(p, "local") == 0 || strcmp(p, "interleave") == 0 || digits_after(p, "bind:") ||
                   digits_after(p, "preferred:")))
            return R_NilValue;
    }
    SEXP huge = Rf_GetOption1(Rf_install("shard.huge_pages"));
    int h = TRUE;
    if (huge != R_NilValue) {
        if (TYPEOF(huge) != LGLSXP || XLENGTH(huge) != 1 || LOGICAL(huge)[0] == NA_LOGICAL) return R_NilValue;
        h = LOGICAL(huge)[0];
    }
    SEXP th = Rf_GetOption1(Rf_install("shard.copy_threads"));
    int threads = 0;
    if (th != R_NilValue) {
        double d;
        if (XLENGTH(th) != 1) return R_NilValue;
        if (TYPEOF(th) == INTSXP) d = INTEGER(th)[0] == NA_INTEGER ? -1 : INTEGER(th)[0];
        else if (TYPEOF(th) == REALSXP) d = REAL(th)[0];
        else return R_NilValue;
        if (!(d >= 0 && d <= 256 && d == (double) (int) d)) return R_NilValue;
        threads = (int) d;
    }
    static const char *const cow_ok[] = {"allow", "error"}, *const ser_ok[] = {"handle", "data"};
    SEXP tmp;
    if (!opt_string("shard.cow", cow_ok, 2, &tmp) || !opt_string("shard.serialize", ser_ok, 2, &tmp))
        return R_NilValue;
    SEXP r = PROTECT(Rf_allocVector(VECSXP, 6));
    SET_VECTOR_ELT(r, 0, backing);
    SET_VECTOR_ELT(r, 1, readonly);
    SET_VECTOR_ELT(r, 2, Rf_ScalarLogical(h));
    SET_VECTOR_ELT(r, 3, Rf_ScalarInteger(threads));
    SET_VECTOR_ELT(r, 4, name);
    SET_VECTOR_ELT(r, 5, numa);
    UNPROTECT(1);
    return r;
}

/* A little-endian unsigned integer of n bytes. */
static uint64_t le_u64(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* class(x) of an atomic vector without a class attribute (R >= 4.0 rules). */
static SEXP implicit_class(SEXP x) {
    SEXP dim = Rf_getAttrib(x, R_DimSymbol);
    if (dim != R_NilValue) {
        if (XLENGTH(dim) == 2) {
            SEXP r = PROTECT(Rf_allocVector(STRSXP, 2));
            SET_STRING_ELT(r, 0, Rf_mkChar("matrix"));
            SET_STRING_ELT(r, 1, Rf_mkChar("array"));
            UNPROTECT(1);
            return r;
        }
        return Rf_mkString("array");
    }
    switch (TYPEOF(x)) {
    case REALSXP: return Rf_mkString("numeric");
    case INTSXP: return Rf_mkString("integer");
    case LGLSXP: return Rf_mkString("logical");
    case CPLXSXP: return Rf_mkString("complex");
    case STRSXP: return Rf_mkString("character");
    case RAWSXP: return Rf_mkString("raw");
    default: Rf_error("shard: internal: implicit_class of a non-vector");
    }
    return R_NilValue;
}

/* The shard_shared object around a new handle (see new_shared() in R):
 * list(path, backing, size, readonly, class_info, handle, name, options).
 * class_info is computed here for a plain (non-object) vector, else given. */
static SEXP C_shared_object(SEXP handle, SEXP x, SEXP layout, SEXP readonly, SEXP name, SEXP opts,
                            SEXP class_info) {
    if (TYPEOF(handle) != RAWSXP || XLENGTH(handle) != SHARD_HANDLE_LEN)
        Rf_error("shard: a handle must be a raw vector of %d bytes", SHARD_HANDLE_LEN);
    const uint8_t *h = RAW(handle);
    static const char *backings[] = {"memfd", "shm", "mmap"};
    if (h[7] > 2) Rf_error("shard: corrupt handle");
    const char *names[] = {"path", "backing", "size", "readonly", "class_info", "handle", "name", "options", ""};
    SEXP r = PROTECT(Rf_mkNamed(VECSXP, names));
    if (h[7] == 0) {
        char buf[64];
        snprintf(buf, sizeof buf, "/proc/%u/fd/%u", (unsigned) le_u64(h + 8, 4), (unsigned) le_u64(h + 24, 4));
        SET_VECTOR_ELT(r, 0, Rf_mkString(buf));
    }
    SET_VECTOR_ELT(r, 1, Rf_mkString(backings[h[7]]));
    SET_VECTOR_ELT(r, 2, Rf_ScalarReal((double) le_u64(h + 72, 8)));
    SET_VECTOR_ELT(r, 3, readonly);
    if (class_info == R_NilValue) {
        const char *cn[] = {"class", "type", "length", "dim", "layout", ""};
        SEXP ci = PROTECT(Rf_mkNamed(VECSXP, cn));
        SET_VECTOR_ELT(ci, 0, implicit_class(x));
        SET_VECTOR_ELT(ci, 1, Rf_mkString(Rf_type2char(TYPEOF(x))));
        R_xlen_t n = Rf_xlength(x);
        SET_VECTOR_ELT(ci, 2, n <= INT_MAX ? Rf_ScalarInteger((int) n) : Rf_ScalarReal((double) n));
        SET_VECTOR_ELT(ci, 3, Rf_getAttrib(x, R_DimSymbol));
        SET_VECTOR_ELT(ci, 4, layout);
        SET_VECTOR_ELT(r, 4, ci);
        UNPROTECT(1);
    } else {
        SET_VECTOR_ELT(r, 4, class_info);
    }
    SET_VECTOR_ELT(r, 5, handle);
    SET_VECTOR_ELT(r, 6, name);
    const char *on[] = {"numa", "huge_pages", "copy_threads", ""};
    SEXP o = PROTECT(Rf_mkNamed(VECSXP, on));
    SEXP numa = VECTOR_ELT(opts, 5);
    SET_VECTOR_ELT(o, 0, numa == R_NilValue ? Rf_mkString("default") : numa);
    SET_VECTOR_ELT(o, 1, VECTOR_ELT(opts, 2));
    SET_VECTOR_ELT(o, 2, VECTOR_ELT(opts, 3));
    SET_VECTOR_ELT(r, 7, o);
    UNPROTECT(1);
    Rf_setAttrib(r, R_ClassSymbol, Rf_mkString("shard_shared"));
    UNPROTECT(1);
    return r;
}

/* fetch() of a plain vector object (no attributes): attach and return the ALTREP
 * vector (marked not mutable). Otherwise the view holder, for R to finish. */
static SEXP C_fetch(SEXP handle) {
    SEXP holder = PROTECT(attach_holder(handle));
    if (holder == R_NilValue) rust_error("attach");
    shard_view *v = holder_view(holder);
    shard_view_info i;
    if (shard_view_info_get(v, &i) != SHARD_OK) rust_error("view info");
    if (i.meta_len != 0 || i.closed || i.kind < K_F64 || i.kind > K_STR) { UNPROTECT(1); return holder; }
    R_xlen_t n = i.kind == K_STR ? (R_xlen_t) str_read(shard_view_data(v)).n
                                 : (R_xlen_t) (i.data_len / elt_size(i.kind));
    SEXP r = make_vec(holder, handle, i.kind, 0, i.data_len, n);
    MARK_NOT_MUTABLE(r);
    UNPROTECT(1);
    return r;
}

/* Measured placement of an attached object's pages: a double vector of pages per
 * NUMA node, named by node number, with attribute "absent" (pages not present). */
static SEXP C_view_numa(SEXP holder) {
    shard_view *v = holder_view(holder);
    if (!v) Rf_error("shard: released view");
    uint32_t nodes[1024], n = 0;
    uint64_t pages[1024], absent = 0;
    if (shard_view_numa(v, nodes, pages, 1024, &n, &absent) != SHARD_OK) rust_error("NUMA placement");
    if (n > 1024) n = 1024;
    SEXP r = PROTECT(Rf_allocVector(REALSXP, n));
    SEXP nm = PROTECT(Rf_allocVector(STRSXP, n));
    for (uint32_t i = 0; i < n; i++) {
        char buf[16];
        snprintf(buf, sizeof buf, "%u", nodes[i]);
        REAL(r)[i] = (double) pages[i];
        SET_STRING_ELT(nm, i, Rf_mkChar(buf));
    }
    Rf_setAttrib(r, R_NamesSymbol, nm);
    Rf_setAttrib(r, Rf_install("absent"), Rf_ScalarReal((double) absent));
    UNPROTECT(2);
    return r;
}

/* The last real huge-page fallback (a string), once, or NULL. */
static SEXP C_take_fallback(void) {
    const char *m = shard_take_fallback();
    return m ? Rf_mkString(m) : R_NilValue;
}

/* A u32 field as R decoded it (readBin): an integer, or a double above INT_MAX. */
static SEXP u32_sexp(uint64_t v) {
    return v <= INT_MAX ? Rf_ScalarInteger((int) v) : Rf_ScalarReal((double) v);
}

/* The fields of a handle that R reports (see docs/FORMAT.md). */
static SEXP C_decode_handle(SEXP handle) {
    if (TYPEOF(handle) != RAWSXP || XLENGTH(handle) != SHARD_HANDLE_LEN)
        Rf_error("shard: a handle must be a raw vector of %d bytes", SHARD_HANDLE_LEN);
    const uint8_t *h = RAW(handle);
    static const char *backings[] = {"memfd", "shm", "mmap"};
    const char *names[] = {"kind", "writable", "backing", "owner_pid", "region_id", "owner_start", "fd",
                           "generation", "offset", "len", "region_size", ""};
    SEXP r = PROTECT(Rf_mkNamed(VECSXP, names));
    SET_VECTOR_ELT(r, 0, Rf_ScalarInteger(h[5]));
    SET_VECTOR_ELT(r, 1, Rf_ScalarLogical(h[6] == 1));
    SET_VECTOR_ELT(r, 2, h[7] < 3 ? Rf_mkString(backings[h[7]]) : Rf_ScalarString(NA_STRING));
    SET_VECTOR_ELT(r, 3, u32_sexp(le_u64(h + 8, 4)));
    SET_VECTOR_ELT(r, 4, u32_sexp(le_u64(h + 12, 4)));
    SET_VECTOR_ELT(r, 5, Rf_ScalarReal((double) le_u64(h + 16, 8)));
    SET_VECTOR_ELT(r, 6, u32_sexp(le_u64(h + 24, 4)));
    SET_VECTOR_ELT(r, 7, u32_sexp(le_u64(h + 28, 4)));
    SET_VECTOR_ELT(r, 8, Rf_ScalarReal((double) le_u64(h + 64, 8)));
    SET_VECTOR_ELT(r, 9, Rf_ScalarReal((double) le_u64(h + 72, 8)));
    SET_VECTOR_ELT(r, 10, Rf_ScalarReal((double) le_u64(h + 80, 8)));
    UNPROTECT(1);
    return r;
}

/* The handle and position of a shard ALTREP vector, or NULL for other vectors. */
static SEXP C_vector_handle(SEXP x) {
    if (!ALTREP(x)) return R_NilValue;
    if (!(R_altrep_inherits(x, cls_real) || R_altrep_inherits(x, cls_int) || R_altrep_inherits(x, cls_lgl) ||
          R_altrep_inherits(x, cls_raw) || R_altrep_inherits(x, cls_cplx) || R_altrep_inherits(x, cls_str)))
        return R_NilValue;
    shard_vec *s = VEC(x);
    const char *names[] = {"handle", "byte_offset", "byte_len", "closed", "changed", ""};
    SEXP r = PROTECT(Rf_mkNamed(VECSXP, names));
    SET_VECTOR_ELT(r, 0, HANDLE(x));
    SET_VECTOR_ELT(r, 1, Rf_ScalarReal((double) s->byte_offset));
    SET_VECTOR_ELT(r, 2, Rf_ScalarReal((double) s->byte_len));
    SET_VECTOR_ELT(r, 3, Rf_ScalarLogical(vec_closed(x)));
    SET_VECTOR_ELT(r, 4, Rf_ScalarLogical(vec_changed(x)));
    UNPROTECT(1);
    return r;
}

/* Attributes travel as the serialized ATTRIB pairlist, so compact row names and
 * every internal form survive exactly. */
static SEXP C_get_attrib(SEXP x) { return ATTRIB(x); }

static SEXP C_set_attrib(SEXP x, SEXP attrs, SEXP strict) {
    if (attrs != R_NilValue && TYPEOF(attrs) != LISTSXP) Rf_error("shard: corrupt attributes");
    SET_ATTRIB(x, attrs);
    SET_OBJECT(x, Rf_getAttrib(x, R_ClassSymbol) != R_NilValue);
    if (Rf_asLogical(strict) == TRUE) MARK_NOT_MUTABLE(x);
    return x;
}

/* An ordinary R copy of a shard vector (attributes included). */
static SEXP C_materialize(SEXP x) {
    if (C_vector_handle(x) == R_NilValue) return x;
    R_xlen_t n = XLENGTH(x);
    SEXP r = PROTECT(Rf_allocVector(TYPEOF(x), n));
    if (TYPEOF(x) == STRSXP) {
        for (R_xlen_t i = 0; i < n; i++) SET_STRING_ELT(r, i, STRING_ELT(x, i));
    } else if (n > 0) {
        const void *src = DATAPTR_RO(x);
        memcpy(DATAPTR(r), src, (size_t) n * (TYPEOF(x) == REALSXP ? 8 : TYPEOF(x) == CPLXSXP ? 16 :
                                               TYPEOF(x) == RAWSXP ? 1 : 4));
    }
    DUPLICATE_ATTRIB(r, x);
    UNPROTECT(1);
    return r;
}

/* Identity of an R object (its address), for alias detection in deep sharing. */
static SEXP C_address(SEXP x) {
    char buf[32];
    snprintf(buf, sizeof buf, "%p", (void *) x);
    return Rf_mkString(buf);
}

/* A shallow copy of list x (attributes kept) with elements idx (1-based) replaced. */
static SEXP C_list_replace(SEXP x, SEXP idx, SEXP vals) {
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

/* --- low-level segments: create / write / read / protect ---------------- */

static SEXP C_segment_create(SEXP size, SEXP opts) {
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
static SEXP C_segment_write(SEXP handle, SEXP offset, SEXP data) {
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
static SEXP C_segment_read(SEXP holder, SEXP offset, SEXP n, SEXP type) {
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
    if (cnt > 0) memcpy(DATAPTR(r), shard_view_data(v) + (uint64_t) off, (size_t) cnt * es);
    UNPROTECT(1);
    return r;
}

static SEXP C_protect(SEXP handle) {
    if (TYPEOF(handle) != RAWSXP) Rf_error("shard: a handle must be a raw vector");
    if (shard_protect(RAW(handle), (uint64_t) XLENGTH(handle)) != SHARD_OK) rust_error("segment_protect");
    return R_NilValue;
}

static const R_CallMethodDef call_methods[] = {
    {"C_address", (DL_FUNC) &C_address, 1},
    {"C_list_replace", (DL_FUNC) &C_list_replace, 3},
    {"C_segment_create", (DL_FUNC) &C_segment_create, 2},
    {"C_segment_write", (DL_FUNC) &C_segment_write, 3},
    {"C_segment_read", (DL_FUNC) &C_segment_read, 4},
    {"C_protect", (DL_FUNC) &C_protect, 1},
    {"C_get_attrib", (DL_FUNC) &C_get_attrib, 1},
    {"C_set_attrib", (DL_FUNC) &C_set_attrib, 3},
    {"C_materialize", (DL_FUNC) &C_materialize, 1},
    {"C_share_vector", (DL_FUNC) &C_share_vector, 3},
    {"C_share_serialized", (DL_FUNC) &C_share_serialized, 3},
    {"C_share_composite", (DL_FUNC) &C_share_composite, 3},
    {"C_attach", (DL_FUNC) &C_attach, 1},
    {"C_view_info", (DL_FUNC) &C_view_info, 1},
    {"C_view_meta", (DL_FUNC) &C_view_meta, 1},
    {"C_view_vector", (DL_FUNC) &C_view_vector, 3},
    {"C_close", (DL_FUNC) &C_close, 1},
    {"C_owns", (DL_FUNC) &C_owns, 1},
    {"C_lookup_name", (DL_FUNC) &C_lookup_name, 1},
    {"C_sweep", (DL_FUNC) &C_sweep, 0},
    {"C_seal_all", (DL_FUNC) &C_seal_all, 0},
    {"C_stats", (DL_FUNC) &C_stats, 0},
    {"C_vector_handle", (DL_FUNC) &C_vector_handle, 1},
    {"C_take_fallback", (DL_FUNC) &C_take_fallback, 0},
    {"C_view_numa", (DL_FUNC) &C_view_numa, 1},
    {"C_shared_object", (DL_FUNC) &C_shared_object, 7},
    {"C_fetch", (DL_FUNC) &C_fetch, 1},
    {"C_close_if_open", (DL_FUNC) &C_close_if_open, 1},
    {"C_share_opts", (DL_FUNC) &C_share_opts, 3},
    {"C_decode_handle", (DL_FUNC) &C_decode_handle, 1},
    {NULL, NULL, 0}};

void R_init_shard(DllInfo *dll) {
    cls_real = make_class("shard_real", dll, REALSXP);
    cls_int = make_class("shard_integer", dll, INTSXP);
    cls_lgl = make_class("shard_logical", dll, LGLSXP);
    cls_raw = make_class("shard_raw", dll, RAWSXP);
    cls_cplx = make_class("shard_complex", dll, CPLXSXP);
    cls_str = make_class("shard_string", dll, STRSXP);
    R_registerRoutines(dll, NULL, call_methods, NULL, NULL);
    R_useDynamicSymbols(dll, FALSE);
    R_forceSymbols(dll, TRUE);
}
