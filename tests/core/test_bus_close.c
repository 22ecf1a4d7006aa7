/*
 * Unit tests for core/bus.h, the end of subscriptions: sc_bus_close of a
 * scope or of everything (removed at once, drained, then the end marker),
 * leaving by sc_sub_destroy (the scope disappears with its last
 * subscriber), on_disconnect exactly once, and kicking users with
 * sc_bus_close_user.
 *
 * Every test is single-threaded unless its name says otherwise, uses the
 * shared fixture (bus_fixture.h: an injected clock for the drop-warning
 * throttle, a captured logger), never sleeps for timing, and ends with
 * every subscription, owner and bus destroyed, so ASan's leak check covers
 * each behaviour. Threaded stress and race tests live in
 * test_bus_threads.c.
 */
#include "bus_fixture.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* ---- close ----------------------------------------------------------- */

static void test_bus_close_scope_ends_only_that_scope(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_sub_t *a1 = sub_plain(&fx, "doc:1");
    sc_sub_t *a2 = sub_plain(&fx, "doc:1");
    sc_sub_t *b = sub_plain(&fx, "doc:2");
    emit_text(&fx, "doc:1", "x");
    assert_int_equal(sc_bus_close(fx.bus, "doc:1", SC_CLOSE_CLOSED), 2);
    take_text(a1, "x");
    expect_end(a1, SC_ECLOSED, 0);
    expect_end(a1, SC_ECLOSED, 0); /* the end marker repeats */
    take_text(a2, "x");
    expect_end(a2, SC_ECLOSED, 0);
    assert_int_equal(sc_sub_close_reason(a1), SC_CLOSE_CLOSED);
    assert_int_equal(sc_sub_close_reason(b), SC_CLOSE_NONE);
    emit_text(&fx, "doc:2", "y");
    take_text(b, "y");
    expect_empty(b);
    sc_sub_destroy(a1);
    sc_sub_destroy(a2);
    sc_sub_destroy(b);
    fx_close(&fx);
}

static void test_bus_close_all_ends_every_scope(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_sub_t *a = sub_plain(&fx, "doc:1");
    sc_sub_t *b = sub_plain(&fx, "doc:2");
    sc_sub_t *c = sub_plain(&fx, "doc:3");
    emit_text(&fx, "doc:2", "q");
    assert_int_equal(sc_bus_close(fx.bus, NULL, SC_CLOSE_CLOSED), 3);
    expect_end(a, SC_ECLOSED, 0);
    take_text(b, "q");
    expect_end(b, SC_ECLOSED, 0);
    expect_end(c, SC_ECLOSED, 0);
    assert_int_equal(sc_sub_close_reason(a), SC_CLOSE_CLOSED);
    assert_int_equal(sc_sub_close_reason(b), SC_CLOSE_CLOSED);
    assert_int_equal(sc_sub_close_reason(c), SC_CLOSE_CLOSED);
    sc_bus_stats_t st;
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.subscribers, 0);
    assert_int_equal(st.scopes, 0);
    /* Closing an empty bus ends nothing. */
    assert_int_equal(sc_bus_close(fx.bus, NULL, SC_CLOSE_CLOSED), 0);
    sc_sub_destroy(a);
    sc_sub_destroy(b);
    sc_sub_destroy(c);
    fx_close(&fx);
}

static void test_bus_close_unknown_scope_is_noop(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_sub_t *a = sub_plain(&fx, "doc:1");
    emit_simple(&fx, "doc:1");
    assert_int_equal(sc_bus_close(fx.bus, "doc:404", SC_CLOSE_CLOSED), 0);
    assert_int_equal(sc_sub_close_reason(a), SC_CLOSE_NONE);
    assert_int_equal(take_seq(a), 1);
    expect_empty(a);
    emit_simple(&fx, "doc:1");
    assert_int_equal(take_seq(a), 2);
    sc_bus_stats_t st;
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.subscribers, 1);
    assert_int_equal(st.scopes, 1);
    sc_sub_destroy(a);
    fx_close(&fx);
}

