/*
 * scopecast server: the Redis broker (broker.h has the model, threads and
 * ownership). hiredis's async API on the broker's own libev loop
 * (hiredis/adapters/libev.h): one connection for commands (the sequencing
 * script, closes), one for the channel's subscription.
 */
#include "broker.h"

#include "bus.h"
#include "clock.h"
#include "cluster.h"
#include "codec.h"
#include "jsonw.h"
#include "log.h"
#include "svc.h"

#include <ev.h>
#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* How long a scope's cluster seq lives in Redis after its last emit. A
 * scope quiet for longer starts again from its nodes' seqs (the script
 * takes the emitting node's seq as a floor), which only matters to a
 * client that kept a position in it for a day. */
#define SEQ_TTL_S "86400"
#define RETRY_MIN_S 0.1
#define RETRY_MAX_S 1.0
/* Presence: each node says it is alive every ALIVE_S (on the channel, and
 * in its key scopecast:node:ID with a TTL of NODE_TTL_S); a node not heard
 * from for NODE_GONE_S (checked every ALIVE_S) is gone: its entries leave
 * everywhere, at most NODE_GONE_S + ALIVE_S = the TTL after its end. */
#define ALIVE_S 0.5
#define NODE_GONE_S 4.5
#define NODE_TTL_S 5
#define NODE_TTL_TEXT "5"
/* A node gone this long is forgotten (one back later is taken as new: it
 * sends its list itself when it links again). */
#define PEER_FORGET_S 600.0

/* KEYS[1] the scope's seq key, KEYS[2] its epoch key; ARGV: channel, the
 * emitting node's seq for the scope (a floor: after an outage its local
 * emits went on from its own seq), the keys' TTL, the message body, the
 * epoch the node proposes (its own for the scope, or a new one) for a
 * scope without one. Publishes "SEQ/EPOCH BODY"; returns the seq. The
 * epoch names the cluster's order of the scope: every node that delivers
 * the event with this seq takes it (sc_emit_t.epoch), so a client's
 * (epoch, seq) means the same events on every node. */
static const char SCRIPT[] =
    "local s = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "local floor = tonumber(ARGV[2])\n"
    "if floor > s then s = floor end\n"
    "s = s + 1\n"
    "local e = redis.call('GET', KEYS[2]) or ARGV[5]\n"
    "redis.call('SET', KEYS[1], s, 'EX', ARGV[3])\n"
    "redis.call('SET', KEYS[2], e, 'EX', ARGV[3])\n"
    "redis.call('PUBLISH', ARGV[1], s .. '/' .. e .. ' ' .. ARGV[4])\n"
    "return s\n";

/* KEYS[1] a scope's seq key; ARGV: a node's seq for it, the TTL. Raises
 * the key to it (never lowers it). */
static const char RAISE[] =
    "local s = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "if tonumber(ARGV[1]) > s then\n"
    "  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])\n"
    "end\n"
    "return 0\n";

/* One message for the channel: an emit (req set; msg is "0 " and the
 * body, so a failed one decodes into a local emit) or another kind (req
 * NULL: a close, presence). */
typedef struct sc_broker_item {
    struct sc_broker_item *next, *prev; /* queue, then in flight */
    sc_broker_req_t *req;               /* NULL for a close, or once answered */
    size_t index;                       /* its seq's place in req->seqs */
    uint64_t token;
    uint64_t floor;       /* the node's seq of the scope when it was made */
    uint64_t epoch;       /* the epoch it proposes (the script's ARGV[5]) */
    bool evaled;          /* the script ran it: its message is on the channel */
    uint64_t cluster_seq; /* the script's seq, once it came back */
    char kind;
    char *scope; /* the seq key's scope (NUL-terminated copy) */
    char *msg;   /* "0 " + body */
    size_t len;
} item_t;

typedef struct {
    item_t *head, *tail;
} ilist_t;

struct sc_broker {
    sc_server_t *srv;
    char host[256];
    int port, db;
    char channel[64];
    char keyprefix[64];      /* a scope's seq key: this + the scope */
    char epochprefix[64];    /* its epoch key */
    uint64_t node;           /* random per run */
    _Atomic uint64_t tokens; /* item numbers */

    pthread_t thread;
    struct ev_loop *loop;
    ev_async wake;  /* new items, or stop */
    ev_timer retry; /* the next connection attempt */
    double backoff;

    pthread_mutex_t mu; /* guards queue, stop and reason */
    ilist_t queue;      /* items handed over, not yet sent */
    bool stop;
    char reason[400];

    /* broker thread only */
    redisAsyncContext *cmd, *sub;
    bool cmd_up, sub_up, tearing;
    ilist_t flight; /* emits sent, waiting for the script's answer */

