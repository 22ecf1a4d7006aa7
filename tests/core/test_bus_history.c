/*
 * Unit tests for core/bus.h, history and recovery: which scopes keep
 * events (the history hook), the count and age limits, scopes that live on
 * their history, epochs, subscribing with `since` (replay before live
 * events, the audience and echo rules, recovered or not), moving a live
 * subscription back (sc_sub_recover: its queue and pending drops
 * discarded), sc_bus_history (limit, more, the audience rule for a user),
 * the byte budget, and a close that ends a scope's history.
 *
 * Single-threaded, on the shared fixture (bus_fixture.h): the injected
 * clock ages events without sleeping.
 */
#include "bus_fixture.h"

#include <stdio.h>
#include <string.h>

/* The hook: "h:*" keeps 5 events, "t:*" those younger than 10 s, "b:*"
 * 1000 (for the budget), anything else nothing. */
static void hook(void *ud, const char *scope, sc_history_limits_t *out)
{
    (void)ud;
    if (strncmp(scope, "h:", 2) == 0)
        out->max_events = 5;
    else if (strncmp(scope, "t:", 2) == 0)
        out->max_age = 10;
    else if (strncmp(scope, "b:", 2) == 0)
        out->max_events = 1000;
}

static void open_hist(fx_t *fx, size_t max_bytes, int maxsize)
{
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    cfg.history = hook;
    cfg.history_max_bytes = max_bytes;
    cfg.maxsize = maxsize;
    cfg.epoch_seed = 42;
    fx_open_cfg(fx, &cfg);
}

static sc_sub_t *sub_since(fx_t *fx, const char *scope, const sc_conn_t *conn,
                           const sc_since_t *since, uint64_t *seq)
{
    sc_sub_opts_t o = {.conn = conn, .since = since};
    return sub_opts(fx, scope, NULL, &o, seq);
}

static sc_bus_stats_t stats(fx_t *fx)
{
    sc_bus_stats_t st;
    sc_bus_stats(fx->bus, &st);
    return st;
}

static void test_history_scope_without_history_is_unchanged(void **state)
{
    (void)state;
    fx_t fx;
    open_hist(&fx, 0, 16);
    assert_int_equal(emit_simple(&fx, "x"), 0); /* nobody, no history */
    sc_since_t from0 = {0};
    uint64_t seq;
    sc_sub_t *s = sub_since(&fx, "x", NULL, &from0, &seq);
    assert_int_equal(seq, 0);
    assert_true(sc_sub_recovered(s)); /* nothing came after 0 */
    expect_empty(s);
    assert_int_equal(emit_simple(&fx, "x"), 1);
    assert_int_equal(take_seq(s), 1);
    /* nothing is kept: only "nothing missed" recovers */
    sc_since_t at0 = {.seq = 0, .epoch = sc_sub_epoch(s), .has_epoch = true};
    sc_since_t at1 = {.seq = 1, .epoch = sc_sub_epoch(s), .has_epoch = true};
    sc_sub_t *a = sub_since(&fx, "x", NULL, &at0, NULL);
    assert_false(sc_sub_recovered(a));
    expect_empty(a);
    sc_sub_t *b = sub_since(&fx, "x", NULL, &at1, NULL);
    assert_true(sc_sub_recovered(b));
    expect_empty(b);
    assert_int_equal(stats(&fx).history_events, 0);
    sc_sub_destroy(a);
    sc_sub_destroy(b);
    sc_sub_destroy(s);
    fx_close(&fx);
}

static void test_history_kept_without_subscribers_and_replayed(void **state)
{
    (void)state;
    fx_t fx;
    open_hist(&fx, 0, 16);
    assert_int_equal(emit_text(&fx, "h:a", "one"), 1);
    assert_int_equal(emit_text(&fx, "h:a", "two"), 2);
    assert_int_equal(emit_text(&fx, "h:a", "three"), 3);
    assert_int_equal(sc_bus_scope_seq(fx.bus, "h:a"), 3);
    assert_int_equal(stats(&fx).history_events, 3);
    assert_int_equal(stats(&fx).history_scopes, 1);
    sc_since_t from0 = {0};
    uint64_t seq;
    sc_sub_t *s = sub_since(&fx, "h:a", NULL, &from0, &seq);
    assert_int_equal(seq, 3);
    assert_true(sc_sub_recovered(s));
    assert_int_equal(sc_sub_pending(s), 3);
    emit_text(&fx, "h:a", "four"); /* live, after the replay */
    take_text(s, "one");
    take_text(s, "two");
    take_text(s, "three");
    take_text(s, "four");
    expect_empty(s);
    sc_sub_destroy(s);
    /* the scope lives on its history */
    assert_int_equal(sc_bus_scope_seq(fx.bus, "h:a"), 4);
    fx_close(&fx);
}

