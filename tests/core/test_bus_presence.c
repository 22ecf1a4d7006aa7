/*
 * Unit tests for core/bus.h, presence: the sc_bus_presence snapshot, the
 * JOIN/LEAVE events (to the others, not self nor quiet ones; first/last
 * per user and scope; hidden subscriptions; shared with the bounded
 * queue) and sc_bus_presence_update (UPDATE to the others but the author
 * and quiet ones; the new meta in snapshots and the LEAVE; refusals).
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

/* ---- presence -------------------------------------------------------- */

static void test_bus_presence_includes_subscriber_connection(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t c;
    assert_int_equal(sc_conn_init(&c, "s1", "alice", 1732530000.5,
                                  "{\"color\":\"red\"}", 15),
                     SC_OK);
    sc_sub_t *s = sub_conn(&fx, "doc:1", &c, false, false);
    sc_conn_t *list = NULL;
    size_t n = 0;
    assert_int_equal(sc_bus_presence(fx.bus, "doc:1", &list, &n), SC_OK);
    assert_int_equal(n, 1);
    assert_non_null(list);
    assert_true(sc_conn_equal(&list[0], &c));
    assert_string_equal(list[0].session_id, "s1");
    assert_string_equal(list[0].user_id, "alice");
    assert_int_equal(list[0].meta_len, 15);
    assert_memory_equal(list[0].meta, "{\"color\":\"red\"}", 15);
    sc_presence_free(list, n);
    sc_sub_destroy(s);
    /* Gone with the subscription. */
    assert_int_equal(sc_bus_presence(fx.bus, "doc:1", &list, &n), SC_OK);
    assert_int_equal(n, 0);
    sc_presence_free(list, n);
    sc_conn_deinit(&c);
    fx_close(&fx);
}

static void test_bus_presence_deduplicates_equal_connections(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t c1, c1_again, c2, c3;
    mkconn(&c1, "s1", "alice");
    mkconn(&c1_again, "s1", "alice"); /* equal by value, other storage */
    mkconn(&c2, "s2", "alice");       /* same user, another session */
    mkconn(&c3, "s3", NULL);          /* anonymous */
    sc_sub_t *a = sub_conn(&fx, "doc:1", &c1, false, true);
    sc_sub_t *b = sub_conn(&fx, "doc:1", &c1_again, false, true);
    sc_sub_t *c = sub_conn(&fx, "doc:1", &c2, false, true);
    sc_sub_t *d = sub_conn(&fx, "doc:1", &c3, false, true);
    sc_conn_t *list = NULL;
    size_t n = 0;
    assert_int_equal(sc_bus_presence(fx.bus, "doc:1", &list, &n), SC_OK);
    assert_int_equal(n, 3);
    int seen1 = 0, seen2 = 0, seen3 = 0;
    for (size_t i = 0; i < n; i++) {
        seen1 += sc_conn_equal(&list[i], &c1);
        seen2 += sc_conn_equal(&list[i], &c2);
        seen3 += sc_conn_equal(&list[i], &c3);
    }
    assert_int_equal(seen1, 1);
    assert_int_equal(seen2, 1);
    assert_int_equal(seen3, 1);
    sc_presence_free(list, n);
    /* One of the equal pair leaving keeps the other in presence. */
    sc_sub_destroy(b);
    assert_int_equal(sc_bus_presence(fx.bus, "doc:1", &list, &n), SC_OK);
    assert_int_equal(n, 3);
    sc_presence_free(list, n);
    sc_sub_destroy(a);
    sc_sub_destroy(c);
    sc_sub_destroy(d);
    sc_conn_deinit(&c1);
    sc_conn_deinit(&c1_again);
    sc_conn_deinit(&c2);
    sc_conn_deinit(&c3);
    fx_close(&fx);
}