    /* presence (broker thread, but gen: any) */
    _Atomic uint64_t gen; /* this node's presence generation */
    ev_timer alive;       /* every ALIVE_S: say so, expire silent nodes */
    ev_timer bye;         /* at stop: the goodbye's deadline */
    double last_alive;    /* when on_alive last ran (ev_now) */
    uint64_t bad;         /* malformed messages not yet logged */
    double bad_said;      /* when they were last logged (ev_now) */
    struct peer {
        uint64_t node;
        double seen; /* ev_now */
        bool gone;   /* its entries left: it must send its list again */
    } * peers;
    size_t npeers, peercap;

    _Atomic bool linked;
    _Atomic uint64_t published, received, local, links;
};

/* A service thread's answers (broker.h). */
typedef struct sc_broker_thread {
    sc_svc_t *svc;
    pthread_mutex_t mu;
    sc_broker_req_t *head, *tail;
    _Atomic bool any; /* head is not NULL (read without the lock) */
    ev_async wake;
} bthread_t;

static void ilist_push(ilist_t *l, item_t *it)
{
    it->next = NULL;
    it->prev = l->tail;
    if (l->tail)
        l->tail->next = it;
    else
        l->head = it;
    l->tail = it;
}

static void ilist_unlink(ilist_t *l, item_t *it)
{
    if (it->prev)
        it->prev->next = it->next;
    else
        l->head = it->next;
    if (it->next)
        it->next->prev = it->prev;
    else
        l->tail = it->prev;
    it->next = it->prev = NULL;
}

static void item_free(item_t *it)
{
    if (!it)
        return;
    free(it->scope);
    free(it->msg);
    free(it);
}

static void set_reason(sc_broker_t *bk, const char *fmt, const char *detail)
{
    pthread_mutex_lock(&bk->mu);
    snprintf(bk->reason, sizeof bk->reason, fmt, detail ? detail : "");
    pthread_mutex_unlock(&bk->mu);
}

/* ---- answers to the service threads --------------------------------- */

static void post(sc_broker_req_t *req)
{
    if (!req->done) { /* nobody waits */
        sc_broker_req_free(req);
        return;
    }
    sc_svc_t *svc = req->svc; /* req is the asking thread's once queued */
    bthread_t *t = svc->broker;
    pthread_mutex_lock(&t->mu);
    req->next = NULL;
    if (t->tail)
        t->tail->next = req;
    else
        t->head = req;
    t->tail = req;
    atomic_store(&t->any, true);
    pthread_mutex_unlock(&t->mu);
    ev_async_send(svc->loop, &t->wake);
}

void sc_broker_drain(sc_svc_t *svc)
{
    bthread_t *t = svc->broker;
    if (!t || !atomic_load(&t->any))
        return;
    pthread_mutex_lock(&t->mu);
    sc_broker_req_t *r = t->head;
    t->head = t->tail = NULL;
    atomic_store(&t->any, false);
    pthread_mutex_unlock(&t->mu);
    while (r) {
        sc_broker_req_t *next = r->next;
        if (r->ctx)
            r->done(svc, r);
        sc_broker_req_free(r);
        r = next;
    }
}

static void on_answers(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    sc_broker_drain(((bthread_t *)w->data)->svc);
}

int sc_broker_thread_create(sc_svc_t *svc)
{
    bthread_t *t = calloc(1, sizeof *t);
    if (!t)
        return SC_ENOMEM;
    t->svc = svc;
    pthread_mutex_init(&t->mu, NULL);
    ev_async_init(&t->wake, on_answers);
    t->wake.data = t;
    ev_async_start(svc->loop, &t->wake);
    svc->broker = t;
    return SC_OK;
}

void sc_broker_thread_destroy(sc_svc_t *svc)
{
    bthread_t *t = svc->broker;
    if (!t)
        return;
    ev_async_stop(svc->loop, &t->wake);
    sc_broker_req_t *r = t->head;
    while (r) {
        sc_broker_req_t *next = r->next;
        sc_broker_req_free(r);
        r = next;
    }
    pthread_mutex_destroy(&t->mu);
    free(t);
    svc->broker = NULL;
}

/* item's emit has its seq: counted in its request, which is answered
 * when it was the last. */
static void item_answered(item_t *it, uint64_t seq)
{
    sc_broker_req_t *req = it->req;
    if (!req)
        return;
    it->req = NULL;
    req->seqs[it->index] = seq;
    if (--req->left == 0)
        post(req);
}

/* sc_emit_t.on_seq: the bus gave the item's emit its seq (under the
 * scope's lock, before anyone sees the event). */
static void on_item_seq(void *ud, uint64_t seq)
{
    item_t *it = ud;
    /* a scope not alive here: the cluster's seq (every emit has one) */
    item_answered(it, seq ? seq : it->cluster_seq);
}

/* Delivers an item here only (Redis did not take it): its own seq. The
 * answer is queued before the delivery (an `emitted` before its echo). */