static void test_history_count_limit_bounds_recovery(void **state)
{
    (void)state;
    fx_t fx;
    open_hist(&fx, 0, 64);
    sc_sub_t *keep = sub_plain(&fx, "h:c");
    for (int i = 0; i < 10; i++)
        emit_simple(&fx, "h:c");
    uint64_t ep = sc_sub_epoch(keep);
    assert_int_equal(stats(&fx).history_events, 5); /* 6..10 */
    sc_since_t s4 = {4, ep, true}, s5 = {5, ep, true}, s10 = {10, ep, true},
               s11 = {11, ep, true}, s0 = {0};
    sc_sub_t *a = sub_since(&fx, "h:c", NULL, &s4, NULL);
    assert_false(sc_sub_recovered(a)); /* 5 is gone */
    expect_empty(a);
    sc_sub_t *b = sub_since(&fx, "h:c", NULL, &s5, NULL);
    assert_true(sc_sub_recovered(b));
    for (uint64_t q = 6; q <= 10; q++)
        assert_int_equal(take_seq(b), q);
    expect_empty(b);
    sc_sub_t *c = sub_since(&fx, "h:c", NULL, &s10, NULL);
    assert_true(sc_sub_recovered(c)); /* nothing missed */
    expect_empty(c);
    sc_sub_t *d = sub_since(&fx, "h:c", NULL, &s11, NULL);
    assert_false(sc_sub_recovered(d)); /* from the future */
    sc_sub_t *e = sub_since(&fx, "h:c", NULL, &s0, NULL);
    assert_false(sc_sub_recovered(e)); /* 1..5 are gone */
    expect_empty(e);
    sc_sub_destroy(a);
    sc_sub_destroy(b);
    sc_sub_destroy(c);
    sc_sub_destroy(d);
    sc_sub_destroy(e);
    sc_sub_destroy(keep);
    fx_close(&fx);
}

static void test_history_epochs_differ_per_life(void **state)
{
    (void)state;
    fx_t fx;
    open_hist(&fx, 0, 16);
    sc_sub_t *s = sub_plain(&fx, "x");
    uint64_t e1 = sc_sub_epoch(s);
    assert_int_not_equal(e1, 0);
    emit_simple(&fx, "x");
    sc_sub_destroy(s); /* the scope dies */
    s = sub_plain(&fx, "x");
    uint64_t e2 = sc_sub_epoch(s);
    assert_int_not_equal(e1, e2);
    /* a seq of the old epoch does not recover, even a matching number */
    sc_since_t old = {1, e1, true};
    emit_simple(&fx, "x");
    sc_sub_t *a = sub_since(&fx, "x", NULL, &old, NULL);
    assert_false(sc_sub_recovered(a));
    sc_sub_destroy(a);
    sc_sub_destroy(s);
    /* another bus with another seed: other epochs */
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    cfg.epoch_seed = 43;
    fx_t fy;
    fx_open_cfg(&fy, &cfg);
    sc_sub_t *t = sub_plain(&fy, "x");
    assert_int_not_equal(sc_sub_epoch(t), e1);
    assert_int_not_equal(sc_sub_epoch(t), e2);
    sc_sub_destroy(t);
    fx_close(&fy);
    fx_close(&fx);
}

static void test_history_age_limit_and_expiry(void **state)
{
    (void)state;
    fx_t fx;
    open_hist(&fx, 0, 16);
    emit_simple(&fx, "t:a"); /* at 100 */
    fx.clock.now = 105;
    emit_simple(&fx, "t:a");
    fx.clock.now = 110.5;
    assert_int_equal(sc_bus_expire_history(fx.bus), 1);
    assert_int_equal(stats(&fx).history_events, 1);
    sc_since_t s0 = {0}, s1 = {1, 0, true};
    sc_history_read_t r;
    assert_int_equal(sc_bus_history(fx.bus, "t:a", &s0, NULL, 100, &r), SC_OK);
    assert_true(r.exists);
    assert_false(r.recovered);
    s1.epoch = r.epoch;
    sc_history_read_free(&r);
    assert_int_equal(sc_bus_history(fx.bus, "t:a", &s1, NULL, 100, &r), SC_OK);
    assert_true(r.recovered);
    assert_int_equal(r.n, 1);
    assert_int_equal(sc_event_seq(r.events[0]), 2);
    sc_history_read_free(&r);
    fx.clock.now = 116;
    assert_int_equal(sc_bus_expire_history(fx.bus), 1);
    /* nobody subscribed, nothing kept: the scope is gone */
    assert_int_equal(sc_bus_scope_seq(fx.bus, "t:a"), 0);
    assert_int_equal(stats(&fx).scopes, 0);
    assert_int_equal(stats(&fx).history_scopes, 0);
    fx_close(&fx);
}

