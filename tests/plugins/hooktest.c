/*
 * hooktest: the plugin tests/integration/test_plugin_host.py loads to see
 * the host from a plugin's side. Not an example: every behaviour is
 * switched on by its configuration.
 *
 * Configuration (all optional):
 *   "log": FILE           one line per hook call: "connect SID USER",
 *                         "subscribe SID SCOPE", "presence SID SCOPE",
 *                         "emit SID SCOPE", "disconnect SID" (O_APPEND
 *                         writes of one line: whole lines from any thread)
 *   "deny_prefix": P      subscribe/presence/emit to scopes starting with
 *                         P are denied with reason "P is off limits"
 *   "deny_cookie": C      connections whose Cookie contains C are denied
 *   "user_cookie": NAME   the user is the value of cookie NAME, if sent
 *   "meta": JSON          the default meta of every connection
 *   "wrap_data": true     emits' data becomes {"wrapped": DATA}
 *   "delay_ms": N         answers later (from its worker thread, after N
 *                         ms) subscribes to scopes starting with
 *                         "slow:", and connections whose query has
 *                         "slow=1"
 *   "never_prefix": P     subscribes to scopes starting with P are not
 *                         answered in time (the host's timeout decides);
 *                         shutdown answers them, after the service
 *                         threads stopped, as a plugin may
 *   "flood": {"scope": S, "count": N, "rate": R}
 *                         a thread emits N events {"i":k} into S at R per
 *                         second, starting when a first connection
 *                         subscribes to S
 *   "mirror": {"from": A, "to": B}
 *                         a plugin subscription of A re-emits every push's
 *                         JSON as the data of an event in B
 *   "tick": {"scope": S, "ms": N}
 *                         a timer emits {"tick":k} into S every N ms
 *   "control": S          a plugin subscription of S obeys the data of
 *                         each event: {"close_user": U[, "scope": X]},
 *                         {"close_scope": X}, {"presence": X} (answers
 *                         with an event in "S:out" whose data is
 *                         {"n": closed} or the presence JSON)
 *   "pipe_scope": S       a pipe watched on the loop: a timer writes a
 *                         byte every 100 ms; each read emits {"piped":k}
 *   "fail": TEXT          init fails with TEXT
 *
 * Threads: hooks run on service threads (several with --threads 2); the
 * counters they share are atomics, the delayed answers a mutex-guarded
 * queue for the worker thread.
 */
#define _GNU_SOURCE /* pipe2, usleep */
#include <scopecast/plugin.h>

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct delayed {
    sc_plugin_req_t *req;
    int64_t due_ns;
    struct delayed *next;
};

