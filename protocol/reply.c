/*
 * Server WebSocket messages (see reply.h). Each encoder is a straight
 * sequence of appends; the buffer's sticky error is checked once at the end.
 * Literal member names are written with sizeof-based puts (no strlen).
 */
#include "reply.h"
#include "codec.h"
#include "bus.h"

#include <string.h>

#define LIT(b, s) sc_buf_put((b), (s), sizeof(s) - 1)

/* `"op":"NAME"` opening, then `,"id":I` when there is an id. */
static void open_op(sc_buf_t *b, const char *op, const char *id_json)
{
    LIT(b, "{\"op\":\"");
    sc_buf_puts(b, op);
    sc_buf_putc(b, '"');
    if (id_json != NULL) {
        LIT(b, ",\"id\":");
        sc_buf_puts(b, id_json);
    }
}

/* `,"scope":S` */
static void put_scope(sc_buf_t *b, const char *scope)
{
    LIT(b, ",\"scope\":");
    sc_buf_put_json_cstr(b, scope);
}

int sc_proto_enc_conn(sc_buf_t *b, const sc_conn_t *c)
{
    LIT(b, "{\"session\":");
    sc_buf_put_json_cstr(b, c->session_id != NULL ? c->session_id : "");
    LIT(b, ",\"user\":");
    sc_buf_put_json_cstr(b, c->user_id);
    LIT(b, ",\"at\":");
    sc_buf_put_json_time(b, c->connected_at);
    LIT(b, ",\"meta\":");
    if (c->meta != NULL && c->meta_len > 0)
        sc_buf_put(b, c->meta, c->meta_len);
    else
        LIT(b, "{}");
    sc_buf_putc(b, '}');
    return b->err;
}

int sc_proto_enc_conn_list(sc_buf_t *b, const sc_conn_t *list, size_t n)
{
    sc_buf_putc(b, '[');
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            sc_buf_putc(b, ',');
        sc_proto_enc_conn(b, &list[i]);
    }
    sc_buf_putc(b, ']');
    return b->err;
}

int sc_proto_enc_welcome(sc_buf_t *b, const char *session, const char *user,
                         int heartbeat, int maxsize, uint64_t maxmessage)
{
    return sc_proto_enc_welcome_resume(b, session, user, heartbeat, maxsize,
                                       maxmessage, NULL, -1);
}

int sc_proto_enc_welcome_resume(sc_buf_t *b, const char *session,
                                const char *user, int heartbeat, int maxsize,
                                uint64_t maxmessage, const char *resume_token,
                                int resumed)
{
    open_op(b, "welcome", NULL);
    LIT(b, ",\"version\":1,\"session\":");
    sc_buf_put_json_cstr(b, session != NULL ? session : "");
    LIT(b, ",\"user\":");
    sc_buf_put_json_cstr(b, user);
    LIT(b, ",\"heartbeat\":");
    sc_buf_put_i64(b, heartbeat);
    LIT(b, ",\"maxsize\":");
    sc_buf_put_i64(b, maxsize);
    LIT(b, ",\"maxmessage\":");
    sc_buf_put_u64(b, maxmessage);
    if (resume_token) {
        LIT(b, ",\"resume_token\":");
        sc_buf_put_json_cstr(b, resume_token);
    }
    if (resumed >= 0) {
        if (resumed)
            LIT(b, ",\"resumed\":true");
        else
            LIT(b, ",\"resumed\":false");
    }
    sc_buf_putc(b, '}');
    return b->err;
}

/* ,"presence":[...] and, when the list was cut, ,"total":T. */
static void put_presence(sc_buf_t *b, const sc_conn_t *presence, size_t n,
                         size_t total)
{
    LIT(b, ",\"presence\":");
    sc_proto_enc_conn_list(b, presence, n);
    if (total > n) {
        LIT(b, ",\"total\":");
        sc_buf_put_u64(b, total);
    }
}

/* The subscribed reply; `epoch` NULL: v1's, without history fields. */
static int enc_subscribed(sc_buf_t *b, const char *id_json, const char *scope,
                          uint64_t seq, const uint64_t *epoch, int recovered,
                          const sc_conn_t *presence, size_t n, size_t total)
{
    open_op(b, "subscribed", id_json);
    put_scope(b, scope);
    LIT(b, ",\"seq\":");
    sc_buf_put_u64(b, seq);
    if (epoch) {
        char text[SC_PROTO_EPOCH_LEN + 1];
        sc_proto_epoch_text(*epoch, text);
        LIT(b, ",\"epoch\":\"");
        sc_buf_puts(b, text);
        sc_buf_putc(b, '"');
        if (recovered >= 0)
            sc_buf_puts(b, recovered ? ",\"recovered\":true"
                                     : ",\"recovered\":false");
    }
    put_presence(b, presence, n, total);
    sc_buf_putc(b, '}');
    return b->err;
}

