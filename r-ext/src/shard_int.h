/*
 * Internal header of the shard R package's C code (not installed, not API).
 *
 * Files and what each owns:
 *   vec.c     numeric ALTREP classes: vector state, methods, make_vec()
 *   string.c  the character ALTREP class (its layout is decoded by Rust:
 *             shard_payload_strings() in make_vec())
 *   cow.c     writable / copy-on-write paths, strict mode, copy counters
 *   write.c   writing vectors, blobs and composites into the arena; share options
 *   attach.c  handles, attach, fetch, close, view info, stats
 *   values.c  attribute/materialize/identity helpers and low-level segments
 *   buffer.c  writable shared buffers (the store's, through shard_buffer_*) and
 *             the ALTREP class reading a sealed buffer without a copy
 *   views.c   zero-copy element ranges of shard vectors (block views)
 *   mapped.c  plain (non-ALTREP) vectors whose data pointer is the object's
 *             pages (Rf_allocVector3 with an allocator), their registry
 *   init.c    the .Call table and R_init_shard()
 *
 * Rules for all of them: every Rust call returns before any R error is raised
 * (no longjmp crosses Rust frames); the shared bytes are never written; after
 * close() every bulk access is an R error, never a segfault (the mapping lives
 * until the last vector is collected). Plain vectors (mapped.c, an option) have
 * no hook to raise that error: they keep reading their old pages.
 */
#ifndef SHARD_INT_H
#define SHARD_INT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <limits.h>
#include <R.h>
#include <Rinternals.h>
#include <R_ext/Altrep.h>
#include <R_ext/Rdynload.h>
#include <Rversion.h>
#include "shard.h"

/* Object kinds: the SHARD_KIND_* constants of shard.h (defined once, in Rust's
 * shard::format::Kind); the short names are aliases for the C code. */
enum { K_BYTES = SHARD_KIND_BYTES, K_F64 = SHARD_KIND_F64, K_I32 = SHARD_KIND_I32, K_LGL = SHARD_KIND_LOGICAL,
       K_RAW = SHARD_KIND_RAW, K_CPLX = SHARD_KIND_COMPLEX, K_STR = SHARD_KIND_STRINGS,
       K_COMPOSITE = SHARD_KIND_COMPOSITE, K_SERIALIZED = SHARD_KIND_SERIALIZED };
/* Writer side only (write.c lays objects out; every reader decodes them with
 * shard_payload_* in Rust): bytes of one composite column-table entry. */
#define LEAF_ENTRY_BYTES 32

/* The state of one shard vector, owned by the external pointer in data1
 * (tag: the handle; protected: the view holder, which keeps the object's pages
 * mapped until the last vector over them is collected, even after close()). */
typedef struct {
    const uint8_t *base;      /* this vector's bytes in the arena */
    const void *data;         /* what element reads see: base, the private
                               * (writable) data once R asked for it, or for
                               * strings the CHARSXP cache's array (NULL: none) */
    shard_view *view;         /* the holder's view (for the closed check) */
    R_xlen_t length;
    int kind;
    int modified;             /* strings: R set an element (the cache is then
                               * complete and is the vector's value) */
    int complete;             /* strings: every element is in the cache */
    uint64_t byte_offset;     /* offset of base inside the object's data section */
    uint64_t byte_len;        /* bytes of this vector in the data section */
    shard_private *priv;      /* private copy-on-write mapping, or NULL */
    void *priv_data;          /* writable data (priv mapping or data2 copy) */
    double cache_bytes;       /* strings: bytes counted in str_cache_bytes */
    double cache_elts;        /* strings: elements counted in str_cache_elts */
    int huge;                 /* hugetlb pages: -1 not known yet, 0 no, 1 yes */
    int granted;              /* counted in n_ro_grants already */
    uint64_t open_epoch;      /* close_epoch when the view was last found open
                               * (0: never checked; close_epoch starts at 1) */
    int deny;                 /* cow = "deny" (set from R, C_vector_set_deny): the
                               * writable path never makes a private copy */
    double dataptr_calls;     /* Dataptr requests (not Elt: the hot path is untouched) */
    shard_strings str;        /* strings: the layout as shard_payload_strings()
                               * validated it (pointers into the view) */
} shard_vec;

