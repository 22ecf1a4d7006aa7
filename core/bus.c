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
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SHARDS 64

typedef struct sc__scope {
    sc__strmap_entry_t *entry; /* key = scope name, value = this */
    uint64_t seq;
    sc_sub_t **subs;
    size_t nsubs, cap;
    sc__strmap_t users; /* user id -> live subscriptions (uintptr_t) */
    double warn_last;   /* drop-warning throttle */
    uint64_t warn_count;
    bool warned;
} sc__scope_t;

typedef struct shard {
    _Alignas(64) pthread_mutex_t lock;
    sc__strmap_t scopes;      /* {lock} */
    _Atomic uint64_t emitted; /* incremented under lock, read anywhere */
    _Atomic uint64_t dropped;
} shard_t;

struct sc_bus {
    sc_bus_config_t cfg;
    sc__gauge_t *gauge; /* events held by queues (each once); the bus
                           holds one reference, each queued event one */
    _Atomic uint64_t subscribers;
    _Atomic uint64_t scopes;
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
    free(sc);
}

/* Removes an empty scope from its shard. */
static void scope_drop_locked(sc_bus_t *bus, shard_t *sh, sc__scope_t *sc)
{
    sc__strmap_remove(&sh->scopes, sc->entry);
    scope_free(sc);
    atomic_fetch_sub(&bus->scopes, 1);
}

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
    if (!entry) {
        atomic_fetch_add_explicit(&sh->emitted, 1, memory_order_relaxed);
        pthread_mutex_unlock(&sh->lock);
        return SC_OK;
    }
    sc__scope_t *sc = entry->value;
    sc_event_t *ev = sc__event_create_change(e, sc->seq + 1);
    if (!ev || encode(bus, ev) != 0) {
        pthread_mutex_unlock(&sh->lock);
        sc_event_unref(ev);
        return SC_ENOMEM;
    }
    atomic_fetch_add_explicit(&sh->emitted, 1, memory_order_relaxed);
    sc->seq++;
    fanout_locked(bus, sh, sc, ev, NULL, &af);
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

/* The scope entry for `name`, created (empty) when missing. */
static sc__scope_t *scope_get_locked(sc_bus_t *bus, shard_t *sh,
                                     const char *name, uint64_t hash)
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

/* Announces `sub` joining to the scope's others and adds it. Every
 * allocation happens before anything changes, so failure leaves the scope
 * as it was. Caller holds the lock. */
static int attach_locked(sc_bus_t *bus, shard_t *sh, sc__scope_t *sc,
                         sc_sub_t *sub, after_t *af)
{
    sc__strmap_entry_t *user = NULL;
    bool first = true;
    if (reserve_sub_slot(sc) != 0)
        return SC_ENOMEM;
    bool shown = sub->_has_conn && !sub->_hidden;
    if (shown && sub->_conn.user_id) {
        const char *uid = sub->_conn.user_id;
        user = sc__strmap_upsert(&sc->users, uid, sc__hash(uid));
        if (!user)
            return SC_ENOMEM;
        first = user->value == NULL;
    }
    if (shown && sc->nsubs > 0) {
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
    sc__scope_t *sc = scope_get_locked(bus, sh, scope, sub->_hash);
    if (sc) {
        rc = attach_locked(bus, sh, sc, sub, &af);
        if (rc == SC_OK && seq_out)
            *seq_out = sc->seq;
        if (rc != SC_OK && sc->nsubs == 0)
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

/* Takes `sub` out of `sc` (not freeing an emptied scope). Returns the
 * user-level `last` flag. Caller holds the lock. */
static bool detach_locked(sc_bus_t *bus, sc__scope_t *sc, sc_sub_t *sub)
{
    size_t i = sub->_index;
    sc->subs[i] = sc->subs[--sc->nsubs];
    sc->subs[i]->_index = i;
    sub->_scope = NULL;
    atomic_fetch_sub(&bus->subscribers, 1);
    if (!sub->_has_conn || sub->_hidden || !sub->_conn.user_id)
        return true;
    const char *uid = sub->_conn.user_id;
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

/* Detaches `sub` and tells the scope's others. Returns false when the LEAVE
 * event could not be built (out of memory; the caller logs it). */
static bool leave_locked(sc_bus_t *bus, shard_t *sh, sc__scope_t *sc,
                         sc_sub_t *sub, after_t *af)
{
    bool last = detach_locked(bus, sc, sub);
    if (!sub->_has_conn || sub->_hidden || sc->nsubs == 0)
        return true;
    sc_event_t *leave = sc__event_create_presence(
        SC_EVENT_LEAVE, sub->_scope_name, &sub->_conn, last);
    bool ok = leave && encode(bus, leave) == 0;
    if (ok)
        fanout_locked(bus, sh, sc, leave, NULL, af);
    sc_event_unref(leave);
    return ok;
}

void sc__bus_unsubscribe(sc_bus_t *bus, sc_sub_t *sub)
{
    shard_t *sh = shard_of(bus, sub->_hash);
    after_t af;
    after_init(&af);
    bool ok = true;
    pthread_mutex_lock(&sh->lock);
    sc__scope_t *sc = sub->_scope;
    if (sc) {
        ok = leave_locked(bus, sh, sc, sub, &af);
        if (sc->nsubs == 0)
            scope_drop_locked(bus, sh, sc);
    }
    pthread_mutex_unlock(&sh->lock);
    after_run(bus, &af);
    if (!ok)
        sc__bus_logf(bus, SC_LOG_ERROR,
                     "out of memory: leave of scope='%s' not announced",
                     sub->_scope_name);
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
    if (!sc) {
        rc = SC_ECLOSED; /* closed or kicked: its end is on its way */
    } else if (sc->nsubs > 1 && encode(bus, ev) != 0) {
        rc = SC_ENOMEM;
    } else {
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
    if (sc->nsubs == 0)
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
    if (sc && sc->nsubs && !(v = calloc(sc->nsubs, sizeof *v)))
        rc = SC_ENOMEM;
    for (size_t i = 0; v && sc && i < sc->nsubs; i++) {
        if (!sc->subs[i]->_has_conn || sc->subs[i]->_hidden)
            continue;
        if (sc_conn_copy(&v[count], &sc->subs[i]->_conn) != SC_OK) {
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

void sc_presence_free(sc_conn_t *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        sc_conn_deinit(&list[i]);
    free(list);
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
}
