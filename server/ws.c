/*
 * WebSocket sessions (see ws.h): the only place a connection is allocated
 * and freed, and the protocol's requests and replies.
 */
#include "ws.h"
#include "broker.h"
#include "clock.h"
#include "codec.h"
#include "http_req.h"
#include "listen.h"
#include "log.h"
#include "plugin.h"
#include "reply.h"
#include "writer.h"
#include "wsio.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

/* What a connection keeps for the plugins' hooks (only when a loaded
 * plugin has hooks): the upgrade's strings hooks see, and the question a
 * plugin has not answered yet with the request waiting for it. */
struct sc_wsplug {
    char *peer, *origin, *cookie, *query;
    char *meta;              /* on_connect's default meta, or NULL */
    int reached;             /* plugins whose on_connect was called */
    sc_plugin_req_t *hook;   /* the question pending, or NULL */
    sc_plugin_req_t *passed; /* an answered one, while its request runs */
    sc_request_t held;       /* the request waiting for `hook` */
};

/* One WebSocket connection. The writer's fields come first: the write
 * path touches them for every event. */
typedef struct sc_wsconn {
    sc_writer_t out;   /* writer.c: everything waiting to be sent */
    sc_svc_t *svc;     /* the service thread that owns it */
    sc_sublist_t subs; /* this connection's subscriptions */
    sc_wsio_t io;      /* wsio.c: the socket and frame parser */
    int64_t last_ping_us;
    struct sc_wsconn *next, *prev; /* all connections of the thread */
    sc_conn_t info;                /* session, user, connected-at (no meta) */
    sc_claims_t claims;
    bool has_claims;
    sc_admit_ip_t *ip; /* its address's count (admit.h), given back at free */
    /* the rate limit: a token bucket of requests (--rate-limit) */
    double rl_tokens;
    int64_t rl_last_us;
    unsigned rl_refused;  /* requests refused since the last one taken */
    struct sc_wsplug *px; /* plugins' state; NULL without hooks */
    /* emits waiting for their cluster seqs (--broker), in request order
     * (at most SC_BK_INFLIGHT): their replies go out in that order; a
     * request of another kind (or a malformed one's error reply) waits
     * in bk_held (c reads nothing more) until every emit before it is
     * answered */
    struct bk_wait *bkq, *bkq_tail;
    size_t bkq_n;
    sc_request_t bk_held;
    bool bk_has_held;
    /* or, held instead of a request (bk_has_held too): the error reply of
     * a malformed one, encoded (its frame's payload) */
    char *bk_held_err;
    size_t bk_held_err_len;
    struct sc_wspres *pu; /* presence updates' state; NULL before the
                             first presence_update */
    /* the presence grace (docs/PROTOCOL.md "Presence grace") */
    int8_t resumed; /* -1: no resume asked; 0: refused; 1: the session is
                       a resumed one (its subscribes adopt held entries) */
    bool depart;    /* it leaves at once: no grace (conn_dropped) */
    /* the slow-consumer policy (--disconnect-slow) */
    int64_t slow_since_us; /* over its limits since; 0: not over */
    uint64_t slow_drops;   /* drops seen at the last check */
} sc_wsconn_t;

/* Presence updates (op presence_update) of one subscription are applied
 * at most once per SC_PRESENCE_UPDATE_US (20 per second). One that comes
 * sooner is held, replacing any update already held for that scope, and
 * applied when the interval has passed (by the connection's timer, or by
 * a later update arriving after it): a stream of cursor moves reaches the
 * others as at most 20 pushes a second, the last value always among
 * them. */
#define SC_PRESENCE_UPDATE_US 50000

/* The rate state of one scope's updates. Keyed by the scope, not the
 * subscription: the writer may destroy an ended subscription. */
struct sc_pupd {
    char *scope;
    int64_t next_us; /* when the next update may be applied */
    char *held;      /* the latest update waiting for next_us, or NULL */
};

/* A connection's presence updates: the scopes it updated and the timer
 * that applies held updates. */
struct sc_wspres {
    ev_timer timer; /* armed while an update is held */
    struct sc_wsconn *c;
    struct sc_pupd *v;
    size_t n, cap;
};

/* Requests refused in a row (the client did not slow down on `limit`
 * errors) before the connection is closed with 4429. */
#define SC_RATE_STRIKES 50

struct sc_ws_thread {
    sc_wsconn_t *conns; /* every connection of the thread */
    sc_wsio_env_t env;  /* what their transports share */
};

static sc_wsconn_t *conn_of_io(sc_wsio_t *io)
{
    return (sc_wsconn_t *)((char *)io - offsetof(sc_wsconn_t, io));
}

static sc_wsconn_t *conn_of_writer(sc_writer_t *w)
{
    return (sc_wsconn_t *)((char *)w - offsetof(sc_wsconn_t, out));
}

static const char *sid(const sc_wsconn_t *c)
{
    return c->info.session_id;
}

/* ---- plugins: the connection as hooks see it ----------------------------- */

static void conn_view(const sc_wsconn_t *c, sc_plugin_conn_t *v)
{
    *v = (sc_plugin_conn_t){
        .session_id = c->info.session_id,
        .user_id = c->info.user_id,
        .claims_json = c->has_claims ? c->claims.json : NULL,
        .peer = c->px->peer,
        .origin = c->px->origin,
        .cookie = c->px->cookie,
        .query = c->px->query,
    };
}

/* One emit waiting for its cluster seq, and its reply's id and scope. */
struct bk_wait {
    sc_broker_req_t *req; /* NULL once answered (the drain frees it) */
    char *id, *scope;
    uint64_t seq;
    struct bk_wait *next;
};

/* Emits one connection may have waiting for the cluster (each holds its
 * event, at most --max-message bytes) before it is read no more. */
#define SC_BK_INFLIGHT 256

static void bk_wait_free(struct bk_wait *w)
{
    free(w->id);
    free(w->scope);
    free(w);
}

/* Ends c's waits for emits' seqs: answers that come later are freed
 * unread. */
static void bk_free(sc_wsconn_t *c)
{
    for (struct bk_wait *w = c->bkq, *next; w; w = next) {
        next = w->next;
        if (w->req)
            w->req->ctx = NULL;
        bk_wait_free(w);
    }
    c->bkq = c->bkq_tail = NULL;
    c->bkq_n = 0;
    c->out.echo_wait = false;
    if (c->bk_has_held && !c->bk_held_err)
        sc_request_deinit(&c->bk_held);
    free(c->bk_held_err);
    c->bk_held_err = NULL;
    c->bk_has_held = false;
}

/* The connection goes: the plugins that saw it connect hear it leave, and
 * a question still pending is left to be freed when its answer comes. */
static void plug_free(sc_wsconn_t *c)
{
    struct sc_wsplug *px = c->px;
    if (!px)
        return;
    sc_plugin_conn_t v;
    conn_view(c, &v);
    sc_plugins_disconnect(c->svc->srv, px->reached, &v);
    if (px->hook)
        px->hook->conn = NULL;
    sc_request_deinit(&px->held);
    free(px->peer);
    free(px->origin);
    free(px->cookie);
    free(px->query);
    free(px->meta);
    free(px);
    c->px = NULL;
}

/* Copies what hooks see of the upgrade. Returns false without memory. */
static bool plug_init(sc_wsconn_t *c, int fd, const sc_upgrade_req_t *u)
{
    struct sc_wsplug *px = calloc(1, sizeof *px);
    if (!px)
        return false;
    c->px = px;
    char peer[64];
    sc_listen_peer(fd, peer, sizeof peer);
    px->peer = strdup(peer);
    bool ok = px->peer != NULL;
    if (u && u->origin)
        ok = ok && (px->origin = strndup(u->origin, u->origin_len)) != NULL;
    if (u && u->cookie)
        ok = ok && (px->cookie = strndup(u->cookie, u->cookie_len)) != NULL;
    if (u && u->query)
        ok = ok && (px->query = strndup(u->query, u->query_len)) != NULL;
    return ok;
}

/* ---- lifetime ------------------------------------------------------------ */

static void conn_link(sc_svc_t *svc, sc_wsconn_t *c)
{
    struct sc_ws_thread *wt = svc->ws;
    c->next = wt->conns;
    if (wt->conns)
        wt->conns->prev = c;
    wt->conns = c;
    atomic_fetch_add(&svc->nconns, 1);
}