static void item_local(sc_broker_t *bk, item_t *it)
{
    sc_cluster_msg_t m;
    if (it->kind == SC_CLUSTER_EVENT &&
        sc_cluster_decode(it->msg, it->len, &m) == SC_OK) {
        sc_emit_t e;
        sc_cluster_msg_to_emit(&m, &e);
        e.on_seq = on_item_seq; /* answered with the bus's seq */
        e.on_seq_ud = it;
        atomic_fetch_add(&bk->local, 1);
        sc_bus_emit(bk->srv->bus, &e, NULL);
        sc_cluster_msg_deinit(&m);
    }
    item_answered(it, 0); /* (when the bus failed it: no seq) */
}

/* ---- the link ----------------------------------------------------------- */

static void connect_both(sc_broker_t *bk);

static void schedule_retry(sc_broker_t *bk)
{
    if (ev_is_active(&bk->retry))
        return;
    ev_timer_set(&bk->retry, bk->backoff, 0);
    ev_timer_start(bk->loop, &bk->retry);
    bk->backoff = bk->backoff * 2 > RETRY_MAX_S ? RETRY_MAX_S : bk->backoff * 2;
}

/* Frees the connections still open. Emits in flight are delivered here:
 * those the script did not answer get NULL replies (on_script); those it
 * published but whose message did not come back are delivered now (the
 * other nodes had them; this one will not). */
static void free_both(sc_broker_t *bk)
{
    redisAsyncContext *cmd = bk->cmd, *sub = bk->sub;
    bk->cmd = bk->sub = NULL;
    bk->cmd_up = bk->sub_up = false;
    if (cmd)
        redisAsyncFree(cmd);
    if (sub)
        redisAsyncFree(sub);
    for (item_t *it = bk->flight.head, *next; it; it = next) {
        next = it->next;
        if (!it->evaled)
            continue; /* its NULL reply is still to come */
        ilist_unlink(&bk->flight, it);
        if (it->req)
            item_local(bk, it);
        item_free(it);
    }
}

/* Both connections go (one failed): emits waiting for the script are
 * answered by hiredis with NULL replies (delivered here, see on_script). */
static void teardown(sc_broker_t *bk)
{
    if (atomic_exchange(&bk->linked, false))
        sc_log(SC_LOG_WARN,
               "broker: lost the link to redis://%s:%d; "
               "emits stay on this node until it is back",
               bk->host, bk->port);
    if (bk->tearing)
        return;
    bk->tearing = true;
    /* the one that failed is already NULL (hiredis frees it); free the
     * other now: its emits in flight get their NULL replies */
    free_both(bk);
    bk->tearing = false;
    schedule_retry(bk);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    sc_broker_t *bk = ac->data;
    if (status != REDIS_OK)
        set_reason(bk, "broker: redis connection lost: %s", ac->errstr);
    if (ac == bk->cmd) {
        bk->cmd = NULL;
        bk->cmd_up = false;
    } else if (ac == bk->sub) {
        bk->sub = NULL;
        bk->sub_up = false;
    }
    teardown(bk);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    sc_broker_t *bk = ac->data;
    if (status != REDIS_OK) { /* hiredis frees ac after this */
        set_reason(bk, "broker: cannot connect to redis: %s", ac->errstr);
        if (ac == bk->cmd)
            bk->cmd = NULL;
        else if (ac == bk->sub)
            bk->sub = NULL;
        teardown(bk);
        return;
    }
    if (ac == bk->cmd)
        bk->cmd_up = true;
    else
        bk->sub_up = true;
}

static bool peer_seen(sc_broker_t *bk, uint64_t node);
static void deliver_presence(sc_broker_t *bk, const sc_cluster_msg_t *m);

static void deliver(sc_broker_t *bk, const char *msg, size_t len)
{
    sc_cluster_msg_t m;
    if (sc_cluster_decode(msg, len, &m) != SC_OK) {
        /* someone else publishes on our channel: said once per 10 s */
        bk->bad++;
        double now = ev_now(bk->loop);
        if (bk->bad_said == 0 || now - bk->bad_said >= 10) {
            sc_log(SC_LOG_WARN,
                   "broker: %llu malformed message(s) on %s ignored (the "
                   "last %zu bytes)",
                   (unsigned long long)bk->bad, bk->channel, len);
            bk->bad = 0;
            bk->bad_said = now;
        }
        return;
    }
    if (m.kind != SC_CLUSTER_EVENT && m.kind != SC_CLUSTER_CLOSE) {
        deliver_presence(bk, &m);
    } else if (m.kind == SC_CLUSTER_EVENT) {
        item_t *own = NULL;
        if (m.node == bk->node) /* ours: the emit waiting for it */
            for (item_t *it = bk->flight.head; it && !own; it = it->next)
                if (it->token == m.token)
                    own = it;
        sc_emit_t e;
        sc_cluster_msg_to_emit(&m, &e);
        if (own) { /* answered with the seq the bus gives it here */
            own->cluster_seq = m.seq;
            e.on_seq = on_item_seq;
            e.on_seq_ud = own;
        }
        atomic_fetch_add(&bk->received, 1);
        sc_bus_emit(bk->srv->bus, &e, NULL);
        if (own) {
            item_answered(own, 0); /* (when the bus failed it: no seq) */
            if (own->evaled) {     /* both halves came: done */
                ilist_unlink(&bk->flight, own);
                item_free(own);
            }
        }
    } else if (m.node != bk->node) { /* a close from another node */
        peer_seen(bk, m.node);
        if (m.user)
            sc_bus_close_user(bk->srv->bus, m.user, m.scope);
        else
            sc_bus_close(bk->srv->bus, m.scope, SC_CLOSE_CLOSED);
    }
    sc_cluster_msg_deinit(&m);
}

