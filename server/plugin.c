/*
 * The plugin host (see plugin.h): loading, the sc_host_* functions
 * plugins call, hooks' answers, and the plugin loop's timers, fd watches
 * and subscriptions.
 *
 * Design notes:
 * - Plugins call sc_host_* directly: the scopecast binary exports exactly
 *   those symbols (server/plugin.syms, a --dynamic-list), so a plugin links
 *   against nothing of ours and dlopen resolves it against the binary.
 * - An answer given later (sc_host_resume, any thread) is queued to the
 *   service thread that asked: a mutex-guarded list and an ev_async on that
 *   thread's loop (libev's only thread-safe call). The thread hands each
 *   answer to ws.c, whose connection may have stopped waiting for it
 *   (req->conn NULL): such answers are only freed.
 * - Plugin subscriptions are core subscriptions with an owner whose wake
 *   sends the plugin loop's ev_async; the loop drains every such
 *   subscription in turn, at most SUB_BATCH pushes each per pass, so a
 *   busy scope cannot starve the loop's other watchers.
 */
#include "plugin.h"
#include "broker.h"
#include "codec.h"
#include "http_body.h"
#include "log.h"
#include "reply.h"
#include "scope.h"
#include "wsframe.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Pushes one plugin subscription delivers per loop pass. */
#define SUB_BATCH 256

struct sc_plugin_timer {
    ev_timer w;
    sc_host_t *host;
    sc_plugin_timer_fn fn;
    void *ud;
    struct sc_plugin_timer *next, *prev;
};

struct sc_plugin_watch {
    ev_io w;
    sc_host_t *host;
    sc_plugin_watch_fn fn;
    void *ud;
    struct sc_plugin_watch *next, *prev;
};

struct sc_plugin_sub {
    sc_host_t *host;
    sc_owner_t *owner;
    sc_sub_t *sub;
    sc_plugin_event_fn on_event;
    sc_plugin_closed_fn on_closed;
    void *ud;
    bool closed_told; /* on_closed was called (or is not to be) */
    bool dead;        /* unsubscribed during a drain pass */
    struct sc_plugin_sub *next, *prev;
};

/* One loaded plugin: what `sc_host_t *` points to. */
struct sc_host {
    struct sc_plugins *all;
    const sc_plugin_t *desc; /* {const} in the shared object */
    void *handle;            /* dlopen's */
    void *state;             /* init's */
    char *name;              /* {const} desc->name or the file name */
    bool started;            /* init succeeded, shutdown not yet called */
    /* the plugin loop's objects it made (plugin loop only) */
    struct sc_plugin_timer *timers;
    struct sc_plugin_watch *watches;
    struct sc_plugin_sub *subs;
};

struct sc_plugins {
    sc_server_t *srv;
    sc_host_t *v; /* n plugins, in load order */
    int n;
    unsigned hooks;          /* {const} enum sc_plugin_hooks */
    struct ev_loop *loop;    /* {const} the plugin loop (thread 0's) */
    ev_async subs_async;     /* a plugin subscription has pushes */
    bool draining;           /* on_sub_pushes is delivering */
    pthread_mutex_t reqs_mu; /* guards `reqs` */
    sc_plugin_req_t *reqs;   /* every live req */
    bool unloaded;
};

struct sc_plugin_thread {
    ev_async async;
    pthread_mutex_t mu;           /* guards head/tail */
    sc_plugin_req_t *head, *tail; /* answers, oldest first */
    sc_plugin_resumed_fn fn;
    sc_svc_t *svc;
};

/* ---- lists --------------------------------------------------------------- */

#define LIST_LINK(headp, x)                                                    \
    do {                                                                       \
        (x)->prev = NULL;                                                      \
        (x)->next = *(headp);                                                  \
        if (*(headp))                                                          \
            (*(headp))->prev = (x);                                            \
        *(headp) = (x);                                                        \
    } while (0)