static void conn_unlink(sc_svc_t *svc, sc_wsconn_t *c)
{
    struct sc_ws_thread *wt = svc->ws;
    if (c->prev)
        c->prev->next = c->next;
    else
        wt->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    atomic_fetch_sub(&svc->nconns, 1);
}

/* ---- presence updates: the rate state ------------------------------------ */

static void pupd_clear(struct sc_pupd *e)
{
    free(e->scope);
    free(e->held);
}

/* Stops c's timer and frees its held updates (at the end of c). */
static void pres_free(sc_wsconn_t *c)
{
    struct sc_wspres *pu = c->pu;
    if (!pu)
        return;
    ev_timer_stop(c->svc->loop, &pu->timer);
    for (size_t i = 0; i < pu->n; i++)
        pupd_clear(&pu->v[i]);
    free(pu->v);
    free(pu);
    c->pu = NULL;
}

/* The rate state of `scope`, or NULL. */
static struct sc_pupd *pres_find(const sc_wsconn_t *c, const char *scope)
{
    for (size_t i = 0; c->pu && i < c->pu->n; i++)
        if (strcmp(c->pu->v[i].scope, scope) == 0)
            return &c->pu->v[i];
    return NULL;
}

/* Forgets the rate state of `scope` (its subscription ended): an update
 * still held is dropped. */
static void pres_forget(sc_wsconn_t *c, const char *scope)
{
    struct sc_pupd *e = pres_find(c, scope);
    if (!e)
        return;
    pupd_clear(e);
    *e = c->pu->v[--c->pu->n];
}

/* Whether c dropped (its presence is held for --presence-grace, see
 * docs/PROTOCOL.md "Presence grace") rather than left: it dropped when
 * its socket ended without a closing handshake (gone, reset, a failed
 * write), when the client's close frame had a code other than 1000, or
 * when the heartbeat timed out (4408). It left when the client closed
 * with 1000 (or a close frame without a code), when the server closed it
 * for a reason of its own (every other close code: token expired, rate,
 * protocol errors, replies not read, slow consumer, plugins), and always
 * while the server drains. */
static bool conn_dropped(const sc_wsconn_t *c)
{
    const sc_server_t *srv = c->svc->srv;
    if (srv->cfg->presence_grace <= 0 || c->depart ||
        atomic_load(&srv->draining))
        return false;
    return c->out.close_code == 0 || c->out.close_code == SC_CLOSE_HEARTBEAT;
}

/* Frees c: its subscriptions first (once they are gone no emitter can
 * wake it, so the pending list cannot get it back; a dropped connection's
 * presence is held by the bus), then what waits to be sent, the socket,
 * the session. */
static void conn_destroy(sc_wsconn_t *c)
{
    sc_svc_t *svc = c->svc;
    bool dropped = conn_dropped(c);
    sc_log(SC_LOG_DEBUG, "session %s %s", sid(c),
           dropped && c->subs.n ? "dropped (presence held)" : "disconnected");
    plug_free(c);
    pres_free(c);
    bk_free(c);
    for (size_t i = 0; i < c->subs.n; i++) {
        if (dropped)
            sc_sub_destroy_hold(c->subs.v[i]);
        else
            sc_sub_destroy(c->subs.v[i]);
    }
    free(c->subs.v);
    sc_writer_deinit(svc, &c->out);
    sc_wsio_close(&c->io);
    sc_admit_release(svc->srv->admit, c->ip);
    conn_unlink(svc, c);
    if (c->has_claims)
        sc_claims_deinit(&c->claims);
    sc_conn_deinit(&c->info);
    free(c);
}

/* The core's wake for c's queues. Thread: any (an emitter). */
static void conn_wake(void *ud)
{
    sc_wsconn_t *c = ud;
    sc_writer_wake(c->svc, &c->out);
}

/* ---- replies ------------------------------------------------------------- */

static void reply(sc_wsconn_t *c)
{
    sc_writer_reply(c->svc, &c->out, sid(c));
}

static void reply_error(sc_wsconn_t *c, const char *id_json, enum sc_errc code,
                        const char *message)
{
    sc_stats_error(&c->svc->stats, code);
    sc_proto_enc_error(&c->svc->scratch, id_json, sc_errc_name(code), message);
    reply(c);
}

/* ---- plugins: asking the hooks --------------------------------------------
 */

static const int kind_hook[] = {
    [SC_PLUGIN_REQ_CONNECT] = SC_HOOK_CONNECT,
    [SC_PLUGIN_REQ_SUBSCRIBE] = SC_HOOK_SUBSCRIBE,
    [SC_PLUGIN_REQ_PRESENCE] = SC_HOOK_SUBSCRIBE,
    [SC_PLUGIN_REQ_EMIT] = SC_HOOK_EMIT,
};

/* Asks the hooks about `req` (NULL for a connect), from plugin r->at on.
 * PENDING: c waits for the answer (c->px->hook = r) and reads nothing. */
static int ask(sc_wsconn_t *c, sc_plugin_req_t *r, const sc_request_t *req)
{
    sc_plugin_conn_t v;
    conn_view(c, &v);
    sc_plugin_emit_t e = {0};
    if (req && req->op == SC_OP_EMIT)
        e = (sc_plugin_emit_t){.scope = req->scope,
                               .paths = (const char *const *)req->paths,
                               .npaths = req->npaths,
                               .data_json =
                                   req->has_data ? req->data_json : NULL,
                               .audience = (const char *const *)req->audience,
                               .naudience = req->naudience,
                               .has_audience = req->has_audience};
    int verdict =
        sc_plugins_ask(c->svc->srv, r, &v, req ? req->scope : NULL, &e);
    if (verdict == SC_PLUGIN_PENDING) {
        c->px->hook = r;
        sc_wsio_pause(&c->io);
    }
    return verdict;
}

/* A denial's message: the plugin's reason, or which plugin denied. */
static void deny_reason(const sc_wsconn_t *c, int at, const char *reason,
                        char *out, size_t len)
{
    if (reason && *reason)
        snprintf(out, len, "%s", reason);
    else
        snprintf(out, len, "denied by plugin %s",
                 sc_plugins_name(c->svc->srv, at));
}

/* The plugins' word on a request of `kind` that passed the server's own
 * rules. Returns true when it may run now; *rout is the answered question
 * (for an emit's new data), given back with gate_done. False: it was
 * denied (answered here), or it waits for a plugin's answer (moved into
 * c->px->held; *req is left empty). */
static bool gate(sc_wsconn_t *c, sc_request_t *req, int kind,
                 sc_plugin_req_t **rout)
{
    *rout = NULL;
    if (!(sc_plugins_hooks(c->svc->srv) & (unsigned)kind_hook[kind]) || !c->px)
        return true;
    if (c->px->passed) { /* the answer came: the request runs again */
        *rout = c->px->passed;
        return true;
    }
    sc_plugin_req_t *r = sc_plugin_req_new(c->svc, kind, c);
    if (!r) {
        reply_error(c, req->id_json, SC_ERRC_INTERNAL, "out of memory");
        return false;
    }
    switch (ask(c, r, req)) {
    case SC_PLUGIN_ALLOW:
        *rout = r;
        return true;
    case SC_PLUGIN_PENDING:
        c->px->held = *req; /* it runs when the answer comes */
        memset(req, 0, sizeof *req);
        return false;
    default: {
        char why[SC_PLUGIN_REASON_MAX + 64];
        deny_reason(c, r->at, r->reason, why, sizeof why);
        reply_error(c, req->id_json, SC_ERRC_FORBIDDEN, why);
        sc_plugin_req_free(r);
        return false;
    }
    }
}

/* Gives back what gate handed out (the host frees a resumed question). */
static void gate_done(sc_wsconn_t *c, sc_plugin_req_t *r)
{
    if (r && r != c->px->passed)
        sc_plugin_req_free(r);
}

/* ---- subscriptions ------------------------------------------------------- */

static sc_sub_t *find_sub(sc_wsconn_t *c, const char *scope, size_t *index)
{
    for (size_t i = 0; i < c->subs.n; i++)
        if (strcmp(sc_sub_scope(c->subs.v[i]), scope) == 0) {
            if (index)
                *index = i;
            return c->subs.v[i];
        }
    return NULL;
}

