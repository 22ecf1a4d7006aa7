/*
 * Unit tests for core/bus.h, memory: the owner's byte budget (drop-newest
 * across all of an owner's subscriptions, reported like a full queue, an
 * event larger than the budget still reaching an empty owner, other owners
 * unaffected, bytes given back at take and at destroy), the bus's gauge of
 * queued bytes (each event once) with its limit, and released payloads
 * (one copy per queued event once the frame holds it).
 *
 * Single-threaded, on the shared fixture (bus_fixture.h); every test ends
 * with everything destroyed, so ASan's leak check covers each behaviour.
 */
#include "bus_fixture.h"

#include <stdlib.h>
#include <string.h>

/* An encoder whose frame is the payload's bytes (or "-" without one). */
static int copy_encoder(void *ud, sc_event_t *ev)
{
    (void)ud;
    size_t n;
    const void *p = sc_event_payload(ev, &n);
    if (!p) {
        p = "-";
        n = 1;
    }
    char *f = malloc(n);
    if (!f)
        return -1;
    memcpy(f, p, n);
    sc_event_set_frame(ev, f, f, n, free);
    return 0;
}

static void open_mem(fx_t *fx, int maxsize, size_t max_queued, bool release)
{
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    cfg.maxsize = maxsize;
    cfg.encode = copy_encoder;
    cfg.max_queued_bytes = max_queued;
    cfg.release_payload = release;
    fx_open_cfg(fx, &cfg);
}

/* A payload of `n` bytes of `c`, NUL-terminated (caller frees). */
static char *blob(size_t n, char c)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* The cost of one event emit_text(scope, text) (the scope is in the
 * event's allocation): measured through a fresh owner's budget. Call it
 * before anything else subscribes to `scope`. */
static size_t cost_of(fx_t *fx, const char *scope, const char *text)
{
    sc_owner_t *o;
    assert_int_equal(sc_owner_create(NULL, NULL, &o), SC_OK);
    sc_owner_set_budget(o, (size_t)1 << 40);
    sc_sub_t *s = sub_opts(fx, scope, o, NULL, NULL);
    emit_text(fx, scope, text);
    size_t c = sc_owner_queued_bytes(o);
    sc_sub_destroy(s);
    assert_int_equal(sc_owner_queued_bytes(o), 0);
    sc_owner_destroy(o);
    return c;
}

static void test_owner_budget_drops_newest_across_subscriptions(void **state)
{
    (void)state;
    fx_t fx;
    open_mem(&fx, 256, 0, false);
    char *p = blob(2000, 'a');
    size_t cost = cost_of(&fx, "a", p);
    assert_int_equal(cost_of(&fx, "b", p), cost);
    assert_true(cost >= 4000); /* payload and frame: two copies */
    sc_owner_set_budget(fx.owner, 5 * cost);
    sc_owner_t *other;
    assert_int_equal(sc_owner_create(NULL, NULL, &other), SC_OK);
    sc_sub_t *a = sub_plain(&fx, "a"), *b = sub_plain(&fx, "b");
    sc_sub_t *oa = sub_opts(&fx, "a", other, NULL, NULL);
    /* 3 into a, 2 into b: the budget is full; the rest is dropped for
     * this owner only */
    for (int i = 0; i < 3; i++)
        emit_text(&fx, "a", p);
    for (int i = 0; i < 2; i++)
        emit_text(&fx, "b", p);
    assert_int_equal(sc_owner_queued_bytes(fx.owner), 5 * cost);
    for (int i = 0; i < 4; i++)
        emit_text(&fx, "a", p);
    emit_text(&fx, "b", p);
    assert_int_equal(sc_owner_queued_bytes(fx.owner), 5 * cost);
    assert_int_equal(sc_sub_pending(a), 3);
    assert_int_equal(sc_sub_pending(b), 2);
    assert_int_equal(sc_sub_pending(oa), 7); /* no budget: everything */
    assert_int_equal(sc_owner_queued_bytes(other), 0); /* not accounted */
    /* taking gives bytes back; the drops come as trailing drops */
    for (int i = 0; i < 3; i++)
        sc_event_unref(take(a, NULL));
    expect_end(a, SC_EAGAIN, 4);
    assert_int_equal(sc_owner_queued_bytes(fx.owner), 2 * cost);
    /* room again: the next event is queued, after b's reported drop */
    emit_text(&fx, "b", p);
    sc_event_unref(take(b, NULL));
    sc_event_unref(take(b, NULL));
    uint32_t dropped;
    sc_event_unref(take(b, &dropped));
    assert_int_equal(dropped, 1);
    assert_int_equal(sc_owner_queued_bytes(fx.owner), 0);
    assert_int_equal(sc_sub_dropped_total(a), 4);
    sc_sub_destroy(a);
    sc_sub_destroy(b);
    sc_sub_destroy(oa);
    sc_owner_destroy(other);
    free(p);
    fx_close(&fx);
}

static void test_an_event_over_the_budget_reaches_an_empty_owner(void **state)
{
    (void)state;
    fx_t fx;
    open_mem(&fx, 256, 0, false);
    sc_owner_set_budget(fx.owner, 100);
    sc_sub_t *s = sub_plain(&fx, "big");
    char *p = blob(5000, 'b');
    emit_text(&fx, "big", p); /* empty owner: taken */
    emit_text(&fx, "big", p); /* not empty: dropped */
    assert_int_equal(sc_sub_pending(s), 1);
    sc_event_unref(take(s, NULL));
    expect_end(s, SC_EAGAIN, 1);
    emit_text(&fx, "big", p); /* empty again */
    assert_int_equal(sc_sub_pending(s), 1);
    /* destroying with items queued gives their bytes back */
    sc_sub_destroy(s);
    assert_int_equal(sc_owner_queued_bytes(fx.owner), 0);
    free(p);
    fx_close(&fx);
}

static void test_gauge_counts_each_event_once_and_limits(void **state)
{
    (void)state;
    fx_t fx;
    open_mem(&fx, 256, 0, false);
    char *p = blob(3000, 'g');
    size_t cost = cost_of(&fx, "g", p);
    fx_close(&fx); /* again, with a limit of 3 such events */
    open_mem(&fx, 256, 3 * cost, false);
    sc_owner_t *o2;
    assert_int_equal(sc_owner_create(NULL, NULL, &o2), SC_OK);
    sc_sub_t *s1 = sub_plain(&fx, "g"),
             *s2 = sub_opts(&fx, "g", o2, NULL, NULL);
    sc_bus_stats_t st;
    emit_text(&fx, "g", p);
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.queued_bytes, cost); /* two queues, one event */
    emit_text(&fx, "g", p);
    emit_text(&fx, "g", p);
    emit_text(&fx, "g", p); /* at the limit: nobody gets it */
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.queued_bytes, 3 * cost);
    assert_int_equal(sc_sub_pending(s1), 3);
    assert_int_equal(sc_sub_pending(s2), 3);
    assert_int_equal(st.dropped, 2);
    /* the gauge falls only when the last queue lets an event go */
    sc_event_unref(take(s1, NULL));
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.queued_bytes, 3 * cost);
    sc_event_unref(take(s2, NULL));
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.queued_bytes, 2 * cost);
    emit_text(&fx, "g", p); /* under the limit again */
    assert_int_equal(sc_sub_pending(s1), 3);
    sc_sub_destroy(s1);
    sc_sub_destroy(s2);
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.queued_bytes, 0);
    sc_owner_destroy(o2);
    free(p);
    fx_close(&fx);
}

