/*
 * Events (see event.h). A change event is one allocation: the struct, the
 * pointer arrays, then every string and the payload, so creating one costs a
 * single malloc and freeing it a single free (plus the frame, owned by the
 * encoder's allocator).
 */
#include "event_internal.h"
#include "strmap.h"
#include "common.h"

#include <stdlib.h>
#include <string.h>

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorts `v` (n borrowed strings) in place and drops duplicates; returns the
 * new count. */
static size_t sort_unique(const char **v, size_t n)
{
    if (n < 2)
        return n;
    qsort(v, n, sizeof *v, cmp_str);
    size_t out = 1;
    for (size_t i = 1; i < n; i++)
        if (strcmp(v[i], v[out - 1]) != 0)
            v[out++] = v[i];
    return out;
}

static size_t strings_size(const char *const *v, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += strlen(v[i]) + 1;
    return total;
}

static char *put_str(char **cursor, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = *cursor;
    memcpy(d, s, n);
    *cursor += n;
    return d;
}

sc_event_t *sc__event_create_change(const sc_emit_t *e, uint64_t seq)
{
    size_t np = e->npaths, na = e->has_audience ? e->naudience : 0;
    size_t bytes = sizeof(sc_event_t) + (np + na) * sizeof(char *) +
                   strlen(e->scope) + 1 + strings_size(e->paths, np) +
                   strings_size(e->audience, na) +
                   (e->origin ? strlen(e->origin) + 1 : 0);
    bool own = e->has_payload && e->payload_len >= SC__PAYLOAD_OWN_MIN;
    if (e->has_payload && !own)
        bytes += e->payload_len + 1;
    sc_event_t *ev = malloc(bytes);
    if (!ev)
        return NULL;
    memset(ev, 0, sizeof *ev);
    ev->_alloc = (uint32_t)bytes;
    if (own && (ev->_payload_own = malloc(e->payload_len + 1)) == NULL) {
        free(ev);
        return NULL;
    }
    atomic_init(&ev->_refs, 1);
    ev->_kind = SC_EVENT_CHANGE;
    ev->_seq = seq;
    const char **ptrs = (const char **)(ev + 1);
    char *cur = (char *)(ptrs + np + na);
    ev->_scope = put_str(&cur, e->scope);
    ev->_paths = ptrs;
    for (size_t i = 0; i < np; i++)
        ptrs[i] = put_str(&cur, e->paths[i]);
    ev->_npaths = sort_unique(ptrs, np);
    ev->_has_audience = e->has_audience;
    ev->_audience = ptrs + np;
    for (size_t i = 0; i < na; i++)
        ev->_audience[i] = put_str(&cur, e->audience[i]);
    ev->_naudience = sort_unique(ev->_audience, na);
    if (e->origin) {
        ev->_origin = put_str(&cur, e->origin);
        ev->_origin_hash = sc__hash(e->origin);
    }
    if (e->has_payload) {
        if (own)
            cur = ev->_payload_own;
        if (e->payload_len)
            memcpy(cur, e->payload, e->payload_len);
        cur[e->payload_len] = '\0';
        ev->_payload = cur;
        ev->_payload_len = e->payload_len;
        ev->_has_payload = true;
    }
    return ev;
}

sc_event_t *sc__event_create_presence(int kind, const char *scope,
                                      const sc_conn_t *conn, bool edge)
{
    size_t slen = strlen(scope) + 1;
    sc_event_t *ev = malloc(sizeof *ev + slen);
    if (!ev)
        return NULL;
    memset(ev, 0, sizeof *ev);
    ev->_alloc = (uint32_t)(sizeof *ev + slen);
    if (sc_conn_copy(&ev->_conn, conn) != SC_OK) {
        free(ev);
        return NULL;
    }
    atomic_init(&ev->_refs, 1);
    ev->_kind = (uint8_t)kind;
    ev->_edge = edge;
    memcpy((char *)(ev + 1), scope, slen);
    ev->_scope = (const char *)(ev + 1);
    return ev;
}

