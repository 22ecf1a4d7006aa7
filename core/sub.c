/*
 * Subscriptions, the consumer's side (see bus.h): taking items, waiting,
 * the accessors and sc_sub_destroy.
 *
 * A subscription is created and registered by the bus (bus.c) and consumed
 * by its owner's thread. The items themselves live in the subscription's
 * queue (queue.{h,c}: the ring, drop counting, the memory-ordering and wake
 * protocol); owners and wakes are in owner.c. What this file adds is the
 * end of a subscription: the close reason the bus sets once it removed it,
 * read before the queue, and the teardown on the owner's thread.
 */
#include "bus_internal.h"

#include <stdlib.h>

void sc_sub_prefetch(const sc_sub_t *sub)
{
    sc__queue_prefetch(&sub->_queue);
    __builtin_prefetch(&sub->_close_reason);
}

void sc__sub_replay_clear(sc_sub_t *sub)
{
    for (size_t i = sub->_replay_i; i < sub->_replay_n; i++)
        sc_event_unref(sub->_replay[i]);
    free(sub->_replay);
    sub->_replay = NULL;
    sub->_replay_n = sub->_replay_i = 0;
}

int sc_sub_next(sc_sub_t *sub, sc_event_t **ev, uint32_t *dropped)
{
    if (sub->_replay) { /* kept events first: they precede the queue's */
        *ev = sub->_replay[sub->_replay_i++];
        if (dropped)
            *dropped = 0;
        if (sub->_replay_i == sub->_replay_n) {
            free(sub->_replay);
            sub->_replay = NULL;
            sub->_replay_n = sub->_replay_i = 0;
        }
        return SC_OK;
    }
    /* The close reason is read before the queue: the bus removes a
     * subscription (no more pushes) before it sets the reason, so a reason
     * seen here means the queue below holds everything there will be. */
    int reason = atomic_load(&sub->_close_reason);
    if (sc__queue_pop(&sub->_queue, ev, dropped)) {
        sc__owner_unqueue(sub->_owner, (*ev)->_cost);
        return SC_OK;
    }
    return reason != SC_CLOSE_NONE ? SC_ECLOSED : SC_EAGAIN;
}

int sc_sub_wait(sc_sub_t *sub, sc_event_t **ev, uint32_t *dropped,
                int timeout_ms)
{
    if (!sub->_owner->_sync)
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
    return sc__queue_pending(&sub->_queue) + (sub->_replay_n - sub->_replay_i);
}

int sc_sub_close_reason(const sc_sub_t *sub)
{
    return atomic_load(&((sc_sub_t *)sub)->_close_reason);
}

const char *sc_sub_scope(const sc_sub_t *sub)
{
    return sub->_scope_name;
}

sc_owner_t *sc_sub_owner(const sc_sub_t *sub)
{
    return sub->_owner;
}

const sc_conn_t *sc_sub_conn(const sc_sub_t *sub)
{
    return sub->_has_conn ? &sub->_conn : NULL;
}

bool sc_sub_hidden(const sc_sub_t *sub)
{
    return sub->_hidden;
}

uint64_t sc_sub_epoch(const sc_sub_t *sub)
{
    return sub->_epoch;
}

bool sc_sub_recovered(const sc_sub_t *sub)
{
    return sub->_recovered;
}

uint64_t sc_sub_dropped_total(const sc_sub_t *sub)
{
    return sc__queue_dropped_total(&sub->_queue);
}

/* Both destroys: `hold` keeps a shown presence entry for the grace. */
static void sub_destroy(sc_sub_t *sub, bool hold)
{
    if (!sub)
        return;
    sc__bus_unsubscribe(sub->_bus, sub, hold);
    /* No producer can reach the queue any more. */
    sc__owner_unqueue(sub->_owner, sc__queue_release(&sub->_queue));
    sc__sub_replay_clear(sub);
    if (sub->_on_disconnect &&
        sub->_on_disconnect(sub->_on_disconnect_ud, sub->_scope_name,
                            sub->_has_conn ? &sub->_conn : NULL) != 0)
        sc__bus_logf(sub->_bus, SC_LOG_ERROR,
                     "on_disconnect callback failed for scope='%s'",
                     sub->_scope_name);
    sc_conn_deinit(&sub->_conn);
    sc__queue_deinit(&sub->_queue);
    free(sub->_scope_name);
    free(sub);
}

void sc_sub_destroy(sc_sub_t *sub)
{
    sub_destroy(sub, false);
}

void sc_sub_destroy_hold(sc_sub_t *sub)
{
    sub_destroy(sub, true);
}
