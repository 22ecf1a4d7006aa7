/*
 * The registry and the producer side of the bus (see bus.h for the model).
 *
 * Scopes are spread over SHARDS shards by hash; each shard has one mutex
 * guarding its scope map, the scopes' subscriber arrays, seqs, user counts
 * and drop-warning state, and the producer side of their subscriptions'
 * queues. An emit takes exactly one shard lock, so emitters into different
 * scopes rarely meet, and emitters into one scope are serialised, which
 * gives the scope one seq order that every subscriber sees.
 *
 * Fan-out is one pointer push per subscriber (sc__queue_push, inline from
 * queue.h), each push that queued followed by a wake of the subscriber's
 * owner (owner.c). The event's reference count is raised to cover every
 * subscriber before the first push and the unused part is returned once at
 * the end, so a fan-out to N subscribers does one atomic add on the event,
 * not N. Work that calls out of the bus (on_drop, the drop warning) is
 * collected while locked and run after unlocking.
 */
#include "bus_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/random.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SHARDS 64

struct sc__scope;

/* A held presence entry (sc_sub_destroy_hold): the conn of a subscription
 * whose connection dropped, shown until it is adopted or its grace ends.
 * In its scope's `held` array and its shard's expiry list, oldest first
 * (every entry has the bus's grace, so that is also expiry order). */
typedef struct sc__held {
    sc_conn_t conn;
    uint64_t session_hash; /* sc__hash(conn.session_id) */
    double expires;        /* bus clock */
    struct sc__scope *scope;
    size_t index;                 /* in scope->held */
    struct sc__held *next, *prev; /* the shard's expiry list */
} sc__held_t;

/* Another node's presence entry (sc_bus_remote_join), in its scope's
 * `remote` array. */
typedef struct sc__remote {
    sc_conn_t conn;
    uint64_t session_hash;
    uint64_t node, gen;
    size_t index; /* in scope->remote */
} sc__remote_t;

/* A kept event (history) and when it was kept (bus clock). */
typedef struct sc__kept {
    sc_event_t *ev; /* a reference */
    double at;
} sc__kept_t;

/* A scope exists while it has subscriptions, held entries or kept
 * events. */
typedef struct sc__scope {
    sc__strmap_entry_t *entry; /* key = scope name, value = this */
    uint64_t seq;
    uint64_t epoch; /* this life of the scope */
    bool ext;       /* epoch is the cluster's (sc_emit_t.epoch), not ours */
    /* History: a ring of the last `nkept` events, which are exactly those
     * with seq in (seq - nkept, seq] (every emit is kept or empties it) */
    sc_history_limits_t hlim; /* all zero: no history */
    sc__kept_t *kept;         /* kcap slots, a power of two */
    uint32_t kcap, khead, nkept;
    /* the shard's list of scopes keeping events, least recently emitted
     * into first (the budget's eviction order) */
    struct sc__scope *hprev, *hnext;
    sc_sub_t **subs;
    size_t nsubs, cap;
    sc__held_t **held;
    size_t nheld, heldcap;
    sc__remote_t **remote; /* other nodes' entries */
    size_t nremote, remotecap;
    /* user id -> its shown subscriptions, held and remote entries
     * (uintptr_t) */
    sc__strmap_t users;
    double warn_last; /* drop-warning throttle */
    uint64_t warn_count;
    bool warned;
} sc__scope_t;

typedef struct shard {
    _Alignas(64) pthread_mutex_t lock;
    sc__strmap_t scopes;      /* {lock} */
    sc__held_t *held_head;    /* {lock} the expiry list, oldest first */
    sc__held_t *held_tail;    /* {lock} */
    sc__scope_t *lru_head;    /* {lock} scopes keeping events, least */
    sc__scope_t *lru_tail;    /* {lock} recently emitted into first */
    _Atomic uint64_t emitted; /* incremented under lock, read anywhere */
    _Atomic uint64_t dropped;
} shard_t;

struct sc_bus {
    sc_bus_config_t cfg;
    sc__gauge_t *gauge; /* events held by queues (each once); the bus
                           holds one reference, each queued event one */
    _Atomic uint64_t subscribers;
    _Atomic uint64_t scopes;
    _Atomic uint64_t held;         /* held presence entries */
    _Atomic uint64_t epochs;       /* epochs handed out */
    _Atomic uint64_t hist_bytes;   /* what kept events cost */
    _Atomic uint64_t hist_events;  /* kept events */
    _Atomic uint64_t hist_scopes;  /* scopes keeping any */
    _Atomic uint64_t hist_evicted; /* left early for the budget */
    shard_t shards[SHARDS];
};

/* What to do after unlocking: report drops of one event. */
typedef struct after_item {
    sc_event_t *ev; /* a reference */
    uint32_t drops;
    uint64_t warn_count; /* > 0: log a drop warning with this count */
} after_item_t;

typedef struct after {
    after_item_t inline_items[4];
    after_item_t *items;
    size_t n, cap;
} after_t;

static void after_init(after_t *af)
{
    af->items = af->inline_items;
    af->n = 0;
    af->cap = 4;
}

static void after_add(after_t *af, sc_event_t *ev, uint32_t drops,
                      uint64_t warn_count)
{
    if (af->n == af->cap) {
        size_t cap = af->cap * 2;
        after_item_t *v = af->items == af->inline_items
                              ? malloc(cap * sizeof *v)
                              : realloc(af->items, cap * sizeof *v);
        if (!v)
            return; /* counters are already updated; only the report is lost */
        if (af->items == af->inline_items)
            memcpy(v, af->inline_items, sizeof af->inline_items);
        af->items = v;
        af->cap = cap;
    }
    af->items[af->n++] = (after_item_t){sc_event_ref(ev), drops, warn_count};
}

static void after_run(sc_bus_t *bus, after_t *af)
{
    for (size_t i = 0; i < af->n; i++) {
        after_item_t *it = &af->items[i];
        const char *scope = sc_event_scope(it->ev);
        if (it->warn_count)
            sc__bus_logf(bus, SC_LOG_WARN,
                         "dropped %llu event(s) for scope='%s' (subscriber "
                         "queue full, maxsize=%d)",
                         (unsigned long long)it->warn_count, scope,
                         bus->cfg.maxsize);
        for (uint32_t k = 0; bus->cfg.on_drop && k < it->drops; k++)
            if (bus->cfg.on_drop(bus->cfg.on_drop_ud, scope, it->ev) != 0)
                sc__bus_logf(bus, SC_LOG_ERROR,
                             "on_drop callback failed for scope='%s'", scope);
        sc_event_unref(it->ev);
    }
    if (af->items != af->inline_items)
        free(af->items);
    after_init(af);
}

void sc__bus_logf(sc_bus_t *bus, int level, const char *fmt, ...)
{
    if (!bus->cfg.log)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    bus->cfg.log(bus->cfg.log_ud, level, msg);
}

static double default_clock(void *ud)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static shard_t *shard_of(sc_bus_t *bus, uint64_t hash)
{
    return &bus->shards[hash >> 58]; /* top bits; buckets use low bits */
}

static bool opt_str_eq(const char *a, const char *b)
{
    return a && b ? strcmp(a, b) == 0 : a == b;
}

/* Whether `sub` has a presence entry: a conn, not hidden, not superseded.
 * Caller holds the shard lock (or owns an unregistered sub). */
static bool shown(const sc_sub_t *sub)
{
    return sub->_has_conn && !sub->_hidden && !sub->_superseded;
}

/* ---- lifecycle ------------------------------------------------------- */

void sc_bus_config_default(sc_bus_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->maxsize = SC_BUS_DEFAULT_MAXSIZE;
    cfg->drop_log_interval = SC_BUS_DROP_LOG_INTERVAL;
}

int sc_bus_create(const sc_bus_config_t *cfg, sc_bus_t **out)
{
    *out = NULL;
    sc_bus_config_t c;
    if (cfg)
        c = *cfg;
    else
        sc_bus_config_default(&c);
    if (c.maxsize < 1 || c.drop_log_interval < 0)
        return SC_EINVAL;
    if (!c.clock)
        c.clock = default_clock;
    if (!c.epoch_seed &&
        getrandom(&c.epoch_seed, sizeof c.epoch_seed, GRND_NONBLOCK) !=
            (ssize_t)sizeof c.epoch_seed) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        c.epoch_seed = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^
                       ((uint64_t)getpid() << 16);
    }
    sc_bus_t *bus = aligned_alloc(64, (sizeof *bus + 63) / 64 * 64);
    if (!bus)
        return SC_ENOMEM;
    memset(bus, 0, sizeof *bus);
    bus->cfg = c;
    bus->gauge = calloc(1, sizeof *bus->gauge);
    if (!bus->gauge) {
        free(bus);
        return SC_ENOMEM;
    }
    atomic_init(&bus->gauge->bytes, 0);
    atomic_init(&bus->gauge->refs, 1);
    for (int i = 0; i < SHARDS; i++) {
        if (pthread_mutex_init(&bus->shards[i].lock, NULL) != 0) {
            while (i-- > 0)
                pthread_mutex_destroy(&bus->shards[i].lock);
            free(bus->gauge);
            free(bus);
            return SC_ENOMEM;
        }
        sc__strmap_init(&bus->shards[i].scopes);
    }
    *out = bus;
    return SC_OK;
}

