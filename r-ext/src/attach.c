/*
 * Handles and attach: a handle becomes a view holder (an external pointer the GC
 * frees), fetch(), a view's info/metadata/vectors, close, names, sweep and seal,
 * statistics, handle decoding and the NUMA placement of a view.
 */
#include "shard_int.h"

void rust_error(const char *what) {
    /* Copy the message: R_alloc'd memory survives until the error unwinds. */
    const char *m = shard_last_error();
    size_t n = strlen(m) + 1;
    char *buf = R_alloc(n, 1);
    memcpy(buf, m, n);
    Rf_error("shard: %s: %s", what, buf);
}

void view_finalize(SEXP p) {
    shard_view *v = (shard_view *) R_ExternalPtrAddr(p);
    if (v) { shard_view_free(v); R_ClearExternalPtr(p); }
}

/* Checks that `handle` is a raw vector of SHARD_HANDLE_LEN bytes. A handle of
 * another version has another length: Rust decodes it (shard_handle_decode) and,
 * when it is a shard handle of another version, says which version made it
 * ("share it again"), rather than this file reporting a bare length. */
void check_handle(SEXP handle) {
    if (TYPEOF(handle) == RAWSXP && XLENGTH(handle) == SHARD_HANDLE_LEN) return;
    if (TYPEOF(handle) == RAWSXP) {
        shard_handle_fields f;
        if (shard_handle_decode(RAW(handle), (uint64_t) XLENGTH(handle), &f) != SHARD_OK && f.other_version)
            rust_error("handle");
    }
    Rf_error("shard: a handle must be a raw vector of %d bytes", SHARD_HANDLE_LEN);
}

/* A handle's fields, decoded and checked by Rust (length, magic, version, CRC,
 * ranges): an error for anything that is not an intact handle of this build. */
shard_handle_fields handle_fields(SEXP handle) {
    check_handle(handle);
    shard_handle_fields f;
    if (shard_handle_decode(RAW(handle), (uint64_t) XLENGTH(handle), &f) != SHARD_OK) rust_error("handle");
    return f;
}

/* The length of a handle of this build, for R (segment_open's argument check). */
SEXP C_handle_len(void) { return Rf_ScalarInteger(SHARD_HANDLE_LEN); }

/* A node as R sees it: list(hostname, id, local). */
static SEXP node_sexp(const shard_node_info *ni) {
    const char *names[] = {"hostname", "id", "local", ""};
    SEXP r = PROTECT(Rf_mkNamed(VECSXP, names));
    char host[sizeof ni->hostname + 1], id[sizeof ni->id + 1];
    memcpy(host, ni->hostname, sizeof ni->hostname); host[sizeof ni->hostname] = 0;
    memcpy(id, ni->id, sizeof ni->id); id[sizeof ni->id] = 0;
    SET_VECTOR_ELT(r, 0, Rf_mkString(host));
    SET_VECTOR_ELT(r, 1, Rf_mkString(id));
    SET_VECTOR_ELT(r, 2, Rf_ScalarLogical(ni->local != 0));
    UNPROTECT(1);
    return r;
}

/* This process's node (shard_node_info_get). */
SEXP C_node_info(void) {
    shard_node_info ni;
    if (shard_node_info_get(&ni) != SHARD_OK) rust_error("node info");
    return node_sexp(&ni);
}

/* The node a handle was shared on (shard_handle_node; decodes, attaches nothing). */
SEXP C_handle_node(SEXP handle) {
    if (TYPEOF(handle) != RAWSXP) Rf_error("shard: a handle must be a raw vector of %d bytes", SHARD_HANDLE_LEN);
    shard_node_info ni;
    if (shard_handle_node(RAW(handle), (uint64_t) XLENGTH(handle), &ni) != SHARD_OK) rust_error("handle");
    return node_sexp(&ni);
}

SEXP holder_tag(void);
SEXP holder_lazy_tag(void);
void holder_commit(SEXP holder);
SEXP make_vec_owning(SEXP holder, SEXP handle, int kind, uint64_t byte_offset, uint64_t byte_len, R_xlen_t n);

