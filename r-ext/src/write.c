/*
 * Writing objects into the arena: atomic and character vectors, serialized
 * blobs and composites (lists of leaves in one allocation); the options list the
 * share entry points take (C_share_opts) and the shard_shared object around a new
 * handle (C_shared_object).
 */
#include "shard_int.h"

int vec_kind(SEXP x) {
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

uint64_t elt_size(int kind) {
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
        if (c == NA_STRING) { enc[i] = SHARD_STRING_NA; continue; }
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

void parse_opts(SEXP o, shard_share_opts *out) {
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

/* Shares one atomic or character vector with parsed options. */
static SEXP share_vector_with(SEXP x, SEXP meta, const shard_share_opts *o);

/* Shares one atomic or character vector. */
SEXP C_share_vector(SEXP x, SEXP meta, SEXP opts) {
    shard_share_opts o;
    parse_opts(opts, &o);
    return share_vector_with(x, meta, &o);
}

static SEXP share_vector_with(SEXP x, SEXP meta, const shard_share_opts *opt) {
    int k = vec_kind(x);
    if (k < 0) Rf_error("shard: cannot share a vector of type %s natively", Rf_type2char(TYPEOF(x)));
    shard_share_opts o = *opt;
    uint64_t mlen;
    const uint8_t *m = meta_ptr(meta, &mlen);
    uint64_t bytes = leaf_bytes(x);
    shard_writer *w = NULL;
    if (shard_begin(&o, (uint8_t) k, (uint64_t) XLENGTH(x), m, mlen, bytes, &w) != SHARD_OK)
        rust_error("share");
    return finish_or_error(w, write_leaf(w, x, 0));
}

/* Shares a raw vector holding R serialization output. */
SEXP C_share_serialized(SEXP x, SEXP meta, SEXP opts) {
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
SEXP C_share_composite(SEXP leaves, SEXP meta, SEXP opts) {
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

/* The option `nm` when it is NULL or a single string among `ok` (then *out is it,
 * or `dflt` for NULL); 0 when R must validate it. */
/* The five shard.* options, found in one pass over R's options pairlist
 * (Rf_GetOption1 scans it once per option: five scans per share()). */
enum { O_NUMA, O_HUGE, O_THREADS, O_COW, O_SERIALIZE, O_N };

static void shard_options(SEXP *out) {
    static SEXP syms[O_N], options_sym = NULL;
    if (options_sym == NULL) {
        options_sym = Rf_install(".Options");
        syms[O_NUMA] = Rf_install("shard.numa");
        syms[O_HUGE] = Rf_install("shard.huge_pages");
        syms[O_THREADS] = Rf_install("shard.copy_threads");
        syms[O_COW] = Rf_install("shard.cow");
        syms[O_SERIALIZE] = Rf_install("shard.serialize");
    }
    for (int i = 0; i < O_N; i++) out[i] = R_NilValue;
    SEXP opts = Rf_findVar(options_sym, R_BaseEnv);
    if (TYPEOF(opts) != LISTSXP) { /* not where R keeps them: ask one by one */
        for (int i = 0; i < O_N; i++) out[i] = Rf_GetOption1(syms[i]);
        return;
    }
    for (SEXP o = opts; o != R_NilValue; o = CDR(o)) {
        SEXP tag = TAG(o);
        for (int i = 0; i < O_N; i++)
            if (tag == syms[i]) { out[i] = CAR(o); break; }
    }
}

/* Option value `o` when it is NULL or a single string among `ok`; 0 when R must
 * validate it. */
static int opt_string(SEXP o, const char *const *ok, int nok) {
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
/* The shard.* options in plain valid form: 1 and *numa (NULL for "default"),
 * *huge, *threads set; 0 when R's check_options() must look. */
static int plain_options(SEXP *numa_out, int *huge_out, int *threads_out) {
    SEXP ov[O_N];
    shard_options(ov);
    SEXP numa = ov[O_NUMA];
    if (numa != R_NilValue) {
        if (TYPEOF(numa) != STRSXP || XLENGTH(numa) != 1 || STRING_ELT(numa, 0) == NA_STRING) return 0;
        const char *p = CHAR(STRING_ELT(numa, 0));
        if (strcmp(p, "default") == 0) numa = R_NilValue;
        else if (!(strcmp(p, "local") == 0 || strcmp(p, "interleave") == 0 || digits_after(p, "bind:") ||
                   digits_after(p, "preferred:")))
            return 0;
    }
    SEXP huge = ov[O_HUGE];
    int h = TRUE;
    if (huge != R_NilValue) {
        if (TYPEOF(huge) != LGLSXP || XLENGTH(huge) != 1 || LOGICAL(huge)[0] == NA_LOGICAL) return 0;
        h = LOGICAL(huge)[0];
    }
    SEXP th = ov[O_THREADS];
    int threads = 0;
    if (th != R_NilValue) {
        double d;
        if (XLENGTH(th) != 1) return 0;
        if (TYPEOF(th) == INTSXP) d = INTEGER(th)[0] == NA_INTEGER ? -1 : INTEGER(th)[0];
        else if (TYPEOF(th) == REALSXP) d = REAL(th)[0];
        else return 0;
        if (!(d >= 0 && d <= 256 && d == (double) (int) d)) return 0;
        threads = (int) d;
    }
    static const char *const cow_ok[] = {"allow", "error"}, *const ser_ok[] = {"handle", "data"};
    if (!opt_string(ov[O_COW], cow_ok, 2) || !opt_string(ov[O_SERIALIZE], ser_ok, 2)) return 0;
    *numa_out = numa;
    *huge_out = h;
    *threads_out = threads;
    return 1;
}

SEXP C_share_opts(SEXP backing, SEXP readonly, SEXP name) {
    SEXP numa;
    int h, threads;
    if (!plain_options(&numa, &h, &threads)) return R_NilValue;
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

/* Constant strings and name vectors the shard_shared object is built from, made
 * once per session (preserved, not mutable: R copies before changing one). */
enum { KS_NAMES_OBJ, KS_NAMES_CI, KS_NAMES_OPT, KS_CLASS, KS_MEMFD, KS_SHM, KS_MMAP, KS_DEFAULT, KS_VECTOR,
       KS_MATRIX_ARRAY, KS_ARRAY, KS_NUMERIC, KS_INTEGER, KS_LOGICAL, KS_COMPLEX, KS_CHARACTER, KS_RAW,
       KS_T_DOUBLE, KS_T_INTEGER, KS_T_LOGICAL, KS_T_COMPLEX, KS_T_CHARACTER, KS_T_RAW, KS_ZERO,
       KS_OPTIONS_DEFAULT, KS_N };
static SEXP konst_tab = NULL;

static SEXP names_of(const char **nm, int n) {
    SEXP r = PROTECT(Rf_allocVector(STRSXP, n));
    for (int i = 0; i < n; i++) SET_STRING_ELT(r, i, Rf_mkChar(nm[i]));
    UNPROTECT(1);
    return r;
}

static SEXP konst(int k) {
    if (konst_tab == NULL) {
        static const char *obj[] = {"path", "backing", "size", "readonly", "class_info", "handle", "name", "options"};
        static const char *ci[] = {"class", "type", "length", "dim", "layout"};
        static const char *opt[] = {"numa", "huge_pages", "copy_threads"};
        static const char *ma[] = {"matrix", "array"};
        static const char *one[] = {"shard_shared", "memfd", "shm", "mmap", "default", "vector", NULL, "array",
                                    "numeric", "integer", "logical", "complex", "character", "raw", "double",
                                    "integer", "logical", "complex", "character", "raw"};
        SEXP t = PROTECT(Rf_allocVector(VECSXP, KS_N));
        SET_VECTOR_ELT(t, KS_NAMES_OBJ, names_of(obj, 8));
        SET_VECTOR_ELT(t, KS_NAMES_CI, names_of(ci, 5));
        SET_VECTOR_ELT(t, KS_NAMES_OPT, names_of(opt, 3));
        SET_VECTOR_ELT(t, KS_MATRIX_ARRAY, names_of(ma, 2));
        for (int i = KS_CLASS; i <= KS_T_RAW; i++)
            if (i != KS_MATRIX_ARRAY) SET_VECTOR_ELT(t, i, Rf_mkString(one[i - KS_CLASS]));
        SET_VECTOR_ELT(t, KS_ZERO, Rf_ScalarInteger(0));
        /* $options of an object shared with the default shard.* options:
         * list(numa = "default", huge_pages = TRUE, copy_threads = 0L). */
        SEXP od = PROTECT(Rf_allocVector(VECSXP, 3));
        Rf_setAttrib(od, R_NamesSymbol, VECTOR_ELT(t, KS_NAMES_OPT));
        SET_VECTOR_ELT(od, 0, VECTOR_ELT(t, KS_DEFAULT));
        SET_VECTOR_ELT(od, 1, Rf_ScalarLogical(TRUE));
        SET_VECTOR_ELT(od, 2, VECTOR_ELT(t, KS_ZERO));
        SET_VECTOR_ELT(t, KS_OPTIONS_DEFAULT, od);
        UNPROTECT(1);
        for (int i = 0; i < KS_N; i++) MARK_NOT_MUTABLE(VECTOR_ELT(t, i));
        R_PreserveObject(t);
        UNPROTECT(1);
        konst_tab = t;
    }
    return VECTOR_ELT(konst_tab, k);
}

/* class(x) of an atomic vector without a class attribute (R >= 4.0 rules). */
static SEXP implicit_class(SEXP x) {
    SEXP dim = Rf_getAttrib(x, R_DimSymbol);
    if (dim != R_NilValue) return konst(XLENGTH(dim) == 2 ? KS_MATRIX_ARRAY : KS_ARRAY);
    switch (TYPEOF(x)) {
    case REALSXP: return konst(KS_NUMERIC);
    case INTSXP: return konst(KS_INTEGER);
    case LGLSXP: return konst(KS_LOGICAL);
    case CPLXSXP: return konst(KS_COMPLEX);
    case STRSXP: return konst(KS_CHARACTER);
    case RAWSXP: return konst(KS_RAW);
    default: Rf_error("shard: internal: implicit_class of a non-vector");
    }
    return R_NilValue;
}

static SEXP type_string(SEXP x) {
    switch (TYPEOF(x)) {
    case REALSXP: return konst(KS_T_DOUBLE);
    case INTSXP: return konst(KS_T_INTEGER);
    case LGLSXP: return konst(KS_T_LOGICAL);
    case CPLXSXP: return konst(KS_T_COMPLEX);
    case STRSXP: return konst(KS_T_CHARACTER);
    case RAWSXP: return konst(KS_T_RAW);
    default: return Rf_mkString(Rf_type2char(TYPEOF(x)));
    }
}

/* The shard_shared object around a new handle (see new_shared() in R):
 * list(path, backing, size, readonly, class_info, handle, name, options).
 * class_info is computed here for a plain (non-object) vector, else given. */
static SEXP shared_object(SEXP handle, SEXP x, SEXP layout, SEXP readonly, SEXP name, SEXP numa, SEXP huge,
                          SEXP threads, SEXP class_info);

SEXP C_shared_object(SEXP handle, SEXP x, SEXP layout, SEXP readonly, SEXP name, SEXP opts,
                     SEXP class_info) {
    return shared_object(handle, x, layout, readonly, name, VECTOR_ELT(opts, 5), VECTOR_ELT(opts, 2),
                         VECTOR_ELT(opts, 3), class_info);
}

/* The last path, size and class_info the shard_shared object was built with,
 * reused (not mutable: R copies before changing one) when the next object has
 * the same: objects in one region have one path, and a loop shares vectors of
 * one type and length (lapply(chunks, share)). Saves their allocations (and
 * the path's formatting and CHARSXP lookup) per share. */
enum { LAST_PATH, LAST_SIZE, LAST_CI, LAST_N };
static SEXP last_tab = NULL;
static uint64_t last_pid, last_fd, last_size, last_n;
static int last_type = -1;

static SEXP last(void) {
    if (last_tab == NULL) {
        last_tab = Rf_allocVector(VECSXP, LAST_N);
        R_PreserveObject(last_tab);
    }
    return last_tab;
}

static SEXP remember_last(int k, SEXP v) {
    MARK_NOT_MUTABLE(v);
    SET_VECTOR_ELT(last(), k, v);
    return v;
}

static SEXP memfd_path(const shard_handle_fields *h) {
    uint64_t pid = h->owner_pid, fd = h->fd;
    SEXP t = last();
    if (VECTOR_ELT(t, LAST_PATH) != R_NilValue && pid == last_pid && fd == last_fd) return VECTOR_ELT(t, LAST_PATH);
    char buf[64];
    snprintf(buf, sizeof buf, "/proc/%u/fd/%u", (unsigned) pid, (unsigned) fd);
    SEXP p = remember_last(LAST_PATH, Rf_mkString(buf));
    last_pid = pid;
    last_fd = fd;
    return p;
}

static SEXP object_size(const shard_handle_fields *h) {
    uint64_t len = h->len;
    SEXP t = last();
    if (VECTOR_ELT(t, LAST_SIZE) != R_NilValue && len == last_size) return VECTOR_ELT(t, LAST_SIZE);
    SEXP v = remember_last(LAST_SIZE, Rf_ScalarReal((double) len));
    last_size = len;
    return v;
}

static SEXP make_class_info(SEXP x, SEXP layout) {
    SEXP ci = PROTECT(Rf_allocVector(VECSXP, 5));
    Rf_setAttrib(ci, R_NamesSymbol, konst(KS_NAMES_CI));
    SET_VECTOR_ELT(ci, 0, implicit_class(x));
    SET_VECTOR_ELT(ci, 1, type_string(x));
    R_xlen_t n = Rf_xlength(x);
    SET_VECTOR_ELT(ci, 2, n <= INT_MAX ? Rf_ScalarInteger((int) n) : Rf_ScalarReal((double) n));
    SET_VECTOR_ELT(ci, 3, Rf_getAttrib(x, R_DimSymbol));
    SET_VECTOR_ELT(ci, 4, layout);
    UNPROTECT(1);
    return ci;
}

/* class_info of a plain vector: list(class, type, length, dim, layout). The
 * last one is reused for a vector of the same type and length, without dim,
 * shared as "vector" (the plain path's constant layout string). */
static SEXP class_info_of(SEXP x, SEXP layout) {
    int cacheable = layout == konst(KS_VECTOR) && Rf_getAttrib(x, R_DimSymbol) == R_NilValue;
    if (!cacheable) return make_class_info(x, layout);
    SEXP t = last();
    uint64_t n = (uint64_t) Rf_xlength(x);
    if (VECTOR_ELT(t, LAST_CI) != R_NilValue && (int) TYPEOF(x) == last_type && n == last_n)
        return VECTOR_ELT(t, LAST_CI);
    SEXP ci = remember_last(LAST_CI, make_class_info(x, layout));
    last_type = (int) TYPEOF(x);
    last_n = n;
    return ci;
}

static SEXP shared_object(SEXP handle, SEXP x, SEXP layout, SEXP readonly, SEXP name, SEXP numa, SEXP huge,
                          SEXP threads, SEXP class_info) {
    shard_handle_fields h = handle_fields(handle); /* decoded by Rust */
    if (h.backing > 2) Rf_error("shard: corrupt handle");
    SEXP r = PROTECT(Rf_allocVector(VECSXP, 8));
    Rf_setAttrib(r, R_NamesSymbol, konst(KS_NAMES_OBJ));
    Rf_setAttrib(r, R_ClassSymbol, konst(KS_CLASS));
    if (h.backing == 0) SET_VECTOR_ELT(r, 0, memfd_path(&h));
    SET_VECTOR_ELT(r, 1, konst(KS_MEMFD + h.backing));
    SET_VECTOR_ELT(r, 2, object_size(&h));
    SET_VECTOR_ELT(r, 3, readonly);
    if (class_info == R_NilValue) {
        SET_VECTOR_ELT(r, 4, class_info_of(x, layout));
    } else {
        SET_VECTOR_ELT(r, 4, class_info);
    }
    SET_VECTOR_ELT(r, 5, handle);
    SET_VECTOR_ELT(r, 6, name);
    int dflt = numa == R_NilValue && TYPEOF(huge) == LGLSXP && XLENGTH(huge) == 1 && LOGICAL(huge)[0] == TRUE &&
               TYPEOF(threads) == INTSXP && XLENGTH(threads) == 1 && INTEGER(threads)[0] == 0;
    if (dflt) {
        /* The usual options: one shared constant (not mutable: R copies it
         * before any change). */
        SET_VECTOR_ELT(r, 7, konst(KS_OPTIONS_DEFAULT));
    } else {
        SEXP o = PROTECT(Rf_allocVector(VECSXP, 3));
        Rf_setAttrib(o, R_NamesSymbol, konst(KS_NAMES_OPT));
        SET_VECTOR_ELT(o, 0, numa == R_NilValue ? konst(KS_DEFAULT) : numa);
        SET_VECTOR_ELT(o, 1, huge);
        SET_VECTOR_ELT(o, 2, threads);
        SET_VECTOR_ELT(r, 7, o);
        UNPROTECT(1);
    }
    UNPROTECT(1);
    return r;
}

/* share(x) with every argument at its default, for an atomic or character vector
 * without attributes: options, the share and the shard_shared object in one call
 * (what share_one() does in R for that case). NULL: R takes its general path. */
typedef struct { SEXP handle, x, numa, huge, threads; } plain_args;

static SEXP plain_object(void *d) {
    plain_args *a = (plain_args *) d;
    SEXP out = PROTECT(shared_object(a->handle, a->x, konst(KS_VECTOR), Rf_ScalarLogical(TRUE), R_NilValue,
                                     a->numa, a->huge, a->threads, R_NilValue));
    /* The namespace only when R code must run (R_FindNamespace evaluates a call
     * to getNamespace(): ~1 us, more than the rest of this function). */
    if (VECTOR_ELT(out, 0) == R_NilValue) { /* not memfd: the path is the file's */
        SEXP ns = PROTECT(R_FindNamespace(Rf_mkString("shard")));
        SEXP dec = PROTECT(Rf_lang2(Rf_install("decode_handle"), a->handle));
        SEXP call = PROTECT(Rf_lang3(Rf_install("handle_path"), dec, R_NilValue));
        SET_VECTOR_ELT(out, 0, Rf_eval(call, ns));
        UNPROTECT(3);
    }
    const char *fb = shard_take_fallback();
    if (fb) {
        SEXP ns = PROTECT(R_FindNamespace(Rf_mkString("shard")));
        SEXP call = PROTECT(Rf_lang2(Rf_install("warn_fallback"), Rf_mkString(fb)));
        Rf_eval(call, ns);
        UNPROTECT(2);
    }
    UNPROTECT(1);
    return out;
}

static void plain_cleanup(void *d, Rboolean jump) {
    /* An R error after the share: nothing may leave the object live without an
     * R object, so close it before the error goes on. */
    if (jump) {
        plain_args *a = (plain_args *) d;
        close_epoch++;
        shard_close(RAW(a->handle), (uint64_t) XLENGTH(a->handle));
    }
}

/* One continuation token for every R_UnwindProtect here, made once and kept (as
 * cpp11 does): R writes it only when a jump passes through, and reads it back at
 * once in R_ContinueUnwind before jumping on, so a nested use (an R error
 * handler that shares again) cannot leave it stale. Saves two allocations per
 * share. */
static SEXP unwind_cont(void) {
    static SEXP cont = NULL;
    if (cont == NULL) {
        cont = R_MakeUnwindCont();
        R_PreserveObject(cont);
    }
    return cont;
}

SEXP C_share_plain(SEXP x) {
    if (vec_kind(x) < 0 || Rf_isObject(x) || HAS_ATTRIB(x)) return R_NilValue;
    /* The options as parse_opts() would read C_share_opts()'s list, without
     * making the list (backing auto, read-only, no name). */
    SEXP numa;
    int huge, threads;
    if (!plain_options(&numa, &huge, &threads)) return R_NilValue;
    shard_share_opts o;
    memset(&o, 0, sizeof o);
    o.backing = 0;
    o.readonly = 1;
    o.huge_pages = huge != 0;
    o.copy_threads = threads;
    o.name = NULL;
    o.placement = numa == R_NilValue ? NULL : CHAR(STRING_ELT(numa, 0));
    plain_args a;
    a.x = x;
    a.numa = numa;
    a.huge = Rf_ScalarLogical(huge);
    a.threads = threads == 0 ? konst(KS_ZERO) : PROTECT(Rf_ScalarInteger(threads));
    int np = threads == 0 ? 0 : 1;
    a.handle = PROTECT(share_vector_with(x, R_NilValue, &o));
    SEXP cont = unwind_cont();
    SEXP out = R_UnwindProtect(plain_object, &a, plain_cleanup, &a, cont);
    SETCAR(cont, R_NilValue); /* R left the result there: do not keep it alive */
    UNPROTECT(1 + np);
    return out;
}
