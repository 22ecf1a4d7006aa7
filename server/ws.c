/*
 * WebSocket connections: identity, requests, replies and the packed write
 * path (the transport underneath, handshake, frames and sockets, is
 * wsio.c).
 *
 * Write path (ARCHITECTURE.md "Server design"): every event arrives with a
 * ready frame built once per emit. When a connection's queues get items
 * its owner's wake puts it on the thread's pending list, which is flushed
 * once per loop pass (before the loop sleeps); a flush re-arms the owner,
 * then gathers, in order, a heartbeat ping, pending replies (the control
 * queue) and queued pushes of every subscription (round-robin) into one
 * buffer of up to SC_WRITE_CHUNK bytes and writes it with one send(). If
 * more remains, or the socket refused bytes, we wait for the socket to
 * have room (EV_WRITE). Replies go before pushes, so `subscribed` precedes
 * the scope's events and `emitted` precedes the client's own echoed event.
 *
 * A slow client costs at most its subscriptions' bounded queues (event
 * references), its unsent replies (capped at SC_CTL_LIMIT) and one packed
 * write held while the socket is full.
 */
#include "server.h"
#include "codec.h"
#include "log.h"
#include "reply.h"
#include "wire.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* Room kept free for a `dropped` or `closed` frame (scope <= 200 bytes). */
#define NOTICE_ROOM 512

static void session_id(char out[17])
{
    unsigned char rnd[8];
    static const char hex[] = "0123456789abcdef";
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        uint64_t t = (uint64_t)sc__now_us() ^ (uint64_t)(uintptr_t)out;
        memcpy(rnd, &t, sizeof rnd);
    }
    for (int i = 0; i < 8; i++) {
        out[2 * i] = hex[rnd[i] >> 4];
        out[2 * i + 1] = hex[rnd[i] & 15];
    }
    out[16] = '\0';
}

/* Writes what a connection has queued right away, on the service thread,
 * instead of waiting for EV_WRITE (two epoll_ctl calls and a loop pass per
 * connection and wake-up, which dominate when each event reaches a few
 * connections or arrives alone). One packed write at most: a deeper queue
 * continues on EV_WRITE, so that writes interleave with reading what the
 * publishers send. */
static void write_now(sc_wsconn_t *c)
{
    if (c->state != SC_WS_OPEN || c->write_armed)
        return; /* closing, or EV_WRITE comes anyway */
    if (sc__ws_writeable(c) < 0)
        sc__wsio_destroy(c);
}

/* ---- wake / pending list (any thread) --------------------------------- */

void sc__ws_wake(void *ud)
{
    sc_wsconn_t *c = ud;
    sc_svc_t *svc = c->svc;
    bool first = false;
    pthread_mutex_lock(&svc->pending_lock);
    if (!c->in_pending) {
        c->in_pending = true;
        c->pnext = svc->pending;
        first = svc->pending == NULL;
        svc->pending = c;
    }
    pthread_mutex_unlock(&svc->pending_lock);
    /* On the service thread itself (a client's or an HTTP emit) the loop's
     * prepare watcher flushes before it next sleeps: no wake-up needed, and
     * everything emitted in this pass goes out in one write per connection. */
    if (first && sc__current_svc != svc)
        lws_cancel_service(svc->ctx);
}

