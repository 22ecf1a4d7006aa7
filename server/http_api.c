/*
 * The HTTP routes (see http_api.h): one router and one set of handlers,
 * answering for both HTTP transports: lws (connections whose first request
 * is a page, the browser client, the demo token) through the glue at the
 * end of this file, and http_conn.c (keep-alive API connections).
 * Every error body is {"error":code,"message":text} (docs/PROTOCOL.md).
 */
#include "http_api.h"
#include "clock.h"
#include "http_body.h"
#include "wsframe.h"
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

typedef void (*handler_fn)(sc_svc_t *svc, const sc_http_in_t *in,
                           sc_http_out_t *out);

struct route {
    const char *path;
    enum sc_http_method method;
    handler_fn fn;
    bool api; /* under the API key / loopback rule */
};

/* ---- answers ------------------------------------------------------------- */

static void answer(sc_http_out_t *out, unsigned status, const char *ctype,
                   const char *body, size_t len)
{
    out->status = status;
    out->ctype = ctype;
    out->body = body;
    out->len = len;
}

/* The JSON in svc->scratch is the answer (500 when it could not be
 * written whole). */
static void answer_json(sc_svc_t *svc, sc_http_out_t *out, unsigned status)
{
    sc_buf_t *b = &svc->scratch;
    if (b->err != SC_OK) {
        sc_buf_reset(b);
        sc_proto_enc_http_error(b, sc_errc_name(SC_ERRC_INTERNAL),
                                "out of memory");
        status = 500;
    }
    answer(out, status, "application/json", sc_buf_str(b), sc_buf_len(b));
}

static void answer_error(sc_svc_t *svc, sc_http_out_t *out, unsigned status,
                         enum sc_errc code, const char *message)
{
    sc_stats_error(&svc->stats, code);
    sc_buf_reset(&svc->scratch);
    sc_proto_enc_http_error(&svc->scratch, sc_errc_name(code), message);
    answer_json(svc, out, status);
}

void sc_http_api_error(sc_svc_t *svc, sc_http_out_t *out, unsigned status,
                       const char *message)
{
    enum sc_errc code = status == 413   ? SC_ERRC_TOO_LARGE
                        : status == 404 ? SC_ERRC_NOT_FOUND
                        : status == 405 ? SC_ERRC_METHOD_NOT_ALLOWED
                        : status == 503 ? SC_ERRC_UNAVAILABLE
                        : status == 500 ? SC_ERRC_INTERNAL
                                        : SC_ERRC_BAD_REQUEST;
    answer_error(svc, out, status, code, message);
}

/* ---- handlers ------------------------------------------------------------ */

static void h_healthz(sc_svc_t *svc, const sc_http_in_t *in, sc_http_out_t *out)
{
    (void)in;
    sc_broker_t *bk = svc->srv->broker;
    if (atomic_load(&svc->srv->draining)) {
        answer(out, 503, "text/plain", "draining", 8);
    } else if (bk && !sc_broker_linked(bk)) { /* a node cut off */
        char why[400];
        sc_broker_reason(bk, why, sizeof why);
        sc_buf_reset(&svc->scratch);
        sc_buf_puts(&svc->scratch, why);
        answer(out, 503, "text/plain", sc_buf_str(&svc->scratch),
               sc_buf_len(&svc->scratch));
    } else
        answer(out, 200, "text/plain", "ok", 2);
}

#define EMIT_BATCH 1u /* sc_broker_req_t.flags: answer with results */

static void emit_answer(sc_svc_t *svc, sc_http_out_t *out, const uint64_t *seqs,
                        size_t n, bool batch)
{
    sc_buf_reset(&svc->scratch);
    if (batch)
        sc_proto_enc_http_results(&svc->scratch, seqs, n);
    else
        sc_proto_enc_http_seq(&svc->scratch, seqs[0]);
    answer_json(svc, out, 202);
}

void sc_http_api_emitted(sc_svc_t *svc, const sc_broker_req_t *req,
                         sc_http_out_t *out)
{
    memset(out, 0, sizeof *out);
    emit_answer(svc, out, req->seqs, req->n, req->flags & EMIT_BATCH);
}

