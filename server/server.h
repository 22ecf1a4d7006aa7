/*
 * scopecast server internals shared by the server/ sources (not a public API).
 *
 * Each service thread runs one libev loop with one lws context (HTTP) and
 * owns every socket it accepted, every WebSocket connection struct (wsio.c
 * and ws.c) and every connection's control queue; the core bus decides who
 * gets which event. Emitters on any thread reach the service thread only
 * through an owner's wake callback, which puts the connection on the
 * pending list (guarded by pending_lock) and, from another thread, calls
 * lws_cancel_service() when the list goes from empty to non-empty; the
 * service thread writes every pending connection before its loop sleeps.
 *
 * Thread: everything here runs on the service thread, except the fields
 * tagged {pending_lock} and sc__ws_wake() (any thread, with a bus lock
 * held), and the counters the bus keeps itself.
 */
#ifndef SC_SERVER_H
#define SC_SERVER_H

#include "auth.h"
#include "bus.h"
#include "config.h"
#include "jsonw.h"

#include <ev.h>
#include <libwebsockets.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes packed into one socket write (ARCHITECTURE.md: ~16 KB). */
#define SC_WRITE_CHUNK 16384
/* A connection whose unsent replies pass this is closed (it sends requests
 * but does not read the answers). */
#define SC_CTL_LIMIT (4u * 1024 * 1024)

typedef struct sc_server sc_server_t;
typedef struct sc_svc sc_svc_t;

enum sc_err_code {
    SC_ERRC_BAD_REQUEST,
    SC_ERRC_UNAUTHORIZED,
    SC_ERRC_FORBIDDEN,
    SC_ERRC_LIMIT,
    SC_ERRC_NOT_FOUND,
    SC_ERRC_INTERNAL,
    SC_ERRC_COUNT
};

/* Bytes read from a socket at once (the thread's read buffer). */
#define SC_READ_CHUNK 65536

enum sc_ws_state {
    SC_WS_OPEN,    /* serving */
    SC_WS_CLOSING, /* our close frame waits for room in the socket */
    SC_WS_LINGER   /* close frame sent, our side shut: waiting for the FIN */
};

/* One WebSocket connection (wsio.c: transport, ws.c: protocol). Owned by
 * the service thread: created by sc__ws_open() after the upgrade, freed by
 * sc__wsio_destroy(). The fields the write path touches for every event
 * come first, to share cache lines. */
typedef struct sc_wsconn {
    int fd;
    uint8_t state;     /* enum sc_ws_state */
    bool in_pending;   /* {pending_lock} */
    bool ping_due;     /* a heartbeat ping goes out with the next write */
    bool write_armed;  /* EV_WRITE is on: the socket refused bytes */
    int close_code;    /* > 0: close with it once flushed */
    sc_svc_t *svc;     /* the service thread that owns it */
    struct sc_wsconn *pnext; /* {pending_lock} */
    sc_sub_t **subs;   /* this connection's subscriptions */
    size_t nsubs;
    size_t rr;         /* round-robin start for fairness */
    sc_owner_t *owner; /* wakes us when a queue gets items */
    sc_event_t *carry; /* popped but not yet written */
    sc_sub_t *carry_sub;
    uint8_t *out;      /* bytes the socket has not taken yet (or NULL) */
    size_t out_len, out_off;
    sc_buf_t ctl;      /* framed replies waiting to be written */
    size_t ctl_off;    /* bytes of ctl already written */
    ev_io io;
    /* receive state (wsio.c) */
    uint8_t hdr[14];   /* a frame header split by reads */
    uint8_t hdr_len;
    uint8_t op;        /* opcode of the frame being read */
    bool fin;
    bool in_frame;     /* header read, payload bytes `left` to come */
    bool in_message;   /* a fragmented text message is in progress */
    uint8_t mask[4];
    uint8_t mask_off;
    uint8_t cbuf_len;
    uint8_t *cbuf;     /* a control frame split by reads (or NULL) */
    uint64_t left;
    sc_buf_t rx;       /* message being reassembled (empty: no allocation) */
    /* the rest */
    size_t cap_subs;
    int64_t last_seen_us; /* last frame from the client */
    int64_t last_ping_us;
    int64_t close_deadline_us; /* closing: destroyed at this time */
    struct sc_wsconn *next, *prev; /* all connections */
    sc_conn_t info;    /* session, user, connected-at (no meta) */
    sc_claims_t claims;
    bool has_claims;
} sc_wsconn_t;

struct sc_httpreq;

/* lws per-session data (zeroed by lws): HTTP only, WebSockets are ours. */
typedef struct sc_pss {
    struct sc_httpreq *http; /* the transaction in progress */
} sc_pss_t;

/* One service thread: its lws context (sharing the listening port with
 * the others through SO_REUSEPORT) and the connections it accepted. Fields
 * are the thread's own unless tagged {pending_lock} or {atomic} (read by
 * HTTP handlers of other threads). */