void sc__ws_flush_pending(sc_svc_t *svc)
{
    /* Take the list, then write without the lock (wakes may re-add). */
    pthread_mutex_lock(&svc->pending_lock);
    size_t n = 0;
    for (sc_wsconn_t *c = svc->pending; c; c = c->pnext)
        n++;
    if (n > svc->batch_cap) {
        sc_wsconn_t **v = realloc(svc->batch, n * sizeof *v);
        if (v) {
            svc->batch = v;
            svc->batch_cap = n;
        }
    }
    /* The list is newest first: write in wake order (subscription order
     * for one emit), from the end of the batch backwards. */
    size_t k = n <= svc->batch_cap ? n : 0;
    for (sc_wsconn_t *c = svc->pending, *nx; c; c = nx) {
        nx = c->pnext;
        c->in_pending = false;
        if (k > 0)
            svc->batch[--k] = c;
        else if (c->state == SC_WS_OPEN)
            sc__wsio_want_write(c, true); /* no room: the usual way */
    }
    k = n <= svc->batch_cap ? n : 0;
    svc->pending = NULL;
    pthread_mutex_unlock(&svc->pending_lock);
    sc_wsconn_t **v = svc->batch;
    for (size_t i = 0; i < k; i++) {
        /* The write of a connection is a system call that evicts much of
         * the cache: meanwhile, bring the next connections' write-path
         * lines back (their struct two ahead, then what it points to). */
        if (i + 2 < k) {
            __builtin_prefetch(v[i + 2]);
            __builtin_prefetch((char *)v[i + 2] + 64);
        }
        if (i + 1 < k) {
            sc_wsconn_t *nx = v[i + 1];
            __builtin_prefetch(nx->owner);
            if (nx->nsubs)
                sc_sub_prefetch(nx->subs[0]);
        }
        write_now(v[i]);
    }
}

static void unlink_pending(sc_wsconn_t *c)
{
    sc_svc_t *svc = c->svc;
    pthread_mutex_lock(&svc->pending_lock);
    if (c->in_pending) {
        sc_wsconn_t **pp = &svc->pending;
        while (*pp && *pp != c)
            pp = &(*pp)->pnext;
        if (*pp)
            *pp = c->pnext;
        c->in_pending = false;
    }
    pthread_mutex_unlock(&svc->pending_lock);
}

/* ---- replies ----------------------------------------------------------- */

static void count_error(sc_svc_t *svc, const char *code)
{
    for (int i = 0; i < SC_ERRC_COUNT; i++)
        if (strcmp(code, sc__err_code_names[i]) == 0) {
            SC_COUNT(svc->errors[i], 1);
            return;
        }
    SC_COUNT(svc->errors[SC_ERRC_INTERNAL], 1);
}

/* Frames what the scratch buffer holds into the control queue. */
/* Drops the replies not written yet, except the rest of a frame already
 * partly written (replies go out in buffer-sized slices, not per frame):
 * the close frame must start on a frame boundary. */
static void drop_unsent_replies(sc_wsconn_t *c)
{
    const uint8_t *b = (const uint8_t *)sc_buf_str(&c->ctl);
    size_t len = sc_buf_len(&c->ctl), end = 0;
    while (end < c->ctl_off && end + 2 <= len) {
        uint64_t n = b[end + 1] & 0x7f;
        size_t h = 2;
        if (n == 126 && end + 4 <= len) {
            n = (uint64_t)b[end + 2] << 8 | b[end + 3];
            h = 4;
        } else if (n == 127 && end + 10 <= len) {
            n = 0;
            for (int i = 0; i < 8; i++)
                n = n << 8 | b[end + 2 + i];
            h = 10;
        }
        end += h + (size_t)n;
    }
    if (end > len)
        end = len;
    size_t keep = end > c->ctl_off ? end - c->ctl_off : 0;
    uint8_t part[256], *heap = NULL;
    uint8_t *rest = keep <= sizeof part ? part : (heap = malloc(keep));
    if (keep && rest)
        memcpy(rest, b + c->ctl_off, keep);
    sc_buf_deinit(&c->ctl);
    sc_buf_init(&c->ctl);
    c->ctl_off = 0;
    if (keep && rest) /* (out of memory: the stream is cut, we close) */
        sc_buf_put(&c->ctl, rest, keep);
    free(heap);
}

/* Replies the client does not read are capped: past SC_CTL_LIMIT (or out
 * of memory) the connection is closed. Then the writer is woken. */
