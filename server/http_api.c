/*
 * HTTP on the WebSocket port (see http_api.h).
 *
 * A transaction: LWS_CALLBACK_HTTP routes by path and method; POST bodies
 * are collected (up to max_body, inclusive) and handled at
 * HTTP_BODY_COMPLETION; each answer is written whole in one write and the
 * transaction completed right away (pipelined requests wait their turn).
 * Every error body is {"error":code,"message":text} (docs/PROTOCOL.md).
 */
#include "http_api.h"
#include "clock.h"
#include "http_body.h"
#include "log.h"
#include "reply.h"
#include "scope.h"
#include "svc.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Lifetime of a token from /demo/token. */
#define DEMO_TOKEN_TTL_S (24 * 3600)

enum method { M_OTHER, M_GET, M_POST, M_HEAD };

typedef struct sc_httpreq {
    enum method method;
    char path[256];
    char *body;
    size_t body_len, body_cap;
    bool too_large;
    bool close_after;
    const struct route *route; /* the handler to run, NULL: static */
    bool waiting_body;
    unsigned err_status; /* > 0: answer this error instead */
    enum sc_errc err_code;
    const char *err_msg; /* static */
} sc_httpreq_t;

typedef int (*handler_fn)(struct lws *wsi, sc_svc_t *svc, sc_httpreq_t *r);

struct route {
    const char *path;
    enum method method;
    handler_fn fn;
    bool api; /* under the API key / loopback rule */
};

static void req_free(sc_http_pss_t *pss)
{
    if (!pss || !pss->req)
        return;
    free(pss->req->body);
    free(pss->req);
    pss->req = NULL;
}

static sc_svc_t *svc_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

/* Writes the whole answer (headers and body in one write) and ends the
 * transaction at once, so lws never starts on a pipelined next request
 * while this one is still unanswered. Returns what the callback returns. */
static int respond(struct lws *wsi, sc_httpreq_t *r, unsigned status,
                   const char *ctype, const char *body, size_t len)
{
    size_t cap = LWS_PRE + 1024 + len;
    unsigned char *buf = malloc(cap);
    if (!buf)
        return -1;
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + cap - len;
    if (lws_add_http_common_headers(wsi, status, ctype, len, &p, end) ||
        lws_add_http_header_by_name(
            wsi, (const unsigned char *)"cache-control:",
            (const unsigned char *)"no-store", 8, &p, end) ||
        (r->close_after && lws_add_http_header_by_name(
                               wsi, (const unsigned char *)"connection:",
                               (const unsigned char *)"close", 5, &p, end)) ||
        lws_finalize_http_header(wsi, &p, end)) {
        free(buf);
        return -1;
    }
    memcpy(p, body, len);
    p += len;
    int n = lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_FINAL);
    free(buf);
    if (n < 0 || r->close_after)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int respond_buf(struct lws *wsi, sc_httpreq_t *r, unsigned status,
                       sc_buf_t *b)
{
    if (b->err != SC_OK) {
        sc_buf_reset(b);
        return -1;
    }
    int rc = respond(wsi, r, status, "application/json", sc_buf_str(b),
                     sc_buf_len(b));
    sc_buf_reset(b);
    return rc;
}

static int respond_error(struct lws *wsi, sc_httpreq_t *r, unsigned status,
                         enum sc_errc code, const char *message)
{
    sc_svc_t *svc = svc_of(wsi);
    sc_stats_error(&svc->stats, code);
    sc_proto_enc_http_error(&svc->scratch, sc_errc_name(code), message);
    return respond_buf(wsi, r, status, &svc->scratch);
}

/* A request that came through a proxy: the peer address is the proxy's. */
static bool is_forwarded(struct lws *wsi)
{
    return lws_hdr_total_length(wsi, WSI_TOKEN_X_FORWARDED_FOR) > 0 ||
           lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_X_REAL_IP) > 0 ||
           lws_hdr_custom_length(wsi, "forwarded:", 10) >= 0;
}

