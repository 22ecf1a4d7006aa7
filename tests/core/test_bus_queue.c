/*
 * Unit tests for core/bus.h, the bounded queue seen through the bus: a full
 * queue drops the newest event for that subscriber only, sizes are
 * honoured, drops are counted per subscriber per event, and every drop is
 * reported exactly once through sc_sub_next's `dropped` (on the next item
 * or as trailing drops). The queue module itself (ring growth, index wrap)
 * is tested directly in test_queue.c.
 *
 * Every test is single-threaded unless its name says otherwise, uses the
 * shared fixture (bus_fixture.h: an injected clock for the drop-warning
 * throttle, a captured logger), never sleeps for timing, and ends with
 * every subscription, owner and bus destroyed, so ASan's leak check covers
 * each behaviour. Threaded stress and race tests live in
 * test_bus_threads.c.
 */
#include "bus_fixture.h"

#include <string.h>

/* ---- back-pressure: bounded queues drop the newest ------------------- */

static void test_bus_full_queue_drops_newest_event(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    for (int i = 0; i < 300; i++)
        assert_int_equal(emit_simple(&fx, "doc:1"), (uint64_t)i + 1);
    assert_int_equal(sc_sub_pending(s), 256);
    /* The first 256 are kept, in order: the newest were dropped. */
    for (uint64_t i = 1; i <= 256; i++)
        assert_int_equal(take_seq(s), i);
    expect_end(s, SC_EAGAIN, 44);
    assert_int_equal(sc_sub_dropped_total(s), 44);
    sc_sub_destroy(s);
    fx_close(&fx);
}

static void test_bus_counters_count_received_dropped_and_emitted(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 4);
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    for (int i = 0; i < 10; i++)
        emit_simple(&fx, "doc:1");
    size_t received = 0;
    uint64_t drops = 0;
    uint64_t seqs[16];
    assert_int_equal(drain(s, &received, &drops, seqs, 16), SC_EAGAIN);
    assert_int_equal(received, 4);
    for (uint64_t i = 0; i < 4; i++)
        assert_int_equal(seqs[i], i + 1);
    assert_int_equal(drops, 6);
    assert_int_equal(sc_sub_dropped_total(s), 6);
    sc_bus_stats_t st;
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.emitted, 10);
    assert_int_equal(st.dropped, 6);
    assert_int_equal(st.subscribers, 1);
    sc_sub_destroy(s);
    fx_close(&fx);
}

static void test_bus_queue_sizes_64_256_512_are_honoured(void **state)
{
    (void)state;
    const int sizes[] = {64, 256, 512};
    for (size_t k = 0; k < 3; k++) {
        fx_t fx;
        fx_open(&fx, sizes[k]);
        assert_int_equal(sc_bus_maxsize(fx.bus), sizes[k]);
        sc_sub_t *s = sub_plain(&fx, "doc:1");
        for (int i = 0; i < sizes[k] + 10; i++)
            emit_simple(&fx, "doc:1");
        assert_int_equal(sc_sub_pending(s), (size_t)sizes[k]);
        size_t received = 0;
        uint64_t drops = 0;
        assert_int_equal(drain(s, &received, &drops, NULL, 0), SC_EAGAIN);
        assert_int_equal(received, (size_t)sizes[k]);
        assert_int_equal(drops, 10);
        /* Room again: the next event is queued. */
        emit_simple(&fx, "doc:1");
        assert_int_equal(take_seq(s), (uint64_t)sizes[k] + 11);
        sc_sub_destroy(s);
        fx_close(&fx);
    }
}

static void test_bus_dropped_counts_per_subscriber_per_event(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 1);
    sc_sub_t *a = sub_plain(&fx, "doc:1");
    sc_sub_t *b = sub_plain(&fx, "doc:1");
    for (int i = 0; i < 3; i++)
        emit_simple(&fx, "doc:1");
    sc_bus_stats_t st;
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.emitted, 3);
    assert_int_equal(st.dropped, 4); /* 2 per subscriber: more than emitted */
    assert_int_equal(sc_sub_dropped_total(a), 2);
    assert_int_equal(sc_sub_dropped_total(b), 2);
    sc_sub_destroy(a);
    sc_sub_destroy(b);
    fx_close(&fx);
}

