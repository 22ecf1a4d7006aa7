/*
 * What waits to be sent, and the packed write path (see writer.h).
 *
 * A slow client costs at most its subscriptions' bounded queues (event
 * references), its unsent replies (capped at SC_CTL_LIMIT) and one packed
 * write held while the socket is full.
 */
#include "writer.h"
#include "clock.h"
#include "log.h"
#include "reply.h"
#include "wire.h"

#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

/* Room kept free for a `dropped` or `closed` frame (scope <= 200 bytes). */
#define NOTICE_ROOM 512
/* Large frames written alone per write, at most (fairness). */
#define LARGE_FRAMES_PER_WRITE 4

/* The pending list is linked through pnext, newest first, and ends with
 * END rather than NULL, so that pnext != NULL means "on the list". */
static sc_writer_t list_end;
#define END (&list_end)

struct sc_writer_thread {
    pthread_mutex_t pending_lock;
    sc_writer_t *pending; /* {pending_lock} newest first; END: empty */
    sc_writer_t **batch;  /* the pending list being written */
    size_t batch_cap;
    uint8_t wbuf[SC_WRITE_CHUNK]; /* one packed write */
};

/* The service thread the calling thread runs, NULL on other threads. */
static _Thread_local sc_svc_t *current_svc;

int sc_writer_thread_create(sc_svc_t *svc)
{
    struct sc_writer_thread *wt = calloc(1, sizeof *wt);
    if (!wt)
        return SC_ENOMEM;
    if (pthread_mutex_init(&wt->pending_lock, NULL) != 0) {
        free(wt);
        return SC_ENOMEM;
    }
    wt->pending = END;
    svc->writer = wt;
    return SC_OK;
}

void sc_writer_thread_destroy(sc_svc_t *svc)
{
    struct sc_writer_thread *wt = svc->writer;
    if (!wt)
        return;
    pthread_mutex_destroy(&wt->pending_lock);
    free(wt->batch);
    free(wt);
    svc->writer = NULL;
}

void sc_writer_thread_enter(sc_svc_t *svc)
{
    current_svc = svc;
}

int sc_writer_init(sc_writer_t *w, sc_wake_fn wake, void *ud)
{
    memset(w, 0, sizeof *w);
    sc_buf_init(&w->ctl);
    return sc_owner_create(wake, ud, &w->owner);
}

static void unlink_pending(struct sc_writer_thread *wt, sc_writer_t *w)
{
    pthread_mutex_lock(&wt->pending_lock);
    if (w->pnext) {
        sc_writer_t **pp = &wt->pending;
        while (*pp != END && *pp != w)
            pp = &(*pp)->pnext;
        if (*pp == w)
            *pp = w->pnext;
        w->pnext = NULL;
    }
    pthread_mutex_unlock(&wt->pending_lock);
}

void sc_writer_deinit(sc_svc_t *svc, sc_writer_t *w)
{
    unlink_pending(svc->writer, w);
    sc_owner_destroy(w->owner);
    sc_event_unref(w->carry);
    free(w->held);
    sc_buf_deinit(&w->ctl);
    memset(w, 0, sizeof *w);
}

/* ---- the pending list (wake: any thread) ------------------------------- */

void sc_writer_wake(sc_svc_t *svc, sc_writer_t *w)
{
    struct sc_writer_thread *wt = svc->writer;
    bool first = false;
    pthread_mutex_lock(&wt->pending_lock);
    if (!w->pnext) {
        first = wt->pending == END;
        w->pnext = wt->pending;
        wt->pending = w;
    }
    pthread_mutex_unlock(&wt->pending_lock);
    /* On the service thread itself (a client's or an HTTP emit) the loop's
     * prepare watcher flushes before it next sleeps: no wake-up needed, and
     * everything emitted in this pass goes out in one write per connection. */
    if (first && current_svc != svc)
        lws_cancel_service(svc->ctx);
}

/* Grows the batch toward `n` writers (geometrically). Keeps the old one
 * when out of memory. */
