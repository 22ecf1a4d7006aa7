/*
 * scopecast server: the server and its service threads, as every server/
 * module sees them (types and two inline sums; no module's functions).
 *
 * Model: sc_server_t is what all service threads share; it is set up by
 * server.c before the threads start and is read-only afterwards, except
 * `draining`. Each service thread (sc_svc_t) runs one libev loop with one
 * lws context and owns every socket it accepted: pending handshakes
 * (upgrade.c), WebSocket connections (ws.c, with their transport in wsio.c
 * and what waits to be sent in writer.c) and lws's HTTP connections
 * (http_api.c). The thread's module states hang off sc_svc_t as opaque
 * pointers, each created and freed by its module.
 *
 * Threads: every field is the service thread's own unless tagged
 * {const} (set before the thread starts, then read-only, any thread) or
 * {atomic} (read by other threads: /metrics, connection limits). Emitters
 * on other threads reach a service thread only through writer.c's wake
 * (its own lock, then lws_cancel_service()).
 */
#ifndef SC_SERVER_SVC_H
#define SC_SERVER_SVC_H

#include "admit.h"
#include "auth.h"
#include "bus.h"
#include "config.h"
#include "history_spec.h"
#include "jsonw.h"
#include "listen.h"
#include "log.h"
#include "nsstats.h"
#include "stats.h"

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Bytes read from a socket at once (the thread's read buffer). */
#define SC_READ_CHUNK 65536

typedef struct sc_server sc_server_t;
typedef struct sc_svc sc_svc_t;

struct lws_context;
struct lws_vhost;
struct sc_ws_thread;     /* ws.c */
struct sc_writer_thread; /* writer.c */
struct sc_hs;            /* upgrade.c */
struct sc_httpc;         /* http_conn.c */
struct sc_plugins;       /* plugin.c */
struct sc_plugin_thread; /* plugin.c */
struct sc_broker;        /* broker.c */
struct sc_broker_thread; /* broker.c */

struct sc_server {
    sc_config_t *cfg;       /* {const} borrowed from main */
    sc_bus_t *bus;          /* {const} created and destroyed by server.c */
    sc_admit_t *admit;      /* {const} connections per address (admit.h) */
    const char *jwt_secret; /* {const} cfg's, or the demo's generated one */
    char demo_secret[SC_AUTH_SECRET_LEN]; /* {const} */
    /* {const} random per run: the key of the sessions' resume tokens
     * (ws.c; docs/PROTOCOL.md "Presence grace") */
    char resume_key[SC_AUTH_SECRET_LEN];
    /* {const} the parsed --history rules (the bus's history hook) */
    sc_history_spec_t history;
    int64_t history_next_us;    /* {thread 0} the next history expiry */
    sc_ns_table_t ns;           /* {atomic} counters per scope namespace */
    int listen_port;            /* {const} the port actually bound */
    _Atomic int *stop_flag;     /* {atomic} set by the signal handler */
    _Atomic bool draining;      /* {atomic} shutdown has begun */
    struct sc_plugins *plugins; /* {const} plugin.c: loaded plugins */
    struct sc_broker *broker;   /* {const} broker.c: the cluster link
                                   (--broker), or NULL */
    sc_svc_t *svcs;             /* {const} nsvcs service threads */
    int nsvcs;                  /* {const} */
};

struct sc_svc {
    sc_server_t *srv;        /* {const} */
    struct ev_loop *loop;    /* {const} the loop this thread runs */
    struct lws_context *ctx; /* {const} HTTP; lws_cancel_service() wakes */
    struct lws_vhost *vhost; /* {const} where plain HTTP connections go */
    /* Scratch space any module may use within one call, never across a
     * return to the loop: reply encoding, socket reads and peeks. */
    sc_buf_t scratch;
    uint8_t *rbuf; /* SC_READ_CHUNK bytes */
    /* Module states, each created and freed by its module. */
    struct sc_ws_thread *ws;         /* ws.c: the connections */
    struct sc_writer_thread *writer; /* writer.c: pending list, packing */
    struct sc_hs *hs;                /* upgrade.c: pending handshakes */
    struct sc_httpc *httpc;          /* http_conn.c: API connections */
    struct sc_plugin_thread *plugin; /* plugin.c: hooks' answers */
    struct sc_broker_thread *broker; /* broker.c: emits' answers */
    _Atomic size_t nhttp;            /* {atomic} its connections */
    _Atomic size_t nconns;           /* {atomic} WebSocket connections (ws.c) */
    sc_stats_t stats;                /* {atomic} this thread's counters */
    /* server.c: the thread, its listener, timers and shutdown. */
    sc_listener_t listener; /* where its accepted sockets go */
    pthread_t thread;
    bool thread_started;
    ev_prepare flush_watcher; /* flushes pending writes before sleeping */
    ev_timer tick_watcher;    /* housekeeping every SC_TICK_S */
    bool draining;            /* this thread has begun draining */
    int64_t drain_deadline_us;
    size_t cut_at_exit; /* connections the drain deadline cut */
    /* Lines that clients cause (auth failures, refused origins), bounded
     * per thread (log.h). Used by ws.c, upgrade.c and http_api.c. */
    sc_log_limit_t client_log;
    int status; /* the loop's result */
};

/* Open WebSocket connections on all threads. Thread: any. */
static inline size_t sc_total_connections(const sc_server_t *srv)
{
    size_t total = 0;
    for (int i = 0; i < srv->nsvcs; i++)
        total += atomic_load(&srv->svcs[i].nconns);
    return total;
}

/* Sums every thread's counters into `out` (zeroed here). Thread: any. */
static inline void sc_total_stats(const sc_server_t *srv, sc_stats_t *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < srv->nsvcs; i++)
        sc_stats_add(out, &srv->svcs[i].stats);
}

#endif
