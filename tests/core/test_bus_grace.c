/*
 * Unit tests for core/bus.h, presence grace: sc_sub_destroy_hold (the
 * entry is held, not announced), sc_bus_expire_held (one LEAVE once the
 * grace has passed, first/last counting held entries), adoption by a
 * subscription with sc_sub_opts_t.adopt (no JOIN, connected-at and meta
 * kept, an UPDATE when the meta changes; only the same session and user;
 * a live entry superseded), and closes (a closed scope drops held entries
 * silently, a kicked user's held entries leave at once).
 *
 * Single-threaded, on the shared fixture (bus_fixture.h): the injected
 * clock moves the grace without sleeping.
 */
#include "bus_fixture.h"

#include <string.h>

#define GRACE 5.0

static void open_grace(fx_t *fx, double grace)
{
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    cfg.presence_grace = grace;
    fx_open_cfg(fx, &cfg);
}

/* Subscribes with a conn (meta may be NULL) and adopt. */
static sc_sub_t *sub_adopt(fx_t *fx, const char *scope, const char *session,
                           const char *user, const char *meta, bool adopt)
{
    sc_conn_t c;
    assert_int_equal(sc_conn_init(&c, session, user, 1000.0 + (adopt ? 1 : 0),
                                  meta, meta ? strlen(meta) : 0),
                     SC_OK);
    sc_sub_opts_t o = {.conn = &c, .adopt = adopt};
    sc_sub_t *s = sub_opts(fx, scope, NULL, &o, NULL);
    sc_conn_deinit(&c);
    return s;
}

static size_t presence_count(fx_t *fx, const char *scope)
{
    sc_conn_t *list;
    size_t n;
    assert_int_equal(sc_bus_presence(fx->bus, scope, &list, &n), SC_OK);
    sc_presence_free(list, n);
    return n;
}

static void test_grace_held_entry_leaves_once_after_grace(void **state)
{
    (void)state;
    fx_t fx;
    open_grace(&fx, GRACE);
    sc_sub_t *obs = sub_adopt(&fx, "d", "obs", "bob", NULL, false);
    sc_sub_t *a = sub_adopt(&fx, "d", "s1", "alice", "{\"c\":1}", false);
    take_presence(obs, SC_EVENT_JOIN, "s1", true);
    sc_sub_destroy_hold(a);
    expect_empty(obs); /* no leave yet */
    assert_int_equal(presence_count(&fx, "d"), 2);
    assert_int_equal(sc_bus_held(fx.bus), 1);
    emit_simple(&fx, "d"); /* events go to live subscriptions only */
    take_seq(obs);
    fx.clock.now += GRACE - 0.5;
    assert_int_equal(sc_bus_expire_held(fx.bus), 0);
    expect_empty(obs);
    fx.clock.now += 0.5;
    assert_int_equal(sc_bus_expire_held(fx.bus), 1);
    take_presence(obs, SC_EVENT_LEAVE, "s1", true);
    assert_int_equal(sc_bus_expire_held(fx.bus), 0);
    expect_empty(obs);
    assert_int_equal(presence_count(&fx, "d"), 1);
    assert_int_equal(sc_bus_held(fx.bus), 0);
    sc_sub_destroy(obs);
    fx_close(&fx);
}

static void test_grace_held_alone_keeps_scope_until_expiry(void **state)
{
    (void)state;
    fx_t fx;
    open_grace(&fx, GRACE);
    sc_sub_t *a = sub_adopt(&fx, "d", "s1", NULL, NULL, false);
    uint64_t seq = emit_simple(&fx, "d");
    take_seq(a);
    sc_sub_destroy_hold(a);
    sc_bus_stats_t st;
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.subscribers, 0);
    assert_int_equal(st.scopes, 1); /* the held entry keeps it */
    assert_int_equal(sc_bus_scope_seq(fx.bus, "d"), seq);
    fx.clock.now += GRACE;
    assert_int_equal(sc_bus_expire_held(fx.bus), 1);
    fx_close(&fx); /* asserts no scope is left */
}

