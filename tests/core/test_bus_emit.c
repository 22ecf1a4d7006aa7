/*
 * Unit tests for core/bus.h, emitting: delivery to every subscriber of a
 * scope (FIFO, scopes isolated, from other threads, the 50-thread burst),
 * argument checks, the scope's seq, audience and origin filtering, and the
 * encoder hook.
 *
 * Every test is single-threaded unless its name says otherwise, uses the
 * shared fixture (bus_fixture.h: an injected clock for the drop-warning
 * throttle, a captured logger), never sleeps for timing, and ends with
 * every subscription, owner and bus destroyed, so ASan's leak check covers
 * each behaviour. Threaded stress and race tests live in
 * test_bus_threads.c.
 */
#include "bus_fixture.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- delivery -------------------------------------------------------- */

static void test_bus_single_subscriber_receives_event(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_sub_t *s = sub_plain(&fx, "doc:1");

    const char *paths[] = {"title"};
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = "doc:1";
    e.paths = paths;
    e.npaths = 1;
    e.origin = "sess-9";
    e.payload = "{\"v\":1}";
    e.payload_len = 7;
    e.has_payload = true;
    assert_int_equal(emit_ok(&fx, &e), 1);

    assert_int_equal(sc_sub_pending(s), 1);
    sc_event_t *ev = take(s, NULL);
    assert_int_equal(sc_event_kind(ev), SC_EVENT_CHANGE);
    assert_string_equal(sc_event_scope(ev), "doc:1");
    assert_int_equal(sc_event_seq(ev), 1);
    size_t n = 0;
    const char *const *p = sc_event_paths(ev, &n);
    assert_int_equal(n, 1);
    assert_string_equal(p[0], "title");
    assert_string_equal(sc_event_origin(ev), "sess-9");
    size_t len = 0;
    assert_memory_equal(sc_event_payload(ev, &len), "{\"v\":1}", 7);
    assert_int_equal(len, 7);
    sc_event_unref(ev);
    expect_empty(s);

    sc_sub_destroy(s);
    fx_close(&fx);
}

static void test_bus_multiple_subscribers_each_receive_event(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_sub_t *s[3];
    for (int i = 0; i < 3; i++)
        s[i] = sub_plain(&fx, "doc:1");
    emit_text(&fx, "doc:1", "a");
    emit_text(&fx, "doc:1", "b");
    for (int i = 0; i < 3; i++) {
        take_text(s[i], "a");
        take_text(s[i], "b");
        expect_empty(s[i]);
    }
    for (int i = 0; i < 3; i++)
        sc_sub_destroy(s[i]);
    fx_close(&fx);
}

static void test_bus_delivery_is_fifo_per_subscriber(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    char buf[16];
    for (int i = 0; i < 100; i++) {
        snprintf(buf, sizeof buf, "e%d", i);
        emit_text(&fx, "doc:1", buf);
    }
    for (int i = 0; i < 100; i++) {
        snprintf(buf, sizeof buf, "e%d", i);
        take_text(s, buf);
    }
    expect_empty(s);
    sc_sub_destroy(s);
    fx_close(&fx);
}

static void test_bus_scopes_are_isolated(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_sub_t *a = sub_plain(&fx, "doc:1");
    sc_sub_t *b = sub_plain(&fx, "doc:2");
    emit_text(&fx, "doc:1", "for-a");
    emit_text(&fx, "doc:2", "for-b");
    /* A prefix of a scope is another scope. */
    emit_text(&fx, "doc:", "nobody");
    take_text(a, "for-a");
    expect_empty(a);
    take_text(b, "for-b");
    expect_empty(b);
    /* Each scope has its own sequence. */
    assert_int_equal(sc_bus_scope_seq(fx.bus, "doc:1"), 1);
    assert_int_equal(sc_bus_scope_seq(fx.bus, "doc:2"), 1);
    sc_sub_destroy(a);
    sc_sub_destroy(b);
    fx_close(&fx);
}

