/*
 * A subscription's bounded queue: the out-of-line half (see queue.h for the
 * design and the memory-ordering and wake protocol).
 *
 * Here are the parts that are not on the fan-out's per-subscriber path:
 * setting a queue up, growing its ring (the producer, with the shard lock
 * held, a few times per subscription at most), and the consumer side:
 * popping, freeing retired rings, releasing what is still queued when the
 * subscription ends. sc__queue_push is inline in queue.h.
 */
#include "queue.h"
#include "event_internal.h"

#include <stdlib.h>

/* The smallest power of two >= maxsize (maxsize >= 1). */
static uint32_t ring_size(uint32_t maxsize)
{
    uint32_t n = 1;
    while (n < maxsize)
        n <<= 1;
    return n;
}

void sc__queue_init(sc__queue_t *q, uint32_t maxsize)
{
    q->_maxsize = maxsize;
    q->_ring_max = ring_size(maxsize);
    atomic_init(&q->_ring, NULL);
    atomic_init(&q->_retired, NULL);
    q->_head_cache = 0;
    atomic_init(&q->_tailgap, 0);
    atomic_init(&q->_head, 0);
    atomic_init(&q->_dropped_total, 0);
}

bool sc__queue_grow(sc__queue_t *q, uint32_t tail, uint32_t cap)
{
    sc__ring_t *old = atomic_load_explicit(&q->_ring, memory_order_relaxed);
    uint32_t size = cap ? cap * 2 : SC__RING_MIN;
    if (size > q->_ring_max)
        size = q->_ring_max;
    sc__ring_t *r = malloc(sizeof *r + (size_t)size * sizeof r->slots[0]);
    if (!r)
        return false;
    r->next = NULL;
    r->mask = size - 1;
    for (uint32_t i = q->_head_cache; old && i != tail; i++)
        r->slots[i & r->mask] = old->slots[i & old->mask];
    /* Release: the consumer that loads the new ring (acquire) sees the
     * copied slots. */
    atomic_store_explicit(&q->_ring, r, memory_order_release);
    if (old) {
        old->next = atomic_load(&q->_retired);
        while (!atomic_compare_exchange_weak(&q->_retired, &old->next, old))
            ;
    }
    return true;
}

static void free_rings(sc__ring_t *r)
{
    while (r) {
        sc__ring_t *next = r->next;
        free(r);
        r = next;
    }
}

/* The ring to read, after freeing the ones the producer replaced. A ring
 * retired before the exchange was replaced before it too, so the ring
 * loaded after it is never one of those freed. Thread: owner. */
static sc__ring_t *current_ring(sc__queue_t *q)
{
    if (atomic_load_explicit(&q->_retired, memory_order_relaxed))
        free_rings(atomic_exchange(&q->_retired, NULL));
    return atomic_load_explicit(&q->_ring, memory_order_acquire);
}

bool sc__queue_pop(sc__queue_t *q, sc_event_t **ev, uint32_t *dropped)
{
    uint32_t head = atomic_load_explicit(&q->_head, memory_order_relaxed);
    uint64_t w = atomic_load(&q->_tailgap); /* seq_cst: the wake protocol */
    for (;;) {
        if (head != SC__TAIL(w)) {
            sc__ring_t *r = current_ring(q);
            sc__slot_t *slot = &r->slots[head & r->mask];
            *ev = slot->ev;
            if (dropped)
                *dropped = slot->dropped_before;
            /* Release: the producer may reuse the slot once it sees it. */
            atomic_store_explicit(&q->_head, head + 1, memory_order_release);
            return true;
        }
        /* Empty: drops counted now came after the last item. Take them
         * only if the word is unchanged (no push slipped in between). */
        if (!SC__GAP(w) ||
            atomic_compare_exchange_strong(&q->_tailgap, &w, w & ~SC__GAP_MASK))
            break;
    }
    *ev = NULL;
    if (dropped)
        *dropped = SC__GAP(w);
    return false;
}

uint64_t sc__queue_release(sc__queue_t *q)
{
    uint32_t head = atomic_load(&q->_head);
    uint32_t tail = SC__TAIL(atomic_load(&q->_tailgap));
    sc__ring_t *r = head != tail ? current_ring(q) : NULL;
    uint64_t cost = 0;
    for (; head != tail; head++) {
        sc_event_t *ev = r->slots[head & r->mask].ev;
        cost += ev->_cost;
        sc_event_unref(ev);
    }
    atomic_store(&q->_head, head);
    return cost;
}

void sc__queue_deinit(sc__queue_t *q)
{
    free_rings(atomic_exchange(&q->_retired, NULL));
    free(atomic_exchange(&q->_ring, NULL));
}