static void grow_batch(struct sc_writer_thread *wt, size_t n)
{
    size_t cap = wt->batch_cap ? wt->batch_cap : 64;
    while (cap < n)
        cap *= 2;
    sc_writer_t **v = realloc(wt->batch, cap * sizeof *v);
    if (v) {
        wt->batch = v;
        wt->batch_cap = cap;
    }
}

size_t sc_writer_take_pending(sc_svc_t *svc, sc_writer_t ***batch)
{
    struct sc_writer_thread *wt = svc->writer;
    /* Take the list, then write without the lock (wakes may re-add). */
    pthread_mutex_lock(&wt->pending_lock);
    size_t n = 0;
    for (sc_writer_t *w = wt->pending; w != END; w = w->pnext)
        n++;
    if (n > wt->batch_cap)
        grow_batch(wt, n);
    /* Out of memory, writers past the batch stay pending: the next loop
     * pass (at the latest after the housekeeping tick) takes them. */
    sc_writer_t *w = wt->pending;
    for (size_t skip = n > wt->batch_cap ? n - wt->batch_cap : 0; skip; skip--)
        w = w->pnext;
    n = n < wt->batch_cap ? n : wt->batch_cap;
    /* The list is newest first: the oldest `n` are its tail. Store them
     * in wake order (subscription order for one emit). */
    size_t k = n;
    sc_writer_t **link = &wt->pending;
    while (*link != w)
        link = &(*link)->pnext;
    *link = END; /* the newer ones, if any, stay pending */
    while (w != END) {
        sc_writer_t *next = w->pnext;
        w->pnext = NULL;
        wt->batch[--k] = w;
        w = next;
    }
    pthread_mutex_unlock(&wt->pending_lock);
    *batch = wt->batch;
    return n;
}

/* ---- replies ----------------------------------------------------------- */

/* Drops the replies not written yet, except the rest of a frame already
 * partly written (replies go out in buffer-sized slices, not per frame):
 * a close frame must start on a frame boundary. */
static void drop_unsent_replies(sc_writer_t *w)
{
    const uint8_t *b = (const uint8_t *)sc_buf_str(&w->ctl);
    size_t len = sc_buf_len(&w->ctl), end = 0;
    uint64_t flen;
    while (end < w->ctl_off && sc_ws_frame_extent(b + end, len - end, &flen))
        end += (size_t)flen;
    if (end > len)
        end = len;
    size_t keep = end > w->ctl_off ? end - w->ctl_off : 0;
    uint8_t part[256], *heap = NULL;
    uint8_t *rest = keep <= sizeof part ? part : (heap = malloc(keep));
    if (keep && rest)
        memcpy(rest, b + w->ctl_off, keep);
    sc_buf_deinit(&w->ctl);
    sc_buf_init(&w->ctl);
    w->ctl_off = 0;
    if (keep && rest) /* (out of memory: the stream is cut, we close) */
        sc_buf_put(&w->ctl, rest, keep);
    free(heap);
}

/* Replies the client does not read are capped: past SC_CTL_LIMIT (or out
 * of memory) the connection is closed. Then the writer is woken. */
static void ctl_queued(sc_svc_t *svc, sc_writer_t *w, const char *session)
{
    if (!w->close_code && (w->ctl.err != SC_OK ||
                           sc_buf_len(&w->ctl) - w->ctl_off > SC_CTL_LIMIT)) {
        sc_log(SC_LOG_WARN, "session %s: replies not read, closing", session);
        drop_unsent_replies(w);
        w->close_code = SC_CLOSE_POLICY;
        w->close_deadline_us = sc_now_us() + SC_CLOSE_WAIT_US;
    }
    sc_writer_wake(svc, w);
}

void sc_writer_reply(sc_svc_t *svc, sc_writer_t *w, const char *session)
{
    sc_buf_t *s = &svc->scratch;
    if (s->err != SC_OK) {
        sc_log(SC_LOG_ERROR, "session %s: out of memory encoding a reply",
               session);
        sc_buf_reset(s);
        return;
    }
    uint8_t hdr[SC_WS_MAX_HEADER];
    size_t len = sc_buf_len(s);
    size_t hl = sc_ws_frame_header(hdr, len);
    sc_buf_put(&w->ctl, hdr, hl);
    sc_buf_put(&w->ctl, sc_buf_str(s), len);
    sc_buf_reset(s);
    ctl_queued(svc, w, session);
}