static void test_grace_adopt_takes_over_silently(void **state)
{
    (void)state;
    fx_t fx;
    open_grace(&fx, GRACE);
    sc_sub_t *obs = sub_adopt(&fx, "d", "obs", "bob", NULL, false);
    sc_sub_t *a = sub_adopt(&fx, "d", "s1", "alice", "{\"c\":1}", false);
    take_presence(obs, SC_EVENT_JOIN, "s1", true);
    sc_sub_destroy_hold(a);
    /* the session comes back without a meta: it keeps the held one */
    sc_sub_t *a2 = sub_adopt(&fx, "d", "s1", "alice", NULL, true);
    expect_empty(obs);
    expect_empty(a2);
    assert_int_equal(sc_bus_held(fx.bus), 0);
    const sc_conn_t *c = sc_sub_conn(a2);
    assert_true(c->connected_at == 1000.0); /* the entry's, not the new */
    assert_int_equal(c->meta_len, 7);
    assert_memory_equal(c->meta, "{\"c\":1}", 7);
    assert_int_equal(presence_count(&fx, "d"), 2);
    /* events reach it; nothing expires later */
    emit_simple(&fx, "d");
    take_seq(obs);
    take_seq(a2);
    fx.clock.now += 2 * GRACE;
    assert_int_equal(sc_bus_expire_held(fx.bus), 0);
    expect_empty(obs);
    /* a real departure: one leave, last */
    sc_sub_destroy(a2);
    take_presence(obs, SC_EVENT_LEAVE, "s1", true);
    sc_sub_destroy(obs);
    fx_close(&fx);
}

static void test_grace_adopt_with_new_meta_is_one_update(void **state)
{
    (void)state;
    fx_t fx;
    open_grace(&fx, GRACE);
    sc_sub_t *obs = sub_adopt(&fx, "d", "obs", "bob", NULL, false);
    sc_sub_t *a = sub_adopt(&fx, "d", "s1", "alice", "{\"c\":1}", false);
    take_presence(obs, SC_EVENT_JOIN, "s1", true);
    sc_sub_destroy_hold(a);
    /* the same meta: nothing */
    sc_sub_t *a2 = sub_adopt(&fx, "d", "s1", "alice", "{\"c\":1}", true);
    expect_empty(obs);
    sc_sub_destroy_hold(a2);
    /* another meta: one UPDATE to the others, none to itself */
    sc_sub_t *a3 = sub_adopt(&fx, "d", "s1", "alice", "{\"c\":2}", true);
    sc_event_t *ev = take(obs, NULL);
    assert_int_equal(sc_event_kind(ev), SC_EVENT_UPDATE);
    const sc_conn_t *c = sc_event_conn(ev);
    assert_string_equal(c->session_id, "s1");
    assert_true(c->connected_at == 1000.0);
    assert_memory_equal(c->meta, "{\"c\":2}", 7);
    sc_event_unref(ev);
    expect_empty(obs);
    expect_empty(a3);
    sc_sub_destroy(a3);
    take_presence(obs, SC_EVENT_LEAVE, "s1", true);
    sc_sub_destroy(obs);
    fx_close(&fx);
}

static void test_grace_adopt_needs_same_user_and_flag(void **state)
{
    (void)state;
    fx_t fx;
    open_grace(&fx, GRACE);
    sc_sub_t *obs = sub_adopt(&fx, "d", "obs", "bob", NULL, false);
    sc_sub_t *a = sub_adopt(&fx, "d", "s1", "alice", NULL, false);
    take_presence(obs, SC_EVENT_JOIN, "s1", true);
    sc_sub_destroy_hold(a);
    /* another user presenting the session id: a join, no take-over */
    sc_sub_t *m = sub_adopt(&fx, "d", "s1", "mallory", NULL, true);
    take_presence(obs, SC_EVENT_JOIN, "s1", true);
    /* the same user without adopt: a join too */
    sc_sub_t *a2 = sub_adopt(&fx, "d", "s1", "alice", NULL, false);
    take_presence(obs, SC_EVENT_JOIN, "s1", false);
    assert_int_equal(sc_bus_held(fx.bus), 1);
    fx.clock.now += GRACE;
    assert_int_equal(sc_bus_expire_held(fx.bus), 1);
    take_presence(obs, SC_EVENT_LEAVE, "s1", false); /* a2 is still there */
    sc_sub_destroy(m);
    sc_sub_destroy(a2);
    take_presence(obs, SC_EVENT_LEAVE, "s1", true);
    take_presence(obs, SC_EVENT_LEAVE, "s1", true);
    sc_sub_destroy(obs);
    fx_close(&fx);
}