/* A caller on this machine, not through a proxy. */
static bool peer_is_loopback(struct lws *wsi)
{
    char ip[64] = "";
    lws_get_peer_simple(wsi, ip, sizeof ip);
    bool local = strncmp(ip, "127.", 4) == 0 || strcmp(ip, "::1") == 0 ||
                 strncmp(ip, "::ffff:127.", 11) == 0;
    return local && !is_forwarded(wsi);
}

static void fail(sc_httpreq_t *r, unsigned status, enum sc_errc code,
                 const char *msg)
{
    r->err_status = status;
    r->err_code = code;
    r->err_msg = msg;
}

/* The rule for /api/ routes: the API key when one is configured, else
 * loopback callers only. */
static void check_api_access(struct lws *wsi, sc_svc_t *svc, sc_httpreq_t *r)
{
    const sc_config_t *cfg = svc->srv->cfg;
    if (!cfg->api_key) {
        if (!cfg->api_loopback && !cfg->demo)
            fail(r, 403, SC_ERRC_FORBIDDEN,
                 "the API needs an API key (--api-key); --api-loopback "
                 "opens it to loopback callers for development");
        else if (!peer_is_loopback(wsi))
            fail(r, 403, SC_ERRC_FORBIDDEN,
                 "the API answers only loopback callers, not through a "
                 "proxy, unless an API key is configured");
        return;
    }
    char auth[512] = "";
    lws_hdr_copy(wsi, auth, sizeof auth, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (!sc_auth_api_key_ok(svc->srv->cfg->api_key, auth))
        fail(r, 401, SC_ERRC_UNAUTHORIZED,
             auth[0] ? "wrong API key" : "missing API key");
}

/* ---- handlers ------------------------------------------------------------ */

static int h_healthz(struct lws *wsi, sc_svc_t *svc, sc_httpreq_t *r)
{
    if (atomic_load(&svc->srv->draining))
        return respond(wsi, r, 503, "text/plain", "draining", 8);
    return respond(wsi, r, 200, "text/plain", "ok", 2);
}

static int h_emit(struct lws *wsi, sc_svc_t *svc, sc_httpreq_t *r)
{
    sc_emit_body_t body;
    sc_proto_err_t err;
    if (sc_proto_decode_emit_body(r->body, r->body_len, &body, &err) != SC_OK) {
        int rc = respond_error(wsi, r, 400, SC_ERRC_BAD_REQUEST, err.message);
        sc_proto_err_deinit(&err);
        return rc;
    }
    uint64_t *seqs = calloc(body.n, sizeof *seqs);
    int rc = -1;
    for (size_t i = 0; seqs && i < body.n; i++) {
        sc_emit_t e;
        sc_emit_item_to_emit(&body.items[i], &e);
        if (sc_bus_emit(svc->srv->bus, &e, &seqs[i]) != SC_OK)
            seqs[i] = 0; /* out of memory: that item was not emitted */
    }
    if (seqs) {
        if (body.batch)
            sc_proto_enc_http_results(&svc->scratch, seqs, body.n);
        else
            sc_proto_enc_http_seq(&svc->scratch, seqs[0]);
        rc = respond_buf(wsi, r, 202, &svc->scratch);
    }
    free(seqs);
    sc_emit_body_deinit(&body);
    return rc;
}

static int h_presence(struct lws *wsi, sc_svc_t *svc, sc_httpreq_t *r)
{
    char buf[300];
    const char *scope = lws_get_urlarg_by_name(wsi, "scope=", buf, sizeof buf);
    if (!scope || !sc_proto_scope_valid(scope, strlen(scope)))
        return respond_error(wsi, r, 400, SC_ERRC_BAD_REQUEST,
                             "scope: must be 1-200 printable ASCII characters "
                             "without spaces");
    sc_conn_t *list;
    size_t n;
    if (sc_bus_presence(svc->srv->bus, scope, &list, &n) != SC_OK)
        return -1;
    sc_proto_enc_http_presence(&svc->scratch, scope, list, n);
    sc_presence_free(list, n);
    return respond_buf(wsi, r, 200, &svc->scratch);
}

static int h_close(struct lws *wsi, sc_svc_t *svc, sc_httpreq_t *r)
{
    sc_close_body_t body;
    sc_proto_err_t err;
    if (sc_proto_decode_close_body(r->body, r->body_len, &body, &err) !=
        SC_OK) {
        int rc = respond_error(wsi, r, 400, SC_ERRC_BAD_REQUEST, err.message);
        sc_proto_err_deinit(&err);
        return rc;
    }
    size_t n = body.user
                   ? sc_bus_close_user(svc->srv->bus, body.user, body.scope)
                   : sc_bus_close(svc->srv->bus, body.scope, SC_CLOSE_CLOSED);
    sc_close_body_deinit(&body);
    sc_proto_enc_http_closed(&svc->scratch, n);
    return respond_buf(wsi, r, 200, &svc->scratch);
}

static int h_stats(struct lws *wsi, sc_svc_t *svc, sc_httpreq_t *r)
{
    sc_bus_stats_t bs;
    sc_bus_stats(svc->srv->bus, &bs);
    sc_proto_stats_t st = {bs.emitted, bs.dropped, bs.subscribers,
                           sc_total_connections(svc->srv), bs.scopes};
    sc_proto_enc_http_stats(&svc->scratch, &st);
    return respond_buf(wsi, r, 200, &svc->scratch);
}

static void metric(sc_buf_t *b, const char *name, const char *type,
                   const char *help, uint64_t v)
{
    char line[512];
    int n = snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n",
                     name, help, name, type, name, (unsigned long long)v);
    sc_buf_put(b, line, (size_t)n);
}