#define LIST_UNLINK(headp, x)                                                  \
    do {                                                                       \
        if ((x)->prev)                                                         \
            (x)->prev->next = (x)->next;                                       \
        else                                                                   \
            *(headp) = (x)->next;                                              \
        if ((x)->next)                                                         \
            (x)->next->prev = (x)->prev;                                       \
    } while (0)

/* ---- reqs ---------------------------------------------------------------- */

sc_plugin_req_t *sc_plugin_req_new(sc_svc_t *svc, int kind, void *conn)
{
    struct sc_plugins *ps = svc->srv->plugins;
    sc_plugin_req_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->kind = kind;
    r->svc = svc;
    r->conn = conn;
    pthread_mutex_lock(&ps->reqs_mu);
    LIST_LINK(&ps->reqs, r);
    pthread_mutex_unlock(&ps->reqs_mu);
    return r;
}

void sc_plugin_req_free(sc_plugin_req_t *r)
{
    if (!r)
        return;
    struct sc_plugins *ps = r->svc->srv->plugins;
    if (ps) {
        pthread_mutex_lock(&ps->reqs_mu);
        LIST_UNLINK(&ps->reqs, r);
        pthread_mutex_unlock(&ps->reqs_mu);
    }
    free(r->reason);
    free(r->user);
    free(r->meta);
    free(r->data);
    free(r);
}

int sc_host_req_kind(const sc_plugin_req_t *req)
{
    return req->kind;
}

int sc_host_req_set_reason(sc_plugin_req_t *req, const char *reason)
{
    size_t n = reason ? strnlen(reason, SC_PLUGIN_REASON_MAX + 1) : 0;
    if (n > SC_PLUGIN_REASON_MAX) { /* cut, but not inside a UTF-8 char */
        n = SC_PLUGIN_REASON_MAX;
        while (n > 0 && ((unsigned char)reason[n] & 0xc0) == 0x80)
            n--;
    }
    char *dup = reason ? strndup(reason, n) : NULL;
    if (reason && !dup)
        return -1;
    free(req->reason);
    req->reason = dup;
    return 0;
}

int sc_host_req_set_user(sc_plugin_req_t *req, const char *user_id)
{
    if (req->kind != SC_PLUGIN_REQ_CONNECT ||
        (user_id && (*user_id == '\0' || strlen(user_id) > 256)))
        return -1;
    char *dup = user_id ? strdup(user_id) : NULL;
    if (user_id && !dup)
        return -1;
    free(req->user);
    req->user = dup;
    req->user_set = true;
    return 0;
}

/* The canonical text of one JSON value from a plugin, or NULL. */
static char *json_value(const char *text)
{
    sc_proto_err_t err;
    char *out = NULL;
    if (sc_proto_json_value(text, strlen(text), &out, &err) != SC_OK) {
        sc_proto_err_deinit(&err);
        return NULL;
    }
    return out;
}

int sc_host_req_set_meta(sc_plugin_req_t *req, const char *meta_json)
{
    if (req->kind != SC_PLUGIN_REQ_CONNECT || !meta_json)
        return -1;
    char *v = json_value(meta_json);
    if (!v || strlen(v) > req->svc->srv->cfg->max_meta) {
        free(v);
        return -1;
    }
    free(req->meta);
    req->meta = v;
    return 0;
}

int sc_host_req_set_data(sc_plugin_req_t *req, const char *data_json)
{
    if (req->kind != SC_PLUGIN_REQ_EMIT)
        return -1;
    char *v = NULL;
    if (data_json && (v = json_value(data_json)) == NULL)
        return -1;
    free(req->data);
    req->data = v;
    req->data_set = true;
    return 0;
}

void sc_host_resume(sc_plugin_req_t *req, int verdict)
{
    /* once queued, req may be freed by its thread at any moment: nothing
     * of it is read after the unlock */
    sc_svc_t *svc = req->svc;
    struct sc_plugin_thread *pt = svc->plugin;
    req->verdict =
        verdict == SC_PLUGIN_ALLOW ? SC_PLUGIN_ALLOW : SC_PLUGIN_DENY;
    req->qnext = NULL;
    pthread_mutex_lock(&pt->mu);
    if (pt->tail)
        pt->tail->qnext = req;
    else
        pt->head = req;
    pt->tail = req;
    pthread_mutex_unlock(&pt->mu);
    ev_async_send(svc->loop, &pt->async);
}