int sc_bus_maxsize(const sc_bus_t *bus)
{
    return bus->cfg.maxsize;
}

static void scope_free(sc__scope_t *sc)
{
    sc__strmap_deinit(&sc->users);
    free(sc->subs);
    free(sc->held);
    for (size_t i = 0; i < sc->nremote; i++) {
        sc_conn_deinit(&sc->remote[i]->conn);
        free(sc->remote[i]);
    }
    free(sc->remote);
    free(sc->kept);
    free(sc);
}

static bool scope_empty(const sc__scope_t *sc)
{
    return sc->nsubs == 0 && sc->nheld == 0 && sc->nkept == 0 &&
           sc->nremote == 0;
}

/* A new epoch: of the seed and a counter (sc_epoch_mix), so epochs of
 * one bus never repeat and look unrelated (never 0). */
static uint64_t next_epoch(sc_bus_t *bus)
{
    return sc_epoch_mix(bus->cfg.epoch_seed,
                        atomic_fetch_add(&bus->epochs, 1) + 1);
}

/* ---- history ---------------------------------------------------------- */

static bool has_history(const sc__scope_t *sc)
{
    return sc->hlim.max_events || sc->hlim.max_age > 0;
}

static void lru_unlink(shard_t *sh, sc__scope_t *sc)
{
    if (sc->hprev)
        sc->hprev->hnext = sc->hnext;
    else
        sh->lru_head = sc->hnext;
    if (sc->hnext)
        sc->hnext->hprev = sc->hprev;
    else
        sh->lru_tail = sc->hprev;
    sc->hprev = sc->hnext = NULL;
}

static void lru_append(shard_t *sh, sc__scope_t *sc)
{
    sc->hnext = NULL;
    sc->hprev = sh->lru_tail;
    if (sh->lru_tail)
        sh->lru_tail->hnext = sc;
    else
        sh->lru_head = sc;
    sh->lru_tail = sc;
}

/* Drops the oldest kept event of `sc` (nkept > 0). Caller holds the
 * lock. */
static void kept_pop_locked(sc_bus_t *bus, shard_t *sh, sc__scope_t *sc)
{
    sc__kept_t *k = &sc->kept[sc->khead];
    atomic_fetch_sub_explicit(&bus->hist_bytes, k->ev->_cost,
                              memory_order_relaxed);
    atomic_fetch_sub_explicit(&bus->hist_events, 1, memory_order_relaxed);
    sc_event_unref(k->ev);
    sc->khead = (sc->khead + 1) & (sc->kcap - 1);
    if (--sc->nkept == 0) {
        sc->khead = 0;
        lru_unlink(sh, sc);
        atomic_fetch_sub_explicit(&bus->hist_scopes, 1, memory_order_relaxed);
    }
}

static void kept_clear_locked(sc_bus_t *bus, shard_t *sh, sc__scope_t *sc)
{
    while (sc->nkept)
        kept_pop_locked(bus, sh, sc);
}

/* Drops `sc`'s events older than its max_age. Returns how many. */
static size_t kept_age_locked(sc_bus_t *bus, shard_t *sh, sc__scope_t *sc,
                              double now)
{
    size_t n = 0;
    if (sc->hlim.max_age <= 0)
        return 0;
    while (sc->nkept && sc->kept[sc->khead].at <= now - sc->hlim.max_age) {
        kept_pop_locked(bus, sh, sc);
        n++;
    }
    return n;
}

/* Removes an empty scope from its shard. */
static void scope_drop_locked(sc_bus_t *bus, shard_t *sh, sc__scope_t *sc)
{
    kept_clear_locked(bus, sh, sc);
    sc__strmap_remove(&sh->scopes, sc->entry);
    scope_free(sc);
    atomic_fetch_sub(&bus->scopes, 1);
}

static bool hist_fits(sc_bus_t *bus, uint32_t cost)
{
    return atomic_load_explicit(&bus->hist_bytes, memory_order_relaxed) +
               cost <=
           bus->cfg.history_max_bytes;
}

/* Frees the oldest kept events of `sh`'s scopes, least recently emitted
 * into first, but `skip`'s, until `cost` more fits; drops scopes left
 * empty. Caller holds sh's lock. */
static void evict_shard_locked(sc_bus_t *bus, shard_t *sh, sc__scope_t *skip,
                               uint32_t cost)
{
    for (sc__scope_t *v = sh->lru_head, *next; v && !hist_fits(bus, cost);
         v = next) {
        next = v->hnext;
        if (v == skip)
            continue;
        while (v->nkept && !hist_fits(bus, cost)) {
            kept_pop_locked(bus, sh, v);
            atomic_fetch_add_explicit(&bus->hist_evicted, 1,
                                      memory_order_relaxed);
        }
        if (scope_empty(v))
            scope_drop_locked(bus, sh, v);
    }
}

/* Frees kept events for the budget until `cost` more fits: the other
 * scopes of sc's shard first, then those of the other shards whose lock
 * is free right now (trylock: no lock order to keep), then sc's own
 * oldest. Returns whether it fits. Caller holds sh's lock. */
static bool kept_make_room_locked(sc_bus_t *bus, shard_t *sh, sc__scope_t *sc,
                                  uint32_t cost)
{
    if (!bus->cfg.history_max_bytes || hist_fits(bus, cost))
        return true;
    evict_shard_locked(bus, sh, sc, cost);
    size_t me = (size_t)(sh - bus->shards);
    for (size_t k = 1; k < SHARDS && !hist_fits(bus, cost); k++) {
        shard_t *o = &bus->shards[(me + k) % SHARDS];
        if (pthread_mutex_trylock(&o->lock) != 0)
            continue; /* busy: a miss only means less freed */
        evict_shard_locked(bus, o, NULL, cost);
        pthread_mutex_unlock(&o->lock);
    }
    while (sc->nkept && !hist_fits(bus, cost)) {
        kept_pop_locked(bus, sh, sc);
        atomic_fetch_add_explicit(&bus->hist_evicted, 1, memory_order_relaxed);
    }
    return hist_fits(bus, cost);
}

/* Keeps `ev` (just sequenced into `sc`) as history: within the scope's
 * limits and the bus budget, or `sc` keeps nothing. Caller holds the
 * lock. */
static void kept_append_locked(sc_bus_t *bus, shard_t *sh, sc__scope_t *sc,
                               sc_event_t *ev)
{
    double now = bus->cfg.clock(bus->cfg.clock_ud);
    kept_age_locked(bus, sh, sc, now);
    while (sc->hlim.max_events && sc->nkept >= sc->hlim.max_events)
        kept_pop_locked(bus, sh, sc);
    if (!kept_make_room_locked(bus, sh, sc, ev->_cost)) {
        /* the budget is held by other shards: start again, contiguous */
        atomic_fetch_add_explicit(&bus->hist_evicted, sc->nkept + 1,
                                  memory_order_relaxed);
        kept_clear_locked(bus, sh, sc);
        return;
    }
    if (sc->nkept == sc->kcap) {
        uint32_t cap = sc->kcap ? sc->kcap * 2 : 8;
        sc__kept_t *v = cap > sc->kcap ? malloc(cap * sizeof *v) : NULL;
        if (!v) { /* out of memory (or 2^31 kept): start again */
            kept_clear_locked(bus, sh, sc);
            return;
        }
        for (uint32_t i = 0; i < sc->nkept; i++)
            v[i] = sc->kept[(sc->khead + i) & (sc->kcap - 1)];
        free(sc->kept);
        sc->kept = v;
        sc->kcap = cap;
        sc->khead = 0;
    }
    sc->kept[(sc->khead + sc->nkept) & (sc->kcap - 1)] =
        (sc__kept_t){sc_event_ref(ev), now};
    atomic_fetch_add_explicit(&bus->hist_bytes, ev->_cost,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&bus->hist_events, 1, memory_order_relaxed);
    if (sc->nkept++ == 0)
        atomic_fetch_add_explicit(&bus->hist_scopes, 1, memory_order_relaxed);
    else
        lru_unlink(sh, sc);
    lru_append(sh, sc);
}

/* Whether nothing after `since` is missing from `sc` (bus.h). */
static bool recoverable(const sc__scope_t *sc, const sc_since_t *since)
{
    if (since->seq && !(since->has_epoch && since->epoch == sc->epoch))
        return false;
    return since->seq <= sc->seq && since->seq >= sc->seq - sc->nkept;
}

/* The kept events after `after` that `sub` wants, as new references in a
 * new array (*n of them; NULL with 0). False when out of memory. Caller
 * holds the lock. */
static bool kept_collect_locked(const sc__scope_t *sc, uint64_t after,
                                const sc_sub_t *sub, sc_event_t ***out,
                                size_t *n);

