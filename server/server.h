/*
 * scopecast server internals shared by the server/ sources (not a public API).
 *
 * One libwebsockets service thread owns every socket, every connection
 * struct and every connection's control queue; the core bus decides who
 * gets which event. Emitters on any thread reach the service thread only
 * through an owner's wake callback, which puts the connection on the
 * pending list (guarded by pending_lock) and calls lws_cancel_service()
 * when the list goes from empty to non-empty; the service thread then asks
 * for WRITEABLE on each pending connection.
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

/* One WebSocket connection. Owned by the service thread: created in
 * ESTABLISHED, freed in CLOSED. */
typedef struct sc_wsconn {
    struct lws *wsi;
    sc_svc_t *svc;               /* the service thread that owns it */
    sc_owner_t *owner; /* wakes us when a queue gets items */
    sc_conn_t info;    /* session, user, connected-at (no meta) */
    sc_claims_t claims;
    bool has_claims;
    sc_sub_t **subs; /* this connection's subscriptions */
    size_t nsubs, cap_subs;
    size_t rr;         /* round-robin start for fairness */
    sc_buf_t ctl;      /* framed replies waiting to be written */
    size_t ctl_off;    /* bytes of ctl already written */
    sc_event_t *carry; /* popped but not yet written */
    sc_sub_t *carry_sub;
    char *rx; /* message being reassembled */
    size_t rx_len, rx_cap;
    int64_t last_seen_us; /* last data frame or pong */
    int64_t last_ping_us;
    bool ping_due;
    int close_code;                /* > 0: close with it once flushed */
    struct sc_wsconn *next, *prev; /* all connections */
    struct sc_wsconn *pnext;       /* {pending_lock} */
    bool in_pending;               /* {pending_lock} */
} sc_wsconn_t;

struct sc_httpreq;

/* lws per-session data (zeroed by lws). HTTP and WebSocket share the one
 * protocol, so a wsi uses one side or the other. */
typedef struct sc_pss {
    sc_wsconn_t *ws;         /* WebSocket: the connection */
    struct sc_httpreq *http; /* HTTP: the transaction in progress */
    char *token;             /* ?token= seen at the upgrade (owned) */
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
    unsigned char *wbuf;         /* LWS_PRE + SC_WRITE_CHUNK */
    sc_buf_t scratch;            /* reply encoding */
    pthread_mutex_t pending_lock;
    sc_wsconn_t *pending;        /* {pending_lock} */
    sc_wsconn_t **batch;         /* pending connections being written */
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

/* ws.c */
int sc__ws_callback(struct lws *wsi, enum lws_callback_reasons reason,
                    void *user, void *in, size_t len);
void sc__ws_wake(void *ud);
void sc__ws_flush_pending(sc_svc_t *svc);
void sc__ws_tick(sc_svc_t *svc, int64_t now);
void sc__ws_begin_drain(sc_svc_t *svc);

/* http_api.c */
int sc__http_callback(struct lws *wsi, enum lws_callback_reasons reason,
                      void *user, void *in, size_t len);
bool sc__peer_is_loopback(struct lws *wsi);

#endif