static void ctl_queued(sc_wsconn_t *c)
{
    if (!c->close_code && (c->ctl.err != SC_OK ||
                           sc_buf_len(&c->ctl) - c->ctl_off > SC_CTL_LIMIT)) {
        sc_log(SC_LOG_WARN, "session %s: replies not read, closing",
               c->info.session_id);
        drop_unsent_replies(c);
        c->close_code = 1008; /* policy violation */
        c->close_deadline_us = sc__now_us() + 5000000;
    }
    sc__ws_wake(c);
}

static int queue_scratch(sc_wsconn_t *c)
{
    sc_buf_t *s = &c->svc->scratch;
    if (s->err != SC_OK) {
        sc_log(SC_LOG_ERROR, "session %s: out of memory encoding a reply",
               c->info.session_id);
        sc_buf_reset(s);
        return 0;
    }
    uint8_t hdr[SC_WS_MAX_HEADER];
    size_t len = sc_buf_len(s);
    size_t hl = sc_ws_frame_header(hdr, len);
    sc_buf_put(&c->ctl, hdr, hl);
    sc_buf_put(&c->ctl, sc_buf_str(s), len);
    sc_buf_reset(s);
    ctl_queued(c);
    return 0;
}

void sc__ws_queue_frame(sc_wsconn_t *c, const void *frame, size_t len)
{
    if (c->close_code)
        return; /* closing: no more answers */
    sc_buf_put(&c->ctl, frame, len);
    ctl_queued(c);
}

static int reply_error(sc_wsconn_t *c, const char *id_json, const char *code,
                        const char *message)
{
    count_error(c->svc, code);
    sc_proto_enc_error(&c->svc->scratch, id_json, code, message);
    queue_scratch(c);
    return 0;
}

/* ---- subscriptions ------------------------------------------------------- */

static sc_sub_t *find_sub(sc_wsconn_t *c, const char *scope, size_t *index)
{
    for (size_t i = 0; i < c->nsubs; i++)
        if (strcmp(sc_sub_scope(c->subs[i]), scope) == 0) {
            if (index)
                *index = i;
            return c->subs[i];
        }
    return NULL;
}

static void drop_sub_at(sc_wsconn_t *c, size_t i)
{
    sc_sub_t *sub = c->subs[i];
    if (c->carry_sub == sub) {
        sc_event_unref(c->carry);
        c->carry = NULL;
        c->carry_sub = NULL;
    }
    memmove(&c->subs[i], &c->subs[i + 1], (c->nsubs - i - 1) * sizeof *c->subs);
    c->nsubs--;
    sc_sub_destroy(sub);
}

static bool scope_allowed(sc_wsconn_t *c, const char *scope)
{
    return !c->has_claims || sc_auth_scope_allowed(&c->claims, scope);
}

static int reply_presence_list(sc_wsconn_t *c, const sc_request_t *req,
                                bool subscribed, uint64_t seq)
{
    sc_conn_t *list = NULL;
    size_t n = 0;
    bool blind = subscribed && req->no_presence; /* answers "presence":[] */
    if (!blind &&
        sc_bus_presence(c->svc->srv->bus, req->scope, &list, &n) != SC_OK) {
        reply_error(c, req->id_json, "internal", "out of memory");
        return 0;
    }
    if (subscribed)
        sc_proto_enc_subscribed(&c->svc->scratch, req->id_json, req->scope, seq,
                                list, n);
    else
        sc_proto_enc_presence(&c->svc->scratch, req->id_json, req->scope, list,
                              n);
    sc_presence_free(list, n);
    queue_scratch(c);
    return 0;
}