static void test_bus_presence_of_unknown_scope_is_empty(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t *list = (sc_conn_t *)&fx; /* must be overwritten */
    size_t n = 42;
    assert_int_equal(sc_bus_presence(fx.bus, "doc:404", &list, &n), SC_OK);
    assert_null(list);
    assert_int_equal(n, 0);
    sc_presence_free(list, n);
    fx_close(&fx);
}

static void test_bus_presence_skips_subscribers_without_conn(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t c;
    mkconn(&c, "s1", "alice");
    sc_sub_t *anon = sub_plain(&fx, "doc:1");
    sc_sub_t *s = sub_conn(&fx, "doc:1", &c, false, false);
    sc_conn_t *list = NULL;
    size_t n = 0;
    assert_int_equal(sc_bus_presence(fx.bus, "doc:1", &list, &n), SC_OK);
    assert_int_equal(n, 1);
    assert_true(sc_conn_equal(&list[0], &c));
    sc_presence_free(list, n);
    sc_sub_destroy(s);
    /* The scope still exists (one subscriber) but nobody is present. */
    assert_int_equal(sc_bus_presence(fx.bus, "doc:1", &list, &n), SC_OK);
    assert_int_equal(n, 0);
    sc_presence_free(list, n);
    sc_sub_destroy(anon);
    sc_conn_deinit(&c);
    fx_close(&fx);
}

/* ---- join / leave ---------------------------------------------------- */

static void test_bus_join_goes_to_others_not_self_nor_quiet(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t ca, cq, cb;
    mkconn(&ca, "s1", "alice");
    mkconn(&cq, "sq", "quinn");
    mkconn(&cb, "s2", "bob");
    sc_sub_t *watcher = sub_plain(&fx, "doc:1"); /* no conn, not quiet */
    sc_sub_t *a = sub_conn(&fx, "doc:1", &ca, false, false);
    take_presence(watcher, SC_EVENT_JOIN, "s1", true);
    expect_empty(a); /* not its own join */
    sc_sub_t *q = sub_conn(&fx, "doc:1", &cq, false, true);
    /* A quiet subscriber's own join is seen by the others. */
    take_presence(watcher, SC_EVENT_JOIN, "sq", true);
    take_presence(a, SC_EVENT_JOIN, "sq", true);
    sc_sub_t *b = sub_conn(&fx, "doc:1", &cb, false, false);
    take_presence(watcher, SC_EVENT_JOIN, "s2", true);
    take_presence(a, SC_EVENT_JOIN, "s2", true);
    expect_empty(q); /* quiet: no join/leave of others */
    expect_empty(b);
    sc_sub_destroy(b);
    take_presence(watcher, SC_EVENT_LEAVE, "s2", true);
    take_presence(a, SC_EVENT_LEAVE, "s2", true);
    expect_empty(q);
    sc_sub_destroy(q);
    take_presence(watcher, SC_EVENT_LEAVE, "sq", true);
    take_presence(a, SC_EVENT_LEAVE, "sq", true);
    sc_sub_destroy(a);
    take_presence(watcher, SC_EVENT_LEAVE, "s1", true);
    expect_empty(watcher);
    sc_sub_destroy(watcher);
    sc_conn_deinit(&ca);
    sc_conn_deinit(&cq);
    sc_conn_deinit(&cb);
    fx_close(&fx);
}

/* A hidden subscription (the protocol's "presence": false) is neither
 * announced nor listed, does not count for first/last, and still gets
 * events through its conn's audience rule. */
