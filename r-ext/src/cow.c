/*
 * Writable and copy-on-write paths: what R gets when it asks a shard vector for a
 * writable pointer (a private copy-on-write mapping, or a private copy), whether R
 * has changed it since, strict mode, and the copy counters shard_diagnostics()
 * reports. The shared bytes are never handed out writable.
 */
#include "shard_int.h"

/* Counters reported by shard_diagnostics(). */
double n_cow_maps = 0, bytes_cow_maps = 0, n_copies = 0, bytes_copies = 0;

int strict_mode(void) {
    SEXP o = Rf_GetOption1(Rf_install("shard.cow"));
    return TYPEOF(o) == STRSXP && XLENGTH(o) == 1 && strcmp(CHAR(STRING_ELT(o, 0)), "error") == 0;
}

/* A writable pointer for R: a private copy-on-write mapping of the pages when the
 * data are page-aligned (O(1); only pages R writes are copied), else a copy. The
 * shared bytes are never handed out writable. */
void *writable_data(SEXP x) {
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

/* Whether R has written to this vector's private data. A private mapping that
 * only served reads (R asks for writable pointers in range(), ==, identical())
 * has no copied pages; a private copy is compared with the shared bytes. */
int vec_changed(SEXP x) {
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