static void
test_bus_emit_without_subscribers_is_harmless_and_counted(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    assert_int_equal(emit_simple(&fx, "nobody:here"), 0);
    assert_int_equal(emit_simple(&fx, "nobody:here"), 0);
    sc_bus_stats_t st;
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.emitted, 2);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.subscribers, 0);
    assert_int_equal(st.scopes, 0);
    assert_int_equal(sc_bus_scope_seq(fx.bus, "nobody:here"), 0);
    /* seq_out is optional. */
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = "nobody:here";
    assert_int_equal(sc_bus_emit(fx.bus, &e, NULL), SC_OK);
    /* A later subscriber starts from a fresh scope. */
    uint64_t seq = 77;
    sc_sub_t *s = sub_opts(&fx, "nobody:here", NULL, NULL, &seq);
    assert_int_equal(seq, 0);
    expect_empty(s);
    assert_int_equal(emit_simple(&fx, "nobody:here"), 1);
    sc_sub_destroy(s);
    assert_int_equal(logcap_count(&fx.log, SC_LOG_WARN, ""), 0);
    fx_close(&fx);
}

static void test_bus_emit_rejects_missing_scope(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    assert_int_equal(sc_bus_emit(fx.bus, &e, NULL), SC_EINVAL);
    assert_int_equal(sc_bus_scope_seq(fx.bus, "doc:1"), 0);
    expect_empty(s);
    assert_int_equal(emit_simple(&fx, "doc:1"), 1);
    assert_int_equal(take_seq(s), 1);
    sc_sub_destroy(s);
    fx_close(&fx);
}

static void test_bus_subscribe_rejects_invalid_arguments(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_sub_t *s = NULL;
    assert_int_equal(sc_bus_subscribe(fx.bus, NULL, fx.owner, NULL, &s, NULL),
                     SC_EINVAL);
    assert_null(s);
    assert_int_equal(sc_bus_subscribe(fx.bus, "doc:1", NULL, NULL, &s, NULL),
                     SC_EINVAL);
    assert_null(s);
    sc_bus_stats_t st;
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.subscribers, 0);
    fx_close(&fx);
}

typedef struct emit_arg {
    sc_bus_t *bus;
    const char *scope;
    int index;
    pthread_barrier_t *barrier;
    int rc;
} emit_arg_t;

static void *emit_thread(void *p)
{
    emit_arg_t *a = p;
    char text[16];
    snprintf(text, sizeof text, "t%d", a->index);
    if (a->barrier != NULL)
        pthread_barrier_wait(a->barrier);
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = a->scope;
    e.payload = text;
    e.payload_len = strlen(text);
    e.has_payload = true;
    a->rc = sc_bus_emit(a->bus, &e, NULL);
    return NULL;
}

static void test_bus_emit_from_another_thread_is_delivered(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    emit_arg_t a = {fx.bus, "doc:1", 7, NULL, -99};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, emit_thread, &a), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(a.rc, SC_OK);
    take_text(s, "t7");
    expect_empty(s);
    sc_sub_destroy(s);
    fx_close(&fx);
}

static void test_bus_emit_from_another_thread_wakes_blocked_waiter(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    emit_arg_t a = {fx.bus, "doc:1", 3, NULL, -99};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, emit_thread, &a), 0);
    /* Blocks without limit until the other thread's event arrives. */
    sc_event_t *ev = NULL;
    uint32_t d = 9;
    assert_int_equal(sc_sub_wait(s, &ev, &d, -1), SC_OK);
    assert_int_equal(d, 0);
    size_t len = 0;
    assert_memory_equal(sc_event_payload(ev, &len), "t3", 2);
    sc_event_unref(ev);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(a.rc, SC_OK);
    sc_sub_destroy(s);
    fx_close(&fx);
}

#define FIFTY 50

static void
test_bus_fifty_threads_emitting_at_once_deliver_all_fifty(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    pthread_barrier_t barrier;
    assert_int_equal(pthread_barrier_init(&barrier, NULL, FIFTY), 0);
    emit_arg_t args[FIFTY];
    pthread_t t[FIFTY];
    for (int i = 0; i < FIFTY; i++) {
        args[i] = (emit_arg_t){fx.bus, "doc:1", i, &barrier, -99};
        assert_int_equal(pthread_create(&t[i], NULL, emit_thread, &args[i]), 0);
    }
    for (int i = 0; i < FIFTY; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(args[i].rc, SC_OK);
    }
    pthread_barrier_destroy(&barrier);

    bool seen[FIFTY] = {false};
    for (int i = 0; i < FIFTY; i++) {
        sc_event_t *ev = take(s, NULL);
        /* One order across all emitters: seqs 1..50 in queue order. */
        assert_int_equal(sc_event_seq(ev), (uint64_t)i + 1);
        size_t len = 0;
        const char *p = sc_event_payload(ev, &len);
        char text[16];
        assert_true(len > 1 && len < sizeof text);
        memcpy(text, p, len);
        text[len] = '\0';
        int idx = atoi(text + 1);
        assert_true(idx >= 0 && idx < FIFTY);
        assert_false(seen[idx]);
        seen[idx] = true;
        sc_event_unref(ev);
    }
    expect_empty(s);
    sc_bus_stats_t st;
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.emitted, FIFTY);
    assert_int_equal(st.dropped, 0);
    sc_sub_destroy(s);
    fx_close(&fx);
}

