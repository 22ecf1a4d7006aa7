/*
 * scopecast server: everything that waits to be sent on a WebSocket
 * connection, and the packed write path. This module is the one owner of
 * unsent bytes; the answer to "what does a slow client cost" is here.
 *
 * What waits, per connection (sc_writer_t):
 *   - pushes in the core's bounded subscription queues (event references;
 *     the core owns the queues, the writer drains them);
 *   - `carry`: one event popped but not yet packed (it did not fit);
 *   - `ctl`: framed replies (answers, pongs), at most SC_CTL_LIMIT bytes
 *     unsent, else the connection is closed with 1008;
 *   - `held`: the tail of one packed write the socket refused (at most one
 *     packed write plus replies: nothing more is packed while it is held).
 *
 * Write path (docs/ARCHITECTURE.md "Data path"): every event arrives with a
 * frame built once per emit. When a connection's queues get items its
 * owner's wake puts its writer on the thread's pending list, which is
 * flushed once per loop pass (before the loop sleeps); a write re-arms the
 * owner, then gathers, in order, a heartbeat ping, pending replies and
 * queued pushes of every subscription (round-robin) into one buffer of up
 * to SC_WRITE_CHUNK bytes and writes it with one send(). If more remains,
 * or the socket refused bytes, it asks the transport for room (EV_WRITE).
 * Replies go before pushes, so `subscribed` precedes the scope's events and
 * `emitted` precedes the client's own echoed event.
 *
 * Closing: a writer is OPEN, then CLOSING (our close frame is queued or
 * held), then LINGER (the close frame is out and our side is shut); the
 * peer must take our close before close_deadline_us.
 *
 * Ownership: the sc_writer_t is embedded in the connection (ws.c), which
 * initialises and deinitialises it; the writer owns its core owner, carry,
 * ctl and held bytes. The subscriptions (sc_sublist_t) belong to the
 * session (ws.c): the writer only drains them and destroys those that
 * ended once their `closed` push is packed.
 *
 * Threads: fields are the service thread's, except those tagged
 * {pending_lock}. sc_writer_wake() runs on any thread; everything else on
 * the service thread.
 */
#ifndef SC_SERVER_WRITER_H
#define SC_SERVER_WRITER_H

#include "bus.h"
#include "jsonw.h"
#include "svc.h"
#include "wsio.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes packed into one socket write (docs/ARCHITECTURE.md: ~16 KB). */
#define SC_WRITE_CHUNK 16384
/* Back-pressure on requests: past SC_CTL_PAUSE unsent reply bytes, a
 * connection's input is not read until they are down to SC_CTL_RESUME
 * (ws.c). One request's replies may still take it up to SC_CTL_LIMIT; a
 * connection past that is closed with 1008. */
#define SC_CTL_PAUSE (1024u * 1024)
#define SC_CTL_RESUME (256u * 1024)
#define SC_CTL_LIMIT (4u * 1024 * 1024)
/* How long a peer has to take our close frame (or, for a close decided
 * while replies are still queued, to read up to it). */
#define SC_CLOSE_WAIT_US (5 * SC_US_PER_SEC)

/* Close codes the server sends (docs/PROTOCOL.md "Close codes"). */
enum sc_close_code {
    SC_CLOSE_NORMAL = 1000,
    SC_CLOSE_GOING_AWAY = 1001, /* shutdown */
    SC_CLOSE_PROTOCOL = 1002,
    SC_CLOSE_POLICY = 1008,       /* replies not read */
    SC_CLOSE_UNAUTHORIZED = 4401, /* bad or missing token */
    SC_CLOSE_FORBIDDEN = 4403,    /* a plugin refused the connection */
    SC_CLOSE_HEARTBEAT = 4408,    /* no frame within two heartbeats */
    SC_CLOSE_SLOW = 4413,         /* a slow consumer (--disconnect-slow) */
    SC_CLOSE_RATE = 4429          /* kept going over the rate limit */
};

enum sc_writer_state {
    SC_WRITER_OPEN,    /* serving */
    SC_WRITER_CLOSING, /* our close frame is queued or held */
    SC_WRITER_LINGER   /* close frame sent, our side shut */
};

/* The subscriptions a session has, in subscription order; the writer
 * packs their pushes round-robin from `rr`. */
typedef struct sc_sublist {
    sc_sub_t **v;
    size_t n, cap;
    size_t rr; /* round-robin start for fairness */
} sc_sublist_t;

typedef struct sc_writer {
    /* touched for every event first, to share cache lines */
    uint8_t state;  /* enum sc_writer_state */
    bool ping_due;  /* a heartbeat ping goes out with the next write */
    int close_code; /* > 0: close with it once flushed */
    /* {pending_lock} the next writer on the pending list; NULL when not on
     * it (no flag of its own: a byte beside the fields above would share a
     * word that the service thread reads without the lock) */
    struct sc_writer *pnext;
    sc_owner_t *owner; /* the core wakes it when a queue gets items */
    sc_event_t *carry; /* popped but not yet packed */
    /* ws.c: the connection has emits waiting for their cluster seqs
     * (--broker). An event of its own (an echo) is then not packed in the
     * pass that pops it: it waits as the carry, and the next pass, after
     * the broker's answers are drained (io_writable), sends the replies
     * first, so an `emitted` precedes its echo. */
    bool echo_wait;
    sc_sub_t *carry_sub;
    uint8_t *held; /* bytes the socket has not taken (or NULL) */
    size_t held_len, held_off;
    sc_buf_t ctl;              /* framed replies waiting to be written */
    size_t ctl_off;            /* bytes of ctl already written */
    int64_t close_deadline_us; /* > 0: destroy the connection then */
} sc_writer_t;

