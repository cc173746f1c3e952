/*
 * Writable shared buffers (buffer() in R/buffer.R): the R side of the store's
 * buffers (src/store/buffer.rs, C ABI shard_buffer_* in src/ffi_buffer.rs),
 * the element reads and writes of `[` / `[<-`, sealing, and the ALTREP class
 * that reads a sealed buffer without a copy.
 *
 * A buffer is one of the allocator's buffer regions: a memfd of its own,
 * published writable, never sealed until buffer_seal(). This file makes no
 * system call: Rust creates, opens, maps, seals and releases it; C keeps the
 * two pointers Rust gives (reads, and writes while writable) and checks every
 * index. The owner (the process that ran buffer()) reads through its region's
 * read-only mapping and writes through its writer mapping; a worker (or
 * buffer_open()) maps the region writable through /proc/<owner>/fd/<n>, after
 * Rust has checked the handle (node, owner alive, the fd's dev/ino, region and
 * object headers); another user is refused by the kernel.
 *
 * Lifetime: the memfd has no name; it goes with its last fd and mapping. The
 * owner's buffer_close() (or the collection of the buffer object, also at R's
 * exit) closes it: workers can no longer open it, and the memory goes when the
 * last mapping does (a worker's, or the owner's own while ALTREP vectors still
 * read a sealed buffer). An owner killed with SIGKILL leaves nothing behind:
 * there is no file to sweep.
 *
 * Sealing is the kernel's seal (F_SEAL_WRITE|SHRINK|GROW|SEAL), only by the
 * owner, refused (nothing changes) while any worker still maps the buffer
 * writable: shard_map() unmaps at the end of each run (runtime_clear_job()).
 *
 * Concurrent writes: each `[<-` is a plain store of whole elements into the
 * shared pages, no lock. Writes to disjoint elements from several processes are
 * independent (the caches are coherent; no element straddles two writers), so
 * they are all seen once the writers are done. Overlapping writes race: each
 * element ends up with the value of one of the writers (doubles are written as
 * whole aligned 8-byte stores on x86-64/aarch64, so no torn values), which one
 * is unspecified.
 *
 * The mappings live until buffer_close() and until the last ALTREP vector over
 * them is collected, whichever is later; after close every access through the
 * buffer object is an R error.
 */
#include "shard_int.h"

typedef struct {
    shard_buffer *rb;      /* the store's buffer (NULL once freed: unmapped) */
    const uint8_t *addr;   /* where reads go (valid while rb lives) */
    uint8_t *waddr;        /* where writes go; NULL: sealed, read-only or closed */
    size_t bytes;          /* bytes of the buffer's elements */
    int sealed;            /* sealed by the owner: ALTREP reads are safe */
    int closed;            /* buffer_close() called: no access through the buffer */
    int owner;             /* this process created the buffer */
    int views;             /* live ALTREP vectors over the pages */
    int orphan;            /* the buffer's external pointer was collected: the last view frees this */
} shard_buf;

/* Per-process counters (buffer_diagnostics()). */
static double d_writes = 0, d_bytes = 0, d_reads = 0, d_read_bytes = 0, d_init_writes = 0, d_init_bytes = 0;

static R_altrep_class_t bcls_real, bcls_int, bcls_lgl, bcls_raw;

static size_t kind_size(int kind) {
    switch (kind) {
    case K_F64: return 8;
    case K_I32: case K_LGL: return 4;
    case K_RAW: return 1;
    default: Rf_error("shard: buffer type code %d is not double, integer, logical or raw", kind);
    }
    return 0;
}

static SEXPTYPE kind_sexp(int kind) {
    switch (kind) {
    case K_F64: return REALSXP;
    case K_I32: return INTSXP;
    case K_LGL: return LGLSXP;
    default: return RAWSXP;
    }
}

/* Takes the pointers and state from Rust again (after open, create and any
 * seal attempt: the owner's writer mapping moves when a seal is refused).
 * Returns a shard error code; calls no R API that can raise. */
static int buf_refresh(shard_buf *b) {
    shard_buffer_info i;
    int rc = shard_buffer_state(b->rb, &i);
    if (rc != SHARD_OK) return rc;
    b->addr = i.read;
    b->waddr = b->closed ? NULL : i.write;
    b->sealed = i.sealed != 0;
    b->owner = i.owner != 0;
    return SHARD_OK;
}