static void drop_sub_at(sc_wsconn_t *c, size_t i)
{
    sc_sub_t *sub = c->subs.v[i];
    sc_writer_forget_sub(&c->out, sub);
    memmove(&c->subs.v[i], &c->subs.v[i + 1],
            (c->subs.n - i - 1) * sizeof *c->subs.v);
    c->subs.n--;
    sc_sub_destroy(sub);
}

/* What an anonymous connection may use: the --anonymous-scopes patterns;
 * when unset, nothing with a JWT secret (everything in demo mode, where
 * anyone gets a token anyway) and everything without one. */
static bool anonymous_allowed(const sc_wsconn_t *c, const char *scope)
{
    const sc_server_t *srv = c->svc->srv;
    if (srv->cfg->anonymous_scopes)
        return sc_auth_patterns_match(srv->cfg->anonymous_scopes, scope);
    return !srv->jwt_secret || !*srv->jwt_secret || srv->cfg->demo;
}

static bool scope_allowed(sc_wsconn_t *c, const char *scope)
{
    return c->has_claims ? sc_auth_scope_allowed(&c->claims, scope)
                         : anonymous_allowed(c, scope);
}

/* The subscription's history fields for its subscribed reply. */
typedef struct sub_answer {
    uint64_t seq;
    uint64_t epoch;
    int recovered; /* 1, 0; -1: the subscribe had no since */
} sub_answer_t;

/* A presence or (with `sa`) a subscribed reply. */
static void reply_presence_list(sc_wsconn_t *c, const sc_request_t *req,
                                const sub_answer_t *sa)
{
    bool subscribed = sa != NULL;
    sc_svc_t *svc = c->svc;
    sc_conn_t *list = NULL;
    size_t n = 0;
    bool blind = subscribed && req->no_presence; /* answers "presence":[] */
    if (!blind &&
        sc_bus_presence(svc->srv->bus, req->scope, &list, &n) != SC_OK) {
        reply_error(c, req->id_json, SC_ERRC_INTERNAL, "out of memory");
        return;
    }
    /* at most --max-presence entries: a scope full of large metas must not
     * make a reply no client can be sent */
    size_t shown = n < (size_t)svc->srv->cfg->max_presence
                       ? n
                       : (size_t)svc->srv->cfg->max_presence;
    if (subscribed)
        sc_proto_enc_subscribed_epoch(&svc->scratch, req->id_json, req->scope,
                                      sa->seq, sa->epoch, sa->recovered, list,
                                      shown, n);
    else
        sc_proto_enc_presence(&svc->scratch, req->id_json, req->scope, list,
                              shown, n);
    sc_presence_free(list, n);
    reply(c);
}

static bool subs_reserve(sc_sublist_t *s)
{
    if (s->n < s->cap)
        return true;
    size_t cap = s->cap ? s->cap * 2 : 4;
    sc_sub_t **v = realloc(s->v, cap * sizeof *v);
    if (!v)
        return false;
    s->v = v;
    s->cap = cap;
    return true;
}

/* The meta `sub` holds against the connection's budget: an update held
 * for it (see SC_PRESENCE_UPDATE_US), else its conn's. */
static size_t sub_meta_len(const sc_wsconn_t *c, const sc_sub_t *sub)
{
    const struct sc_pupd *e = c->pu ? pres_find(c, sc_sub_scope(sub)) : NULL;
    return e && e->held ? strlen(e->held) : sc_sub_conn(sub)->meta_len;
}

/* The meta budgets: --max-meta per subscription, --max-meta-total over a
 * connection's subscriptions. Answers `limit` and returns false when a
 * new subscription's meta (`len` bytes), or the new meta of `replacing`
 * (NULL: a new subscription), is over either. */
static bool meta_fits(sc_wsconn_t *c, const sc_request_t *req, size_t len,
                      const sc_sub_t *replacing)
{
    const sc_config_t *cfg = c->svc->srv->cfg;
    char msg[128];
    if (len > cfg->max_meta) {
        snprintf(msg, sizeof msg, "meta: %zu bytes, over the limit of %zu", len,
                 cfg->max_meta);
        reply_error(c, req->id_json, SC_ERRC_LIMIT, msg);
        return false;
    }
    size_t total = len;
    for (size_t i = 0; i < c->subs.n; i++)
        if (c->subs.v[i] != replacing)
            total += sub_meta_len(c, c->subs.v[i]);
    if (total > cfg->max_meta_total) {
        snprintf(msg, sizeof msg,
                 "meta: this connection's subscriptions would hold %zu "
                 "bytes, over the limit of %zu",
                 total, cfg->max_meta_total);
        reply_error(c, req->id_json, SC_ERRC_LIMIT, msg);
        return false;
    }
    return true;
}

static void op_subscribe(sc_wsconn_t *c, sc_request_t *req)
{
    sc_svc_t *svc = c->svc;
    sc_server_t *srv = svc->srv;
    if (!scope_allowed(c, req->scope)) {
        reply_error(c, req->id_json, SC_ERRC_FORBIDDEN,
                    "scope: not allowed by the token");
        return;
    }
    sc_since_t since = {.seq = req->since_seq,
                        .epoch = req->since_epoch_ok ? req->since_epoch : 0,
                        .has_epoch = req->since_epoch_given};
    sc_sub_t *sub = find_sub(c, req->scope, NULL);
    if (sub) { /* again: unchanged, or moved back to `since` */
        sub_answer_t sa = {.epoch = sc_sub_epoch(sub), .recovered = -1};
        bool rec = false;
        if (!req->has_since) {
            sa.seq = sc_bus_scope_seq(srv->bus, req->scope);
        } else if (sc_sub_recover(sub, &since, &rec, &sa.seq) == SC_ENOMEM) {
            reply_error(c, req->id_json, SC_ERRC_INTERNAL, "out of memory");
            return;
        } else {
            sa.recovered = rec;
            if (rec) /* an event taken but not sent: it is in the replay */
                sc_writer_forget_sub(&c->out, sub);
        }
        reply_presence_list(c, req, &sa);
        return;
    }
    if (atomic_load(&srv->draining)) {
        sc_proto_enc_closed(&svc->scratch, req->scope, SC_CLOSE_SHUTDOWN);
        reply(c);
        return;
    }
    if (c->subs.n >= (size_t)srv->cfg->max_subscriptions) {
        reply_error(c, req->id_json, SC_ERRC_LIMIT,
                    "too many subscriptions on this connection");
        return;
    }
    const char *meta = req->meta_json
                           ? req->meta_json
                           : (c->px ? c->px->meta : NULL); /* a plugin's */
    size_t meta_len = meta ? strlen(meta) : 0;
    if (!meta_fits(c, req, meta_len, NULL))
        return;
    sc_plugin_req_t *r;
    if (!gate(c, req, SC_PLUGIN_REQ_SUBSCRIBE, &r))
        return;
    gate_done(c, r);
    if (!subs_reserve(&c->subs)) {
        reply_error(c, req->id_json, SC_ERRC_INTERNAL, "out of memory");
        return;
    }
    sc_conn_t info = c->info; /* borrowed fields; the bus copies them */
    info.meta = (char *)meta;
    info.meta_len = meta_len;
    sc_sub_opts_t opts = {.conn = &info,
                          .echo = req->echo,
                          .quiet = req->no_presence,
                          .hidden = req->no_presence,
                          .adopt = c->resumed == 1,
                          .since = req->has_since ? &since : NULL};
    sub_answer_t sa = {.recovered = -1};
    if (sc_bus_subscribe(srv->bus, req->scope, c->out.owner, &opts, &sub,
                         &sa.seq) != SC_OK) {
        reply_error(c, req->id_json, SC_ERRC_INTERNAL, "out of memory");
        return;
    }
    c->subs.v[c->subs.n++] = sub;
    sa.epoch = sc_sub_epoch(sub);
    if (req->has_since)
        sa.recovered = sc_sub_recovered(sub);
    sc_log(SC_LOG_DEBUG, "session %s subscribed to %s", sid(c), req->scope);
    reply_presence_list(c, req, &sa);
}

