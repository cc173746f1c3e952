/*
 * Plain vectors over shared pages: a fetched double, integer, logical, raw or
 * complex vector as an ORDINARY (non-ALTREP) R vector whose data pointer is the
 * object's pages, so that R reads it exactly as it reads a resident vector (R
 * 4.2 calls an ALTREP method per element in its subsetting, range, match and
 * table code: no ALTREP class can read at resident speed there).
 *
 * R's public API for vectors in foreign memory is Rf_allocVector3() with an
 * R_allocator_t (R_ext/Rallocators.h): R asks mem_alloc() for one block of
 * `size` bytes and lays out [R_allocator_t copy][vector header][data] in it, and
 * calls mem_free() when the garbage collector frees the vector. plain_alloc()
 * answers with a private copy-on-write mapping of the vector's bytes placed so
 * that the data lands right after R's header (shard_plain_map, Rust: anonymous
 * pages under the header, the object's file mapped MAP_PRIVATE behind them; the
 * header size is what R asked for minus the data bytes, never hard-coded).
 * Writes (R's header, a buggy C routine writing in place) copy pages privately;
 * the sealed shared bytes never change. The vector is marked not mutable, so R
 * duplicates before any change. plain_free() runs inside the GC: it makes no R
 * call, only unmaps and drops the Rust view the mapping holds (which keeps the
 * object attached, its flock held, until then).
 *
 * A registry of live plain vectors keyed by data pointer tells them apart from
 * other ordinary vectors (shared_info(), is_shared_vector(), materialize(),
 * views): plain_lookup().
 *
 * When it applies (plain_make), by plain_mode:
 * - -1, the policy (fetch(x) and fetch(x, plain = NULL)): option
 *   shard.plain_min_bytes (unset: off, in the master and in pool workers;
 *   never below 4096) or more bytes, a read-only object on
 *   4 KiB pages (a private mapping of hugetlb pages needs a reservation: those
 *   stay ALTREP), not under options(shard.cow = "error") (strict mode needs
 *   ALTREP's Duplicate hook), fewer than plain_cap live plain vectors. Strings
 *   stay ALTREP.
 * - 0 (fetch(x, plain = FALSE)): never; every vector is ALTREP.
 * - 1 (fetch(x, plain = TRUE)): an ordinary vector always: a mapping where one
 *   can be made (the policy's conditions less the size option and strict mode:
 *   the caller asked for an ordinary object), else a copy (below 4096 bytes a
 *   copy is cheaper than a mapping; hugetlb or writable objects; over the cap).
 *   Strings are materialized afterwards by C_plain_finish (string.c's
 *   str_plain). fetch() sets and restores the mode from R (on.exit).
 *
 * The cap: each plain vector costs two mappings (the anonymous header page and
 * the private file mapping), and the kernel allows vm.max_map_count per
 * process; a data.frame of thousands of columns must not use them up (then
 * every later mmap, R's own included, fails). Plain vectors may use a quarter of
 * the limit (max_map_count / 8 vectors; 8191 at the default 65530); beyond it
 * new vectors stay ALTREP (the policy) or are copied (plain = TRUE), counted in
 * plain_capped.
 */
#include <R_ext/Rallocators.h>
#include "shard_int.h"

typedef struct plain_ctx {
    shard_view *view;          /* during allocation only (the holder's view) */
    shard_plain *map;          /* the mapping; NULL: a malloc'd copy (fallback) */
    void *block;               /* what mem_alloc returned */
    const void *data;          /* R's data pointer for this vector */
    uint64_t byte_offset, byte_len;
    R_xlen_t length;
    int kind;
    SEXPTYPE type;
    uint8_t handle[SHARD_HANDLE_LEN];
    struct plain_ctx *prev, *next;
} plain_ctx;

static plain_ctx *plain_live = NULL;
double plain_count = 0, plain_bytes = 0, plain_made = 0, plain_fallbacks = 0, plain_capped = 0, plain_copies = 0;

/* -1: the policy; 0: ALTREP; 1: ordinary vectors (see above). */
static int plain_mode = -1;

/* Live plain vectors allowed (see above); < 0 until first needed. */
static double plain_cap = -1;

static double plain_cap_now(void) {
    if (plain_cap < 0) {
        uint64_t m = shard_max_map_count();
        plain_cap = m >= 64 ? (double) (m / 8) : 8191; /* unreadable: the default limit's share */
    }
    return plain_cap;
}