static void test_bus_hidden_subscriber_is_not_announced_nor_listed(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t ca, ch;
    mkconn(&ca, "s1", "alice");
    mkconn(&ch, "sh", "alice");
    sc_sub_t *w = sub_plain(&fx, "doc:h");
    sc_sub_t *a = sub_conn(&fx, "doc:h", &ca, false, false);
    take_presence(w, SC_EVENT_JOIN, "s1", true);
    sc_sub_opts_t o;
    memset(&o, 0, sizeof o);
    o.conn = &ch;
    o.quiet = true;
    o.hidden = true;
    sc_sub_t *h = sub_opts(&fx, "doc:h", NULL, &o, NULL);
    expect_empty(a); /* no JOIN for the hidden one */
    sc_conn_t *list = NULL;
    size_t n = 0;
    assert_int_equal(sc_bus_presence(fx.bus, "doc:h", &list, &n), SC_OK);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].session_id, "s1");
    sc_presence_free(list, n);
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    const char *aud[] = {"alice"};
    e.scope = "doc:h";
    e.audience = aud;
    e.naudience = 1;
    e.has_audience = true;
    emit_ok(&fx, &e);
    size_t got = 0;
    drain(h, &got, NULL, NULL, 0);
    assert_int_equal(got, 1); /* the audience still sees its user */
    drain(a, &got, NULL, NULL, 0);
    assert_int_equal(got, 1);
    drain(w, &got, NULL, NULL, 0);
    assert_int_equal(got, 0); /* no conn: not in the audience, no JOIN */
    sc_sub_destroy(a);        /* alice's last *shown* connection: last = true */
    take_presence(w, SC_EVENT_LEAVE, "s1", true);
    expect_empty(h); /* quiet: no LEAVE either */
    sc_sub_destroy(h);
    expect_empty(w); /* the hidden one leaves unannounced */
    sc_sub_destroy(w);
    sc_conn_deinit(&ca);
    sc_conn_deinit(&ch);
    fx_close(&fx);
}

static void test_bus_join_event_carries_scope_and_connection(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t c;
    assert_int_equal(
        sc_conn_init(&c, "s1", "alice", 1732530000.25, "{\"x\":1}", 7), SC_OK);
    sc_sub_t *watcher = sub_plain(&fx, "room:9");
    sc_sub_t *a = sub_conn(&fx, "room:9", &c, false, false);
    sc_event_t *ev = take(watcher, NULL);
    assert_int_equal(sc_event_kind(ev), SC_EVENT_JOIN);
    assert_string_equal(sc_event_scope(ev), "room:9");
    assert_int_equal(sc_event_seq(ev), 0);
    assert_true(sc_conn_equal(sc_event_conn(ev), &c));
    assert_true(sc_event_user_edge(ev));
    sc_event_unref(ev);
    /* Presence events do not use the scope's seq. */
    assert_int_equal(sc_bus_scope_seq(fx.bus, "room:9"), 0);
    assert_int_equal(emit_simple(&fx, "room:9"), 1);
    sc_sub_destroy(a);
    ev = NULL;
    assert_int_equal(take_seq(watcher), 1);
    ev = take(watcher, NULL);
    assert_int_equal(sc_event_kind(ev), SC_EVENT_LEAVE);
    assert_string_equal(sc_event_scope(ev), "room:9");
    assert_true(sc_conn_equal(sc_event_conn(ev), &c));
    sc_event_unref(ev);
    sc_sub_destroy(watcher);
    sc_conn_deinit(&c);
    fx_close(&fx);
}

static void test_bus_join_first_flag_is_per_user(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t a1, a2, b1;
    mkconn(&a1, "s1", "alice");
    mkconn(&a2, "s2", "alice");
    mkconn(&b1, "s3", "bob");
    sc_sub_t *w = sub_plain(&fx, "doc:1");
    sc_sub_t *x1 = sub_conn(&fx, "doc:1", &a1, false, true);
    sc_sub_t *x2 = sub_conn(&fx, "doc:1", &a2, false, true);
    sc_sub_t *y1 = sub_conn(&fx, "doc:1", &b1, false, true);
    take_presence(w, SC_EVENT_JOIN, "s1", true);
    take_presence(w, SC_EVENT_JOIN, "s2", false); /* alice already here */
    take_presence(w, SC_EVENT_JOIN, "s3", true);
    expect_empty(w);
    /* first is per scope: alice's first connection in another scope. */
    sc_sub_t *w2 = sub_plain(&fx, "doc:2");
    sc_sub_t *x3 = sub_conn(&fx, "doc:2", &a2, false, true);
    take_presence(w2, SC_EVENT_JOIN, "s2", true);
    sc_sub_destroy(x3);
    take_presence(w2, SC_EVENT_LEAVE, "s2", true);
    sc_sub_destroy(w2);
    sc_sub_destroy(x1);
    sc_sub_destroy(x2);
    sc_sub_destroy(y1);
    sc_sub_destroy(w);
    sc_conn_deinit(&a1);
    sc_conn_deinit(&a2);
    sc_conn_deinit(&b1);
    fx_close(&fx);
}

