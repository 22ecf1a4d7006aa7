/*
 * The server: the bus, the service threads (each a libev loop with an lws
 * context for HTTP and our own WebSocket transport), the housekeeping
 * timer and shutdown.
 *
 * New connections: each thread has its own SO_REUSEPORT listener
 * (listen.c), whose accepted sockets go to upgrade.c; WebSocket upgrades
 * become ws.c sessions, the rest is adopted by lws and served by
 * http_api.c. Writes: writer.c's pending list is flushed by ws.c before
 * the loop sleeps (a prepare watcher) and when another thread woke the
 * loop (lws_cancel_service -> LWS_CALLBACK_EVENT_WAIT_CANCELLED). A timer
 * ticks every SC_TICK_S for heartbeats, deadlines and the stop flag set by
 * the signal handler.
 */
#include "server.h"

#include "broker.h"
#include "clock.h"
#include "http_api.h"
#include "http_conn.h"
#include "listen.h"
#include "log.h"
#include "plugin.h"
#include "upgrade.h"
#include "wire.h"
#include "ws.h"

#include <errno.h>
#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SC_TICK_S 0.2

static int callback(struct lws *wsi, enum lws_callback_reasons reason,
                    void *user, void *in, size_t len)
{
    if (reason == LWS_CALLBACK_EVENT_WAIT_CANCELLED) {
        sc_svc_t *svc = lws_context_user(lws_get_context(wsi));
        if (svc)
            sc_ws_flush(svc);
        return 0;
    }
    return sc_http_callback(wsi, reason, user, in, len);
}

/* lws serves HTTP only (WebSockets are ours). tx_packet_size must be set:
 * lws otherwise cuts every write into rx_buffer_size pieces. */
