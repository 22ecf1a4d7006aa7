/*
 * Unit tests for core/bus.h, owners: the wake callback (once until re-arm,
 * on close and kick, once for several subscriptions), sc_owner_wait and
 * sc_sub_wait with their timeouts.
 *
 * Every test is single-threaded unless its name says otherwise, uses the
 * shared fixture (bus_fixture.h: an injected clock for the drop-warning
 * throttle, a captured logger), never sleeps for timing, and ends with
 * every subscription, owner and bus destroyed, so ASan's leak check covers
 * each behaviour. Threaded stress and race tests live in
 * test_bus_threads.c.
 */
#include "bus_fixture.h"

#include <stdatomic.h>
#include <string.h>

/* ---- owners: wake, rearm, wait --------------------------------------- */

typedef struct wake_rec {
    atomic_int calls;
} wake_rec_t;

static void wake_count(void *ud)
{
    wake_rec_t *w = ud;
    atomic_fetch_add(&w->calls, 1);
}

static void test_bus_wake_called_once_until_rearm(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    wake_rec_t w;
    atomic_init(&w.calls, 0);
    sc_owner_t *o = NULL;
    assert_int_equal(sc_owner_create(wake_count, &w, &o), SC_OK);
    sc_sub_t *s = sub_opts(&fx, "doc:1", o, NULL, NULL);
    assert_int_equal(atomic_load(&w.calls), 0); /* subscribing: no item */
    emit_simple(&fx, "doc:1");
    assert_int_equal(atomic_load(&w.calls), 1);
    emit_simple(&fx, "doc:1");
    emit_simple(&fx, "doc:1");
    assert_int_equal(atomic_load(&w.calls), 1); /* at most once */
    sc_owner_rearm(o);
    assert_int_equal(atomic_load(&w.calls), 1);
    size_t n = 0;
    drain(s, &n, NULL, NULL, 0);
    assert_int_equal(n, 3);
    emit_simple(&fx, "doc:1");
    assert_int_equal(atomic_load(&w.calls), 2); /* again after the re-arm */
    emit_simple(&fx, "doc:1");
    assert_int_equal(atomic_load(&w.calls), 2);
    /* Events for others do not wake this owner. */
    sc_owner_rearm(o);
    drain(s, &n, NULL, NULL, 0);
    emit_simple(&fx, "doc:2");
    assert_int_equal(atomic_load(&w.calls), 2);
    sc_sub_destroy(s);
    sc_owner_destroy(o);
    fx_close(&fx);
}

static void test_bus_wake_called_on_close(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    wake_rec_t w;
    atomic_init(&w.calls, 0);
    sc_owner_t *o = NULL;
    assert_int_equal(sc_owner_create(wake_count, &w, &o), SC_OK);
    sc_sub_t *s = sub_opts(&fx, "doc:1", o, NULL, NULL);
    assert_int_equal(sc_bus_close(fx.bus, "doc:1", SC_CLOSE_CLOSED), 1);
    assert_int_equal(atomic_load(&w.calls), 1);
    expect_end(s, SC_ECLOSED, 0);
    sc_sub_destroy(s);
    /* Kicking wakes too. */
    sc_conn_t c;
    mkconn(&c, "s1", "alice");
    sc_owner_rearm(o);
    sc_sub_opts_t opts;
    memset(&opts, 0, sizeof opts);
    opts.conn = &c;
    s = sub_opts(&fx, "doc:1", o, &opts, NULL);
    assert_int_equal(atomic_load(&w.calls), 1);
    assert_int_equal(sc_bus_close_user(fx.bus, "alice", NULL), 1);
    assert_int_equal(atomic_load(&w.calls), 2);
    expect_end(s, SC_ECLOSED, 0);
    sc_sub_destroy(s);
    sc_owner_destroy(o);
    sc_conn_deinit(&c);
    fx_close(&fx);
}