static void test_bus_join_anonymous_connections_are_always_first(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t n1, n2;
    mkconn(&n1, "anon-1", NULL);
    mkconn(&n2, "anon-2", NULL);
    sc_sub_t *w = sub_plain(&fx, "doc:1");
    sc_sub_t *a = sub_conn(&fx, "doc:1", &n1, false, true);
    sc_sub_t *b = sub_conn(&fx, "doc:1", &n2, false, true);
    take_presence(w, SC_EVENT_JOIN, "anon-1", true);
    take_presence(w, SC_EVENT_JOIN, "anon-2", true);
    sc_sub_destroy(a);
    take_presence(w, SC_EVENT_LEAVE, "anon-1", true);
    sc_sub_destroy(b);
    take_presence(w, SC_EVENT_LEAVE, "anon-2", true);
    expect_empty(w);
    sc_sub_destroy(w);
    sc_conn_deinit(&n1);
    sc_conn_deinit(&n2);
    fx_close(&fx);
}

static void
test_bus_subscriber_without_conn_causes_no_join_or_leave(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t c;
    mkconn(&c, "s1", "alice");
    sc_sub_t *w = sub_conn(&fx, "doc:1", &c, false, false);
    sc_sub_t *anon = sub_plain(&fx, "doc:1");
    expect_empty(w);
    sc_sub_destroy(anon);
    expect_empty(w);
    sc_sub_destroy(w);
    sc_conn_deinit(&c);
    fx_close(&fx);
}

static void test_bus_leave_on_destroy_carries_last_flag(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t a1, a2;
    mkconn(&a1, "s1", "alice");
    mkconn(&a2, "s2", "alice");
    sc_sub_t *w = sub_plain(&fx, "doc:1");
    sc_sub_t *x1 = sub_conn(&fx, "doc:1", &a1, false, true);
    sc_sub_t *x2 = sub_conn(&fx, "doc:1", &a2, false, true);
    take_presence(w, SC_EVENT_JOIN, "s1", true);
    take_presence(w, SC_EVENT_JOIN, "s2", false);
    sc_sub_destroy(x2);
    take_presence(w, SC_EVENT_LEAVE, "s2", false); /* alice still here */
    sc_sub_destroy(x1);
    take_presence(w, SC_EVENT_LEAVE, "s1", true); /* her last one */
    expect_empty(w);
    sc_sub_destroy(w);
    sc_conn_deinit(&a1);
    sc_conn_deinit(&a2);
    fx_close(&fx);
}