static struct lws_protocols protocols[] = {
    {"scopecast.v1", callback, SC_HTTP_PSS_SIZE, 1024, 0, NULL, 16384},
    {SC_ACCEPT_PROTOCOL_NAME, sc_listen_callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

/* Heartbeats, deadlines, the stop flag and the end of a drain. */
static void tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    sc_svc_t *svc = (sc_svc_t *)((char *)w - offsetof(sc_svc_t, tick_watcher));
    sc_server_t *srv = svc->srv;
    int64_t now = sc_now_us();
    if ((atomic_load(srv->stop_flag) || atomic_load(&srv->draining)) &&
        !svc->draining) {
        svc->draining = true;
        svc->drain_deadline_us =
            now + (int64_t)srv->cfg->drain_timeout * SC_US_PER_SEC;
        sc_ws_begin_drain(svc);
    }
    /* Every thread keeps serving (its listener answers 503 to upgrades and
     * /healthz) until all threads' connections are gone: with SO_REUSEPORT a
     * stopped thread's listener would still be handed new connections. */
    if (svc->draining &&
        (sc_total_connections(srv) == 0 || now >= svc->drain_deadline_us)) {
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    /* held presence entries whose grace ended leave, and kept events
     * past their age leave every second (one thread asks) */
    if (svc == &srv->svcs[0]) {
        sc_bus_expire_held(srv->bus);
        if (now >= srv->history_next_us) {
            sc_bus_expire_history(srv->bus);
            srv->history_next_us = now + SC_US_PER_SEC;
        }
    }
    sc_ws_tick(svc, now);
    sc_upgrade_tick(svc, now);
    sc_httpconn_tick(svc, now);
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

/* The bus's history hook: the first --history rule matching the scope. */
static void history_hook(void *ud, const char *scope, sc_history_limits_t *out)
{
    const sc_server_t *srv = ud;
    const sc_history_rule_t *r = sc_history_spec_match(&srv->history, scope);
    if (r) {
        out->max_events = r->max_events;
        out->max_age = r->max_age;
    }
}

/* Every drop of the bus, counted per namespace for /metrics. */
static int count_drop(void *ud, const char *scope, const sc_event_t *ev)
{
    (void)ev;
    sc_ns_count_drop(&((sc_server_t *)ud)->ns, scope);
    return 0;
}

/* The bus's presence hook with --broker: the broker tells the other
 * nodes (srv->broker is set before its thread starts, and before any
 * service thread). */
static void presence_hook(void *ud, int kind, const char *scope,
                          const sc_conn_t *conn)
{
    sc_server_t *srv = ud;
    if (srv->broker)
        sc_broker_presence(srv->broker, kind, scope, conn);
}

static int make_bus(sc_server_t *srv)
{
    sc_bus_config_t bc;
    sc_bus_config_default(&bc);
    bc.maxsize = (int)srv->cfg->maxsize;
    bc.log = sc_log_hook;
    bc.encode = sc_proto_encode_event;
    bc.encode_ud = &event_enc;
    bc.max_queued_bytes = srv->cfg->max_queued_total;
    bc.release_payload = true; /* the frame holds the data: one copy */
    bc.presence_grace = srv->cfg->presence_grace; /* 0: off */
    bc.on_drop = count_drop;
    bc.on_drop_ud = srv;
    if (srv->cfg->broker && *srv->cfg->broker) {
        bc.on_presence = presence_hook; /* to the other nodes */
        bc.on_presence_ud = srv;
    }
    char err[256];
    int rc = sc_history_spec_parse(srv->cfg->history, &srv->history, err,
                                   sizeof err);
    if (rc != SC_OK) { /* sc_config_load checked it: out of memory */
        sc_log(SC_LOG_ERROR, "%s", err[0] ? err : sc_strerror(rc));
        return rc;
    }
    if (srv->history.n) {
        bc.history = history_hook;
        bc.history_ud = srv;
        bc.history_max_bytes = srv->cfg->history_max_bytes;
    }
    rc = sc_bus_create(&bc, &srv->bus);
    if (rc != SC_OK)
        sc_log(SC_LOG_ERROR, "cannot create the bus: %s", sc_strerror(rc));
    return rc;
}

static int make_secret(sc_server_t *srv)
{
    /* resume tokens are valid for this run only */
    if (sc_auth_random_secret(srv->resume_key, sizeof srv->resume_key) != SC_OK)
        return SC_ENOMEM;
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

/* The static files' folder must exist. An explicit --web-root that is not
 * a directory stops start-up; the built-in default (the source tree's web/)
 * falls back to <prefix>/share/scopecast/web next to an installed binary,
 * else static files are off with a warning (the demo needs them). */
static int check_web_root(sc_config_t *cfg)
{
    struct stat st;
    if (stat(cfg->web_root, &st) == 0 && S_ISDIR(st.st_mode))
        return SC_OK;
    const char *why = strerror(errno);
    if (stat(cfg->web_root, &st) == 0)
        why = "not a directory";
    if (strcmp(cfg->web_root, SC_DEFAULT_WEB_ROOT) != 0) {
        sc_log(SC_LOG_ERROR, "--web-root '%s': %s", cfg->web_root, why);
        return SC_EINVAL;
    }
    char exe[4096], alt[4200];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        snprintf(alt, sizeof alt, "%s/../share/scopecast/web", exe);
        if (stat(alt, &st) == 0 && S_ISDIR(st.st_mode)) {
            char *dup = strdup(alt);
            if (!dup)
                return SC_ENOMEM;
            free(cfg->web_root);
            cfg->web_root = dup;
            return SC_OK;
        }
    }
    if (cfg->demo) {
        sc_log(SC_LOG_ERROR,
               "--demo needs the demo page: no web root at '%s' (%s); set "
               "--web-root",
               cfg->web_root, why);
        return SC_EINVAL;
    }
    sc_log(SC_LOG_WARN,
           "no web root at '%s' (%s): static files such as /scopecast.js "
           "will answer 404; set --web-root",
           cfg->web_root, why);
    return SC_OK;
}

/* A socket just accepted: admitted under --max-connections-per-ip, or
 * told 503 and closed before anything is read from it. */
static void accept_conn(void *ud, int fd)
{
    sc_svc_t *svc = ud;
    sc_admit_ip_t *ip;
    if (!sc_admit_take(svc->srv->admit, fd, &ip)) {
        static const sc_http_refusal_t busy = {
            503, "Service Unavailable", "unavailable",
            "too many connections from your address", NULL};
        char peer[64];
        sc_listen_peer(fd, peer, sizeof peer);
        sc_log_limited(&svc->client_log, sc_now_us(), SC_LOG_INFO,
                       "refused a connection from %s: it has "
                       "--max-connections-per-ip %d open",
                       peer, svc->srv->cfg->max_connections_per_ip);
        SC_COUNT(svc->stats.refused_per_ip, 1);
        sc_upgrade_refuse(svc, fd, NULL, &busy);
        return;
    }
    sc_upgrade_start(svc, fd, ip);
}

/* The thread's lws context, on its libev loop, serving HTTP on the
 * connections upgrade.c hands over, and accepting on `listen_fd`. */
static int make_context(sc_svc_t *svc, int listen_fd)
{
    void *foreign_loops[1] = {svc->loop};
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_LIBEV;
    info.foreign_loops = foreign_loops;
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info.protocols = protocols;
    info.user = svc;
    info.count_threads = 1;
    info.fd_limit_per_thread =
        (unsigned int)svc->srv->cfg->max_connections + 64;
    info.max_http_header_data = 4096;
    info.pt_serv_buf_size = 32768;
    info.timeout_secs = 30;
    svc->ctx = lws_create_context(&info);
    svc->vhost = svc->ctx ? lws_get_vhost_by_name(svc->ctx, "default") : NULL;
    svc->listener = (sc_listener_t){.fn = accept_conn, .ud = svc};
    if (!svc->vhost ||
        sc_listen_attach(svc->vhost, listen_fd, &svc->listener) != 0) {
        close(listen_fd);
        return SC_EINVAL;
    }
    return SC_OK; /* lws owns listen_fd now and closes it with the context */
}

/* Creates service thread `i` with its own listener on `port`. */
static int svc_init(sc_server_t *srv, int i, int port)
{
    sc_svc_t *svc = &srv->svcs[i];
    svc->srv = srv;
    sc_buf_init(&svc->scratch);
    svc->rbuf = malloc(SC_READ_CHUNK);
    if (!svc->rbuf)
        return SC_ENOMEM;
    /* Our own SO_REUSEPORT listener per thread (see listen.h). */
    int bound = port;
    int listen_fd = sc_listen_open(srv->cfg->host, port, &bound);
    if (listen_fd < 0)
        return SC_EINVAL;
    if (i == 0)
        srv->listen_port = bound;
    /* libev (epoll) instead of lws's poll() loop, which scans every
     * connection on each wake-up (docs/ARCHITECTURE.md: ~3 ms at 9k). The
     * loop is ours, so the service thread runs it and can break out. */
    svc->loop = ev_loop_new(EVFLAG_AUTO | EVBACKEND_EPOLL);
    if (!svc->loop) {
        close(listen_fd);
        return SC_ENOMEM;
    }
    if (sc_ws_thread_create(svc) != SC_OK ||
        (srv->broker && sc_broker_thread_create(svc) != SC_OK)) {
        close(listen_fd);
        return SC_ENOMEM;
    }
    if (make_context(svc, listen_fd) != SC_OK) {
        sc_log(SC_LOG_ERROR, "cannot start service thread %d", i);
        return SC_EINVAL;
    }
    ev_timer_init(&svc->tick_watcher, tick, SC_TICK_S, SC_TICK_S);
    ev_timer_start(svc->loop, &svc->tick_watcher);
    return SC_OK;
}

int sc_server_init(sc_server_t *srv, sc_config_t *cfg, _Atomic int *stop_flag)
{
    memset(srv, 0, sizeof *srv);
    sc_ns_init(&srv->ns);
    srv->cfg = cfg;
    srv->stop_flag = stop_flag;
    atomic_init(&srv->draining, false);
    srv->svcs = calloc((size_t)cfg->threads, sizeof *srv->svcs);
    if (!srv->svcs || make_bus(srv) != SC_OK || make_secret(srv) != SC_OK ||
        sc_admit_create(cfg->max_connections_per_ip, &srv->admit) != SC_OK)
        return SC_ENOMEM;
    int rc = check_web_root(cfg);
    if (rc != SC_OK)
        return rc;
    /* SO_REUSEPORT would let a second server join a port in use */
    if (cfg->port != 0 && sc_listen_check_free(cfg->host, cfg->port) != 0)
        return SC_EINVAL;
    if (cfg->broker && *cfg->broker) {
        char why[128];
        rc = sc_broker_create(srv, cfg->broker, &srv->broker, why, sizeof why);
        if (rc != SC_OK) {
            sc_log(SC_LOG_ERROR, "--broker: %s",
                   rc == SC_EINVAL ? why : sc_strerror(rc));
            return rc;
        }
    }
    srv->nsvcs = cfg->threads;
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_to_ours);
    for (int i = 0; i < srv->nsvcs; i++) {
        /* The first context may pick the port (0); the others share it. */
        rc = svc_init(srv, i, i == 0 ? cfg->port : srv->listen_port);
        if (rc != SC_OK)
            return rc;
    }
    /* on the main thread, which runs service thread 0: the plugin loop */
    return sc_plugins_load(srv);
}

static void flush_before_sleep(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    sc_ws_flush((sc_svc_t *)((char *)w - offsetof(sc_svc_t, flush_watcher)));
}

static void *svc_loop(void *arg)
{
    sc_svc_t *svc = arg;
    svc->status = 0;
    sc_ws_thread_enter(svc);
    ev_prepare_init(&svc->flush_watcher, flush_before_sleep);
    ev_prepare_start(svc->loop, &svc->flush_watcher);
    ev_run(svc->loop, 0); /* until tick() breaks it after draining */
    ev_prepare_stop(svc->loop, &svc->flush_watcher);
    ev_timer_stop(svc->loop, &svc->tick_watcher);
    /* what the drain deadline left */
    sc_upgrade_shutdown(svc);
    sc_httpconn_shutdown(svc);
    svc->cut_at_exit = sc_ws_shutdown(svc);
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
    /* every connection is gone: no hook runs any more */
    sc_plugins_unload(srv);
    size_t cut = 0;
    for (int i = 0; i < srv->nsvcs; i++)
        cut += srv->svcs[i].cut_at_exit;
    if (cut)
        sc_log(SC_LOG_WARN,
               "stopped: %zu connection(s) still open at the drain deadline "
               "(--drain-timeout %d s) were cut",
               cut, srv->cfg->drain_timeout);
    else
        sc_log(SC_LOG_INFO, "stopped: every connection closed cleanly");
    return status;
}

void sc_server_deinit(sc_server_t *srv)
{
    /* first: what it still answers goes to the threads' queues, freed
     * below */
    sc_broker_destroy(srv->broker);
    srv->broker = NULL;
    for (int i = 0; srv->svcs && i < srv->nsvcs; i++) {
        sc_upgrade_shutdown(&srv->svcs[i]);
        sc_ws_shutdown(&srv->svcs[i]);
    }
    sc_plugins_unload(srv); /* (a start-up that failed) */
    for (int i = 0; srv->svcs && i < srv->nsvcs; i++) {
        sc_svc_t *svc = &srv->svcs[i];
        sc_upgrade_shutdown(svc);
        sc_ws_shutdown(svc);
        if (svc->ctx)
            lws_context_destroy(svc->ctx); /* closes what is left */
        sc_ws_thread_destroy(svc);
        sc_broker_thread_destroy(svc);
        if (svc->loop)
            ev_loop_destroy(svc->loop);
        sc_buf_deinit(&svc->scratch);
        free(svc->rbuf);
    }
    free(srv->svcs);
    sc_bus_destroy(srv->bus);
    sc_history_spec_deinit(&srv->history);
    sc_ns_deinit(&srv->ns);
    sc_admit_destroy(srv->admit);
    memset(srv, 0, sizeof *srv);
}