static void send_queued(sc_broker_t *bk);
static void enqueue(sc_broker_t *bk, item_t *it);
static void enqueue_bare(sc_broker_t *bk, char kind, uint64_t token);

/* Notes that `node` is alive. Returns true when it was gone (its entries
 * left here): it has to send its list again. */
static bool peer_seen(sc_broker_t *bk, uint64_t node)
{
    double now = ev_now(bk->loop);
    for (size_t i = 0; i < bk->npeers; i++)
        if (bk->peers[i].node == node) {
            bool was_gone = bk->peers[i].gone;
            bk->peers[i].seen = now;
            bk->peers[i].gone = false;
            return was_gone;
        }
    if (bk->npeers == bk->peercap) {
        size_t cap = bk->peercap ? bk->peercap * 2 : 8;
        struct peer *v = realloc(bk->peers, cap * sizeof *v);
        if (!v)
            return false;
        bk->peers = v;
        bk->peercap = cap;
    }
    bk->peers[bk->npeers++] = (struct peer){node, now, false};
    return false;
}

/* This node's presence list, all of it, under a new generation, then the
 * end marker: other nodes drop what they had of it from before. */
static void sync_presence(sc_broker_t *bk)
{
    atomic_fetch_add(&bk->gen, 1);
    sc_bus_each_presence(bk->srv->bus, sc_broker_presence, bk);
    enqueue_bare(bk, SC_CLUSTER_END, atomic_load(&bk->gen));
}

static void deliver_presence(sc_broker_t *bk, const sc_cluster_msg_t *m)
{
    if (m->kind == SC_CLUSTER_SYNC) { /* any node's, ours included */
        sync_presence(bk);
        return;
    }
    if (m->node == bk->node)
        return;
    if (peer_seen(bk, m->node) && m->kind != SC_CLUSTER_SYNC)
        enqueue_bare(bk, SC_CLUSTER_SYNC, 0); /* lost it: ask again */
    switch (m->kind) {
    case SC_CLUSTER_JOIN: {
        sc_conn_t c;
        sc_cluster_msg_to_conn(m, &c);
        if (sc_bus_remote_join(bk->srv->bus, m->scope, m->node, m->token, &c) !=
            SC_OK)
            sc_log(SC_LOG_WARN, "broker: out of memory: a presence entry of "
                                "another node is missing");
        break;
    }
    case SC_CLUSTER_LEAVE:
        sc_bus_remote_leave(bk->srv->bus, m->scope, m->node, m->session);
        break;
    case SC_CLUSTER_END:
        sc_bus_remote_drop(bk->srv->bus, m->node, m->token);
        break;
    default: /* alive */
        break;
    }
}

/* Every ALIVE_S: this node is alive (while linked); nodes silent for
 * NODE_GONE_S are taken as gone, their entries leave. */
static void on_alive(struct ev_loop *loop, ev_timer *w, int revents)
{
    sc_broker_t *bk = w->data;
    (void)revents;
    if (atomic_load(&bk->linked) && bk->cmd) {
        char key[64];
        int klen = snprintf(key, sizeof key, "scopecast:node:%016llx",
                            (unsigned long long)bk->node);
        const char *argv[] = {"SET", key, "alive", "EX", NODE_TTL_TEXT};
        size_t lens[] = {3, (size_t)klen, 5, 2, sizeof NODE_TTL_TEXT - 1};
        redisAsyncCommandArgv(bk->cmd, NULL, NULL, 5, argv, lens);
        enqueue_bare(bk, SC_CLUSTER_ALIVE, 0);
    }
    double now = ev_now(loop);
    if (bk->last_alive && now - bk->last_alive > 2 * ALIVE_S)
        /* this process was stopped or starved, not the others: what they
         * said meanwhile is still unread; they get a fresh NODE_GONE_S */
        for (size_t i = 0; i < bk->npeers; i++)
            bk->peers[i].seen = now;
    bk->last_alive = now;
    for (size_t i = bk->npeers; i-- > 0;) /* forget nodes long gone */
        if (bk->peers[i].gone && now - bk->peers[i].seen > PEER_FORGET_S)
            bk->peers[i] = bk->peers[--bk->npeers];
    for (size_t i = 0; i < bk->npeers; i++) {
        struct peer *p = &bk->peers[i];
        if (!p->gone && now - p->seen > NODE_GONE_S) {
            size_t n = sc_bus_remote_drop(bk->srv->bus, p->node, UINT64_MAX);
            p->gone = true;
            sc_log(SC_LOG_WARN,
                   "broker: node %016llx silent for %.1f s: its %zu presence "
                   "entr%s left",
                   (unsigned long long)p->node, NODE_GONE_S, n,
                   n == 1 ? "y" : "ies");
        }
    }
}