static void test_released_payloads_leave_one_copy(void **state)
{
    (void)state;
    for (int release = 0; release < 2; release++) {
        fx_t fx;
        open_mem(&fx, 256, 0, release);
        char *big = blob(4096, 'r');
        size_t cost = cost_of(&fx, "r", big);
        sc_sub_t *s = sub_plain(&fx, "r");
        emit_text(&fx, "r", big);
        emit_text(&fx, "r", "small");
        sc_event_t *ev = take(s, NULL);
        size_t n, fl;
        const void *pl = sc_event_payload(ev, &n);
        const char *frame = sc_event_frame(ev, &fl);
        assert_int_equal(fl, 4096); /* the frame has it */
        assert_memory_equal(frame, big, fl);
        if (release) {
            assert_null(pl); /* one copy: the frame's */
            assert_true(cost < 2 * 4096);
        } else {
            assert_non_null(pl);
            assert_memory_equal(pl, big, n);
            assert_true(cost > 2 * 4096);
        }
        sc_event_unref(ev);
        take_text(s, "small"); /* small payloads stay with the event */
        sc_sub_destroy(s);
        free(big);
        fx_close(&fx);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_owner_budget_drops_newest_across_subscriptions),
        cmocka_unit_test(test_an_event_over_the_budget_reaches_an_empty_owner),
        cmocka_unit_test(test_gauge_counts_each_event_once_and_limits),
        cmocka_unit_test(test_released_payloads_leave_one_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