static int h_metrics(struct lws *wsi, sc_svc_t *svc, sc_httpreq_t *r)
{
    sc_bus_stats_t bs;
    sc_bus_stats(svc->srv->bus, &bs);
    sc_stats_t st;
    sc_total_stats(svc->srv, &st);
    sc_buf_t *b = &svc->scratch;
    metric(b, "scopecast_connections", "gauge", "Open WebSocket connections.",
           sc_total_connections(svc->srv));
    metric(b, "scopecast_subscriptions", "gauge", "Live subscriptions.",
           bs.subscribers);
    metric(b, "scopecast_scopes", "gauge",
           "Scopes with at least one subscriber.", bs.scopes);
    metric(b, "scopecast_events_emitted_total", "counter",
           "Events emitted, with or without subscribers.", bs.emitted);
    metric(b, "scopecast_events_delivered_total", "counter",
           "Pushes written to subscribers.", SC_STAT(st.delivered));
    metric(b, "scopecast_events_dropped_total", "counter",
           "Pushes dropped because a subscriber queue was full.", bs.dropped);
    metric(b, "scopecast_bytes_sent_total", "counter",
           "Bytes written to WebSocket connections.", SC_STAT(st.bytes_out));
    metric(b, "scopecast_connections_total", "counter",
           "WebSocket connections accepted.", SC_STAT(st.connections_total));
    sc_buf_puts(b, "# HELP scopecast_errors_total Error replies by code.\n"
                   "# TYPE scopecast_errors_total counter\n");
    for (int i = 0; i < SC_ERRC_COUNTED; i++) {
        char line[128];
        int n = snprintf(line, sizeof line,
                         "scopecast_errors_total{code=\"%s\"} %llu\n",
                         sc_errc_name((enum sc_errc)i),
                         (unsigned long long)SC_STAT(st.errors[i]));
        sc_buf_put(b, line, (size_t)n);
    }
    if (b->err != SC_OK)
        return respond_buf(wsi, r, 500, b);
    int rc = respond(wsi, r, 200, "text/plain; version=0.0.4", sc_buf_str(b),
                     sc_buf_len(b));
    sc_buf_reset(b);
    return rc;
}