/* The thread's answers came: each goes back to ws.c, or is freed when
 * nobody waits for it any more. */
static void on_answers(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    struct sc_plugin_thread *pt =
        (struct sc_plugin_thread *)((char *)w -
                                    offsetof(struct sc_plugin_thread, async));
    pthread_mutex_lock(&pt->mu);
    sc_plugin_req_t *r = pt->head;
    pt->head = pt->tail = NULL;
    pthread_mutex_unlock(&pt->mu);
    while (r) {
        sc_plugin_req_t *next = r->qnext;
        if (!r->conn || !pt->fn(pt->svc, r))
            sc_plugin_req_free(r);
        r = next;
    }
}

int sc_plugins_thread_create(sc_svc_t *svc, sc_plugin_resumed_fn fn)
{
    struct sc_plugin_thread *pt = calloc(1, sizeof *pt);
    if (!pt)
        return SC_ENOMEM;
    pthread_mutex_init(&pt->mu, NULL);
    pt->fn = fn;
    pt->svc = svc;
    ev_async_init(&pt->async, on_answers);
    ev_async_start(svc->loop, &pt->async);
    ev_unref(svc->loop); /* it does not keep the loop alive */
    svc->plugin = pt;
    return SC_OK;
}

void sc_plugins_thread_destroy(sc_svc_t *svc)
{
    struct sc_plugin_thread *pt = svc->plugin;
    if (!pt)
        return;
    ev_ref(svc->loop);
    ev_async_stop(svc->loop, &pt->async);
    pthread_mutex_lock(&pt->mu);
    sc_plugin_req_t *r = pt->head;
    pt->head = pt->tail = NULL;
    pthread_mutex_unlock(&pt->mu);
    while (r) {
        sc_plugin_req_t *next = r->qnext;
        sc_plugin_req_free(r);
        r = next;
    }
    pthread_mutex_destroy(&pt->mu);
    free(pt);
    svc->plugin = NULL;
}

/* ---- asking the hooks ---------------------------------------------------- */

unsigned sc_plugins_hooks(const sc_server_t *srv)
{
    return srv->plugins ? srv->plugins->hooks : 0;
}

int sc_plugins_count(const sc_server_t *srv)
{
    return srv->plugins ? srv->plugins->n : 0;
}

const char *sc_plugins_name(const sc_server_t *srv, int i)
{
    struct sc_plugins *ps = srv->plugins;
    return ps && i >= 0 && i < ps->n ? ps->v[i].name : "?";
}

int sc_plugins_ask(const sc_server_t *srv, sc_plugin_req_t *req,
                   const sc_plugin_conn_t *conn, const char *scope,
                   const sc_plugin_emit_t *e)
{
    struct sc_plugins *ps = srv->plugins;
    for (; ps && req->at < ps->n; req->at++) {
        sc_host_t *h = &ps->v[req->at];
        const sc_plugin_t *d = h->desc;
        int v = SC_PLUGIN_ALLOW;
        switch (req->kind) {
        case SC_PLUGIN_REQ_CONNECT:
            if (d->on_connect)
                v = d->on_connect(h->state, req, conn);
            break;
        case SC_PLUGIN_REQ_SUBSCRIBE:
        case SC_PLUGIN_REQ_PRESENCE:
            if (d->on_subscribe)
                v = d->on_subscribe(h->state, req, conn, scope);
            break;
        case SC_PLUGIN_REQ_EMIT:
            if (d->on_emit)
                v = d->on_emit(h->state, req, conn, e);
            break;
        }
        if (v == SC_PLUGIN_PENDING) {
            req->deadline_us = sc_now_us() + SC_PLUGIN_TIMEOUT_US;
            return SC_PLUGIN_PENDING;
        }
        if (v != SC_PLUGIN_ALLOW)
            return SC_PLUGIN_DENY; /* anything but ALLOW denies */
    }
    return SC_PLUGIN_ALLOW;
}

