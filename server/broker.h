/*
 * scopecast server: the Redis broker (--broker redis://HOST:PORT[/DB]),
 * which makes several nodes one cluster (docs/PROTOCOL.md "Running a
 * cluster", docs/ARCHITECTURE.md "The broker").
 *
 * Model: every emit of a node goes to Redis, where one Lua script gives it
 * the scope's next cluster seq and publishes it on the cluster channel, in
 * one step; every node, the emitting one too, delivers the channel's
 * events to its own subscribers (sc_bus_emit with that seq). Redis runs
 * scripts one at a time and a channel's messages reach every subscriber
 * in the order published, so each scope has one order on every node, and
 * an event from another node is delivered, never published again. An
 * emit's seq is known only when Redis answers: emits are asynchronous
 * (sc_broker_req_t), answered on their service thread. Closes
 * (sc_broker_close) travel on the same channel.
 * While Redis cannot be reached (sc_broker_linked false), a node emits
 * into its own bus as a single node does: its subscribers keep getting its
 * own emits, nothing is sent later. The link is retried every 100 ms,
 * doubling up to 1 s.
 *
 * Threads: the broker has its own thread and libev loop, which own both
 * Redis connections (hiredis, async: commands, and the subscription) and
 * every emit in flight. Service threads hand emits over through a
 * mutex-guarded queue and an ev_async; answers come back the same way to
 * the asking thread (sc_broker_thread_t, drained by its loop and at the
 * start of each flush, so an `emitted` reply is queued before the event
 * it reports can be packed). The broker thread delivers into the bus,
 * which is thread-safe.
 *
 * Ownership: server.c creates the broker before the service threads start
 * and destroys it after they are joined (requests still in flight are
 * freed then). A request belongs to its creator until sc_broker_submit,
 * to the broker until its answer is queued, and then to the asking thread,
 * which frees it after the done callback (sc_broker_drain).
 */
#ifndef SC_SERVER_BROKER_H
#define SC_SERVER_BROKER_H

#include "event.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sc_server sc_server_t;
typedef struct sc_svc sc_svc_t;
typedef struct sc_broker sc_broker_t;
typedef struct sc_broker_req sc_broker_req_t;

/* Called on the asking service thread once every emit of req has its seq
 * (req->seqs), unless the owner detached it (req->ctx NULL). req is freed
 * after it returns. */
typedef void (*sc_broker_done_fn)(sc_svc_t *svc, sc_broker_req_t *req);

struct sc_broker_req {
    void *ctx;      /* the owner's (a connection); NULL: detached, the
                       answer is dropped. The asking thread's field. */
    size_t n;       /* emits in it */
    uint64_t *seqs; /* n seqs, filled before done is called */
    unsigned flags; /* the owner's */
    /* private to broker.c */
    sc_svc_t *svc;
    sc_broker_done_fn done;
    size_t left; /* emits without their seq (broker thread) */
    struct sc_broker_item **items;
    sc_broker_req_t *next; /* in the asking thread's answer queue */
};

typedef struct sc_broker_stats {
    bool up;
    uint64_t published; /* emits Redis sequenced for this node */
    uint64_t received;  /* events delivered from the channel */
    uint64_t local;     /* emits made while unlinked (this node only) */
    uint64_t links;     /* times the link came up */
} sc_broker_stats_t;

/* Parses url (redis://HOST[:PORT][/DB]), starts the broker's thread and
 * its first connection attempt (the server starts whether or not Redis
 * answers). Returns SC_OK, SC_EINVAL (bad URL: a message in why) or
 * SC_ENOMEM. Thread: main, before the service threads start. */
int sc_broker_create(sc_server_t *srv, const char *url, sc_broker_t **out,
                     char *why, size_t whylen);

/* Stops the thread and frees everything, requests in flight included.
 * NULL is a no-op. Thread: main, after the service threads are joined. */
void sc_broker_destroy(sc_broker_t *bk);

/* Whether both Redis connections are up and subscribed. Thread: any. */
bool sc_broker_linked(const sc_broker_t *bk);

/* Why it is not linked ("" when it is), for /healthz. Thread: any. */
void sc_broker_reason(sc_broker_t *bk, char *out, size_t len);

/* Counters for /metrics. Thread: any. */
void sc_broker_stats(sc_broker_t *bk, sc_broker_stats_t *out);

/* A request of n emits answered to `svc` through `done` (NULL for a
 * fire-and-forget emit: svc may then be NULL, nothing is answered).
 * Returns NULL when out of memory. Thread: svc's. */
sc_broker_req_t *sc_broker_req_new(sc_broker_t *bk, sc_svc_t *svc, size_t n,
                                   sc_broker_done_fn done, void *ctx);

/* Sets emit i of req (its fields are copied). Returns SC_OK or SC_ENOMEM
 * (the request is then to be freed, not submitted). Thread: the creator's. */
int sc_broker_req_set(sc_broker_t *bk, sc_broker_req_t *req, size_t i,
                      const sc_emit_t *e);

/* Hands req to the broker (every emit set). Linked or not, each emit is
 * delivered exactly once: by the cluster, or here when Redis fails it.
 * Thread: the creator's. */
void sc_broker_submit(sc_broker_t *bk, sc_broker_req_t *req);

/* Frees a request not submitted (or after its done). NULL is a no-op. */
void sc_broker_req_free(sc_broker_req_t *req);

/* One emit nobody waits for (plugins): delivered like the others.
 * Returns SC_OK or SC_ENOMEM. Thread: any. */
int sc_broker_emit(sc_broker_t *bk, const sc_emit_t *e);

/* Tells the other nodes to close `scope` and/or `user`'s subscriptions
 * as sc_bus_close / sc_bus_close_user do (the caller closes its own).
 * Dropped while unlinked. Thread: any. */
void sc_broker_close(sc_broker_t *bk, const char *scope, const char *user);

/* The bus's presence hook (sc_on_presence_fn, ud = the broker): a local
 * entry joined, left or changed; told to the other nodes. Dropped while
 * unlinked (the whole list is sent again once linked). Thread: any, with
 * a bus shard lock held (it only queues). */
void sc_broker_presence(void *ud, int kind, const char *scope,
                        const sc_conn_t *conn);

/* A service thread's queue of answers: created before the thread starts
 * (its ev_async on svc->loop), destroyed after it stopped. */
int sc_broker_thread_create(sc_svc_t *svc);
void sc_broker_thread_destroy(sc_svc_t *svc);

/* Runs the done callbacks of every answer queued for svc (one atomic load
 * when there is none): call it before packing events for a connection,
 * so an `emitted` is queued before its echo. Thread: svc's. */
void sc_broker_drain(sc_svc_t *svc);

#endif
