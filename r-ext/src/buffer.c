/*
 * Writable shared buffers (buffer() in R/buffer.R): a file in /dev/shm mapped
 * MAP_SHARED read-write by its owner and by the workers of a run, the element
 * reads and writes of `[` / `[<-`, sealing, and the ALTREP class that reads a
 * sealed buffer without a copy.
 *
 * Why a file of our own and not a region of the store: the store's regions are
 * sealed read-only once written (the invariant every fetched vector relies on);
 * a buffer must stay writable in several processes for the length of a run.
 * Keeping it out of the store leaves the read-only sealing rules untouched.
 * The allocator may later grow a writable region kind; buffer_map below is the
 * only code that would change (see docs/ARCHITECTURE.md, "Runtime").
 *
 * Lifetime: the owner creates the file (O_CREAT|O_EXCL, mode 0600, a random
 * name shard-buf-<uid>-<pid>-<random>), unlinks it on buffer_close() or when the
 * buffer object is collected (also at R's exit: the finalizer runs on exit).
 * A process killed before that leaves the file behind until the next buffer()
 * of the same user sweeps /dev/shm for shard-buf-<uid>-<pid>-* files whose
 * owner pid is gone (C_buffer_sweep): the leak window. Workers open the file by
 * name (same user: O_NOFOLLOW, owner and size checked) and map it read-write.
 *
 * Concurrent writes: each `[<-` is a plain store of whole elements into the
 * shared pages, no lock. Writes to disjoint elements from several processes are
 * independent (the caches are coherent; no element straddles two writers), so
 * they are all seen once the writers are done. Overlapping writes race: each
 * element ends up with the value of one of the writers (doubles are written as
 * whole aligned 8-byte stores on x86-64/aarch64, so no torn values), which one
 * is unspecified.
 *
 * The mapping lives until buffer_close() and until the last ALTREP vector over
 * it is collected, whichever is later; after close every access through the
 * buffer object is an R error.
 */
#include "shard_int.h"
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <dirent.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>

typedef struct {
    uint8_t *addr;   /* the mapping (NULL once unmapped) */
    size_t len;      /* bytes mapped (at least 1: mmap refuses 0) */
    size_t bytes;    /* bytes of the buffer's elements */
    int writable;    /* mapped read-write (and not sealed) */
    int sealed;      /* mprotect()ed read-only: ALTREP reads are safe */
    int closed;      /* buffer_close() called: no access through the buffer */
    int owner;       /* this process created the file */
    int unlinked;
    int views;       /* live ALTREP vectors over the mapping */
    int orphan;      /* the buffer's external pointer was collected: the last view frees this */
    char path[256];
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

static void buf_unmap(shard_buf *b) {
    if (b->addr) munmap(b->addr, b->len);
    b->addr = NULL;
}

static void buf_unlink(shard_buf *b) {
    if (b->owner && !b->unlinked) {
        unlink(b->path);
        b->unlinked = 1;
    }
}

static void buf_finalize(SEXP p) {
    shard_buf *b = (shard_buf *) R_ExternalPtrAddr(p);
    if (!b) return;
    buf_unlink(b);
    b->closed = 1;
    R_ClearExternalPtr(p);
    /* ALTREP vectors over the pages (finalized later, e.g. at exit) free it. */
    if (b->views > 0) { b->orphan = 1; return; }
    buf_unmap(b);
    free(b);
}

static shard_buf *buf_get(SEXP p, int need_open) {
    if (TYPEOF(p) != EXTPTRSXP) Rf_error("shard: not a buffer mapping");
    shard_buf *b = (shard_buf *) R_ExternalPtrAddr(p);
    if (!b || !b->addr) Rf_error("shard: this buffer is not mapped in this process (closed, or from another session)");
    if (need_open && b->closed) Rf_error("shard: this buffer has been closed (buffer_close()); create a new one with buffer()");
    return b;
}

static SEXP buf_wrap(shard_buf *b) {
    SEXP p = PROTECT(R_MakeExternalPtr(b, Rf_mkString(b->path), R_NilValue));
    R_RegisterCFinalizerEx(p, buf_finalize, TRUE);
    UNPROTECT(1);
    return p;
}

static void random_hex(char *out, int n) {
    unsigned char r[16];
    int ok = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ok = read(fd, r, sizeof r) == (ssize_t) sizeof r;
        close(fd);
    }
    if (!ok) {
        uint64_t x = (uint64_t) getpid() * 0x9E3779B97F4A7C15ull ^ (uint64_t) (uintptr_t) out;
        for (int i = 0; i < 16; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; r[i] = (unsigned char) x; }
    }
    static const char hex[] = "0123456789abcdef";   /* no sprintf: R CMD check --as-cran */
    for (int i = 0; i < n && i < 16; i++) {
        out[2 * i] = hex[r[i] >> 4];
        out[2 * i + 1] = hex[r[i] & 15];
    }
    out[2 * (n < 16 ? n : 16)] = '\0';
}