/* Unmaps (frees the store's buffer; for the owner also closes it). */
static void buf_release(shard_buf *b) {
    if (b->rb) shard_buffer_free(b->rb);
    b->rb = NULL;
    b->addr = NULL;
    b->waddr = NULL;
}

/* Closes: the owner closes the object (other processes can no longer open
 * it); any process stops writing. The mapping stays for ALTREP views. */
static int buf_close(shard_buf *b) {
    int rc = SHARD_OK;
    if (!b->closed && b->owner && b->rb) rc = shard_buffer_close(b->rb);
    b->closed = 1;
    b->waddr = NULL;
    return rc;
}

static void buf_finalize(SEXP p) {
    shard_buf *b = (shard_buf *) R_ExternalPtrAddr(p);
    if (!b) return;
    buf_close(b);
    R_ClearExternalPtr(p);
    /* ALTREP vectors over the pages (finalized later, e.g. at exit) free it. */
    if (b->views > 0) { b->orphan = 1; return; }
    buf_release(b);
    free(b);
}

static shard_buf *buf_get(SEXP p, int need_open) {
    if (TYPEOF(p) != EXTPTRSXP) Rf_error("shard: not a buffer mapping");
    shard_buf *b = (shard_buf *) R_ExternalPtrAddr(p);
    if (!b || !b->rb) Rf_error("shard: this buffer is not mapped in this process (closed, or from another session)");
    if (need_open && b->closed) Rf_error("shard: this buffer has been closed (buffer_close()); create a new one with buffer()");
    return b;
}

/* The external pointer of a buffer; its tag is the handle (a raw vector). */
static SEXP buf_wrap(shard_buf *b, SEXP handle) {
    SEXP p = PROTECT(R_MakeExternalPtr(b, handle, R_NilValue));
    R_RegisterCFinalizerEx(p, buf_finalize, TRUE);
    UNPROTECT(1);
    return p;
}

/* Creates a zero-filled buffer of `bytes` bytes owned by this process (`huge`:
 * a large one may get huge pages, option shard.huge_pages); returns its
 * mapping. */
SEXP C_buffer_create(SEXP bytes_, SEXP huge_) {
    double bd = Rf_asReal(bytes_);
    if (!(bd >= 0) || bd > 9.0e15) Rf_error("shard: buffer size must be a non-negative number of bytes");
    SEXP handle = PROTECT(Rf_allocVector(RAWSXP, SHARD_HANDLE_LEN));
    shard_buf *b = (shard_buf *) calloc(1, sizeof(shard_buf));
    if (!b) Rf_error("shard: out of memory");
    int rc = shard_buffer_create((uint64_t) bd, Rf_asLogical(huge_) == TRUE, RAW(handle), &b->rb);
    if (rc == SHARD_OK) rc = buf_refresh(b);
    if (rc != SHARD_OK) {
        buf_release(b);
        free(b);
        rust_error("could not create a buffer");
    }
    b->bytes = (size_t) bd;
    SEXP p = buf_wrap(b, handle);
    UNPROTECT(1);
    return p;
}

/* Opens a buffer from its handle (another process of this user, or this one):
 * writable unless `readonly` (a sealed buffer opens read-only). */
SEXP C_buffer_open(SEXP handle_, SEXP bytes_, SEXP readonly_) {
    check_handle(handle_);
    double bd = Rf_asReal(bytes_);
    if (!(bd >= 0)) Rf_error("shard: buffer size must be a non-negative number of bytes");
    int ro = Rf_asLogical(readonly_) == TRUE;
    SEXP handle = PROTECT(Rf_duplicate(handle_));
    shard_buf *b = (shard_buf *) calloc(1, sizeof(shard_buf));
    if (!b) Rf_error("shard: out of memory");
    int rc = shard_buffer_open(RAW(handle), SHARD_HANDLE_LEN, !ro, &b->rb);
    if (rc == SHARD_OK) rc = buf_refresh(b);
    if (rc != SHARD_OK) {
        buf_release(b);
        free(b);
        rust_error("could not open the buffer");
    }
    shard_buffer_info i;
    double have = shard_buffer_state(b->rb, &i) == SHARD_OK ? (double) i.len : 0;
    if (have < bd) {
        buf_release(b);
        free(b);
        Rf_error("shard: the buffer holds %.0f bytes, fewer than the %.0f its type and dim need", have, bd);
    }
    if (ro) b->waddr = NULL;
    b->bytes = (size_t) bd;
    SEXP p = buf_wrap(b, handle);
    UNPROTECT(1);
    return p;
}

