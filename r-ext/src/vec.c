/*
 * Numeric ALTREP classes (double, integer, logical, raw, complex): the state of a
 * shared vector, the methods R calls on it (length, data pointer, element, region,
 * duplicate, serialize/unserialize, inspect), class creation and make_vec(), which
 * builds every shard vector of any type.
 */
#include "shard_int.h"

R_altrep_class_t cls_real, cls_int, cls_lgl, cls_raw, cls_cplx, cls_str;
__attribute__((visibility("hidden"))) elt_slot elt_slots[ELT_SLOTS];

void vec_finalize(SEXP p) {
    shard_vec *s = (shard_vec *) R_ExternalPtrAddr(p);
    if (s) {
        if (s->priv) shard_private_free(s->priv);
        str_cache_bytes -= s->cache_bytes;
        str_cache_elts -= s->cache_elts;
        free(s);
        R_ClearExternalPtr(p);
    }
}

uint64_t close_epoch = 1;

elt_slot *vec_slot_fill(SEXP x) {
    shard_vec *s = VEC(x);
    elt_slot *e = elt_slot_of(x);
    e->x = x;
    e->data = s->data;
    e->s = s;
    return e;
}

/* Every change of what element reads see goes through here (see elt_slots). */
void vec_set_data(SEXP x, shard_vec *s, const void *data) {
    s->data = data;
    elt_slot *e = elt_slot_of(x);
    e->x = x;
    e->data = data;
    e->s = s;
}

int vec_closed(SEXP x) { return shard_view_closed(vec_state(x)->view) != 0; }

void check_open_slow(shard_vec *s) {
    if (shard_view_closed(s->view))
        Rf_error("shard: this vector's shared memory has been closed (close() was called on its shared object); "
                 "use materialize() before close() to keep a copy");
    s->open_epoch = close_epoch;
}

void check_open(SEXP x) { check_open_vec(vec_state(x)); }

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

/* The data pointer of an ordinary (non-ALTREP) atomic vector, through the typed
 * accessors of the API (DATAPTR is not API in R >= 4.5). */
void *vec_ptr(SEXP v) {
    switch (TYPEOF(v)) {
    case REALSXP: return REAL(v);
    case INTSXP: return INTEGER(v);
    case LGLSXP: return LOGICAL(v);
    case RAWSXP: return RAW(v);
    case CPLXSXP: return COMPLEX(v);
    default: Rf_error("shard: internal: vec_ptr of a %s", Rf_type2char(TYPEOF(v)));
    }
    return NULL;
}

static R_xlen_t vec_length(SEXP x) { return vec_state(x)->length; }

/* Bulk entry points (Dataptr, Get_region, Extract_subset, Duplicate, Serialize)
 * check that the object is open; Elt does not (see docs/ARCHITECTURE.md). */
static void *vec_dataptr(SEXP x, Rboolean writable) {
    shard_vec *s = vec_state(x);
    check_open_vec(s);
    s->dataptr_calls += 1;
    if (s->priv_data) return s->priv_data;
    if (writable) return writable_data(x, s);
    return (void *) s->base;
}

static const void *vec_dataptr_or_null(SEXP x) {
    shard_vec *s = vec_state(x);
    /* NULL when closed: the caller falls back to Get_region, which errors. */
    if (s->open_epoch != close_epoch && shard_view_closed(s->view)) return NULL;
    return s->data;
}

/* A new vector over the same shared bytes, O(1); its own private state. */
SEXP dup_vec(SEXP x, shard_vec *s) {
    SEXP r = make_vec(HOLDER(x), HANDLE(x), s->kind, s->byte_offset, s->byte_len, s->length);
    return r;
}

static SEXP vec_duplicate(SEXP x, Rboolean deep) {
    shard_vec *s = vec_state(x);
    if (strict_mode()) strict_error();
    check_open_vec(s);
    if (vec_changed(x)) {
        /* The vector has private changes: R copies them (count it). */
        n_copies += 1;
        bytes_copies += (double) s->byte_len;
        return NULL;
    }
    return dup_vec(x, s);
}

