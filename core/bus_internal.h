/*
 * Private to core/: the layouts shared by bus.c (registry, producer side),
 * sub.c (subscriptions, consumer side) and owner.c (owners and wakes). A
 * subscription's queue is its own module, queue.h, embedded here.
 *
 * Fields are tagged with who may touch them: {shard} = the scope's shard
 * lock, {owner} = the owner thread, {atomic} = any thread through atomics,
 * {const} = set at creation. The queue's fields carry the same tags in
 * queue.h.
 */
#ifndef SC_BUS_INTERNAL_H
#define SC_BUS_INTERNAL_H

#include "bus.h"
#include "event_internal.h"
#include "queue.h"
#include "strmap.h"

#include <pthread.h>
#include <stdatomic.h>

/* What an owner without a wake callback waits on (sc_owner_wait). */
struct sc__owner_sync {
    pthread_mutex_t lock; /* any thread locks it */
    pthread_cond_t cond;  /* waited on under lock */
};

/* 128 bytes, aligned to 64 (sc_owner_create): the first cache line holds
 * what producers touch at every push, the second what the owner's thread
 * writes at every pop. Server owners (one per connection) have a wake
 * callback and no sync struct: an idle connection's owner is these 128
 * bytes. */
struct sc_owner {
    _Atomic int _pending; /* {atomic} 1 between a wake and the next re-arm */
    uint64_t _budget;     /* {const} bytes its queues may hold; 0: none */
    /* With a budget, what its queues hold is _in - _out: producers add an
     * event's cost to _in before the push (taking it back if the push
     * fails); the owner's thread counts what it took in _out, a plain
     * store (one writer), so a pop costs no locked instruction. Producers
     * compare with _out_seen, an older _out (so the estimate is never
     * low), and read _out itself only near the budget. */
    _Atomic uint64_t _in;         /* {atomic} */
    _Atomic uint64_t _out_seen;   /* {atomic} a value _out had */
    sc_wake_fn _wake;             /* {const} */
    void *_ud;                    /* {const} */
    struct sc__owner_sync *_sync; /* {const} built-in wake only, else NULL */
    /* the owner thread's line */
    _Alignas(64) _Atomic uint64_t _out; /* {owner} written, {atomic} read */
    uint64_t _out_local;                /* {owner} the value of _out */
};

struct sc__scope;

struct sc_sub {
    sc_bus_t *_bus;     /* {const} */
    char *_scope_name;  /* {const} */
    uint64_t _hash;     /* {const} */
    sc_owner_t *_owner; /* {const} */
    /* {const}, but for meta and meta_len: the owner replaces them under
     * {shard} (sc_bus_presence_update), so they are read on the owner's
     * thread or under {shard} */
    sc_conn_t _conn;
    uint64_t _session_hash; /* {const} sc__hash(_conn.session_id) */
    bool _has_conn;         /* {const} */
    bool _echo;             /* {const} */
    bool _quiet;            /* {const} */
    bool _hidden;           /* {const} */
    bool _adopt;            /* {const} sc_sub_opts_t.adopt */
    /* {shard} a newer subscription of the same session took over its
     * presence entry (sc_sub_opts_t.adopt): it is shown no more and leaves
     * unannounced */
    bool _superseded;
    sc_on_disconnect_fn _on_disconnect; /* {const} */
    void *_on_disconnect_ud;            /* {const} */
    struct sc__scope *_scope;           /* {shard} NULL once removed */
    size_t _index;                      /* {shard} position in _scope->subs */
    /* The bounded queue of event references: pushed by the producer
     * ({shard}), popped by the owner; see queue.h. Where its fields always
     * were in this struct. */
    sc__queue_t _queue;
    _Atomic int _close_reason; /* {atomic} set once, before the wake */
    uint64_t _epoch; /* {shard} set when it joins its scope; then fixed */
    bool _recovered; /* {shard} set with the replay, read by the owner
                        after the call that set it */
    /* Kept events to take before the queue (references), set under
     * {shard} by the owner's own call (subscribe, sc_sub_recover), then
     * {owner}. */
    sc_event_t **_replay;
    size_t _replay_n, _replay_i;
};

/* Releases the replay's references not taken. Thread: owner. */
void sc__sub_replay_clear(sc_sub_t *sub);

/* Marks the owner woken and calls its wake callback unless it already was
 * since the last re-arm. Call it after the store that published an item
 * (sc__queue_push) or a close reason: the wake protocol in owner.c.
 * Thread: any (producers, with a shard lock). */
void sc__owner_wake(sc_owner_t *o);

/* Whether `o`'s budget refuses an event of `cost`. Thread: producer. */
static inline bool sc__owner_over_budget(sc_owner_t *o, uint32_t cost)
{
    if (!o->_budget)
        return false;
    /* an out read before in never passes it: q is never negative */
    uint64_t out = atomic_load_explicit(&o->_out_seen, memory_order_relaxed);
    uint64_t q = atomic_load_explicit(&o->_in, memory_order_relaxed) - out;
    if (q == 0 || q + cost <= o->_budget)
        return false; /* within it even by the old count */
    out = atomic_load_explicit(&o->_out, memory_order_relaxed);
    atomic_store_explicit(&o->_out_seen, out, memory_order_relaxed);
    q = atomic_load_explicit(&o->_in, memory_order_relaxed) - out;
    return q != 0 && q + cost > o->_budget;
}

/* Counts an event of `cost` in before its push. Thread: producer. */
static inline void sc__owner_count_in(sc_owner_t *o, uint32_t cost)
{
    if (o->_budget)
        atomic_fetch_add_explicit(&o->_in, cost, memory_order_relaxed);
}

/* A push counted in failed: takes it back. Thread: producer. */
static inline void sc__owner_uncount_in(sc_owner_t *o, uint32_t cost)
{
    if (o->_budget)
        atomic_fetch_sub_explicit(&o->_in, cost, memory_order_relaxed);
}

/* Takes `cost` off the owner's queued bytes (events left its queues).
 * Thread: owner. */
static inline void sc__owner_unqueue(sc_owner_t *o, uint64_t cost)
{
    if (o->_budget && cost) {
        o->_out_local += cost;
        atomic_store_explicit(&o->_out, o->_out_local, memory_order_relaxed);
    }
}

/* Logs through the bus's logger (printf format). Thread: any, never with
 * a bus lock held. */
void sc__bus_logf(sc_bus_t *bus, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Removes `sub` from its scope (announcing LEAVE unless closing; with
 * `hold`, holding its presence entry instead when the bus has a grace:
 * sc_sub_destroy_hold) and releases what the bus holds for it.
 * Thread: any. */
void sc__bus_unsubscribe(sc_bus_t *bus, sc_sub_t *sub, bool hold);

#endif