static void
test_bus_join_and_leave_share_bounded_queue_and_count_as_drops(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 2);
    sc_conn_t a1, b1;
    mkconn(&a1, "s1", "alice");
    mkconn(&b1, "s2", "bob");
    sc_sub_t *w = sub_plain(&fx, "doc:1");
    sc_sub_t *x = sub_conn(&fx, "doc:1", &a1, false, true); /* JOIN: 1 */
    emit_simple(&fx, "doc:1");                              /* 2: full */
    assert_int_equal(sc_sub_pending(w), 2);
    sc_sub_t *y = sub_conn(&fx, "doc:1", &b1, false, true); /* dropped */
    sc_sub_destroy(x);                                      /* dropped */
    assert_int_equal(sc_sub_dropped_total(w), 2);
    sc_bus_stats_t st;
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.dropped, 2);
    take_presence(w, SC_EVENT_JOIN, "s1", true);
    assert_int_equal(take_seq(w), 1);
    expect_end(w, SC_EAGAIN, 2); /* reported like dropped events */
    /* With room again, the next leave is queued. */
    sc_sub_destroy(y);
    take_presence(w, SC_EVENT_LEAVE, "s2", true);
    sc_sub_destroy(w);
    sc_conn_deinit(&a1);
    sc_conn_deinit(&b1);
    fx_close(&fx);
}

/* ---- presence updates ------------------------------------------------- */

/* Takes the next item, which must be an UPDATE of `session` whose meta is
 * `meta`. */
static void take_update(sc_sub_t *sub, const char *session, const char *meta)
{
    sc_event_t *ev = take(sub, NULL);
    assert_int_equal(sc_event_kind(ev), SC_EVENT_UPDATE);
    assert_int_equal(sc_event_seq(ev), 0);
    assert_false(sc_event_user_edge(ev));
    const sc_conn_t *c = sc_event_conn(ev);
    assert_non_null(c);
    assert_string_equal(c->session_id, session);
    assert_non_null(c->meta);
    assert_int_equal(c->meta_len, strlen(meta));
    assert_string_equal(c->meta, meta);
    sc_event_unref(ev);
}

static int update_text(fx_t *fx, sc_sub_t *sub, const char *meta)
{
    return sc_bus_presence_update(fx->bus, sub, meta, meta ? strlen(meta) : 0);
}

static void test_bus_update_goes_to_others_not_self_nor_quiet(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t ca, cb, cq;
    mkconn(&ca, "s1", "alice");
    mkconn(&cb, "s2", "bob");
    mkconn(&cq, "sq", "quinn");
    sc_sub_t *w = sub_plain(&fx, "doc:u"); /* no conn, not quiet */
    sc_sub_t *a = sub_conn(&fx, "doc:u", &ca, false, false);
    sc_sub_t *b = sub_conn(&fx, "doc:u", &cb, false, false);
    sc_sub_t *q = sub_conn(&fx, "doc:u", &cq, false, true);
    take_presence(w, SC_EVENT_JOIN, "s1", true);
    take_presence(w, SC_EVENT_JOIN, "s2", true);
    take_presence(w, SC_EVENT_JOIN, "sq", true);
    take_presence(a, SC_EVENT_JOIN, "s2", true);
    take_presence(a, SC_EVENT_JOIN, "sq", true);
    take_presence(b, SC_EVENT_JOIN, "sq", true);
    assert_int_equal(update_text(&fx, a, "{\"typing\":true}"), SC_OK);
    take_update(w, "s1", "{\"typing\":true}");
    take_update(b, "s1", "{\"typing\":true}");
    expect_empty(a); /* not its own update */
    expect_empty(q); /* quiet: no presence pushes */
    /* A quiet subscriber's own update is seen by the others. */
    assert_int_equal(update_text(&fx, q, "{\"away\":1}"), SC_OK);
    take_update(w, "sq", "{\"away\":1}");
    take_update(a, "sq", "{\"away\":1}");
    take_update(b, "sq", "{\"away\":1}");
    expect_empty(q);
    /* Ordered with the scope's events. */
    assert_int_equal(emit_simple(&fx, "doc:u"), 1);
    assert_int_equal(update_text(&fx, b, "{}"), SC_OK);
    assert_int_equal(take_seq(w), 1);
    take_update(w, "s2", "{}");
    sc_sub_destroy(q);
    sc_sub_destroy(b);
    sc_sub_destroy(a);
    sc_sub_destroy(w);
    sc_conn_deinit(&ca);
    sc_conn_deinit(&cb);
    sc_conn_deinit(&cq);
    fx_close(&fx);
}