SEXP vec_serialized_state(SEXP x) {
    shard_vec *s = vec_state(x);
    check_open_vec(s);
    static SEXP sym = NULL;
    if (sym == NULL) sym = Rf_install("shard.serialize");
    SEXP o = Rf_GetOption1(sym);
    int as_data = TYPEOF(o) == STRSXP && XLENGTH(o) == 1 && strcmp(CHAR(STRING_ELT(o, 0)), "data") == 0;
    /* Private changes or the "data" option: serialize the values. */
    if (as_data || vec_changed(x)) return NULL;
    SEXP st = PROTECT(Rf_allocVector(VECSXP, 5));
    SET_VECTOR_ELT(st, 0, HANDLE(x));
    SET_VECTOR_ELT(st, 1, Rf_ScalarReal((double) s->byte_offset));
    SET_VECTOR_ELT(st, 2, Rf_ScalarReal((double) s->byte_len));
    SET_VECTOR_ELT(st, 3, Rf_ScalarReal((double) s->length));
    SET_VECTOR_ELT(st, 4, Rf_ScalarInteger(s->kind));
    UNPROTECT(1);
    return st;
}

/* The state is what vec_serialized_state() wrote, or bytes someone forged: its
 * shape is checked here and its offset, length, count and kind against the
 * attached object by Rust (shard_validate_vector_state) before a vector is made. */
static SEXP vec_unserialize(SEXP cls, SEXP st) {
    if (TYPEOF(st) != VECSXP || XLENGTH(st) != 5 || TYPEOF(VECTOR_ELT(st, 0)) != RAWSXP ||
        XLENGTH(VECTOR_ELT(st, 0)) != SHARD_HANDLE_LEN || TYPEOF(VECTOR_ELT(st, 4)) != INTSXP ||
        XLENGTH(VECTOR_ELT(st, 4)) != 1)
        Rf_error("shard: cannot restore a shared vector: its serialized state is malformed (not a handle, "
                 "offset, length, count and kind); the bytes were changed or come from another version");
    for (int k = 1; k <= 3; k++)
        if (TYPEOF(VECTOR_ELT(st, k)) != REALSXP || XLENGTH(VECTOR_ELT(st, k)) != 1)
            Rf_error("shard: cannot restore a shared vector: its serialized state is malformed (element %d is "
                     "not a number); the bytes were changed or come from another version", k + 1);
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
    shard_leaf L;
    int rc = shard_validate_vector_state(holder_view(holder), INTEGER(VECTOR_ELT(st, 4))[0], REAL(VECTOR_ELT(st, 1))[0],
                                         REAL(VECTOR_ELT(st, 2))[0], REAL(VECTOR_ELT(st, 3))[0], &L);
    if (rc != SHARD_OK) {
        const char *m = shard_last_error();
        size_t n = strlen(m) + 1;
        char *buf = R_alloc(n, 1);
        memcpy(buf, m, n);
        Rf_error("shard: cannot restore a shared vector: %s", buf);
    }
    SEXP r = PROTECT(make_vec(holder, handle, (int) L.kind, L.offset, L.len, (R_xlen_t) L.count));
    /* Not mutable, as from fetch(): R duplicates (O(1)) before modifying it. */
    MARK_NOT_MUTABLE(r);
    UNPROTECT(1);
    UNPROTECT(1);
    return r;
}

static Rboolean vec_inspect(SEXP x, int pre, int deep, int pvec, void (*inspect_subtree)(SEXP, int, int, int)) {
    shard_vec *s = VEC(x);
    const char *state = s->priv ? ", private copy-on-write" : s->kind == K_STR ?
        (s->modified ? ", changed" : s->data ? ", CHARSXP cache" : "") :
        (s->priv_data ? ", private copy" : "");
    Rprintf(" shard %s [%s%s] length %.0f, %.0f bytes at data offset %.0f\n", Rf_type2char(TYPEOF(x)),
            vec_closed(x) ? "closed" : "open", state, (double) s->length, (double) s->byte_len,
            (double) s->byte_offset);
    return TRUE;
}

/* Element reads: a load through the cached data pointer (see elt_slots). After
 * close() the pages stay mapped while this vector lives, so a read never faults;
 * it may see the old values (or, in the owner, a reused slot's), never memory
 * outside the object. */
#define ELT_METHOD(name, T)                                                    \
    static T __attribute__((noinline)) name##_slow(SEXP x, R_xlen_t i) {      \
        return ((const T *) vec_slot_fill(x)->data)[i];                        \
    }                                                                          \
    static T name(SEXP x, R_xlen_t i) {                                        \
        elt_slot *e = elt_slot_of(x);                                          \
        if (e->x == x) return ((const T *) e->data)[i];                        \
        return name##_slow(x, i);                                              \
    }