static int op_subscribe(sc_wsconn_t *c, const sc_request_t *req)
{
    sc_svc_t *svc = c->svc;
    if (!scope_allowed(c, req->scope))
        return reply_error(c, req->id_json, "forbidden",
                           "scope: not allowed by the token");
    if (find_sub(c, req->scope, NULL))
        return reply_presence_list(c, req, true,
                                   sc_bus_scope_seq(svc->srv->bus, req->scope));
    if (atomic_load(&svc->srv->draining)) {
        sc_proto_enc_closed(&svc->scratch, req->scope, SC_CLOSE_SHUTDOWN);
        return queue_scratch(c);
    }
    if (c->nsubs >= (size_t)svc->srv->cfg->max_subscriptions)
        return reply_error(c, req->id_json, "limit",
                           "too many subscriptions on this connection");
    if (c->nsubs == c->cap_subs) {
        size_t cap = c->cap_subs ? c->cap_subs * 2 : 4;
        sc_sub_t **v = realloc(c->subs, cap * sizeof *v);
        if (!v)
            return reply_error(c, req->id_json, "internal", "out of memory");
        c->subs = v;
        c->cap_subs = cap;
    }
    sc_conn_t info = c->info; /* borrowed fields; the bus copies them */
    info.meta = req->meta_json;
    info.meta_len = req->meta_json ? strlen(req->meta_json) : 0;
    sc_sub_opts_t opts = {.conn = &info,
                          .echo = req->echo,
                          .quiet = req->no_presence,
                          .hidden = req->no_presence};
    sc_sub_t *sub;
    uint64_t seq;
    if (sc_bus_subscribe(svc->srv->bus, req->scope, c->owner, &opts, &sub, &seq) !=
        SC_OK)
        return reply_error(c, req->id_json, "internal", "out of memory");
    c->subs[c->nsubs++] = sub;
    sc_log(SC_LOG_DEBUG, "session %s subscribed to %s", c->info.session_id,
           req->scope);
    reply_presence_list(c, req, true, seq);
    return 0;
}

static int op_unsubscribe(sc_wsconn_t *c, const sc_request_t *req)
{
    size_t i;
    if (find_sub(c, req->scope, &i))
        drop_sub_at(c, i);
    sc_proto_enc_unsubscribed(&c->svc->scratch, req->id_json, req->scope);
    queue_scratch(c);
    return 0;
}

static int op_emit(sc_wsconn_t *c, const sc_request_t *req)
{
    sc_svc_t *svc = c->svc;
    bool allowed = c->has_claims ? sc_auth_emit_allowed(&c->claims, req->scope)
                                 : svc->srv->cfg->client_emit;
    if (!allowed)
        return reply_error(c, req->id_json, "forbidden",
                           "emit: not allowed for this connection");
    sc_emit_t e;
    sc_request_to_emit(req, c->info.session_id, &e);
    uint64_t seq = 0;
    if (sc_bus_emit(svc->srv->bus, &e, &seq) != SC_OK)
        return reply_error(c, req->id_json, "internal", "out of memory");
    sc_proto_enc_emitted(&svc->scratch, req->id_json, req->scope, seq);
    queue_scratch(c);
    return 0;
}

void sc__ws_message(sc_wsconn_t *c, const char *msg, size_t len)
{
    if (c->close_code)
        return; /* closing: further requests are ignored */
    sc_request_t req;
    sc_proto_err_t err;
    if (sc_proto_decode(msg, len, &req, &err) != SC_OK) {
        count_error(c->svc, err.code);
        sc_proto_enc_decode_error(&c->svc->scratch, &err);
        queue_scratch(c);
        sc_proto_err_deinit(&err);
        return;
    }
    switch (req.op) {
    case SC_OP_SUBSCRIBE:
        op_subscribe(c, &req);
        break;
    case SC_OP_UNSUBSCRIBE:
        op_unsubscribe(c, &req);
        break;
    case SC_OP_EMIT:
        op_emit(c, &req);
        break;
    case SC_OP_PRESENCE:
        if (!scope_allowed(c, req.scope))
            reply_error(c, req.id_json, "forbidden",
                        "scope: not allowed by the token");
        else
            reply_presence_list(c, &req, false, 0);
        break;
    case SC_OP_PING:
        sc_proto_enc_pong(&c->svc->scratch, req.id_json);
        queue_scratch(c);
        break;
    }
    sc_request_deinit(&req);
}

/* ---- write path ---------------------------------------------------------- */