static void test_grace_two_tabs_last_only_when_both_gone(void **state)
{
    (void)state;
    fx_t fx;
    open_grace(&fx, GRACE);
    sc_sub_t *obs = sub_adopt(&fx, "d", "obs", "bob", NULL, false);
    sc_sub_t *t1 = sub_adopt(&fx, "d", "t1", "alice", NULL, false);
    sc_sub_t *t2 = sub_adopt(&fx, "d", "t2", "alice", NULL, false);
    take_presence(obs, SC_EVENT_JOIN, "t1", true);
    take_presence(obs, SC_EVENT_JOIN, "t2", false);
    /* t1 drops, t2 leaves cleanly: t2's leave is not the last */
    sc_sub_destroy_hold(t1);
    sc_sub_destroy(t2);
    take_presence(obs, SC_EVENT_LEAVE, "t2", false);
    fx.clock.now += GRACE;
    assert_int_equal(sc_bus_expire_held(fx.bus), 1);
    take_presence(obs, SC_EVENT_LEAVE, "t1", true);
    /* both drop: the first expiry is not the last, the second is */
    t1 = sub_adopt(&fx, "d", "t1", "alice", NULL, false);
    t2 = sub_adopt(&fx, "d", "t2", "alice", NULL, false);
    take_presence(obs, SC_EVENT_JOIN, "t1", true);
    take_presence(obs, SC_EVENT_JOIN, "t2", false);
    sc_sub_destroy_hold(t1);
    fx.clock.now += 1;
    sc_sub_destroy_hold(t2);
    fx.clock.now += GRACE - 1;
    assert_int_equal(sc_bus_expire_held(fx.bus), 1);
    take_presence(obs, SC_EVENT_LEAVE, "t1", false);
    fx.clock.now += 1;
    assert_int_equal(sc_bus_expire_held(fx.bus), 1);
    take_presence(obs, SC_EVENT_LEAVE, "t2", true);
    sc_sub_destroy(obs);
    fx_close(&fx);
}

static void test_grace_adopt_supersedes_a_live_entry(void **state)
{
    (void)state;
    fx_t fx;
    open_grace(&fx, GRACE);
    sc_sub_t *obs = sub_adopt(&fx, "d", "obs", "bob", NULL, false);
    sc_sub_t *old = sub_adopt(&fx, "d", "s1", "alice", NULL, false);
    take_presence(obs, SC_EVENT_JOIN, "s1", true);
    /* the old connection is not known gone yet */
    sc_sub_t *a2 = sub_adopt(&fx, "d", "s1", "alice", NULL, true);
    expect_empty(obs);
    assert_int_equal(presence_count(&fx, "d"), 2);
    assert_int_equal(sc_bus_presence_update(fx.bus, old, "{}", 2), SC_ECLOSED);
    /* its end, held or not, is silent */
    sc_sub_destroy_hold(old);
    expect_empty(obs);
    assert_int_equal(sc_bus_held(fx.bus), 0);
    sc_sub_destroy(a2);
    take_presence(obs, SC_EVENT_LEAVE, "s1", true);
    sc_sub_destroy(obs);
    fx_close(&fx);
}