/* sc_bus_each_seq's callback at link-up (the shard lock held: only
 * queues a command). */
static void raise_seq(void *ud, const char *scope, uint64_t seq)
{
    sc_broker_t *bk = ud;
    if (!bk->cmd)
        return;
    char key[64 + 256], val[24];
    int klen = snprintf(key, sizeof key, "%s%s", bk->keyprefix, scope);
    int vlen = snprintf(val, sizeof val, "%llu", (unsigned long long)seq);
    const char *argv[] = {"EVAL", RAISE, "1", key, val, SEQ_TTL_S};
    size_t lens[] = {4,
                     sizeof RAISE - 1,
                     1,
                     (size_t)klen,
                     (size_t)vlen,
                     sizeof SEQ_TTL_S - 1};
    redisAsyncCommandArgv(bk->cmd, NULL, NULL, 6, argv, lens);
}

/* The subscription's replies: the SUBSCRIBE confirmation (the link is
 * up), then the channel's messages. */
static void on_sub(redisAsyncContext *ac, void *r, void *priv)
{
    sc_broker_t *bk = ac->data;
    redisReply *rep = r;
    (void)priv;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *what = rep->element[0]->str;
    if (strcmp(what, "message") == 0 &&
        rep->element[2]->type == REDIS_REPLY_STRING) {
        deliver(bk, rep->element[2]->str, rep->element[2]->len);
    } else if (strcmp(what, "subscribe") == 0) {
        bk->backoff = RETRY_MIN_S;
        set_reason(bk, "%s", "");
        atomic_fetch_add(&bk->links, 1);
        atomic_store(&bk->linked, true);
        sc_log(SC_LOG_INFO, "broker: linked to redis://%s:%d/%d (%s)", bk->host,
               bk->port, bk->db, bk->channel);
        /* the cluster's seqs go at least as far as ours (emits made
         * here while unlinked), so every node gives the next ones the
         * same seq; on the command connection before any emit */
        sc_bus_each_seq(bk->srv->bus, raise_seq, bk);
        /* every node (this one too) sends its presence list again */
        enqueue_bare(bk, SC_CLUSTER_SYNC, 0);
        send_queued(bk);
    }
}

/* The script's answer for one emit: its seq, or (an error, or NULL when
 * the connection went) a delivery here. */
static void on_script(redisAsyncContext *ac, void *r, void *priv)
{
    sc_broker_t *bk = ac->data;
    redisReply *rep = r;
    item_t *it = priv;
    if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer > 0) {
        /* published: it is answered when its message comes back (or
         * delivered here if the link breaks first, see free_both) */
        atomic_fetch_add(&bk->published, 1);
        it->evaled = true;
        if (it->req)
            return;
    } else {
        if (rep && rep->type == REDIS_REPLY_ERROR)
            sc_log(SC_LOG_WARN, "broker: redis refused an emit: %s", rep->str);
        if (it->req) /* not on the channel */
            item_local(bk, it);
    }
    ilist_unlink(&bk->flight, it);
    item_free(it);
}

static void on_select(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *rep = r;
    (void)priv;
    if (rep && rep->type == REDIS_REPLY_ERROR) {
        sc_broker_t *bk = ac->data;
        set_reason(bk, "broker: SELECT failed: %s", rep->str);
        redisAsyncDisconnect(ac);
    }
}

static void send_item(sc_broker_t *bk, item_t *it)
{
    const char *body = it->msg + 2; /* after "0 " */
    size_t blen = it->len - 2;
    if (it->kind != SC_CLUSTER_EVENT) {
        const char *argv[] = {"PUBLISH", bk->channel, it->msg};
        size_t lens[] = {7, strlen(bk->channel), it->len};
        redisAsyncCommandArgv(bk->cmd, NULL, NULL, 3, argv, lens);
        item_free(it);
        return;
    }
    char key[64 + 256], ekey[64 + 256], floor[24];
    char epoch[SC_PROTO_EPOCH_LEN + 1];
    int klen = snprintf(key, sizeof key, "%s%s", bk->keyprefix, it->scope);
    int eklen = snprintf(ekey, sizeof ekey, "%s%s", bk->epochprefix, it->scope);
    int flen =
        snprintf(floor, sizeof floor, "%llu", (unsigned long long)it->floor);
    sc_proto_epoch_text(it->epoch, epoch);
    const char *argv[] = {"EVAL",      SCRIPT, "2",       key,  ekey,
                          bk->channel, floor,  SEQ_TTL_S, body, epoch};
    size_t lens[] = {4,
                     sizeof SCRIPT - 1,
                     1,
                     (size_t)klen,
                     (size_t)eklen,
                     strlen(bk->channel),
                     (size_t)flen,
                     sizeof SEQ_TTL_S - 1,
                     blen,
                     SC_PROTO_EPOCH_LEN};
    ilist_push(&bk->flight, it);
    if (redisAsyncCommandArgv(bk->cmd, on_script, it, 10, argv, lens) !=
        REDIS_OK) {
        ilist_unlink(&bk->flight, it);
        item_local(bk, it);
        item_free(it);
    }
}