int sc_proto_enc_subscribed(sc_buf_t *b, const char *id_json, const char *scope,
                            uint64_t seq, const sc_conn_t *presence, size_t n,
                            size_t total)
{
    return enc_subscribed(b, id_json, scope, seq, NULL, -1, presence, n, total);
}

int sc_proto_enc_subscribed_epoch(sc_buf_t *b, const char *id_json,
                                  const char *scope, uint64_t seq,
                                  uint64_t epoch, int recovered,
                                  const sc_conn_t *presence, size_t n,
                                  size_t total)
{
    return enc_subscribed(b, id_json, scope, seq, &epoch, recovered, presence,
                          n, total);
}

int sc_proto_enc_unsubscribed(sc_buf_t *b, const char *id_json,
                              const char *scope)
{
    open_op(b, "unsubscribed", id_json);
    put_scope(b, scope);
    sc_buf_putc(b, '}');
    return b->err;
}

int sc_proto_enc_emitted(sc_buf_t *b, const char *id_json, const char *scope,
                         uint64_t seq)
{
    open_op(b, "emitted", id_json);
    put_scope(b, scope);
    LIT(b, ",\"seq\":");
    sc_buf_put_u64(b, seq);
    sc_buf_putc(b, '}');
    return b->err;
}

int sc_proto_enc_presence(sc_buf_t *b, const char *id_json, const char *scope,
                          const sc_conn_t *presence, size_t n, size_t total)
{
    open_op(b, "presence", id_json);
    put_scope(b, scope);
    put_presence(b, presence, n, total);
    sc_buf_putc(b, '}');
    return b->err;
}

int sc_proto_enc_presence_updated(sc_buf_t *b, const char *id_json,
                                  const char *scope)
{
    open_op(b, "presence_updated", id_json);
    put_scope(b, scope);
    sc_buf_putc(b, '}');
    return b->err;
}

int sc_proto_enc_refreshed(sc_buf_t *b, const char *id_json, bool has_exp,
                           int64_t exp)
{
    open_op(b, "refreshed", id_json);
    LIT(b, ",\"exp\":");
    if (has_exp)
        sc_buf_put_i64(b, exp);
    else
        LIT(b, "null");
    sc_buf_putc(b, '}');
    return b->err;
}

int sc_proto_enc_pong(sc_buf_t *b, const char *id_json)
{
    open_op(b, "pong", id_json);
    sc_buf_putc(b, '}');
    return b->err;
}

int sc_proto_enc_error(sc_buf_t *b, const char *id_json, const char *code,
                       const char *message)
{
    open_op(b, "error", id_json);
    LIT(b, ",\"code\":");
    sc_buf_put_json_cstr(b, code != NULL ? code : "");
    LIT(b, ",\"message\":");
    sc_buf_put_json_cstr(b, message != NULL ? message : "");
    sc_buf_putc(b, '}');
    return b->err;
}

int sc_proto_enc_decode_error(sc_buf_t *b, const sc_proto_err_t *err)
{
    return sc_proto_enc_error(b, err->id_json,
                              err->code != NULL ? err->code : "bad_request",
                              err->message);
}

int sc_proto_enc_dropped(sc_buf_t *b, const char *scope, uint64_t count)
{
    open_op(b, "dropped", NULL);
    put_scope(b, scope);
    LIT(b, ",\"count\":");
    sc_buf_put_u64(b, count);
    sc_buf_putc(b, '}');
    return b->err;
}

const char *sc_proto_close_reason_name(int reason)
{
    switch (reason) {
    case SC_CLOSE_KICKED:
        return "kicked";
    case SC_CLOSE_SHUTDOWN:
        return "shutdown";
    default:
        return "closed";
    }
}

int sc_proto_enc_closed(sc_buf_t *b, const char *scope, int reason)
{
    open_op(b, "closed", NULL);
    put_scope(b, scope);
    LIT(b, ",\"reason\":");
    sc_buf_put_json_cstr(b, sc_proto_close_reason_name(reason));
    sc_buf_putc(b, '}');
    return b->err;
}