static void op_unsubscribe(sc_wsconn_t *c, const sc_request_t *req)
{
    size_t i;
    if (find_sub(c, req->scope, &i))
        drop_sub_at(c, i);
    pres_forget(c, req->scope);
    sc_proto_enc_unsubscribed(&c->svc->scratch, req->id_json, req->scope);
    reply(c);
}

static void maybe_resume(sc_wsconn_t *c);

static void dispatch(sc_wsconn_t *c, sc_request_t *req);

/* The cluster's answer to one of c's emits (sc_broker_done_fn): the
 * replies of the emits answered at the head of the queue go out, in
 * order; once none waits, a held request runs and c reads again. */
static void emit_answered(sc_svc_t *svc, sc_broker_req_t *req)
{
    sc_wsconn_t *c = req->ctx;
    for (struct bk_wait *w = c->bkq; w; w = w->next)
        if (w->req == req) {
            w->seq = req->seqs[0];
            w->req = NULL; /* the drain frees req */
            break;
        }
    while (c->bkq && !c->bkq->req) {
        struct bk_wait *w = c->bkq;
        c->bkq = w->next;
        if (!c->bkq)
            c->bkq_tail = NULL;
        c->bkq_n--;
        sc_proto_enc_emitted(&svc->scratch, w->id, w->scope, w->seq);
        reply(c);
        bk_wait_free(w);
    }
    c->out.echo_wait = c->bkq != NULL;
    if (!c->bkq && c->bk_has_held) {
        c->bk_has_held = false;
        if (c->bk_held_err) { /* a malformed request's error */
            sc_buf_put(&svc->scratch, c->bk_held_err, c->bk_held_err_len);
            free(c->bk_held_err);
            c->bk_held_err = NULL;
            reply(c);
        } else {
            dispatch(c, &c->bk_held);
            sc_request_deinit(&c->bk_held); /* empty if a plugin has it */
        }
    }
    maybe_resume(c);
}

/* Hands e to the broker; its reply waits in c's queue. */
static int emit_clustered(sc_wsconn_t *c, sc_broker_t *bk, const sc_emit_t *e,
                          const sc_request_t *req)
{
    struct bk_wait *w = calloc(1, sizeof *w);
    sc_broker_req_t *br =
        w ? sc_broker_req_new(bk, c->svc, 1, emit_answered, c) : NULL;
    if (!br || sc_broker_req_set(bk, br, 0, e) != SC_OK ||
        !(w->scope = strdup(req->scope)) ||
        (req->id_json && !(w->id = strdup(req->id_json)))) {
        sc_broker_req_free(br);
        if (w)
            bk_wait_free(w);
        return SC_ENOMEM;
    }
    w->req = br;
    if (c->bkq_tail)
        c->bkq_tail->next = w;
    else
        c->bkq = w;
    c->bkq_tail = w;
    c->bkq_n++;
    c->out.echo_wait = true;
    sc_broker_submit(bk, br);
    return SC_OK;
}

static void op_emit(sc_wsconn_t *c, sc_request_t *req)
{
    sc_svc_t *svc = c->svc;
    bool allowed = c->has_claims ? sc_auth_emit_allowed(&c->claims, req->scope)
                                 : svc->srv->cfg->client_emit &&
                                       anonymous_allowed(c, req->scope);
    if (!allowed) {
        reply_error(c, req->id_json, SC_ERRC_FORBIDDEN,
                    "emit: not allowed for this connection");
        return;
    }
    sc_plugin_req_t *r;
    if (!gate(c, req, SC_PLUGIN_REQ_EMIT, &r))
        return;
    sc_emit_t e;
    sc_request_to_emit(req, sid(c), &e);
    if (r && r->data_set) { /* a plugin changed the data */
        e.payload = r->data;
        e.payload_len = r->data ? strlen(r->data) : 0;
        e.has_payload = r->data != NULL;
    }
    sc_broker_t *bk = svc->srv->broker;
    if (bk && sc_broker_linked(bk)) { /* the cluster gives the seq */
        int brc = emit_clustered(c, bk, &e, req);
        gate_done(c, r);
        if (brc != SC_OK)
            reply_error(c, req->id_json, SC_ERRC_INTERNAL, "out of memory");
        return;
    }
    uint64_t seq = 0;
    int rc = sc_bus_emit(svc->srv->bus, &e, &seq);
    gate_done(c, r);
    if (rc != SC_OK) {
        reply_error(c, req->id_json, SC_ERRC_INTERNAL, "out of memory");
        return;
    }
    sc_proto_enc_emitted(&svc->scratch, req->id_json, req->scope, seq);
    reply(c);
}

/* Verifies a token with the server's secret and rules (--require-exp).
 * Returns true with `claims` filled, or false with the reason in `why`. */
static bool verify_token(const sc_server_t *srv, const char *token,
                         sc_claims_t *claims, char *why, size_t whylen)
{
    if (sc_auth_verify(token, srv->jwt_secret, time(NULL), claims, why,
                       whylen) != SC_OK)
        return false;
    if (srv->cfg->require_exp && !claims->has_exp) {
        sc_claims_deinit(claims);
        snprintf(why, whylen, "token has no exp (the server requires one)");
        return false;
    }
    return true;
}

/* A new token for the same user: its rights and expiry replace the old
 * ones from now on (subscriptions made stay). */
static void op_refresh(sc_wsconn_t *c, const sc_request_t *req)
{
    const sc_server_t *srv = c->svc->srv;
    char why[160];
    sc_claims_t claims;
    if (!srv->jwt_secret || !*srv->jwt_secret || !c->has_claims) {
        reply_error(c, req->id_json, SC_ERRC_FORBIDDEN,
                    "refresh: this connection has no token to refresh");
        return;
    }
    if (!verify_token(srv, req->token, &claims, why, sizeof why)) {
        sc_log_limited(&c->svc->client_log, sc_now_us(), SC_LOG_INFO,
                       "session %s: refresh refused: %s", sid(c), why);
        reply_error(c, req->id_json, SC_ERRC_UNAUTHORIZED, why);
        return;
    }
    if (strcmp(claims.sub, c->claims.sub) != 0) {
        sc_claims_deinit(&claims);
        reply_error(c, req->id_json, SC_ERRC_FORBIDDEN,
                    "refresh: the token is for another user");
        return;
    }
    sc_claims_deinit(&c->claims);
    c->claims = claims;
    sc_log(SC_LOG_DEBUG, "session %s: token refreshed", sid(c));
    sc_proto_enc_refreshed(&c->svc->scratch, req->id_json, claims.has_exp,
                           claims.exp);
    reply(c);
}

/* The rate limit (--rate-limit N): a bucket of 2N requests refilled at N
 * per second. A request over it is answered `limit` (with its id); one
 * that keeps coming after SC_RATE_STRIKES refusals in a row closes the
 * connection with 4429. Returns whether the request may run. */
static bool rate_ok(sc_wsconn_t *c, const char *id_json)
{
    int rate = c->svc->srv->cfg->rate_limit;
    if (rate <= 0)
        return true;
    int64_t now = sc_now_us();
    double burst = 2.0 * rate;
    if (c->rl_last_us == 0)
        c->rl_tokens = burst; /* a new connection starts full */
    else
        c->rl_tokens += (double)(now - c->rl_last_us) * rate / 1e6;
    if (c->rl_tokens > burst)
        c->rl_tokens = burst;
    c->rl_last_us = now;
    if (c->rl_tokens >= 1.0) {
        c->rl_tokens -= 1.0;
        c->rl_refused = 0;
        return true;
    }
    if (++c->rl_refused >= SC_RATE_STRIKES) {
        sc_log_limited(&c->svc->client_log, now, SC_LOG_INFO,
                       "session %s: closed for going on over the rate limit "
                       "(4429)",
                       sid(c));
        sc_writer_close_after(c->svc, &c->out, SC_CLOSE_RATE,
                              now + SC_CLOSE_WAIT_US);
        return false;
    }
    char msg[96];
    snprintf(msg, sizeof msg, "rate limit: %d requests per second", rate);
    reply_error(c, id_json, SC_ERRC_LIMIT, msg);
    return false;
}

