/*
 * scopecast server: keep-alive HTTP/1.1 connections for the API.
 *
 * A connection whose first request is under /api/, or is /healthz or
 * /metrics (upgrade.c decides from the request line), is served here, on
 * the service thread's libev loop, instead of by lws: lws 4.1 answers
 * every request with a body with "connection: close" because it loses a
 * request pipelined behind a body (docs/ARCHITECTURE.md "HTTP").
 *
 * Requests are read with protocol/http_req.h, in any cuts, and answered in
 * order on the same connection (pipelining); the routes are http_api.c's.
 * The connection stays open until the client closes it, asks to
 * (Connection: close, HTTP/1.0 without keep-alive), or an error ends it.
 *
 * Budgets (constants in http_conn.c, said in docs/PROTOCOL.md):
 * - head: SC_HTTP_HEAD_MAX bytes (431), within HTTPC_HEAD_TIMEOUT_S (408);
 * - body: --max-body (413), within HTTPC_BODY_TIMEOUT_S (408); a request
 *   refused from its head (401, 403, 404, 405) is answered at once and
 *   the connection closed: its body is never read into memory;
 * - answers not yet taken by the client: at most HTTPC_OUT_MAX bytes,
 *   then the connection is not read until they drain;
 * - idle: HTTPC_IDLE_TIMEOUT_S between requests, then closed;
 * - connections: --max-connections for HTTP as well (503 past it), plus
 *   HTTPC_PROBE_RESERVE for one /healthz or /metrics request each.
 *
 * Ownership: this module owns each connection (struct sc_httpc, listed in
 * svc->httpc), its socket and its address's count from sc_httpconn_start
 * until it closes it.
 * Thread: the service thread, for every function.
 */
#ifndef SC_SERVER_HTTP_CONN_H
#define SC_SERVER_HTTP_CONN_H

#include "svc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when a connection whose first request targets `target`
 * (`len` bytes, e.g. "/api/emit?x") is served here. Thread: any. */
bool sc_httpconn_wants(const char *target, size_t len);

/* Takes `fd`, a new connection whose first request (still unread; its
 * target, peeked, is `target`, `len` bytes) is for this module, and its
 * address's count `ip` (admit.h; may be NULL), given back when the socket
 * is closed. Past --max-connections it is answered 503 and closed, unless
 * the target is /healthz or /metrics and the few connections kept for
 * probes are not all taken: then that one request is answered. */
void sc_httpconn_start(sc_svc_t *svc, int fd, sc_admit_ip_t *ip,
                       const char *target, size_t len);

/* Timeouts (head, body, idle, lingering close). */
void sc_httpconn_tick(sc_svc_t *svc, int64_t now);

/* At exit: closes every connection. */
void sc_httpconn_shutdown(sc_svc_t *svc);

#endif