static void destroy_scope_cb(sc__strmap_entry_t *e, void *ud)
{
    sc_bus_t *bus = ud;
    sc__scope_t *sc = e->value;
    if (sc->nsubs)
        sc__bus_logf(bus, SC_LOG_ERROR,
                     "bus destroyed with %zu live subscription(s) in "
                     "scope='%s'",
                     sc->nsubs, e->key);
    for (size_t i = 0; i < sc->nsubs; i++) {
        sc->subs[i]->_scope = NULL;
        atomic_store(&sc->subs[i]->_close_reason, SC_CLOSE_SHUTDOWN);
    }
    for (size_t i = 0; i < sc->nheld; i++) { /* their shard goes too */
        sc_conn_deinit(&sc->held[i]->conn);
        free(sc->held[i]);
    }
    for (uint32_t i = 0; i < sc->nkept; i++) /* the budget goes too */
        sc_event_unref(sc->kept[(sc->khead + i) & (sc->kcap - 1)].ev);
    scope_free(sc);
}

void sc_bus_destroy(sc_bus_t *bus)
{
    if (!bus)
        return;
    for (int i = 0; i < SHARDS; i++) {
        shard_t *sh = &bus->shards[i];
        pthread_mutex_lock(&sh->lock);
        sc__strmap_each(&sh->scopes, destroy_scope_cb, bus);
        sc__strmap_deinit(&sh->scopes);
        pthread_mutex_unlock(&sh->lock);
        pthread_mutex_destroy(&sh->lock);
    }
    sc__gauge_release(bus->gauge); /* events still referenced keep it */
    free(bus);
}

/* ---- fan-out --------------------------------------------------------- */

static bool wants_change(const sc_sub_t *sub, const sc_event_t *ev)
{
    if (ev->_has_audience &&
        !(sub->_has_conn && sc_event_audience_allows(ev, sub->_conn.user_id)))
        return false;
    /* the hashes first: no string (and no cache miss) per subscriber */
    if (ev->_origin && !sub->_echo && sub->_has_conn &&
        sub->_session_hash == ev->_origin_hash &&
        strcmp(ev->_origin, sub->_conn.session_id) == 0)
        return false;
    return true;
}

static bool kept_collect_locked(const sc__scope_t *sc, uint64_t after,
                                const sc_sub_t *sub, sc_event_t ***out,
                                size_t *n)
{
    *out = NULL;
    *n = 0;
    uint64_t first = sc->seq - sc->nkept + 1; /* the oldest kept seq */
    if (after >= sc->seq)
        return true;
    uint32_t skip = (uint32_t)(after + 1 - first);
    sc_event_t **v = malloc((sc->nkept - skip) * sizeof *v);
    if (!v)
        return false;
    size_t k = 0;
    for (uint32_t i = skip; i < sc->nkept; i++) {
        sc_event_t *ev = sc->kept[(sc->khead + i) & (sc->kcap - 1)].ev;
        if (wants_change(sub, ev))
            v[k++] = sc_event_ref(ev);
    }
    if (!k)
        free(v);
    else
        *out = v;
    *n = k;
    return true;
}

/* Counts `drops` for one event and decides on the throttled warning:
 * per scope, the first drop is reported at once and later ones within the
 * interval are counted into the next warning. */
static void note_drops_locked(sc_bus_t *bus, shard_t *sh, sc__scope_t *sc,
                              sc_event_t *ev, uint32_t drops, after_t *af)
{
    atomic_fetch_add_explicit(&sh->dropped, drops, memory_order_relaxed);
    uint64_t report = 0;
    double now = bus->cfg.clock(bus->cfg.clock_ud);
    sc->warn_count++;
    if (!sc->warned || now - sc->warn_last >= bus->cfg.drop_log_interval) {
        report = sc->warn_count;
        sc->warn_count = 0;
        sc->warn_last = now;
        sc->warned = true;
    }
    sc->warn_count += drops - 1;
    after_add(af, ev, drops, report);
}

/* Queues `ev` (a reference the caller keeps) to every subscriber of `sc`
 * that should get it, except `except` (NULL: none; an UPDATE's author).
 * Caller holds the shard lock; nobody else may hold a reference to `ev`
 * yet. */
static void fanout_locked(sc_bus_t *bus, shard_t *sh, sc__scope_t *sc,
                          sc_event_t *ev, const sc_sub_t *except, after_t *af)
{
    size_t n = sc->nsubs;
    uint32_t delivered = 0, drops = 0, cost = ev->_cost;
    bool change = ev->_kind == SC_EVENT_CHANGE;
    /* the memory limit: over it, this event reaches nobody */
    bool full =
        bus->cfg.max_queued_bytes &&
        atomic_load_explicit(&bus->gauge->bytes, memory_order_relaxed) >=
            bus->cfg.max_queued_bytes;
    /* Cover every possible push before the first one is visible (the
     * encoder may hold references of its own, so add, never set). */
    sc__event_add_refs(ev, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        sc_sub_t *sub = sc->subs[i];
        if (i + 4 < n) { /* a few subscribers ahead: their lines we touch */
            const sc_sub_t *a = sc->subs[i + 4];
            __builtin_prefetch(a);
            __builtin_prefetch(&a->_queue._tailgap, 1);
        }
        if (change ? !wants_change(sub, ev) : sub->_quiet || sub == except)
            continue;
        sc_owner_t *o = sub->_owner;
        if (full || sc__owner_over_budget(o, cost)) {
            sc__queue_drop(&sub->_queue);
            drops++;
            continue;
        }
        /* counted before the push, so the consumer never takes off more
         * than was added */
        sc__owner_count_in(o, cost);
        if (sc__queue_push(&sub->_queue, ev)) {
            /* After the push's seq_cst publish: the wake protocol. */
            sc__owner_wake(o);
            delivered++;
        } else {
            sc__owner_uncount_in(o, cost);
            drops++;
        }
    }
    if (delivered && !ev->_gauge) {
        /* in the gauge until freed; set before the emitter's last unref */
        ev->_gauge = bus->gauge;
        atomic_fetch_add_explicit(&bus->gauge->refs, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&bus->gauge->bytes, cost,
                                  memory_order_relaxed);
    }
    sc__event_unref_many(ev, (uint32_t)n - delivered);
    if (drops)
        note_drops_locked(bus, sh, sc, ev, drops, af);
}

static int encode(sc_bus_t *bus, sc_event_t *ev)
{
    if (bus->cfg.encode && bus->cfg.encode(bus->cfg.encode_ud, ev) != 0)
        return -1;
    sc__event_settle(ev, bus->cfg.release_payload);
    return 0;
}

/* ---- emit ------------------------------------------------------------ */

static sc__scope_t *scope_get_locked(sc_bus_t *bus, shard_t *sh,
                                     const char *name, uint64_t hash,
                                     const sc_history_limits_t *lim);

static bool emit_valid(const sc_emit_t *e)
{
    if (!e || !e->scope || (e->npaths && !e->paths) ||
        (e->has_audience && e->naudience && !e->audience) ||
        (e->has_payload && e->payload_len && !e->payload))
        return false;
    for (size_t i = 0; i < e->npaths; i++)
        if (!e->paths[i])
            return false;
    for (size_t i = 0; e->has_audience && i < e->naudience; i++)
        if (!e->audience[i])
            return false;
    return true;
}

int sc_bus_emit(sc_bus_t *bus, const sc_emit_t *e, uint64_t *seq_out)
{
    if (seq_out)
        *seq_out = 0;
    if (!bus || !emit_valid(e))
        return SC_EINVAL;
    uint64_t hash = sc__hash(e->scope);
    shard_t *sh = shard_of(bus, hash);
    after_t af;
    after_init(&af);

    pthread_mutex_lock(&sh->lock);
    sc__strmap_entry_t *entry = sc__strmap_find(&sh->scopes, e->scope, hash);
    sc__scope_t *sc = entry ? entry->value : NULL;
    if (!sc && bus->cfg.history) { /* a scope that keeps history lives */
        sc_history_limits_t lim = {0};
        bus->cfg.history(bus->cfg.history_ud, e->scope, &lim);
        if ((lim.max_events || lim.max_age > 0) &&
            !(sc = scope_get_locked(bus, sh, e->scope, hash, &lim))) {
            pthread_mutex_unlock(&sh->lock);
            return SC_ENOMEM;
        }
    }
    if (!sc) {
        atomic_fetch_add_explicit(&sh->emitted, 1, memory_order_relaxed);
        if (e->on_seq)
            e->on_seq(e->on_seq_ud, 0);
        pthread_mutex_unlock(&sh->lock);
        return SC_OK;
    }
    uint64_t seq = e->seq > sc->seq ? e->seq : sc->seq + 1;
    /* whose numbering this is: the cluster's (its epoch) when the event
     * gets the cluster's seq, else this node's own (sc_emit_t.epoch) */
    bool adopt = e->epoch && seq == e->seq;
    sc_event_t *ev = sc__event_create_change(e, seq);
    if (!ev || encode(bus, ev) != 0) {
        if (scope_empty(sc)) /* one just made for it */
            scope_drop_locked(bus, sh, sc);
        pthread_mutex_unlock(&sh->lock);
        sc_event_unref(ev);
        return SC_ENOMEM;
    }
    atomic_fetch_add_explicit(&sh->emitted, 1, memory_order_relaxed);
    if (adopt && sc->epoch != e->epoch) {
        /* another order: the kept events are not in it */
        if (sc->nkept)
            kept_clear_locked(bus, sh, sc);
        sc->epoch = e->epoch;
    } else if (!adopt && sc->ext) { /* numbered here, not by the cluster */
        sc->epoch = next_epoch(bus);
    }
    sc->ext = adopt;
    if (seq != sc->seq + 1 && sc->nkept) /* a jump: kept are not contiguous */
        kept_clear_locked(bus, sh, sc);
    sc->seq = seq;
    if (e->on_seq)
        e->on_seq(e->on_seq_ud, seq);
    fanout_locked(bus, sh, sc, ev, NULL, &af);
    if (has_history(sc)) {
        kept_append_locked(bus, sh, sc, ev);
        if (scope_empty(sc)) /* nobody there and nothing kept */
            scope_drop_locked(bus, sh, sc);
    }
    pthread_mutex_unlock(&sh->lock);

    after_run(bus, &af);
    if (seq_out)
        *seq_out = sc_event_seq(ev);
    sc_event_unref(ev);
    return SC_OK;
}

