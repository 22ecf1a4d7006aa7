/*
 * The lws context, the service loop, the housekeeping timer and shutdown.
 *
 * One protocol ("scopecast.v1") serves both HTTP and WebSocket on one port;
 * callbacks are routed to http_api.c or ws.c by reason. A timer ticks every
 * 200 ms on the service thread for heartbeats, the drain deadline and the
 * stop flag set by the signal handler.
 */
#include "server.h"
#include "log.h"
#include "wire.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TICK_US (200 * LWS_US_PER_MS)

int64_t sc__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

double sc__wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1000.0;
}

static bool is_http_reason(enum lws_callback_reasons r)
{
    switch (r) {
    case LWS_CALLBACK_HTTP:
    case LWS_CALLBACK_HTTP_BODY:
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
    case LWS_CALLBACK_HTTP_WRITEABLE:
    case LWS_CALLBACK_HTTP_FILE_COMPLETION:
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        return true;
    default:
        return false;
    }
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason,
                    void *user, void *in, size_t len)
{
    if (is_http_reason(reason))
        return sc__http_callback(wsi, reason, user, in, len);
    if (reason == LWS_CALLBACK_EVENT_WAIT_CANCELLED) {
        sc_server_t *srv = lws_context_user(lws_get_context(wsi));
        if (srv)
            sc__ws_flush_pending(srv);
        return 0;
    }
    return sc__ws_callback(wsi, reason, user, in, len);
}

static struct lws_protocols protocols[] = {
    {"scopecast.v1", callback, sizeof(sc_pss_t), 4096, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

static void tick(lws_sorted_usec_list_t *sul)
{
    sc_server_t *srv = lws_container_of(sul, sc_server_t, sul_tick);
    int64_t now = sc__now_us();
    if (*srv->stop_flag && !srv->draining)
        sc__ws_begin_drain(srv);
    if (srv->draining && (srv->nconns == 0 || now >= srv->drain_deadline_us))
        srv->done = true;
    sc__ws_tick(srv, now);
    lws_sul_schedule(srv->ctx, 0, &srv->sul_tick, tick, TICK_US);
}

static void lws_log_to_ours(int level, const char *line)
{
    int ours = level & LLL_ERR    ? SC_LOG_ERROR
               : level & LLL_WARN ? SC_LOG_WARN
                                  : SC_LOG_DEBUG;
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    sc_log(ours, "lws: %.*s", (int)n, line);
}

static sc_proto_event_cfg_t event_enc = {.headroom = LWS_PRE};

static int make_bus(sc_server_t *srv)
{
    sc_bus_config_t bc;
    sc_bus_config_default(&bc);
    bc.maxsize = (int)srv->cfg->maxsize;
    bc.log = sc_log_hook;
    bc.encode = sc_proto_encode_event;
    bc.encode_ud = &event_enc;
    int rc = sc_bus_create(&bc, &srv->bus);
    if (rc != SC_OK)
        sc_log(SC_LOG_ERROR, "cannot create the bus: %s", sc_strerror(rc));
    return rc;
}

static int make_secret(sc_server_t *srv)
{
    srv->jwt_secret = srv->cfg->jwt_secret;
    if (srv->jwt_secret || !srv->cfg->demo)
        return SC_OK;
    if (sc_auth_random_secret(srv->demo_secret, sizeof srv->demo_secret) !=
        SC_OK)
        return SC_ENOMEM;
    srv->jwt_secret = srv->demo_secret;
    sc_log(SC_LOG_INFO, "demo mode: generated a JWT secret for this run");
    return SC_OK;
}

int sc_server_init(sc_server_t *srv, sc_config_t *cfg,
                   volatile sig_atomic_t *stop_flag)
{
    memset(srv, 0, sizeof *srv);
    srv->cfg = cfg;
    srv->stop_flag = stop_flag;
    pthread_mutex_init(&srv->pending_lock, NULL);
    sc_buf_init(&srv->scratch);
    srv->wbuf = malloc(LWS_PRE + SC_WRITE_CHUNK);
    if (!srv->wbuf || make_bus(srv) != SC_OK || make_secret(srv) != SC_OK)
        return SC_ENOMEM;

    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_to_ours);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = cfg->port;
    info.iface = cfg->host;
    info.protocols = protocols;
    info.user = srv;
    info.count_threads = 1;
    info.fd_limit_per_thread = (unsigned int)cfg->max_connections + 64;
    info.max_http_header_data = 8192;
    info.pt_serv_buf_size = 32768;
    info.timeout_secs = 30;
    srv->ctx = lws_create_context(&info);
    if (!srv->ctx) {
        sc_log(SC_LOG_ERROR, "cannot listen on %s:%d", cfg->host, cfg->port);
        return SC_EINVAL;
    }
    srv->vhost = lws_get_vhost_by_name(srv->ctx, "default");
    srv->listen_port =
        srv->vhost ? lws_get_vhost_listen_port(srv->vhost) : cfg->port;
    lws_sul_schedule(srv->ctx, 0, &srv->sul_tick, tick, TICK_US);
    return SC_OK;
}

int sc_server_run(sc_server_t *srv)
{
    sc_log(SC_LOG_INFO, "scopecast %s listening on http://%s:%d (ws: /ws)",
           SC_VERSION, srv->cfg->host, srv->listen_port);
    while (!srv->done)
        if (lws_service(srv->ctx, 0) < 0)
            return -1;
    sc_log(SC_LOG_INFO, "stopped: %zu connection(s) left at exit", srv->nconns);
    return 0;
}

void sc_server_deinit(sc_server_t *srv)
{
    if (srv->ctx) {
        lws_sul_cancel(&srv->sul_tick);
        lws_context_destroy(srv->ctx); /* closes what is left (CLOSED) */
    }
    sc_bus_destroy(srv->bus);
    sc_buf_deinit(&srv->scratch);
    free(srv->wbuf);
    pthread_mutex_destroy(&srv->pending_lock);
    memset(srv, 0, sizeof *srv);
}