static void test_history_replay_applies_audience_and_echo(void **state)
{
    (void)state;
    fx_t fx;
    open_hist(&fx, 0, 16);
    const char *bob[] = {"bob"};
    emit_text(&fx, "h:r", "all");       /* 1 */
    emit_audience(&fx, "h:r", bob, 1);  /* 2 */
    emit_origin(&fx, "h:r", "s-alice"); /* 3 */
    emit_text(&fx, "h:r", "all again"); /* 4 */
    sc_since_t s0 = {0};
    sc_conn_t ca, cb;
    mkconn(&ca, "s-alice", "alice");
    mkconn(&cb, "s-bob", "bob");
    sc_sub_t *a = sub_since(&fx, "h:r", &ca, &s0, NULL);
    assert_true(sc_sub_recovered(a));
    assert_int_equal(take_seq(a), 1); /* not 2 (audience), not 3 (echo) */
    assert_int_equal(take_seq(a), 4);
    expect_empty(a);
    sc_sub_t *b = sub_since(&fx, "h:r", &cb, &s0, NULL);
    assert_int_equal(take_seq(b), 1);
    assert_int_equal(take_seq(b), 2);
    assert_int_equal(take_seq(b), 3);
    assert_int_equal(take_seq(b), 4);
    sc_sub_t *anon = sub_since(&fx, "h:r", NULL, &s0, NULL);
    assert_int_equal(take_seq(anon), 1);
    assert_int_equal(take_seq(anon), 3);
    assert_int_equal(take_seq(anon), 4);
    /* the HTTP read: no user sees no audience event; bob does */
    sc_history_read_t r;
    assert_int_equal(sc_bus_history(fx.bus, "h:r", &s0, NULL, 100, &r), SC_OK);
    assert_int_equal(r.n, 3);
    sc_history_read_free(&r);
    assert_int_equal(sc_bus_history(fx.bus, "h:r", &s0, "alice", 100, &r),
                     SC_OK);
    assert_int_equal(r.n, 3);
    sc_history_read_free(&r);
    assert_int_equal(sc_bus_history(fx.bus, "h:r", &s0, "bob", 100, &r), SC_OK);
    assert_int_equal(r.n, 4);
    sc_history_read_free(&r);
    sc_conn_deinit(&ca);
    sc_conn_deinit(&cb);
    sc_sub_destroy(anon);
    sc_sub_destroy(a);
    sc_sub_destroy(b);
    fx_close(&fx);
}

static void test_history_read_limit_and_more(void **state)
{
    (void)state;
    fx_t fx;
    open_hist(&fx, 0, 16);
    for (int i = 0; i < 5; i++)
        emit_simple(&fx, "h:l");
    sc_since_t s0 = {0};
    sc_history_read_t r;
    assert_int_equal(sc_bus_history(fx.bus, "h:l", &s0, NULL, 2, &r), SC_OK);
    assert_int_equal(r.n, 2);
    assert_true(r.more);
    assert_int_equal(r.seq, 5);
    sc_since_t s2 = {2, r.epoch, true};
    sc_history_read_free(&r);
    assert_int_equal(sc_bus_history(fx.bus, "h:l", &s2, NULL, 3, &r), SC_OK);
    assert_int_equal(r.n, 3);
    assert_false(r.more);
    assert_int_equal(sc_event_seq(r.events[0]), 3);
    assert_int_equal(sc_event_seq(r.events[2]), 5);
    sc_history_read_free(&r);
    /* unknown scope: recovered only from 0 */
    assert_int_equal(sc_bus_history(fx.bus, "h:none", &s0, NULL, 3, &r), SC_OK);
    assert_false(r.exists);
    assert_true(r.recovered);
    assert_int_equal(r.n, 0);
    sc_history_read_free(&r);
    sc_since_t noep = {3, 0, false}; /* a seq needs its epoch */
    assert_int_equal(sc_bus_history(fx.bus, "h:l", &noep, NULL, 3, &r), SC_OK);
    assert_false(r.recovered);
    assert_int_equal(r.n, 0);
    sc_history_read_free(&r);
    assert_int_equal(sc_bus_history(fx.bus, "h:l", NULL, NULL, 3, &r),
                     SC_EINVAL);
    fx_close(&fx);
}