/* ---- subscribe ------------------------------------------------------- */

static sc_sub_t *sub_create(sc_bus_t *bus, const char *scope, sc_owner_t *owner,
                            const sc_sub_opts_t *opts)
{
    sc_sub_t *sub = calloc(1, sizeof *sub);
    if (!sub)
        return NULL;
    sub->_bus = bus;
    sub->_owner = owner;
    sc__queue_init(&sub->_queue, (uint32_t)bus->cfg.maxsize);
    size_t slen = strlen(scope) + 1;
    sub->_scope_name = malloc(slen);
    if (!sub->_scope_name)
        goto fail;
    memcpy(sub->_scope_name, scope, slen);
    sub->_hash = sc__hash(scope);
    if (opts) {
        if (opts->conn) {
            if (sc_conn_copy(&sub->_conn, opts->conn) != SC_OK)
                goto fail;
            sub->_has_conn = true;
            if (sub->_conn.session_id)
                sub->_session_hash = sc__hash(sub->_conn.session_id);
        }
        sub->_echo = opts->echo;
        sub->_quiet = opts->quiet;
        sub->_hidden = opts->hidden;
        sub->_adopt = opts->adopt;
        sub->_on_disconnect = opts->on_disconnect;
        sub->_on_disconnect_ud = opts->on_disconnect_ud;
    }
    return sub;
fail:
    free(sub->_scope_name);
    free(sub);
    return NULL;
}

/* Frees a subscription that was never registered (nothing was queued). */
static void sub_free_unregistered(sc_sub_t *sub)
{
    sc__queue_deinit(&sub->_queue);
    sc_conn_deinit(&sub->_conn);
    free(sub->_scope_name);
    free(sub);
}

/* The scope entry for `name`, created (empty, with a new epoch) when
 * missing, with the history limits `lim` (NULL: asks the hook). */
static sc__scope_t *scope_get_locked(sc_bus_t *bus, shard_t *sh,
                                     const char *name, uint64_t hash,
                                     const sc_history_limits_t *lim)
{
    sc__strmap_entry_t *entry = sc__strmap_upsert(&sh->scopes, name, hash);
    if (!entry)
        return NULL;
    if (entry->value)
        return entry->value;
    sc__scope_t *sc = calloc(1, sizeof *sc);
    if (!sc) {
        sc__strmap_remove(&sh->scopes, entry);
        return NULL;
    }
    if (lim)
        sc->hlim = *lim;
    else if (bus->cfg.history)
        bus->cfg.history(bus->cfg.history_ud, name, &sc->hlim);
    sc->epoch = next_epoch(bus);
    sc->entry = entry;
    sc__strmap_init(&sc->users);
    entry->value = sc;
    atomic_fetch_add(&bus->scopes, 1);
    return sc;
}

static int reserve_sub_slot(sc__scope_t *sc)
{
    if (sc->nsubs < sc->cap)
        return 0;
    size_t cap = sc->cap ? sc->cap * 2 : 4;
    sc_sub_t **v = realloc(sc->subs, cap * sizeof *v);
    if (!v)
        return -1;
    sc->subs = v;
    sc->cap = cap;
    return 0;
}

/* ---- held presence entries ------------------------------------------ */

/* Counts one presence entry of `uid` out of `sc`'s users. Returns the
 * user-level `last` flag (anonymous: always). Caller holds the lock. */
static bool user_release_locked(sc__scope_t *sc, const char *uid)
{
    if (!uid)
        return true;
    sc__strmap_entry_t *user = sc__strmap_find(&sc->users, uid, sc__hash(uid));
    if (!user)
        return true;
    uintptr_t left = (uintptr_t)user->value - 1;
    if (left == 0) {
        sc__strmap_remove(&sc->users, user);
        return true;
    }
    user->value = (void *)left;
    return false;
}

/* Tells the presence hook about a local entry. Caller holds the lock. */
static void hook_presence(sc_bus_t *bus, int kind, const char *scope,
                          const sc_conn_t *conn)
{
    if (bus->cfg.on_presence)
        bus->cfg.on_presence(bus->cfg.on_presence_ud, kind, scope, conn);
}

static bool announce_raw_locked(sc_bus_t *bus, shard_t *sh, sc__scope_t *sc,
                                int kind, const sc_conn_t *conn, bool edge,
                                const sc_sub_t *except, after_t *af);

/* Tells the presence hook and `sc`'s subscribers (but quiet ones and
 * `except`) a presence event of the local entry `conn`. Returns false when
 * it could not be built (out of memory). Caller holds the lock. */
static bool announce_locked(sc_bus_t *bus, shard_t *sh, sc__scope_t *sc,
                            int kind, const sc_conn_t *conn, bool edge,
                            const sc_sub_t *except, after_t *af)
{
    hook_presence(bus, kind, sc->entry->key, conn);
    return announce_raw_locked(bus, sh, sc, kind, conn, edge, except, af);
}

/* announce_locked without the hook (remote entries). */
static bool announce_raw_locked(sc_bus_t *bus, shard_t *sh, sc__scope_t *sc,
                                int kind, const sc_conn_t *conn, bool edge,
                                const sc_sub_t *except, after_t *af)
{
    if (sc->nsubs == 0 || (sc->nsubs == 1 && sc->subs[0] == except))
        return true;
    sc_event_t *ev =
        sc__event_create_presence(kind, sc->entry->key, conn, edge);
    bool ok = ev && encode(bus, ev) == 0;
    if (ok)
        fanout_locked(bus, sh, sc, ev, except, af);
    sc_event_unref(ev);
    return ok;
}

static int held_reserve(sc__scope_t *sc)
{
    if (sc->nheld < sc->heldcap)
        return 0;
    size_t cap = sc->heldcap ? sc->heldcap * 2 : 2;
    sc__held_t **v = realloc(sc->held, cap * sizeof *v);
    if (!v)
        return -1;
    sc->held = v;
    sc->heldcap = cap;
    return 0;
}

/* Adds `h` (its conn filled) to `sc` (room reserved) and to the end of
 * the shard's expiry list. Caller holds the lock. */
static void held_add_locked(sc_bus_t *bus, shard_t *sh, sc__scope_t *sc,
                            sc__held_t *h)
{
    h->scope = sc;
    h->index = sc->nheld;
    sc->held[sc->nheld++] = h;
    h->expires = bus->cfg.clock(bus->cfg.clock_ud) + bus->cfg.presence_grace;
    h->next = NULL;
    h->prev = sh->held_tail;
    if (sh->held_tail)
        sh->held_tail->next = h;
    else
        sh->held_head = h;
    sh->held_tail = h;
    atomic_fetch_add(&bus->held, 1);
}

/* Takes `h` out of its scope and shard and frees it (its user count is
 * the caller's business). Caller holds the lock. */
static void held_free_locked(sc_bus_t *bus, shard_t *sh, sc__held_t *h)
{
    sc__scope_t *sc = h->scope;
    size_t i = h->index;
    sc->held[i] = sc->held[--sc->nheld];
    sc->held[i]->index = i;
    if (h->prev)
        h->prev->next = h->next;
    else
        sh->held_head = h->next;
    if (h->next)
        h->next->prev = h->prev;
    else
        sh->held_tail = h->prev;
    atomic_fetch_sub(&bus->held, 1);
    sc_conn_deinit(&h->conn);
    free(h);
}

/* The held entry leaves: LEAVE to the scope's others, then it is freed
 * (the caller drops an emptied scope). False: the LEAVE was not built. */
static bool held_leave_locked(sc_bus_t *bus, shard_t *sh, sc__held_t *h,
                              after_t *af)
{
    sc__scope_t *sc = h->scope;
    bool last = user_release_locked(sc, h->conn.user_id);
    bool ok =
        announce_locked(bus, sh, sc, SC_EVENT_LEAVE, &h->conn, last, NULL, af);
    held_free_locked(bus, sh, h);
    return ok;
}

/* ---- attaching ------------------------------------------------------- */

/* The presence entry `sub` (adopt) may take over in `sc`: a held entry
 * (*held) or a live shown subscription (*live) of the same session and
 * user. False when there is none. Caller holds the lock. */
