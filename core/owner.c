/*
 * Owners: who consumes a set of subscriptions, and how it is woken (see
 * bus.h for the model; struct sc_owner is in bus_internal.h).
 *
 * An owner's `_pending` flag is 1 from a wake until the next re-arm; a
 * producer calls the wake callback only when it flips the flag from 0, so
 * an owner is woken at most once per re-arm whatever the number of items
 * or subscriptions. Owners created without a callback get a built-in one
 * that broadcasts a condition variable, for sc_owner_wait().
 *
 * Wake protocol (after h2o's multithread queue; the queue's half is in
 * queue.h): a producer publishes an item (seq_cst store of the queue's
 * _tailgap) and then reads the owner's _pending flag (seq_cst, in
 * sc__owner_wake); the consumer clears _pending (sc_owner_rearm, seq_cst)
 * and then reads _tailgap (seq_cst, in sc__queue_pop). Either the producer
 * sees the flag cleared and wakes, or the consumer sees the item: no
 * wake-up is lost, and an owner that has not re-armed is never woken twice.
 * Closing follows the same order with the subscription's _close_reason in
 * place of _tailgap.
 */
#include "bus_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The wake callback of owners created without one. */
static void builtin_wake(void *ud)
{
    struct sc__owner_sync *y = ((sc_owner_t *)ud)->_sync;
    pthread_mutex_lock(&y->lock);
    pthread_cond_broadcast(&y->cond);
    pthread_mutex_unlock(&y->lock);
}

int sc_owner_create(sc_wake_fn wake, void *ud, sc_owner_t **out)
{
    *out = NULL;
    _Static_assert(sizeof(sc_owner_t) == 128, "two cache lines");
    sc_owner_t *o = aligned_alloc(64, sizeof *o);
    if (!o)
        return SC_ENOMEM;
    memset(o, 0, sizeof *o);
    atomic_init(&o->_pending, 0);
    atomic_init(&o->_in, 0);
    atomic_init(&o->_out, 0);
    atomic_init(&o->_out_seen, 0);
    if (wake) {
        o->_wake = wake;
        o->_ud = ud;
    } else {
        struct sc__owner_sync *y = malloc(sizeof *y);
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        int rc = y ? pthread_cond_init(&y->cond, &attr) : -1;
        pthread_condattr_destroy(&attr);
        if (rc != 0 || pthread_mutex_init(&y->lock, NULL) != 0) {
            if (rc == 0)
                pthread_cond_destroy(&y->cond);
            free(y);
            free(o);
            return SC_ENOMEM;
        }
        o->_sync = y;
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
    if (o->_sync) {
        pthread_cond_destroy(&o->_sync->cond);
        pthread_mutex_destroy(&o->_sync->lock);
        free(o->_sync);
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

void sc_owner_set_budget(sc_owner_t *o, size_t bytes)
{
    o->_budget = bytes;
}

size_t sc_owner_queued_bytes(const sc_owner_t *o)
{
    sc_owner_t *m = (sc_owner_t *)o; /* atomic loads take non-const */
    uint64_t out = atomic_load(&m->_out);
    return (size_t)(atomic_load(&m->_in) - out);
}

void sc_owner_rearm(sc_owner_t *o)
{
    atomic_store(&o->_pending, 0);
}

int sc_owner_wait(sc_owner_t *o, int timeout_ms)
{
    if (!o->_sync)
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
    pthread_mutex_lock(&o->_sync->lock);
    while (!atomic_load(&o->_pending)) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&o->_sync->cond, &o->_sync->lock);
        } else if (pthread_cond_timedwait(&o->_sync->cond, &o->_sync->lock,
                                          &deadline) == ETIMEDOUT) {
            rc = atomic_load(&o->_pending) ? SC_OK : SC_ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&o->_sync->lock);
    return rc;
}