void sc_plugins_disconnect(const sc_server_t *srv, int reached,
                           const sc_plugin_conn_t *conn)
{
    struct sc_plugins *ps = srv->plugins;
    for (int i = ps ? ps->n - 1 : -1; i >= 0; i--) {
        const sc_plugin_t *d = ps->v[i].desc;
        if (d->on_disconnect && (i < reached || !d->on_connect))
            d->on_disconnect(ps->v[i].state, conn);
    }
}

/* ---- events and scopes --------------------------------------------------- */

int sc_host_emit(sc_host_t *host, const sc_plugin_emit_t *pe, uint64_t *seq)
{
    if (seq)
        *seq = 0;
    if (!host || !pe || !pe->scope ||
        !sc_proto_scope_valid(pe->scope, strlen(pe->scope)) ||
        pe->npaths > SC_PLUGIN_MAX_PATHS || (pe->npaths && !pe->paths) ||
        (pe->naudience && !pe->audience))
        return -1;
    for (size_t i = 0; i < pe->npaths; i++)
        if (!pe->paths[i])
            return -1;
    for (size_t i = 0; i < pe->naudience; i++)
        if (!pe->audience[i])
            return -1;
    char *data = NULL;
    if (pe->data_json && (data = json_value(pe->data_json)) == NULL)
        return -1;
    sc_emit_t e = {.scope = pe->scope,
                   .paths = pe->paths,
                   .npaths = pe->npaths,
                   .audience = pe->audience,
                   .naudience = pe->naudience,
                   .has_audience = pe->has_audience,
                   .payload = data,
                   .payload_len = data ? strlen(data) : 0,
                   .has_payload = data != NULL};
    sc_broker_t *bk = host->all->srv->broker;
    int rc = bk && sc_broker_linked(bk)
                 ? sc_broker_emit(bk, &e) /* the cluster's seq comes later */
                 : sc_bus_emit(host->all->srv->bus, &e, seq);
    free(data);
    return rc == SC_OK ? 0 : -1;
}

int sc_host_presence(sc_host_t *host, const char *scope, char **json_out)
{
    *json_out = NULL;
    if (!scope || !sc_proto_scope_valid(scope, strlen(scope)))
        return -1;
    sc_conn_t *list = NULL;
    size_t n = 0;
    if (sc_bus_presence(host->all->srv->bus, scope, &list, &n) != SC_OK)
        return -1;
    sc_buf_t b;
    sc_buf_init(&b);
    int rc = sc_proto_enc_http_presence(&b, scope, list, n);
    sc_presence_free(list, n);
    if (rc != SC_OK || !(*json_out = sc_buf_detach(&b, NULL))) {
        sc_buf_deinit(&b);
        return -1;
    }
    return 0;
}

size_t sc_host_close_scope(sc_host_t *host, const char *scope)
{
    if (!scope)
        return 0;
    return sc_bus_close(host->all->srv->bus, scope, SC_CLOSE_CLOSED);
}

size_t sc_host_close_user(sc_host_t *host, const char *user_id,
                          const char *scope)
{
    if (!user_id)
        return 0;
    return sc_bus_close_user(host->all->srv->bus, user_id, scope);
}

bool sc_host_scope_valid(const char *scope)
{
    return scope && sc_proto_scope_valid(scope, strlen(scope));
}

bool sc_host_json_valid(const char *json)
{
    char *v = json ? json_value(json) : NULL;
    free(v);
    return v != NULL;
}

void sc_host_free(void *p)
{
    free(p);
}