/* Element reads (Elt, and so R's subsetting loops) find a vector's data through
 * a direct-mapped table keyed by the ALTREP object's address: a hit is two loads,
 * no call into R or Rust. make_vec() fills a vector's slot and every change of
 * its data pointer rewrites it, so a slot keyed by a live shard vector always
 * holds that vector's current data pointer; a slot left by a dead vector is only
 * ever matched by a new shard vector at the same address, and make_vec() has
 * overwritten it by then. A miss (two vectors sharing a slot) reads the state
 * and refills the slot. R calls ALTREP methods from its main thread only. */
#define ELT_SLOTS 4096
typedef struct { SEXP x; const void *data; shard_vec *s; } elt_slot;
extern elt_slot elt_slots[ELT_SLOTS] __attribute__((visibility("hidden")));

static inline elt_slot *elt_slot_of(SEXP x) {
    uintptr_t a = (uintptr_t) x;
    return &elt_slots[((a >> 4) ^ (a >> 16)) & (ELT_SLOTS - 1)];
}

elt_slot *vec_slot_fill(SEXP x);

/* What element reads of x see (its data pointer), and its state: a hit is a load. */
static inline const void *vec_data(SEXP x) {
    elt_slot *e = elt_slot_of(x);
    return e->x == x ? e->data : vec_slot_fill(x)->data;
}

static inline shard_vec *vec_state(SEXP x) {
    elt_slot *e = elt_slot_of(x);
    return e->x == x ? e->s : vec_slot_fill(x)->s;
}

/* close() in this process (the only way a view here becomes closed: another
 * process's close() leaves our views alone) goes through C_close/C_close_if_open,
 * which bump close_epoch; a vector asks Rust whether its view is closed only
 * when the epoch moved since it last found it open. */
extern uint64_t close_epoch;

void check_open_slow(shard_vec *s);

static inline void check_open_vec(shard_vec *s) {
    if (s->open_epoch != close_epoch) check_open_slow(s);
}

extern R_altrep_class_t cls_real, cls_int, cls_lgl, cls_raw, cls_cplx, cls_str;
extern double n_cow_maps, bytes_cow_maps, n_copies, bytes_copies, n_ro_grants, bytes_ro_grants;
extern double str_cache_bytes, str_cache_elts;

#define VEC(x) ((shard_vec *) R_ExternalPtrAddr(R_altrep_data1(x)))
#define HOLDER(x) R_ExternalPtrProtected(R_altrep_data1(x))
#define HANDLE(x) R_ExternalPtrTag(R_altrep_data1(x))

static inline shard_view *holder_view(SEXP holder) {
    return (shard_view *) R_ExternalPtrAddr(holder);
}

/* Strings, as write.c lays them out: [n u64][offsets u64 x (n+1)][encoding u8 x
 * n, padded to 8][bytes]. Readers never parse this: shard_payload_strings()
 * (Rust, src/payload.rs) decodes and validates it. */
static inline uint64_t str_header_bytes(uint64_t n) {
    return 8 + 8 * (n + 1) + ((n + 7) & ~(uint64_t) 7);
}

/* Whether x has any attribute (ATTRIB is not API from R 4.5; ANY_ATTRIB is). */
#if defined(R_VERSION) && R_VERSION >= R_Version(4, 5, 0)
#define HAS_ATTRIB(x) ANY_ATTRIB(x)
#else
#define HAS_ATTRIB(x) (ATTRIB(x) != R_NilValue)
#endif

/* attach.c */
void rust_error(const char *what);
void view_finalize(SEXP p);
SEXP attach_holder(SEXP handle);
void check_handle(SEXP handle);
shard_handle_fields handle_fields(SEXP handle);
/* vec.c */
void vec_finalize(SEXP p);
int vec_closed(SEXP x);
void check_open(SEXP x);
void vec_set_data(SEXP x, shard_vec *s, const void *data);
SEXPTYPE kind_type(int kind);
void *vec_ptr(SEXP v);
SEXP make_vec(SEXP holder, SEXP handle, int kind, uint64_t byte_offset, uint64_t byte_len, R_xlen_t n);
R_altrep_class_t make_class(const char *name, DllInfo *dll, int type);
SEXP vec_serialized_state(SEXP x);
SEXP dup_vec(SEXP x, shard_vec *s);
/* mapped.c (plain vectors over shared pages) */
typedef struct {
    uint64_t byte_offset, byte_len;
    int kind, closed;
    const uint8_t *handle; /* SHARD_HANDLE_LEN bytes, valid while the vector lives */
} plain_info;
SEXP plain_make(shard_view *v, SEXP handle, int kind, uint64_t byte_offset, uint64_t byte_len, R_xlen_t n);
int plain_lookup(SEXP x, plain_info *out);
SEXP plain_vector_handle(SEXP x);
SEXP plain_subview(SEXP x, int kind, uint64_t byte_off, uint64_t byte_len, R_xlen_t n);
SEXP C_plain_stats(void);
SEXP C_is_plain_vector(SEXP x);
SEXP C_plain_mode(SEXP mode);
SEXP C_plain_cap(SEXP cap);
SEXP C_plain_finish(SEXP x);
/* string.c */
void str_set_methods(R_altrep_class_t c);
SEXP str_plain(SEXP x);
/* cow.c */
int strict_mode(void);
void strict_error(void);
void *writable_data(SEXP x, shard_vec *s);
int vec_changed(SEXP x);
/* write.c */
int vec_kind(SEXP x);
uint64_t elt_size(int kind);
void parse_opts(SEXP o, shard_share_opts *out);

