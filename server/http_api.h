/*
 * scopecast server: HTTP on the WebSocket port, served by lws: the API
 * (/api/emit, /api/presence, /api/close, /api/stats), /metrics, /healthz,
 * the demo token endpoint and static files from the web root
 * (docs/PROTOCOL.md "HTTP API").
 *
 * lws calls sc_http_callback for every HTTP reason on the connections
 * upgrade.c handed to it; the per-session data lws allocates is
 * SC_HTTP_PSS_SIZE bytes. Thread: the service thread of the lws context.
 */
#ifndef SC_SERVER_HTTP_API_H
#define SC_SERVER_HTTP_API_H

#include <libwebsockets.h>
#include <stddef.h>

/* lws per-session data: the transaction in progress. */
typedef struct sc_http_pss {
    struct sc_httpreq *req;
} sc_http_pss_t;
#define SC_HTTP_PSS_SIZE sizeof(sc_http_pss_t)

/* The lws protocol callback for HTTP reasons (others are ignored, an
 * upgrade that reaches lws is refused). Returns what lws expects: 0, or
 * -1 to close the connection. Thread: service. */
int sc_http_callback(struct lws *wsi, enum lws_callback_reasons reason,
                     void *user, void *in, size_t len);

#endif
