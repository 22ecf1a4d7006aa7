/*
 * scopecast server: WebSocket sessions. This module is the one owner of a
 * connection's lifetime: it allocates every sc_wsconn_t (sc_ws_open) and
 * frees it (conn_destroy in ws.c, reached only from here), and runs the
 * protocol over it: identity and token, requests and replies,
 * subscriptions, heartbeats, drain.
 *
 * A connection is three parts, each with one owner (ws.c's sc_wsconn_t):
 * the session's own fields (ws.c), its transport (sc_wsio_t, wsio.c) and
 * what waits to be sent (sc_writer_t, writer.c). The transport reports up
 * through the callbacks registered here; the writer is driven from here
 * and from the thread's pending list.
 *
 * Thread: every function runs on the service thread `svc`, except where
 * stated.
 */
#ifndef SC_SERVER_WS_H
#define SC_SERVER_WS_H

#include "svc.h"
#include "upgrade_head.h"

#include <stdbool.h>
#include <stdint.h>

/* Creates the thread's session state (and the writer's) as svc->ws.
 * Returns SC_OK or SC_ENOMEM. Thread: main, before the thread starts. */
int sc_ws_thread_create(sc_svc_t *svc);
/* Frees what sc_ws_thread_create made; every connection must be gone
 * (sc_ws_shutdown). NULL states are skipped. Thread: main, after the
 * thread stopped. */
void sc_ws_thread_destroy(sc_svc_t *svc);
/* The service thread starts running svc's loop. Thread: service. */
void sc_ws_thread_enter(sc_svc_t *svc);

/* A connection whose 101 has been sent: takes `fd` and its address's count
 * `ip` (admit.h; may be NULL; given back when the connection is freed),
 * authenticates `token` (owned, freed here, may be NULL) and queues the
 * welcome, or the unauthorized error and close 4401. With plugins'
 * connect hooks, they decide first (the welcome, or forbidden and close
 * 4403); they see the upgrade's Origin, Cookie and query from `u`
 * (borrowed for the call). Returns true, or
 * false when out of memory (fd and ip untouched: the caller closes and
 * gives back). */
bool sc_ws_open(sc_svc_t *svc, int fd, char *token, sc_admit_ip_t *ip,
                const sc_upgrade_req_t *u);

/* Writes every connection on the pending list (before the loop sleeps and
 * when another thread woke the loop). */
void sc_ws_flush(sc_svc_t *svc);
/* Heartbeats (ping, or close 4408 after two silent intervals) and close
 * deadlines. */
void sc_ws_tick(sc_svc_t *svc, int64_t now);
/* Shutdown has begun: the first thread closes every subscription on the
 * bus; connections without subscriptions close with 1001. */
void sc_ws_begin_drain(sc_svc_t *svc);
/* At exit: destroys what is left (connections the drain deadline cut);
 * returns how many. */
size_t sc_ws_shutdown(sc_svc_t *svc);

#endif