static bool find_adoptable_locked(sc__scope_t *sc, const sc_sub_t *sub,
                                  sc__held_t **held, sc_sub_t **live)
{
    const sc_conn_t *c = &sub->_conn;
    *held = NULL;
    *live = NULL;
    for (size_t i = 0; i < sc->nheld; i++) {
        sc__held_t *h = sc->held[i];
        if (h->session_hash == sub->_session_hash &&
            strcmp(h->conn.session_id, c->session_id) == 0 &&
            opt_str_eq(h->conn.user_id, c->user_id)) {
            *held = h;
            return true;
        }
    }
    for (size_t i = 0; i < sc->nsubs; i++) {
        sc_sub_t *o = sc->subs[i];
        if (shown(o) && o->_session_hash == sub->_session_hash &&
            strcmp(o->_conn.session_id, c->session_id) == 0 &&
            opt_str_eq(o->_conn.user_id, c->user_id)) {
            *live = o;
            return true;
        }
    }
    return false;
}

static bool meta_eq(const char *a, size_t alen, const char *b, size_t blen)
{
    if (!a || !b)
        return a == b;
    return alen == blen && memcmp(a, b, alen) == 0;
}

/* Adds `sub` (room reserved) in place of the presence entry `src` (a held
 * entry's conn, or a live subscription's): no JOIN, the entry's
 * connected-at, its meta unless `sub` has one, an UPDATE to the others
 * when the meta changes. Nothing changes on failure (SC_ENOMEM). Caller
 * holds the lock. */
static int adopt_locked(sc_bus_t *bus, shard_t *sh, sc__scope_t *sc,
                        sc_sub_t *sub, sc__held_t *held, sc_sub_t *live,
                        after_t *af)
{
    const sc_conn_t *src = held ? &held->conn : &live->_conn;
    char *copy = NULL;
    if (!sub->_conn.meta && src->meta) {
        if (!(copy = malloc(src->meta_len + 1)))
            return SC_ENOMEM;
        memcpy(copy, src->meta, src->meta_len + 1);
    }
    sc_conn_t view = sub->_conn; /* borrowed: the entry as it will be */
    view.connected_at = src->connected_at;
    if (copy) {
        view.meta = copy;
        view.meta_len = src->meta_len;
    }
    sc_event_t *update = NULL;
    if (!meta_eq(view.meta, view.meta_len, src->meta, src->meta_len) &&
        sc->nsubs > 0) {
        update = sc__event_create_presence(SC_EVENT_UPDATE, sub->_scope_name,
                                           &view, false);
        if (!update || encode(bus, update) != 0) {
            sc_event_unref(update);
            free(copy);
            return SC_ENOMEM;
        }
    }
    if (!meta_eq(view.meta, view.meta_len, src->meta, src->meta_len))
        hook_presence(bus, SC_EVENT_UPDATE, sc->entry->key, &view);
    sub->_conn.connected_at = view.connected_at;
    sub->_conn.meta = view.meta;
    sub->_conn.meta_len = view.meta_len;
    if (held)
        held_free_locked(bus, sh, held); /* its user count is sub's now */
    else
        live->_superseded = true; /* so is its */
    sub->_scope = sc;
    sub->_index = sc->nsubs;
    sc->subs[sc->nsubs++] = sub;
    atomic_fetch_add(&bus->subscribers, 1);
    if (update) {
        fanout_locked(bus, sh, sc, update, sub, af);
        sc_event_unref(update);
    }
    return SC_OK;
}

/* Announces `sub` joining to the scope's others and adds it (or, with
 * adopt, takes over its session's entry: adopt_locked). Every
 * allocation happens before anything changes, so failure leaves the scope
 * as it was. Caller holds the lock. */
static int attach_locked(sc_bus_t *bus, shard_t *sh, sc__scope_t *sc,
                         sc_sub_t *sub, after_t *af)
{
    sc__strmap_entry_t *user = NULL;
    bool first = true;
    if (reserve_sub_slot(sc) != 0)
        return SC_ENOMEM;
    bool is_shown = shown(sub);
    sc__held_t *held;
    sc_sub_t *live;
    if (is_shown && sub->_adopt && find_adoptable_locked(sc, sub, &held, &live))
        return adopt_locked(bus, sh, sc, sub, held, live, af);
    if (is_shown && sub->_conn.user_id) {
        const char *uid = sub->_conn.user_id;
        user = sc__strmap_upsert(&sc->users, uid, sc__hash(uid));
        if (!user)
            return SC_ENOMEM;
        first = user->value == NULL;
    }
    if (is_shown && sc->nsubs > 0) {
        sc_event_t *join = sc__event_create_presence(
            SC_EVENT_JOIN, sub->_scope_name, &sub->_conn, first);
        if (!join || encode(bus, join) != 0) {
            sc_event_unref(join);
            if (user && !user->value)
                sc__strmap_remove(&sc->users, user);
            return SC_ENOMEM;
        }
        fanout_locked(bus, sh, sc, join, NULL, af);
        sc_event_unref(join);
    }
    if (user)
        user->value = (void *)((uintptr_t)user->value + 1);
    if (is_shown)
        hook_presence(bus, SC_EVENT_JOIN, sc->entry->key, &sub->_conn);
    sub->_scope = sc;
    sub->_index = sc->nsubs;
    sc->subs[sc->nsubs++] = sub;
    atomic_fetch_add(&bus->subscribers, 1);
    return SC_OK;
}

int sc_bus_subscribe(sc_bus_t *bus, const char *scope, sc_owner_t *owner,
                     const sc_sub_opts_t *opts, sc_sub_t **out,
                     uint64_t *seq_out)
{
    *out = NULL;
    if (seq_out)
        *seq_out = 0;
    if (!bus || !scope || !*scope || !owner ||
        (opts && opts->conn && !opts->conn->session_id))
        return SC_EINVAL;
    sc_sub_t *sub = sub_create(bus, scope, owner, opts);
    if (!sub)
        return SC_ENOMEM;
    shard_t *sh = shard_of(bus, sub->_hash);
    after_t af;
    after_init(&af);
    int rc = SC_ENOMEM;

    pthread_mutex_lock(&sh->lock);
    sc__scope_t *sc = scope_get_locked(bus, sh, scope, sub->_hash, NULL);
    if (sc) {
        rc = attach_locked(bus, sh, sc, sub, &af);
        if (rc == SC_OK) {
            sub->_epoch = sc->epoch;
            /* the replay: everything after since and before any push,
             * under the same lock (out of memory: not recovered) */
            const sc_since_t *since = opts ? opts->since : NULL;
            sub->_recovered =
                since && recoverable(sc, since) &&
                kept_collect_locked(sc, since->seq, sub, &sub->_replay,
                                    &sub->_replay_n);
        }
        if (rc == SC_OK && seq_out)
            *seq_out = sc->seq;
        if (rc != SC_OK && scope_empty(sc))
            scope_drop_locked(bus, sh, sc);
    }
    pthread_mutex_unlock(&sh->lock);

    after_run(bus, &af);
    if (rc != SC_OK) {
        sub_free_unregistered(sub);
        return rc;
    }
    *out = sub;
    return SC_OK;
}

/* ---- leaving --------------------------------------------------------- */

/* Takes `sub` out of `sc`'s array (not freeing an emptied scope; its
 * user count is the caller's business). Caller holds the lock. */
static void remove_sub_locked(sc_bus_t *bus, sc__scope_t *sc, sc_sub_t *sub)
{
    size_t i = sub->_index;
    sc->subs[i] = sc->subs[--sc->nsubs];
    sc->subs[i]->_index = i;
    sub->_scope = NULL;
    atomic_fetch_sub(&bus->subscribers, 1);
}

/* Takes `sub` out of `sc` (not freeing an emptied scope). Returns the
 * user-level `last` flag. Caller holds the lock. */
static bool detach_locked(sc_bus_t *bus, sc__scope_t *sc, sc_sub_t *sub)
{
    bool had_entry = shown(sub);
    remove_sub_locked(bus, sc, sub);
    return had_entry ? user_release_locked(sc, sub->_conn.user_id) : true;
}

/* Detaches `sub` and tells the scope's others. Returns false when the LEAVE
 * event could not be built (out of memory; the caller logs it). */
static bool leave_locked(sc_bus_t *bus, shard_t *sh, sc__scope_t *sc,
                         sc_sub_t *sub, after_t *af)
{
    bool had_entry = shown(sub);
    bool last = detach_locked(bus, sc, sub);
    if (!had_entry)
        return true;
    return announce_locked(bus, sh, sc, SC_EVENT_LEAVE, &sub->_conn, last, NULL,
                           af);
}

void sc__bus_unsubscribe(sc_bus_t *bus, sc_sub_t *sub, bool hold)
{
    shard_t *sh = shard_of(bus, sub->_hash);
    after_t af;
    after_init(&af);
    bool ok = true;
    /* The held entry's copy, made before the lock (on the owner's thread,
     * the only one that changes the meta). */
    sc__held_t *h = NULL;
    if (hold && bus->cfg.presence_grace > 0 && sub->_has_conn &&
        !sub->_hidden && (h = calloc(1, sizeof *h)) != NULL) {
        if (sc_conn_copy(&h->conn, &sub->_conn) == SC_OK) {
            h->session_hash = sub->_session_hash;
        } else {
            free(h);
            h = NULL;
        }
    }
    pthread_mutex_lock(&sh->lock);
    sc__scope_t *sc = sub->_scope;
    if (sc) {
        if (h && shown(sub) && held_reserve(sc) == 0) {
            /* the entry stays, quietly; it keeps the user's count */
            remove_sub_locked(bus, sc, sub);
            held_add_locked(bus, sh, sc, h);
            h = NULL;
        } else {
            ok = leave_locked(bus, sh, sc, sub, &af);
        }
        if (scope_empty(sc))
            scope_drop_locked(bus, sh, sc);
    }
    pthread_mutex_unlock(&sh->lock);
    after_run(bus, &af);
    if (h) {
        sc_conn_deinit(&h->conn);
        free(h);
    }
    if (!ok)
        sc__bus_logf(bus, SC_LOG_ERROR,
                     "out of memory: leave of scope='%s' not announced",
                     sub->_scope_name);
}