/* Sends what service threads handed over, or delivers it here while the
 * link is down (closes are then dropped: the caller closed its own). */
static void send_queued(sc_broker_t *bk)
{
    pthread_mutex_lock(&bk->mu);
    item_t *it = bk->queue.head;
    bk->queue.head = bk->queue.tail = NULL;
    pthread_mutex_unlock(&bk->mu);
    bool up = atomic_load(&bk->linked) && bk->cmd;
    while (it) {
        item_t *next = it->next;
        it->next = it->prev = NULL;
        if (up) {
            send_item(bk, it);
        } else {
            if (it->kind == SC_CLUSTER_EVENT)
                item_local(bk, it);
            item_free(it);
        }
        it = next;
    }
}

static redisAsyncContext *open_one(sc_broker_t *bk)
{
    redisAsyncContext *ac = redisAsyncConnect(bk->host, bk->port);
    if (!ac)
        return NULL;
    if (ac->err) {
        set_reason(bk, "broker: cannot connect to redis: %s", ac->errstr);
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = bk;
    redisLibevAttach(bk->loop, ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    return ac;
}

static void connect_both(sc_broker_t *bk)
{
    bk->cmd = open_one(bk);
    bk->sub = bk->cmd ? open_one(bk) : NULL;
    if (!bk->cmd || !bk->sub) {
        teardown(bk);
        return;
    }
    /* queued until connected; SUBSCRIBE's confirmation brings the link up
     * after SELECT (same connection order is not needed: the channel is
     * not per database, the seq keys are) */
    if (bk->db) {
        char db[8];
        snprintf(db, sizeof db, "%d", bk->db);
        const char *argv[] = {"SELECT", db};
        size_t lens[] = {6, strlen(db)};
        redisAsyncCommandArgv(bk->cmd, on_select, NULL, 2, argv, lens);
    }
    const char *argv[] = {"SUBSCRIBE", bk->channel};
    size_t lens[] = {9, strlen(bk->channel)};
    redisAsyncCommandArgv(bk->sub, on_sub, NULL, 2, argv, lens);
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    sc_broker_t *bk = w->data;
    if (!bk->cmd && !bk->sub)
        connect_both(bk);
    else
        schedule_retry(bk); /* the last attempt is still closing */
}

static void on_goodbye(redisAsyncContext *ac, void *r, void *priv)
{
    sc_broker_t *bk = ac->data;
    (void)r;
    (void)priv;
    ev_timer_stop(bk->loop, &bk->bye);
    free_both(bk); /* (hiredis frees ac after this callback) */
}

static void on_bye_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    free_both(w->data);
}

static void on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
    sc_broker_t *bk = w->data;
    (void)revents;
    pthread_mutex_lock(&bk->mu);
    bool stop = bk->stop;
    pthread_mutex_unlock(&bk->mu);
    if (stop) {
        ev_timer_stop(loop, &bk->retry);
        ev_timer_stop(loop, &bk->alive);
        ev_async_stop(loop, &bk->wake);
        atomic_store(&bk->linked, false);
        bk->tearing = true;          /* no retry */
        send_queued(bk);             /* delivered here (linked is false now) */
        if (bk->cmd && bk->cmd_up) { /* goodbye: our entries leave now */
            char msg[64];
            sc_buf_t b;
            sc_buf_init(&b);
            sc_buf_puts(&b, "0 ");
            sc_cluster_enc_bare(&b, SC_CLUSTER_END, bk->node, UINT64_MAX);
            snprintf(msg, sizeof msg, "%s",
                     sc_buf_str(&b) ? sc_buf_str(&b) : "");
            sc_buf_deinit(&b);
            const char *argv[] = {"PUBLISH", bk->channel, msg};
            size_t lens[] = {7, strlen(bk->channel), strlen(msg)};
            if (redisAsyncCommandArgv(bk->cmd, on_goodbye, NULL, 3, argv,
                                      lens) == REDIS_OK) {
                ev_timer_start(loop, &bk->bye); /* at most that long */
                return;
            }
        }
        free_both(bk);
        return;
    }
    send_queued(bk);
}

