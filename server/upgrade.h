/*
 * scopecast server: new connections until their first request is seen.
 *
 * Every accepted socket comes here first (listen.c hands it over through
 * the callback server.c registers). Its first bytes are peeked at
 * (MSG_PEEK), without taking them: a WebSocket upgrade of /ws is read,
 * checked (protocol/upgrade.h), answered with 101 and handed to ws.c as a
 * new session, or refused with an HTTP status; anything else is handed,
 * untouched, to the thread's lws context (HTTP API, static files).
 *
 * A head that is incomplete is peeked at again after a short, doubling
 * delay (a level-triggered watcher would spin on the unread bytes); one
 * that is not whole within HS_TIMEOUT or passes SC_UPGRADE_HEAD_MAX bytes
 * is dropped or answered 431.
 *
 * Ownership: this module owns each pending handshake (struct sc_hs, listed
 * in svc->hs) and its socket until it is handed on or closed.
 * Thread: the service thread, for every function.
 */
#ifndef SC_SERVER_UPGRADE_H
#define SC_SERVER_UPGRADE_H

#include "admit.h"
#include "svc.h"
#include "upgrade_head.h"

#include <stdint.h>

/* A connection just accepted on svc's listener (the accept callback):
 * takes `fd` and its address's count `ip` (admit.h; NULL if not counted),
 * which is given back when the socket is closed or handed to lws.
 * Thread: service. */
void sc_upgrade_start(sc_svc_t *svc, int fd, sc_admit_ip_t *ip);
/* Sends the refusal `r` on `fd`, then FIN, reads and drops what the client
 * sent (at most a few KB), closes `fd` and gives back `ip` (may be NULL).
 * Takes fd. Thread: service. */
void sc_upgrade_refuse(sc_svc_t *svc, int fd, sc_admit_ip_t *ip,
                       const sc_http_refusal_t *r);
/* Drops handshakes whose head did not come in time. Thread: service. */
void sc_upgrade_tick(sc_svc_t *svc, int64_t now);
/* At exit: closes every pending handshake. Thread: service. */
void sc_upgrade_shutdown(sc_svc_t *svc);

#endif