void sc_writer_frame(sc_svc_t *svc, sc_writer_t *w, const void *frame,
                     size_t len, const char *session)
{
    if (w->close_code)
        return; /* closing: no more answers */
    sc_buf_put(&w->ctl, frame, len);
    ctl_queued(svc, w, session);
}

void sc_writer_ping(sc_svc_t *svc, sc_writer_t *w)
{
    w->ping_due = true;
    sc_writer_wake(svc, w);
}

void sc_writer_close_after(sc_svc_t *svc, sc_writer_t *w, int code,
                           int64_t deadline_us)
{
    if (!w->close_code) {
        w->close_code = code;
        if (deadline_us)
            w->close_deadline_us = deadline_us;
    }
    sc_writer_wake(svc, w);
}

/* ---- socket writes ------------------------------------------------------ */

/* Sends `n` bytes after what is held, holding what the socket refuses.
 * Returns 0, or -1 when the connection is broken. */
static int send_or_hold(sc_writer_t *w, sc_wsio_t *io, const void *data,
                        size_t n)
{
    const uint8_t *p = data;
    if (w->held_off == w->held_len) {
        ssize_t sent = sc_wsio_send(io, p, n);
        if (sent < 0)
            return -1;
        p += sent;
        n -= (size_t)sent;
        if (n == 0)
            return 0;
    }
    /* Hold the rest: at most one packed write plus replies, as nothing is
     * packed while something is held. */
    size_t held = w->held_len - w->held_off;
    uint8_t *o = malloc(held + n);
    if (!o)
        return -1;
    if (held)
        memcpy(o, w->held + w->held_off, held);
    memcpy(o + held, p, n);
    free(w->held);
    w->held = o;
    w->held_len = held + n;
    w->held_off = 0;
    sc_wsio_want_write(io, true);
    return 0;
}

/* Sends what is held. Returns 0 (all sent or the socket is full) or -1. */
static int send_held(sc_writer_t *w, sc_wsio_t *io)
{
    if (w->held_off == w->held_len)
        return 0;
    ssize_t sent =
        sc_wsio_send(io, w->held + w->held_off, w->held_len - w->held_off);
    if (sent < 0)
        return -1;
    w->held_off += (size_t)sent;
    if (w->held_off < w->held_len) {
        sc_wsio_want_write(io, true);
        return 0;
    }
    free(w->held);
    w->held = NULL;
    w->held_len = w->held_off = 0;
    return 0;
}

/* Our close frame is out: shut our side and wait for the peer's FIN. */
static void linger(sc_writer_t *w, sc_wsio_t *io)
{
    w->state = SC_WRITER_LINGER;
    sc_wsio_shut_write(io);
}

int sc_writer_close_now(sc_writer_t *w, sc_wsio_t *io, unsigned code,
                        const char *reason)
{
    if (w->state != SC_WRITER_OPEN)
        return 0;
    uint8_t f[SC_WS_MAX_CONTROL_FRAME];
    size_t n = sc_ws_close_frame(f, code, reason);
    w->state = SC_WRITER_CLOSING;
    w->close_deadline_us = sc_now_us() + SC_CLOSE_WAIT_US;
    sc_wsio_discard_input(io);
    /* A control frame only between frames (RFC 6455 5.4): a reply larger
     * than one packed write goes out in slices, so finish the one that is
     * partly written; replies not started are dropped. */
    drop_unsent_replies(w);
    size_t rest = sc_buf_len(&w->ctl);
    if (rest && send_or_hold(w, io, sc_buf_str(&w->ctl), rest) < 0)
        return -1;
    sc_buf_deinit(&w->ctl);
    w->ctl_off = 0;
    if (send_or_hold(w, io, f, n) < 0)
        return -1;
    if (w->held_off == w->held_len)
        linger(w, io);
    return 0;
}

