/*
 * The shard C ABI as a C program sees it (include/shard.h): share, attach,
 * read, close; error codes and the per-thread last-error message; names;
 * writable segments; a forked child attaching its parent's object.
 * Built and run by tests/c_abi.rs; prints "C-ABI-OK" and exits 0 on success.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shard.h"

static int failures = 0;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "abi.c:%d: check failed: %s (last error: %s)\n",   \
                    __LINE__, #cond, shard_last_error());                      \
            failures++;                                                        \
        }                                                                      \
    } while (0)

enum { K_F64 = 1, K_RAW = 4 };

static int share_doubles(const double *x, uint64_t n, const char *name, uint8_t *handle) {
    shard_share_opts o;
    memset(&o, 0, sizeof o);
    o.readonly = 1;
    o.huge_pages = 0;
    o.name = name;
    shard_writer *w = NULL;
    int rc = shard_begin(&o, K_F64, n, (const uint8_t *) "meta", 4, n * 8, &w);
    if (rc != SHARD_OK) return rc;
    rc = shard_writer_copy(w, 0, x, n * 8);
    if (rc != SHARD_OK) {
        shard_abort(w);
        return rc;
    }
    return shard_finish(w, handle);
}

static double sum_view(const shard_view *v, uint64_t n) {
    const double *d = (const double *) shard_view_data(v);
    double s = 0;
    for (uint64_t i = 0; i < n; i++) s += d[i];
    return s;
}

/* The last error is per thread: an error here does not touch main's. */
static void *other_thread(void *arg) {
    (void) arg;
    uint8_t junk[SHARD_HANDLE_LEN] = {0};
    shard_view *v = NULL;
    int rc = shard_attach(junk, sizeof junk, &v);
    return (void *) (intptr_t) (rc == SHARD_BAD_HANDLE && strstr(shard_last_error(), "magic") != NULL);
}