size_t sc_bus_expire_held(sc_bus_t *bus)
{
    if (!bus || atomic_load_explicit(&bus->held, memory_order_relaxed) == 0)
        return 0;
    double now = bus->cfg.clock(bus->cfg.clock_ud);
    size_t n = 0;
    bool failed = false;
    after_t af;
    after_init(&af);
    for (int i = 0; i < SHARDS; i++) {
        shard_t *sh = &bus->shards[i];
        pthread_mutex_lock(&sh->lock);
        sc__held_t *h;
        while ((h = sh->held_head) != NULL && h->expires <= now) {
            sc__scope_t *sc = h->scope;
            if (!held_leave_locked(bus, sh, h, &af))
                failed = true;
            n++;
            if (scope_empty(sc))
                scope_drop_locked(bus, sh, sc);
        }
        pthread_mutex_unlock(&sh->lock);
        after_run(bus, &af);
    }
    if (failed)
        sc__bus_logf(bus, SC_LOG_ERROR,
                     "out of memory: a held presence entry's leave was not "
                     "announced");
    return n;
}

uint64_t sc_bus_held(sc_bus_t *bus)
{
    return atomic_load(&bus->held);
}

/* ---- presence updates ------------------------------------------------ */

int sc_bus_presence_update(sc_bus_t *bus, sc_sub_t *sub, const void *meta,
                           size_t len)
{
    if (!bus || !sub || sub->_bus != bus || !sub->_has_conn || sub->_hidden ||
        (len && !meta))
        return SC_EINVAL;
    /* Everything allocated before the lock: the new meta and the event
     * (its conn is the subscription's with the new meta). */
    char *copy = NULL;
    if (meta) {
        if (!(copy = malloc(len + 1)))
            return SC_ENOMEM;
        memcpy(copy, meta, len);
        copy[len] = '\0';
    }
    sc_conn_t view = sub->_conn; /* borrowed: only the owner writes it */
    view.meta = copy;
    view.meta_len = copy ? len : 0;
    sc_event_t *ev = sc__event_create_presence(SC_EVENT_UPDATE,
                                               sub->_scope_name, &view, false);
    if (!ev) {
        free(copy);
        return SC_ENOMEM;
    }
    shard_t *sh = shard_of(bus, sub->_hash);
    after_t af;
    after_init(&af);
    int rc = SC_OK;
    pthread_mutex_lock(&sh->lock);
    sc__scope_t *sc = sub->_scope;
    if (!sc || sub->_superseded) {
        /* closed or kicked: its end is on its way; superseded: a newer
         * connection of its session has the entry */
        rc = SC_ECLOSED;
    } else if (sc->nsubs > 1 && encode(bus, ev) != 0) {
        rc = SC_ENOMEM;
    } else {
        hook_presence(bus, SC_EVENT_UPDATE, sc->entry->key, &view);
        char *old = sub->_conn.meta;
        sub->_conn.meta = copy;
        sub->_conn.meta_len = view.meta_len;
        copy = old; /* freed below, after the lock */
        if (sc->nsubs > 1)
            fanout_locked(bus, sh, sc, ev, sub, &af);
    }
    pthread_mutex_unlock(&sh->lock);
    after_run(bus, &af);
    free(copy);
    sc_event_unref(ev);
    return rc;
}

/* ---- close ----------------------------------------------------------- */

/* Sets the close reason of a subscription already removed from its scope,
 * then wakes its owner (the wake protocol, owner.c). */
static void end_sub_locked(sc_sub_t *sub, int reason)
{
    atomic_store(&sub->_close_reason, reason);
    sc__owner_wake(sub->_owner);
}

static size_t close_scope_locked(sc_bus_t *bus, shard_t *sh, sc__scope_t *sc,
                                 int reason)
{
    size_t n = sc->nsubs;
    for (size_t i = 0; i < n; i++) {
        sc->subs[i]->_scope = NULL;
        end_sub_locked(sc->subs[i], reason);
    }
    sc->nsubs = 0;
    atomic_fetch_sub(&bus->subscribers, n);
    while (sc->nheld) /* no leave: the scope is closed */
        held_free_locked(bus, sh, sc->held[sc->nheld - 1]);
    scope_drop_locked(bus, sh, sc);
    return n;
}

struct close_ctx {
    sc_bus_t *bus;
    shard_t *sh;
    int reason;
    const char *user;
    size_t count;
    bool leave_failed;
    after_t *af;
};

static void close_each_cb(sc__strmap_entry_t *e, void *ud)
{
    struct close_ctx *cx = ud;
    cx->count += close_scope_locked(cx->bus, cx->sh, e->value, cx->reason);
}

/* Calls fn on the entry of `scope`, or of every scope when it is NULL,
 * one shard lock at a time; deferred reports run after each shard. */
static void each_scope(const char *scope,
                       void (*fn)(sc__strmap_entry_t *e, void *ud),
                       struct close_ctx *cx)
{
    sc_bus_t *bus = cx->bus;
    uint64_t hash = scope ? sc__hash(scope) : 0;
    for (int i = 0; i < SHARDS; i++) {
        cx->sh = scope ? shard_of(bus, hash) : &bus->shards[i];
        pthread_mutex_lock(&cx->sh->lock);
        if (scope) {
            sc__strmap_entry_t *e =
                sc__strmap_find(&cx->sh->scopes, scope, hash);
            if (e)
                fn(e, cx);
        } else {
            sc__strmap_each(&cx->sh->scopes, fn, cx);
        }
        pthread_mutex_unlock(&cx->sh->lock);
        if (cx->af)
            after_run(bus, cx->af);
        if (scope)
            break;
    }
}

size_t sc_bus_close(sc_bus_t *bus, const char *scope, int reason)
{
    if (!bus)
        return 0;
    if (reason != SC_CLOSE_SHUTDOWN && reason != SC_CLOSE_KICKED)
        reason = SC_CLOSE_CLOSED;
    struct close_ctx cx = {.bus = bus, .reason = reason};
    each_scope(scope, close_each_cb, &cx);
    return cx.count;
}

/* Kicks every subscription of cx->user from one scope; the others get a
 * LEAVE for each. */
static void kick_user_cb(sc__strmap_entry_t *e, void *ud)
{
    struct close_ctx *cx = ud;
    sc__scope_t *sc = e->value;
    for (size_t i = sc->nsubs; i-- > 0;) {
        sc_sub_t *sub = sc->subs[i];
        if (!sub->_has_conn || !sub->_conn.user_id ||
            strcmp(sub->_conn.user_id, cx->user) != 0)
            continue;
        if (!leave_locked(cx->bus, cx->sh, sc, sub, cx->af))
            cx->leave_failed = true;
        end_sub_locked(sub, SC_CLOSE_KICKED);
        cx->count++;
        /* Swap-removal moved an already visited entry into slot i. */
    }
    for (size_t i = sc->nheld; i-- > 0;) { /* held entries leave at once */
        sc__held_t *h = sc->held[i];
        if (h->conn.user_id && strcmp(h->conn.user_id, cx->user) == 0 &&
            !held_leave_locked(cx->bus, cx->sh, h, cx->af))
            cx->leave_failed = true;
    }
    if (scope_empty(sc))
        scope_drop_locked(cx->bus, cx->sh, sc);
}

size_t sc_bus_close_user(sc_bus_t *bus, const char *user_id, const char *scope)
{
    if (!bus || !user_id)
        return 0;
    after_t af;
    after_init(&af);
    struct close_ctx cx = {.bus = bus, .user = user_id, .af = &af};
    each_scope(scope, kick_user_cb, &cx);
    if (cx.leave_failed)
        sc__bus_logf(bus, SC_LOG_ERROR,
                     "out of memory: a leave of user='%s' was not announced",
                     user_id);
    return cx.count;
}

/* ---- presence, stats -------------------------------------------------- */

static int cmp_opt_str(const char *a, const char *b)
{
    if (!a || !b)
        return (a != NULL) - (b != NULL);
    return strcmp(a, b);
}

/* A total order consistent with sc_conn_equal. */
static int cmp_conn(const void *pa, const void *pb)
{
    const sc_conn_t *a = pa, *b = pb;
    int c = cmp_opt_str(a->session_id, b->session_id);
    if (!c)
        c = cmp_opt_str(a->user_id, b->user_id);
    if (!c)
        c = (a->connected_at > b->connected_at) -
            (a->connected_at < b->connected_at);
    if (!c && (!a->meta || !b->meta))
        c = (a->meta != NULL) - (b->meta != NULL);
    if (!c && a->meta)
        c = a->meta_len != b->meta_len
                ? (a->meta_len > b->meta_len) - (a->meta_len < b->meta_len)
                : memcmp(a->meta, b->meta, a->meta_len);
    return c;
}