static void op_presence(sc_wsconn_t *c, sc_request_t *req)
{
    if (!scope_allowed(c, req->scope)) {
        reply_error(c, req->id_json, SC_ERRC_FORBIDDEN,
                    "scope: not allowed by the token");
        return;
    }
    sc_plugin_req_t *r;
    if (!gate(c, req, SC_PLUGIN_REQ_PRESENCE, &r))
        return;
    gate_done(c, r);
    reply_presence_list(c, req, NULL);
}

/* ---- presence updates -----------------------------------------------------
 */

/* Applies `meta` to c's subscription of `scope` (the bus tells the
 * others) and starts the scope's next interval at `now`. A subscription
 * the bus has just ended changes nothing (its `closed` is on its way). */
static void pres_apply(sc_wsconn_t *c, struct sc_pupd *e, sc_sub_t *sub,
                       const char *meta, int64_t now)
{
    e->next_us = now + SC_PRESENCE_UPDATE_US;
    int rc = sc_bus_presence_update(c->svc->srv->bus, sub, meta, strlen(meta));
    if (rc == SC_ENOMEM)
        sc_log(SC_LOG_ERROR,
               "session %s: out of memory: presence update of %s lost", sid(c),
               e->scope);
}

/* Arms c's timer for the earliest held update (stops it when none). */
static void pres_arm(sc_wsconn_t *c, int64_t now)
{
    struct sc_wspres *pu = c->pu;
    int64_t at = INT64_MAX;
    for (size_t i = 0; i < pu->n; i++)
        if (pu->v[i].held && pu->v[i].next_us < at)
            at = pu->v[i].next_us;
    ev_timer_stop(c->svc->loop, &pu->timer);
    if (at == INT64_MAX)
        return;
    ev_timer_set(&pu->timer, at > now ? (double)(at - now) / 1e6 : 0., 0.);
    ev_timer_start(c->svc->loop, &pu->timer);
}

/* c's timer: applies the held updates whose interval has passed. */
static void pres_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sc_wspres *pu =
        (struct sc_wspres *)((char *)w - offsetof(struct sc_wspres, timer));
    sc_wsconn_t *c = pu->c;
    int64_t now = sc_now_us();
    (void)loop;
    (void)revents;
    for (size_t i = 0; i < pu->n;) {
        struct sc_pupd *e = &pu->v[i];
        sc_sub_t *sub = find_sub(c, e->scope, NULL);
        if (!sub) { /* ended (closed by the bus): forget it */
            pupd_clear(e);
            *e = pu->v[--pu->n];
            continue;
        }
        if (e->held && e->next_us <= now) {
            pres_apply(c, e, sub, e->held, now);
            free(e->held);
            e->held = NULL;
        }
        i++;
    }
    pres_arm(c, now);
}

/* The rate state of `scope`, created when missing (and c's state with
 * it); NULL without memory. Scopes whose subscription ended are dropped
 * first, so there is at most one per subscription (plus this one). */
static struct sc_pupd *pres_get(sc_wsconn_t *c, const char *scope)
{
    struct sc_pupd *e = pres_find(c, scope);
    if (e)
        return e;
    if (!c->pu) {
        if (!(c->pu = calloc(1, sizeof *c->pu)))
            return NULL;
        c->pu->c = c;
        ev_timer_init(&c->pu->timer, pres_timer, 0., 0.);
    }
    struct sc_wspres *pu = c->pu;
    for (size_t i = 0; i < pu->n;) {
        if (!find_sub(c, pu->v[i].scope, NULL)) {
            pupd_clear(&pu->v[i]);
            pu->v[i] = pu->v[--pu->n];
        } else {
            i++;
        }
    }
    if (pu->n == pu->cap) {
        size_t cap = pu->cap ? pu->cap * 2 : 4;
        struct sc_pupd *v = realloc(pu->v, cap * sizeof *v);
        if (!v)
            return NULL;
        pu->v = v;
        pu->cap = cap;
    }
    char *name = strdup(scope);
    if (!name)
        return NULL;
    e = &pu->v[pu->n++];
    *e = (struct sc_pupd){.scope = name};
    return e;
}

/* presence_update: a new meta for c's subscription of the scope, shown
 * to its other members as one `update` push, at most 20 a second (see
 * SC_PRESENCE_UPDATE_US: one sooner is held and sent later, the latest
 * replacing the one held). Not subscribed, or subscribed with "presence":
 * false: not_found. The meta budgets as for subscribe: limit. */
static void op_presence_update(sc_wsconn_t *c, const sc_request_t *req)
{
    if (!scope_allowed(c, req->scope)) {
        reply_error(c, req->id_json, SC_ERRC_FORBIDDEN,
                    "scope: not allowed by the token");
        return;
    }
    sc_sub_t *sub = find_sub(c, req->scope, NULL);
    if (!sub || sc_sub_close_reason(sub) != SC_CLOSE_NONE) {
        reply_error(c, req->id_json, SC_ERRC_NOT_FOUND,
                    "presence_update: not subscribed to this scope");
        return;
    }
    if (sc_sub_hidden(sub)) {
        reply_error(c, req->id_json, SC_ERRC_NOT_FOUND,
                    "presence_update: this subscription has no presence "
                    "(\"presence\": false)");
        return;
    }
    size_t len = strlen(req->meta_json);
    if (!meta_fits(c, req, len, sub))
        return;
    struct sc_pupd *e = pres_get(c, req->scope);
    if (!e) {
        reply_error(c, req->id_json, SC_ERRC_INTERNAL, "out of memory");
        return;
    }
    int64_t now = sc_now_us();
    if (now >= e->next_us) { /* a held one is superseded by this one */
        free(e->held);
        e->held = NULL;
        pres_apply(c, e, sub, req->meta_json, now);
    } else {
        char *meta = strdup(req->meta_json);
        if (!meta) {
            reply_error(c, req->id_json, SC_ERRC_INTERNAL, "out of memory");
            return;
        }
        bool was_held = e->held != NULL;
        free(e->held);
        e->held = meta;
        if (!was_held)
            pres_arm(c, now);
    }
    sc_proto_enc_presence_updated(&c->svc->scratch, req->id_json, req->scope);
    reply(c);
}

/* Runs a decoded request (it may be moved into c->px->held to wait for a
 * plugin's answer). */
static void dispatch(sc_wsconn_t *c, sc_request_t *req)
{
    switch (req->op) {
    case SC_OP_SUBSCRIBE:
        op_subscribe(c, req);
        break;
    case SC_OP_UNSUBSCRIBE:
        op_unsubscribe(c, req);
        break;
    case SC_OP_EMIT:
        op_emit(c, req);
        break;
    case SC_OP_PRESENCE:
        op_presence(c, req);
        break;
    case SC_OP_PING:
        sc_proto_enc_pong(&c->svc->scratch, req->id_json);
        reply(c);
        break;
    case SC_OP_REFRESH:
        op_refresh(c, req);
        break;
    case SC_OP_PRESENCE_UPDATE:
        op_presence_update(c, req);
        break;
    }
}

/* Holds the error reply just encoded (the scratch buffer) until the
 * emits before it are answered. False (reply now) when out of memory. */
static bool hold_error(sc_wsconn_t *c)
{
    sc_buf_t *s = &c->svc->scratch;
    size_t len = sc_buf_len(s);
    char *copy = s->err == SC_OK ? malloc(len ? len : 1) : NULL;
    if (!copy)
        return false;
    memcpy(copy, sc_buf_str(s), len);
    sc_buf_reset(s);
    c->bk_held_err = copy;
    c->bk_held_err_len = len;
    c->bk_has_held = true;
    return true;
}