struct ht {
    sc_host_t *host;
    int log_fd;
    char *deny_prefix, *deny_cookie, *user_cookie, *meta, *never_prefix;
    bool wrap_data;
    int delay_ms;
    /* the worker answering late */
    pthread_t worker;
    bool worker_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct delayed *queue;
    sc_plugin_req_t *held[64]; /* never_prefix reqs, answered at shutdown */
    int nheld;
    bool stop;
    /* flood */
    char *flood_scope;
    long flood_count, flood_rate;
    pthread_t flood_thread;
    _Atomic bool flood_go, flood_started;
    /* mirror, tick, pipe */
    char *mirror_from, *mirror_to;
    sc_plugin_sub_t *mirror_sub;
    char *control, *control_out;
    sc_plugin_sub_t *control_sub;
    char *tick_scope;
    long tick_n;
    sc_plugin_timer_t *tick_timer;
    char *pipe_scope;
    int pipe_fds[2];
    long piped;
    sc_plugin_watch_t *pipe_watch;
    sc_plugin_timer_t *pipe_timer;
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void logline(struct ht *h, const char *fmt, ...)
{
    if (h->log_fd < 0)
        return;
    char line[600];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    if (write(h->log_fd, line, (size_t)n) != n)
        sc_host_log(h->host, SC_PLUGIN_LOG_WARN, "log write: %s",
                    strerror(errno));
}

static bool starts(const char *s, const char *prefix)
{
    return prefix && s && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ---- late answers ---------------------------------------------------------
 */

static void *worker_main(void *arg)
{
    struct ht *h = arg;
    pthread_mutex_lock(&h->mu);
    while (!h->stop) {
        struct delayed *d = h->queue;
        if (!d) {
            pthread_cond_wait(&h->cv, &h->mu);
            continue;
        }
        int64_t wait = d->due_ns - now_ns();
        if (wait > 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t t = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + wait;
            ts.tv_sec = t / 1000000000;
            ts.tv_nsec = t % 1000000000;
            pthread_cond_timedwait(&h->cv, &h->mu, &ts);
            continue;
        }
        h->queue = d->next;
        pthread_mutex_unlock(&h->mu);
        sc_host_resume(d->req, SC_PLUGIN_ALLOW);
        free(d);
        pthread_mutex_lock(&h->mu);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

/* Queues req to be allowed in delay_ms (due times only grow: FIFO). */
static int later(struct ht *h, sc_plugin_req_t *req)
{
    struct delayed *d = calloc(1, sizeof *d);
    if (!d)
        return SC_PLUGIN_DENY;
    d->req = req;
    d->due_ns = now_ns() + (int64_t)h->delay_ms * 1000000;
    pthread_mutex_lock(&h->mu);
    struct delayed **p = &h->queue;
    while (*p)
        p = &(*p)->next;
    *p = d;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    return SC_PLUGIN_PENDING;
}

/* ---- the flood ------------------------------------------------------------
 */

static void *flood_main(void *arg)
{
    struct ht *h = arg;
    while (!atomic_load(&h->flood_go)) {
        pthread_mutex_lock(&h->mu);
        bool stop = h->stop;
        pthread_mutex_unlock(&h->mu);
        if (stop)
            return NULL;
        usleep(1000);
    }
    int64_t start = now_ns();
    long sent = 0;
    char data[64];
    while (sent < h->flood_count) {
        /* paced: event k is due at start + k / rate seconds */
        int64_t due = start + (int64_t)((double)sent * 1e9 / h->flood_rate);
        int64_t now = now_ns();
        if (due > now) {
            struct timespec ts = {0, due - now};
            nanosleep(&ts, NULL);
        }
        snprintf(data, sizeof data, "{\"i\":%ld}", sent);
        sc_plugin_emit_t e = {.scope = h->flood_scope, .data_json = data};
        if (sc_host_emit(h->host, &e, NULL) != 0) {
            sc_host_log(h->host, SC_PLUGIN_LOG_ERROR, "flood: emit %ld failed",
                        sent);
            break;
        }
        sent++;
    }
    double secs = (double)(now_ns() - start) / 1e9;
    sc_host_log(h->host, SC_PLUGIN_LOG_INFO,
                "flood: %ld events in %.3f s (%.0f/s)", sent, secs,
                secs > 0 ? sent / secs : 0.0);
    logline(h, "flood %ld %.3f", sent, secs);
    return NULL;
}

/* ---- hooks ----------------------------------------------------------------
 */

/* The value of cookie `name` in a Cookie header, copied into out. */
static bool cookie_value(const char *cookie, const char *name, char *out,
                         size_t len)
{
    size_t nl = strlen(name);
    for (const char *p = cookie; p && *p;) {
        while (*p == ' ' || *p == ';')
            p++;
        if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
            p += nl + 1;
            size_t n = strcspn(p, ";");
            if (n >= len)
                n = len - 1;
            memcpy(out, p, n);
            out[n] = '\0';
            return n > 0;
        }
        p = strchr(p, ';');
    }
    return false;
}

static int on_connect(void *state, sc_plugin_req_t *req,
                      const sc_plugin_conn_t *conn)
{
    struct ht *h = state;
    logline(h, "connect %s %s", conn->session_id,
            conn->user_id ? conn->user_id : "-");
    if (h->deny_cookie && conn->cookie &&
        strstr(conn->cookie, h->deny_cookie)) {
        sc_host_req_set_reason(req, "this cookie is not welcome");
        return SC_PLUGIN_DENY;
    }
    char user[128];
    if (h->user_cookie && conn->cookie &&
        cookie_value(conn->cookie, h->user_cookie, user, sizeof user))
        sc_host_req_set_user(req, user);
    if (h->meta && sc_host_req_set_meta(req, h->meta) != 0)
        return SC_PLUGIN_DENY;
    if (h->delay_ms > 0 && conn->query && strstr(conn->query, "slow=1"))
        return later(h, req);
    return SC_PLUGIN_ALLOW;
}

static int on_subscribe(void *state, sc_plugin_req_t *req,
                        const sc_plugin_conn_t *conn, const char *scope)
{
    struct ht *h = state;
    bool presence = sc_host_req_kind(req) == SC_PLUGIN_REQ_PRESENCE;
    logline(h, "%s %s %s", presence ? "presence" : "subscribe",
            conn->session_id, scope);
    if (starts(scope, h->deny_prefix)) {
        char why[300];
        snprintf(why, sizeof why, "%s is off limits", h->deny_prefix);
        sc_host_req_set_reason(req, why);
        return SC_PLUGIN_DENY;
    }
    if (!presence && h->flood_scope && strcmp(scope, h->flood_scope) == 0)
        atomic_store(&h->flood_go, true);
    if (!presence && starts(scope, h->never_prefix)) {
        pthread_mutex_lock(&h->mu);
        bool kept = h->nheld < 64;
        if (kept)
            h->held[h->nheld++] = req;
        pthread_mutex_unlock(&h->mu);
        return kept ? SC_PLUGIN_PENDING : SC_PLUGIN_DENY;
    }
    if (!presence && h->delay_ms > 0 && starts(scope, "slow:"))
        return later(h, req);
    return SC_PLUGIN_ALLOW;
}

static int on_emit(void *state, sc_plugin_req_t *req,
                   const sc_plugin_conn_t *conn, const sc_plugin_emit_t *e)
{
    struct ht *h = state;
    logline(h, "emit %s %s", conn->session_id, e->scope);
    if (starts(e->scope, h->deny_prefix)) {
        sc_host_req_set_reason(req, "emits there are off limits");
        return SC_PLUGIN_DENY;
    }
    if (h->wrap_data) {
        size_t n = (e->data_json ? strlen(e->data_json) : 4) + 16;
        char *d = malloc(n);
        if (!d)
            return SC_PLUGIN_DENY;
        snprintf(d, n, "{\"wrapped\":%s}",
                 e->data_json ? e->data_json : "null");
        int rc = sc_host_req_set_data(req, d);
        free(d);
        if (rc != 0)
            return SC_PLUGIN_DENY;
    }
    return SC_PLUGIN_ALLOW;
}

static void on_disconnect(void *state, const sc_plugin_conn_t *conn)
{
    logline(state, "disconnect %s", conn->session_id);
}

/* ---- the loop: mirror, tick, pipe -----------------------------------------
 */

static void mirror_event(void *ud, const sc_plugin_event_t *ev)
{
    struct ht *h = ud;
    char *data = strndup(ev->json, ev->len);
    if (!data)
        return;
    sc_plugin_emit_t e = {.scope = h->mirror_to, .data_json = data};
    sc_host_emit(h->host, &e, NULL);
    free(data);
}

static void mirror_closed(void *ud, const char *reason)
{
    struct ht *h = ud;
    logline(h, "mirror closed %s", reason);
    sc_host_unsubscribe(h->mirror_sub);
    h->mirror_sub = NULL;
}

/* The data of a push of the control scope (ev->json is the whole push). */
static void control_event(void *ud, const sc_plugin_event_t *ev)
{
    struct ht *h = ud;
    char *text = strndup(ev->json, ev->len);
    json_object *o = text ? json_tokener_parse(text) : NULL, *d, *v;
    free(text);
    if (!o || !json_object_object_get_ex(o, "data", &d)) {
        json_object_put(o);
        return;
    }
    char out[8192];
    out[0] = '\0';
    if (json_object_object_get_ex(d, "close_user", &v)) {
        json_object *sc = NULL;
        json_object_object_get_ex(d, "scope", &sc);
        size_t n = sc_host_close_user(h->host, json_object_get_string(v),
                                      sc ? json_object_get_string(sc) : NULL);
        snprintf(out, sizeof out, "{\"n\":%zu}", n);
    } else if (json_object_object_get_ex(d, "close_scope", &v)) {
        size_t n = sc_host_close_scope(h->host, json_object_get_string(v));
        snprintf(out, sizeof out, "{\"n\":%zu}", n);
    } else if (json_object_object_get_ex(d, "presence", &v)) {
        char *p = NULL;
        if (sc_host_presence(h->host, json_object_get_string(v), &p) == 0)
            snprintf(out, sizeof out, "%s", p);
        else
            snprintf(out, sizeof out, "\"invalid\"");
        sc_host_free(p);
    }
    json_object_put(o);
    if (out[0]) {
        sc_plugin_emit_t e = {.scope = h->control_out, .data_json = out};
        sc_host_emit(h->host, &e, NULL);
    }
}

static void on_tick(void *ud)
{
    struct ht *h = ud;
    char data[48];
    snprintf(data, sizeof data, "{\"tick\":%ld}", ++h->tick_n);
    sc_plugin_emit_t e = {.scope = h->tick_scope, .data_json = data};
    sc_host_emit(h->host, &e, NULL);
}

static void pipe_write(void *ud)
{
    struct ht *h = ud;
    if (write(h->pipe_fds[1], "x", 1) != 1)
        sc_host_log(h->host, SC_PLUGIN_LOG_WARN, "pipe write failed");
}

static void pipe_readable(void *ud, int fd, unsigned events)
{
    struct ht *h = ud;
    char b[64];
    ssize_t n = read(fd, b, sizeof b);
    if (n <= 0 || !(events & SC_PLUGIN_READ))
        return;
    char data[48];
    snprintf(data, sizeof data, "{\"piped\":%ld}", h->piped += n);
    sc_plugin_emit_t e = {.scope = h->pipe_scope, .data_json = data};
    sc_host_emit(h->host, &e, NULL);
}

/* ---- init and shutdown ----------------------------------------------------
 */

static char *str_of(json_object *cfg, const char *key)
{
    json_object *v;
    if (!json_object_object_get_ex(cfg, key, &v) ||
        !json_object_is_type(v, json_type_string))
        return NULL;
    return strdup(json_object_get_string(v));
}

static void ht_free(struct ht *h)
{
    if (h->log_fd >= 0)
        close(h->log_fd);
    free(h->deny_prefix);
    free(h->deny_cookie);
    free(h->user_cookie);
    free(h->meta);
    free(h->never_prefix);
    free(h->flood_scope);
    free(h->mirror_from);
    free(h->mirror_to);
    free(h->tick_scope);
    free(h->control);
    free(h->control_out);
    free(h->pipe_scope);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}

static void shutdown_(void *state)
{
    struct ht *h = state;
    pthread_mutex_lock(&h->mu);
    h->stop = true;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    if (h->worker_started)
        pthread_join(h->worker, NULL);
    if (atomic_load(&h->flood_started)) {
        atomic_store(&h->flood_go, true);
        pthread_join(h->flood_thread, NULL);
    }
    /* the answers held back come now, too late for anyone */
    for (int i = 0; i < h->nheld; i++)
        sc_host_resume(h->held[i], SC_PLUGIN_ALLOW);
    /* late answers never given: the host frees those reqs */
    for (struct delayed *d = h->queue, *n; d; d = n) {
        n = d->next;
        free(d);
    }
    sc_host_unsubscribe(h->mirror_sub);
    sc_host_unsubscribe(h->control_sub);
    sc_host_timer_stop(h->tick_timer);
    sc_host_timer_stop(h->pipe_timer);
    sc_host_watch_stop(h->pipe_watch);
    for (int i = 0; i < 2; i++)
        if (h->pipe_fds[i] >= 0)
            close(h->pipe_fds[i]);
    logline(h, "shutdown");
    ht_free(h);
}

static int init(sc_host_t *host, const char *config_json, void **state,
                char *err, size_t errlen)
{
    json_object *cfg = json_tokener_parse(config_json), *v, *o;
    struct ht *h = calloc(1, sizeof *h);
    if (!cfg || !h) {
        snprintf(err, errlen, "out of memory");
        json_object_put(cfg);
        free(h);
        return -1;
    }
    h->host = host;
    h->log_fd = -1;
    h->pipe_fds[0] = h->pipe_fds[1] = -1;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    char *fail = str_of(cfg, "fail");
    if (fail) {
        snprintf(err, errlen, "%s", fail);
        free(fail);
        goto fail;
    }
    char *log = str_of(cfg, "log");
    if (log) {
        h->log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        free(log);
        if (h->log_fd < 0) {
            snprintf(err, errlen, "log: %s", strerror(errno));
            goto fail;
        }
    }
    h->deny_prefix = str_of(cfg, "deny_prefix");
    h->deny_cookie = str_of(cfg, "deny_cookie");
    h->user_cookie = str_of(cfg, "user_cookie");
    h->never_prefix = str_of(cfg, "never_prefix");
    if (json_object_object_get_ex(cfg, "meta", &v))
        h->meta = strdup(json_object_to_json_string(v));
    h->wrap_data = json_object_object_get_ex(cfg, "wrap_data", &v) &&
                   json_object_get_boolean(v);
    if (json_object_object_get_ex(cfg, "delay_ms", &v))
        h->delay_ms = json_object_get_int(v);
    if (h->delay_ms > 0) {
        if (pthread_create(&h->worker, NULL, worker_main, h) != 0) {
            snprintf(err, errlen, "cannot start a thread");
            goto fail;
        }
        h->worker_started = true;
    }
    if (json_object_object_get_ex(cfg, "flood", &o)) {
        h->flood_scope = str_of(o, "scope");
        h->flood_count = json_object_object_get_ex(o, "count", &v)
                             ? json_object_get_int64(v)
                             : 1000;
        h->flood_rate = json_object_object_get_ex(o, "rate", &v)
                            ? json_object_get_int64(v)
                            : 1000;
        if (!h->flood_scope || h->flood_rate <= 0) {
            snprintf(err, errlen, "flood: needs a scope and a rate > 0");
            goto fail;
        }
        if (pthread_create(&h->flood_thread, NULL, flood_main, h) != 0) {
            snprintf(err, errlen, "cannot start a thread");
            goto fail;
        }
        atomic_store(&h->flood_started, true);
    }
    if (json_object_object_get_ex(cfg, "mirror", &o)) {
        h->mirror_from = str_of(o, "from");
        h->mirror_to = str_of(o, "to");
        if (!h->mirror_from || !h->mirror_to ||
            sc_host_subscribe(host, h->mirror_from, 0, mirror_event,
                              mirror_closed, h, &h->mirror_sub) != 0) {
            snprintf(err, errlen, "mirror: cannot subscribe");
            goto fail;
        }
    }
    if (json_object_object_get_ex(cfg, "tick", &o)) {
        h->tick_scope = str_of(o, "scope");
        int ms = json_object_object_get_ex(o, "ms", &v) ? json_object_get_int(v)
                                                        : 100;
        if (!h->tick_scope ||
            sc_host_timer_start(host, ms / 1000.0, ms / 1000.0, on_tick, h,
                                &h->tick_timer) != 0) {
            snprintf(err, errlen, "tick: cannot start");
            goto fail;
        }
    }
    h->control = str_of(cfg, "control");
    if (h->control) {
        size_t n = strlen(h->control) + 5;
        h->control_out = malloc(n);
        if (!h->control_out ||
            (snprintf(h->control_out, n, "%s:out", h->control),
             sc_host_subscribe(host, h->control, 0, control_event, NULL, h,
                               &h->control_sub)) != 0) {
            snprintf(err, errlen, "control: cannot subscribe");
            goto fail;
        }
    }
    h->pipe_scope = str_of(cfg, "pipe_scope");
    if (h->pipe_scope) {
        if (pipe2(h->pipe_fds, O_NONBLOCK | O_CLOEXEC) != 0 ||
            sc_host_watch_start(host, h->pipe_fds[0], SC_PLUGIN_READ,
                                pipe_readable, h, &h->pipe_watch) != 0 ||
            sc_host_timer_start(host, 0.1, 0.1, pipe_write, h,
                                &h->pipe_timer) != 0) {
            snprintf(err, errlen, "pipe: cannot start");
            goto fail;
        }
    }
    json_object_put(cfg);
    *state = h;
    logline(h, "init");
    return 0;
fail:
    json_object_put(cfg);
    shutdown_(h);
    return -1;
}

SC_PLUGIN_EXPORT const sc_plugin_t scopecast_plugin = {
    .abi = SC_PLUGIN_ABI,
    .name = "hooktest",
    .init = init,
    .shutdown = shutdown_,
    .on_connect = on_connect,
    .on_subscribe = on_subscribe,
    .on_emit = on_emit,
    .on_disconnect = on_disconnect,
};