typedef struct packer {
    sc_wsconn_t *c;
    uint8_t *base; /* svc->wbuf */
    size_t fill;
    size_t direct; /* bytes of frames larger than the buffer, written alone */
    bool broken; /* a write failed: the connection is gone */
} packer_t;

static size_t room(const packer_t *p)
{
    return SC_WRITE_CHUNK - p->fill;
}

static void put_scratch(packer_t *p)
{
    sc_buf_t *s = &p->c->svc->scratch;
    size_t len = sc_buf_len(s);
    if (s->err == SC_OK && len + SC_WS_MAX_HEADER <= room(p)) {
        p->fill += sc_ws_frame_header(p->base + p->fill, len);
        memcpy(p->base + p->fill, sc_buf_str(s), len);
        p->fill += len;
    }
    sc_buf_reset(s);
}

/* Packs one event frame. Returns false when it does not fit (the caller
 * keeps it as the carry). */
static bool put_event(packer_t *p, sc_event_t *ev)
{
    size_t len;
    const void *frame = sc_event_frame(ev, &len);
    sc_svc_t *svc = p->c->svc;
    if (len <= room(p)) {
        memcpy(p->base + p->fill, frame, len);
        p->fill += len;
    } else if (p->fill == 0) {
        /* Bigger than the buffer: write it on its own; the transport
         * holds what the socket does not take. */
        if (sc__wsio_send(p->c, frame, len) < 0)
            p->broken = true; /* dropped with the connection */
        SC_COUNT(svc->bytes_out, len);
        p->direct += len;
    } else {
        return false;
    }
    SC_COUNT(svc->delivered, 1);
    sc_event_unref(ev);
    return true;
}

/* Drains one subscription into the buffer. Returns true when the buffer is
 * full (stop), false when the queue is empty or closed. *closed is set when
 * the subscription ended. */
static bool drain_sub(packer_t *p, sc_sub_t *sub, bool *closed)
{
    sc_svc_t *svc = p->c->svc;
    for (;;) {
        /* Stop when the buffer is full, when the socket holds back part
         * of a large frame, or after 4 large frames (fairness). */
        if (room(p) < NOTICE_ROOM || p->broken ||
            (p->direct && (p->c->out_len || p->direct >= 4 * SC_WRITE_CHUNK)))
            return true;
        sc_event_t *ev;
        uint32_t dropped = 0;
        int rc = sc_sub_next(sub, &ev, &dropped);
        if (dropped) {
            sc_proto_enc_dropped(&svc->scratch, sc_sub_scope(sub), dropped);
            put_scratch(p);
        }
        if (rc == SC_OK) {
            if (!put_event(p, ev)) {
                p->c->carry = ev;
                p->c->carry_sub = sub;
                return true;
            }
            continue;
        }
        if (rc == SC_ECLOSED) {
            sc_proto_enc_closed(&svc->scratch, sc_sub_scope(sub),
                                sc_sub_close_reason(sub));
            put_scratch(p);
            *closed = true;
        }
        return false;
    }
}

/* Packs pushes of every subscription, round-robin. Returns true when more
 * remains to be written. */
static bool drain_subs(packer_t *p)
{
    sc_wsconn_t *c = p->c;
    if (c->carry) {
        sc_event_t *ev = c->carry;
        if (!put_event(p, ev))
            return true;
        c->carry = NULL;
        c->carry_sub = NULL;
    }
    bool more = false;
    size_t n = c->nsubs;
    for (size_t k = 0; k < n && !more; k++) {
        size_t i = (c->rr + k) % n;
        bool closed = false;
        more = drain_sub(p, c->subs[i], &closed);
        if (closed) {
            sc_log(SC_LOG_DEBUG, "session %s: %s closed", c->info.session_id,
                   sc_sub_scope(c->subs[i]));
            sc_sub_destroy(c->subs[i]);
            c->subs[i] = NULL;
        }
    }
    size_t out = 0; /* compact the closed ones away, keeping order */
    for (size_t i = 0; i < n; i++)
        if (c->subs[i])
            c->subs[out++] = c->subs[i];
    c->nsubs = out;
    c->rr++;
    if (c->svc->draining && c->nsubs == 0 && !c->close_code)
        c->close_code = 1001; /* going away */
    return more;
}