/* The new meta replaces the old in snapshots and in the LEAVE; session,
 * user and connected-at stay. */
static void test_bus_update_shows_in_presence_and_leave(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t c;
    assert_int_equal(
        sc_conn_init(&c, "s1", "alice", 1732530000.25, "{\"x\":1}", 7), SC_OK);
    sc_sub_t *w = sub_plain(&fx, "room:u");
    sc_sub_t *a = sub_conn(&fx, "room:u", &c, false, false);
    take_presence(w, SC_EVENT_JOIN, "s1", true);
    assert_int_equal(update_text(&fx, a, "{\"x\":2}"), SC_OK);
    assert_int_equal(update_text(&fx, a, "{\"x\":3,\"cursor\":[1,2]}"), SC_OK);
    take_update(w, "s1", "{\"x\":2}");
    take_update(w, "s1", "{\"x\":3,\"cursor\":[1,2]}");
    sc_conn_t *list = NULL;
    size_t n = 0;
    assert_int_equal(sc_bus_presence(fx.bus, "room:u", &list, &n), SC_OK);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].session_id, "s1");
    assert_string_equal(list[0].user_id, "alice");
    assert_true(list[0].connected_at == 1732530000.25);
    assert_string_equal(list[0].meta, "{\"x\":3,\"cursor\":[1,2]}");
    sc_presence_free(list, n);
    /* the subscription's own conn (owner thread) has it too */
    assert_string_equal(sc_sub_conn(a)->meta, "{\"x\":3,\"cursor\":[1,2]}");
    /* NULL: no meta at all */
    assert_int_equal(sc_bus_presence_update(fx.bus, a, NULL, 0), SC_OK);
    sc_event_t *ev = take(w, NULL);
    assert_int_equal(sc_event_kind(ev), SC_EVENT_UPDATE);
    assert_null(sc_event_conn(ev)->meta);
    sc_event_unref(ev);
    assert_int_equal(update_text(&fx, a, "{\"bye\":true}"), SC_OK);
    take_update(w, "s1", "{\"bye\":true}");
    sc_sub_destroy(a);
    ev = take(w, NULL);
    assert_int_equal(sc_event_kind(ev), SC_EVENT_LEAVE);
    assert_string_equal(sc_event_conn(ev)->meta, "{\"bye\":true}");
    assert_true(sc_event_conn(ev)->connected_at == 1732530000.25);
    sc_event_unref(ev);
    expect_empty(w);
    sc_sub_destroy(w);
    sc_conn_deinit(&c);
    fx_close(&fx);
}

/* Refused: no conn, hidden, bad arguments, a subscription the bus ended.
 * A lone subscriber updates without anyone to tell. */
static void test_bus_update_refusals_and_lone_subscriber(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t ca, ch;
    mkconn(&ca, "s1", "alice");
    mkconn(&ch, "sh", "hugo");
    sc_sub_t *a = sub_conn(&fx, "doc:r", &ca, false, false);
    assert_int_equal(update_text(&fx, a, "{\"alone\":true}"), SC_OK);
    expect_empty(a);
    sc_conn_t *list = NULL;
    size_t n = 0;
    assert_int_equal(sc_bus_presence(fx.bus, "doc:r", &list, &n), SC_OK);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].meta, "{\"alone\":true}");
    sc_presence_free(list, n);
    sc_sub_t *w = sub_plain(&fx, "doc:r");
    assert_int_equal(update_text(&fx, w, "{}"), SC_EINVAL); /* no conn */
    sc_sub_opts_t o;
    memset(&o, 0, sizeof o);
    o.conn = &ch;
    o.quiet = true;
    o.hidden = true;
    sc_sub_t *h = sub_opts(&fx, "doc:r", NULL, &o, NULL);
    assert_true(sc_sub_hidden(h));
    assert_false(sc_sub_hidden(a));
    assert_int_equal(update_text(&fx, h, "{}"), SC_EINVAL); /* hidden */
    assert_int_equal(sc_bus_presence_update(NULL, a, "{}", 2), SC_EINVAL);
    assert_int_equal(sc_bus_presence_update(fx.bus, NULL, "{}", 2), SC_EINVAL);
    assert_int_equal(sc_bus_presence_update(fx.bus, a, NULL, 2), SC_EINVAL);
    expect_empty(w);
    /* Ended by the bus: nothing changes, nothing is queued. */
    assert_int_equal(sc_bus_close(fx.bus, "doc:r", SC_CLOSE_CLOSED), 3);
    assert_int_equal(update_text(&fx, a, "{\"late\":1}"), SC_ECLOSED);
    assert_string_equal(sc_sub_conn(a)->meta, "{\"alone\":true}");
    expect_end(w, SC_ECLOSED, 0);
    sc_sub_destroy(h);
    sc_sub_destroy(w);
    sc_sub_destroy(a);
    sc_conn_deinit(&ca);
    sc_conn_deinit(&ch);
    fx_close(&fx);
}

