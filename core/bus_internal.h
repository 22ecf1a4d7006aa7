/*
 * Private to core/: the layouts shared by bus.c (registry, producer side)
 * and sub.c (owners, consumer side).
 *
 * A subscription's queue is a single-producer single-consumer ring of
 * slots. The producer side is always called with the scope's shard lock
 * held (so emitters into one scope are serialised and see one seq order);
 * the consumer is the owner's thread and takes no lock. Fields are tagged
 * with who may touch them: {shard} = the scope's shard lock, {owner} = the
 * owner thread, {atomic} = any thread through atomics, {const} = set at
 * creation.
 */
#ifndef SC_BUS_INTERNAL_H
#define SC_BUS_INTERNAL_H

#include "bus.h"
#include "event_internal.h"
#include "strmap.h"

#include <pthread.h>
#include <stdatomic.h>

#define SC__TAIL(w) ((uint32_t)((w) >> 32))
#define SC__GAP(w) ((uint32_t)(w))
#define SC__GAP_MASK 0xffffffffULL

typedef struct sc__slot {
    sc_event_t *ev;
    uint32_t dropped_before; /* items dropped right before this one */
} sc__slot_t;

typedef struct sc__ring {
    struct sc__ring *next; /* in the retired stack */
    uint32_t mask;         /* size - 1 (size is a power of two) */
    sc__slot_t slots[];
} sc__ring_t;

/* The first ring a subscription gets, in slots. */
#define SC__RING_MIN 8

struct sc_owner {
    _Atomic int _pending; /* 1 between a wake and the next re-arm */
    sc_wake_fn _wake;     /* {const} */
    void *_ud;            /* {const} */
    bool _builtin;        /* {const} uses _lock/_cond below */
    pthread_mutex_t _lock;
    pthread_cond_t _cond;
};

struct sc__scope;

struct sc_sub {
    sc_bus_t *_bus;               /* {const} */
    char *_scope_name;            /* {const} */
    uint64_t _hash;               /* {const} */
    sc_owner_t *_owner;           /* {const} */
    sc_conn_t _conn;              /* {const} */
    uint64_t _session_hash;       /* {const} sc__hash(_conn.session_id) */
    bool _has_conn;               /* {const} */
    bool _echo;                   /* {const} */
    bool _quiet;                  /* {const} */
    bool _hidden;                 /* {const} */
    sc_on_disconnect_fn _on_disconnect; /* {const} */
    void *_on_disconnect_ud;      /* {const} */
    struct sc__scope *_scope;     /* {shard} NULL once removed */
    size_t _index;                /* {shard} position in _scope->subs */
    uint32_t _maxsize;            /* {const} */
    uint32_t _ring_max;           /* {const} largest ring (pow2 >= maxsize) */
    /* The ring grows on demand (an idle subscription holds none): the
     * producer copies the live slots into a twice larger ring, publishes
     * it and hands the old one to the consumer through _retired, which
     * frees it before its next read of _ring. */
    _Atomic(sc__ring_t *) _ring;  /* {shard} writes, {owner} reads */
    _Atomic(sc__ring_t *) _retired; /* {atomic} stack of replaced rings */
    uint32_t _head_cache;         /* {shard} producer's view of _head */
    /* {atomic} tail index (high 32 bits) and drops not yet reported (low
     * 32 bits) in one word, so the consumer can take trailing drops only
     * while the ring is still empty, without a lock (see sub.c). */
    _Atomic uint64_t _tailgap;
    _Atomic uint32_t _head;       /* {atomic} written by the consumer */
    _Atomic uint64_t _dropped_total; /* {atomic} */
    _Atomic int _close_reason;    /* {atomic} set once, before the wake */
};

/* Marks the owner woken and calls its wake callback unless it already was
 * since the last re-arm. Thread: any (producers, with a shard lock). */
void sc__owner_wake(sc_owner_t *o);

/* Releases every queued event of `sub`. Thread: owner, after removal. */
void sc__sub_release_queue(sc_sub_t *sub);

/* Logs through the bus's logger (printf format). Never with a lock held. */
void sc__bus_logf(sc_bus_t *bus, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Removes `sub` from its scope (announcing LEAVE unless closing) and
 * releases what the bus holds for it. Thread: any. */
void sc__bus_unsubscribe(sc_bus_t *bus, sc_sub_t *sub);

#endif