/* ---- packing ------------------------------------------------------------ */

typedef struct packer {
    sc_svc_t *svc;
    sc_writer_t *w;
    sc_wsio_t *io;
    uint8_t *base; /* the thread's wbuf */
    size_t fill;
    size_t direct; /* bytes of frames larger than the buffer, written alone */
    bool broken;   /* a write failed: the connection is gone */
} packer_t;

static size_t room(const packer_t *p)
{
    return SC_WRITE_CHUNK - p->fill;
}

/* Packs the JSON in svc->scratch as one frame (a notice), if it fits. */
static void put_scratch(packer_t *p)
{
    sc_buf_t *s = &p->svc->scratch;
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
    sc_stats_t *st = &p->svc->stats;
    if (len <= room(p)) {
        memcpy(p->base + p->fill, frame, len);
        p->fill += len;
    } else if (p->fill == 0) {
        /* Bigger than the buffer: write it on its own; what the socket
         * does not take is held. */
        if (send_or_hold(p->w, p->io, frame, len) < 0)
            p->broken = true; /* dropped with the connection */
        SC_COUNT(st->bytes_out, len);
        p->direct += len;
    } else {
        return false;
    }
    SC_COUNT(st->delivered, 1);
    sc_event_unref(ev);
    return true;
}

/* Whether the packer must stop: the buffer is full, the connection broke,
 * or a large frame was written alone and the socket holds part of it (or
 * enough of them went). */
static bool packer_full(const packer_t *p)
{
    return room(p) < NOTICE_ROOM || p->broken ||
           (p->direct &&
            (p->w->held_len ||
             p->direct >= LARGE_FRAMES_PER_WRITE * SC_WRITE_CHUNK));
}

/* Drains one subscription into the buffer. Returns true when the buffer is
 * full (stop), false when the queue is empty or closed. *closed is set when
 * the subscription ended. */
static bool drain_sub(packer_t *p, sc_sub_t *sub, bool *closed,
                      const char *session)
{
    for (;;) {
        if (packer_full(p))
            return true;
        sc_event_t *ev;
        uint32_t dropped = 0;
        int rc = sc_sub_next(sub, &ev, &dropped);
        if (dropped) {
            sc_proto_enc_dropped(&p->svc->scratch, sc_sub_scope(sub), dropped);
            put_scratch(p);
        }
        if (rc == SC_OK) {
            const char *origin;
            if (p->w->echo_wait && session && (origin = sc_event_origin(ev)) &&
                strcmp(origin, session) == 0) {
                /* its `emitted` may still be in the broker's answers: the
                 * next pass (io_writable drains them first) sends it */
                p->w->carry = ev;
                p->w->carry_sub = sub;
                return true; /* (more: EV_WRITE brings the next pass) */
            }
            if (!put_event(p, ev)) {
                p->w->carry = ev;
                p->w->carry_sub = sub;
                return true;
            }
            continue;
        }
        if (rc == SC_ECLOSED) {
            sc_proto_enc_closed(&p->svc->scratch, sc_sub_scope(sub),
                                sc_sub_close_reason(sub));
            put_scratch(p);
            *closed = true;
        }
        return false;
    }
}

/* Packs pushes of every subscription, round-robin, destroying those that
 * ended. Returns true when more remains to be written. */
static bool drain_subs(packer_t *p, sc_sublist_t *subs, const char *session)
{
    sc_writer_t *w = p->w;
    if (w->carry) {
        if (!put_event(p, w->carry))
            return true;
        w->carry = NULL;
        w->carry_sub = NULL;
    }
    bool more = false;
    size_t n = subs->n;
    for (size_t k = 0; k < n && !more; k++) {
        size_t i = (subs->rr + k) % n;
        bool closed = false;
        more = drain_sub(p, subs->v[i], &closed, session);
        if (closed) {
            sc_log(SC_LOG_DEBUG, "session %s: %s closed", session,
                   sc_sub_scope(subs->v[i]));
            sc_sub_destroy(subs->v[i]);
            subs->v[i] = NULL;
        }
    }
    size_t out = 0; /* compact the closed ones away, keeping order */
    for (size_t i = 0; i < n; i++)
        if (subs->v[i])
            subs->v[out++] = subs->v[i];
    subs->n = out;
    subs->rr++;
    if (p->svc->draining && subs->n == 0 && !w->close_code)
        w->close_code = SC_CLOSE_GOING_AWAY;
    return more;
}