static void test_history_recover_repositions_a_live_subscription(void **state)
{
    (void)state;
    fx_t fx;
    open_hist(&fx, 0, 2); /* a queue of 2: drops */
    sc_sub_t *s = sub_plain(&fx, "b:q");
    uint64_t ep = sc_sub_epoch(s);
    emit_simple(&fx, "b:q");          /* 1 */
    assert_int_equal(take_seq(s), 1); /* the client has 1 */
    for (int i = 0; i < 6; i++)       /* 2..7: 2, 3 queued, 4..7 lost */
        emit_simple(&fx, "b:q");
    sc_since_t s1 = {1, ep, true};
    bool rec;
    uint64_t seq;
    assert_int_equal(sc_sub_recover(s, &s1, &rec, &seq), SC_OK);
    assert_true(rec);
    assert_int_equal(seq, 7);
    emit_simple(&fx, "b:q"); /* 8: live, after the replay */
    for (uint64_t q = 2; q <= 8; q++) {
        uint32_t dropped = 99;
        sc_event_t *ev = take(s, &dropped);
        assert_int_equal(dropped, 0); /* the drops went with the queue */
        assert_int_equal(sc_event_seq(ev), q);
        sc_event_unref(ev);
    }
    expect_empty(s); /* no trailing drop notice either */
    /* not recoverable: nothing changes */
    emit_simple(&fx, "b:q"); /* 9 */
    sc_since_t wrong = {1, ep + 1, true};
    assert_int_equal(sc_sub_recover(s, &wrong, &rec, NULL), SC_OK);
    assert_false(rec);
    assert_int_equal(take_seq(s), 9);
    /* a closed subscription */
    sc_bus_close(fx.bus, "b:q", SC_CLOSE_CLOSED);
    assert_int_equal(sc_sub_recover(s, &s1, &rec, NULL), SC_ECLOSED);
    sc_sub_destroy(s);
    fx_close(&fx);
}

static void test_history_close_ends_history(void **state)
{
    (void)state;
    fx_t fx;
    open_hist(&fx, 0, 16);
    sc_sub_t *s = sub_plain(&fx, "h:z");
    uint64_t ep = sc_sub_epoch(s);
    emit_simple(&fx, "h:z");
    sc_bus_close(fx.bus, "h:z", SC_CLOSE_CLOSED);
    assert_int_equal(stats(&fx).history_events, 0);
    take_seq(s);
    sc_sub_destroy(s);
    sc_since_t s0 = {0};
    sc_sub_t *t = sub_since(&fx, "h:z", NULL, &s0, NULL);
    assert_int_not_equal(sc_sub_epoch(t), ep);
    assert_true(sc_sub_recovered(t)); /* a new life: nothing after 0 */
    expect_empty(t);
    sc_sub_destroy(t);
    fx_close(&fx);
}

static void test_history_budget_holds_over_many_scopes(void **state)
{
    (void)state;
    fx_t fx;
    open_hist(&fx, 0, 16);
    /* the cost of one event, to size the budget */
    emit_simple(&fx, "b:probe");
    uint64_t one = stats(&fx).history_bytes;
    assert_true(one > 0);
    fx_close(&fx);

    size_t budget = (size_t)one * 20;
    open_hist(&fx, budget, 16);
    char name[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "b:%d", i % 300);
        emit_simple(&fx, name);
        sc_bus_stats_t st = stats(&fx);
        assert_true(st.history_bytes <= budget);
        assert_true(st.history_events <= 20);
    }
    sc_bus_stats_t st = stats(&fx);
    assert_true(st.history_evicted > 0);
    assert_true(st.history_events > 0);
    /* one scope alone may use the whole budget */
    for (int i = 0; i < 100; i++)
        emit_simple(&fx, "b:hot");
    sc_since_t s0 = {0};
    sc_history_read_t r;
    assert_int_equal(sc_bus_history(fx.bus, "b:hot", &s0, NULL, 1000, &r),
                     SC_OK);
    assert_false(r.recovered); /* 1.. are gone */
    sc_history_read_free(&r);
    sc_since_t s90 = {90, 0, true};
    assert_int_equal(sc_bus_history(fx.bus, "b:hot", &s0, NULL, 1, &r), SC_OK);
    s90.epoch = r.epoch;
    sc_history_read_free(&r);
    assert_int_equal(sc_bus_history(fx.bus, "b:hot", &s90, NULL, 1000, &r),
                     SC_OK);
    assert_true(r.recovered); /* the latest ones are there */
    assert_int_equal(r.n, 10);
    sc_history_read_free(&r);
    assert_true(stats(&fx).history_bytes <= budget);
    fx_close(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_history_scope_without_history_is_unchanged),
        cmocka_unit_test(test_history_kept_without_subscribers_and_replayed),
        cmocka_unit_test(test_history_count_limit_bounds_recovery),
        cmocka_unit_test(test_history_epochs_differ_per_life),
        cmocka_unit_test(test_history_age_limit_and_expiry),
        cmocka_unit_test(test_history_replay_applies_audience_and_echo),
        cmocka_unit_test(test_history_read_limit_and_more),
        cmocka_unit_test(test_history_recover_repositions_a_live_subscription),
        cmocka_unit_test(test_history_close_ends_history),
        cmocka_unit_test(test_history_budget_holds_over_many_scopes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