/* Creates the thread's writer state (pending list, packing buffer) as
 * svc->writer. Returns SC_OK or SC_ENOMEM. Thread: main, before the
 * service thread starts. */
int sc_writer_thread_create(sc_svc_t *svc);
/* Frees svc->writer (NULL is a no-op). Thread: main, after the service
 * thread stopped. */
void sc_writer_thread_destroy(sc_svc_t *svc);
/* Marks the calling thread as svc's service thread (wakes from it need no
 * loop wake-up). Thread: service, at the start of its loop. */
void sc_writer_thread_enter(sc_svc_t *svc);

/* Initialises `w`, creating its core owner with `wake(ud)` as the wake
 * callback. Returns SC_OK or SC_ENOMEM (nothing to deinit). Thread:
 * service. */
int sc_writer_init(sc_writer_t *w, sc_wake_fn wake, void *ud);
/* Takes w off the pending list and frees everything waiting. Call after
 * the subscriptions were destroyed (no emitter can wake it again).
 * Thread: service. */
void sc_writer_deinit(sc_svc_t *svc, sc_writer_t *w);

/* Puts w on svc's pending list; from another thread, wakes the loop when
 * the list was empty. Thread: any. */
void sc_writer_wake(sc_svc_t *svc, sc_writer_t *w);
/* Takes the pending list, in wake order, into *batch (borrowed, valid
 * until the next call). Returns the count. Out of memory for a larger
 * batch, the newest writers stay pending for the next pass. Thread:
 * service. */
size_t sc_writer_take_pending(sc_svc_t *svc, sc_writer_t ***batch);

/* Frames the JSON in svc->scratch (and resets it) as a reply. Past
 * SC_CTL_LIMIT unsent bytes, or out of memory, the connection is set to
 * close with 1008. Wakes the writer. Thread: service. */
void sc_writer_reply(sc_svc_t *svc, sc_writer_t *w, const char *session);
/* Queues a ready frame (a pong) like a reply; dropped when closing.
 * Thread: service. */
void sc_writer_frame(sc_svc_t *svc, sc_writer_t *w, const void *frame,
                     size_t len, const char *session);
/* A heartbeat ping goes out with the next write. Thread: service. */
void sc_writer_ping(sc_svc_t *svc, sc_writer_t *w);
/* Closes with `code` once what is queued is written; the connection is
 * destroyed at `deadline_us` if that never happens (0: only the close
 * frame's own deadline); a close already decided stays. Wakes the
 * writer. Thread: service. */
void sc_writer_close_after(sc_svc_t *svc, sc_writer_t *w, int code,
                           int64_t deadline_us);
/* Sends a close frame now (the peer closed, or broke the protocol), on a
 * frame boundary: after bytes already held and the rest of a reply partly
 * written; replies not started are dropped. Once only.
 * Returns 0, or -1 when the connection is broken (destroy it). Thread:
 * service. */
int sc_writer_close_now(sc_writer_t *w, sc_wsio_t *io, unsigned code,
                        const char *reason);
/* A pass of the pending list: one packed write of ping, replies and
 * pushes, unless the socket is full (EV_WRITE continues then) or a close
 * is under way; a deeper queue continues on EV_WRITE, so that writes
 * interleave with reading what publishers send. Returns 0, or -1 when the
 * connection is broken (destroy it). Thread: service. */
int sc_writer_flush(sc_svc_t *svc, sc_writer_t *w, sc_wsio_t *io,
                    sc_sublist_t *subs, const char *session);
/* The socket has room: sends what is held, then packs as sc_writer_flush;
 * at the end of a close, shuts our side. Returns 0, or -1 when the
 * connection is broken (destroy it). Thread: service. */
int sc_writer_on_writable(sc_svc_t *svc, sc_writer_t *w, sc_wsio_t *io,
                          sc_sublist_t *subs, const char *session);
/* The session drops `sub`: forgets the carry popped from it. Thread:
 * service. */
void sc_writer_forget_sub(sc_writer_t *w, const sc_sub_t *sub);

/* Reply bytes not yet written. Thread: service. */
static inline size_t sc_writer_ctl_backlog(const sc_writer_t *w)
{
    return sc_buf_len(&w->ctl) - w->ctl_off;
}

/* Whether a close has been decided (requests are then ignored). */
static inline bool sc_writer_closing(const sc_writer_t *w)
{
    return w->close_code != 0 || w->state != SC_WRITER_OPEN;
}

/* Whether the peer had its time to take our close. */
static inline bool sc_writer_expired(const sc_writer_t *w, int64_t now)
{
    return w->close_deadline_us && now >= w->close_deadline_us;
}

#endif