/* Hands the body's emits to the broker: the answer waits (out->wait). */
static void emit_clustered(sc_svc_t *svc, sc_broker_t *bk,
                           const sc_http_in_t *in, const sc_emit_body_t *body,
                           sc_http_out_t *out)
{
    sc_broker_req_t *req =
        sc_broker_req_new(bk, svc, body->n, in->done, in->done_ctx);
    for (size_t i = 0; req && i < body->n; i++) {
        sc_emit_t e;
        sc_emit_item_to_emit(&body->items[i], &e);
        if (sc_broker_req_set(bk, req, i, &e) != SC_OK) {
            sc_broker_req_free(req);
            req = NULL;
        }
    }
    if (!req) {
        answer_error(svc, out, 500, SC_ERRC_INTERNAL, "out of memory");
        return;
    }
    req->flags = body->batch ? EMIT_BATCH : 0;
    out->wait = req;
    sc_broker_submit(bk, req);
}

static void h_emit(sc_svc_t *svc, const sc_http_in_t *in, sc_http_out_t *out)
{
    sc_emit_body_t body;
    sc_proto_err_t err;
    if (sc_proto_decode_emit_body(in->body, in->body_len, &body, &err) !=
        SC_OK) {
        answer_error(svc, out, 400, SC_ERRC_BAD_REQUEST, err.message);
        /* the message is copied into the answer before err is freed */
        sc_proto_err_deinit(&err);
        return;
    }
    sc_broker_t *bk = svc->srv->broker;
    if (bk && in->done && sc_broker_linked(bk)) { /* the cluster gives seqs */
        emit_clustered(svc, bk, in, &body, out);
        sc_emit_body_deinit(&body);
        return;
    }
    uint64_t one, *seqs = body.n == 1 ? &one : calloc(body.n, sizeof *seqs);
    if (!seqs) {
        sc_emit_body_deinit(&body);
        answer_error(svc, out, 500, SC_ERRC_INTERNAL, "out of memory");
        return;
    }
    for (size_t i = 0; i < body.n; i++) {
        sc_emit_t e;
        sc_emit_item_to_emit(&body.items[i], &e);
        if (sc_bus_emit(svc->srv->bus, &e, &seqs[i]) != SC_OK)
            seqs[i] = 0; /* out of memory: that item was not emitted */
    }
    emit_answer(svc, out, seqs, body.n, body.batch);
    if (seqs != &one)
        free(seqs);
    sc_emit_body_deinit(&body);
}

static void h_presence(sc_svc_t *svc, const sc_http_in_t *in,
                       sc_http_out_t *out)
{
    const char *scope = in->scope;
    if (!scope || !sc_proto_scope_valid(scope, strlen(scope))) {
        answer_error(svc, out, 400, SC_ERRC_BAD_REQUEST,
                     "scope: must be 1-200 printable ASCII characters "
                     "without spaces");
        return;
    }
    sc_conn_t *list;
    size_t n;
    if (sc_bus_presence(svc->srv->bus, scope, &list, &n) != SC_OK) {
        answer_error(svc, out, 500, SC_ERRC_INTERNAL, "out of memory");
        return;
    }
    sc_buf_reset(&svc->scratch);
    sc_proto_enc_http_presence(&svc->scratch, scope, list, n);
    sc_presence_free(list, n);
    answer_json(svc, out, 200);
}

/* What one history answer may hold in events (at least one is given). */
#define HISTORY_ANSWER_BYTES (1u << 20)

/* The JSON of an event: its frame without the WebSocket header. */
static sc_proto_slice_t event_json(const sc_event_t *ev)
{
    size_t len;
    const uint8_t *f = sc_event_frame(ev, &len);
    uint64_t flen;
    size_t hdr = f ? sc_ws_frame_extent(f, len, &flen) : 0;
    if (!hdr || flen != len)
        return (sc_proto_slice_t){"null", 4}; /* cannot happen: our frames */
    return (sc_proto_slice_t){(const char *)f + hdr, len - hdr};
}