ELT_METHOD(real_elt, double)
ELT_METHOD(int_elt, int)
ELT_METHOD(raw_elt, Rbyte)
ELT_METHOD(cplx_elt, Rcomplex)

#define GET_REGION(name, T)                                                  \
    static R_xlen_t name(SEXP x, R_xlen_t i, R_xlen_t n, T *buf) {           \
        shard_vec *s = vec_state(x);                                         \
        check_open_vec(s);                                                   \
        R_xlen_t len = s->length;                                            \
        R_xlen_t k = (i + n > len) ? len - i : n;                            \
        if (k > 0) memcpy(buf, (const T *) s->data + i, (size_t) k * sizeof(T)); \
        return k < 0 ? 0 : k;                                                \
    }
GET_REGION(real_region, double)
GET_REGION(int_region, int)
GET_REGION(raw_region, Rbyte)
GET_REGION(cplx_region, Rcomplex)

/* x[indx] for the positions R's makeSubscript() produced (1-based integers or
 * doubles; NA, 0 or past the end give NA), exactly as R's ExtractSubset() does,
 * with loads from the data instead of one Elt call per element. R adds the names. */
#define EXTRACT_LOOP(OUT, SRC, NAV)                                              \
    do {                                                                         \
        if (TYPEOF(indx) == INTSXP) {                                            \
            const int *pi = INTEGER_RO(indx);                                    \
            for (R_xlen_t k = 0; k < n; k++) {                                   \
                int ii = pi[k];                                                  \
                OUT[k] = (ii > 0 && (R_xlen_t) ii <= nx) ? SRC[ii - 1] : NAV;    \
            }                                                                    \
        } else {                                                                 \
            const double *pd = REAL_RO(indx);                                    \
            for (R_xlen_t k = 0; k < n; k++) {                                   \
                double dm = pd[k] - 1;                                           \
                OUT[k] = (R_FINITE(dm) && dm > -1 && dm < (double) nx) ? SRC[(R_xlen_t) dm] : NAV; \
            }                                                                    \
        }                                                                        \
    } while (0)

static SEXP vec_extract_subset(SEXP x, SEXP indx, SEXP call) {
    if (TYPEOF(indx) != INTSXP && TYPEOF(indx) != REALSXP) return NULL;
    shard_vec *s = vec_state(x);
    check_open_vec(s);
    R_xlen_t n = XLENGTH(indx), nx = s->length;
    SEXP r = PROTECT(Rf_allocVector(TYPEOF(x), n));
    switch (TYPEOF(x)) {
    case REALSXP: { double *o = REAL(r); const double *d = s->data; EXTRACT_LOOP(o, d, NA_REAL); break; }
    case INTSXP: { int *o = INTEGER(r); const int *d = s->data; EXTRACT_LOOP(o, d, NA_INTEGER); break; }
    case LGLSXP: { int *o = LOGICAL(r); const int *d = s->data; EXTRACT_LOOP(o, d, NA_LOGICAL); break; }
    case RAWSXP: { Rbyte *o = RAW(r); const Rbyte *d = s->data; EXTRACT_LOOP(o, d, (Rbyte) 0); break; }
    case CPLXSXP: {
        Rcomplex *o = COMPLEX(r), na;
        na.r = NA_REAL; na.i = NA_REAL;
        const Rcomplex *d = s->data;
        EXTRACT_LOOP(o, d, na);
        break;
    }
    default: UNPROTECT(1); return NULL;
    }
    UNPROTECT(1);
    return r;
}

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
        R_set_altvec_Extract_subset_method(c, vec_extract_subset);
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

/* View holders (attach.c): tagged "shard_view" with a finalizer that frees the
 * view, or, made by fetch() for its one vector, "shard_view_lazy" without one:
 * that vector's state frees the view with itself (vec_view_finalize) unless a
 * second vector was made from the holder, which gives the holder its finalizer
 * first (holder_commit, from make_vec). Only make_vec's states reach a holder
 * (HOLDER(x)), so every other vector of it commits it. Saves a weak reference
 * (two R allocations and a finalizer run) per small fetch. */
SEXP holder_tag(void) {
    static SEXP t = NULL; /* a symbol: installed once, never collected */
    if (t == NULL) t = Rf_install("shard_view");
    return t;
}

SEXP holder_lazy_tag(void) {
    static SEXP t = NULL;
    if (t == NULL) t = Rf_install("shard_view_lazy");
    return t;
}