static void
test_bus_closed_subscriber_drains_full_queue_then_gets_closed(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 4);
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    for (int i = 0; i < 4; i++)
        emit_simple(&fx, "doc:1");
    assert_int_equal(sc_sub_pending(s), 4);
    assert_int_equal(sc_bus_close(fx.bus, "doc:1", SC_CLOSE_CLOSED), 1);
    /* The end marker needs no room: nothing queued is evicted. */
    for (uint64_t i = 1; i <= 4; i++)
        assert_int_equal(take_seq(s), i);
    expect_end(s, SC_ECLOSED, 0);
    expect_end(s, SC_ECLOSED, 0);
    sc_bus_stats_t st;
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.dropped, 0);
    sc_sub_destroy(s);
    fx_close(&fx);
}

static void
test_bus_closed_subscriber_reports_pending_drops_with_closed(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 4);
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    for (int i = 0; i < 6; i++)
        emit_simple(&fx, "doc:1");
    sc_bus_close(fx.bus, "doc:1", SC_CLOSE_CLOSED);
    for (uint64_t i = 1; i <= 4; i++)
        assert_int_equal(take_seq(s), i);
    /* The pending dropped notice comes with (before) the end. */
    expect_end(s, SC_ECLOSED, 2);
    expect_end(s, SC_ECLOSED, 0);
    sc_sub_destroy(s);
    fx_close(&fx);
}

static void test_bus_close_removes_subscriptions_at_once(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t c;
    mkconn(&c, "s1", "alice");
    sc_sub_t *s = sub_conn(&fx, "doc:1", &c, false, false);
    emit_simple(&fx, "doc:1");
    emit_simple(&fx, "doc:1");
    sc_bus_close(fx.bus, "doc:1", SC_CLOSE_CLOSED);
    /* Gone before the consumer drained or destroyed anything. */
    sc_bus_stats_t st;
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.subscribers, 0);
    assert_int_equal(st.scopes, 0);
    assert_int_equal(sc_bus_scope_seq(fx.bus, "doc:1"), 0);
    sc_conn_t *list = NULL;
    size_t n = 9;
    assert_int_equal(sc_bus_presence(fx.bus, "doc:1", &list, &n), SC_OK);
    assert_int_equal(n, 0);
    sc_presence_free(list, n);
    /* Later emits reach nobody and are not sequenced. */
    assert_int_equal(emit_simple(&fx, "doc:1"), 0);
    assert_int_equal(take_seq(s), 1);
    assert_int_equal(take_seq(s), 2);
    expect_end(s, SC_ECLOSED, 0);
    sc_sub_destroy(s);
    sc_conn_deinit(&c);
    fx_close(&fx);
}

static void test_bus_close_with_shutdown_reason_sets_reason(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_sub_t *a = sub_plain(&fx, "doc:1");
    sc_sub_t *b = sub_plain(&fx, "doc:2");
    assert_int_equal(sc_bus_close(fx.bus, NULL, SC_CLOSE_SHUTDOWN), 2);
    assert_int_equal(sc_sub_close_reason(a), SC_CLOSE_SHUTDOWN);
    assert_int_equal(sc_sub_close_reason(b), SC_CLOSE_SHUTDOWN);
    expect_end(a, SC_ECLOSED, 0);
    expect_end(b, SC_ECLOSED, 0);
    sc_sub_destroy(a);
    sc_sub_destroy(b);
    fx_close(&fx);
}

static void test_bus_close_sends_no_leave_events(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t ca, cb;
    mkconn(&ca, "s1", "alice");
    mkconn(&cb, "s2", "bob");
    sc_sub_t *a = sub_conn(&fx, "doc:1", &ca, false, false);
    sc_sub_t *b = sub_conn(&fx, "doc:1", &cb, false, false);
    take_presence(a, SC_EVENT_JOIN, "s2", true);
    expect_empty(a);
    expect_empty(b);
    assert_int_equal(sc_bus_close(fx.bus, "doc:1", SC_CLOSE_CLOSED), 2);
    expect_end(a, SC_ECLOSED, 0);
    expect_end(b, SC_ECLOSED, 0);
    /* Destroying closed subscriptions announces nothing either. */
    sc_sub_destroy(b);
    expect_end(a, SC_ECLOSED, 0);
    sc_sub_destroy(a);
    sc_conn_deinit(&ca);
    sc_conn_deinit(&cb);
    fx_close(&fx);
}

/* ---- leaving and on_disconnect --------------------------------------- */

typedef struct disc_rec {
    int calls;
    int ret;
    char scope[32];
    bool had_conn;
    sc_conn_t conn; /* a copy of what was passed */
} disc_rec_t;