/* One whole, valid UTF-8 text message from the client. */
static void on_request(sc_wsconn_t *c, const char *msg, size_t len)
{
    if (sc_writer_closing(&c->out))
        return; /* closing: further requests are ignored */
    sc_request_t req;
    sc_proto_err_t err;
    int rc = sc_proto_decode(msg, len, &req, &err);
    /* malformed requests count too */
    if (!rate_ok(c, rc == SC_OK ? req.id_json : NULL)) {
        if (rc == SC_OK)
            sc_request_deinit(&req);
        else
            sc_proto_err_deinit(&err);
        return;
    }
    if (rc != SC_OK) {
        sc_stats_error(&c->svc->stats, rc == SC_ENOMEM ? SC_ERRC_INTERNAL
                                                       : SC_ERRC_BAD_REQUEST);
        sc_proto_enc_decode_error(&c->svc->scratch, &err);
        sc_proto_err_deinit(&err);
        if (c->bkq && hold_error(c))
            return; /* its reply comes after theirs; request_done pauses */
        reply(c);
        return;
    }
    if (c->bkq && req.op != SC_OP_EMIT) { /* its reply comes after theirs */
        c->bk_held = req;
        c->bk_has_held = true;
        return; /* request_done pauses c */
    }
    dispatch(c, &req);
    sc_request_deinit(&req); /* empty when it waits for a plugin */
}

/* ---- the transport's callbacks ------------------------------------------- */

/* After a request: stop reading while its replies pile up (a client that
 * sends faster than it reads is slowed, not closed). */
static int request_done(sc_wsconn_t *c)
{
    if ((c->px && c->px->hook) || c->bk_has_held || c->bkq_n >= SC_BK_INFLIGHT)
        return SC_WSIO_PAUSE; /* later requests wait for a plugin's answer
                                 or emits' seqs */
    return sc_writer_ctl_backlog(&c->out) > SC_CTL_PAUSE ? SC_WSIO_PAUSE : 0;
}

/* After a write: read again once the replies are down. */
static void maybe_resume(sc_wsconn_t *c)
{
    if (c->io.paused && !(c->px && c->px->hook) && !c->bk_has_held &&
        c->bkq_n < SC_BK_INFLIGHT &&
        sc_writer_ctl_backlog(&c->out) <= SC_CTL_RESUME)
        sc_wsio_resume(&c->io);
}

static int io_msg(sc_wsio_t *io, const sc_ws_msg_t *m)
{
    sc_wsconn_t *c = conn_of_io(io);
    switch (m->op) {
    case SC_WS_OP_TEXT:
        on_request(c, (const char *)m->data, m->len);
        return request_done(c);
    case SC_WS_OP_PING: { /* answer with the same payload, after replies */
        uint8_t f[SC_WS_MAX_CONTROL_FRAME];
        size_t n = sc_ws_control_frame(f, SC_WS_OP_PONG, m->data, m->len);
        sc_writer_frame(c->svc, &c->out, f, n, sid(c));
        return request_done(c);
    }
    case SC_WS_OP_CLOSE: /* answer with its code, then close */
        sc_log(SC_LOG_DEBUG, "session %s: client closed (%u)", sid(c),
               m->close_code);
        /* 1000 is a goodbye; any other code (1001: a page reload or
         * navigation) a drop that keeps its presence for the grace */
        if (m->close_code == SC_CLOSE_NORMAL)
            c->depart = true;
        return sc_writer_close_now(&c->out, io, m->close_code, "");
    default:
        return 0; /* a pong: the transport noted the sign of life */
    }
}

static int io_fail(sc_wsio_t *io, unsigned code, const char *reason)
{
    conn_of_io(io)->depart = true; /* it broke the protocol: no grace */
    return sc_writer_close_now(&conn_of_io(io)->out, io, code, reason);
}

static int io_writable(sc_wsio_t *io)
{
    sc_wsconn_t *c = conn_of_io(io);
    /* the cluster's answers before packing (as sc_ws_flush does): an
     * `emitted` goes before the echo of its event */
    sc_broker_drain(c->svc);
    if (sc_writer_on_writable(c->svc, &c->out, io, &c->subs, sid(c)) < 0)
        return -1;
    maybe_resume(c);
    return 0;
}

static void io_gone(sc_wsio_t *io)
{
    conn_destroy(conn_of_io(io));
}

static const sc_wsio_cbs_t io_cbs = {
    .on_msg = io_msg,
    .on_fail = io_fail,
    .on_writable = io_writable,
    .on_gone = io_gone,
};

/* ---- opening ------------------------------------------------------------- */

/* A session id: 16 hex digits from the CSPRNG. Returns false if it has
 * none to give. */
static bool session_id(char out[17])
{
    unsigned char rnd[8];
    static const char hex[] = "0123456789abcdef";
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return false;
    for (int i = 0; i < 8; i++) {
        out[2 * i] = hex[rnd[i] >> 4];
        out[2 * i + 1] = hex[rnd[i] & 15];
    }
    out[16] = '\0';
    return true;
}

/* ---- resuming a session (the presence grace) ----------------------------- */

/* Hex digits of a resume token: 128 bits. */
#define SC_RESUME_TOKEN_LEN 32

/* The resume token of `session` for the token's user `sub` (NULL:
 * anonymous): the first 128 bits of HMAC-SHA256 under the server's
 * per-run key over the session and the user, in hex. Only the server can
 * make one, it is good for that session and user only, and a restart
 * voids every one. Returns false without memory. */
static bool resume_token(const sc_server_t *srv, const char *session,
                         const char *sub, char out[SC_RESUME_TOKEN_LEN + 1])
{
    /* "resume" NUL session NUL ("u" sub | "a"): unambiguous */
    size_t sl = strlen(session), ul = sub ? strlen(sub) : 0;
    size_t n = 7 + sl + 1 + 1 + ul;
    unsigned char *msg = malloc(n);
    if (!msg)
        return false;
    memcpy(msg, "resume", 7);
    memcpy(msg + 7, session, sl + 1);
    msg[7 + sl + 1] = sub ? 'u' : 'a';
    if (sub)
        memcpy(msg + 7 + sl + 2, sub, ul);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    bool ok = HMAC(EVP_sha256(), srv->resume_key, (int)strlen(srv->resume_key),
                   msg, n, md, &mdlen) != NULL &&
              mdlen >= SC_RESUME_TOKEN_LEN / 2;
    free(msg);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; ok && i < SC_RESUME_TOKEN_LEN / 2; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[SC_RESUME_TOKEN_LEN] = '\0';
    return ok;
}

/* The session a connection asks to resume (`?resume=SESSION&resume_token=
 * T` in the upgrade's query), when its token checks out for the user `sub`
 * (the JWT's sub; NULL: anonymous): copied into `out` (17 bytes), and
 * c->resumed says whether it was (-1: nothing asked, or the grace is
 * off). The tokens are compared in constant time. */
static bool resume_asked(sc_wsconn_t *c, const sc_upgrade_req_t *u,
                         const char *sub, char out[17])
{
    char session[64], token[64], want[SC_RESUME_TOKEN_LEN + 1];
    c->resumed = -1;
    if (!u || !u->query || c->svc->srv->cfg->presence_grace <= 0)
        return false;
    long sl = sc_http_query_param(u->query, u->query_len, "resume", session,
                                  sizeof session);
    if (sl < 0)
        return false;
    c->resumed = 0;
    long tl = sc_http_query_param(u->query, u->query_len, "resume_token", token,
                                  sizeof token);
    if (sl != 16 || tl != SC_RESUME_TOKEN_LEN ||
        !resume_token(c->svc->srv, session, sub, want) ||
        CRYPTO_memcmp(token, want, SC_RESUME_TOKEN_LEN) != 0)
        return false;
    memcpy(out, session, 17);
    c->resumed = 1;
    return true;
}

/* Verifies the upgrade's token. Returns true when the connection may go on
 * (anonymous or a valid token); false: reply unauthorized and close 4401. */
static bool authenticate(sc_wsconn_t *c, const char *token, char *why,
                         size_t whylen)
{
    const sc_server_t *srv = c->svc->srv;
    snprintf(why, whylen, "token required");
    if (!srv->jwt_secret || !*srv->jwt_secret)
        return true; /* no JWT configured: everyone is anonymous */
    if (!token || !*token)
        return srv->cfg->allow_anonymous || srv->cfg->demo;
    if (!verify_token(srv, token, &c->claims, why, whylen))
        return false;
    c->has_claims = true;
    return true;
}