static size_t dedupe_conns(sc_conn_t *v, size_t n)
{
    if (n < 2)
        return n;
    qsort(v, n, sizeof *v, cmp_conn);
    size_t out = 1;
    for (size_t i = 1; i < n; i++) {
        if (sc_conn_equal(&v[i], &v[out - 1]))
            sc_conn_deinit(&v[i]);
        else
            v[out++] = v[i];
    }
    return out;
}

int sc_bus_presence(sc_bus_t *bus, const char *scope, sc_conn_t **out,
                    size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!bus || !scope)
        return SC_EINVAL;
    uint64_t hash = sc__hash(scope);
    shard_t *sh = shard_of(bus, hash);
    int rc = SC_OK;
    size_t count = 0;
    sc_conn_t *v = NULL;
    pthread_mutex_lock(&sh->lock);
    sc__strmap_entry_t *e = sc__strmap_find(&sh->scopes, scope, hash);
    sc__scope_t *sc = e ? e->value : NULL;
    size_t all = sc ? sc->nsubs + sc->nheld + sc->nremote : 0;
    if (sc && !scope_empty(sc) && all && !(v = calloc(all, sizeof *v)))
        rc = SC_ENOMEM;
    for (size_t i = 0; v && sc && i < all; i++) {
        const sc_conn_t *c = NULL;
        if (i >= sc->nsubs + sc->nheld)
            c = &sc->remote[i - sc->nsubs - sc->nheld]->conn;
        else if (i >= sc->nsubs)
            c = &sc->held[i - sc->nsubs]->conn;
        else if (shown(sc->subs[i]))
            c = &sc->subs[i]->_conn;
        if (!c)
            continue;
        if (sc_conn_copy(&v[count], c) != SC_OK) {
            rc = SC_ENOMEM;
            break;
        }
        count++;
    }
    pthread_mutex_unlock(&sh->lock);
    if (rc != SC_OK) {
        sc_presence_free(v, count);
        return rc;
    }
    if (!count) {
        free(v);
        return SC_OK;
    }
    *n = dedupe_conns(v, count);
    *out = v;
    return SC_OK;
}

/* ---- remote presence (another node's entries) -------------------------- */

static sc__remote_t *remote_find_locked(const sc__scope_t *sc, uint64_t node,
                                        const char *session, uint64_t hash)
{
    for (size_t i = 0; i < sc->nremote; i++) {
        sc__remote_t *r = sc->remote[i];
        if (r->session_hash == hash && r->node == node &&
            strcmp(r->conn.session_id, session) == 0)
            return r;
    }
    return NULL;
}

/* The entry leaves: LEAVE (last for its user's last entry), then it is
 * freed (the caller drops an emptied scope). False: the LEAVE was not
 * built (the entry is gone all the same). Caller holds the lock. */
static bool remote_leave_locked(sc_bus_t *bus, shard_t *sh, sc__scope_t *sc,
                                sc__remote_t *r, after_t *af)
{
    bool last = user_release_locked(sc, r->conn.user_id);
    bool ok = announce_raw_locked(bus, sh, sc, SC_EVENT_LEAVE, &r->conn, last,
                                  NULL, af);
    size_t i = r->index;
    sc->remote[i] = sc->remote[--sc->nremote];
    sc->remote[i]->index = i;
    sc_conn_deinit(&r->conn);
    free(r);
    return ok;
}

static int remote_reserve(sc__scope_t *sc)
{
    if (sc->nremote < sc->remotecap)
        return 0;
    size_t cap = sc->remotecap ? sc->remotecap * 2 : 2;
    sc__remote_t **v = realloc(sc->remote, cap * sizeof *v);
    if (!v)
        return -1;
    sc->remote = v;
    sc->remotecap = cap;
    return 0;
}

int sc_bus_remote_join(sc_bus_t *bus, const char *scope, uint64_t node,
                       uint64_t gen, const sc_conn_t *conn)
{
    if (!bus || !scope || !*scope || !conn || !conn->session_id)
        return SC_EINVAL;
    /* the entry, made before the lock */
    sc__remote_t *r = calloc(1, sizeof *r);
    if (!r)
        return SC_ENOMEM;
    if (sc_conn_copy(&r->conn, conn) != SC_OK) {
        free(r);
        return SC_ENOMEM;
    }
    r->session_hash = sc__hash(conn->session_id);
    r->node = node;
    r->gen = gen;
    uint64_t hash = sc__hash(scope);
    shard_t *sh = shard_of(bus, hash);
    after_t af;
    after_init(&af);
    int rc = SC_ENOMEM;
    pthread_mutex_lock(&sh->lock);
    sc__scope_t *sc = scope_get_locked(bus, sh, scope, hash, NULL);
    sc__remote_t *old =
        sc ? remote_find_locked(sc, node, conn->session_id, r->session_hash)
           : NULL;
    if (old) { /* known: a newer gen, maybe a new meta */
        old->gen = gen;
        rc = SC_OK;
        /* the entry as it will be: only its meta changes */
        sc_conn_t view = old->conn;
        view.meta = r->conn.meta;
        view.meta_len = r->conn.meta_len;
        if (meta_eq(old->conn.meta, old->conn.meta_len, view.meta,
                    view.meta_len)) {
            /* nothing to tell */
        } else if (announce_raw_locked(bus, sh, sc, SC_EVENT_UPDATE, &view,
                                       false, NULL, &af)) {
            char *m = old->conn.meta;
            old->conn.meta = r->conn.meta;
            old->conn.meta_len = r->conn.meta_len;
            r->conn.meta = m; /* freed with r */
        } else {
            rc = SC_ENOMEM; /* the meta stays as it was */
        }
    } else if (sc && remote_reserve(sc) == 0) {
        sc__strmap_entry_t *user = NULL;
        bool first = true;
        const char *uid = conn->user_id;
        if (uid &&
            !(user = sc__strmap_upsert(&sc->users, uid, sc__hash(uid)))) {
            rc = SC_ENOMEM;
        } else {
            first = !user || user->value == NULL;
            if (announce_raw_locked(bus, sh, sc, SC_EVENT_JOIN, &r->conn, first,
                                    NULL, &af)) {
                if (user)
                    user->value = (void *)((uintptr_t)user->value + 1);
                r->index = sc->nremote;
                sc->remote[sc->nremote++] = r;
                r = NULL;
                rc = SC_OK;
            } else if (user && !user->value) {
                sc__strmap_remove(&sc->users, user);
            }
        }
    }
    if (sc && scope_empty(sc))
        scope_drop_locked(bus, sh, sc);
    pthread_mutex_unlock(&sh->lock);
    after_run(bus, &af);
    if (r) {
        sc_conn_deinit(&r->conn);
        free(r);
    }
    return rc;
}

int sc_bus_remote_leave(sc_bus_t *bus, const char *scope, uint64_t node,
                        const char *session_id)
{
    if (!bus || !scope || !*scope || !session_id)
        return SC_EINVAL;
    uint64_t hash = sc__hash(scope);
    shard_t *sh = shard_of(bus, hash);
    after_t af;
    after_init(&af);
    bool ok = true;
    pthread_mutex_lock(&sh->lock);
    sc__strmap_entry_t *e = sc__strmap_find(&sh->scopes, scope, hash);
    sc__scope_t *sc = e ? e->value : NULL;
    sc__remote_t *r =
        sc ? remote_find_locked(sc, node, session_id, sc__hash(session_id))
           : NULL;
    if (r) {
        ok = remote_leave_locked(bus, sh, sc, r, &af);
        if (scope_empty(sc))
            scope_drop_locked(bus, sh, sc);
    }
    pthread_mutex_unlock(&sh->lock);
    after_run(bus, &af);
    if (!ok)
        sc__bus_logf(bus, SC_LOG_ERROR,
                     "out of memory: a remote leave of scope='%s' was not "
                     "announced",
                     scope);
    return SC_OK;
}

struct remote_drop_ctx {
    sc_bus_t *bus;
    shard_t *sh;
    uint64_t node, below;
    size_t count;
    bool failed;
    after_t *af;
};

static void remote_drop_cb(sc__strmap_entry_t *e, void *ud)
{
    struct remote_drop_ctx *cx = ud;
    sc__scope_t *sc = e->value;
    for (size_t i = sc->nremote; i-- > 0;) {
        sc__remote_t *r = sc->remote[i];
        if (r->node != cx->node ||
            (cx->below != UINT64_MAX && r->gen >= cx->below))
            continue;
        if (!remote_leave_locked(cx->bus, cx->sh, sc, r, cx->af))
            cx->failed = true;
        cx->count++;
    }
    if (scope_empty(sc))
        scope_drop_locked(cx->bus, cx->sh, sc);
}

