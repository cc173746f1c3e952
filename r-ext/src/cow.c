/*
 * Writable and copy-on-write paths: what R gets when it asks a shard vector for a
 * writable pointer (a private copy-on-write mapping, or a private copy), whether R
 * has changed it since, strict mode, and the copy counters shard_diagnostics()
 * reports. The shared bytes are never handed out writable.
 */
#include "shard_int.h"

/* Counters reported by shard_diagnostics(). */
double n_cow_maps = 0, bytes_cow_maps = 0, n_copies = 0, bytes_copies = 0, n_ro_grants = 0, bytes_ro_grants = 0;

int strict_mode(void) {
    static SEXP sym = NULL;
    if (sym == NULL) sym = Rf_install("shard.cow");
    SEXP o = Rf_GetOption1(sym);
    return TYPEOF(o) == STRSXP && XLENGTH(o) == 1 && strcmp(CHAR(STRING_ELT(o, 0)), "error") == 0;
}

void strict_error(void) {
    Rf_error("shard: modifying or copying a shared vector is not allowed (options(shard.cow = \"error\")); "
             "use materialize() for a private copy");
}

/* A writable pointer for R. R asks for one even to read (range(), which.max(),
 * ==, identical(), sort()), and writes through it only into a vector it may
 * modify in place, i.e. one that is not shared (R's copy-on-modify rule:
 * MAYBE_SHARED vectors are duplicated first; shard vectors from fetch() and
 * unserialize are marked not mutable, and Duplicate makes a fresh one).
 *
 *  - hugetlb objects, vector shared: the read-only shared pointer. A private
 *    mapping of hugetlb pages reserves the whole object in huge pages (or fails
 *    with an empty pool), and a copy doubles the memory in every reader.
 *  - otherwise: a private copy-on-write mapping of the pages holding the
 *    vector's bytes, at any offset (O(1); only pages R writes are copied); a
 *    copy only for a vector under one page, or where the kernel refuses.
 * The shared bytes are never writable through either. */
void *writable_data(SEXP x, shard_vec *s) {
    if (s->priv_data) return s->priv_data;
    /* cow = "deny" (a shard_shared_vector's policy, enforced here for C callers
     * too): no private copy is ever made. A vector R may still share
     * (MAYBE_SHARED: every fetched vector, marked not mutable) gets the read-only
     * shared pointer: R and well-behaved C code only read through it (they
     * duplicate before writing, and a duplicate is a new vector of their own).
     * A request for a vector the caller could modify in place is the
     * modification itself: an R error. */
    if (s->deny) {
        if (!MAYBE_SHARED(x))
            Rf_error("shard: cannot modify a shared vector under cow = \"deny\": shared inputs are read-only. "
                     "Use materialize(x) for a private copy, or create it with cow = \"audit\" or \"allow\"");
        return (void *) s->base;
    }
    /* R's c() and others ask for the pointer once per element: the decision
     * costs a flag test after the first request. */
    if (s->huge == 1 && MAYBE_SHARED(x)) return (void *) s->base;
    shard_view *v = s->view;
    shard_view_info info;
    if (shard_view_info_get(v, &info) != SHARD_OK) rust_error("view info");
    s->huge = info.page_size > 4096;
    if (s->huge && MAYBE_SHARED(x)) {
        if (!s->granted) {
            s->granted = 1;
            n_ro_grants += 1;
            bytes_ro_grants += (double) s->byte_len;
        }
        return (void *) s->base;
    }
    /* A private mapping of the pages that hold this vector's bytes, wherever they
     * start (a view at any row offset, a slab object mid-page): the returned
     * pointer is the vector's first byte inside it, so reads copy nothing. A
     * vector under one page is copied (a mapping costs more than copying it)
     * unless it is a whole page-aligned data section (shard_view_private: NULL
     * otherwise). Hugetlb regions map only a whole data section. */
    int whole = s->byte_offset == 0 && s->byte_len == info.data_len;
    if (s->byte_len >= 4096 || (whole && s->byte_len > 0)) {
        shard_private *p = NULL;
        uint8_t *d = NULL;
        int rc = s->byte_len >= 4096 ? shard_view_private_range(v, s->byte_offset, s->byte_len, &p, &d)
                                     : shard_view_private(v, &p, &d);
        if (rc != SHARD_OK) rust_error("private mapping");
        if (p) {
            s->priv = p;
            s->priv_data = d;
            vec_set_data(x, s, d);
            n_cow_maps += 1;
            bytes_cow_maps += (double) s->byte_len;
            return d;
        }
    }
    SEXP copy = PROTECT(Rf_allocVector(kind_type(s->kind), s->length));
    void *d = vec_ptr(copy);
    if (s->byte_len) memcpy(d, s->base, s->byte_len);
    R_set_altrep_data2(x, copy);
    UNPROTECT(1);
    n_copies += 1;
    bytes_copies += (double) s->byte_len;
    s->priv_data = d;
    vec_set_data(x, s, d);
    return d;
}

/* Whether R has changed this vector. A private mapping that only served reads
 * has no copied pages; a private copy is compared with the shared bytes (after
 * close() it counts as changed: never lose data); strings record Set_elt. */
int vec_changed(SEXP x) {
    shard_vec *s = vec_state(x);
    if (s->kind == K_STR) return s->modified;
    if (s->priv) {
        int m = shard_private_modified(s->priv);
        return m != 0; /* an error counts as changed: never lose data */
    }
    if (!s->priv_data) return 0;
    if (shard_view_closed(s->view)) return 1;
    return s->byte_len && memcmp(s->priv_data, s->base, s->byte_len) != 0;
}