static void h_history(sc_svc_t *svc, const sc_http_in_t *in, sc_http_out_t *out)
{
    sc_history_query_t q;
    sc_proto_err_t err;
    if (sc_proto_decode_history_query(in->param, in->param_ud, &q, &err) !=
        SC_OK) {
        answer_error(svc, out, 400, SC_ERRC_BAD_REQUEST, err.message);
        sc_proto_err_deinit(&err);
        return;
    }
    sc_since_t since = {.seq = q.since,
                        .epoch = q.epoch_ok ? q.epoch : 0,
                        .has_epoch = q.epoch_given};
    sc_history_read_t r;
    sc_proto_slice_t *v = NULL;
    if (sc_bus_history(svc->srv->bus, q.scope, &since,
                       q.has_user ? q.user : NULL, q.limit, &r) != SC_OK ||
        (r.n && !(v = malloc(r.n * sizeof *v)))) {
        sc_history_read_free(&r);
        answer_error(svc, out, 500, SC_ERRC_INTERNAL, "out of memory");
        return;
    }
    size_t n = 0, bytes = 0;
    for (; n < r.n; n++) {
        v[n] = event_json(r.events[n]);
        if (n && bytes + v[n].len > HISTORY_ANSWER_BYTES)
            break; /* the rest in the next answer */
        bytes += v[n].len;
    }
    sc_buf_reset(&svc->scratch);
    sc_proto_enc_http_history(&svc->scratch, q.scope, r.exists, r.epoch, r.seq,
                              r.recovered, v, n, r.more || n < r.n);
    free(v);
    sc_history_read_free(&r);
    answer_json(svc, out, 200);
}

static void h_close(sc_svc_t *svc, const sc_http_in_t *in, sc_http_out_t *out)
{
    sc_close_body_t body;
    sc_proto_err_t err;
    if (sc_proto_decode_close_body(in->body, in->body_len, &body, &err) !=
        SC_OK) {
        answer_error(svc, out, 400, SC_ERRC_BAD_REQUEST, err.message);
        sc_proto_err_deinit(&err);
        return;
    }
    size_t n = body.user
                   ? sc_bus_close_user(svc->srv->bus, body.user, body.scope)
                   : sc_bus_close(svc->srv->bus, body.scope, SC_CLOSE_CLOSED);
    if (svc->srv->broker) /* and on the other nodes */
        sc_broker_close(svc->srv->broker, body.scope, body.user);
    sc_close_body_deinit(&body);
    sc_buf_reset(&svc->scratch);
    sc_proto_enc_http_closed(&svc->scratch, n);
    answer_json(svc, out, 200);
}

static void h_stats(sc_svc_t *svc, const sc_http_in_t *in, sc_http_out_t *out)
{
    (void)in;
    sc_bus_stats_t bs;
    sc_bus_stats(svc->srv->bus, &bs);
    sc_proto_stats_t st = {bs.emitted, bs.dropped, bs.subscribers,
                           sc_total_connections(svc->srv), bs.scopes};
    sc_buf_reset(&svc->scratch);
    sc_proto_enc_http_stats(&svc->scratch, &st);
    answer_json(svc, out, 200);
}

static void metric(sc_buf_t *b, const char *name, const char *type,
                   const char *help, uint64_t v)
{
    char line[512];
    int n = snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n",
                     name, help, name, type, name, (unsigned long long)v);
    sc_buf_put(b, line, (size_t)n);
}

