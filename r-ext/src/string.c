/*
 * The character ALTREP class: CHARSXPs made from the arena layout of a character
 * vector (see str_read() in shard_int.h) and the string class's methods.
 */
#include "shard_int.h"

static SEXP str_make_elt(const str_layout *l, R_xlen_t i) {
    uint8_t e = l->enc[i];
    if (e == STR_NA_FLAG) return NA_STRING;
    cetype_t ce = e == 1 ? CE_UTF8 : e == 2 ? CE_LATIN1 : e == 3 ? CE_BYTES : CE_NATIVE;
    uint64_t len = l->off[i + 1] - l->off[i];
    return Rf_mkCharLenCE(l->bytes + l->off[i], (int) len, ce);
}

static SEXP str_elt(SEXP x, R_xlen_t i) {
    SEXP m = R_altrep_data2(x);
    if (m != R_NilValue) return STRING_ELT(m, i);
    check_open(x);
    str_layout l = str_read(VEC(x)->base);
    return str_make_elt(&l, i);
}

/* Strings have no arena representation R can point into: Dataptr materializes. */
static SEXP str_materialize(SEXP x) {
    SEXP m = R_altrep_data2(x);
    if (m != R_NilValue) return m;
    check_open(x);
    shard_vec *s = VEC(x);
    str_layout l = str_read(s->base);
    m = PROTECT(Rf_allocVector(STRSXP, s->length));
    for (R_xlen_t i = 0; i < s->length; i++) SET_STRING_ELT(m, i, str_make_elt(&l, i));
    R_set_altrep_data2(x, m);
    UNPROTECT(1);
    n_copies += 1;
    bytes_copies += (double) s->byte_len;
    return m;
}

static void *str_dataptr(SEXP x, Rboolean writable) { return DATAPTR(str_materialize(x)); }

static const void *str_dataptr_or_null(SEXP x) {
    SEXP m = R_altrep_data2(x);
    return m == R_NilValue ? NULL : DATAPTR(m);
}

static void str_set_elt(SEXP x, R_xlen_t i, SEXP v) {
    SET_STRING_ELT(str_materialize(x), i, v);
}

static SEXP str_duplicate(SEXP x, Rboolean deep) {
    if (strict_mode())
        Rf_error("shard: modifying or copying a shared vector is not allowed (options(shard.cow = \"error\")); "
                 "use materialize() for a private copy");
    if (R_altrep_data2(x) != R_NilValue) return NULL;
    check_open(x);
    shard_vec *s = VEC(x);
    return make_vec(HOLDER(x), HANDLE(x), s->kind, s->byte_offset, s->byte_len, s->length);
}

static SEXP str_serialized_state(SEXP x) {
    if (R_altrep_data2(x) != R_NilValue) {
        /* Unchanged materialized strings could still go as a handle, but changed ones
         * cannot; we do not track which, so send the values. */
        return NULL;
    }
    return vec_serialized_state(x);
}

void str_set_methods(R_altrep_class_t c) {
    R_set_altrep_Duplicate_method(c, str_duplicate);
    R_set_altrep_Serialized_state_method(c, str_serialized_state);
    R_set_altvec_Dataptr_method(c, str_dataptr);
    R_set_altvec_Dataptr_or_null_method(c, str_dataptr_or_null);
    R_set_altstring_Elt_method(c, str_elt);
    R_set_altstring_Set_elt_method(c, str_set_elt);
}
