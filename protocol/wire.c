/*
 * WebSocket frame building and the event encoder (see wire.h; the frame
 * header itself is wsframe.c's).
 *
 * The event encoder sizes its one allocation from the event (head room,
 * header, fixed text, scope, paths, origin, payload, conn) assuming nothing
 * needs escaping, so in the common case it allocates exactly once and never
 * copies; strings that do need escaping just grow the buffer.
 */
#include "wire.h"
#include "reply.h"

#include <stdlib.h>
#include <string.h>

#define LIT(b, s) sc_buf_put((b), (s), sizeof(s) - 1)

/* Fixed text of the largest message shape, rounded up generously. */
#define EVENT_FIXED 96

int sc_ws_frame_begin(sc_buf_t *b, size_t headroom, size_t size_hint)
{
    if (headroom > SIZE_MAX / 4)
        return SC_EINVAL;
    return sc_buf_reserve_front(b, headroom + SC_WS_MAX_HEADER, size_hint);
}

int sc_ws_frame_end(sc_buf_t *b, void **data, uint8_t **frame,
                    size_t *frame_len)
{
    size_t n = sc_buf_len(b);

    *data = NULL;
    *frame = NULL;
    *frame_len = 0;
    if (b->err != SC_OK || b->data == NULL || b->start < SC_WS_MAX_HEADER) {
        int rc = b->err != SC_OK ? SC_ENOMEM : SC_EINVAL;
        sc_buf_deinit(b);
        return rc;
    }
    uint8_t hdr[SC_WS_MAX_HEADER];
    size_t h = sc_ws_frame_header(hdr, n);
    uint8_t *p = (uint8_t *)b->data + b->start - h;
    memcpy(p, hdr, h);
    *data = b->data;
    *frame = p;
    *frame_len = h + n;
    sc_buf_init(b);
    return SC_OK;
}

/* The members of a change event after "scope". */
static void put_change(sc_buf_t *b, const sc_event_t *ev)
{
    LIT(b, ",\"seq\":");
    sc_buf_put_u64(b, sc_event_seq(ev));
    LIT(b, ",\"paths\":[");
    size_t n;
    const char *const *paths = sc_event_paths(ev, &n);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            sc_buf_putc(b, ',');
        sc_buf_put_json_cstr(b, paths[i]);
    }
    LIT(b, "],\"origin\":");
    sc_buf_put_json_cstr(b, sc_event_origin(ev));
    size_t plen = 0;
    const void *payload = sc_event_payload(ev, &plen);
    if (payload != NULL && plen > 0) {
        LIT(b, ",\"data\":");
        sc_buf_put(b, payload, plen);
    }
}

int sc_proto_enc_event_json(sc_buf_t *b, const sc_event_t *ev)
{
    int kind = sc_event_kind(ev);
    const sc_conn_t *conn = sc_event_conn(ev);

    if (kind == SC_EVENT_CHANGE)
        LIT(b, "{\"op\":\"event\",\"scope\":");
    else if (kind == SC_EVENT_JOIN && conn != NULL)
        LIT(b, "{\"op\":\"join\",\"scope\":");
    else if (kind == SC_EVENT_LEAVE && conn != NULL)
        LIT(b, "{\"op\":\"leave\",\"scope\":");
    else if (kind == SC_EVENT_UPDATE && conn != NULL)
        LIT(b, "{\"op\":\"update\",\"scope\":");
    else
        return SC_EINVAL;
    sc_buf_put_json_cstr(b, sc_event_scope(ev));
    if (kind == SC_EVENT_CHANGE) {
        put_change(b, ev);
    } else {
        LIT(b, ",\"conn\":");
        sc_proto_enc_conn(b, conn);
        if (kind == SC_EVENT_JOIN)
            LIT(b, ",\"first\":");
        else if (kind == SC_EVENT_LEAVE)
            LIT(b, ",\"last\":");
        if (kind != SC_EVENT_UPDATE)
            sc_buf_put_json_bool(b, sc_event_user_edge(ev));
    }
    sc_buf_putc(b, '}');
    return b->err;
}

/* strlen that takes NULL as "". */
static size_t slen(const char *s)
{
    return s != NULL ? strlen(s) : 0;
}

/* Payload size if nothing needs escaping; an estimate, never a limit. */
static size_t event_size_hint(const sc_event_t *ev)
{
    const sc_conn_t *c = sc_event_conn(ev);
    size_t size = EVENT_FIXED;

    size += slen(sc_event_scope(ev));
    if (sc_event_kind(ev) == SC_EVENT_CHANGE) {
        size_t n;
        const char *const *paths = sc_event_paths(ev, &n);
        for (size_t i = 0; i < n; i++)
            size += slen(paths[i]) + 3;
        size += slen(sc_event_origin(ev));
        size_t plen = 0;
        if (sc_event_payload(ev, &plen) != NULL)
            size += plen;
    } else if (c != NULL) {
        size += slen(c->session_id) + slen(c->user_id) + c->meta_len + 64;
    }
    return size;
}

int sc_proto_encode_event(void *ud, sc_event_t *ev)
{
    const sc_proto_event_cfg_t *cfg = ud;
    size_t headroom = cfg != NULL ? cfg->headroom : 0;
    sc_buf_t b;

    sc_buf_init(&b);
    int rc = sc_ws_frame_begin(&b, headroom, event_size_hint(ev));
    if (rc != SC_OK)
        goto fail;
    rc = sc_proto_enc_event_json(&b, ev);
    if (rc != SC_OK)
        goto fail;
    void *data;
    uint8_t *frame;
    size_t len;
    rc = sc_ws_frame_end(&b, &data, &frame, &len);
    if (rc != SC_OK)
        goto fail;
    sc_event_set_frame(ev, data, frame, len, free);
    return SC_OK;
fail:
    sc_buf_deinit(&b);
    return rc;
}