void sc__event_add_refs(sc_event_t *ev, uint32_t n)
{
    atomic_fetch_add_explicit(&ev->_refs, n, memory_order_relaxed);
}

void sc__event_unref_many(sc_event_t *ev, uint32_t n)
{
    if (n)
        atomic_fetch_sub_explicit(&ev->_refs, n, memory_order_release);
}

sc_event_t *sc_event_ref(sc_event_t *ev)
{
    if (ev)
        atomic_fetch_add_explicit(&ev->_refs, 1, memory_order_relaxed);
    return ev;
}

void sc_event_unref(sc_event_t *ev)
{
    if (!ev)
        return;
    if (atomic_fetch_sub_explicit(&ev->_refs, 1, memory_order_acq_rel) != 1)
        return;
    if (ev->_gauge) { /* it was queued: it leaves the bus's gauge */
        atomic_fetch_sub_explicit(&ev->_gauge->bytes, ev->_cost,
                                  memory_order_relaxed);
        sc__gauge_release(ev->_gauge);
    }
    if (ev->_frame_free)
        ev->_frame_free(ev->_frame_data);
    sc_conn_deinit(&ev->_conn);
    free(ev->_payload_own);
    free(ev);
}

void sc__gauge_release(sc__gauge_t *g)
{
    if (g && atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) == 1)
        free(g);
}

void sc__event_settle(sc_event_t *ev, bool release_payload)
{
    if (release_payload && ev->_payload_own && ev->_frame) {
        free(ev->_payload_own);
        ev->_payload_own = NULL;
        ev->_payload = NULL;
        ev->_has_payload = false;
    }
    size_t cost = ev->_alloc + ev->_frame_len;
    if (ev->_payload_own)
        cost += ev->_payload_len + 1;
    if (ev->_kind != SC_EVENT_CHANGE)
        cost += ev->_conn.meta_len + (ev->_conn.session_id ? 64 : 0);
    ev->_cost = cost > UINT32_MAX ? UINT32_MAX : (uint32_t)cost;
}

int sc_event_kind(const sc_event_t *ev)
{
    return ev->_kind;
}
const char *sc_event_scope(const sc_event_t *ev)
{
    return ev->_scope;
}
uint64_t sc_event_seq(const sc_event_t *ev)
{
    return ev->_seq;
}
const char *sc_event_origin(const sc_event_t *ev)
{
    return ev->_origin;
}
bool sc_event_user_edge(const sc_event_t *ev)
{
    return ev->_edge;
}

const char *const *sc_event_paths(const sc_event_t *ev, size_t *n)
{
    *n = ev->_npaths;
    return ev->_paths;
}

const char *const *sc_event_audience(const sc_event_t *ev, size_t *n)
{
    *n = ev->_has_audience ? ev->_naudience : 0;
    return ev->_has_audience ? ev->_audience : NULL;
}

bool sc_event_audience_allows(const sc_event_t *ev, const char *user_id)
{
    if (!ev->_has_audience)
        return true;
    if (!user_id)
        return false;
    size_t lo = 0, hi = ev->_naudience;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(user_id, ev->_audience[mid]);
        if (c == 0)
            return true;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return false;
}

const void *sc_event_payload(const sc_event_t *ev, size_t *len)
{
    *len = ev->_payload_len;
    return ev->_has_payload ? ev->_payload : NULL;
}

const sc_conn_t *sc_event_conn(const sc_event_t *ev)
{
    return ev->_kind == SC_EVENT_CHANGE ? NULL : &ev->_conn;
}

void sc_event_set_frame(sc_event_t *ev, void *data, const void *frame,
                        size_t len, void (*free_fn)(void *))
{
    if (ev->_frame_free)
        ev->_frame_free(ev->_frame_data);
    ev->_frame_data = data;
    ev->_frame = frame;
    ev->_frame_len = len;
    ev->_frame_free = free_fn;
}

const void *sc_event_frame(const sc_event_t *ev, size_t *len)
{
    *len = ev->_frame_len;
    return ev->_frame;
}
