/*
 * Private to core/: a subscription's bounded queue of event references.
 *
 * Purpose
 *   Every subscription (sc_sub_t) embeds one sc__queue_t. The bus pushes a
 *   reference to each event it fans out; the subscription's owner pops them
 *   in order. A full queue drops the newest event and remembers how many
 *   were dropped, so the consumer learns of every drop exactly once: on the
 *   next item it takes (`dropped_before`) or, when the queue is empty, as
 *   trailing drops.
 *
 * Design
 *   The queue is a single-producer single-consumer ring of slots. The
 *   producer side (sc__queue_push, sc__queue_grow) always runs with the
 *   scope's shard lock held, so emitters into one scope are serialised and
 *   see one seq order; the consumer side (sc__queue_pop, sc__queue_release)
 *   runs on the owner's thread and takes no lock. Head and tail are free-
 *   running 32-bit indices (slot = index & mask; they wrap at 2^32).
 *
 *   The ring grows on demand, so an idle subscription holds none: the
 *   first push allocates SC__RING_MIN slots, and a push that finds the ring
 *   full while fewer than `maxsize` items are queued copies the live slots
 *   into a ring twice as large (at most `ring_max`, the power of two >=
 *   maxsize), publishes it and hands the old one to the consumer through
 *   the `_retired` stack. The consumer frees retired rings before its next
 *   read of `_ring`.
 *
 *   The tail index (high 32 bits) and the count of drops not yet reported
 *   (low 32 bits) share one word, `_tailgap`, so that the consumer can take
 *   trailing drops only while the ring is still empty, without a lock: it
 *   clears the gap with a compare-and-swap that fails if a push moved the
 *   tail meanwhile. Only the producer moves the tail or adds to the gap;
 *   the consumer may only take a non-zero gap (CAS to zero). The gap
 *   saturates at UINT32_MAX and never carries into the tail.
 *
 * Memory ordering and the wake protocol
 *   A push writes the slot, then publishes it with a seq_cst store of
 *   `_tailgap`; the consumer reads `_tailgap` (seq_cst) before the slot and
 *   publishes its progress with a release store of `_head`, which the
 *   producer reads (acquire) before reusing a slot. A grown ring is stored
 *   to `_ring` (release) before the tail that needed it, so a consumer that
 *   saw that tail loads (acquire) the new ring with its copied slots.
 *
 *   After a push that returns true the caller wakes the owner
 *   (sc__owner_wake, owner.c), which reads the owner's `_pending` flag
 *   (seq_cst) after that store; the consumer clears `_pending`
 *   (sc_owner_rearm, seq_cst) before it pops (seq_cst read of `_tailgap`).
 *   Either the producer sees the flag cleared and wakes, or the consumer
 *   sees the item: no wake-up is lost, and an owner that has not re-armed
 *   is never woken twice. (After h2o's multithread queue.)
 *
 * Field tags: {shard} = the scope's shard lock (the producer), {owner} = the
 * owner thread (the consumer), {atomic} = any thread through atomics,
 * {const} = set by sc__queue_init.
 */
#ifndef SC_QUEUE_H
#define SC_QUEUE_H

#include "event.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The two halves of `_tailgap`. */
#define SC__TAIL(w) ((uint32_t)((w) >> 32))
#define SC__GAP(w) ((uint32_t)(w))
#define SC__GAP_MASK 0xffffffffULL

typedef struct sc__slot {
    sc_event_t *ev;          /* a reference, owned by the queue */
    uint32_t dropped_before; /* items dropped right before this one */
} sc__slot_t;

typedef struct sc__ring {
    struct sc__ring *next; /* in the retired stack */
    uint32_t mask;         /* size - 1 (size is a power of two) */
    sc__slot_t slots[];
} sc__ring_t;

/* The first ring a queue gets, in slots (less when ring_max is smaller). */
#define SC__RING_MIN 8

/* Embedded in sc_sub_t where these fields always were, in the same order,
 * so the subscription's layout (which fanout_locked prefetches) did not
 * change when the queue became its own module. */
typedef struct sc__queue {
    uint32_t _maxsize;              /* {const} bound on queued items */
    uint32_t _ring_max;             /* {const} largest ring (pow2 >= maxsize) */
    _Atomic(sc__ring_t *) _ring;    /* {shard} writes, {owner} reads; NULL
                                       until the first push */
    _Atomic(sc__ring_t *) _retired; /* {atomic} stack of replaced rings */
    uint32_t _head_cache;           /* {shard} producer's view of _head */
    _Atomic uint64_t _tailgap;      /* {atomic} tail (high 32 bits), drops
                                       not yet reported (low 32 bits) */
    _Atomic uint32_t _head;         /* {atomic} written by the consumer */
    _Atomic uint64_t _dropped_total; /* {atomic} every drop ever counted */
} sc__queue_t;

/* Makes `q` an empty queue bounded by `maxsize` (>= 1) items. It holds no
 * ring until the first push. Cannot fail.
 * Thread: the creator, before `q` is shared. */