/* Closes (`unlink` is accepted and ignored: a buffer has no name). The owner
 * releases the buffer; every process unmaps unless ALTREP vectors still read
 * the pages (then the last of them unmaps). Returns whether it was open. */
SEXP C_buffer_close(SEXP p, SEXP unlink_) {
    (void) unlink_;
    if (TYPEOF(p) != EXTPTRSXP) Rf_error("shard: not a buffer mapping");
    shard_buf *b = (shard_buf *) R_ExternalPtrAddr(p);
    if (!b) return Rf_ScalarLogical(FALSE);
    int was_open = !b->closed;
    int rc = buf_close(b);
    if (b->views == 0) buf_release(b);
    if (rc != SHARD_OK) rust_error("could not close the buffer");
    return Rf_ScalarLogical(was_open);
}

/* Seals (owner only): the buffer becomes read-only for good in every process
 * (the kernel's seal); ALTREP vectors may then read it without a copy. Refused,
 * with nothing changed, while a worker still maps it writable. */
SEXP C_buffer_seal(SEXP p) {
    shard_buf *b = buf_get(p, 1);
    if (b->sealed) return R_NilValue;
    int rc = shard_buffer_seal(b->rb);
    if (rc != SHARD_OK) {
        /* Copy the message: the refresh below must not lose it. */
        const char *m = shard_last_error();
        size_t n = strlen(m) + 1;
        char *msg = R_alloc(n, 1);
        memcpy(msg, m, n);
        buf_refresh(b);
        if (rc == SHARD_BUSY)
            Rf_error("shard: could not seal the buffer: %s", msg);
        if (rc == SHARD_PERMISSION_DENIED)
            Rf_error("shard: could not seal the buffer: %s; seal it in the process that called buffer()", msg);
        Rf_error("shard: could not seal the buffer: %s", msg);
    }
    if (buf_refresh(b) != SHARD_OK) rust_error("buffer state");
    return R_NilValue;
}

SEXP C_buffer_state(SEXP p) {
    if (TYPEOF(p) != EXTPTRSXP) Rf_error("shard: not a buffer mapping");
    shard_buf *b = (shard_buf *) R_ExternalPtrAddr(p);
    if (b && b->rb) buf_refresh(b);
    const char *names[] = {"mapped", "writable", "sealed", "closed", "owner", "views", "bytes", "handle", ""};
    SEXP r = PROTECT(Rf_mkNamed(VECSXP, names));
    SET_VECTOR_ELT(r, 0, Rf_ScalarLogical(b && b->rb));
    SET_VECTOR_ELT(r, 1, Rf_ScalarLogical(b && b->waddr));
    SET_VECTOR_ELT(r, 2, Rf_ScalarLogical(b && b->sealed));
    SET_VECTOR_ELT(r, 3, Rf_ScalarLogical(!b || b->closed));
    SET_VECTOR_ELT(r, 4, Rf_ScalarLogical(b && b->owner));
    SET_VECTOR_ELT(r, 5, Rf_ScalarInteger(b ? b->views : 0));
    SET_VECTOR_ELT(r, 6, Rf_ScalarReal(b ? (double) b->bytes : 0));
    SET_VECTOR_ELT(r, 7, R_ExternalPtrTag(p));
    UNPROTECT(1);
    return r;
}

/* Checked 0-based element positions from an R index vector (1-based, double
 * or integer, no NA, in 1..n). */
static R_xlen_t pos_at(SEXP idx, R_xlen_t k, R_xlen_t n) {
    double v = TYPEOF(idx) == INTSXP ? (INTEGER(idx)[k] == NA_INTEGER ? NAN : (double) INTEGER(idx)[k]) : REAL(idx)[k];
    if (!(v >= 1 && v <= (double) n)) Rf_error("shard: buffer index %.0f is out of bounds (1..%.0f) or NA", v, (double) n);
    return (R_xlen_t) v - 1;
}

