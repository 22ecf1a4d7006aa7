/*
 * Owners and the consumer side of subscriptions (see bus.h).
 *
 * Wake protocol (after h2o's multithread queue): a producer publishes an
 * item (seq_cst store of _tailgap) and then reads the owner's _pending flag
 * (seq_cst); the consumer clears _pending (sc_owner_rearm, seq_cst) and
 * then reads _tailgap (seq_cst). Either the producer sees the flag cleared and
 * wakes, or the consumer sees the item: no wake-up is lost, and an owner
 * that has not re-armed is never woken twice.
 */
#include "bus_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

static void builtin_wake(void *ud)
{
    sc_owner_t *o = ud;
    pthread_mutex_lock(&o->_lock);
    pthread_cond_broadcast(&o->_cond);
    pthread_mutex_unlock(&o->_lock);
}

int sc_owner_create(sc_wake_fn wake, void *ud, sc_owner_t **out)
{
    *out = NULL;
    sc_owner_t *o = calloc(1, sizeof *o);
    if (!o)
        return SC_ENOMEM;
    atomic_init(&o->_pending, 0);
    if (wake) {
        o->_wake = wake;
        o->_ud = ud;
    } else {
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        int rc = pthread_cond_init(&o->_cond, &attr);
        pthread_condattr_destroy(&attr);
        if (rc != 0 || pthread_mutex_init(&o->_lock, NULL) != 0) {
            if (rc == 0)
                pthread_cond_destroy(&o->_cond);
            free(o);
            return SC_ENOMEM;
        }
        o->_builtin = true;
        o->_wake = builtin_wake;
        o->_ud = o;
    }
    *out = o;
    return SC_OK;
}

void sc_owner_destroy(sc_owner_t *o)
{
    if (!o)
        return;
    if (o->_builtin) {
        pthread_cond_destroy(&o->_cond);
        pthread_mutex_destroy(&o->_lock);
    }
    free(o);
}

void sc__owner_wake(sc_owner_t *o)
{
    if (atomic_load(&o->_pending))
        return;
    if (atomic_exchange(&o->_pending, 1))
        return;
    o->_wake(o->_ud);
}

void sc_owner_rearm(sc_owner_t *o)
{
    atomic_store(&o->_pending, 0);
}

int sc_owner_wait(sc_owner_t *o, int timeout_ms)
{
    if (!o->_builtin)
        return SC_EINVAL;
    struct timespec deadline;
    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    int rc = SC_OK;
    pthread_mutex_lock(&o->_lock);
    while (!atomic_load(&o->_pending)) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&o->_cond, &o->_lock);
        } else if (pthread_cond_timedwait(&o->_cond, &o->_lock, &deadline) ==
                   ETIMEDOUT) {
            rc = atomic_load(&o->_pending) ? SC_OK : SC_ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&o->_lock);
    return rc;
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
 * loaded after it is never one of those freed. */
static sc__ring_t *current_ring(sc_sub_t *sub)
{
    if (atomic_load_explicit(&sub->_retired, memory_order_relaxed))
        free_rings(atomic_exchange(&sub->_retired, NULL));
    return atomic_load_explicit(&sub->_ring, memory_order_acquire);
}

void sc_sub_prefetch(const sc_sub_t *sub)
{
    __builtin_prefetch(&sub->_ring);
    __builtin_prefetch(&sub->_close_reason);
}

int sc_sub_next(sc_sub_t *sub, sc_event_t **ev, uint32_t *dropped)
{
    /* The close reason is read before the ring: the bus removes a
     * subscription (no more pushes) before it sets the reason. */
    int reason = atomic_load(&sub->_close_reason);
    uint32_t head = atomic_load_explicit(&sub->_head, memory_order_relaxed);
    uint64_t w = atomic_load(&sub->_tailgap);
    for (;;) {
        if (head != SC__TAIL(w)) {
            sc__ring_t *r = current_ring(sub);
            sc__slot_t *slot = &r->slots[head & r->mask];
            *ev = slot->ev;
            if (dropped)
                *dropped = slot->dropped_before;
            atomic_store_explicit(&sub->_head, head + 1,
                                  memory_order_release);
            return SC_OK;
        }
        /* Empty: drops counted now came after the last item. Take them
         * only if the word is unchanged (no push slipped in between). */
        if (!SC__GAP(w) ||
            atomic_compare_exchange_strong(&sub->_tailgap, &w,
                                           w & ~SC__GAP_MASK))
            break;
    }
    *ev = NULL;
    if (dropped)
        *dropped = SC__GAP(w);
    return reason != SC_CLOSE_NONE ? SC_ECLOSED : SC_EAGAIN;
}

int sc_sub_wait(sc_sub_t *sub, sc_event_t **ev, uint32_t *dropped,
                int timeout_ms)
{
    if (!sub->_owner->_builtin)
        return SC_EINVAL;
    for (;;) {
        sc_owner_rearm(sub->_owner);
        int rc = sc_sub_next(sub, ev, dropped);
        if (rc != SC_EAGAIN || (dropped && *dropped))
            return rc;
        if (sc_owner_wait(sub->_owner, timeout_ms) == SC_ETIMEDOUT)
            return SC_ETIMEDOUT;
    }
}

size_t sc_sub_pending(const sc_sub_t *sub)
{
    return SC__TAIL(atomic_load(&((sc_sub_t *)sub)->_tailgap)) -
           atomic_load(&((sc_sub_t *)sub)->_head);
}

int sc_sub_close_reason(const sc_sub_t *sub)
{
    return atomic_load(&((sc_sub_t *)sub)->_close_reason);
}

const char *sc_sub_scope(const sc_sub_t *sub) { return sub->_scope_name; }
sc_owner_t *sc_sub_owner(const sc_sub_t *sub) { return sub->_owner; }

const sc_conn_t *sc_sub_conn(const sc_sub_t *sub)
{
    return sub->_has_conn ? &sub->_conn : NULL;
}

uint64_t sc_sub_dropped_total(const sc_sub_t *sub)
{
    return atomic_load(&((sc_sub_t *)sub)->_dropped_total);
}

void sc__sub_release_queue(sc_sub_t *sub)
{
    uint32_t head = atomic_load(&sub->_head);
    uint32_t tail = SC__TAIL(atomic_load(&sub->_tailgap));
    sc__ring_t *r = head != tail ? current_ring(sub) : NULL;
    for (; head != tail; head++)
        sc_event_unref(r->slots[head & r->mask].ev);
    atomic_store(&sub->_head, head);
}

void sc_sub_destroy(sc_sub_t *sub)
{
    if (!sub)
        return;
    sc__bus_unsubscribe(sub->_bus, sub);
    sc__sub_release_queue(sub);
    if (sub->_on_disconnect &&
        sub->_on_disconnect(sub->_on_disconnect_ud, sub->_scope_name,
                            sub->_has_conn ? &sub->_conn : NULL) != 0)
        sc__bus_logf(sub->_bus, SC_LOG_ERROR,
                     "on_disconnect callback failed for scope='%s'",
                     sub->_scope_name);
    sc_conn_deinit(&sub->_conn);
    free_rings(atomic_load(&sub->_retired));
    free(atomic_load(&sub->_ring));
    free(sub->_scope_name);
    free(sub);
}