/* ---- dropped notices (sc_sub_next's `dropped`) ----------------------- */

static void test_bus_dropped_count_on_next_item_equals_seq_gap(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 2);
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    emit_simple(&fx, "doc:1"); /* 1 */
    emit_simple(&fx, "doc:1"); /* 2 */
    emit_simple(&fx, "doc:1"); /* 3 dropped */
    emit_simple(&fx, "doc:1"); /* 4 dropped */
    assert_int_equal(take_seq(s), 1);
    emit_simple(&fx, "doc:1"); /* 5 queued: room again */
    emit_simple(&fx, "doc:1"); /* 6 dropped */
    assert_int_equal(take_seq(s), 2);
    uint32_t d = 0;
    sc_event_t *ev = take(s, &d);
    assert_int_equal(sc_event_seq(ev), 5);
    assert_int_equal(d, 5 - 2 - 1);
    sc_event_unref(ev);
    emit_simple(&fx, "doc:1"); /* 7 queued */
    ev = take(s, &d);
    assert_int_equal(sc_event_seq(ev), 7);
    assert_int_equal(d, 1);
    sc_event_unref(ev);
    expect_empty(s);
    assert_int_equal(sc_sub_dropped_total(s), 3);
    sc_sub_destroy(s);
    fx_close(&fx);
}

static void test_bus_trailing_drops_are_reported_with_eagain(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 3);
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    for (int i = 0; i < 8; i++)
        emit_simple(&fx, "doc:1");
    for (uint64_t i = 1; i <= 3; i++)
        assert_int_equal(take_seq(s), i);
    /* The queue is empty: the 5 dropped after item 3 are reported now... */
    expect_end(s, SC_EAGAIN, 5);
    /* ...and only once. */
    expect_end(s, SC_EAGAIN, 0);
    emit_simple(&fx, "doc:1");
    assert_int_equal(take_seq(s), 9); /* no drops reported again */
    expect_empty(s);
    sc_sub_destroy(s);
    fx_close(&fx);
}

static void test_bus_each_drop_is_reported_exactly_once(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 4);
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    /* Rounds of bursts and partial drains; every drop must be reported
     * once, either on the next item or on an empty pull. */
    uint64_t reported = 0, received = 0, last = 0;
    uint64_t pending_gap = 0;
    for (int round = 0; round < 50; round++) {
        int burst = 1 + (round * 7) % 9;
        for (int i = 0; i < burst; i++)
            emit_simple(&fx, "doc:1");
        int takes = (round % 3 == 0) ? 100 : 1 + round % 4;
        for (int i = 0; i < takes; i++) {
            sc_event_t *ev = NULL;
            uint32_t d = 0;
            int rc = sc_sub_next(s, &ev, &d);
            reported += d;
            pending_gap += d;
            if (rc != SC_OK) {
                assert_int_equal(rc, SC_EAGAIN);
                break;
            }
            /* Reported drops account exactly for the seqs skipped. */
            assert_int_equal(sc_event_seq(ev), last + 1 + pending_gap);
            last = sc_event_seq(ev);
            pending_gap = 0;
            received++;
            sc_event_unref(ev);
        }
    }
    size_t n = 0;
    uint64_t d = 0;
    assert_int_equal(drain(s, &n, &d, NULL, 0), SC_EAGAIN);
    received += n;
    reported += d;
    sc_bus_stats_t st;
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(received + reported, st.emitted);
    assert_int_equal(reported, sc_sub_dropped_total(s));
    assert_int_equal(reported, st.dropped);
    assert_true(reported > 0);
    sc_sub_destroy(s);
    fx_close(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bus_full_queue_drops_newest_event),
        cmocka_unit_test(test_bus_counters_count_received_dropped_and_emitted),
        cmocka_unit_test(test_bus_queue_sizes_64_256_512_are_honoured),
        cmocka_unit_test(test_bus_dropped_counts_per_subscriber_per_event),
        cmocka_unit_test(test_bus_dropped_count_on_next_item_equals_seq_gap),
        cmocka_unit_test(test_bus_trailing_drops_are_reported_with_eagain),
        cmocka_unit_test(test_bus_each_drop_is_reported_exactly_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