/* Writes `value` (already of the buffer's type, length 1 or length(idx)) at
 * `idx` (NULL: elements start..start+length(value)-1, 1-based). `init` counts
 * the write as an initial fill. */
SEXP C_buffer_write(SEXP p, SEXP kind_, SEXP idx, SEXP start_, SEXP value, SEXP init_) {
    shard_buf *b = buf_get(p, 1);
    int kind = Rf_asInteger(kind_);
    size_t es = kind_size(kind);
    if (!b->waddr) Rf_error("shard: this buffer is %s; it cannot be written", b->sealed ? "sealed (read-only)" : "read-only");
    if ((SEXPTYPE) TYPEOF(value) != kind_sexp(kind)) Rf_error("shard: internal: value of the wrong type for the buffer");
    R_xlen_t n = (R_xlen_t) (b->bytes / es), nv = XLENGTH(value);
    const uint8_t *src = (const uint8_t *) vec_ptr(value);
    double written = 0;
    if (idx == R_NilValue) {
        double st = Rf_asReal(start_);
        if (!(st >= 1) || st - 1 + (double) nv > (double) n)
            Rf_error("shard: buffer write of %.0f elements at %.0f is out of bounds (length %.0f)", (double) nv, st, (double) n);
        if (nv) memcpy(b->waddr + ((size_t) st - 1) * es, src, (size_t) nv * es);
        written = (double) nv;
    } else {
        R_xlen_t ni = XLENGTH(idx);
        if (nv != 1 && nv != ni) Rf_error("shard: internal: value length %.0f for %.0f indices", (double) nv, (double) ni);
        if (TYPEOF(idx) != INTSXP && TYPEOF(idx) != REALSXP) Rf_error("shard: buffer indices must be numeric");
        for (R_xlen_t k = 0; k < ni; k++) {
            R_xlen_t at = pos_at(idx, k, n);
            memcpy(b->waddr + (size_t) at * es, src + (nv == 1 ? 0 : (size_t) k * es), es);
        }
        written = (double) ni;
    }
    if (Rf_asLogical(init_) == TRUE) {
        d_init_writes += 1;
        d_init_bytes += written * (double) es;
    } else {
        d_writes += 1;
        d_bytes += written * (double) es;
    }
    return R_NilValue;
}

/* Fills every element with one value (the init of buffer()). */
SEXP C_buffer_fill(SEXP p, SEXP kind_, SEXP value) {
    shard_buf *b = buf_get(p, 1);
    int kind = Rf_asInteger(kind_);
    size_t es = kind_size(kind);
    if (!b->waddr) Rf_error("shard: this buffer is %s; it cannot be written", b->sealed ? "sealed (read-only)" : "read-only");
    if ((SEXPTYPE) TYPEOF(value) != kind_sexp(kind) || XLENGTH(value) != 1) Rf_error("shard: internal: bad fill value");
    const uint8_t *src = (const uint8_t *) vec_ptr(value);
    size_t n = b->bytes / es;
    int zero = 1;
    for (size_t i = 0; i < es; i++) zero &= src[i] == 0;
    if (zero) memset(b->waddr, 0, b->bytes);
    else if (es == 1) memset(b->waddr, src[0], n);
    else for (size_t i = 0; i < n; i++) memcpy(b->waddr + i * es, src, es);
    d_init_writes += 1;
    d_init_bytes += (double) b->bytes;
    return R_NilValue;
}

/* Reads elements into a new R vector: `idx` positions (1-based), or NULL for
 * `count` elements from `start`. */