int sc__ws_writeable(sc_wsconn_t *c)
{
    sc_svc_t *svc = c->svc;
    packer_t p = {.c = c, .base = svc->wbuf};
    sc_owner_rearm(c->owner);
    if (c->ping_due) {
        /* FIN + ping with a small payload (any frame from the client
         * counts as a sign of life, the pong too). */
        static const uint8_t ping[] = {0x89, 0x04, 's', 'c', 'p', 'g'};
        memcpy(p.base, ping, sizeof ping);
        p.fill = sizeof ping;
        c->ping_due = false;
    }
    bool more = false;
    size_t ctl_left = sc_buf_len(&c->ctl) - c->ctl_off;
    if (ctl_left) {
        size_t n = ctl_left < room(&p) ? ctl_left : room(&p);
        memcpy(p.base + p.fill, sc_buf_str(&c->ctl) + c->ctl_off, n);
        p.fill += n;
        c->ctl_off += n;
        more = n < ctl_left;
        if (!more) { /* written: release it, idle connections keep none */
            sc_buf_deinit(&c->ctl);
            c->ctl_off = 0;
        }
    }
    if (!more && !c->close_code)
        more = drain_subs(&p);
    if (p.broken)
        return -1;
    if (p.fill) {
        if (sc__wsio_send(c, p.base, p.fill) < 0)
            return -1;
        SC_COUNT(svc->bytes_out, p.fill);
    }
    if (more) {
        sc__wsio_want_write(c, true);
        return 0;
    }
    if (c->close_code)
        return sc__wsio_close(c, c->close_code,
                              c->close_code == 1001 ? "server shutting down"
                                                    : "");
    return 0;
}

/* ---- connection lifecycle ------------------------------------------------ */

static void conn_link(sc_svc_t *svc, sc_wsconn_t *c)
{
    c->next = svc->conns;
    if (svc->conns)
        svc->conns->prev = c;
    svc->conns = c;
    svc->nconns++;
}

static void conn_unlink(sc_svc_t *svc, sc_wsconn_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        svc->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    svc->nconns--;
}

/* Verifies the upgrade's token. Returns true when the connection may go on
 * (anonymous or a valid token); false: reply unauthorized and close 4401. */
static bool authenticate(sc_wsconn_t *c, const char *token, char *why,
                         size_t whylen)
{
    sc_svc_t *svc = c->svc;
    const char *secret = svc->srv->jwt_secret;
    snprintf(why, whylen, "token required");
    if (!secret || !*secret)
        return true; /* no JWT configured: everyone is anonymous */
    if (!token || !*token)
        return !svc->srv->cfg->require_auth;
    if (sc_auth_verify(token, secret, time(NULL), &c->claims, why, whylen) !=
        SC_OK)
        return false;
    c->has_claims = true;
    return true;
}

sc_wsconn_t *sc__ws_open(sc_svc_t *svc, int fd, char *token)
{
    sc_wsconn_t *c = calloc(1, sizeof *c);
    if (!c) {
        free(token);
        return NULL;
    }
    c->svc = svc;
    sc_buf_init(&c->ctl);
    sc_buf_init(&c->rx);
    char sid[17], why[160];
    session_id(sid);
    bool ok = authenticate(c, token, why, sizeof why);
    free(token);
    if (sc_conn_init(&c->info, sid, c->has_claims ? c->claims.sub : NULL,
                     sc__wall_seconds(), NULL, 0) != SC_OK ||
        sc_owner_create(sc__ws_wake, c, &c->owner) != SC_OK) {
        sc_conn_deinit(&c->info);
        if (c->has_claims)
            sc_claims_deinit(&c->claims);
        free(c);
        return NULL;
    }
    conn_link(svc, c);
    SC_COUNT(svc->connections_total, 1);
    c->last_seen_us = c->last_ping_us = sc__now_us();
    sc__wsio_start(c, fd);
    if (!ok) {
        sc_log(SC_LOG_DEBUG, "session %s: unauthorized (%s)", sid, why);
        reply_error(c, NULL, "unauthorized", why);
        c->close_code = 4401;
        return c;
    }
    sc_log(SC_LOG_DEBUG, "session %s connected (user %s)", sid,
           c->info.user_id ? c->info.user_id : "-");
    sc_proto_enc_welcome(&svc->scratch, sid, c->info.user_id,
                         svc->srv->cfg->heartbeat, (int)svc->srv->cfg->maxsize);
    queue_scratch(c);
    return c;
}