struct sc_svc {
    sc_server_t *srv;
    struct lws_context *ctx;
    struct ev_loop *loop;        /* libev loop the context runs on */
    int listen_fd;               /* our SO_REUSEPORT listener */
    pthread_t thread;
    ev_prepare flush_watcher;    /* flushes pending writes before sleeping */
    bool thread_started;
    sc_wsconn_t *conns;          /* list of this thread's connections */
    _Atomic size_t nconns;       /* {atomic} */
    unsigned char *wbuf;         /* SC_WRITE_CHUNK: one packed write */
    sc_buf_t scratch;            /* reply encoding */
    pthread_mutex_t pending_lock;
    sc_wsconn_t *pending;        /* {pending_lock} */
    sc_wsconn_t **batch;         /* pending connections being written */
    struct sc_hs *hs;            /* accepted, first request not seen yet */
    struct lws_vhost *vhost;     /* where plain HTTP connections go */
    uint8_t *rbuf;               /* SC_READ_CHUNK: socket reads */
    size_t batch_cap;
    lws_sorted_usec_list_t sul_tick;
    bool draining;               /* this thread has begun draining */
    int64_t drain_deadline_us;
    bool done;
    int status;                  /* the loop's result */
    /* counters, {atomic}: written here, summed by /metrics anywhere */
    _Atomic uint64_t delivered;
    _Atomic uint64_t bytes_out;
    _Atomic uint64_t errors[SC_ERRC_COUNT];
    _Atomic uint64_t connections_total;
};

/* What every service thread shares. Set up before the threads start and
 * read-only afterwards, except `draining`. */
struct sc_server {
    sc_config_t *cfg;            /* borrowed */
    sc_bus_t *bus;
    const char *jwt_secret;      /* cfg's or the demo's generated one */
    char demo_secret[SC_AUTH_SECRET_LEN];
    int listen_port;             /* the port actually bound */
    _Atomic int *stop_flag; /* set by the signal handler */
    _Atomic bool draining;       /* shutdown has begun (any thread reads) */
    sc_svc_t *svcs;
    int nsvcs;
};

/* Adds to a counter of this thread (relaxed: statistics only). */
#define SC_COUNT(field, n)                                                    \
    atomic_fetch_add_explicit(&(field), (n), memory_order_relaxed)

/* Sums one counter over every service thread. */
uint64_t sc__sum_counter(const sc_server_t *srv, size_t offset);
#define SC_SUM(srv, field) sc__sum_counter((srv), offsetof(sc_svc_t, field))
size_t sc__total_connections(const sc_server_t *srv);

extern const char *const sc__err_code_names[SC_ERRC_COUNT];

/* The service context the calling thread runs, NULL on other threads. */
extern _Thread_local sc_svc_t *sc__current_svc;

/* server.c */
/* Creates the bus and cfg->threads service contexts listening on one port.
 * Returns SC_OK, SC_EINVAL (cannot listen) or SC_ENOMEM; call
 * sc_server_deinit either way. Thread: main. */
int sc_server_init(sc_server_t *srv, sc_config_t *cfg,
                   _Atomic int *stop_flag);
/* Runs every service thread until shutdown has drained. Returns 0 or -1. */
int sc_server_run(sc_server_t *srv);
void sc_server_deinit(sc_server_t *srv);
int64_t sc__now_us(void);
double sc__wall_seconds(void);

/* ws.c: the protocol over a connection */
/* Refuses an upgrade lws sees (only after a request on a kept-alive HTTP
 * connection: fresh upgrades never reach lws). */
int sc__ws_callback(struct lws *wsi, enum lws_callback_reasons reason,
                    void *user, void *in, size_t len);
/* A connection whose 101 has been sent: authenticates `token` (owned,
 * may be NULL) and queues the welcome. Returns it, or NULL (fd untouched). */
sc_wsconn_t *sc__ws_open(sc_svc_t *svc, int fd, char *token);
/* One whole, valid UTF-8 text message from the client. */
void sc__ws_message(sc_wsconn_t *c, const char *msg, size_t len);
/* Appends a ready frame (a pong) to the replies. */
void sc__ws_queue_frame(sc_wsconn_t *c, const void *frame, size_t len);
/* The socket has room: packs and writes. Returns -1 to destroy c. */
int sc__ws_writeable(sc_wsconn_t *c);
/* Frees c and its subscriptions (the transport has closed its socket). */
void sc__ws_free(sc_wsconn_t *c);
void sc__ws_wake(void *ud);
void sc__ws_flush_pending(sc_svc_t *svc);
void sc__ws_tick(sc_svc_t *svc, int64_t now);
void sc__ws_begin_drain(sc_svc_t *svc);

/* wsio.c: the WebSocket transport */
/* A connection just accepted: WebSocket upgrades are ours, the rest goes
 * to lws. Takes fd. */
void sc__wsio_accept(sc_svc_t *svc, int fd);
/* Starts reading an upgraded connection. */
void sc__wsio_start(sc_wsconn_t *c, int fd);
/* Writes or holds `n` bytes. Returns 0, or -1 when the connection is
 * broken (destroy it). */
int sc__wsio_send(sc_wsconn_t *c, const void *data, size_t n);
/* Asks (or stops asking) to be told when the socket has room. */
void sc__wsio_want_write(sc_wsconn_t *c, bool on);
/* Sends a close frame and starts the closing handshake (once). Returns 0,
 * or -1 when the connection is broken (destroy it). */
int sc__wsio_close(sc_wsconn_t *c, int code, const char *why);
/* Closes the socket and frees c. */
void sc__wsio_destroy(sc_wsconn_t *c);
/* Drops new connections that did not send a request head in time. */
void sc__wsio_tick(sc_svc_t *svc, int64_t now);
/* At exit: closes what is left. */
void sc__wsio_shutdown(sc_svc_t *svc);

/* http_api.c */
int sc__http_callback(struct lws *wsi, enum lws_callback_reasons reason,
                      void *user, void *in, size_t len);
bool sc__peer_is_loopback(struct lws *wsi);

#endif