/* ---- seq ------------------------------------------------------------- */

static void test_bus_seq_starts_at_one_and_rises_by_one_per_emit(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    assert_int_equal(sc_bus_scope_seq(fx.bus, "doc:1"), 0);
    for (uint64_t i = 1; i <= 20; i++) {
        assert_int_equal(emit_simple(&fx, "doc:1"), i);
        assert_int_equal(sc_bus_scope_seq(fx.bus, "doc:1"), i);
    }
    for (uint64_t i = 1; i <= 20; i++)
        assert_int_equal(take_seq(s), i);
    sc_sub_destroy(s);
    fx_close(&fx);
}

static void test_bus_subscribe_seq_equals_scope_last_seq(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    uint64_t seq = 99;
    sc_sub_t *first = sub_opts(&fx, "doc:1", NULL, NULL, &seq);
    assert_int_equal(seq, 0);
    for (int i = 0; i < 3; i++)
        emit_simple(&fx, "doc:1");
    sc_sub_t *late = sub_opts(&fx, "doc:1", NULL, NULL, &seq);
    assert_int_equal(seq, 3);
    expect_empty(late); /* nothing from before it subscribed */
    assert_int_equal(emit_simple(&fx, "doc:1"), 4);
    assert_int_equal(take_seq(late), 4); /* first event is above seq */
    sc_sub_destroy(first);
    sc_sub_destroy(late);
    fx_close(&fx);
}

/* ---- audience and origin --------------------------------------------- */

static void test_bus_audience_reaches_listed_user_only(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t ca, cb, cn;
    mkconn(&ca, "s1", "alice");
    mkconn(&cb, "s2", "bob");
    mkconn(&cn, "s3", NULL); /* a connection without a user */
    sc_sub_t *alice = sub_conn(&fx, "doc:1", &ca, false, true);
    sc_sub_t *bob = sub_conn(&fx, "doc:1", &cb, false, true);
    sc_sub_t *nouser = sub_conn(&fx, "doc:1", &cn, false, true);
    sc_sub_t *noconn = sub_plain(&fx, "doc:1");
    const char *ids[] = {"alice"};
    assert_int_equal(emit_audience(&fx, "doc:1", ids, 1), 1);
    assert_int_equal(take_seq(alice), 1);
    expect_empty(alice);
    expect_empty(bob);
    expect_empty(nouser);
    expect_empty(noconn);
    /* Without an audience everyone receives. */
    assert_int_equal(emit_simple(&fx, "doc:1"), 2);
    assert_int_equal(take_seq(alice), 2);
    assert_int_equal(take_seq(bob), 2);
    assert_int_equal(take_seq(nouser), 2);
    assert_int_equal(take_seq(noconn), 2);
    /* A filtered event is not a drop. */
    sc_bus_stats_t st;
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.dropped, 0);
    sc_sub_destroy(alice);
    sc_sub_destroy(bob);
    sc_sub_destroy(nouser);
    sc_sub_destroy(noconn);
    sc_conn_deinit(&ca);
    sc_conn_deinit(&cb);
    sc_conn_deinit(&cn);
    fx_close(&fx);
}

static void
test_bus_empty_audience_reaches_nobody_but_is_counted_and_seqd(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t ca;
    mkconn(&ca, "s1", "alice");
    sc_sub_t *alice = sub_conn(&fx, "doc:1", &ca, false, true);
    sc_sub_t *noconn = sub_plain(&fx, "doc:1");
    assert_int_equal(emit_audience(&fx, "doc:1", NULL, 0), 1);
    expect_empty(alice);
    expect_empty(noconn);
    sc_bus_stats_t st;
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.emitted, 1);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(sc_bus_scope_seq(fx.bus, "doc:1"), 1);
    assert_int_equal(emit_simple(&fx, "doc:1"), 2);
    assert_int_equal(take_seq(alice), 2);
    sc_sub_destroy(alice);
    sc_sub_destroy(noconn);
    sc_conn_deinit(&ca);
    fx_close(&fx);
}