void sc__ws_free(sc_wsconn_t *c)
{
    sc_svc_t *svc = c->svc;
    sc_log(SC_LOG_DEBUG, "session %s disconnected", c->info.session_id);
    sc_event_unref(c->carry);
    /* Subscriptions first: once they are gone no emitter can wake us, so
     * the pending list cannot get this connection back. */
    for (size_t i = 0; i < c->nsubs; i++)
        sc_sub_destroy(c->subs[i]);
    unlink_pending(c);
    sc_owner_destroy(c->owner);
    conn_unlink(svc, c);
    free(c->subs);
    sc_buf_deinit(&c->rx);
    sc_buf_deinit(&c->ctl);
    if (c->has_claims)
        sc_claims_deinit(&c->claims);
    sc_conn_deinit(&c->info);
    free(c);
}

int sc__ws_callback(struct lws *wsi, enum lws_callback_reasons reason,
                    void *user, void *in, size_t len)
{
    (void)user;
    (void)in;
    (void)len;
    if (reason == LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION) {
        /* An upgrade after a request on a kept-alive connection: the
         * WebSocket must be the connection's first request. */
        lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, NULL);
        return -1;
    }
    return 0;
}

/* ---- timers and shutdown ---------------------------------------------- */

void sc__ws_tick(sc_svc_t *svc, int64_t now)
{
    int64_t hb = (int64_t)svc->srv->cfg->heartbeat * 1000000;
    for (sc_wsconn_t *c = svc->conns, *next; c; c = next) {
        next = c->next;
        if (c->close_deadline_us && now >= c->close_deadline_us) {
            /* the peer neither read our close nor closed */
            sc__wsio_destroy(c);
            continue;
        }
        if (c->close_code)
            continue;
        if (now - c->last_seen_us > 2 * hb) {
            sc_log(SC_LOG_DEBUG, "session %s: heartbeat timeout",
                   c->info.session_id);
            c->close_code = 4408;
            /* if the socket never drains, it is dropped after 5 s */
            c->close_deadline_us = now + 5000000;
            sc__ws_wake(c);
        } else if (now - c->last_ping_us >= hb) {
            c->last_ping_us = now;
            c->ping_due = true;
            sc__ws_wake(c);
        }
    }
}

void sc__ws_begin_drain(sc_svc_t *svc)
{
    sc_server_t *srv = svc->srv;
    svc->draining = true;
    svc->drain_deadline_us =
        sc__now_us() + (int64_t)srv->cfg->drain_timeout * 1000000;
    /* The first thread to notice closes every subscription once; the
     * others' connections get their `closed` pushes through their wakes. */
    if (!atomic_exchange(&srv->draining, true)) {
        size_t n = sc_bus_close(srv->bus, NULL, SC_CLOSE_SHUTDOWN);
        sc_log(SC_LOG_INFO,
               "shutting down: draining %zu connection(s), %zu "
               "subscription(s)",
               sc__total_connections(srv), n);
    }
    for (sc_wsconn_t *c = svc->conns; c; c = c->next) {
        if (c->nsubs == 0 && !c->close_code)
            c->close_code = 1001; /* going away */
        sc__ws_wake(c);
    }
}