size_t sc_bus_remote_drop(sc_bus_t *bus, uint64_t node, uint64_t below)
{
    if (!bus)
        return 0;
    after_t af;
    after_init(&af);
    struct remote_drop_ctx cx = {
        .bus = bus, .node = node, .below = below, .af = &af};
    for (int i = 0; i < SHARDS; i++) {
        cx.sh = &bus->shards[i];
        pthread_mutex_lock(&cx.sh->lock);
        sc__strmap_each(&cx.sh->scopes, remote_drop_cb, &cx);
        pthread_mutex_unlock(&cx.sh->lock);
        after_run(bus, &af);
    }
    if (cx.failed)
        sc__bus_logf(bus, SC_LOG_ERROR,
                     "out of memory: a remote leave was not announced");
    return cx.count;
}

struct each_presence_ctx {
    sc_on_presence_fn fn;
    void *ud;
};

static void each_presence_cb(sc__strmap_entry_t *e, void *ud)
{
    struct each_presence_ctx *cx = ud;
    sc__scope_t *sc = e->value;
    for (size_t i = 0; i < sc->nsubs; i++)
        if (shown(sc->subs[i]))
            cx->fn(cx->ud, SC_EVENT_JOIN, e->key, &sc->subs[i]->_conn);
    for (size_t i = 0; i < sc->nheld; i++)
        cx->fn(cx->ud, SC_EVENT_JOIN, e->key, &sc->held[i]->conn);
}

void sc_bus_each_presence(sc_bus_t *bus, sc_on_presence_fn fn, void *ud)
{
    if (!bus || !fn)
        return;
    struct each_presence_ctx cx = {fn, ud};
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&bus->shards[i].lock);
        sc__strmap_each(&bus->shards[i].scopes, each_presence_cb, &cx);
        pthread_mutex_unlock(&bus->shards[i].lock);
    }
}

struct each_seq_ctx {
    void (*fn)(void *ud, const char *scope, uint64_t seq);
    void *ud;
};

static void each_seq_cb(sc__strmap_entry_t *e, void *ud)
{
    struct each_seq_ctx *cx = ud;
    const sc__scope_t *sc = e->value;
    if (sc->seq)
        cx->fn(cx->ud, e->key, sc->seq);
}

void sc_bus_each_seq(sc_bus_t *bus,
                     void (*fn)(void *ud, const char *scope, uint64_t seq),
                     void *ud)
{
    if (!bus || !fn)
        return;
    struct each_seq_ctx cx = {fn, ud};
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&bus->shards[i].lock);
        sc__strmap_each(&bus->shards[i].scopes, each_seq_cb, &cx);
        pthread_mutex_unlock(&bus->shards[i].lock);
    }
}

void sc_presence_free(sc_conn_t *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        sc_conn_deinit(&list[i]);
    free(list);
}

uint64_t sc_bus_scope_epoch(sc_bus_t *bus, const char *scope, uint64_t *seq_out)
{
    uint64_t hash = sc__hash(scope), epoch = 0, seq = 0;
    shard_t *sh = shard_of(bus, hash);
    pthread_mutex_lock(&sh->lock);
    sc__strmap_entry_t *e = sc__strmap_find(&sh->scopes, scope, hash);
    if (e) {
        epoch = ((sc__scope_t *)e->value)->epoch;
        seq = ((sc__scope_t *)e->value)->seq;
    }
    pthread_mutex_unlock(&sh->lock);
    if (seq_out)
        *seq_out = seq;
    return epoch;
}

uint64_t sc_bus_scope_seq(sc_bus_t *bus, const char *scope)
{
    uint64_t hash = sc__hash(scope), seq = 0;
    shard_t *sh = shard_of(bus, hash);
    pthread_mutex_lock(&sh->lock);
    sc__strmap_entry_t *e = sc__strmap_find(&sh->scopes, scope, hash);
    if (e)
        seq = ((sc__scope_t *)e->value)->seq;
    pthread_mutex_unlock(&sh->lock);
    return seq;
}

void sc_bus_stats(sc_bus_t *bus, sc_bus_stats_t *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < SHARDS; i++) {
        out->emitted +=
            atomic_load_explicit(&bus->shards[i].emitted, memory_order_relaxed);
        out->dropped +=
            atomic_load_explicit(&bus->shards[i].dropped, memory_order_relaxed);
    }
    out->subscribers = atomic_load(&bus->subscribers);
    out->scopes = atomic_load(&bus->scopes);
    out->queued_bytes = atomic_load(&bus->gauge->bytes);
    out->history_events = atomic_load(&bus->hist_events);
    out->history_bytes = atomic_load(&bus->hist_bytes);
    out->history_scopes = atomic_load(&bus->hist_scopes);
    out->history_evicted = atomic_load(&bus->hist_evicted);
}

/* ---- history: reading, recovering, expiring --------------------------- */

static bool since_valid(const sc_since_t *since)
{
    return since != NULL; /* a seq without an epoch just never recovers */
}

int sc_sub_recover(sc_sub_t *sub, const sc_since_t *since, bool *recovered,
                   uint64_t *seq_out)
{
    *recovered = false;
    if (seq_out)
        *seq_out = 0;
    if (!sub || !since_valid(since))
        return SC_EINVAL;
    sc_bus_t *bus = sub->_bus;
    shard_t *sh = shard_of(bus, sub->_hash);
    int rc = SC_OK;
    uint64_t cost = 0;
    sc_event_t **old = NULL;
    size_t old_i = 0, old_n = 0;
    pthread_mutex_lock(&sh->lock);
    sc__scope_t *sc = sub->_scope;
    if (!sc || sub->_superseded) {
        rc = SC_ECLOSED;
    } else {
        if (seq_out)
            *seq_out = sc->seq;
        sc_event_t **v;
        size_t n;
        if (recoverable(sc, since)) {
            if (!kept_collect_locked(sc, since->seq, sub, &v, &n)) {
                rc = SC_ENOMEM;
            } else {
                /* No producer pushes while the lock is held: the queue
                 * is the consumer's to empty, drops included. */
                sc_event_t *ev;
                while (sc__queue_pop(&sub->_queue, &ev, NULL)) {
                    cost += ev->_cost;
                    sc_event_unref(ev);
                }
                old = sub->_replay;
                old_i = sub->_replay_i;
                old_n = sub->_replay_n;
                sub->_replay = v;
                sub->_replay_n = n;
                sub->_replay_i = 0;
                *recovered = true;
            }
        }
    }
    pthread_mutex_unlock(&sh->lock);
    sc__owner_unqueue(sub->_owner, cost);
    for (size_t i = old_i; i < old_n; i++)
        sc_event_unref(old[i]);
    free(old);
    return rc;
}

int sc_bus_history(sc_bus_t *bus, const char *scope, const sc_since_t *since,
                   const char *user_id, size_t limit, sc_history_read_t *out)
{
    memset(out, 0, sizeof *out);
    if (!bus || !scope || !since_valid(since))
        return SC_EINVAL;
    uint64_t hash = sc__hash(scope);
    shard_t *sh = shard_of(bus, hash);
    int rc = SC_OK;
    pthread_mutex_lock(&sh->lock);
    sc__strmap_entry_t *e = sc__strmap_find(&sh->scopes, scope, hash);
    sc__scope_t *sc = e ? e->value : NULL;
    if (!sc) {
        out->recovered = since->seq == 0;
    } else {
        out->exists = true;
        out->epoch = sc->epoch;
        out->seq = sc->seq;
        out->recovered = recoverable(sc, since);
    }
    if (sc && out->recovered && since->seq < sc->seq && limit) {
        uint32_t skip = (uint32_t)(since->seq - (sc->seq - sc->nkept));
        size_t cap = sc->nkept - skip < limit ? sc->nkept - skip : limit;
        if (!(out->events = malloc(cap * sizeof *out->events)))
            rc = SC_ENOMEM;
        for (uint32_t i = skip; rc == SC_OK && i < sc->nkept; i++) {
            sc_event_t *ev = sc->kept[(sc->khead + i) & (sc->kcap - 1)].ev;
            if (!sc_event_audience_allows(ev, user_id))
                continue;
            if (out->n == cap) {
                out->more = true;
                break;
            }
            out->events[out->n++] = sc_event_ref(ev);
        }
    }
    pthread_mutex_unlock(&sh->lock);
    if (rc != SC_OK)
        sc_history_read_free(out);
    return rc;
}

void sc_history_read_free(sc_history_read_t *r)
{
    for (size_t i = 0; r && i < r->n; i++)
        sc_event_unref(r->events[i]);
    if (r) {
        free(r->events);
        memset(r, 0, sizeof *r);
    }
}

size_t sc_bus_expire_history(sc_bus_t *bus)
{
    if (!bus ||
        atomic_load_explicit(&bus->hist_events, memory_order_relaxed) == 0)
        return 0;
    double now = bus->cfg.clock(bus->cfg.clock_ud);
    size_t n = 0;
    for (int i = 0; i < SHARDS; i++) {
        shard_t *sh = &bus->shards[i];
        pthread_mutex_lock(&sh->lock);
        for (sc__scope_t *sc = sh->lru_head, *next; sc; sc = next) {
            next = sc->hnext;
            n += kept_age_locked(bus, sh, sc, now);
            if (scope_empty(sc))
                scope_drop_locked(bus, sh, sc);
        }
        pthread_mutex_unlock(&sh->lock);
    }
    return n;
}
