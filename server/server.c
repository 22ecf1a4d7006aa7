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
#include "listen.h"

#include <stdlib.h>
#include <string.h>
#include <ev.h>
#include <time.h>
#include <unistd.h>

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
        sc_svc_t *svc = lws_context_user(lws_get_context(wsi));
        if (svc)
            sc__ws_flush_pending(svc);
        return 0;
    }
    return sc__ws_callback(wsi, reason, user, in, len);
}

/* lws serves HTTP only (WebSockets are wsio.c's). tx_packet_size must be
 * set: lws otherwise cuts every write into rx_buffer_size pieces. */
static struct lws_protocols protocols[] = {
    {"scopecast.v1", callback, sizeof(sc_pss_t), 1024, 0, NULL, SC_WRITE_CHUNK},
    {SC_ACCEPT_PROTOCOL_NAME, sc_listen_callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

uint64_t sc__sum_counter(const sc_server_t *srv, size_t offset)
{
    uint64_t total = 0;
    for (int i = 0; i < srv->nsvcs; i++)
        total += atomic_load_explicit(
            (_Atomic uint64_t *)((char *)&srv->svcs[i] + offset),
            memory_order_relaxed);
    return total;
}

size_t sc__total_connections(const sc_server_t *srv)
{
    size_t total = 0;
    for (int i = 0; i < srv->nsvcs; i++)
        total += atomic_load(&srv->svcs[i].nconns);
    return total;
}

static void tick(lws_sorted_usec_list_t *sul)
{
    sc_svc_t *svc = lws_container_of(sul, sc_svc_t, sul_tick);
    sc_server_t *srv = svc->srv;
    int64_t now = sc__now_us();
    if ((atomic_load(srv->stop_flag) || atomic_load(&srv->draining)) &&
        !svc->draining)
        sc__ws_begin_drain(svc);
    /* Every thread keeps serving (its listener answers 503 to upgrades and
     * /healthz) until all threads' connections are gone: with SO_REUSEPORT a
     * stopped thread's listener would still be handed new connections. */
    if (svc->draining && (sc__total_connections(srv) == 0 ||
                          now >= svc->drain_deadline_us)) {
        svc->done = true;
        ev_break(svc->loop, EVBREAK_ALL);
        return;
    }
    sc__ws_tick(svc, now);
    sc__wsio_tick(svc, now);
    lws_sul_schedule(svc->ctx, 0, &svc->sul_tick, tick, TICK_US);
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

/* Frames are sent with send(): no head room for lws needed. */
static sc_proto_event_cfg_t event_enc = {.headroom = 0};

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

/* Creates service context `i` with its own listener on `port`. */
static int svc_init(sc_server_t *srv, int i, int port)
{
    sc_svc_t *svc = &srv->svcs[i];
    svc->srv = srv;
    svc->listen_fd = -1;
    pthread_mutex_init(&svc->pending_lock, NULL);
    sc_buf_init(&svc->scratch);
    svc->wbuf = malloc(SC_WRITE_CHUNK);
    svc->rbuf = malloc(SC_READ_CHUNK);
    if (!svc->wbuf || !svc->rbuf)
        return SC_ENOMEM;
    /* Our own SO_REUSEPORT listener per thread (see listen.h). */
    int bound = port;
    svc->listen_fd = sc_listen_open(srv->cfg->host, port, &bound);
    if (svc->listen_fd < 0)
        return SC_EINVAL;
    if (i == 0)
        srv->listen_port = bound;
    /* libev (epoll) instead of lws's poll() loop, which scans every
     * connection on each wake-up (ARCHITECTURE.md: ~3 ms at 9k). The loop
     * is ours, so the service thread runs it and can break out of it. */
    svc->loop = ev_loop_new(EVFLAG_AUTO | EVBACKEND_EPOLL);
    if (!svc->loop)
        return SC_ENOMEM;
    void *foreign_loops[1] = {svc->loop};
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_LIBEV;
    info.foreign_loops = foreign_loops;
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info.protocols = protocols;
    info.user = svc;
    info.count_threads = 1;
    info.fd_limit_per_thread = (unsigned int)srv->cfg->max_connections + 64;
    info.max_http_header_data = 4096;
    info.pt_serv_buf_size = 32768;
    info.timeout_secs = 30;
    svc->ctx = lws_create_context(&info);
    struct lws_vhost *vh =
        svc->ctx ? lws_get_vhost_by_name(svc->ctx, "default") : NULL;
    if (!vh || sc_listen_attach(vh, svc->listen_fd) != 0) {
        sc_log(SC_LOG_ERROR, "cannot start service thread %d", i);
        return SC_EINVAL;
    }
    svc->listen_fd = -1; /* lws owns it now and closes it with the context */
    svc->vhost = vh;
    lws_sul_schedule(svc->ctx, 0, &svc->sul_tick, tick, TICK_US);
    return SC_OK;
}

int sc_server_init(sc_server_t *srv, sc_config_t *cfg,
                   _Atomic int *stop_flag)
{
    memset(srv, 0, sizeof *srv);
    srv->cfg = cfg;
    srv->stop_flag = stop_flag;
    atomic_init(&srv->draining, false);
    srv->svcs = calloc((size_t)cfg->threads, sizeof *srv->svcs);
    if (!srv->svcs || make_bus(srv) != SC_OK || make_secret(srv) != SC_OK)
        return SC_ENOMEM;
    srv->nsvcs = cfg->threads;
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_to_ours);
    for (int i = 0; i < srv->nsvcs; i++) {
        /* The first context may pick the port (0); the others share it. */
        int rc = svc_init(srv, i, i == 0 ? cfg->port : srv->listen_port);
        if (rc != SC_OK)
            return rc;
    }
    return SC_OK;
}

_Thread_local sc_svc_t *sc__current_svc;

static void flush_before_sleep(struct ev_loop *loop, ev_prepare *w,
                               int revents)
{
    (void)loop;
    (void)revents;
    sc__ws_flush_pending(lws_container_of(w, sc_svc_t, flush_watcher));
}

static void *svc_loop(void *arg)
{
    sc_svc_t *svc = arg;
    svc->status = 0;
    sc__current_svc = svc;
    ev_prepare_init(&svc->flush_watcher, flush_before_sleep);
    ev_prepare_start(svc->loop, &svc->flush_watcher);
    ev_run(svc->loop, 0); /* until tick() breaks it after draining */
    ev_prepare_stop(svc->loop, &svc->flush_watcher);
    sc__wsio_shutdown(svc); /* what the drain deadline left */
    return NULL;
}

int sc_server_run(sc_server_t *srv)
{
    sc_log(SC_LOG_INFO,
           "scopecast %s listening on http://%s:%d (ws: /ws), %d service "
           "thread(s)",
           SC_VERSION, srv->cfg->host, srv->listen_port, srv->nsvcs);
    for (int i = 1; i < srv->nsvcs; i++)
        srv->svcs[i].thread_started =
            pthread_create(&srv->svcs[i].thread, NULL, svc_loop,
                           &srv->svcs[i]) == 0;
    svc_loop(&srv->svcs[0]);
    int status = srv->svcs[0].status;
    for (int i = 1; i < srv->nsvcs; i++) {
        if (!srv->svcs[i].thread_started) {
            status = -1;
            continue;
        }
        pthread_join(srv->svcs[i].thread, NULL);
        if (srv->svcs[i].status)
            status = -1;
    }
    sc_log(SC_LOG_INFO, "stopped: %zu connection(s) left at exit",
           sc__total_connections(srv));
    return status;
}

void sc_server_deinit(sc_server_t *srv)
{
    for (int i = 0; srv->svcs && i < srv->cfg->threads; i++) {
        sc_svc_t *svc = &srv->svcs[i];
        if (svc->ctx) {
            lws_sul_cancel(&svc->sul_tick);
            lws_context_destroy(svc->ctx); /* closes what is left */
        }
        if (svc->loop)
            ev_loop_destroy(svc->loop);
        if (svc->srv && svc->listen_fd >= 0)
            close(svc->listen_fd);
        sc_buf_deinit(&svc->scratch);
        free(svc->wbuf);
        free(svc->rbuf);
        free(svc->batch);
        if (svc->srv)
            pthread_mutex_destroy(&svc->pending_lock);
    }
    free(srv->svcs);
    sc_bus_destroy(srv->bus);
    memset(srv, 0, sizeof *srv);
}
