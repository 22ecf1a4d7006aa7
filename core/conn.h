/*
 * Connection info: who a subscriber is. A plain value type (the original's
 * ConnectionInfo): session id (required), user id (optional), connected-at
 * and optional presence meta (opaque bytes; the server stores a JSON object).
 * Two infos are equal when every field is equal; presence de-duplicates by
 * that equality.
 *
 * Ownership: an sc_conn_t owns its strings. sc_conn_init/sc_conn_copy fill
 * caller-owned storage with fresh copies; sc_conn_deinit frees them.
 *
 * Thread: these functions touch only their arguments; a given sc_conn_t must
 * not be written by two threads at once.
 */
#ifndef SC_CONN_H
#define SC_CONN_H

#include <stdbool.h>
#include <stddef.h>

typedef struct sc_conn {
    char *session_id;    /* never NULL once initialised */
    char *user_id;       /* NULL = anonymous */
    double connected_at; /* seconds since the epoch */
    char *meta;          /* NULL = none; else meta_len bytes + a NUL */
    size_t meta_len;
} sc_conn_t;

/* Fills `c` with copies of the arguments. `session_id` must be non-NULL;
 * `user_id` and `meta` may be NULL. Returns SC_OK, SC_EINVAL (no session id)
 * or SC_ENOMEM; on error `c` is zeroed and holds nothing. */
int sc_conn_init(sc_conn_t *c, const char *session_id, const char *user_id,
                 double connected_at, const void *meta, size_t meta_len);

/* Deep copy of `src` into `dst`. Returns SC_OK or SC_ENOMEM (dst zeroed). */
int sc_conn_copy(sc_conn_t *dst, const sc_conn_t *src);

/* Frees what `c` owns and zeroes it. NULL and zeroed infos are no-ops. */
void sc_conn_deinit(sc_conn_t *c);

/* True when every field of `a` and `b` is equal (value semantics). */
bool sc_conn_equal(const sc_conn_t *a, const sc_conn_t *b);

#endif