static void test_bus_origin_session_does_not_receive_its_own_event(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t c1, c2;
    mkconn(&c1, "s1", "alice");
    mkconn(&c2, "s2", "alice"); /* same user, other session */
    sc_sub_t *self = sub_conn(&fx, "doc:1", &c1, false, true);
    sc_sub_t *other = sub_conn(&fx, "doc:1", &c2, false, true);
    sc_sub_t *noconn = sub_plain(&fx, "doc:1");
    assert_int_equal(emit_origin(&fx, "doc:1", "s1"), 1);
    expect_empty(self);
    assert_int_equal(take_seq(other), 1);
    assert_int_equal(take_seq(noconn), 1);
    /* An event of another origin reaches it. */
    assert_int_equal(emit_origin(&fx, "doc:1", "s2"), 2);
    assert_int_equal(take_seq(self), 2);
    expect_empty(other);
    assert_int_equal(take_seq(noconn), 2);
    sc_sub_destroy(self);
    sc_sub_destroy(other);
    sc_sub_destroy(noconn);
    sc_conn_deinit(&c1);
    sc_conn_deinit(&c2);
    fx_close(&fx);
}

static void
test_bus_origin_session_with_echo_receives_its_own_event(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t c1;
    mkconn(&c1, "s1", "alice");
    sc_sub_t *echo = sub_conn(&fx, "doc:1", &c1, true, true);
    assert_int_equal(emit_origin(&fx, "doc:1", "s1"), 1);
    sc_event_t *ev = take(echo, NULL);
    assert_string_equal(sc_event_origin(ev), "s1");
    sc_event_unref(ev);
    sc_sub_destroy(echo);
    sc_conn_deinit(&c1);
    fx_close(&fx);
}

/* ---- encoder hook ---------------------------------------------------- */

#define FRAME_HEADROOM 16

typedef struct enc_rec {
    int change_calls; /* change events encoded */
    int other_calls;  /* join/leave events encoded */
    int fail;         /* return non-zero for change events */
    int seq_zero;     /* change events seen without a seq */
    uint64_t last_seq;
} enc_rec_t;

static int enc_fn(void *ud, sc_event_t *ev)
{
    enc_rec_t *r = ud;
    if (sc_event_kind(ev) != SC_EVENT_CHANGE) {
        r->other_calls++;
    } else {
        if (r->fail)
            return -1;
        r->change_calls++;
        if (sc_event_seq(ev) == 0)
            r->seq_zero++;
        r->last_seq = sc_event_seq(ev);
    }
    char text[64];
    int n = snprintf(text, sizeof text, "{\"op\":\"event\",\"seq\":%llu}",
                     (unsigned long long)sc_event_seq(ev));
    char *data = malloc(FRAME_HEADROOM + (size_t)n);
    if (data == NULL)
        return -1;
    memcpy(data + FRAME_HEADROOM, text, (size_t)n);
    sc_event_set_frame(ev, data, data + FRAME_HEADROOM, (size_t)n, free);
    return 0;
}

static void fx_open_enc(fx_t *fx, enc_rec_t *rec, int maxsize)
{
    memset(rec, 0, sizeof *rec);
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    cfg.maxsize = maxsize;
    cfg.encode = enc_fn;
    cfg.encode_ud = rec;
    fx_open_cfg(fx, &cfg);
}

static void test_bus_encoder_called_once_per_emit_with_seq_set(void **state)
{
    (void)state;
    fx_t fx;
    enc_rec_t rec;
    fx_open_enc(&fx, &rec, 2);
    sc_sub_t *s[3];
    for (int i = 0; i < 3; i++)
        s[i] = sub_plain(&fx, "doc:1");
    for (uint64_t i = 1; i <= 5; i++) {
        assert_int_equal(emit_simple(&fx, "doc:1"), i);
        /* Once per emit, whatever the fan-out or the drops. */
        assert_int_equal(rec.change_calls, (int)i);
        assert_int_equal(rec.last_seq, i);
    }
    assert_int_equal(rec.seq_zero, 0);
    for (int i = 0; i < 3; i++)
        sc_sub_destroy(s[i]);
    fx_close(&fx);
}