static int h_demo_token(struct lws *wsi, sc_svc_t *svc, sc_httpreq_t *r)
{
    sc_demo_token_body_t body;
    sc_proto_err_t err;
    if (sc_proto_decode_demo_token_body(r->body, r->body_len, &body, &err) !=
        SC_OK) {
        int rc = respond_error(wsi, r, 400, SC_ERRC_BAD_REQUEST, err.message);
        sc_proto_err_deinit(&err);
        return rc;
    }
    char *token = NULL;
    int rc = sc_auth_sign(svc->srv->jwt_secret, body.name, true,
                          DEMO_TOKEN_TTL_S, time(NULL), &token);
    sc_demo_token_body_deinit(&body);
    if (rc != SC_OK)
        return -1;
    sc_buf_puts(&svc->scratch, "{\"token\":");
    sc_buf_put_json_cstr(&svc->scratch, token);
    sc_buf_putc(&svc->scratch, '}');
    free(token);
    return respond_buf(wsi, r, 200, &svc->scratch);
}

/* ---- static files ------------------------------------------------------- */

static const char *mime_of(const char *path)
{
    static const struct {
        const char *ext, *mime;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".ts", "text/plain; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].mime;
    return "application/octet-stream";
}

/* Only plain names: [A-Za-z0-9._-] segments, none starting with a dot. */
static bool static_path_ok(const char *p)
{
    if (*p != '/')
        return false;
    for (const char *s = p; *s; s++) {
        if (*s == '/' && s[1] == '.')
            return false;
        if (!(*s == '/' || *s == '.' || *s == '_' || *s == '-' ||
              (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9')))
            return false;
    }
    return true;
}

static int h_static(struct lws *wsi, sc_svc_t *svc, sc_httpreq_t *r)
{
    const char *rel = strcmp(r->path, "/") == 0 ? "/index.html" : r->path;
    char full[1024];
    struct stat st;
    if (!static_path_ok(rel) ||
        snprintf(full, sizeof full, "%s%s", svc->srv->cfg->web_root, rel) >=
            (int)sizeof full ||
        stat(full, &st) != 0 || !S_ISREG(st.st_mode))
        return respond_error(wsi, r, 404, SC_ERRC_NOT_FOUND,
                             "no such resource");
    int n = lws_serve_http_file(wsi, full, mime_of(full), NULL, 0);
    if (n < 0 || (n > 0 && lws_http_transaction_completed(wsi)))
        return -1;
    return 0;
}

/* ---- routing ------------------------------------------------------------ */

static const struct route routes[] = {
    {"/healthz", M_GET, h_healthz, false},
    {"/metrics", M_GET, h_metrics, false},
    {"/api/emit", M_POST, h_emit, true},
    {"/api/presence", M_GET, h_presence, true},
    {"/api/close", M_POST, h_close, true},
    {"/api/stats", M_GET, h_stats, true},
    {"/demo/token", M_POST, h_demo_token, false},
};

static enum method method_of(struct lws *wsi)
{
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI))
        return M_GET;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI))
        return M_POST;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI))
        return M_HEAD;
    return M_OTHER;
}

/* Runs the decision taken for the request: an error or the handler. */
static int finish(struct lws *wsi, sc_svc_t *svc, sc_httpreq_t *r)
{
    if (r->err_status)
        return respond_error(wsi, r, r->err_status, r->err_code, r->err_msg);
    if (r->route)
        return r->route->fn(wsi, svc, r);
    return h_static(wsi, svc, r);
}