static int on_disc_rec(void *ud, const char *scope, const sc_conn_t *conn)
{
    disc_rec_t *r = ud;
    r->calls++;
    snprintf(r->scope, sizeof r->scope, "%s", scope);
    r->had_conn = conn != NULL;
    if (conn != NULL) {
        sc_conn_deinit(&r->conn);
        assert_int_equal(sc_conn_copy(&r->conn, conn), SC_OK);
    }
    return r->ret;
}

static sc_sub_t *sub_disc(fx_t *fx, const char *scope, const sc_conn_t *conn,
                          disc_rec_t *rec)
{
    sc_sub_opts_t o;
    memset(&o, 0, sizeof o);
    o.conn = conn;
    o.on_disconnect = on_disc_rec;
    o.on_disconnect_ud = rec;
    return sub_opts(fx, scope, NULL, &o, NULL);
}

static void test_bus_leaving_removes_scope_entry_and_resets_seq(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_sub_t *a = sub_plain(&fx, "doc:1");
    sc_sub_t *b = sub_plain(&fx, "doc:1");
    emit_simple(&fx, "doc:1");
    emit_simple(&fx, "doc:1");
    sc_bus_stats_t st;
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.scopes, 1);
    assert_int_equal(st.subscribers, 2);
    sc_sub_destroy(a);
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.scopes, 1); /* b is still there */
    assert_int_equal(st.subscribers, 1);
    assert_int_equal(sc_bus_scope_seq(fx.bus, "doc:1"), 2);
    sc_sub_destroy(b); /* still holds two queued events: released */
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.scopes, 0);
    assert_int_equal(st.subscribers, 0);
    assert_int_equal(sc_bus_scope_seq(fx.bus, "doc:1"), 0);
    /* The scope comes back to life with a fresh sequence. */
    uint64_t seq = 99;
    sc_sub_t *c = sub_opts(&fx, "doc:1", NULL, NULL, &seq);
    assert_int_equal(seq, 0);
    assert_int_equal(emit_simple(&fx, "doc:1"), 1);
    assert_int_equal(take_seq(c), 1);
    sc_sub_destroy(c);
    fx_close(&fx);
}

static void test_bus_on_disconnect_called_once_with_scope_and_conn(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    disc_rec_t rec;
    memset(&rec, 0, sizeof rec);
    sc_conn_t c;
    mkconn(&c, "s1", "alice");
    sc_sub_t *s = sub_disc(&fx, "doc:1", &c, &rec);
    emit_simple(&fx, "doc:1");
    assert_int_equal(rec.calls, 0);
    sc_sub_destroy(s);
    assert_int_equal(rec.calls, 1);
    assert_string_equal(rec.scope, "doc:1");
    assert_true(rec.had_conn);
    assert_true(sc_conn_equal(&rec.conn, &c));
    sc_conn_deinit(&rec.conn);
    sc_conn_deinit(&c);
    fx_close(&fx);
}

static void test_bus_on_disconnect_called_once_after_close(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    disc_rec_t rec;
    memset(&rec, 0, sizeof rec);
    sc_conn_t c;
    mkconn(&c, "s1", "alice");
    sc_sub_t *s = sub_disc(&fx, "doc:1", &c, &rec);
    assert_int_equal(sc_bus_close(fx.bus, "doc:1", SC_CLOSE_CLOSED), 1);
    assert_int_equal(sc_bus_close(fx.bus, NULL, SC_CLOSE_CLOSED), 0);
    /* Called from sc_sub_destroy on the owner's thread, not from close. */
    assert_int_equal(rec.calls, 0);
    expect_end(s, SC_ECLOSED, 0);
    sc_sub_destroy(s);
    assert_int_equal(rec.calls, 1);
    assert_string_equal(rec.scope, "doc:1");
    assert_true(sc_conn_equal(&rec.conn, &c));
    sc_conn_deinit(&rec.conn);
    sc_conn_deinit(&c);
    fx_close(&fx);
}

static void test_bus_on_disconnect_called_once_after_close_user(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    disc_rec_t rec;
    memset(&rec, 0, sizeof rec);
    sc_conn_t c;
    mkconn(&c, "s1", "alice");
    sc_sub_t *s = sub_disc(&fx, "doc:1", &c, &rec);
    assert_int_equal(sc_bus_close_user(fx.bus, "alice", NULL), 1);
    assert_int_equal(sc_bus_close_user(fx.bus, "alice", NULL), 0);
    assert_int_equal(rec.calls, 0);
    sc_sub_destroy(s);
    assert_int_equal(rec.calls, 1);
    sc_conn_deinit(&rec.conn);
    sc_conn_deinit(&c);
    fx_close(&fx);
}