SEXP C_buffer_read(SEXP p, SEXP kind_, SEXP idx, SEXP start_, SEXP count_) {
    shard_buf *b = buf_get(p, 1);
    int kind = Rf_asInteger(kind_);
    size_t es = kind_size(kind);
    R_xlen_t n = (R_xlen_t) (b->bytes / es);
    SEXP out;
    if (idx == R_NilValue) {
        double st = Rf_asReal(start_), cnt = Rf_asReal(count_);
        if (!(st >= 1) || !(cnt >= 0) || st - 1 + cnt > (double) n)
            Rf_error("shard: buffer read of %.0f elements at %.0f is out of bounds (length %.0f)", cnt, st, (double) n);
        out = PROTECT(Rf_allocVector(kind_sexp(kind), (R_xlen_t) cnt));
        if (cnt > 0) memcpy(vec_ptr(out), b->addr + ((size_t) st - 1) * es, (size_t) cnt * es);
    } else {
        if (TYPEOF(idx) != INTSXP && TYPEOF(idx) != REALSXP) Rf_error("shard: buffer indices must be numeric");
        R_xlen_t ni = XLENGTH(idx);
        out = PROTECT(Rf_allocVector(kind_sexp(kind), ni));
        uint8_t *d = (uint8_t *) vec_ptr(out);
        for (R_xlen_t k = 0; k < ni; k++) memcpy(d + (size_t) k * es, b->addr + (size_t) pos_at(idx, k, n) * es, es);
    }
    d_reads += 1;
    d_read_bytes += (double) XLENGTH(out) * (double) es;
    UNPROTECT(1);
    return out;
}

/* An access-pattern hint for this process's mapping of the buffer. `advice`
 * is R's code (0 normal, 1 sequential, 2 random, 3 willneed, 4 dontneed);
 * DONTNEED drops this process's page table entries only: the data stay. */
SEXP C_buffer_advise(SEXP p, SEXP advice_) {
    shard_buf *b = buf_get(p, 1);
    /* R's order -> shard_buffer_advise's (0 normal, 1 random, 2 sequential, 3, 4) */
    static const int to_rust[] = {0, 2, 1, 3, 4};
    int a = Rf_asInteger(advice_);
    if (a < 0 || a > 4) a = 0;
    return Rf_ScalarLogical(shard_buffer_advise(b->rb, to_rust[a]) == SHARD_OK);
}

SEXP C_buffer_diag(SEXP reset) {
    const char *names[] = {"writes", "bytes", "reads", "read_bytes", "init_writes", "init_bytes", ""};
    SEXP r = PROTECT(Rf_mkNamed(VECSXP, names));
    SET_VECTOR_ELT(r, 0, Rf_ScalarReal(d_writes));
    SET_VECTOR_ELT(r, 1, Rf_ScalarReal(d_bytes));
    SET_VECTOR_ELT(r, 2, Rf_ScalarReal(d_reads));
    SET_VECTOR_ELT(r, 3, Rf_ScalarReal(d_read_bytes));
    SET_VECTOR_ELT(r, 4, Rf_ScalarReal(d_init_writes));
    SET_VECTOR_ELT(r, 5, Rf_ScalarReal(d_init_bytes));
    if (Rf_asLogical(reset) == TRUE) d_writes = d_bytes = d_reads = d_read_bytes = d_init_writes = d_init_bytes = 0;
    UNPROTECT(1);
    return r;
}

/* ---- ALTREP vectors over a sealed buffer (zero-copy reads) ----
 * data1: an external pointer (address: the element count as a heap R_xlen_t)
 * whose protected slot is the buffer's mapping; data2: a private copy once R
 * asks for a writable pointer. */
typedef struct { R_xlen_t n; shard_buf *b; } bview;

static void bview_finalize(SEXP p) {
    bview *v = (bview *) R_ExternalPtrAddr(p);
    if (!v) return;
    shard_buf *b = v->b;
    if (b && --b->views == 0) {
        if (b->closed) buf_release(b);
        if (b->orphan) free(b);
    }
    free(v);
    R_ClearExternalPtr(p);
}

#define BV(x) ((bview *) R_ExternalPtrAddr(R_altrep_data1(x)))

static R_xlen_t bv_length(SEXP x) { return BV(x)->n; }

static void *bv_dataptr(SEXP x, Rboolean writeable) {
    SEXP c = R_altrep_data2(x);
    if (c != R_NilValue) return vec_ptr(c);
    bview *v = BV(x);
    if (!writeable) return (void *) v->b->addr;
    /* R wants to write: a private copy (the shared pages are read-only). */
    c = PROTECT(Rf_allocVector(TYPEOF(x), v->n));
    memcpy(vec_ptr(c), v->b->addr, (size_t) v->n * (TYPEOF(x) == REALSXP ? 8 : TYPEOF(x) == RAWSXP ? 1 : 4));
    R_set_altrep_data2(x, c);
    UNPROTECT(1);
    return vec_ptr(c);
}