static void welcome(sc_wsconn_t *c)
{
    sc_svc_t *svc = c->svc;
    const sc_config_t *cfg = svc->srv->cfg;
    sc_log(SC_LOG_DEBUG, "session %s %s (user %s)", sid(c),
           c->resumed == 1 ? "resumed" : "connected",
           c->info.user_id ? c->info.user_id : "-");
    /* with a grace, the token that resumes this session (bound to the
     * token's user, which a plugin's user does not change) */
    char rt[SC_RESUME_TOKEN_LEN + 1];
    bool has_rt = cfg->presence_grace > 0 &&
                  resume_token(svc->srv, sid(c),
                               c->has_claims ? c->claims.sub : NULL, rt);
    sc_proto_enc_welcome_resume(
        &svc->scratch, sid(c), c->info.user_id, cfg->heartbeat,
        (int)cfg->maxsize, cfg->max_message, has_rt ? rt : NULL, c->resumed);
    reply(c);
}

/* ---- plugins: answers ---------------------------------------------------- */

/* The connect question ended at plugin `at` (the one that denied or did
 * not answer; the count of plugins when all allowed): the plugins up to
 * it saw c connect, and they will hear it leave. */
static void connect_reached(sc_wsconn_t *c, int at)
{
    int n = sc_plugins_count(c->svc->srv);
    c->px->reached = at + 1 < n ? at + 1 : n;
}

/* The connect hooks allowed c: their user and meta apply, then welcome. */
static void connect_allowed(sc_wsconn_t *c, sc_plugin_req_t *r)
{
    if (r->user_set) {
        sc_conn_t info;
        if (sc_conn_init(&info, c->info.session_id, r->user,
                         c->info.connected_at, NULL, 0) == SC_OK) {
            sc_conn_deinit(&c->info);
            c->info = info;
        }
    }
    if (r->meta) {
        free(c->px->meta);
        c->px->meta = r->meta;
        r->meta = NULL;
    }
    welcome(c);
}

/* A plugin refused c (or did not answer in time): forbidden, close 4403. */
static void connect_denied(sc_wsconn_t *c, const char *why)
{
    sc_log_limited(&c->svc->client_log, sc_now_us(), SC_LOG_INFO,
                   "refused a WebSocket from %s: %s (close 4403)", c->px->peer,
                   why);
    reply_error(c, NULL, SC_ERRC_FORBIDDEN, why);
    sc_writer_close_after(c->svc, &c->out, SC_CLOSE_FORBIDDEN, 0);
}

/* The hooks have decided about c's question (r: its req when the plugins
 * answered, NULL when the answer did not come in time): the connection or
 * the held request goes on or is refused, and c reads again. */
static void hook_finish(sc_wsconn_t *c, int kind, sc_plugin_req_t *r,
                        int verdict, const char *why)
{
    struct sc_wsplug *px = c->px;
    if (kind == SC_PLUGIN_REQ_CONNECT) {
        if (verdict == SC_PLUGIN_ALLOW)
            connect_allowed(c, r);
        else
            connect_denied(c, why);
    } else {
        if (verdict == SC_PLUGIN_ALLOW) {
            px->passed = r;
            dispatch(c, &px->held);
            px->passed = NULL;
        } else {
            reply_error(c, px->held.id_json, SC_ERRC_FORBIDDEN, why);
        }
        sc_request_deinit(&px->held);
    }
    maybe_resume(c);
}

/* The resumed callback (plugin.h): a plugin answered c's question. */
static bool hook_resumed(sc_svc_t *svc, sc_plugin_req_t *r)
{
    sc_wsconn_t *c = r->conn;
    (void)svc;
    c->px->hook = NULL;
    int verdict = r->verdict;
    if (verdict == SC_PLUGIN_ALLOW) {
        r->at++;
        verdict =
            ask(c, r, r->kind == SC_PLUGIN_REQ_CONNECT ? NULL : &c->px->held);
        if (verdict == SC_PLUGIN_PENDING)
            return true; /* the next plugin holds it now */
    }
    if (r->kind == SC_PLUGIN_REQ_CONNECT)
        connect_reached(c, r->at);
    char why[SC_PLUGIN_REASON_MAX + 64] = "";
    if (verdict != SC_PLUGIN_ALLOW)
        deny_reason(c, r->at, r->reason, why, sizeof why);
    hook_finish(c, r->kind, r, verdict, why);
    return false;
}

/* A question not answered within SC_PLUGIN_TIMEOUT_US counts as denied;
 * its req stays with the plugin (freed when it answers). */
static void hook_timeout(sc_wsconn_t *c)
{
    sc_plugin_req_t *r = c->px->hook;
    int kind = r->kind, at = r->at;
    r->conn = NULL;
    c->px->hook = NULL;
    if (kind == SC_PLUGIN_REQ_CONNECT)
        connect_reached(c, at);
    char why[160];
    snprintf(why, sizeof why, "plugin %s did not answer within %d s",
             sc_plugins_name(c->svc->srv, at),
             (int)(SC_PLUGIN_TIMEOUT_US / SC_US_PER_SEC));
    sc_log_limited(&c->svc->client_log, sc_now_us(), SC_LOG_WARN,
                   "session %s: %s", sid(c), why);
    hook_finish(c, kind, NULL, SC_PLUGIN_DENY, why);
}

/* Opens c to the plugins: their connect hooks decide whether it gets its
 * welcome. Returns false without memory. */
static bool plug_open(sc_wsconn_t *c, int fd, const sc_upgrade_req_t *u)
{
    unsigned hooks = sc_plugins_hooks(c->svc->srv);
    if (!plug_init(c, fd, u))
        return false;
    if (!(hooks & SC_HOOK_CONNECT)) {
        welcome(c);
        return true;
    }
    sc_plugin_req_t *r = sc_plugin_req_new(c->svc, SC_PLUGIN_REQ_CONNECT, c);
    if (!r)
        return false;
    int verdict = ask(c, r, NULL);
    if (verdict == SC_PLUGIN_PENDING)
        return true; /* the welcome waits for the answer */
    connect_reached(c, r->at);
    char why[SC_PLUGIN_REASON_MAX + 64] = "";
    if (verdict != SC_PLUGIN_ALLOW)
        deny_reason(c, r->at, r->reason, why, sizeof why);
    hook_finish(c, SC_PLUGIN_REQ_CONNECT, r, verdict, why);
    sc_plugin_req_free(r);
    return true;
}

bool sc_ws_open(sc_svc_t *svc, int fd, char *token, sc_admit_ip_t *ip,
                const sc_upgrade_req_t *u)
{
    char id[17], why[160];
    sc_wsconn_t *c = calloc(1, sizeof *c);
    if (!c || !session_id(id)) {
        free(c);
        free(token);
        return false;
    }
    c->svc = svc;
    bool ok = authenticate(c, token, why, sizeof why);
    free(token);
    /* a session resumed keeps its id (a refused resume gets the new one) */
    if (ok && !resume_asked(c, u, c->has_claims ? c->claims.sub : NULL, id) &&
        c->resumed == 0)
        sc_log_limited(&svc->client_log, sc_now_us(), SC_LOG_INFO,
                       "session %s: resume refused (unknown session or "
                       "token, or another user)",
                       id);
    if (sc_conn_init(&c->info, id, c->has_claims ? c->claims.sub : NULL,
                     sc_wall_seconds(), NULL, 0) != SC_OK ||
        sc_writer_init(&c->out, conn_wake, c) != SC_OK) {
        sc_conn_deinit(&c->info);
        if (c->has_claims)
            sc_claims_deinit(&c->claims);
        free(c);
        return false;
    }
    c->ip = ip;
    /* before any subscription: what its queues may hold together */
    sc_owner_set_budget(c->out.owner, svc->srv->cfg->max_queued_bytes);
    conn_link(svc, c);
    SC_COUNT(svc->stats.connections_total, 1);
    c->last_ping_us = sc_now_us();
    sc_wsio_start(&c->io, &svc->ws->env, fd);
    if (!ok) {
        char peer[64];
        sc_listen_peer(fd, peer, sizeof peer);
        sc_log_limited(&svc->client_log, sc_now_us(), SC_LOG_INFO,
                       "refused a WebSocket from %s: %s (close 4401)", peer,
                       why);
        reply_error(c, NULL, SC_ERRC_UNAUTHORIZED, why);
        sc_writer_close_after(svc, &c->out, SC_CLOSE_UNAUTHORIZED, 0);
        return true;
    }
    if (sc_plugins_hooks(svc->srv)) {
        if (!plug_open(c, fd, u)) {
            reply_error(c, NULL, SC_ERRC_INTERNAL, "out of memory");
            sc_writer_close_after(svc, &c->out, SC_CLOSE_GOING_AWAY, 0);
        }
        return true;
    }
    welcome(c);
    return true;
}