static void test_bus_on_disconnect_receives_null_conn_without_conn(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    disc_rec_t rec;
    memset(&rec, 0, sizeof rec);
    rec.had_conn = true;
    sc_sub_t *s = sub_disc(&fx, "doc:7", NULL, &rec);
    sc_sub_destroy(s);
    assert_int_equal(rec.calls, 1);
    assert_string_equal(rec.scope, "doc:7");
    assert_false(rec.had_conn);
    fx_close(&fx);
}

static void test_bus_on_disconnect_failure_is_logged(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    disc_rec_t rec;
    memset(&rec, 0, sizeof rec);
    rec.ret = -1;
    sc_sub_t *s = sub_disc(&fx, "doc:1", NULL, &rec);
    sc_sub_t *other = sub_plain(&fx, "doc:1");
    assert_int_equal(logcap_count_other_warnings(&fx.log), 0);
    sc_sub_destroy(s);
    assert_int_equal(rec.calls, 1);
    assert_true(logcap_count_other_warnings(&fx.log) >= 1);
    /* Nothing else changed: the bus keeps working. */
    assert_int_equal(emit_simple(&fx, "doc:1"), 1);
    assert_int_equal(take_seq(other), 1);
    sc_sub_destroy(other);
    fx_close(&fx);
}

/* ---- kicking users (close_user) -------------------------------------- */

static void test_bus_close_user_in_scope_kicks_and_sends_leave(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t a1, a2, b1;
    mkconn(&a1, "s1", "alice");
    mkconn(&a2, "s2", "alice");
    mkconn(&b1, "s3", "bob");
    sc_sub_t *x1 = sub_conn(&fx, "doc:1", &a1, false, true);
    sc_sub_t *x2 = sub_conn(&fx, "doc:1", &a2, false, true);
    sc_sub_t *other_scope = sub_conn(&fx, "doc:2", &a1, false, true);
    sc_sub_t *bob = sub_conn(&fx, "doc:1", &b1, false, false);
    emit_simple(&fx, "doc:1");
    assert_int_equal(sc_bus_close_user(fx.bus, "alice", "doc:1"), 2);
    /* Kicked: what was queued, then the end, with reason kicked. */
    assert_int_equal(sc_sub_close_reason(x1), SC_CLOSE_KICKED);
    assert_int_equal(sc_sub_close_reason(x2), SC_CLOSE_KICKED);
    assert_int_equal(take_seq(x1), 1);
    expect_end(x1, SC_ECLOSED, 0);
    assert_int_equal(take_seq(x2), 1);
    expect_end(x2, SC_ECLOSED, 0);
    /* Other scopes of the user are untouched. */
    assert_int_equal(sc_sub_close_reason(other_scope), SC_CLOSE_NONE);
    emit_simple(&fx, "doc:2");
    assert_int_equal(take_seq(other_scope), 1);
    /* The others get a LEAVE per kicked connection; the last one says
     * alice's last connection left. */
    assert_int_equal(take_seq(bob), 1);
    sc_event_t *ev1 = take(bob, NULL);
    sc_event_t *ev2 = take(bob, NULL);
    assert_int_equal(sc_event_kind(ev1), SC_EVENT_LEAVE);
    assert_int_equal(sc_event_kind(ev2), SC_EVENT_LEAVE);
    const char *s_1 = sc_event_conn(ev1)->session_id;
    const char *s_2 = sc_event_conn(ev2)->session_id;
    assert_true((strcmp(s_1, "s1") == 0 && strcmp(s_2, "s2") == 0) ||
                (strcmp(s_1, "s2") == 0 && strcmp(s_2, "s1") == 0));
    assert_true(sc_event_user_edge(ev2));
    sc_event_unref(ev1);
    sc_event_unref(ev2);
    expect_empty(bob);
    sc_bus_stats_t st;
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.subscribers, 2);
    sc_sub_destroy(x1);
    sc_sub_destroy(x2);
    expect_empty(bob); /* destroying kicked subs announces nothing more */
    sc_sub_destroy(other_scope);
    sc_sub_destroy(bob);
    sc_conn_deinit(&a1);
    sc_conn_deinit(&a2);
    sc_conn_deinit(&b1);
    fx_close(&fx);
}