void sc_host_log(sc_host_t *host, int level, const char *fmt, ...)
{
    if (!sc_log_enabled(level < SC_LOG_DEBUG   ? SC_LOG_DEBUG
                        : level > SC_LOG_ERROR ? SC_LOG_ERROR
                                               : level))
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (host)
        sc_log(level, "plugin %s: %s", host->name, line);
    else
        sc_log(level, "plugin: %s", line);
}

/* ---- the plugin loop: timers and fd watches ------------------------------ */

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct sc_plugin_timer *t = (struct sc_plugin_timer *)w;
    t->fn(t->ud);
}

int sc_host_timer_start(sc_host_t *host, double after, double repeat,
                        sc_plugin_timer_fn fn, void *ud,
                        sc_plugin_timer_t **out)
{
    *out = NULL;
    if (!fn || after < 0 || repeat < 0)
        return -1;
    struct sc_plugin_timer *t = calloc(1, sizeof *t);
    if (!t)
        return -1;
    t->host = host;
    t->fn = fn;
    t->ud = ud;
    ev_timer_init(&t->w, on_timer, after, repeat);
    ev_timer_start(host->all->loop, &t->w);
    LIST_LINK(&host->timers, t);
    *out = t;
    return 0;
}

void sc_host_timer_stop(sc_plugin_timer_t *t)
{
    if (!t)
        return;
    ev_timer_stop(t->host->all->loop, &t->w);
    LIST_UNLINK(&t->host->timers, t);
    free(t);
}

static void on_watch(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct sc_plugin_watch *pw = (struct sc_plugin_watch *)w;
    unsigned ev = ((revents & EV_READ) ? SC_PLUGIN_READ : 0) |
                  ((revents & EV_WRITE) ? SC_PLUGIN_WRITE : 0);
    pw->fn(pw->ud, pw->w.fd, ev);
}

static int ev_events(unsigned events)
{
    return ((events & SC_PLUGIN_READ) ? EV_READ : 0) |
           ((events & SC_PLUGIN_WRITE) ? EV_WRITE : 0);
}

int sc_host_watch_start(sc_host_t *host, int fd, unsigned events,
                        sc_plugin_watch_fn fn, void *ud,
                        sc_plugin_watch_t **out)
{
    *out = NULL;
    if (!fn || fd < 0)
        return -1;
    struct sc_plugin_watch *w = calloc(1, sizeof *w);
    if (!w)
        return -1;
    w->host = host;
    w->fn = fn;
    w->ud = ud;
    ev_io_init(&w->w, on_watch, fd, ev_events(events));
    if (events)
        ev_io_start(host->all->loop, &w->w);
    LIST_LINK(&host->watches, w);
    *out = w;
    return 0;
}

void sc_host_watch_set(sc_plugin_watch_t *w, unsigned events)
{
    struct ev_loop *loop = w->host->all->loop;
    ev_io_stop(loop, &w->w);
    ev_io_set(&w->w, w->w.fd, ev_events(events));
    if (events)
        ev_io_start(loop, &w->w);
}

void sc_host_watch_stop(sc_plugin_watch_t *w)
{
    if (!w)
        return;
    ev_io_stop(w->host->all->loop, &w->w);
    LIST_UNLINK(&w->host->watches, w);
    free(w);
}

/* ---- the plugin loop: subscriptions -------------------------------------- */

/* The core's wake (any thread, a shard lock held): only a signal. */
static void sub_wake(void *ud)
{
    struct sc_plugins *ps = ud;
    ev_async_send(ps->loop, &ps->subs_async);
}

/* Hands one push to the plugin: the frame's payload is the JSON text. */
static void deliver(struct sc_plugin_sub *s, const char *scope, uint64_t seq,
                    const void *frame, size_t len, uint32_t dropped)
{
    uint64_t flen = 0;
    size_t hl = frame ? sc_ws_frame_extent(frame, len, &flen) : 0;
    if (hl == 0)
        return; /* no frame: not an event of ours */
    sc_plugin_event_t ev = {.scope = scope,
                            .seq = seq,
                            .json = (const char *)frame + hl,
                            .len = len - hl,
                            .dropped = dropped};
    s->on_event(s->ud, &ev);
}