/* Picks the handler, or the error, from path, method and access rules. */
static void route(struct lws *wsi, sc_svc_t *svc, sc_httpreq_t *r)
{
    const struct route *rt = NULL;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (strcmp(r->path, routes[i].path) == 0)
            rt = &routes[i];
    if (rt && rt->fn == h_demo_token && !svc->srv->cfg->demo)
        rt = NULL;
    enum method m = r->method == M_HEAD ? M_GET : r->method;
    if (!rt) {
        if (strncmp(r->path, "/api/", 5) == 0 ||
            strncmp(r->path, "/demo/", 6) == 0)
            fail(r, 404, SC_ERRC_NOT_FOUND, "no such endpoint");
        else if (m != M_GET)
            fail(r, 405, SC_ERRC_METHOD_NOT_ALLOWED,
                 "only GET is allowed here");
        return; /* a static file */
    }
    if (rt->method != m) {
        fail(r, 405, SC_ERRC_METHOD_NOT_ALLOWED,
             rt->method == M_GET ? "use GET" : "use POST");
        return;
    }
    if (rt->api) {
        check_api_access(wsi, svc, r);
        if (r->err_status) {
            char ip[64] = "";
            lws_get_peer_simple(wsi, ip, sizeof ip);
            sc_log_limited(&svc->client_log, sc_now_us(), SC_LOG_INFO,
                           "refused %s from %s: %s (%u)", r->path, ip,
                           r->err_msg, r->err_status);
        }
    }
    r->route = rt;
}

/* Answers now, or after the body when one comes (lws reads it before it
 * lets us write the answer). A body over the limit is read and discarded,
 * then answered with 413 and the connection closed. */
static int on_http(struct lws *wsi, sc_http_pss_t *pss, const char *path)
{
    sc_svc_t *svc = svc_of(wsi);
    req_free(pss);
    sc_httpreq_t *r = calloc(1, sizeof *r);
    if (!r)
        return -1;
    pss->req = r;
    r->method = method_of(wsi);
    snprintf(r->path, sizeof r->path, "%s", path ? path : "/");
    route(wsi, svc, r);
    char cl[32] = "";
    bool has_cl =
        lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0;
    unsigned long long n = has_cl ? strtoull(cl, NULL, 10) : 0;
    r->too_large = n > svc->srv->cfg->max_body;
    if (n > 0 || lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING)) {
        /* lws 4.1 loses the body of a request pipelined behind one with a
         * body and then spins on the leftover bytes; closing after every
         * answer to a request with a body leaves nothing to pipeline. */
        r->close_after = true;
        r->waiting_body = true;
        return 0;
    }
    return finish(wsi, svc, r);
}

static int on_body(struct lws *wsi, sc_httpreq_t *r, const void *in, size_t len)
{
    sc_svc_t *svc = svc_of(wsi);
    if (r->too_large || len == 0)
        return 0;
    if (r->body_len + len > svc->srv->cfg->max_body) {
        r->too_large = true;
        free(r->body);
        r->body = NULL;
        r->body_len = r->body_cap = 0;
        return 0;
    }
    if (r->body_len + len + 1 > r->body_cap) { /* grow geometrically */
        size_t cap = r->body_cap ? r->body_cap : 4096;
        while (cap < r->body_len + len + 1)
            cap *= 2;
        char *p = realloc(r->body, cap);
        if (!p)
            return -1;
        r->body = p;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, in, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return 0;
}

int sc_http_callback(struct lws *wsi, enum lws_callback_reasons reason,
                     void *user, void *in, size_t len)
{
    sc_http_pss_t *pss = user;
    sc_httpreq_t *r = pss ? pss->req : NULL;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        /* An upgrade after a request on a kept-alive connection (fresh
         * upgrades never reach lws): the WebSocket must be the
         * connection's first request. */
        lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, NULL);
        return -1;
    case LWS_CALLBACK_HTTP:
        return pss ? on_http(wsi, pss, in) : -1;
    case LWS_CALLBACK_HTTP_BODY:
        return r ? on_body(wsi, r, in, len) : -1;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (!r || !r->waiting_body)
            return 0; /* an empty body: answered already */
        r->waiting_body = false;
        if (r->too_large) {
            r->close_after = true;
            return respond_error(wsi, r, 413, SC_ERRC_TOO_LARGE,
                                 "request body larger than the limit");
        }
        return finish(wsi, svc_of(wsi), r);
    case LWS_CALLBACK_HTTP_FILE_COMPLETION:
        req_free(pss);
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        req_free(pss);
        return 0;
    default:
        return 0;
    }
}