static void h_metrics(sc_svc_t *svc, const sc_http_in_t *in, sc_http_out_t *out)
{
    (void)in;
    sc_bus_stats_t bs;
    sc_bus_stats(svc->srv->bus, &bs);
    sc_stats_t st;
    sc_total_stats(svc->srv, &st);
    sc_buf_t *b = &svc->scratch;
    sc_buf_reset(b);
    metric(b, "scopecast_connections", "gauge", "Open WebSocket connections.",
           sc_total_connections(svc->srv));
    metric(b, "scopecast_subscriptions", "gauge", "Live subscriptions.",
           bs.subscribers);
    metric(b, "scopecast_scopes", "gauge",
           "Scopes alive: with subscribers, held presence entries or kept "
           "history.",
           bs.scopes);
    metric(b, "scopecast_events_emitted_total", "counter",
           "Events emitted, with or without subscribers.", bs.emitted);
    metric(b, "scopecast_events_delivered_total", "counter",
           "Pushes written to subscribers.", SC_STAT(st.delivered));
    metric(b, "scopecast_events_dropped_total", "counter",
           "Pushes dropped: a subscriber's queue or byte budget was full, "
           "or the server's.",
           bs.dropped);
    metric(b, "scopecast_queued_bytes", "gauge",
           "Bytes of events waiting in subscriber queues (each event once; "
           "limit --max-queued-total).",
           bs.queued_bytes);
    metric(b, "scopecast_bytes_sent_total", "counter",
           "Bytes written to WebSocket connections.", SC_STAT(st.bytes_out));
    metric(b, "scopecast_connections_total", "counter",
           "WebSocket connections accepted.", SC_STAT(st.connections_total));
    metric(b, "scopecast_http_requests_total", "counter",
           "HTTP requests answered on keep-alive API connections.",
           SC_STAT(st.http_requests));
    if (svc->srv->broker) {
        sc_broker_stats_t k;
        sc_broker_stats(svc->srv->broker, &k);
        metric(b, "scopecast_broker_up", "gauge",
               "1 while the Redis broker is linked (--broker).", k.up);
        metric(b, "scopecast_broker_published_total", "counter",
               "Emits of this node the cluster sequenced.", k.published);
        metric(b, "scopecast_broker_received_total", "counter",
               "Events delivered here from the cluster channel.", k.received);
        metric(b, "scopecast_broker_local_total", "counter",
               "Emits delivered on this node only (Redis unreachable).",
               k.local);
        metric(b, "scopecast_broker_links_total", "counter",
               "Times the link to Redis came up.", k.links);
    }
    metric(b, "scopecast_connections_refused_per_ip_total", "counter",
           "Connections refused (503) by --max-connections-per-ip.",
           SC_STAT(st.refused_per_ip));
    metric(b, "scopecast_history_events", "gauge",
           "Events kept as history (--history).", bs.history_events);
    metric(b, "scopecast_history_bytes", "gauge",
           "What the kept events cost (limit --history-max-bytes).",
           bs.history_bytes);
    metric(b, "scopecast_history_scopes", "gauge",
           "Scopes keeping at least one event.", bs.history_scopes);
    metric(b, "scopecast_history_evicted_total", "counter",
           "Kept events that left before their limits, for the budget.",
           bs.history_evicted);
    metric(b, "scopecast_slow_consumers_closed_total", "counter",
           "Connections closed (4413) by --disconnect-slow.",
           SC_STAT(st.slow_closed));
    sc_ns_write_metrics(&svc->srv->ns, b);
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
    if (b->err != SC_OK) {
        answer_json(svc, out, 500);
        return;
    }
    answer(out, 200, "text/plain; version=0.0.4", sc_buf_str(b), sc_buf_len(b));
}

static void h_demo_token(sc_svc_t *svc, const sc_http_in_t *in,
                         sc_http_out_t *out)
{
    sc_demo_token_body_t body;
    sc_proto_err_t err;
    if (sc_proto_decode_demo_token_body(in->body, in->body_len, &body, &err) !=
        SC_OK) {
        answer_error(svc, out, 400, SC_ERRC_BAD_REQUEST, err.message);
        sc_proto_err_deinit(&err);
        return;
    }
    char *token = NULL;
    int rc = sc_auth_sign(svc->srv->jwt_secret, body.name, true,
                          DEMO_TOKEN_TTL_S, time(NULL), &token);
    sc_demo_token_body_deinit(&body);
    if (rc != SC_OK) {
        answer_error(svc, out, 500, SC_ERRC_INTERNAL, "cannot sign a token");
        return;
    }
    sc_buf_reset(&svc->scratch);
    sc_buf_puts(&svc->scratch, "{\"token\":");
    sc_buf_put_json_cstr(&svc->scratch, token);
    sc_buf_putc(&svc->scratch, '}');
    free(token);
    answer_json(svc, out, 200);
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

static void h_static(sc_svc_t *svc, const sc_http_in_t *in, sc_http_out_t *out)
{
    const char *rel = strcmp(in->path, "/") == 0 ? "/index.html" : in->path;
    struct stat st;
    if (!static_path_ok(rel) ||
        snprintf(out->file, sizeof out->file, "%s%s", svc->srv->cfg->web_root,
                 rel) >= (int)sizeof out->file ||
        stat(out->file, &st) != 0 || !S_ISREG(st.st_mode)) {
        out->file[0] = '\0';
        answer_error(svc, out, 404, SC_ERRC_NOT_FOUND, "no such resource");
        return;
    }
    out->status = 200;
    out->ctype = mime_of(out->file);
    out->len = (size_t)st.st_size;
}

/* ---- routing ------------------------------------------------------------ */

static const struct route routes[] = {
    {"/healthz", SC_HTTP_GET, h_healthz, false},
    {"/metrics", SC_HTTP_GET, h_metrics, false},
    {"/api/emit", SC_HTTP_POST, h_emit, true},
    {"/api/presence", SC_HTTP_GET, h_presence, true},
    {"/api/history", SC_HTTP_GET, h_history, true},
    {"/api/close", SC_HTTP_POST, h_close, true},
    {"/api/stats", SC_HTTP_GET, h_stats, true},
    {"/demo/token", SC_HTTP_POST, h_demo_token, false},
};

static const struct route *find_route(const sc_svc_t *svc, const char *path)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (strcmp(path, routes[i].path) == 0)
            return routes[i].fn == h_demo_token && !svc->srv->cfg->demo
                       ? NULL
                       : &routes[i];
    return NULL;
}