int main(void) {
    enum { N = 100000 };
    double *x = malloc(N * sizeof *x), expect = 0;
    for (int i = 0; i < N; i++) { x[i] = i * 0.25; expect += x[i]; }

    /* share / attach / read */
    uint8_t h[SHARD_HANDLE_LEN];
    CHECK(share_doubles(x, N, NULL, h) == SHARD_OK);
    shard_view *v = NULL;
    CHECK(shard_attach(h, sizeof h, &v) == SHARD_OK && v != NULL);
    shard_view_info info;
    CHECK(shard_view_info_get(v, &info) == SHARD_OK);
    CHECK(info.kind == K_F64 && info.elem_count == N && info.data_len == N * 8);
    CHECK(info.local == 1 && info.closed == 0 && info.writable == 0);
    CHECK(sum_view(v, N) == expect);
    uint64_t mlen = 0;
    const uint8_t *m = shard_view_meta(v, &mlen);
    CHECK(m != NULL && mlen == 4 && memcmp(m, "meta", 4) == 0);
    CHECK(shard_owns(h, sizeof h) == 1);
    CHECK(shard_view_validate(v) == SHARD_OK);

    /* a forked child attaches for free (inherited mapping) */
    pid_t pid = fork();
    if (pid == 0) {
        shard_view *cv = NULL;
        int ok = shard_attach(h, sizeof h, &cv) == SHARD_OK && sum_view(cv, N) == expect;
        shard_stats st;
        ok = ok && shard_stats_get(&st) == SHARD_OK && st.foreign_regions_mapped == 0 &&
             st.pid == (uint32_t) getpid() && shard_owns(h, sizeof h) == 0;
        shard_view_free(cv);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* close: views say closed, attach says closed, with a message */
    CHECK(shard_close(h, sizeof h) == SHARD_OK);
    CHECK(shard_view_closed(v) == 1);
    CHECK(shard_view_validate(v) == SHARD_CLOSED);
    shard_view *v2 = NULL;
    CHECK(shard_attach(h, sizeof h, &v2) == SHARD_CLOSED && v2 == NULL);
    CHECK(strstr(shard_last_error(), "closed") != NULL);
    CHECK(shard_close(h, sizeof h) == SHARD_CLOSED);
    shard_view_free(v);

    /* bad handles: corrupted, truncated, NULL */
    uint8_t h2[SHARD_HANDLE_LEN];
    CHECK(share_doubles(x, 10, NULL, h2) == SHARD_OK);
    uint8_t bad[SHARD_HANDLE_LEN];
    memcpy(bad, h2, sizeof bad);
    bad[40] ^= 4;
    CHECK(shard_attach(bad, sizeof bad, &v2) == SHARD_BAD_HANDLE);
    CHECK(strstr(shard_last_error(), "checksum") != NULL);
    CHECK(shard_attach(h2, sizeof h2 - 1, &v2) == SHARD_BAD_HANDLE);
    CHECK(shard_attach(NULL, sizeof h2, &v2) == SHARD_INVALID_ARGUMENT);
    CHECK(shard_attach(h2, sizeof h2, NULL) == SHARD_INVALID_ARGUMENT);
    CHECK(shard_owns(bad, sizeof bad) == -SHARD_BAD_HANDLE);

    /* per-thread last error */
    CHECK(shard_attach(h2, sizeof h2 - 1, &v2) == SHARD_BAD_HANDLE);
    char mine[256];
    snprintf(mine, sizeof mine, "%s", shard_last_error());
    pthread_t t;
    void *ok = NULL;
    CHECK(pthread_create(&t, NULL, other_thread, NULL) == 0);
    pthread_join(t, &ok);
    CHECK(ok == (void *) 1);
    CHECK(strcmp(mine, shard_last_error()) == 0);

    /* invalid options */
    shard_share_opts o;
    memset(&o, 0, sizeof o);
    o.backing = 9;
    shard_writer *w = NULL;
    CHECK(shard_begin(&o, K_RAW, 1, NULL, 0, 1, &w) == SHARD_INVALID_ARGUMENT && w == NULL);
    CHECK(strstr(shard_last_error(), "backing") != NULL);
    o.backing = 0;
    CHECK(shard_begin(&o, 200, 1, NULL, 0, 1, &w) == SHARD_INVALID_ARGUMENT);
    CHECK(shard_begin(&o, K_F64, 3, NULL, 0, 7, &w) == SHARD_INVALID_ARGUMENT);

    /* names: lookup gives the same handle; a duplicate is refused */
    char name[64];
    snprintf(name, sizeof name, "c-abi-%d", (int) getpid());
    uint8_t hn[SHARD_HANDLE_LEN], hl[SHARD_HANDLE_LEN];
    CHECK(share_doubles(x, 10, name, hn) == SHARD_OK);
    CHECK(shard_lookup_name(name, hl) == SHARD_OK && memcmp(hn, hl, SHARD_HANDLE_LEN) == 0);
    CHECK(share_doubles(x, 10, name, hl) == SHARD_NAME_TAKEN);
    CHECK(strstr(shard_last_error(), name) != NULL);
    CHECK(shard_close(hn, sizeof hn) == SHARD_OK);
    CHECK(shard_lookup_name(name, hl) == SHARD_NOT_FOUND);

    /* writable segment, then protected */
    uint8_t hs[SHARD_HANDLE_LEN];
    memset(&o, 0, sizeof o);
    CHECK(shard_segment_create(&o, 1 << 20, hs) == SHARD_OK);
    CHECK(shard_segment_write(hs, sizeof hs, 100, "hello", 5) == SHARD_OK);
    shard_view *sv = NULL;
    CHECK(shard_attach(hs, sizeof hs, &sv) == SHARD_OK);
    CHECK(memcmp(shard_view_data(sv) + 100, "hello", 5) == 0);
    CHECK(shard_segment_write(hs, sizeof hs, (1 << 20) - 2, "abc", 3) == SHARD_INVALID_ARGUMENT);
    CHECK(shard_protect(hs, sizeof hs) == SHARD_OK);
    CHECK(shard_segment_write(hs, sizeof hs, 0, "x", 1) == SHARD_PERMISSION_DENIED);
    CHECK(shard_view_info_get(sv, &info) == SHARD_OK && info.seals == 0xF);
    /* a private copy-on-write mapping is writable and stays private */
    shard_private *p = NULL;
    uint8_t *pd = NULL;
    CHECK(shard_view_private(sv, &p, &pd) == SHARD_OK && p != NULL);
    CHECK(shard_private_modified(p) == 0);
    pd[100] = 'J';
    CHECK(shard_private_modified(p) == 1);
    CHECK(shard_view_data(sv)[100] == 'h');
    shard_private_free(p);
    shard_view_free(sv);
    CHECK(shard_close(hs, sizeof hs) == SHARD_OK);

    /* stats, sweep, knobs */
    shard_stats st;
    CHECK(shard_stats_get(&st) == SHARD_OK && st.pid == (uint32_t) getpid());
    CHECK(st.live_objects == 1); /* h2 */
    uint64_t removed = 0;
    CHECK(shard_sweep(&removed) == SHARD_OK);
    CHECK(shard_set_prefault(0) == SHARD_OK && shard_set_prefault(1) == SHARD_OK);
    CHECK(shard_set_prefault(-1) == SHARD_OK && shard_set_prefault(7) == SHARD_INVALID_ARGUMENT);
    CHECK(shard_set_spare_region(0) == SHARD_OK);

    /* node identity: this process's node, a handle's node, another node's handle */
    shard_node_info me, hn2;
    CHECK(shard_node_info_get(&me) == SHARD_OK && me.local == 1 && me.hostname[0] != 0);
    CHECK(strlen(me.id) > 33 && me.id[32] == '-' && me.pid_ns != 0);
    CHECK(shard_handle_node(h2, sizeof h2, &hn2) == SHARD_OK && hn2.local == 1);
    CHECK(strcmp(me.id, hn2.id) == 0 && strcmp(me.hostname, hn2.hostname) == 0);
    CHECK(shard_node_info_get(NULL) == SHARD_INVALID_ARGUMENT);
    CHECK(shard_handle_node(h2, sizeof h2 - 1, &hn2) == SHARD_BAD_HANDLE);
    CHECK(shard_close(h2, sizeof h2) == SHARD_OK);

    free(x);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("C-ABI-OK\n");
    return 0;
}