/* Copies the replies that fit. Returns true when more remain. */
static bool put_replies(packer_t *p)
{
    sc_writer_t *w = p->w;
    size_t left = sc_buf_len(&w->ctl) - w->ctl_off;
    if (!left)
        return false;
    size_t n = left < room(p) ? left : room(p);
    memcpy(p->base + p->fill, sc_buf_str(&w->ctl) + w->ctl_off, n);
    p->fill += n;
    w->ctl_off += n;
    if (n < left)
        return true;
    sc_buf_deinit(&w->ctl); /* written: idle connections keep none */
    w->ctl_off = 0;
    return false;
}

/* The heartbeat ping, if due, when the stream is between frames: ctl_off
 * is 0 only when no reply has been sent in part (a write may end inside a
 * reply: the ping must not go into it, RFC 6455 section 5.4). Else it
 * waits for a later write. */
static void put_ping(packer_t *p)
{
    sc_writer_t *w = p->w;
    if (!w->ping_due || w->ctl_off != 0 || room(p) < SC_WS_MAX_CONTROL_FRAME)
        return;
    /* A ping with a small payload (any frame from the client counts as a
     * sign of life, the pong too). */
    p->fill += sc_ws_control_frame(p->base + p->fill, SC_WS_OP_PING, "scpg", 4);
    w->ping_due = false;
}

/* One packed write: ping, replies, pushes; then the close when due. */
static int pack_and_send(sc_svc_t *svc, sc_writer_t *w, sc_wsio_t *io,
                         sc_sublist_t *subs, const char *session)
{
    packer_t p = {.svc = svc, .w = w, .io = io, .base = svc->writer->wbuf};
    sc_owner_rearm(w->owner);
    put_ping(&p);
    bool more = put_replies(&p);
    put_ping(&p); /* the replies were written whole: after them */
    if (!more && !w->close_code)
        more = drain_subs(&p, subs, session);
    if (p.broken)
        return -1;
    if (p.fill) {
        if (send_or_hold(w, io, p.base, p.fill) < 0)
            return -1;
        SC_COUNT(svc->stats.bytes_out, p.fill);
    }
    if (more) {
        sc_wsio_want_write(io, true);
        return 0;
    }
    if (w->close_code)
        return sc_writer_close_now(
            w, io, (unsigned)w->close_code,
            w->close_code == SC_CLOSE_GOING_AWAY ? "server shutting down" : "");
    return 0;
}

int sc_writer_flush(sc_svc_t *svc, sc_writer_t *w, sc_wsio_t *io,
                    sc_sublist_t *subs, const char *session)
{
    if (w->state != SC_WRITER_OPEN || io->write_armed)
        return 0; /* closing, or EV_WRITE comes anyway */
    return pack_and_send(svc, w, io, subs, session);
}

int sc_writer_on_writable(sc_svc_t *svc, sc_writer_t *w, sc_wsio_t *io,
                          sc_sublist_t *subs, const char *session)
{
    if (send_held(w, io) < 0)
        return -1;
    if (w->held_off < w->held_len)
        return 0; /* the socket is still full */
    sc_wsio_want_write(io, false);
    if (w->state == SC_WRITER_CLOSING) {
        linger(w, io); /* the close frame went out */
        return 0;
    }
    if (w->state != SC_WRITER_OPEN)
        return 0;
    return pack_and_send(svc, w, io, subs, session);
}

void sc_writer_forget_sub(sc_writer_t *w, const sc_sub_t *sub)
{
    if (w->carry_sub != sub)
        return;
    sc_event_unref(w->carry);
    w->carry = NULL;
    w->carry_sub = NULL;
}