/* The rule for /api/ routes: the API key when one is configured, else
 * loopback callers only. Returns NULL or why the request is refused, with
 * its status in *status. */
static const char *api_access(const sc_svc_t *svc, const sc_http_in_t *in,
                              unsigned *status)
{
    const sc_config_t *cfg = svc->srv->cfg;
    *status = 403;
    if (!cfg->api_key) {
        if (!cfg->api_loopback && !cfg->demo)
            return "the API needs an API key (--api-key); --api-loopback "
                   "opens it to loopback callers for development";
        if (!in->loopback)
            return "the API answers only loopback callers, not through a "
                   "proxy, unless an API key is configured";
        return NULL;
    }
    *status = 401;
    if (!sc_auth_api_key_ok(cfg->api_key, in->authorization))
        return in->authorization[0] ? "wrong API key" : "missing API key";
    return NULL;
}

bool sc_http_api_check(sc_svc_t *svc, const sc_http_in_t *in,
                       sc_http_out_t *out)
{
    const struct route *rt = find_route(svc, in->path);
    enum sc_http_method m =
        in->method == SC_HTTP_HEAD_METHOD ? SC_HTTP_GET : in->method;
    if (!rt) {
        if (strncmp(in->path, "/api/", 5) == 0 ||
            strncmp(in->path, "/demo/", 6) == 0)
            answer_error(svc, out, 404, SC_ERRC_NOT_FOUND, "no such endpoint");
        else if (m != SC_HTTP_GET)
            answer_error(svc, out, 405, SC_ERRC_METHOD_NOT_ALLOWED,
                         "only GET is allowed here");
        else
            return false; /* a static file */
        return true;
    }
    if (rt->method != m) {
        answer_error(svc, out, 405, SC_ERRC_METHOD_NOT_ALLOWED,
                     rt->method == SC_HTTP_GET ? "use GET" : "use POST");
        return true;
    }
    unsigned status;
    const char *why = rt->api ? api_access(svc, in, &status) : NULL;
    if (!why)
        return false;
    sc_log_limited(&svc->client_log, sc_now_us(), SC_LOG_INFO,
                   "refused %s from %s: %s (%u)", in->path, in->peer, why,
                   status);
    answer_error(svc, out, status,
                 status == 401 ? SC_ERRC_UNAUTHORIZED : SC_ERRC_FORBIDDEN, why);
    return true;
}

void sc_http_api_answer(sc_svc_t *svc, const sc_http_in_t *in,
                        sc_http_out_t *out)
{
    memset(out, 0, sizeof *out);
    if (sc_http_api_check(svc, in, out))
        return;
    const struct route *rt = find_route(svc, in->path);
    if (rt)
        rt->fn(svc, in, out);
    else
        h_static(svc, in, out);
}

/* ---- the lws transport --------------------------------------------------- */