static void
test_bus_wake_once_for_several_subscriptions_of_one_owner(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    wake_rec_t w;
    atomic_init(&w.calls, 0);
    sc_owner_t *o = NULL;
    assert_int_equal(sc_owner_create(wake_count, &w, &o), SC_OK);
    sc_sub_t *a = sub_opts(&fx, "doc:1", o, NULL, NULL);
    sc_sub_t *b = sub_opts(&fx, "doc:2", o, NULL, NULL);
    sc_sub_t *c = sub_opts(&fx, "doc:2", o, NULL, NULL);
    emit_simple(&fx, "doc:1");
    emit_simple(&fx, "doc:2");
    assert_int_equal(atomic_load(&w.calls), 1);
    assert_ptr_equal(sc_sub_owner(b), o);
    sc_owner_rearm(o);
    drain(a, NULL, NULL, NULL, 0);
    drain(b, NULL, NULL, NULL, 0);
    drain(c, NULL, NULL, NULL, 0);
    sc_bus_close(fx.bus, NULL, SC_CLOSE_CLOSED); /* three closes, one wake */
    assert_int_equal(atomic_load(&w.calls), 2);
    sc_sub_destroy(a);
    sc_sub_destroy(b);
    sc_sub_destroy(c);
    sc_owner_destroy(o);
    fx_close(&fx);
}

static void
test_bus_owner_wait_returns_after_wake_and_times_out_after_rearm(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    assert_int_equal(sc_owner_wait(fx.owner, 0), SC_ETIMEDOUT);
    emit_simple(&fx, "doc:1");
    assert_int_equal(sc_owner_wait(fx.owner, 0), SC_OK);
    assert_int_equal(sc_owner_wait(fx.owner, -1), SC_OK); /* still woken */
    sc_owner_rearm(fx.owner);
    assert_int_equal(take_seq(s), 1);
    assert_int_equal(sc_owner_wait(fx.owner, 0), SC_ETIMEDOUT);
    assert_int_equal(sc_owner_wait(fx.owner, 5), SC_ETIMEDOUT);
    sc_bus_close(fx.bus, "doc:1", SC_CLOSE_CLOSED);
    assert_int_equal(sc_owner_wait(fx.owner, -1), SC_OK);
    sc_sub_destroy(s);
    fx_close(&fx);
}

static void test_bus_owner_wait_rejects_owner_with_wake_callback(void **state)
{
    (void)state;
    wake_rec_t w;
    atomic_init(&w.calls, 0);
    sc_owner_t *o = NULL;
    assert_int_equal(sc_owner_create(wake_count, &w, &o), SC_OK);
    assert_int_equal(sc_owner_wait(o, 0), SC_EINVAL);
    sc_owner_destroy(o);
}

static void test_bus_sub_wait_times_out_when_nothing_comes(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    sc_event_t *ev = NULL;
    uint32_t d = 7;
    assert_int_equal(sc_sub_wait(s, &ev, &d, 0), SC_ETIMEDOUT);
    assert_int_equal(sc_sub_wait(s, &ev, &d, 5), SC_ETIMEDOUT);
    emit_simple(&fx, "doc:2"); /* another scope: still nothing here */
    assert_int_equal(sc_sub_wait(s, &ev, &d, 5), SC_ETIMEDOUT);
    sc_sub_destroy(s);
    fx_close(&fx);
}

static void test_bus_sub_wait_returns_queued_item_and_closed(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 1);
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    emit_simple(&fx, "doc:1");
    emit_simple(&fx, "doc:1"); /* dropped */
    sc_event_t *ev = NULL;
    uint32_t d = 7;
    assert_int_equal(sc_sub_wait(s, &ev, &d, -1), SC_OK);
    assert_int_equal(sc_event_seq(ev), 1);
    assert_int_equal(d, 0);
    sc_event_unref(ev);
    sc_bus_close(fx.bus, "doc:1", SC_CLOSE_CLOSED);
    d = 7;
    assert_int_equal(sc_sub_wait(s, &ev, &d, -1), SC_ECLOSED);
    assert_int_equal(d, 1);
    assert_int_equal(sc_sub_wait(s, &ev, &d, 0), SC_ECLOSED);
    sc_sub_destroy(s);
    fx_close(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bus_wake_called_once_until_rearm),
        cmocka_unit_test(test_bus_wake_called_on_close),
        cmocka_unit_test(
            test_bus_wake_once_for_several_subscriptions_of_one_owner),
        cmocka_unit_test(
            test_bus_owner_wait_returns_after_wake_and_times_out_after_rearm),
        cmocka_unit_test(test_bus_owner_wait_rejects_owner_with_wake_callback),
        cmocka_unit_test(test_bus_sub_wait_times_out_when_nothing_comes),
        cmocka_unit_test(test_bus_sub_wait_returns_queued_item_and_closed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