/* Creates a zero-filled buffer of `bytes` bytes; returns the mapping. */
SEXP C_buffer_create(SEXP bytes_) {
    double bd = Rf_asReal(bytes_);
    if (!(bd >= 0) || bd > 9.0e15) Rf_error("shard: buffer size must be a non-negative number of bytes");
    size_t bytes = (size_t) bd, len = bytes ? bytes : 1;
    shard_buf *b = (shard_buf *) calloc(1, sizeof(shard_buf));
    if (!b) Rf_error("shard: out of memory");
    int fd = -1;
    for (int tries = 0; tries < 8 && fd < 0; tries++) {
        char hex[33];
        random_hex(hex, 12);
        snprintf(b->path, sizeof b->path, "/dev/shm/shard-buf-%d-%d-%s", (int) getuid(), (int) getpid(), hex);
        fd = open(b->path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        int e = errno;
        free(b);
        Rf_error("shard: could not create a buffer file in /dev/shm: %s", strerror(e));
    }
    b->owner = 1;
    if (ftruncate(fd, (off_t) len) != 0) {
        int e = errno;
        close(fd);
        unlink(b->path);
        free(b);
        Rf_error("shard: could not size the buffer file to %.0f bytes: %s", bd, strerror(e));
    }
    void *a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (a == MAP_FAILED) {
        unlink(b->path);
        free(b);
        Rf_error("shard: could not map a buffer of %.0f bytes: %s", bd, strerror(e));
    }
    b->addr = (uint8_t *) a;
    b->len = len;
    b->bytes = bytes;
    b->writable = 1;
    return buf_wrap(b);
}

/* Opens a buffer another process of this user created. */
SEXP C_buffer_open(SEXP path_, SEXP bytes_, SEXP readonly_) {
    if (!Rf_isString(path_) || XLENGTH(path_) != 1) Rf_error("shard: `path` must be one string");
    const char *path = CHAR(STRING_ELT(path_, 0));
    double bd = Rf_asReal(bytes_);
    int ro = Rf_asLogical(readonly_) == TRUE;
    if (strlen(path) >= 256) Rf_error("shard: buffer path too long");
    int fd = open(path, (ro ? O_RDONLY : O_RDWR) | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) Rf_error("shard: could not open buffer %s: %s (was it closed by its owner?)", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != getuid()) {
        close(fd);
        Rf_error("shard: %s is not a buffer file of this user", path);
    }
    size_t bytes = (size_t) bd, len = bytes ? bytes : 1;
    if ((size_t) st.st_size < len) {
        close(fd);
        Rf_error("shard: buffer %s holds %.0f bytes, fewer than the %.0f its type and dim need", path,
                 (double) st.st_size, bd);
    }
    void *a = mmap(NULL, len, ro ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (a == MAP_FAILED) Rf_error("shard: could not map buffer %s: %s", path, strerror(e));
    shard_buf *b = (shard_buf *) calloc(1, sizeof(shard_buf));
    if (!b) { munmap(a, len); Rf_error("shard: out of memory"); }
    b->addr = (uint8_t *) a;
    b->len = len;
    b->bytes = bytes;
    b->writable = !ro;
    b->sealed = ro;
    snprintf(b->path, sizeof b->path, "%s", path);
    return buf_wrap(b);
}

/* Closes: unlinks (owner, or `unlink` TRUE) and unmaps unless ALTREP vectors
 * still read the pages (then the last of them unmaps). */
SEXP C_buffer_close(SEXP p, SEXP unlink_) {
    if (TYPEOF(p) != EXTPTRSXP) Rf_error("shard: not a buffer mapping");
    shard_buf *b = (shard_buf *) R_ExternalPtrAddr(p);
    if (!b) return Rf_ScalarLogical(FALSE);
    int was_open = !b->closed;
    int ul = Rf_asLogical(unlink_);
    if (ul == TRUE && !b->unlinked) {
        unlink(b->path);
        b->unlinked = 1;
    } else if (ul == NA_LOGICAL) {
        buf_unlink(b);
    } else if (ul == FALSE) {
        b->unlinked = 1;   /* the caller keeps the file: never unlink it from here */
    }
    b->closed = 1;
    if (b->views == 0) buf_unmap(b);
    return Rf_ScalarLogical(was_open);
}

/* Seals: the pages become read-only in this process (writes through the buffer
 * are refused, ALTREP vectors may then read them without a copy). */
SEXP C_buffer_seal(SEXP p) {
    shard_buf *b = buf_get(p, 1);
    if (!b->sealed) {
        if (mprotect(b->addr, b->len, PROT_READ) != 0) Rf_error("shard: could not seal the buffer: %s", strerror(errno));
        b->sealed = 1;
        b->writable = 0;
    }
    return R_NilValue;
}

SEXP C_buffer_state(SEXP p) {
    if (TYPEOF(p) != EXTPTRSXP) Rf_error("shard: not a buffer mapping");
    shard_buf *b = (shard_buf *) R_ExternalPtrAddr(p);
    const char *names[] = {"mapped", "writable", "sealed", "closed", "owner", "views", "bytes", "path", ""};
    SEXP r = PROTECT(Rf_mkNamed(VECSXP, names));
    SET_VECTOR_ELT(r, 0, Rf_ScalarLogical(b && b->addr));
    SET_VECTOR_ELT(r, 1, Rf_ScalarLogical(b && b->writable));
    SET_VECTOR_ELT(r, 2, Rf_ScalarLogical(b && b->sealed));
    SET_VECTOR_ELT(r, 3, Rf_ScalarLogical(!b || b->closed));
    SET_VECTOR_ELT(r, 4, Rf_ScalarLogical(b && b->owner));
    SET_VECTOR_ELT(r, 5, Rf_ScalarInteger(b ? b->views : 0));
    SET_VECTOR_ELT(r, 6, Rf_ScalarReal(b ? (double) b->bytes : 0));
    SET_VECTOR_ELT(r, 7, b ? Rf_mkString(b->path) : R_NilValue);
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
    if (!b->writable) Rf_error("shard: this buffer is %s; it cannot be written", b->sealed ? "sealed (read-only)" : "read-only");
    if ((SEXPTYPE) TYPEOF(value) != kind_sexp(kind)) Rf_error("shard: internal: value of the wrong type for the buffer");
    R_xlen_t n = (R_xlen_t) (b->bytes / es), nv = XLENGTH(value);
    const uint8_t *src = (const uint8_t *) vec_ptr(value);
    double written = 0;
    if (idx == R_NilValue) {
        double st = Rf_asReal(start_);
        if (!(st >= 1) || st - 1 + (double) nv > (double) n)
            Rf_error("shard: buffer write of %.0f elements at %.0f is out of bounds (length %.0f)", (double) nv, st, (double) n);
        if (nv) memcpy(b->addr + ((size_t) st - 1) * es, src, (size_t) nv * es);
        written = (double) nv;
    } else {
        R_xlen_t ni = XLENGTH(idx);
        if (nv != 1 && nv != ni) Rf_error("shard: internal: value length %.0f for %.0f indices", (double) nv, (double) ni);
        if (TYPEOF(idx) != INTSXP && TYPEOF(idx) != REALSXP) Rf_error("shard: buffer indices must be numeric");
        for (R_xlen_t k = 0; k < ni; k++) {
            R_xlen_t at = pos_at(idx, k, n);
            memcpy(b->addr + (size_t) at * es, src + (nv == 1 ? 0 : (size_t) k * es), es);
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
    if ((SEXPTYPE) TYPEOF(value) != kind_sexp(kind) || XLENGTH(value) != 1) Rf_error("shard: internal: bad fill value");
    const uint8_t *src = (const uint8_t *) vec_ptr(value);
    size_t n = b->bytes / es;
    int zero = 1;
    for (size_t i = 0; i < es; i++) zero &= src[i] == 0;
    if (zero) memset(b->addr, 0, b->bytes);
    else if (es == 1) memset(b->addr, src[0], n);
    else for (size_t i = 0; i < n; i++) memcpy(b->addr + i * es, src, es);
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

SEXP C_buffer_advise(SEXP p, SEXP advice_) {
    shard_buf *b = buf_get(p, 1);
    int a;
    switch (Rf_asInteger(advice_)) {
    case 1: a = MADV_SEQUENTIAL; break;
    case 2: a = MADV_RANDOM; break;
    case 3: a = MADV_WILLNEED; break;
    case 4: a = MADV_DONTNEED; break;
    default: a = MADV_NORMAL; break;
    }
    /* MADV_DONTNEED on a MAP_SHARED file mapping drops this process's page
     * table entries only: the data stay in the file. */
    return Rf_ScalarLogical(madvise(b->addr, b->len, a) == 0);
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

/* Removes buffer files of this user whose owner process is gone (a crash). */
SEXP C_buffer_sweep(void) {
    DIR *d = opendir("/dev/shm");
    int removed = 0;
    if (!d) return Rf_ScalarInteger(0);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "shard-buf-%d-", (int) getuid());
    size_t pl = strlen(prefix);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, pl) != 0) continue;
        long pid = strtol(e->d_name + pl, NULL, 10);
        if (pid <= 0) continue;
        if (kill((pid_t) pid, 0) == 0 || errno != ESRCH) continue;
        char path[512];
        snprintf(path, sizeof path, "/dev/shm/%s", e->d_name);
        if (unlink(path) == 0) removed++;
    }
    closedir(d);
    return Rf_ScalarInteger(removed);
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
        if (b->closed) buf_unmap(b);
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
    if (!writeable) return v->b->addr;
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