/* A `dropped` push, as a client gets it. */
static void deliver_dropped(struct sc_plugin_sub *s, uint32_t n)
{
    sc_buf_t b;
    sc_buf_init(&b);
    if (sc_proto_enc_dropped(&b, sc_sub_scope(s->sub), n) == SC_OK) {
        sc_plugin_event_t ev = {.scope = sc_sub_scope(s->sub),
                                .json = sc_buf_str(&b),
                                .len = sc_buf_len(&b),
                                .dropped = n};
        s->on_event(s->ud, &ev);
    }
    sc_buf_deinit(&b);
}

/* Delivers up to SUB_BATCH pushes of `s`; true when it may have more.
 * Callbacks may unsubscribe any subscription meanwhile: that only marks
 * it `dead` (ps->draining), and on_sub_pushes frees it afterwards. */
static bool sub_drain(struct sc_plugin_sub *s)
{
    sc_owner_rearm(s->owner);
    for (int i = 0; i < SUB_BATCH && !s->dead; i++) {
        sc_event_t *ev = NULL;
        uint32_t dropped = 0;
        int rc = sc_sub_next(s->sub, &ev, &dropped);
        if (dropped)
            deliver_dropped(s, dropped);
        if (rc == SC_ECLOSED && !s->dead && !s->closed_told) {
            s->closed_told = true;
            if (s->on_closed)
                s->on_closed(s->ud, sc_proto_close_reason_name(
                                        sc_sub_close_reason(s->sub)));
        }
        if (rc != SC_OK)
            return false;
        if (!s->dead) {
            size_t len = 0;
            const void *frame = sc_event_frame(ev, &len);
            deliver(s, sc_event_scope(ev), sc_event_seq(ev), frame, len, 0);
        }
        sc_event_unref(ev);
    }
    return !s->dead;
}

static void sub_free(struct sc_plugin_sub *s)
{
    LIST_UNLINK(&s->host->subs, s);
    sc_sub_destroy(s->sub);
    sc_owner_destroy(s->owner);
    free(s);
}

static void on_sub_pushes(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)revents;
    struct sc_plugins *ps =
        (struct sc_plugins *)((char *)w -
                              offsetof(struct sc_plugins, subs_async));
    bool more = false;
    ps->draining = true;
    for (int i = 0; i < ps->n; i++)
        for (struct sc_plugin_sub *s = ps->v[i].subs; s; s = s->next)
            if (!s->dead && !s->closed_told && sub_drain(s))
                more = true;
    ps->draining = false;
    for (int i = 0; i < ps->n; i++)
        for (struct sc_plugin_sub *s = ps->v[i].subs, *next; s; s = next) {
            next = s->next;
            if (s->dead)
                sub_free(s);
        }
    if (more)
        ev_async_send(loop, w); /* the rest in the next pass */
}

int sc_host_subscribe(sc_host_t *host, const char *scope, unsigned flags,
                      sc_plugin_event_fn on_event,
                      sc_plugin_closed_fn on_closed, void *ud,
                      sc_plugin_sub_t **out)
{
    *out = NULL;
    if (!on_event || !scope || !sc_proto_scope_valid(scope, strlen(scope)))
        return -1;
    struct sc_plugin_sub *s = calloc(1, sizeof *s);
    if (!s)
        return -1;
    s->host = host;
    s->on_event = on_event;
    s->on_closed = on_closed;
    s->ud = ud;
    if (sc_owner_create(sub_wake, host->all, &s->owner) != SC_OK) {
        free(s);
        return -1;
    }
    sc_sub_opts_t opts = {.echo = true,
                          .quiet = !(flags & SC_PLUGIN_SUB_PRESENCE)};
    if (sc_bus_subscribe(host->all->srv->bus, scope, s->owner, &opts, &s->sub,
                         NULL) != SC_OK) {
        sc_owner_destroy(s->owner);
        free(s);
        return -1;
    }
    LIST_LINK(&host->subs, s);
    *out = s;
    return 0;
}

