/*
 * scopecast server: the WebSocket transport of one connection: its socket
 * and the frames read from it (protocol/wsframe.h parses them).
 *
 * Why not lws for this part: with lws 4.1 each WebSocket connection costs a
 * wsi (~1 KB), a receive buffer of rx_buffer_size allocated at the upgrade
 * (~1 KB) and ~0.5 KB more, 3.2 KB per idle subscribed connection against
 * 1.5 KB for uWebSockets.js (bench S5); every write also went through
 * lws_write's bookkeeping and the wsi's cache lines (bench S3). Here an
 * idle connection's transport is an sc_wsio_t, nothing else: frames are
 * parsed straight from the thread's read buffer, and a buffer is held only
 * while a message spans reads.
 *
 * The transport knows nothing of sessions or of what waits to be sent. It
 * reports upward through the callbacks its owner (ws.c) registers, as
 * libuv's streams do: a message, a protocol failure, room to write, the
 * peer gone. Writes are plain non-blocking send()s that say how much the
 * socket took; holding the rest is writer.c's job.
 *
 * Ownership: the sc_wsio_t is embedded in its owner's connection struct;
 * sc_wsio_start() takes the socket, sc_wsio_close() closes it and frees
 * the parser's buffers. Thread: the service thread that started it, for
 * every function and callback.
 */
#ifndef SC_SERVER_WSIO_H
#define SC_SERVER_WSIO_H

#include "wsframe.h"

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct sc_wsio sc_wsio_t;

/* on_msg's answer when the owner cannot take more requests for now (its
 * replies pile up unread): reading stops right after that message; what
 * was read but not parsed is kept (at most one read) until
 * sc_wsio_resume(). */
#define SC_WSIO_PAUSE 2

/* What a transport reports. A callback returns 0 to go on, or -1 when the
 * connection must be destroyed: the transport then stops and calls
 * on_gone, once (on_msg may also return SC_WSIO_PAUSE). */
typedef struct sc_wsio_cbs {
    /* A text message (whole, valid UTF-8), a ping, a pong or a valid
     * close frame from the peer; `m` is borrowed for the call. */
    int (*on_msg)(sc_wsio_t *io, const sc_ws_msg_t *m);
    /* The peer broke RFC 6455: close with `code` and `reason` (static). */
    int (*on_fail)(sc_wsio_t *io, unsigned code, const char *reason);
    /* The socket has room again (after sc_wsio_want_write(io, true)). */
    int (*on_writable)(sc_wsio_t *io);
    /* The peer closed the socket or it broke: the owner must destroy the
     * connection now (and call sc_wsio_close()). */
    void (*on_gone)(sc_wsio_t *io);
} sc_wsio_cbs_t;

/* What the transports of one service thread share: set up once by their
 * owner, borrowed by every sc_wsio_t of the thread. */
typedef struct sc_wsio_env {
    struct ev_loop *loop;
    uint8_t *rbuf; /* the thread's read buffer */
    size_t rbuf_size;
    size_t max_message; /* longer messages are refused with 1009 */
    const sc_wsio_cbs_t *cbs;
} sc_wsio_env_t;

struct sc_wsio {
    int fd;             /* the socket; -1 once closed */
    bool write_armed;   /* EV_WRITE is on: waiting for room */
    bool discard;       /* closing: input is read and dropped */
    bool paused;        /* not reading (SC_WSIO_PAUSE) until resumed */
    uint32_t kept_len;  /* paused: bytes read but not parsed, in `kept` */
    uint8_t *kept;      /* malloc'd while paused with input left, else NULL */
    int64_t last_rx_us; /* when the last whole frame arrived */
    ev_io watcher;      /* its `data` is the sc_wsio_env_t */
    sc_ws_rx_t rx;      /* frame parser state */
};

/* Starts reading `fd` (non-blocking, upgraded) on env's loop; the
 * transport owns fd from now on. Thread: service. */
void sc_wsio_start(sc_wsio_t *io, const sc_wsio_env_t *env, int fd);

/* Writes up to `n` bytes. Returns how many the socket took (0..n; less
 * than n when it is full), or -1 when the connection is broken. Thread:
 * service. */
ssize_t sc_wsio_send(sc_wsio_t *io, const void *data, size_t n);

/* Asks (or stops asking) to be told through on_writable when the socket
 * has room. Thread: service. */
void sc_wsio_want_write(sc_wsio_t *io, bool on);

/* Reading goes on after an SC_WSIO_PAUSE: the input kept is parsed first,
 * in the next loop pass (callbacks come from the loop, never from inside
 * this call). No-op when not paused. Thread: service. */
void sc_wsio_resume(sc_wsio_t *io);

/* Stops reading until sc_wsio_resume(), as an SC_WSIO_PAUSE does, from
 * outside a callback (a connection waiting for a plugin's verdict). What
 * the client sends meanwhile waits in the socket. Thread: service. */
void sc_wsio_pause(sc_wsio_t *io);
/* Closing has begun: input from now on is read and dropped (a pause ends),
 * and no more callbacks but on_writable and on_gone come. Thread:
 * service. */
void sc_wsio_discard_input(sc_wsio_t *io);

/* Our close frame is out: shuts our sending side and stops asking for
 * room; on_gone follows when the peer closes. Thread: service. */
void sc_wsio_shut_write(sc_wsio_t *io);

/* Stops the watcher, closes the socket and frees the parser's buffers.
 * Idempotent. Thread: service. */
void sc_wsio_close(sc_wsio_t *io);

#endif