static void test_grace_closes(void **state)
{
    (void)state;
    fx_t fx;
    open_grace(&fx, GRACE);
    sc_sub_t *obs = sub_adopt(&fx, "d", "obs", "bob", NULL, false);
    sc_sub_t *a = sub_adopt(&fx, "d", "s1", "alice", NULL, false);
    sc_sub_t *c = sub_adopt(&fx, "d", "s2", "carol", NULL, false);
    take_presence(obs, SC_EVENT_JOIN, "s1", true);
    take_presence(obs, SC_EVENT_JOIN, "s2", true);
    sc_sub_destroy_hold(a);
    sc_sub_destroy_hold(c);
    /* a kicked user's held entry leaves at once (not counted) */
    assert_int_equal(sc_bus_close_user(fx.bus, "alice", NULL), 0);
    take_presence(obs, SC_EVENT_LEAVE, "s1", true);
    assert_int_equal(sc_bus_held(fx.bus), 1);
    /* a closed scope drops held entries without a leave */
    assert_int_equal(sc_bus_close(fx.bus, NULL, SC_CLOSE_SHUTDOWN), 1);
    assert_int_equal(sc_bus_held(fx.bus), 0);
    expect_end(obs, SC_ECLOSED, 0);
    fx.clock.now += GRACE;
    assert_int_equal(sc_bus_expire_held(fx.bus), 0);
    sc_sub_destroy(obs);
    fx_close(&fx);
}

static void test_grace_off_or_hidden_leaves_at_once(void **state)
{
    (void)state;
    fx_t fx;
    open_grace(&fx, 0);
    sc_sub_t *obs = sub_adopt(&fx, "d", "obs", "bob", NULL, false);
    sc_sub_t *a = sub_adopt(&fx, "d", "s1", "alice", NULL, false);
    take_presence(obs, SC_EVENT_JOIN, "s1", true);
    sc_sub_destroy_hold(a);
    take_presence(obs, SC_EVENT_LEAVE, "s1", true);
    assert_int_equal(sc_bus_held(fx.bus), 0);
    sc_sub_destroy(obs);
    fx_close(&fx);
    /* with a grace, a hidden subscription has nothing to hold */
    open_grace(&fx, GRACE);
    sc_conn_t cn;
    mkconn(&cn, "s1", "alice");
    sc_sub_opts_t o = {.conn = &cn, .hidden = true, .quiet = true};
    sc_sub_t *h = sub_opts(&fx, "d", NULL, &o, NULL);
    sc_sub_destroy_hold(h);
    assert_int_equal(sc_bus_held(fx.bus), 0);
    sc_conn_deinit(&cn);
    fx_close(&fx);
}

/* A bus destroyed with held entries frees them (ASan's leak check). */
static void test_grace_destroy_frees_held(void **state)
{
    (void)state;
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    cfg.presence_grace = GRACE;
    sc_bus_t *bus;
    sc_owner_t *o;
    assert_int_equal(sc_bus_create(&cfg, &bus), SC_OK);
    assert_int_equal(sc_owner_create(NULL, NULL, &o), SC_OK);
    sc_conn_t cn;
    mkconn(&cn, "s1", "alice");
    sc_sub_opts_t opts = {.conn = &cn};
    sc_sub_t *s;
    assert_int_equal(sc_bus_subscribe(bus, "d", o, &opts, &s, NULL), SC_OK);
    sc_sub_destroy_hold(s);
    assert_int_equal(sc_bus_held(bus), 1);
    sc_conn_deinit(&cn);
    sc_owner_destroy(o);
    sc_bus_destroy(bus);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grace_held_entry_leaves_once_after_grace),
        cmocka_unit_test(test_grace_held_alone_keeps_scope_until_expiry),
        cmocka_unit_test(test_grace_adopt_takes_over_silently),
        cmocka_unit_test(test_grace_adopt_with_new_meta_is_one_update),
        cmocka_unit_test(test_grace_adopt_needs_same_user_and_flag),
        cmocka_unit_test(test_grace_two_tabs_last_only_when_both_gone),
        cmocka_unit_test(test_grace_adopt_supersedes_a_live_entry),
        cmocka_unit_test(test_grace_closes),
        cmocka_unit_test(test_grace_off_or_hidden_leaves_at_once),
        cmocka_unit_test(test_grace_destroy_frees_held),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
