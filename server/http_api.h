/*
 * scopecast server: the HTTP routes on the WebSocket port: the API
 * (/api/emit, /api/presence, /api/close, /api/stats), /metrics, /healthz,
 * the demo token endpoint and static files from the web root
 * (docs/PROTOCOL.md "HTTP API").
 *
 * Two transports carry requests here (docs/ARCHITECTURE.md "HTTP"):
 * - http_conn.c, scopecast's own keep-alive HTTP/1.1 connections, for
 *   connections whose first request is under /api/, /healthz or /metrics;
 * - lws, for the rest (pages, the browser client, the demo token): lws
 *   calls sc_http_callback for every HTTP reason on the connections
 *   upgrade.c handed to it; its per-session data is SC_HTTP_PSS_SIZE
 *   bytes.
 * Both describe a request as an sc_http_in_t and send the sc_http_out_t
 * the router fills, so each route and rule exists once.
 *
 * Ownership: an sc_http_out_t's body points into svc->scratch (or static
 * text); the transport copies it out and resets svc->scratch before the
 * next request.
 * Thread: the service thread the request arrived on, for every function.
 */
#ifndef SC_SERVER_HTTP_API_H
#define SC_SERVER_HTTP_API_H

#include "broker.h"
#include "http_body.h"
#include "http_req.h"

#include <libwebsockets.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct sc_svc sc_svc_t;

/* A request as the routes see it; everything borrowed. */
typedef struct sc_http_in {
    enum sc_http_method method;
    const char *path;  /* "/api/emit", not decoded */
    const char *scope; /* the decoded ?scope= value, or NULL */
    /* any query parameter, decoded (http_body.h) */
    sc_query_get_fn param;
    void *param_ud;
    const char *body; /* NUL-terminated ("" without a body) */
    size_t body_len;
    const char *authorization; /* the header's value, "" when absent */
    bool loopback;             /* a loopback peer, and no forwarding header */
    const char *peer;          /* the peer's address, for log lines */
    /* The transport's callback for an answer that comes later (an emit
     * with --broker: the cluster gives its seq) and its context (set as
     * the request's ctx; the transport clears it when it goes). */
    sc_broker_done_fn done;
    void *done_ctx;
} sc_http_in_t;

/* The answer: status, content type and body; or, for a static file
 * (file[0] != 0), the file's path, its type and size in len. */
typedef struct sc_http_out {
    unsigned status;
    const char *ctype;
    const char *body; /* len bytes; see Ownership */
    size_t len;
    char file[1024];
    /* Not NULL: the answer comes later. The transport holds the
     * connection's next requests until `done` gets this request, and then
     * gets the answer from sc_http_api_emitted. */
    sc_broker_req_t *wait;
} sc_http_out_t;

/* Decides from the head alone (path, method, access rules): returns true
 * with the refusal in *out (404, 405, 401, 403; refused API access is
 * logged within the thread's budget), false when the request goes on to
 * sc_http_api_answer. Lets a transport refuse before reading a body. */
bool sc_http_api_check(sc_svc_t *svc, const sc_http_in_t *in,
                       sc_http_out_t *out);

/* Answers a whole request (body included): the check above, then the
 * route's handler or the static file. */
void sc_http_api_answer(sc_svc_t *svc, const sc_http_in_t *in,
                        sc_http_out_t *out);

/* The answer to an emit that waited for the cluster (req, in the done
 * callback). */
void sc_http_api_emitted(sc_svc_t *svc, const sc_broker_req_t *req,
                         sc_http_out_t *out);

/* An error answer with `status` (400, 408, 413, 431, 501, 505...) and the
 * JSON error body; the code follows from the status. */
void sc_http_api_error(sc_svc_t *svc, sc_http_out_t *out, unsigned status,
                       const char *message);

/* True for an IPv4 loopback address, ::1 or ::ffff:127.x. Thread: any. */
bool sc_http_peer_is_loopback(const char *ip);

/* lws per-session data: the transaction in progress. */
typedef struct sc_http_pss {
    struct sc_httpreq *req;
} sc_http_pss_t;
#define SC_HTTP_PSS_SIZE sizeof(sc_http_pss_t)

/* The lws protocol callback for HTTP reasons (others are ignored, an
 * upgrade that reaches lws is refused). Returns what lws expects: 0, or
 * -1 to close the connection. */
int sc_http_callback(struct lws *wsi, enum lws_callback_reasons reason,
                     void *user, void *in, size_t len);

#endif