/* A view holder: an external pointer to the view, tagged "shard_view", freed
 * by its finalizer. `lazy`: tagged "shard_view_lazy" with no finalizer of its
 * own yet; fetch()'s one vector then frees the view with its state
 * (make_vec_owning in vec.c), and the holder gets its finalizer when a second
 * vector is made from it (holder_commit): one weak reference less per fetch. */
static SEXP holder_new(SEXP handle, int lazy) {
    check_handle(handle);
    shard_view *v = NULL;
    if (shard_attach(RAW(handle), (uint64_t) XLENGTH(handle), &v) != SHARD_OK) return R_NilValue;
    SEXP h = PROTECT(R_MakeExternalPtr(v, lazy ? holder_lazy_tag() : holder_tag(), R_NilValue));
    if (!lazy) R_RegisterCFinalizerEx(h, view_finalize, TRUE);
    UNPROTECT(1);
    return h;
}

SEXP attach_holder(SEXP handle) { return holder_new(handle, 0); }

/* Attaches a handle: an external pointer holding the view (freed by the GC). */
SEXP C_attach(SEXP handle) {
    SEXP h = attach_holder(handle);
    if (h == R_NilValue) rust_error("attach");
    return h;
}

/* The element of list x named exactly `name`, or NULL (R_NilValue). */
static SEXP list_elt(SEXP x, const char *name) {
    SEXP nm = Rf_getAttrib(x, R_NamesSymbol);
    if (TYPEOF(nm) != STRSXP) return NULL;
    R_xlen_t n = XLENGTH(x) < XLENGTH(nm) ? XLENGTH(x) : XLENGTH(nm);
    for (R_xlen_t i = 0; i < n; i++)
        if (strcmp(CHAR(STRING_ELT(nm, i)), name) == 0) return VECTOR_ELT(x, i);
    return NULL;
}

/* Whether x's class attribute is exactly "shard_shared" (identical(oldClass(x),
 * "shard_shared") without the closure call). */
static int is_plain_shared(SEXP x) {
    SEXP cl = Rf_getAttrib(x, R_ClassSymbol);
    return TYPEOF(cl) == STRSXP && XLENGTH(cl) == 1 && strcmp(CHAR(STRING_ELT(cl, 0)), "shard_shared") == 0;
}

/* fetch() of a plain vector object (no attributes): attach and return the ALTREP
 * vector (marked not mutable). Otherwise the view holder, for R to finish.
 *
 * Given a list instead of a handle (fetch()'s first step, for any list x): when x
 * is a shard_shared object (class exactly "shard_shared") with a "handle"
 * element, the same for x$handle, except that NULL comes back instead of a view
 * holder; NULL for any other list. R then dispatches as usual (and
 * fetch.shard_shared attaches again): every check of the handle is the same. */
SEXP C_fetch(SEXP handle) {
    if (TYPEOF(handle) == VECSXP) {
        SEXP h;
        if (!is_plain_shared(handle) || (h = list_elt(handle, "handle")) == NULL || TYPEOF(h) == VECSXP)
            return R_NilValue;
        SEXP r = C_fetch(h);
        return TYPEOF(r) == EXTPTRSXP ? R_NilValue : r;
    }
    /* Lazy: when this is not a plain vector (or an error leaves it unused),
     * holder_commit() gives it its finalizer before it goes back to R; an R
     * error before that leaves no vector, and the view is freed below. */
    SEXP holder = PROTECT(holder_new(handle, 1));
    if (holder == R_NilValue) rust_error("attach");
    shard_view *v = holder_view(holder);
    shard_view_info i;
    if (shard_view_info_get(v, &i) != SHARD_OK) { holder_commit(holder); rust_error("view info"); }
    if (i.meta_len != 0 || i.closed || i.kind < K_F64 || i.kind > K_STR) {
        holder_commit(holder);
        UNPROTECT(1);
        return holder;
    }
    R_xlen_t n = i.kind == K_STR ? -1 /* make_vec decodes */ : (R_xlen_t) (i.data_len / elt_size(i.kind));
    SEXP r = make_vec_owning(holder, handle, i.kind, 0, i.data_len, n);
    MARK_NOT_MUTABLE(r);
    UNPROTECT(1);
    return r;
}