static const void *bv_dataptr_or_null(SEXP x) { return bv_dataptr(x, FALSE); }

static SEXP bv_duplicate(SEXP x, Rboolean deep) {
    bview *v = BV(x);
    SEXP c = PROTECT(Rf_allocVector(TYPEOF(x), v->n));
    memcpy(vec_ptr(c), bv_dataptr(x, FALSE), (size_t) v->n * (TYPEOF(x) == REALSXP ? 8 : TYPEOF(x) == RAWSXP ? 1 : 4));
    UNPROTECT(1);
    return c;
}

static Rboolean bv_inspect(SEXP x, int pre, int deep, int pvec, void (*f)(SEXP, int, int, int)) {
    Rprintf(" shard buffer view %s length %.0f%s\n", Rf_type2char(TYPEOF(x)), (double) BV(x)->n,
            R_altrep_data2(x) != R_NilValue ? " (private copy)" : "");
    return TRUE;
}

static double bv_real_elt(SEXP x, R_xlen_t i) { return ((const double *) bv_dataptr(x, FALSE))[i]; }
static int bv_int_elt(SEXP x, R_xlen_t i) { return ((const int *) bv_dataptr(x, FALSE))[i]; }
static Rbyte bv_raw_elt(SEXP x, R_xlen_t i) { return ((const Rbyte *) bv_dataptr(x, FALSE))[i]; }

static R_altrep_class_t bv_class(const char *name, DllInfo *dll, int type) {
    R_altrep_class_t c;
    switch (type) {
    case REALSXP: c = R_make_altreal_class(name, "shard", dll); R_set_altreal_Elt_method(c, bv_real_elt); break;
    case INTSXP: c = R_make_altinteger_class(name, "shard", dll); R_set_altinteger_Elt_method(c, bv_int_elt); break;
    case LGLSXP: c = R_make_altlogical_class(name, "shard", dll); R_set_altlogical_Elt_method(c, bv_int_elt); break;
    default: c = R_make_altraw_class(name, "shard", dll); R_set_altraw_Elt_method(c, bv_raw_elt); break;
    }
    R_set_altrep_Length_method(c, bv_length);
    R_set_altrep_Duplicate_method(c, bv_duplicate);
    R_set_altrep_Inspect_method(c, bv_inspect);
    R_set_altvec_Dataptr_method(c, bv_dataptr);
    R_set_altvec_Dataptr_or_null_method(c, bv_dataptr_or_null);
    return c;
}

void buffer_init_classes(DllInfo *dll) {
    bcls_real = bv_class("shard_buffer_real", dll, REALSXP);
    bcls_int = bv_class("shard_buffer_integer", dll, INTSXP);
    bcls_lgl = bv_class("shard_buffer_logical", dll, LGLSXP);
    bcls_raw = bv_class("shard_buffer_raw", dll, RAWSXP);
}

/* A zero-copy vector over a sealed buffer (serialized as its values). */
SEXP C_buffer_vector(SEXP p, SEXP kind_) {
    shard_buf *b = buf_get(p, 1);
    int kind = Rf_asInteger(kind_);
    size_t es = kind_size(kind);
    if (!b->sealed) Rf_error("shard: only a sealed buffer can be read without a copy (buffer_seal())");
    bview *v = (bview *) malloc(sizeof(bview));
    if (!v) Rf_error("shard: out of memory");
    v->n = (R_xlen_t) (b->bytes / es);
    v->b = b;
    b->views++;
    SEXP e = PROTECT(R_MakeExternalPtr(v, R_NilValue, p));
    R_RegisterCFinalizerEx(e, bview_finalize, TRUE);
    R_altrep_class_t c = kind == K_F64 ? bcls_real : kind == K_I32 ? bcls_int : kind == K_LGL ? bcls_lgl : bcls_raw;
    SEXP r = R_new_altrep(c, e, R_NilValue);
    MARK_NOT_MUTABLE(r);
    UNPROTECT(1);
    return r;
}