void sc_host_unsubscribe(sc_plugin_sub_t *s)
{
    if (!s)
        return;
    if (s->host->all->draining)
        s->dead = true; /* inside on_sub_pushes: freed after the pass */
    else
        sub_free(s);
}

/* ---- loading ------------------------------------------------------------- */

/* Splits "PATH[:JSON]" at the first ':' that a JSON object or array
 * follows (spaces allowed between; a path may hold ':'). *path is
 * malloc'd; *config points into spec, or at "{}". */
static int split_spec(const char *spec, char **path, const char **config)
{
    const char *c = spec;
    while ((c = strchr(c, ':')) != NULL) {
        const char *j = c + 1 + strspn(c + 1, " \t");
        if (*j == '{' || *j == '[')
            break;
        c++;
    }
    *path = c ? strndup(spec, (size_t)(c - spec)) : strdup(spec);
    *config = c ? c + 1 : "{}";
    return *path ? SC_OK : SC_ENOMEM;
}

/* The configuration must be one JSON object, under the protocol's strict
 * rules; plugins get it as text. */
static bool config_is_object(const char *text, char *why, size_t whylen)
{
    sc_proto_err_t err;
    char *v = NULL;
    int rc = sc_proto_json_value(text, strlen(text), &v, &err);
    bool ok = rc == SC_OK && v[0] == '{';
    if (rc != SC_OK)
        snprintf(why, whylen, "%s", err.message);
    else if (!ok)
        snprintf(why, whylen, "not a JSON object");
    if (rc != SC_OK)
        sc_proto_err_deinit(&err);
    free(v);
    return ok;
}

/* Opens one plugin and checks its descriptor (not started yet). */
static int open_one(sc_host_t *h, const char *path)
{
    dlerror();
    h->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h->handle) {
        const char *e = dlerror();
        sc_log(SC_LOG_ERROR, "--plugin '%s': cannot load it: %s", path,
               e ? e : "unknown error");
        return SC_EINVAL;
    }
    h->desc = dlsym(h->handle, SC_PLUGIN_SYMBOL);
    if (!h->desc) {
        sc_log(SC_LOG_ERROR,
               "--plugin '%s': not a scopecast plugin (no symbol '%s')", path,
               SC_PLUGIN_SYMBOL);
        return SC_EINVAL;
    }
    if (h->desc->abi != SC_PLUGIN_ABI) {
        sc_log(SC_LOG_ERROR,
               "--plugin '%s': built for plugin ABI %u, this server has ABI "
               "%d (rebuild it against this server's "
               "<scopecast/plugin.h>)",
               path, h->desc->abi, SC_PLUGIN_ABI);
        return SC_EINVAL;
    }
    if (!h->desc->init) {
        sc_log(SC_LOG_ERROR, "--plugin '%s': its descriptor has no init", path);
        return SC_EINVAL;
    }
    const char *base = strrchr(path, '/');
    h->name = strdup(h->desc->name && *h->desc->name ? h->desc->name
                     : base                          ? base + 1
                                                     : path);
    return h->name ? SC_OK : SC_ENOMEM;
}

static int load_one(struct sc_plugins *ps, sc_host_t *h, const char *spec)
{
    char *path = NULL, why[160];
    const char *config;
    int rc = split_spec(spec, &path, &config);
    if (rc != SC_OK)
        return rc;
    h->all = ps;
    if (!config_is_object(config, why, sizeof why)) {
        sc_log(SC_LOG_ERROR,
               "--plugin '%s': its configuration must be a JSON object: %s",
               path, why);
        free(path);
        return SC_EINVAL;
    }
    if ((rc = open_one(h, path)) != SC_OK) {
        free(path);
        return rc;
    }
    char err[512] = "";
    if (h->desc->init(h, config, &h->state, err, sizeof err) != 0) {
        err[sizeof err - 1] = '\0';
        sc_log(SC_LOG_ERROR, "--plugin '%s': %s did not start: %s", path,
               h->name, *err ? err : "init failed (no reason given)");
        free(path);
        return SC_EINVAL;
    }
    h->started = true;
    const sc_plugin_t *d = h->desc;
    ps->hooks |= (d->on_connect ? SC_HOOK_CONNECT : 0) |
                 (d->on_subscribe ? SC_HOOK_SUBSCRIBE : 0) |
                 (d->on_emit ? SC_HOOK_EMIT : 0) |
                 (d->on_disconnect ? SC_HOOK_DISCONNECT : 0);
    sc_log(SC_LOG_INFO, "plugin %s loaded from %s", h->name, path);
    free(path);
    return SC_OK;
}