static void test_bus_encoded_frame_is_shared_by_every_subscriber(void **state)
{
    (void)state;
    fx_t fx;
    enc_rec_t rec;
    fx_open_enc(&fx, &rec, 256);
    sc_sub_t *s[4];
    for (int i = 0; i < 4; i++)
        s[i] = sub_plain(&fx, "doc:1");
    emit_simple(&fx, "doc:1");
    emit_simple(&fx, "doc:1");
    for (uint64_t k = 1; k <= 2; k++) {
        const void *first = NULL;
        char want[64];
        snprintf(want, sizeof want, "{\"op\":\"event\",\"seq\":%llu}",
                 (unsigned long long)k);
        for (int i = 0; i < 4; i++) {
            sc_event_t *ev = take(s[i], NULL);
            assert_int_equal(sc_event_seq(ev), k);
            size_t len = 0;
            const void *f = sc_event_frame(ev, &len);
            assert_non_null(f);
            assert_int_equal(len, strlen(want));
            assert_memory_equal(f, want, len);
            if (i == 0)
                first = f;
            assert_ptr_equal(f, first); /* encoded once, shared */
            sc_event_unref(ev);
        }
    }
    for (int i = 0; i < 4; i++)
        sc_sub_destroy(s[i]);
    fx_close(&fx);
}

static void
test_bus_encoder_failure_rejects_emit_without_using_seq(void **state)
{
    (void)state;
    fx_t fx;
    enc_rec_t rec;
    fx_open_enc(&fx, &rec, 256);
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    assert_int_equal(emit_simple(&fx, "doc:1"), 1);
    rec.fail = 1;
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = "doc:1";
    uint64_t seq = 0;
    assert_int_equal(sc_bus_emit(fx.bus, &e, &seq), SC_ENOMEM);
    assert_int_equal(sc_bus_scope_seq(fx.bus, "doc:1"), 1);
    rec.fail = 0;
    assert_int_equal(emit_simple(&fx, "doc:1"), 2); /* no seq was used */
    assert_int_equal(take_seq(s), 1);
    assert_int_equal(take_seq(s), 2); /* nothing was queued */
    expect_empty(s);
    sc_bus_stats_t st;
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.dropped, 0);
    sc_sub_destroy(s);
    fx_close(&fx);
}

static void test_bus_events_carry_no_frame_without_encoder(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    emit_simple(&fx, "doc:1");
    sc_event_t *ev = take(s, NULL);
    size_t len = 99;
    assert_null(sc_event_frame(ev, &len));
    sc_event_unref(ev);
    sc_sub_destroy(s);
    fx_close(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bus_single_subscriber_receives_event),
        cmocka_unit_test(test_bus_multiple_subscribers_each_receive_event),
        cmocka_unit_test(test_bus_delivery_is_fifo_per_subscriber),
        cmocka_unit_test(test_bus_scopes_are_isolated),
        cmocka_unit_test(
            test_bus_emit_without_subscribers_is_harmless_and_counted),
        cmocka_unit_test(test_bus_emit_rejects_missing_scope),
        cmocka_unit_test(test_bus_subscribe_rejects_invalid_arguments),
        cmocka_unit_test(test_bus_emit_from_another_thread_is_delivered),
        cmocka_unit_test(
            test_bus_emit_from_another_thread_wakes_blocked_waiter),
        cmocka_unit_test(
            test_bus_fifty_threads_emitting_at_once_deliver_all_fifty),
        cmocka_unit_test(test_bus_audience_reaches_listed_user_only),
        cmocka_unit_test(
            test_bus_empty_audience_reaches_nobody_but_is_counted_and_seqd),
        cmocka_unit_test(
            test_bus_origin_session_does_not_receive_its_own_event),
        cmocka_unit_test(
            test_bus_origin_session_with_echo_receives_its_own_event),
        cmocka_unit_test(test_bus_seq_starts_at_one_and_rises_by_one_per_emit),
        cmocka_unit_test(test_bus_subscribe_seq_equals_scope_last_seq),
        cmocka_unit_test(test_bus_encoder_called_once_per_emit_with_seq_set),
        cmocka_unit_test(test_bus_encoded_frame_is_shared_by_every_subscriber),
        cmocka_unit_test(
            test_bus_encoder_failure_rejects_emit_without_using_seq),
        cmocka_unit_test(test_bus_events_carry_no_frame_without_encoder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