/* Updates share the bounded queue: a full queue drops them, counted and
 * reported like any push. */
static void test_bus_update_shares_bounded_queue(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 2);
    sc_conn_t ca;
    mkconn(&ca, "s1", "alice");
    sc_sub_t *w = sub_plain(&fx, "doc:q");
    sc_sub_t *a = sub_conn(&fx, "doc:q", &ca, false, true);
    assert_int_equal(update_text(&fx, a, "{\"n\":1}"), SC_OK); /* 2: full */
    assert_int_equal(update_text(&fx, a, "{\"n\":2}"), SC_OK); /* dropped */
    assert_int_equal(sc_sub_dropped_total(w), 1);
    take_presence(w, SC_EVENT_JOIN, "s1", true);
    take_update(w, "s1", "{\"n\":1}");
    expect_end(w, SC_EAGAIN, 1);
    /* the snapshot has the latest meta even though its push was lost */
    sc_conn_t *list = NULL;
    size_t n = 0;
    assert_int_equal(sc_bus_presence(fx.bus, "doc:q", &list, &n), SC_OK);
    assert_string_equal(list[0].meta, "{\"n\":2}");
    sc_presence_free(list, n);
    sc_sub_destroy(a);
    take_presence(w, SC_EVENT_LEAVE, "s1", true);
    sc_sub_destroy(w);
    sc_conn_deinit(&ca);
    fx_close(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bus_presence_includes_subscriber_connection),
        cmocka_unit_test(test_bus_presence_deduplicates_equal_connections),
        cmocka_unit_test(test_bus_presence_of_unknown_scope_is_empty),
        cmocka_unit_test(test_bus_presence_skips_subscribers_without_conn),
        cmocka_unit_test(test_bus_join_goes_to_others_not_self_nor_quiet),
        cmocka_unit_test(
            test_bus_hidden_subscriber_is_not_announced_nor_listed),
        cmocka_unit_test(test_bus_join_event_carries_scope_and_connection),
        cmocka_unit_test(test_bus_join_first_flag_is_per_user),
        cmocka_unit_test(test_bus_join_anonymous_connections_are_always_first),
        cmocka_unit_test(
            test_bus_subscriber_without_conn_causes_no_join_or_leave),
        cmocka_unit_test(test_bus_leave_on_destroy_carries_last_flag),
        cmocka_unit_test(
            test_bus_join_and_leave_share_bounded_queue_and_count_as_drops),
        cmocka_unit_test(test_bus_update_goes_to_others_not_self_nor_quiet),
        cmocka_unit_test(test_bus_update_shows_in_presence_and_leave),
        cmocka_unit_test(test_bus_update_refusals_and_lone_subscriber),
        cmocka_unit_test(test_bus_update_shares_bounded_queue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