int sc_plugins_load(sc_server_t *srv)
{
    const sc_strlist_t *l = &srv->cfg->plugins;
    struct sc_plugins *ps = calloc(1, sizeof *ps);
    if (!ps)
        return SC_ENOMEM;
    ps->srv = srv;
    ps->loop = srv->svcs[0].loop;
    pthread_mutex_init(&ps->reqs_mu, NULL);
    ev_async_init(&ps->subs_async, on_sub_pushes);
    ev_async_start(ps->loop, &ps->subs_async);
    ev_unref(ps->loop);
    srv->plugins = ps;
    if (l->n == 0)
        return SC_OK;
    if (!(ps->v = calloc(l->n, sizeof *ps->v)))
        return SC_ENOMEM;
    for (size_t i = 0; i < l->n; i++) {
        ps->n = (int)i + 1; /* unload sees the ones tried */
        int rc = load_one(ps, &ps->v[i], l->v[i]);
        if (rc != SC_OK)
            return rc;
    }
    return SC_OK;
}

/* Frees what a plugin left on the loop after its shutdown. */
static void host_sweep(sc_host_t *h)
{
    size_t left = 0;
    while (h->subs) {
        sc_host_unsubscribe(h->subs);
        left++;
    }
    while (h->timers) {
        sc_host_timer_stop(h->timers);
        left++;
    }
    while (h->watches) {
        sc_host_watch_stop(h->watches);
        left++;
    }
    if (left)
        sc_log(SC_LOG_DEBUG,
               "plugin %s: freed %zu subscription(s), timer(s) and watch(es) "
               "it left",
               h->name, left);
}

void sc_plugins_unload(sc_server_t *srv)
{
    struct sc_plugins *ps = srv->plugins;
    if (!ps || ps->unloaded)
        return;
    ps->unloaded = true;
    for (int i = ps->n - 1; i >= 0; i--) {
        sc_host_t *h = &ps->v[i];
        if (h->started && h->desc->shutdown)
            h->desc->shutdown(h->state);
        h->started = false;
        host_sweep(h);
    }
    /* answers that came after the threads stopped (from a shutdown, say)
     * wait in their threads' queues: they are freed with the list below */
    for (int i = 0; i < srv->nsvcs; i++) {
        struct sc_plugin_thread *pt = srv->svcs[i].plugin;
        if (!pt)
            continue;
        pthread_mutex_lock(&pt->mu);
        pt->head = pt->tail = NULL;
        pthread_mutex_unlock(&pt->mu);
    }
    /* reqs no plugin answered: nobody will */
    size_t lost = 0;
    while (ps->reqs) {
        sc_plugin_req_free(ps->reqs);
        lost++;
    }
    if (lost)
        sc_log(SC_LOG_WARN, "%zu plugin question(s) were never answered", lost);
    for (int i = 0; i < ps->n; i++) {
        /* under sanitizers the code stays mapped, so leak reports and
         * stacks can still name it */
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
        if (ps->v[i].handle)
            dlclose(ps->v[i].handle);
#endif
        free(ps->v[i].name);
    }
    ev_ref(ps->loop);
    ev_async_stop(ps->loop, &ps->subs_async);
    pthread_mutex_destroy(&ps->reqs_mu);
    free(ps->v);
    free(ps);
    srv->plugins = NULL;
}