/* One lws HTTP transaction: the request's parts and its body. */
typedef struct sc_httpreq {
    sc_http_in_t in;
    char path[256];
    char scope[300];
    char auth[512];
    char peer[64];
    char *body;
    size_t body_len, body_cap;
    bool too_large;
    bool close_after;
    bool waiting_body;
    bool refused;       /* decided from the head: the body is not kept */
    sc_http_out_t out;  /* the refusal, sent once the body has passed; or
                           the answer that came later (answered) */
    char *refusal_body; /* out.body's copy */
    struct lws *wsi;
    sc_broker_req_t *bk; /* an emit waiting for the cluster */
    bool answered;       /* out is ready: sent when lws lets us write */
} sc_httpreq_t;

static void req_free(sc_http_pss_t *pss)
{
    if (!pss || !pss->req)
        return;
    if (pss->req->bk) /* its answer is dropped when it comes */
        pss->req->bk->ctx = NULL;
    free(pss->req->refusal_body);
    free(pss->req->body);
    free(pss->req);
    pss->req = NULL;
}

static sc_svc_t *svc_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

/* Writes the whole answer (headers and body in one write), or starts the
 * file, and ends the transaction at once, so lws never starts on a
 * pipelined next request while this one is still unanswered. Returns what
 * the callback returns. */
static int respond(struct lws *wsi, sc_httpreq_t *r, const sc_http_out_t *o)
{
    sc_svc_t *svc = svc_of(wsi);
    if (o->file[0]) {
        int n = lws_serve_http_file(wsi, o->file, o->ctype, NULL, 0);
        if (n < 0 || (n > 0 && lws_http_transaction_completed(wsi)))
            return -1;
        return 0;
    }
    size_t len = o->len;
    size_t cap = LWS_PRE + 1024 + len;
    unsigned char *buf = malloc(cap);
    if (!buf) {
        sc_buf_reset(&svc->scratch);
        return -1;
    }
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + cap - len;
    int rc = -1;
    if (!lws_add_http_common_headers(wsi, o->status, o->ctype, len, &p, end) &&
        !lws_add_http_header_by_name(
            wsi, (const unsigned char *)"cache-control:",
            (const unsigned char *)"no-store", 8, &p, end) &&
        !(r->close_after && lws_add_http_header_by_name(
                                wsi, (const unsigned char *)"connection:",
                                (const unsigned char *)"close", 5, &p, end)) &&
        !lws_finalize_http_header(wsi, &p, end)) {
        memcpy(p, o->body, len);
        p += len;
        int n =
            lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_FINAL);
        rc = n < 0 || r->close_after || lws_http_transaction_completed(wsi) ? -1
                                                                            : 0;
    }
    free(buf);
    sc_buf_reset(&svc->scratch);
    return rc;
}

/* The cluster's answer to an emit (sc_broker_done_fn): kept until lws
 * lets us write it (LWS_CALLBACK_HTTP_WRITEABLE). */
static void lws_emitted(sc_svc_t *svc, sc_broker_req_t *req)
{
    sc_httpreq_t *r = req->ctx;
    r->bk = NULL;
    sc_http_api_emitted(svc, req, &r->out);
    free(r->refusal_body);
    r->refusal_body = malloc(r->out.len + 1);
    if (r->refusal_body) {
        memcpy(r->refusal_body, r->out.body, r->out.len);
        r->out.body = r->refusal_body;
    } else {
        answer(&r->out, 500, "text/plain", "out of memory", 13);
    }
    sc_buf_reset(&svc->scratch);
    r->answered = true;
    lws_callback_on_writable(r->wsi);
}

/* A request that came through a proxy: the peer address is the proxy's. */
static bool is_forwarded(struct lws *wsi)
{
    return lws_hdr_total_length(wsi, WSI_TOKEN_X_FORWARDED_FOR) > 0 ||
           lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_X_REAL_IP) > 0 ||
           lws_hdr_custom_length(wsi, "forwarded:", 10) >= 0;
}

static enum sc_http_method method_of(struct lws *wsi)
{
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI))
        return SC_HTTP_GET;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI))
        return SC_HTTP_POST;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI))
        return SC_HTTP_HEAD_METHOD;
    return SC_HTTP_OTHER;
}

/* sc_query_get_fn over lws's (decoded) URL arguments. */
static long lws_param(void *ud, const char *name, char *out, size_t cap)
{
    char key[64];
    snprintf(key, sizeof key, "%s=", name);
    const char *v = lws_get_urlarg_by_name(ud, key, out, (int)cap);
    return v ? (long)strlen(v) : -1;
}