static void *broker_main(void *arg)
{
    sc_broker_t *bk = arg;
    connect_both(bk);
    ev_run(bk->loop, 0);
    return NULL;
}

/* ---- the service threads' side ---------------------------------------- */

int sc_broker_create(sc_server_t *srv, const char *url, sc_broker_t **out,
                     char *why, size_t whylen)
{
    *out = NULL;
    sc_broker_t *bk = calloc(1, sizeof *bk);
    if (!bk)
        return SC_ENOMEM;
    if (sc_cluster_parse_url(url, bk->host, sizeof bk->host, &bk->port, &bk->db,
                             why, whylen) != SC_OK) {
        free(bk);
        return SC_EINVAL;
    }
    bk->srv = srv;
    snprintf(bk->channel, sizeof bk->channel, "scopecast:%d:events", bk->db);
    snprintf(bk->keyprefix, sizeof bk->keyprefix, "scopecast:seq:");
    snprintf(bk->epochprefix, sizeof bk->epochprefix, "scopecast:epoch:");
    if (getrandom(&bk->node, sizeof bk->node, 0) != sizeof bk->node)
        bk->node = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid();
    bk->backoff = RETRY_MIN_S;
    snprintf(bk->reason, sizeof bk->reason,
             "broker: connecting to redis://%s:%d", bk->host, bk->port);
    pthread_mutex_init(&bk->mu, NULL);
    bk->loop = ev_loop_new(EVFLAG_AUTO);
    if (!bk->loop) {
        pthread_mutex_destroy(&bk->mu);
        free(bk);
        return SC_ENOMEM;
    }
    ev_async_init(&bk->wake, on_wake);
    bk->wake.data = bk;
    ev_async_start(bk->loop, &bk->wake);
    ev_timer_init(&bk->retry, on_retry, 0, 0);
    bk->retry.data = bk;
    ev_timer_init(&bk->bye, on_bye_timeout, 0.5, 0);
    bk->bye.data = bk;
    ev_timer_init(&bk->alive, on_alive, ALIVE_S, ALIVE_S);
    bk->alive.data = bk;
    ev_timer_start(bk->loop, &bk->alive);
    *out = bk; /* before the thread: it may call the presence hook */
    if (pthread_create(&bk->thread, NULL, broker_main, bk) != 0) {
        *out = NULL;
        ev_loop_destroy(bk->loop);
        pthread_mutex_destroy(&bk->mu);
        free(bk);
        return SC_ENOMEM;
    }
    return SC_OK;
}

void sc_broker_destroy(sc_broker_t *bk)
{
    if (!bk)
        return;
    pthread_mutex_lock(&bk->mu);
    bk->stop = true;
    pthread_mutex_unlock(&bk->mu);
    ev_async_send(bk->loop, &bk->wake);
    pthread_join(bk->thread, NULL);
    /* the contexts are gone (their NULL replies freed what was in
     * flight); what was never sent goes now */
    for (item_t *it = bk->queue.head, *next; it; it = next) {
        next = it->next;
        item_free(it);
    }
    ev_loop_destroy(bk->loop);
    pthread_mutex_destroy(&bk->mu);
    free(bk->peers);
    free(bk);
}

bool sc_broker_linked(const sc_broker_t *bk)
{
    return atomic_load(&bk->linked);
}

void sc_broker_reason(sc_broker_t *bk, char *out, size_t len)
{
    pthread_mutex_lock(&bk->mu);
    snprintf(out, len, "%s",
             atomic_load(&bk->linked) ? ""
             : bk->reason[0]          ? bk->reason
                                      : "broker: down");
    pthread_mutex_unlock(&bk->mu);
}

void sc_broker_stats(sc_broker_t *bk, sc_broker_stats_t *out)
{
    out->up = atomic_load(&bk->linked);
    out->published = atomic_load(&bk->published);
    out->received = atomic_load(&bk->received);
    out->local = atomic_load(&bk->local);
    out->links = atomic_load(&bk->links);
}

sc_broker_req_t *sc_broker_req_new(sc_broker_t *bk, sc_svc_t *svc, size_t n,
                                   sc_broker_done_fn done, void *ctx)
{
    (void)bk;
    sc_broker_req_t *req = calloc(1, sizeof *req);
    if (!req)
        return NULL;
    req->seqs = calloc(n ? n : 1, sizeof *req->seqs);
    req->items = calloc(n ? n : 1, sizeof *req->items);
    if (!req->seqs || !req->items) {
        sc_broker_req_free(req);
        return NULL;
    }
    req->n = n;
    req->left = n;
    req->svc = svc;
    req->done = done;
    req->ctx = ctx;
    return req;
}