void holder_commit(SEXP holder) {
    if (R_ExternalPtrTag(holder) != holder_lazy_tag()) return;
    R_SetExternalPtrTag(holder, holder_tag());
    R_RegisterCFinalizerEx(holder, view_finalize, TRUE);
}

/* The finalizer of a vector state that may own its holder's view. */
static void vec_view_finalize(SEXP p) {
    SEXP holder = R_ExternalPtrProtected(p);
    vec_finalize(p); /* its private mapping first, as with two finalizers */
    if (TYPEOF(holder) == EXTPTRSXP && R_ExternalPtrTag(holder) == holder_lazy_tag()) view_finalize(holder);
}

static SEXP make_vec_impl(SEXP holder, SEXP handle, int kind, uint64_t byte_offset, uint64_t byte_len, R_xlen_t n,
                          int owning);

SEXP make_vec(SEXP holder, SEXP handle, int kind, uint64_t byte_offset, uint64_t byte_len, R_xlen_t n) {
    holder_commit(holder);
    return make_vec_impl(holder, handle, kind, byte_offset, byte_len, n, 0);
}

/* fetch()'s vector over a lazy holder (see holder_tag). Objects of 4 KiB or
 * more commit the holder at once (their plain-vector path may fail in R with
 * the holder unowned); below, every error commits it before it is raised, so
 * the view is never left without an owner (an R allocation failure aside). */
SEXP make_vec_owning(SEXP holder, SEXP handle, int kind, uint64_t byte_offset, uint64_t byte_len, R_xlen_t n) {
    if (byte_len >= 4096) return make_vec(holder, handle, kind, byte_offset, byte_len, n);
    return make_vec_impl(holder, handle, kind, byte_offset, byte_len, n, 1);
}

static SEXP make_vec_impl(SEXP holder, SEXP handle, int kind, uint64_t byte_offset, uint64_t byte_len, R_xlen_t n,
                          int owning) {
#define COMMIT_BEFORE_ERROR() \
    do {                      \
        if (owning) holder_commit(holder); \
    } while (0)
    shard_view *v = holder_view(holder);
    if (v == NULL) Rf_error("shard: the shared object's view has been released");
    /* Large numeric vectors of read-only objects: a plain vector over the pages (mapped.c). */
    if (kind != K_STR) {
        SEXP pv = plain_make(v, handle, kind, byte_offset, byte_len, n);
        if (pv != R_NilValue) return pv;
    }
    R_altrep_class_t c;
    switch (kind) {
    case K_F64: c = cls_real; break;
    case K_I32: c = cls_int; break;
    case K_LGL: c = cls_lgl; break;
    case K_RAW: case K_SERIALIZED: case K_BYTES: c = cls_raw; break;
    case K_CPLX: c = cls_cplx; break;
    case K_STR: c = cls_str; break;
    default: COMMIT_BEFORE_ERROR(); Rf_error("shard: kind %d is not a vector", kind);
    }
    /* Strings: the layout is decoded and checked against the object by Rust
     * (src/payload.rs) before any element is read; n < 0 takes its count. */
    shard_strings st;
    memset(&st, 0, sizeof st);
    if (kind == K_STR) {
        if (shard_payload_strings(v, byte_offset, byte_len, &st) != SHARD_OK) {
            COMMIT_BEFORE_ERROR();
            rust_error("strings");
        }
        if (n < 0) n = (R_xlen_t) st.n;
        if ((uint64_t) n != st.n) {
            COMMIT_BEFORE_ERROR();
            Rf_error("shard: corrupt character data in a shared object (%.0f strings, %.0f expected)", (double) st.n,
                     (double) n);
        }
    }
    shard_vec *s = (shard_vec *) calloc(1, sizeof(shard_vec));
    if (!s) {
        COMMIT_BEFORE_ERROR();
        Rf_error("shard: out of memory");
    }
#undef COMMIT_BEFORE_ERROR
    s->base = shard_view_data(v) + byte_offset;
    s->view = v;
    s->data = kind == K_STR ? NULL : s->base;
    s->huge = -1;
    s->length = n;
    s->kind = kind;
    s->byte_offset = byte_offset;
    s->byte_len = byte_len;
    s->str = st;
    SEXP p = PROTECT(R_MakeExternalPtr(s, handle, holder));
    R_RegisterCFinalizerEx(p, owning ? vec_view_finalize : vec_finalize, TRUE);
    SEXP r = R_new_altrep(c, p, R_NilValue);
    vec_set_data(r, s, s->data);
    UNPROTECT(1);
    return r;
}