/* Answers now, or after the body when one comes (lws reads it before it
 * lets us write the answer). A refused request is answered from its head
 * and closed: its body is never kept. A body over the limit is read and
 * discarded, then answered with 413 and the connection closed. */
static int on_http(struct lws *wsi, sc_http_pss_t *pss, const char *path)
{
    sc_svc_t *svc = svc_of(wsi);
    req_free(pss);
    sc_httpreq_t *r = calloc(1, sizeof *r);
    if (!r)
        return -1;
    pss->req = r;
    snprintf(r->path, sizeof r->path, "%s", path ? path : "/");
    lws_hdr_copy(wsi, r->auth, sizeof r->auth, WSI_TOKEN_HTTP_AUTHORIZATION);
    lws_get_peer_simple(wsi, r->peer, sizeof r->peer);
    const char *scope =
        lws_get_urlarg_by_name(wsi, "scope=", r->scope, sizeof r->scope);
    r->in = (sc_http_in_t){
        .method = method_of(wsi),
        .path = r->path,
        .scope = scope,
        .param = lws_param,
        .param_ud = wsi,
        .body = "",
        .authorization = r->auth,
        .loopback = sc_http_peer_is_loopback(r->peer) && !is_forwarded(wsi),
        .peer = r->peer,
        .done = lws_emitted,
        .done_ctx = r,
    };
    r->wsi = wsi;
    char cl[32] = "";
    bool has_cl =
        lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0;
    unsigned long long n = has_cl ? strtoull(cl, NULL, 10) : 0;
    bool body =
        n > 0 || lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING);
    if (body) {
        /* lws 4.1 loses a request pipelined behind one with a body and
         * spins on the leftover bytes; closing after every answer to a
         * request with a body leaves nothing to pipeline. Keep-alive API
         * connections go to http_conn.c instead. */
        r->close_after = true;
    }
    if (sc_http_api_check(svc, &r->in, &r->out)) {
        if (!body)
            return respond(wsi, r, &r->out);
        /* answered once the body has passed (closing with unread input
         * would reset the connection and lose the answer), not kept */
        r->refusal_body = malloc(r->out.len + 1);
        if (!r->refusal_body)
            return -1;
        memcpy(r->refusal_body, r->out.body, r->out.len);
        r->out.body = r->refusal_body;
        sc_buf_reset(&svc->scratch);
        r->refused = true;
        r->waiting_body = true;
        return 0;
    }
    if (body) {
        r->too_large = n > svc->srv->cfg->max_body;
        r->waiting_body = true;
        return 0;
    }
    sc_http_out_t out;
    sc_http_api_answer(svc, &r->in, &out);
    return respond(wsi, r, &out);
}

static int on_body(struct lws *wsi, sc_httpreq_t *r, const void *in, size_t len)
{
    sc_svc_t *svc = svc_of(wsi);
    if (r->refused || r->too_large || len == 0)
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
    case LWS_CALLBACK_HTTP_BODY_COMPLETION: {
        if (!r || !r->waiting_body)
            return 0; /* an empty body: answered already */
        r->waiting_body = false;
        sc_svc_t *svc = svc_of(wsi);
        sc_http_out_t out;
        if (r->refused) {
            out = r->out;
        } else if (r->too_large) {
            memset(&out, 0, sizeof out);
            sc_http_api_error(svc, &out, 413,
                              "request body larger than the limit");
        } else {
            r->in.body = r->body ? r->body : "";
            r->in.body_len = r->body_len;
            sc_http_api_answer(svc, &r->in, &out);
            if (out.wait) { /* answered in lws_emitted */
                r->bk = out.wait;
                return 0;
            }
        }
        return respond(wsi, r, &out);
    }
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (!r || !r->answered)
            return 0;
        r->answered = false;
        return respond(wsi, r, &r->out);
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

bool sc_http_peer_is_loopback(const char *ip)
{
    return strncmp(ip, "127.", 4) == 0 || strcmp(ip, "::1") == 0 ||
           strncmp(ip, "::ffff:127.", 11) == 0;
}
