/*
 * Internal header of the shard R package's C code (not installed, not API).
 *
 * Files and what each owns:
 *   vec.c     numeric ALTREP classes: vector state, methods, make_vec()
 *   string.c  the character ALTREP class and the arena layout of strings
 *   cow.c     writable / copy-on-write paths, strict mode, copy counters
 *   write.c   writing vectors, blobs and composites into the arena; share options
 *   attach.c  handles, attach, fetch, close, view info, stats
 *   values.c  attribute/materialize/identity helpers and low-level segments
 *   init.c    the .Call table and R_init_shard()
 *
 * Rules for all of them: every Rust call returns before any R error is raised
 * (no longjmp crosses Rust frames); the shared bytes are never written; after
 * close() every bulk access is an R error, never a segfault (the mapping lives
 * until the last vector is collected).
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
#include "shard.h"

/* Object kinds (match shard::format::Kind). */
enum { K_BYTES = 0, K_F64 = 1, K_I32 = 2, K_LGL = 3, K_RAW = 4, K_CPLX = 5,
       K_STR = 6, K_COMPOSITE = 7, K_SERIALIZED = 8 };
#define STR_NA_FLAG 255
#define LEAF_ENTRY_BYTES 32

/* The state of one shard vector, owned by the external pointer in data1
 * (tag: the handle; protected: the view holder, which keeps the mapping). */
typedef struct {
    const uint8_t *base;      /* this vector's bytes in the arena */
    R_xlen_t length;
    int kind;
    uint64_t byte_offset;     /* offset of base inside the object's data section */
    uint64_t byte_len;        /* bytes of this vector in the data section */
    shard_private *priv;      /* private copy-on-write mapping, or NULL */
    void *priv_data;          /* writable data (priv mapping or data2 copy) */
} shard_vec;

extern R_altrep_class_t cls_real, cls_int, cls_lgl, cls_raw, cls_cplx, cls_str;
extern double n_cow_maps, bytes_cow_maps, n_copies, bytes_copies;

#define VEC(x) ((shard_vec *) R_ExternalPtrAddr(R_altrep_data1(x)))
#define HOLDER(x) R_ExternalPtrProtected(R_altrep_data1(x))
#define HANDLE(x) R_ExternalPtrTag(R_altrep_data1(x))

static inline shard_view *holder_view(SEXP holder) {
    return (shard_view *) R_ExternalPtrAddr(holder);
}

/* A little-endian unsigned integer of n bytes. */
static inline uint64_t le_u64(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Strings: [n u64][offsets u64 x (n+1)][encoding u8 x n, padded to 8][bytes]. */
typedef struct { uint64_t n; const uint64_t *off; const uint8_t *enc; const char *bytes; } str_layout;

static inline uint64_t str_header_bytes(uint64_t n) {
    return 8 + 8 * (n + 1) + ((n + 7) & ~(uint64_t) 7);
}

static inline str_layout str_read(const uint8_t *base) {
    str_layout l;
    memcpy(&l.n, base, 8);
    l.off = (const uint64_t *) (base + 8);
    l.enc = base + 8 + 8 * (l.n + 1);
    l.bytes = (const char *) (base + str_header_bytes(l.n));
    return l;
}

/* attach.c */
void rust_error(const char *what);
void view_finalize(SEXP p);
SEXP attach_holder(SEXP handle);
/* vec.c */
void vec_finalize(SEXP p);
int vec_closed(SEXP x);
void check_open(SEXP x);
SEXPTYPE kind_type(int kind);
SEXP make_vec(SEXP holder, SEXP handle, int kind, uint64_t byte_offset, uint64_t byte_len, R_xlen_t n);
R_altrep_class_t make_class(const char *name, DllInfo *dll, int type);
SEXP vec_serialized_state(SEXP x);
/* string.c */
void str_set_methods(R_altrep_class_t c);
/* cow.c */
int strict_mode(void);
void *writable_data(SEXP x);
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

#endif