/* ---- the thread ---------------------------------------------------------- */

int sc_ws_thread_create(sc_svc_t *svc)
{
    /* OpenSSL sets up its random generator (~200 KB) on first use: do it
     * at start, not in the first client's upgrade. */
    char id[17];
    if (!session_id(id))
        return SC_ENOMEM;
    struct sc_ws_thread *wt = calloc(1, sizeof *wt);
    if (!wt)
        return SC_ENOMEM;
    wt->env = (sc_wsio_env_t){.loop = svc->loop,
                              .rbuf = svc->rbuf,
                              .rbuf_size = SC_READ_CHUNK,
                              .max_message = svc->srv->cfg->max_message,
                              .cbs = &io_cbs};
    svc->ws = wt;
    if (sc_plugins_thread_create(svc, hook_resumed) != SC_OK)
        return SC_ENOMEM;
    return sc_writer_thread_create(svc);
}

void sc_ws_thread_destroy(sc_svc_t *svc)
{
    sc_writer_thread_destroy(svc);
    sc_plugins_thread_destroy(svc);
    free(svc->ws);
    svc->ws = NULL;
}

void sc_ws_thread_enter(sc_svc_t *svc)
{
    sc_writer_thread_enter(svc);
}

void sc_ws_flush(sc_svc_t *svc)
{
    /* the cluster's answers first: an `emitted` goes before the echo of
     * its event, which the broker delivered after queueing the answer */
    sc_broker_drain(svc);
    sc_writer_t **v;
    size_t k = sc_writer_take_pending(svc, &v);
    for (size_t i = 0; i < k; i++) {
        /* The write of a connection is a system call that evicts much of
         * the cache: meanwhile, bring the next connections' write-path
         * lines back (their struct two ahead, then what it points to). */
        if (i + 2 < k) {
            __builtin_prefetch(v[i + 2]);
            __builtin_prefetch((char *)v[i + 2] + 64);
        }
        if (i + 1 < k) {
            sc_wsconn_t *nx = conn_of_writer(v[i + 1]);
            __builtin_prefetch(nx->out.owner);
            if (nx->subs.n)
                sc_sub_prefetch(nx->subs.v[0]);
        }
        sc_wsconn_t *c = conn_of_writer(v[i]);
        if (sc_writer_flush(svc, &c->out, &c->io, &c->subs, sid(c)) < 0)
            conn_destroy(c);
        else
            maybe_resume(c);
    }
}

/* The slow-consumer policy (--disconnect-slow): whether c is over its
 * limits in a scope of the policy now (an event was dropped for it since
 * the last check, or one of those queues is full, or, once over, its
 * queues still hold more than half its byte budget), and how long. Past
 * --slow-grace seconds it is closed with 4413: its subscriptions go at
 * once (what they held is freed), then the close frame after what the
 * socket holds. Returns true when it closed c. */
static bool slow_check(sc_wsconn_t *c, int64_t now)
{
    const sc_config_t *cfg = c->svc->srv->cfg;
    uint64_t drops = 0;
    bool watched = false, full = false;
    const char *where = NULL; /* the scope it is slowest in, for /metrics */
    for (size_t i = 0; i < c->subs.n; i++) {
        sc_sub_t *s = c->subs.v[i];
        if (!sc_auth_patterns_match(cfg->disconnect_slow, sc_sub_scope(s)))
            continue;
        watched = true;
        uint64_t d = sc_sub_dropped_total(s);
        drops += d;
        if (!where || (d && !full))
            where = sc_sub_scope(s);
        if (sc_sub_pending(s) >= cfg->maxsize) {
            if (!full)
                where = sc_sub_scope(s);
            full = true;
        }
    }
    bool over =
        watched &&
        (drops != c->slow_drops || full ||
         (c->slow_since_us && cfg->max_queued_bytes &&
          sc_owner_queued_bytes(c->out.owner) > cfg->max_queued_bytes / 2));
    c->slow_drops = drops;
    if (!over) {
        c->slow_since_us = 0;
        return false;
    }
    if (!c->slow_since_us) {
        c->slow_since_us = now;
        return false;
    }
    if (now - c->slow_since_us < (int64_t)cfg->slow_grace * SC_US_PER_SEC)
        return false;
    sc_log_limited(&c->svc->client_log, now, SC_LOG_INFO,
                   "session %s: a slow consumer for %d s, closed (4413)",
                   sid(c), cfg->slow_grace);
    SC_COUNT(c->svc->stats.slow_closed, 1);
    sc_ns_count_slow_close(&c->svc->srv->ns, where);
    while (c->subs.n)
        drop_sub_at(c, c->subs.n - 1);
    sc_writer_close_after(c->svc, &c->out, SC_CLOSE_SLOW,
                          now + SC_CLOSE_WAIT_US);
    return true;
}

/* The connection's token expired: an error, then close 4401. */
static void token_expired(sc_wsconn_t *c, int64_t now)
{
    sc_log(SC_LOG_DEBUG, "session %s: token expired", sid(c));
    reply_error(c, NULL, SC_ERRC_UNAUTHORIZED, "token expired");
    sc_writer_close_after(c->svc, &c->out, SC_CLOSE_UNAUTHORIZED,
                          now + SC_CLOSE_WAIT_US);
}

void sc_ws_tick(sc_svc_t *svc, int64_t now)
{
    int64_t hb = (int64_t)svc->srv->cfg->heartbeat * SC_US_PER_SEC;
    int64_t wall = (int64_t)time(NULL);
    for (sc_wsconn_t *c = svc->ws->conns, *next; c; c = next) {
        next = c->next;
        if (sc_writer_expired(&c->out, now)) {
            /* the peer neither read our close nor closed */
            conn_destroy(c);
            continue;
        }
        if (sc_writer_closing(&c->out))
            continue;
        if (c->px && c->px->hook) {
            /* waiting for a plugin, not reading: no heartbeat verdict */
            if (now >= c->px->hook->deadline_us)
                hook_timeout(c);
            continue;
        }
        if (svc->srv->cfg->disconnect_slow && c->subs.n && slow_check(c, now))
            continue;
        if (c->has_claims && c->claims.has_exp && wall >= c->claims.exp) {
            token_expired(c, now);
            continue;
        }
        if (now - c->io.last_rx_us > 2 * hb) {
            sc_log(SC_LOG_DEBUG, "session %s: heartbeat timeout%s", sid(c),
                   c->io.paused ? " (its replies are not read)" : "");
            /* if the socket never drains, it is dropped after the wait; a
             * paused connection was silent because it does not read */
            sc_writer_close_after(svc, &c->out,
                                  c->io.paused ? SC_CLOSE_POLICY
                                               : SC_CLOSE_HEARTBEAT,
                                  now + SC_CLOSE_WAIT_US);
        } else if (now - c->last_ping_us >= hb) {
            c->last_ping_us = now;
            sc_writer_ping(svc, &c->out);
        }
    }
}

void sc_ws_begin_drain(sc_svc_t *svc)
{
    sc_server_t *srv = svc->srv;
    /* The first thread to notice closes every subscription once; the
     * others' connections get their `closed` pushes through their wakes. */
    if (!atomic_exchange(&srv->draining, true)) {
        size_t n = sc_bus_close(srv->bus, NULL, SC_CLOSE_SHUTDOWN);
        sc_log(SC_LOG_INFO,
               "shutting down: draining %zu connection(s), %zu "
               "subscription(s)",
               sc_total_connections(srv), n);
    }
    for (sc_wsconn_t *c = svc->ws->conns; c; c = c->next) {
        if (c->subs.n == 0)
            sc_writer_close_after(svc, &c->out, SC_CLOSE_GOING_AWAY, 0);
        else
            sc_writer_wake(svc, &c->out);
    }
}

size_t sc_ws_shutdown(sc_svc_t *svc)
{
    size_t n = 0;
    for (; svc->ws && svc->ws->conns; n++)
        conn_destroy(svc->ws->conns);
    return n;
}