static void plain_unlink(plain_ctx *c) {
    if (c->prev) c->prev->next = c->next; else if (plain_live == c) plain_live = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void *plain_alloc(R_allocator_t *al, size_t size) {
    plain_ctx *c = (plain_ctx *) al->data;
    size_t data_bytes = (size_t) ((c->byte_len + 7) & ~(uint64_t) 7); /* R rounds data to 8-byte cells */
    if (size < data_bytes) return NULL;
    size_t lead = size - data_bytes;
    shard_plain *p = NULL;
    uint8_t *b = NULL;
    if (shard_plain_map(c->view, c->byte_offset, c->byte_len, (uint64_t) lead, &p, &b) == SHARD_OK && p) {
        c->map = p;
        c->block = b;
        c->data = b + lead;
        return b;
    }
    /* The kernel refused the mapping (out of map count, or memory): a copy, still
     * an ordinary vector (no R call here: R is inside allocVector3). */
    b = (uint8_t *) malloc(size);
    if (!b) return NULL;
    memcpy(b + lead, shard_view_data(c->view) + c->byte_offset, (size_t) c->byte_len);
    plain_fallbacks += 1;
    c->block = b;
    c->data = b + lead;
    return b;
}

/* Called by R's garbage collector (custom_node_free): no R API here. `al` is the
 * allocator copy at the start of the block, so read the context first. */
static void plain_free(R_allocator_t *al, void *block) {
    plain_ctx *c = (plain_ctx *) al->data;
    plain_unlink(c);
    plain_count -= 1;
    plain_bytes -= (double) c->byte_len;
    if (c->map) shard_plain_free(c->map);
    else free(block);
    free(c);
}

/* Option shard.plain_min_bytes: vectors of at least this many bytes are plain.
 * Unset: Inf (off; see docs/ARCHITECTURE.md "Reading fetched objects" for why
 * it is not the default: a plain vector serializes as its values, not as a
 * handle, and reads its old values after close() instead of erroring). */
static double plain_min_bytes(void) {
    static SEXP sym = NULL;
    if (sym == NULL) sym = Rf_install("shard.plain_min_bytes");
    SEXP o = Rf_GetOption1(sym);
    if (o == R_NilValue) return R_PosInf;
    if ((TYPEOF(o) != REALSXP && TYPEOF(o) != INTSXP) || XLENGTH(o) != 1 || ISNAN(Rf_asReal(o)) ||
        Rf_asReal(o) < 0)
        Rf_error("shard: options(shard.plain_min_bytes) must be one number of bytes >= 0 (Inf: fetched vectors "
                 "stay ALTREP); it is not");
    return Rf_asReal(o);
}

/* An ordinary copy of the vector's bytes (plain = TRUE where no mapping can be
 * made). The caller checked that the bytes lie inside the view's data. */
static SEXP plain_copy(shard_view *v, int kind, uint64_t byte_offset, uint64_t byte_len, R_xlen_t n) {
    SEXP r = Rf_allocVector(kind_type(kind), n);
    uint64_t want = (uint64_t) n * elt_size(kind);
    if (want > byte_len) Rf_error("shard: internal: a vector of %.0f elements in %.0f bytes", (double) n, (double) byte_len);
    if (want) memcpy(vec_ptr(r), shard_view_data(v) + byte_offset, (size_t) want);
    plain_copies += 1;
    return r;
}

/* A plain vector over the object's pages (or, under plain = TRUE, a copy), or
 * R_NilValue when it does not apply (the caller makes the ALTREP vector). Not
 * marked not mutable here: make_vec's callers do that. */
SEXP plain_make(shard_view *v, SEXP handle, int kind, uint64_t byte_offset, uint64_t byte_len, R_xlen_t n) {
    if (plain_mode == 0) return R_NilValue;
    if (kind != K_F64 && kind != K_I32 && kind != K_LGL && kind != K_RAW && kind != K_CPLX) return R_NilValue;
    int force = plain_mode == 1;
    if (n < 0) return R_NilValue;
    /* Below a page a mapping costs more than it saves (and small objects'
     * round trip stays free of the option lookup). */
    if (!force && (n == 0 || byte_len < 4096 || (double) byte_len < plain_min_bytes() || strict_mode()))
        return R_NilValue;
    shard_view_info i;
    if (shard_view_info_get(v, &i) != SHARD_OK) rust_error("view info");
    /* Closed: the ALTREP vector raises the closed error on use. */
    if (i.closed || byte_offset + byte_len > i.data_len) return R_NilValue;
    int mappable = n > 0 && byte_len >= 4096 && !i.writable && i.page_size == 4096 && byte_offset % 8 == 0 &&
                   TYPEOF(handle) == RAWSXP && XLENGTH(handle) == SHARD_HANDLE_LEN;
    if (mappable && (double) plain_count >= plain_cap_now()) {
        plain_capped += 1;
        mappable = 0;
    }
    if (!mappable) return force ? plain_copy(v, kind, byte_offset, byte_len, n) : R_NilValue;
    SEXPTYPE type = kind_type(kind);
    plain_ctx *c = (plain_ctx *) calloc(1, sizeof(plain_ctx));
    if (!c) Rf_error("shard: out of memory");
    c->view = v;
    c->byte_offset = byte_offset;
    c->byte_len = byte_len;
    c->length = n;
    c->kind = kind;
    c->type = type;
    memcpy(c->handle, RAW(handle), SHARD_HANDLE_LEN);
    R_allocator_t al = {plain_alloc, plain_free, NULL, c};
    /* allocVector3 may run the GC first (it frees other plain vectors: fine, c is
     * not linked yet) and errors when mem_alloc returns NULL (c leaks: only on
     * malloc failure, which R reports as an allocation error). */
    SEXP r = Rf_allocVector3(type, n, &al);
    c->view = NULL;
    c->next = plain_live;
    if (plain_live) plain_live->prev = c;
    plain_live = c;
    plain_count += 1;
    plain_bytes += (double) byte_len;
    plain_made += 1;
    return r;
}

/* fetch(plain =): sets the mode (NULL: only reads it) and returns the one before,
 * which fetch() restores with on.exit. */
SEXP C_plain_mode(SEXP mode) {
    int old = plain_mode;
    if (mode != R_NilValue) {
        int m = Rf_asInteger(mode);
        if (m != -1 && m != 0 && m != 1) Rf_error("shard: internal: plain mode %d", m);
        plain_mode = m;
    }
    return Rf_ScalarInteger(old);
}

/* The cap on live plain vectors (a test hook: NULL only reads it; a negative
 * value goes back to the one derived from vm.max_map_count). */
SEXP C_plain_cap(SEXP cap) {
    double old = plain_cap_now();
    if (cap != R_NilValue) {
        double c = Rf_asReal(cap);
        if (ISNAN(c)) Rf_error("shard: internal: plain cap NA");
        plain_cap = c;
        if (c < 0) plain_cap_now();
    }
    return Rf_ScalarReal(old);
}

static int is_our_string(SEXP x) { return ALTREP(x) && TYPEOF(x) == STRSXP && R_altrep_inherits(x, cls_str); }

static int is_our_number(SEXP x) {
    return ALTREP(x) && (R_altrep_inherits(x, cls_real) || R_altrep_inherits(x, cls_int) ||
                         R_altrep_inherits(x, cls_lgl) || R_altrep_inherits(x, cls_raw) ||
                         R_altrep_inherits(x, cls_cplx));
}

/* The ordinary equivalent of one fetched value for fetch(plain = TRUE): shard's
 * ALTREP strings materialized (str_plain: each CHARSXP made once), any shard
 * ALTREP numeric vector left (a closed object: the copy raises its error)
 * copied, list elements (data.frame columns, composite leaves) done in place:
 * the list was made by this fetch. Attributes come from the serialized
 * metadata: ordinary already. */
static SEXP plain_finish(SEXP x, int depth) {
    if (is_our_string(x)) {
        SEXP r = PROTECT(str_plain(x));
        SHALLOW_DUPLICATE_ATTRIB(r, x);
        UNPROTECT(1);
        return r;
    }
    if (is_our_number(x)) return C_materialize(x);
    if (TYPEOF(x) == VECSXP && !ALTREP(x) && depth < 10000) {
        R_xlen_t n = XLENGTH(x);
        for (R_xlen_t k = 0; k < n; k++) {
            SEXP e = VECTOR_ELT(x, k);
            SEXP f = plain_finish(e, depth + 1);
            if (f != e) SET_VECTOR_ELT(x, k, f);
        }
    }
    return x;
}

SEXP C_plain_finish(SEXP x) { return plain_finish(x, 0); }

/* The registry entry of x if it is a live plain shard vector (or R's wrapper
 * ALTREP around one, which `dim<-` and friends make of long vectors: the wrapper
 * reads through data1 until it is written, then data1 is a copy), else NULL. */
static plain_ctx *plain_find(SEXP x) {
    if (plain_live == NULL) return NULL;
    SEXPTYPE t = TYPEOF(x);
    if (ALTREP(x)) {
        SEXP d = R_altrep_data1(x);
        if (d == R_NilValue || ALTREP(d) || TYPEOF(d) != t || XLENGTH(d) != XLENGTH(x)) return NULL;
        x = d;
    }
    if (t != REALSXP && t != INTSXP && t != LGLSXP && t != RAWSXP && t != CPLXSXP) return NULL;
    const void *d = vec_ptr(x);
    for (plain_ctx *c = plain_live; c; c = c->next)
        if (c->data == d) return c->type == t && c->length == XLENGTH(x) ? c : NULL;
    return NULL;
}

int plain_lookup(SEXP x, plain_info *out) {
    plain_ctx *c = plain_find(x);
    if (!c) return 0;
    if (out) {
        out->byte_offset = c->byte_offset;
        out->byte_len = c->byte_len;
        out->kind = c->kind;
        out->closed = c->map ? shard_plain_closed(c->map) != 0 : 0; /* a fallback copy cannot tell */
        out->handle = c->handle;
    }
    return 1;
}

/* C_vector_handle() of a plain shard vector: the same fields as for an ALTREP
 * one (changed: R never writes it in place; deny: never, such vectors are ALTREP;
 * dataptr_calls: NA, R reads the pointer directly). NULL for other vectors. */
SEXP plain_vector_handle(SEXP x) {
    plain_info pi;
    if (!plain_lookup(x, &pi)) return R_NilValue;
    const char *names[] = {"handle", "byte_offset", "byte_len", "closed", "changed", "deny", "dataptr_calls",
                           "plain", ""};
    SEXP r = PROTECT(Rf_mkNamed(VECSXP, names));
    SEXP h = Rf_allocVector(RAWSXP, SHARD_HANDLE_LEN);
    SET_VECTOR_ELT(r, 0, h);
    memcpy(RAW(h), pi.handle, SHARD_HANDLE_LEN);
    SET_VECTOR_ELT(r, 1, Rf_ScalarReal((double) pi.byte_offset));
    SET_VECTOR_ELT(r, 2, Rf_ScalarReal((double) pi.byte_len));
    SET_VECTOR_ELT(r, 3, Rf_ScalarLogical(pi.closed));
    SET_VECTOR_ELT(r, 4, Rf_ScalarLogical(FALSE));
    SET_VECTOR_ELT(r, 5, Rf_ScalarLogical(FALSE));
    SET_VECTOR_ELT(r, 6, Rf_ScalarReal(NA_REAL));
    SET_VECTOR_ELT(r, 7, Rf_ScalarLogical(TRUE));
    UNPROTECT(1);
    return r;
}

/* Counters for shard_diagnostics(): live plain vectors, their bytes, how many
 * were made, how many fell back to a copy (the kernel refused the mapping), how
 * many the cap kept from being mapped, how many plain = TRUE copied, the cap. */
SEXP C_plain_stats(void) {
    const char *names[] = {"plain_vectors", "plain_bytes", "plain_made", "plain_fallbacks", "plain_capped",
                           "plain_copies", "plain_cap", ""};
    SEXP r = PROTECT(Rf_mkNamed(VECSXP, names));
    SET_VECTOR_ELT(r, 0, Rf_ScalarReal(plain_count));
    SET_VECTOR_ELT(r, 1, Rf_ScalarReal(plain_bytes));
    SET_VECTOR_ELT(r, 2, Rf_ScalarReal(plain_made));
    SET_VECTOR_ELT(r, 3, Rf_ScalarReal(plain_fallbacks));
    SET_VECTOR_ELT(r, 4, Rf_ScalarReal(plain_capped));
    SET_VECTOR_ELT(r, 5, Rf_ScalarReal(plain_copies));
    SET_VECTOR_ELT(r, 6, Rf_ScalarReal(plain_cap_now()));
    UNPROTECT(1);
    return r;
}

/* TRUE when x is a plain shard vector (a test and diagnostic hook). */
SEXP C_is_plain_vector(SEXP x) { return Rf_ScalarLogical(plain_find(x) != NULL); }

/* A view of a plain shard vector x: n elements of `kind` from byte `byte_off` of
 * x's bytes, a new shard vector over the same object (plain again when it is
 * large enough, else ALTREP), not mutable. The caller checked the range. */
SEXP plain_subview(SEXP x, int kind, uint64_t byte_off, uint64_t byte_len, R_xlen_t n) {
    plain_info pi;
    if (!plain_lookup(x, &pi)) Rf_error("shard: internal: plain_subview of a vector that is not shared");
    if (pi.closed)
        Rf_error("shard: this vector's shared memory has been closed (close() was called on its shared object); "
                 "use materialize() before close() to keep a copy");
    SEXP handle = PROTECT(Rf_allocVector(RAWSXP, SHARD_HANDLE_LEN));
    memcpy(RAW(handle), pi.handle, SHARD_HANDLE_LEN);
    SEXP holder = PROTECT(attach_holder(handle));
    if (holder == R_NilValue) rust_error("attach");
    SEXP r = PROTECT(make_vec(holder, handle, kind, pi.byte_offset + byte_off, byte_len, n));
    MARK_NOT_MUTABLE(r);
    UNPROTECT(3);
    return r;
}
