/*
 * Unit tests for core/queue.h, the subscription queue on its own: no bus,
 * one thread playing both the producer and the consumer.
 *
 * The bus tests (test_bus_queue.c and the others) check the queue's
 * behaviour as subscribers see it. These check what the bus cannot steer:
 * the ring's size at each step of its growth from SC__RING_MIN to
 * `_ring_max`, growth while the live items wrap around the ring, the 32-bit
 * head and tail indices wrapping at 2^32, the drop gap saturating without
 * carrying into the tail, and every queued reference dropped by
 * sc__queue_release. Some tests read or preset the queue's fields; that is
 * the point of testing the module directly.
 *
 * Events are identified by their seq; each carries a frame whose free
 * function counts frees, so a test can tell which references were dropped.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "event_internal.h"
#include "queue.h"

/* ---- helpers ---------------------------------------------------------- */

static int g_frees; /* events freed (their frame's free function ran) */

static void count_free(void *data)
{
    free(data);
    g_frees++;
}

/* A change event of scope "q" with `seq`, refcount 1 (the caller's). */
static sc_event_t *mkev(uint64_t seq)
{
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = "q";
    sc_event_t *ev = sc__event_create_change(&e, seq);
    assert_non_null(ev);
    char *data = malloc(1);
    assert_non_null(data);
    sc_event_set_frame(ev, data, data, 1, count_free);
    return ev;
}

/* Slots in the current ring; 0 when there is none. */
static uint32_t ring_slots(sc__queue_t *q)
{
    sc__ring_t *r = atomic_load(&q->_ring);
    return r ? r->mask + 1 : 0;
}

/* Pushes a new event with `seq`; returns whether it was queued (a dropped
 * event is released here, as the bus does with its unused references). */
static bool push_seq(sc__queue_t *q, uint64_t seq)
{
    sc_event_t *ev = mkev(seq);
    bool queued = sc__queue_push(q, ev);
    if (!queued)
        sc_event_unref(ev);
    return queued;
}

/* Pops the next item, which must have `seq` and `dropped` drops before it. */
static void pop_seq(sc__queue_t *q, uint64_t seq, uint32_t dropped)
{
    sc_event_t *ev = NULL;
    uint32_t d = 0xdeadu;
    assert_true(sc__queue_pop(q, &ev, &d));
    assert_non_null(ev);
    assert_int_equal(sc_event_seq(ev), seq);
    assert_int_equal(d, dropped);
    sc_event_unref(ev);
}

/* Asserts the queue is empty, reporting `dropped` trailing drops. */
static void pop_empty(sc__queue_t *q, uint32_t dropped)
{
    sc_event_t *ev = (sc_event_t *)q; /* must be overwritten */
    uint32_t d = 0xdeadu;
    assert_false(sc__queue_pop(q, &ev, &d));
    assert_null(ev);
    assert_int_equal(d, dropped);
}

/* ---- tests ------------------------------------------------------------ */

static void test_queue_init_holds_no_ring_and_is_empty(void **state)
{
    (void)state;
    sc__queue_t q;
    memset(&q, 0x5a, sizeof q);
    sc__queue_init(&q, 5);
    assert_int_equal(q._maxsize, 5);
    assert_null(atomic_load(&q._ring));
    assert_null(atomic_load(&q._retired));
    assert_int_equal(sc__queue_pending(&q), 0);
    assert_int_equal(sc__queue_dropped_total(&q), 0);
    pop_empty(&q, 0);
    assert_null(atomic_load(&q._ring)); /* popping allocates nothing */
    sc__queue_release(&q);
    sc__queue_deinit(&q);
}

static void
test_queue_ring_max_is_the_power_of_two_at_least_maxsize(void **state)
{
    (void)state;
    const uint32_t maxsize[] = {1, 2, 3, 8, 9, 100, 256, 257};
    const uint32_t ring_max[] = {1, 2, 4, 8, 16, 128, 256, 512};
    for (size_t i = 0; i < sizeof maxsize / sizeof maxsize[0]; i++) {
        sc__queue_t q;
        sc__queue_init(&q, maxsize[i]);
        assert_int_equal(q._ring_max, ring_max[i]);
        sc__queue_deinit(&q);
    }
}