void sc__queue_init(sc__queue_t *q, uint32_t maxsize);

/* Replaces the full ring of `cap` slots (0: none yet) by one twice as
 * large (SC__RING_MIN for the first, never above `_ring_max`) holding the
 * same items [_head_cache, tail), and retires the old ring to the consumer.
 * Returns false when out of memory (nothing changed). Only for
 * sc__queue_push. Thread: producer (shard lock held). */
bool sc__queue_grow(sc__queue_t *q, uint32_t tail, uint32_t cap);

/* Counts one drop (the newest event, not queued): reported to the
 * consumer with the next item or as trailing drops. Thread: producer
 * (shard lock held). */
static inline void sc__queue_drop(sc__queue_t *q)
{
    uint64_t w = atomic_load_explicit(&q->_tailgap, memory_order_relaxed);
    while (SC__GAP(w) != UINT32_MAX && /* saturate, never carry */
           !atomic_compare_exchange_weak(&q->_tailgap, &w, w + 1))
        ;
    atomic_fetch_add_explicit(&q->_dropped_total, 1, memory_order_relaxed);
}

/* Queues `ev` (a reference the queue now owns) or, when `_maxsize` items
 * are queued already (or a needed ring cannot be allocated), counts a drop
 * and returns false (the caller keeps `ev`). On true the caller must then
 * wake the queue's owner (see the wake protocol above). Always inlined:
 * it runs once per subscriber in every fan-out and must not cost a call.
 * Thread: producer (shard lock held). */
static inline bool sc__queue_push(sc__queue_t *q, sc_event_t *ev)
    __attribute__((always_inline));

static inline bool sc__queue_push(sc__queue_t *q, sc_event_t *ev)
{
    uint64_t w = atomic_load_explicit(&q->_tailgap, memory_order_relaxed);
    uint32_t tail = SC__TAIL(w);
    sc__ring_t *r = atomic_load_explicit(&q->_ring, memory_order_relaxed);
    uint32_t cap = r ? r->mask + 1 : 0;
    uint32_t used = tail - q->_head_cache;
    if (used >= q->_maxsize || used >= cap) {
        /* Looks full by the cached head: read the consumer's progress. */
        q->_head_cache = atomic_load_explicit(&q->_head, memory_order_acquire);
        used = tail - q->_head_cache;
        bool full = used >= q->_maxsize;
        if (!full && used >= cap) {
            full = !sc__queue_grow(q, tail, cap); /* out of memory */
            r = atomic_load_explicit(&q->_ring, memory_order_relaxed);
        }
        if (full) {
            sc__queue_drop(q);
            return false;
        }
    }
    /* Take the pending gap into this item's slot. */
    uint32_t gap = SC__GAP(w);
    while (gap &&
           !atomic_compare_exchange_weak(&q->_tailgap, &w, w & ~SC__GAP_MASK))
        gap = SC__GAP(w); /* the consumer took it meanwhile */
    sc__slot_t *slot = &r->slots[tail & r->mask];
    slot->ev = ev;
    slot->dropped_before = gap;
    /* The seq_cst publish of the wake protocol; the gap stays zero. */
    atomic_store(&q->_tailgap, (uint64_t)(tail + 1) << 32);
    return true;
}

/* Takes the oldest item: on true *ev is the reference the queue held (now
 * the caller's) and *dropped (optional) the drops right before it. On false
 * (empty) *ev is NULL and *dropped receives the trailing drops, which are
 * then reported: each drop is reported exactly once. Frees rings the
 * producer retired. Thread: owner (the consumer). */
bool sc__queue_pop(sc__queue_t *q, sc_event_t **ev, uint32_t *dropped);

/* Drops the reference of every queued item (a subscription that ends) and
 * leaves the queue empty; unreported drops stay unreported. Returns the
 * summed cost (event_internal.h) of the items released. Thread: owner,
 * once the producer can no longer push (the subscription was removed). */
uint64_t sc__queue_release(sc__queue_t *q);

/* Frees the rings (call sc__queue_release first: queued references are
 * not dropped here). `q` must not be used afterwards. Thread: owner, after
 * sc__queue_release. */
void sc__queue_deinit(sc__queue_t *q);

/* Number of items queued now. Thread: owner (a snapshot elsewhere). */
static inline size_t sc__queue_pending(const sc__queue_t *q)
{
    sc__queue_t *m = (sc__queue_t *)q; /* atomic loads take non-const */
    return SC__TAIL(atomic_load(&m->_tailgap)) - atomic_load(&m->_head);
}

/* Total items ever dropped. Thread: any. */
static inline uint64_t sc__queue_dropped_total(const sc__queue_t *q)
{
    return atomic_load(&((sc__queue_t *)q)->_dropped_total);
}

/* Hints the CPU to load the line sc__queue_pop reads first (`_ring`, next
 * to `_tailgap` and `_head`). No effect on behaviour. Thread: owner. */
static inline void sc__queue_prefetch(const sc__queue_t *q)
{
    __builtin_prefetch(&q->_ring);
}

#endif