SEXP C_view_info(SEXP holder) {
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

SEXP C_view_meta(SEXP holder) {
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
SEXP C_view_vector(SEXP holder, SEXP handle, SEXP strict) {
    shard_view *v = holder_view(holder);
    if (!v) Rf_error("shard: released view");
    shard_view_info i;
    if (shard_view_info_get(v, &i) != SHARD_OK) rust_error("view info");
    if (i.closed) Rf_error("shard: the shared object has been closed");
    int mark = Rf_asLogical(strict) == TRUE;
    if (i.kind != SHARD_KIND_COMPOSITE) {
        /* Strings: make_vec() takes the count from shard_payload_strings(). */
        R_xlen_t n = i.kind == SHARD_KIND_STRINGS
                         ? -1
                         : (R_xlen_t) (i.data_len / (elt_size(i.kind) ? elt_size(i.kind) : 1));
        SEXP r = make_vec(holder, handle, i.kind, 0, i.data_len, n);
        if (mark) MARK_NOT_MUTABLE(r);
        return r;
    }
    /* The column table, decoded and checked by Rust (src/payload.rs): every column
     * lies inside the data, is a vector kind and holds the bytes its count needs. */
    uint64_t n = 0;
    if (shard_payload_composite(v, NULL, 0, &n) != SHARD_OK) rust_error("composite");
    shard_leaf *L = (shard_leaf *) R_alloc(n ? (size_t) n : 1, sizeof(shard_leaf));
    uint64_t got = n;
    if (shard_payload_composite(v, L, n, &got) != SHARD_OK) rust_error("composite");
    if (got != n) Rf_error("shard: the composite object changed while it was read");
    SEXP out = PROTECT(Rf_allocVector(VECSXP, (R_xlen_t) n));
    for (uint64_t j = 0; j < n; j++) {
        SEXP leaf = make_vec(holder, handle, L[j].kind, L[j].offset, L[j].len, (R_xlen_t) L[j].count);
        if (mark) MARK_NOT_MUTABLE(leaf);
        SET_VECTOR_ELT(out, (R_xlen_t) j, leaf);
    }
    UNPROTECT(1);
    return out;
}

SEXP C_close(SEXP handle) {
    if (TYPEOF(handle) != RAWSXP) Rf_error("shard: a handle must be a raw vector");
    close_epoch++;
    if (shard_close(RAW(handle), (uint64_t) XLENGTH(handle)) != SHARD_OK) rust_error("close");
    return R_NilValue;
}

/* Closes an object: TRUE, or FALSE when it was already closed (any other failure
 * is an error).
 *
 * Given the shard_shared object itself (close.shard_shared's argument): its
 * handle is taken here, as con$handle would; for class exactly "shard_shared"
 * without the `$` call, whose S3 method lookup on a classed list costs about
 * as much as the rest of close() in R (~0.4 us), else through `$` itself (a
 * subclass may have a method for it). */
SEXP C_close_if_open(SEXP handle) {
    if (TYPEOF(handle) == VECSXP) {
        SEXP h;
        if (is_plain_shared(handle)) {
            h = list_elt(handle, "handle");
        } else {
            static SEXP sym = NULL;
            if (sym == NULL) sym = Rf_install("handle");
            SEXP call = PROTECT(Rf_lang3(R_DollarSymbol, handle, sym));
            h = Rf_eval(call, R_GlobalEnv);
            UNPROTECT(1);
        }
        handle = h == NULL ? R_NilValue : h;
    }
    if (TYPEOF(handle) != RAWSXP) Rf_error("shard: a handle must be a raw vector");
    close_epoch++;
    int rc = shard_close(RAW(handle), (uint64_t) XLENGTH(handle));
    if (rc == SHARD_CLOSED) return Rf_ScalarLogical(FALSE);
    if (rc != SHARD_OK) rust_error("close");
    return Rf_ScalarLogical(TRUE);
}

SEXP C_owns(SEXP handle) {
    if (TYPEOF(handle) != RAWSXP) Rf_error("shard: a handle must be a raw vector");
    int r = shard_owns(RAW(handle), (uint64_t) XLENGTH(handle));
    if (r < 0) rust_error("handle");
    return Rf_ScalarLogical(r);
}

SEXP C_lookup_name(SEXP name) {
    if (TYPEOF(name) != STRSXP || XLENGTH(name) != 1 || STRING_ELT(name, 0) == NA_STRING)
        Rf_error("shard: name must be a single string");
    SEXP h = PROTECT(Rf_allocVector(RAWSXP, SHARD_HANDLE_LEN));
    if (shard_lookup_name(CHAR(STRING_ELT(name, 0)), RAW(h)) != SHARD_OK) rust_error("open by name");
    UNPROTECT(1);
    return h;
}

SEXP C_sweep(void) {
    uint64_t n = 0;
    if (shard_sweep(&n) != SHARD_OK) rust_error("sweep");
    return Rf_ScalarReal((double) n);
}

SEXP C_seal_all(void) {
    if (shard_seal_all() != SHARD_OK) rust_error("seal");
    return R_NilValue;
}

SEXP C_stats(void) {
    shard_stats s;
    if (shard_stats_get(&s) != SHARD_OK) rust_error("stats");
    const char *names[] = {"regions", "sealed_regions", "bytes_mapped", "bytes_live", "live_objects",
                           "fallbacks", "regions_created", "regions_released", "retained_regions", "regions_kept",
                           "foreign_regions_mapped",
                           "attaches_local", "attaches_foreign", "pid", "cow_mappings", "cow_bytes",
                           "copies", "copy_bytes", "readonly_grants", "readonly_grant_bytes",
                           "string_cache_bytes", "string_cache_elements", ""};
    double vals[] = {s.regions, s.sealed_regions, s.bytes_mapped, s.bytes_live, s.live_objects, s.fallbacks,
                     s.regions_created, s.regions_released, s.retained_regions, s.regions_kept, s.foreign_regions_mapped, s.attaches_local,
                     s.attaches_foreign, s.pid, n_cow_maps, bytes_cow_maps, n_copies, bytes_copies,
                     n_ro_grants, bytes_ro_grants, str_cache_bytes, str_cache_elts};
    int n = (int) (sizeof vals / sizeof vals[0]);
    SEXP r = PROTECT(Rf_mkNamed(VECSXP, names));
    for (int i = 0; i < n; i++) SET_VECTOR_ELT(r, i, Rf_ScalarReal(vals[i]));
    UNPROTECT(1);
    return r;
}

/* The last real huge-page fallback (a string), once, or NULL. */
SEXP C_take_fallback(void) {
    const char *m = shard_take_fallback();
    return m ? Rf_mkString(m) : R_NilValue;
}

/* Measured placement of an attached object's pages: a double vector of pages per
 * NUMA node, named by node number, with attribute "absent" (pages not present). */
SEXP C_view_numa(SEXP holder) {
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

/* A u32 field as R decoded it (readBin): an integer, or a double above INT_MAX. */
static SEXP u32_sexp(uint64_t v) {
    return v <= INT_MAX ? Rf_ScalarInteger((int) v) : Rf_ScalarReal((double) v);
}

/* The fields of a handle that R reports (see docs/FORMAT.md), as Rust decoded
 * them (shard_handle_decode). */
SEXP C_decode_handle(SEXP handle) {
    shard_handle_fields f = handle_fields(handle);
    static const char *backings[] = {"memfd", "shm", "mmap"};
    const char *names[] = {"kind", "writable", "backing", "owner_pid", "region_id", "owner_start", "fd",
                           "generation", "offset", "len", "region_size", ""};
    SEXP r = PROTECT(Rf_mkNamed(VECSXP, names));
    SET_VECTOR_ELT(r, 0, Rf_ScalarInteger(f.kind));
    SET_VECTOR_ELT(r, 1, Rf_ScalarLogical(f.writable != 0));
    SET_VECTOR_ELT(r, 2, f.backing < 3 ? Rf_mkString(backings[f.backing]) : Rf_ScalarString(NA_STRING));
    SET_VECTOR_ELT(r, 3, u32_sexp(f.owner_pid));
    SET_VECTOR_ELT(r, 4, u32_sexp(f.region_id));
    SET_VECTOR_ELT(r, 5, Rf_ScalarReal((double) f.owner_start));
    SET_VECTOR_ELT(r, 6, u32_sexp(f.fd));
    SET_VECTOR_ELT(r, 7, u32_sexp(f.generation));
    SET_VECTOR_ELT(r, 8, Rf_ScalarReal((double) f.offset));
    SET_VECTOR_ELT(r, 9, Rf_ScalarReal((double) f.len));
    SET_VECTOR_ELT(r, 10, Rf_ScalarReal((double) f.region_size));
    UNPROTECT(1);
    return r;
}

/* The handle and position of a shard ALTREP vector, or NULL for other vectors. */
static int is_ours(SEXP x) {
    return ALTREP(x) && (R_altrep_inherits(x, cls_real) || R_altrep_inherits(x, cls_int) ||
                         R_altrep_inherits(x, cls_lgl) || R_altrep_inherits(x, cls_raw) ||
                         R_altrep_inherits(x, cls_cplx) || R_altrep_inherits(x, cls_str));
}

/* Our vector inside R's wrapper ALTREP (wrap_real ...: what R's shallow
 * duplicate of a long vector, or attribute setting, makes), else x. A wrapper
 * keeps the wrapped vector in data1 until it is written (then data1 becomes a
 * plain copy), so data1 of the same type and length that is one of ours is the
 * shared vector still read through. */
static SEXP unwrap_vec(SEXP x) {
    if (!ALTREP(x) || is_ours(x)) return x;
    SEXP d = R_altrep_data1(x);
    if (d != R_NilValue && ALTREP(d) && TYPEOF(d) == TYPEOF(x) && is_ours(d) && XLENGTH(d) == XLENGTH(x)) return d;
    return x;
}

/* Sets a vector's cow = "deny" flag (see writable_data in cow.c). */
SEXP C_vector_set_deny(SEXP x, SEXP deny) {
    x = unwrap_vec(x);
    if (!is_ours(x)) return Rf_ScalarLogical(FALSE);
    vec_state(x)->deny = Rf_asLogical(deny) == TRUE;
    return Rf_ScalarLogical(TRUE);
}

/* shared_reset_diagnostics(): zeroes a vector's dataptr_calls. */
SEXP C_vector_reset_counts(SEXP x) {
    x = unwrap_vec(x);
    if (is_ours(x)) vec_state(x)->dataptr_calls = 0;
    return R_NilValue;
}

SEXP C_vector_handle(SEXP x) {
    SEXP pv = plain_vector_handle(x); /* plain vectors over shared pages (mapped.c) */
    if (pv != R_NilValue) return pv;
    x = unwrap_vec(x);
    if (!ALTREP(x)) return R_NilValue;
    if (!(R_altrep_inherits(x, cls_real) || R_altrep_inherits(x, cls_int) || R_altrep_inherits(x, cls_lgl) ||
          R_altrep_inherits(x, cls_raw) || R_altrep_inherits(x, cls_cplx) || R_altrep_inherits(x, cls_str)))
        return R_NilValue;
    shard_vec *s = vec_state(x);
    const char *names[] = {"handle", "byte_offset", "byte_len", "closed", "changed", "deny", "dataptr_calls", ""};
    SEXP r = PROTECT(Rf_mkNamed(VECSXP, names));
    SET_VECTOR_ELT(r, 5, Rf_ScalarLogical(s->deny));
    SET_VECTOR_ELT(r, 6, Rf_ScalarReal(s->dataptr_calls));
    SET_VECTOR_ELT(r, 0, HANDLE(x));
    SET_VECTOR_ELT(r, 1, Rf_ScalarReal((double) s->byte_offset));
    SET_VECTOR_ELT(r, 2, Rf_ScalarReal((double) s->byte_len));
    SET_VECTOR_ELT(r, 3, Rf_ScalarLogical(vec_closed(x)));
    SET_VECTOR_ELT(r, 4, Rf_ScalarLogical(vec_changed(x)));
    UNPROTECT(1);
    return r;
}