static item_t *item_new(sc_broker_t *bk, char kind, const char *scope,
                        sc_buf_t *b)
{
    item_t *it = calloc(1, sizeof *it);
    if (!it)
        return NULL;
    it->kind = kind;
    it->token = atomic_fetch_add(&bk->tokens, 1) + 1;
    it->scope = scope ? strdup(scope) : NULL;
    sc_buf_putc(b, '0');
    sc_buf_putc(b, ' ');
    if (kind == SC_CLUSTER_EVENT && !it->scope) {
        free(it);
        return NULL;
    }
    return it;
}

/* Makes the item of one emit (not yet queued). */
static item_t *event_item(sc_broker_t *bk, const sc_emit_t *e)
{
    sc_buf_t b;
    sc_buf_init(&b);
    item_t *it = item_new(bk, SC_CLUSTER_EVENT, e->scope, &b);
    if (!it || sc_cluster_enc_event(&b, bk->node, it->token, e) != SC_OK ||
        !(it->msg = sc_buf_detach(&b, &it->len))) {
        item_free(it);
        sc_buf_deinit(&b);
        return NULL;
    }
    it->epoch = sc_bus_scope_epoch(bk->srv->bus, e->scope, &it->floor);
    if (!it->epoch) /* not alive here: a new one, unique to this node */
        it->epoch = sc_epoch_mix(bk->node, it->token);
    return it;
}

int sc_broker_req_set(sc_broker_t *bk, sc_broker_req_t *req, size_t i,
                      const sc_emit_t *e)
{
    item_t *it = event_item(bk, e);
    if (!it)
        return SC_ENOMEM;
    it->req = req;
    it->index = i;
    req->items[i] = it;
    return SC_OK;
}

static void enqueue(sc_broker_t *bk, item_t *it)
{
    pthread_mutex_lock(&bk->mu);
    ilist_push(&bk->queue, it);
    pthread_mutex_unlock(&bk->mu);
    ev_async_send(bk->loop, &bk->wake);
}

void sc_broker_submit(sc_broker_t *bk, sc_broker_req_t *req)
{
    item_t **items = req->items;
    req->items = NULL; /* from here on each item is the broker's */
    pthread_mutex_lock(&bk->mu);
    for (size_t i = 0; i < req->n; i++)
        ilist_push(&bk->queue, items[i]);
    pthread_mutex_unlock(&bk->mu);
    free(items);
    ev_async_send(bk->loop, &bk->wake);
}

void sc_broker_req_free(sc_broker_req_t *req)
{
    if (!req)
        return;
    if (req->items)
        for (size_t i = 0; i < req->n; i++)
            item_free(req->items[i]);
    free(req->items);
    free(req->seqs);
    free(req);
}

int sc_broker_emit(sc_broker_t *bk, const sc_emit_t *e)
{
    sc_broker_req_t *req = sc_broker_req_new(bk, NULL, 1, NULL, NULL);
    if (!req)
        return SC_ENOMEM;
    if (sc_broker_req_set(bk, req, 0, e) != SC_OK) {
        sc_broker_req_free(req);
        return SC_ENOMEM;
    }
    sc_broker_submit(bk, req);
    return SC_OK;
}

static void enqueue_bare(sc_broker_t *bk, char kind, uint64_t token)
{
    sc_buf_t b;
    sc_buf_init(&b);
    item_t *it = item_new(bk, kind, NULL, &b);
    if (!it || sc_cluster_enc_bare(&b, kind, bk->node, token) != SC_OK ||
        !(it->msg = sc_buf_detach(&b, &it->len))) {
        item_free(it);
        sc_buf_deinit(&b);
        return;
    }
    enqueue(bk, it);
}

void sc_broker_presence(void *ud, int kind, const char *scope,
                        const sc_conn_t *conn)
{
    sc_broker_t *bk = ud;
    if (!bk || !atomic_load(&bk->linked))
        return; /* the list is sent again once linked */
    char k = kind == SC_EVENT_LEAVE ? SC_CLUSTER_LEAVE : SC_CLUSTER_JOIN;
    sc_buf_t b;
    sc_buf_init(&b);
    item_t *it = item_new(bk, k, NULL, &b);
    if (!it ||
        sc_cluster_enc_presence(&b, k, bk->node, atomic_load(&bk->gen), scope,
                                conn) != SC_OK ||
        !(it->msg = sc_buf_detach(&b, &it->len))) {
        item_free(it);
        sc_buf_deinit(&b);
        return;
    }
    enqueue(bk, it);
}

void sc_broker_close(sc_broker_t *bk, const char *scope, const char *user)
{
    if (!atomic_load(&bk->linked))
        return;
    sc_buf_t b;
    sc_buf_init(&b);
    item_t *it = item_new(bk, SC_CLUSTER_CLOSE, NULL, &b);
    if (!it ||
        sc_cluster_enc_close(&b, bk->node, it->token, scope, user) != SC_OK ||
        !(it->msg = sc_buf_detach(&b, &it->len))) {
        item_free(it);
        sc_buf_deinit(&b);
        return;
    }
    enqueue(bk, it);
}