static void
test_queue_first_ring_is_ring_min_or_ring_max_if_smaller(void **state)
{
    (void)state;
    const uint32_t maxsize[] = {1, 3, 8, 9, 256};
    const uint32_t first[] = {1, 4, SC__RING_MIN, SC__RING_MIN, SC__RING_MIN};
    g_frees = 0;
    for (size_t i = 0; i < sizeof maxsize / sizeof maxsize[0]; i++) {
        sc__queue_t q;
        sc__queue_init(&q, maxsize[i]);
        assert_true(push_seq(&q, 1));
        assert_int_equal(ring_slots(&q), first[i]);
        sc__queue_release(&q);
        sc__queue_deinit(&q);
    }
    assert_int_equal(g_frees, 5);
}

static void
test_queue_grows_from_ring_min_to_max_keeping_order_and_drops(void **state)
{
    (void)state;
    sc__queue_t q;
    sc__queue_init(&q, 100); /* ring_max 128 */
    g_frees = 0;
    for (uint64_t i = 1; i <= 100; i++) {
        assert_true(push_seq(&q, i));
        /* Doubles only when full: 8 for 1..8, 16 for 9..16, ... 128. */
        uint32_t want = SC__RING_MIN;
        while (want < i)
            want *= 2;
        assert_int_equal(ring_slots(&q), want);
    }
    assert_int_equal(ring_slots(&q), 128);
    assert_non_null(atomic_load(&q._retired)); /* 8, 16, 32, 64 */
    for (uint64_t i = 101; i <= 107; i++)
        assert_false(push_seq(&q, i)); /* maxsize reached, not the ring */
    assert_int_equal(ring_slots(&q), 128);
    assert_int_equal(sc__queue_pending(&q), 100);
    assert_int_equal(sc__queue_dropped_total(&q), 7);
    assert_int_equal(g_frees, 7);

    pop_seq(&q, 1, 0);
    assert_null(atomic_load(&q._retired)); /* freed by the consumer */
    for (uint64_t i = 2; i <= 100; i++)
        pop_seq(&q, i, 0);
    pop_empty(&q, 7); /* the drops came after the last item */
    pop_empty(&q, 0); /* reported once */
    /* The grown ring stays; the next item reports no drops. */
    assert_true(push_seq(&q, 108));
    assert_int_equal(ring_slots(&q), 128);
    pop_seq(&q, 108, 0);
    assert_int_equal(sc__queue_dropped_total(&q), 7);
    sc__queue_release(&q);
    sc__queue_deinit(&q);
    assert_int_equal(g_frees, 108);
}

static void test_queue_grows_while_wrapped_and_keeps_drop_counts(void **state)
{
    (void)state;
    sc__queue_t q;
    sc__queue_init(&q, 12); /* ring_max 16 */
    g_frees = 0;
    for (uint64_t i = 1; i <= 6; i++)
        assert_true(push_seq(&q, i));
    for (uint64_t i = 1; i <= 5; i++)
        pop_seq(&q, i, 0);
    /* head 5: items 6..13 fill the 8-slot ring across its end. */
    for (uint64_t i = 7; i <= 13; i++)
        assert_true(push_seq(&q, i));
    assert_int_equal(ring_slots(&q), 8);
    /* The next push copies the wrapped items [5, 13) into 16 slots. */
    for (uint64_t i = 14; i <= 17; i++)
        assert_true(push_seq(&q, i));
    assert_int_equal(ring_slots(&q), 16);
    assert_int_equal(sc__queue_pending(&q), 12);
    for (uint64_t i = 18; i <= 20; i++)
        assert_false(push_seq(&q, i));
    pop_seq(&q, 6, 0);
    assert_true(push_seq(&q, 21)); /* room: it carries the 3 drops */
    for (uint64_t i = 7; i <= 17; i++)
        pop_seq(&q, i, 0);
    pop_seq(&q, 21, 3);
    pop_empty(&q, 0);
    assert_int_equal(sc__queue_dropped_total(&q), 3);
    sc__queue_release(&q);
    sc__queue_deinit(&q);
    assert_int_equal(g_frees, 21);
}