/* .Call entry points (registered in init.c) */
SEXP C_address(SEXP x);
SEXP C_list_replace(SEXP x, SEXP idx, SEXP vals);
SEXP C_segment_create(SEXP size, SEXP opts);
SEXP C_segment_write(SEXP handle, SEXP offset, SEXP data);
SEXP C_segment_read(SEXP holder, SEXP offset, SEXP n, SEXP type);
SEXP C_protect(SEXP handle);
SEXP C_get_attrib(SEXP x);
SEXP C_set_attrib(SEXP x, SEXP attrs, SEXP strict);
SEXP C_materialize(SEXP x);
SEXP C_share_vector(SEXP x, SEXP meta, SEXP opts);
SEXP C_share_serialized(SEXP x, SEXP meta, SEXP opts);
SEXP C_share_composite(SEXP leaves, SEXP meta, SEXP opts);
SEXP C_attach(SEXP handle);
SEXP C_vector_set_deny(SEXP x, SEXP deny);
SEXP C_vector_reset_counts(SEXP x);
SEXP C_handle_len(void);
SEXP C_node_info(void);
SEXP C_handle_node(SEXP handle);
SEXP C_view_info(SEXP holder);
SEXP C_view_meta(SEXP holder);
SEXP C_view_vector(SEXP holder, SEXP handle, SEXP strict);
SEXP C_close(SEXP handle);
SEXP C_owns(SEXP handle);
SEXP C_lookup_name(SEXP name);
SEXP C_sweep(void);
SEXP C_seal_all(void);
SEXP C_stats(void);
SEXP C_vector_handle(SEXP x);
SEXP C_take_fallback(void);
SEXP C_view_numa(SEXP holder);
SEXP C_shared_object(SEXP handle, SEXP x, SEXP layout, SEXP readonly, SEXP name, SEXP opts, SEXP class_info);
SEXP C_fetch(SEXP handle);
SEXP C_close_if_open(SEXP handle);
SEXP C_share_opts(SEXP backing, SEXP readonly, SEXP name);
SEXP C_decode_handle(SEXP handle);
SEXP C_share_plain(SEXP x);
SEXP C_view_advise(SEXP holder, SEXP code); /* advise.c */
SEXP C_user_dir(void);                       /* advise.c */
/* buffer.c (writable shared buffers) */
void buffer_init_classes(DllInfo *dll);
SEXP C_buffer_create(SEXP bytes, SEXP huge);
SEXP C_buffer_open(SEXP path, SEXP bytes, SEXP readonly);
SEXP C_buffer_close(SEXP p, SEXP unlink);
SEXP C_buffer_seal(SEXP p);
SEXP C_buffer_state(SEXP p);
SEXP C_buffer_write(SEXP p, SEXP kind, SEXP idx, SEXP start, SEXP value, SEXP init);
SEXP C_buffer_fill(SEXP p, SEXP kind, SEXP value);
SEXP C_buffer_read(SEXP p, SEXP kind, SEXP idx, SEXP start, SEXP count);
SEXP C_buffer_advise(SEXP p, SEXP advice);
SEXP C_buffer_diag(SEXP reset);
SEXP C_buffer_vector(SEXP p, SEXP kind);
/* views.c (zero-copy ranges of shard vectors) */
SEXP C_is_shard_vector(SEXP x);
SEXP C_view_typed(SEXP x, SEXP byte_off, SEXP n, SEXP type);
SEXP C_view_range(SEXP x, SEXP start, SEXP n);
SEXP C_view_span(SEXP x);

#endif