static void test_bus_close_user_in_all_scopes_returns_count(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t a1, b1;
    mkconn(&a1, "s1", "alice");
    mkconn(&b1, "s2", "bob");
    sc_sub_t *bob = sub_conn(&fx, "doc:2", &b1, false, false);
    sc_sub_t *anon = sub_plain(&fx, "doc:3");
    sc_sub_t *x[3];
    x[0] = sub_conn(&fx, "doc:1", &a1, false, true);
    x[1] = sub_conn(&fx, "doc:2", &a1, false, true);
    x[2] = sub_conn(&fx, "doc:3", &a1, false, true);
    take_presence(bob, SC_EVENT_JOIN, "s1", true);
    take_presence(anon, SC_EVENT_JOIN, "s1", true);
    assert_int_equal(sc_bus_close_user(fx.bus, "alice", NULL), 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sc_sub_close_reason(x[i]), SC_CLOSE_KICKED);
        expect_end(x[i], SC_ECLOSED, 0);
    }
    take_presence(bob, SC_EVENT_LEAVE, "s1", true);
    take_presence(anon, SC_EVENT_LEAVE, "s1", true);
    assert_int_equal(sc_sub_close_reason(bob), SC_CLOSE_NONE);
    sc_bus_stats_t st;
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.subscribers, 2);
    assert_int_equal(st.scopes, 2); /* doc:1 disappeared */
    for (int i = 0; i < 3; i++)
        sc_sub_destroy(x[i]);
    expect_empty(bob);
    sc_sub_destroy(bob);
    sc_sub_destroy(anon);
    sc_conn_deinit(&a1);
    sc_conn_deinit(&b1);
    fx_close(&fx);
}

static void test_bus_close_user_unknown_user_returns_zero(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t a1;
    mkconn(&a1, "s1", "alice");
    sc_sub_t *anon = sub_plain(&fx, "doc:1");
    sc_sub_t *x = sub_conn(&fx, "doc:1", &a1, false, true);
    take_presence(anon, SC_EVENT_JOIN, "s1", true);
    assert_int_equal(sc_bus_close_user(fx.bus, "mallory", NULL), 0);
    assert_int_equal(sc_bus_close_user(fx.bus, "mallory", "doc:1"), 0);
    assert_int_equal(sc_bus_close_user(fx.bus, "alice", "doc:404"), 0);
    assert_int_equal(sc_sub_close_reason(x), SC_CLOSE_NONE);
    expect_empty(anon);
    sc_sub_destroy(x);
    take_presence(anon, SC_EVENT_LEAVE, "s1", true);
    sc_sub_destroy(anon);
    sc_conn_deinit(&a1);
    fx_close(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bus_close_scope_ends_only_that_scope),
        cmocka_unit_test(test_bus_close_all_ends_every_scope),
        cmocka_unit_test(test_bus_close_unknown_scope_is_noop),
        cmocka_unit_test(
            test_bus_closed_subscriber_drains_full_queue_then_gets_closed),
        cmocka_unit_test(
            test_bus_closed_subscriber_reports_pending_drops_with_closed),
        cmocka_unit_test(test_bus_close_removes_subscriptions_at_once),
        cmocka_unit_test(test_bus_close_with_shutdown_reason_sets_reason),
        cmocka_unit_test(test_bus_close_sends_no_leave_events),
        cmocka_unit_test(test_bus_leaving_removes_scope_entry_and_resets_seq),
        cmocka_unit_test(
            test_bus_on_disconnect_called_once_with_scope_and_conn),
        cmocka_unit_test(test_bus_on_disconnect_called_once_after_close),
        cmocka_unit_test(test_bus_on_disconnect_called_once_after_close_user),
        cmocka_unit_test(
            test_bus_on_disconnect_receives_null_conn_without_conn),
        cmocka_unit_test(test_bus_on_disconnect_failure_is_logged),
        cmocka_unit_test(test_bus_close_user_in_scope_kicks_and_sends_leave),
        cmocka_unit_test(test_bus_close_user_in_all_scopes_returns_count),
        cmocka_unit_test(test_bus_close_user_unknown_user_returns_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