static void test_queue_indices_wrap_at_2_pow_32(void **state)
{
    (void)state;
    sc__queue_t q;
    sc__queue_init(&q, 16);
    /* Start a few items before the 32-bit indices wrap. */
    uint32_t start = UINT32_MAX - 5;
    atomic_store(&q._head, start);
    q._head_cache = start;
    atomic_store(&q._tailgap, (uint64_t)start << 32);
    g_frees = 0;
    for (uint64_t i = 1; i <= 16; i++)
        assert_true(push_seq(&q, i)); /* grows 8 -> 16 across the wrap */
    for (uint64_t i = 17; i <= 20; i++)
        assert_false(push_seq(&q, i));
    assert_int_equal(ring_slots(&q), 16);
    assert_int_equal(sc__queue_pending(&q), 16);
    assert_int_equal(SC__TAIL(atomic_load(&q._tailgap)), start + 16u);
    for (uint64_t i = 1; i <= 16; i++)
        pop_seq(&q, i, 0);
    pop_empty(&q, 4);
    assert_int_equal(sc__queue_pending(&q), 0);
    sc__queue_release(&q);
    sc__queue_deinit(&q);
    assert_int_equal(g_frees, 20);
}

static void
test_queue_drop_gap_saturates_without_carrying_into_tail(void **state)
{
    (void)state;
    sc__queue_t q;
    sc__queue_init(&q, 1);
    g_frees = 0;
    assert_true(push_seq(&q, 1));
    /* Pretend UINT32_MAX - 1 drops are already pending. */
    uint64_t w = atomic_load(&q._tailgap);
    atomic_store(&q._tailgap, w | (UINT32_MAX - 1));
    for (uint64_t i = 2; i <= 4; i++)
        assert_false(push_seq(&q, i));
    w = atomic_load(&q._tailgap);
    assert_int_equal(SC__GAP(w), UINT32_MAX);
    assert_int_equal(SC__TAIL(w), 1); /* never carried */
    assert_int_equal(sc__queue_pending(&q), 1);
    assert_int_equal(sc__queue_dropped_total(&q), 3); /* each one counted */
    pop_seq(&q, 1, 0);
    pop_empty(&q, UINT32_MAX);
    assert_true(push_seq(&q, 5));
    pop_seq(&q, 5, 0);
    sc__queue_release(&q);
    sc__queue_deinit(&q);
    assert_int_equal(g_frees, 5);
}

static void test_queue_release_drops_every_queued_reference(void **state)
{
    (void)state;
    sc__queue_t q;
    sc__queue_init(&q, 32);
    g_frees = 0;
    for (uint64_t i = 1; i <= 20; i++)
        assert_true(push_seq(&q, i)); /* grows 8 -> 16 -> 32 */
    pop_seq(&q, 1, 0);
    pop_seq(&q, 2, 0);
    assert_int_equal(g_frees, 2);
    for (uint64_t i = 21; i <= 25; i++)
        assert_true(push_seq(&q, i));
    sc__queue_release(&q);
    assert_int_equal(g_frees, 25); /* the 23 still queued */
    assert_int_equal(sc__queue_pending(&q), 0);
    pop_empty(&q, 0);
    sc__queue_release(&q); /* a second release has nothing to drop */
    assert_int_equal(g_frees, 25);
    sc__queue_deinit(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_init_holds_no_ring_and_is_empty),
        cmocka_unit_test(
            test_queue_ring_max_is_the_power_of_two_at_least_maxsize),
        cmocka_unit_test(
            test_queue_first_ring_is_ring_min_or_ring_max_if_smaller),
        cmocka_unit_test(
            test_queue_grows_from_ring_min_to_max_keeping_order_and_drops),
        cmocka_unit_test(test_queue_grows_while_wrapped_and_keeps_drop_counts),
        cmocka_unit_test(test_queue_indices_wrap_at_2_pow_32),
        cmocka_unit_test(
            test_queue_drop_gap_saturates_without_carrying_into_tail),
        cmocka_unit_test(test_queue_release_drops_every_queued_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
