/* Connection info value type (see conn.h). */
#include "conn.h"
#include "common.h"

#include <stdlib.h>
#include <string.h>

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

int sc_conn_init(sc_conn_t *c, const char *session_id, const char *user_id,
                 double connected_at, const void *meta, size_t meta_len)
{
    memset(c, 0, sizeof *c);
    if (!session_id)
        return SC_EINVAL;
    c->session_id = dup_str(session_id);
    if (!c->session_id)
        goto fail;
    if (user_id && !(c->user_id = dup_str(user_id)))
        goto fail;
    if (meta) {
        c->meta = malloc(meta_len + 1);
        if (!c->meta)
            goto fail;
        memcpy(c->meta, meta, meta_len);
        c->meta[meta_len] = '\0';
        c->meta_len = meta_len;
    }
    c->connected_at = connected_at;
    return SC_OK;
fail:
    sc_conn_deinit(c);
    return SC_ENOMEM;
}

int sc_conn_copy(sc_conn_t *dst, const sc_conn_t *src)
{
    return sc_conn_init(dst, src->session_id, src->user_id, src->connected_at,
                        src->meta, src->meta_len);
}

void sc_conn_deinit(sc_conn_t *c)
{
    if (!c)
        return;
    free(c->session_id);
    free(c->user_id);
    free(c->meta);
    memset(c, 0, sizeof *c);
}

static bool str_eq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

bool sc_conn_equal(const sc_conn_t *a, const sc_conn_t *b)
{
    if (!str_eq(a->session_id, b->session_id) ||
        !str_eq(a->user_id, b->user_id) || a->connected_at != b->connected_at)
        return false;
    if (!a->meta || !b->meta)
        return a->meta == b->meta;
    return a->meta_len == b->meta_len &&
           memcmp(a->meta, b->meta, a->meta_len) == 0;
}
