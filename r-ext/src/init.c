/*
 * Registration: the .Call table and R_init_shard(), which creates the ALTREP
 * classes.
 */
#include "shard_int.h"

static const R_CallMethodDef call_methods[] = {
    {"C_address", (DL_FUNC) &C_address, 1},
    {"C_list_replace", (DL_FUNC) &C_list_replace, 3},
    {"C_segment_create", (DL_FUNC) &C_segment_create, 2},
    {"C_segment_write", (DL_FUNC) &C_segment_write, 3},
    {"C_segment_read", (DL_FUNC) &C_segment_read, 4},
    {"C_protect", (DL_FUNC) &C_protect, 1},
    {"C_get_attrib", (DL_FUNC) &C_get_attrib, 1},
    {"C_set_attrib", (DL_FUNC) &C_set_attrib, 3},
    {"C_materialize", (DL_FUNC) &C_materialize, 1},
    {"C_share_vector", (DL_FUNC) &C_share_vector, 3},
    {"C_share_serialized", (DL_FUNC) &C_share_serialized, 3},
    {"C_share_composite", (DL_FUNC) &C_share_composite, 3},
    {"C_attach", (DL_FUNC) &C_attach, 1},
    {"C_vector_set_deny", (DL_FUNC) &C_vector_set_deny, 2},
    {"C_vector_reset_counts", (DL_FUNC) &C_vector_reset_counts, 1},
    {"C_handle_len", (DL_FUNC) &C_handle_len, 0},
    {"C_node_info", (DL_FUNC) &C_node_info, 0},
    {"C_handle_node", (DL_FUNC) &C_handle_node, 1},
    {"C_view_info", (DL_FUNC) &C_view_info, 1},
    {"C_view_meta", (DL_FUNC) &C_view_meta, 1},
    {"C_view_vector", (DL_FUNC) &C_view_vector, 3},
    {"C_close", (DL_FUNC) &C_close, 1},
    {"C_owns", (DL_FUNC) &C_owns, 1},
    {"C_lookup_name", (DL_FUNC) &C_lookup_name, 1},
    {"C_sweep", (DL_FUNC) &C_sweep, 0},
    {"C_seal_all", (DL_FUNC) &C_seal_all, 0},
    {"C_stats", (DL_FUNC) &C_stats, 0},
    {"C_vector_handle", (DL_FUNC) &C_vector_handle, 1},
    {"C_take_fallback", (DL_FUNC) &C_take_fallback, 0},
    {"C_view_numa", (DL_FUNC) &C_view_numa, 1},
    {"C_shared_object", (DL_FUNC) &C_shared_object, 7},
    {"C_fetch", (DL_FUNC) &C_fetch, 1},
    {"C_close_if_open", (DL_FUNC) &C_close_if_open, 1},
    {"C_share_opts", (DL_FUNC) &C_share_opts, 3},
    {"C_decode_handle", (DL_FUNC) &C_decode_handle, 1},
    {"C_share_plain", (DL_FUNC) &C_share_plain, 1},
    {"C_view_advise", (DL_FUNC) &C_view_advise, 2},
    {"C_user_dir", (DL_FUNC) &C_user_dir, 0},
    /* runtime: buffer.c, views.c */
    {"C_buffer_create", (DL_FUNC) &C_buffer_create, 2},
    {"C_buffer_open", (DL_FUNC) &C_buffer_open, 3},
    {"C_buffer_close", (DL_FUNC) &C_buffer_close, 2},
    {"C_buffer_seal", (DL_FUNC) &C_buffer_seal, 1},
    {"C_buffer_state", (DL_FUNC) &C_buffer_state, 1},
    {"C_buffer_write", (DL_FUNC) &C_buffer_write, 6},
    {"C_buffer_fill", (DL_FUNC) &C_buffer_fill, 3},
    {"C_buffer_read", (DL_FUNC) &C_buffer_read, 5},
    {"C_buffer_advise", (DL_FUNC) &C_buffer_advise, 2},
    {"C_buffer_diag", (DL_FUNC) &C_buffer_diag, 1},
    {"C_buffer_vector", (DL_FUNC) &C_buffer_vector, 2},
    {"C_is_shard_vector", (DL_FUNC) &C_is_shard_vector, 1},
    {"C_plain_stats", (DL_FUNC) &C_plain_stats, 0},
    {"C_is_plain_vector", (DL_FUNC) &C_is_plain_vector, 1},
    {"C_plain_mode", (DL_FUNC) &C_plain_mode, 1},
    {"C_plain_cap", (DL_FUNC) &C_plain_cap, 1},
    {"C_plain_finish", (DL_FUNC) &C_plain_finish, 1},
    {"C_view_range", (DL_FUNC) &C_view_range, 3},
    {"C_view_typed", (DL_FUNC) &C_view_typed, 4},
    {"C_view_span", (DL_FUNC) &C_view_span, 1},
    {NULL, NULL, 0}};

void R_init_shard(DllInfo *dll) {
    cls_real = make_class("shard_real", dll, REALSXP);
    cls_int = make_class("shard_integer", dll, INTSXP);
    cls_lgl = make_class("shard_logical", dll, LGLSXP);
    cls_raw = make_class("shard_raw", dll, RAWSXP);
    cls_cplx = make_class("shard_complex", dll, CPLXSXP);
    cls_str = make_class("shard_string", dll, STRSXP);
    buffer_init_classes(dll);
    R_registerRoutines(dll, NULL, call_methods, NULL, NULL);
    R_useDynamicSymbols(dll, FALSE);
    R_forceSymbols(dll, TRUE);
}
