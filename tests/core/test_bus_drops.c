/*
 * Unit tests for core/bus.h, how drops are reported outside the queue: the
 * throttled drop warning (per scope, injected clock, configurable
 * interval, cleared by close), the on_drop hook (once per dropped event,
 * failures logged) and hooks that call back into the bus.
 *
 * Every test is single-threaded unless its name says otherwise, uses the
 * shared fixture (bus_fixture.h: an injected clock for the drop-warning
 * throttle, a captured logger), never sleeps for timing, and ends with
 * every subscription, owner and bus destroyed, so ASan's leak check covers
 * each behaviour. Threaded stress and race tests live in
 * test_bus_threads.c.
 */
#include "bus_fixture.h"

#include <stdio.h>
#include <string.h>

/* ---- drop warnings --------------------------------------------------- */

static void test_bus_drop_warning_names_scope_and_maxsize(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 1);
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    emit_simple(&fx, "doc:1");
    assert_int_equal(logcap_count(&fx.log, SC_LOG_DEBUG, DROP_PREFIX), 0);
    emit_simple(&fx, "doc:1");
    assert_int_equal(logcap_count(&fx.log, SC_LOG_WARN, DROP_PREFIX), 1);
    const char *msg = logcap_find(&fx.log, SC_LOG_WARN, DROP_PREFIX, 0);
    assert_string_equal(msg, "dropped 1 event(s) for scope='doc:1' "
                             "(subscriber queue full, maxsize=1)");
    /* It is logged at warning level. */
    for (int i = 0; i < fx.log.n && i < LOGCAP_MAX; i++) {
        if (has_prefix(fx.log.msg[i], DROP_PREFIX))
            assert_int_equal(fx.log.level[i], SC_LOG_WARN);
    }
    sc_sub_destroy(s);
    fx_close(&fx);
}

static void test_bus_drop_warning_is_throttled_per_scope_interval(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 1);
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    emit_simple(&fx, "doc:1"); /* fills the queue */

    fx.clock.now = 100.0;
    emit_simple(&fx, "doc:1"); /* first drop: logged at once */
    assert_int_equal(logcap_count(&fx.log, SC_LOG_WARN, DROP_PREFIX), 1);

    fx.clock.now = 101.0;
    emit_simple(&fx, "doc:1"); /* within 10 s: counted, not logged */
    fx.clock.now = 109.5;
    emit_simple(&fx, "doc:1");
    assert_int_equal(logcap_count(&fx.log, SC_LOG_WARN, DROP_PREFIX), 1);

    fx.clock.now = 110.5; /* past the interval: the next drop reports all */
    emit_simple(&fx, "doc:1");
    assert_int_equal(logcap_count(&fx.log, SC_LOG_WARN, DROP_PREFIX), 2);
    assert_string_equal(logcap_find(&fx.log, SC_LOG_WARN, DROP_PREFIX, 1),
                        "dropped 3 event(s) for scope='doc:1' "
                        "(subscriber queue full, maxsize=1)");

    fx.clock.now = 111.0; /* a new interval started at 110.5 */
    emit_simple(&fx, "doc:1");
    assert_int_equal(logcap_count(&fx.log, SC_LOG_WARN, DROP_PREFIX), 2);
    fx.clock.now = 121.0;
    emit_simple(&fx, "doc:1");
    assert_int_equal(logcap_count(&fx.log, SC_LOG_WARN, DROP_PREFIX), 3);
    assert_string_equal(logcap_find(&fx.log, SC_LOG_WARN, DROP_PREFIX, 2),
                        "dropped 2 event(s) for scope='doc:1' "
                        "(subscriber queue full, maxsize=1)");
    /* Throttling only touches the log: every drop was counted. */
    assert_int_equal(sc_sub_dropped_total(s), 6);
    sc_sub_destroy(s);
    fx_close(&fx);
}

static void
test_bus_drop_warning_throttle_is_independent_per_scope(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 1);
    sc_sub_t *a = sub_plain(&fx, "doc:1");
    sc_sub_t *b = sub_plain(&fx, "doc:2");
    emit_simple(&fx, "doc:1");
    emit_simple(&fx, "doc:2");

    fx.clock.now = 100.0;
    emit_simple(&fx, "doc:1");
    fx.clock.now = 101.0;
    emit_simple(&fx, "doc:2"); /* other scope: logged at once */
    assert_int_equal(logcap_count(&fx.log, SC_LOG_WARN, DROP_PREFIX), 2);
    assert_string_equal(logcap_find(&fx.log, SC_LOG_WARN, DROP_PREFIX, 0),
                        "dropped 1 event(s) for scope='doc:1' "
                        "(subscriber queue full, maxsize=1)");
    assert_string_equal(logcap_find(&fx.log, SC_LOG_WARN, DROP_PREFIX, 1),
                        "dropped 1 event(s) for scope='doc:2' "
                        "(subscriber queue full, maxsize=1)");
    fx.clock.now = 102.0;
    emit_simple(&fx, "doc:1");
    emit_simple(&fx, "doc:2");
    assert_int_equal(logcap_count(&fx.log, SC_LOG_WARN, DROP_PREFIX), 2);
    /* doc:1's interval ends first; doc:2's count is untouched by it. */
    fx.clock.now = 110.5;
    emit_simple(&fx, "doc:1");
    assert_int_equal(logcap_count(&fx.log, SC_LOG_WARN, DROP_PREFIX), 3);
    assert_string_equal(logcap_find(&fx.log, SC_LOG_WARN, DROP_PREFIX, 2),
                        "dropped 2 event(s) for scope='doc:1' "
                        "(subscriber queue full, maxsize=1)");
    fx.clock.now = 111.5;
    emit_simple(&fx, "doc:2");
    assert_int_equal(logcap_count(&fx.log, SC_LOG_WARN, DROP_PREFIX), 4);
    assert_string_equal(logcap_find(&fx.log, SC_LOG_WARN, DROP_PREFIX, 3),
                        "dropped 2 event(s) for scope='doc:2' "
                        "(subscriber queue full, maxsize=1)");
    sc_sub_destroy(a);
    sc_sub_destroy(b);
    fx_close(&fx);
}

static void
test_bus_drop_warning_first_drop_logs_even_at_clock_zero(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 1);
    fx.clock.now = 0.0; /* a monotonic clock may start near zero */
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    emit_simple(&fx, "doc:1");
    emit_simple(&fx, "doc:1");
    assert_int_equal(logcap_count(&fx.log, SC_LOG_WARN, DROP_PREFIX), 1);
    sc_sub_destroy(s);
    fx_close(&fx);
}

static void test_bus_drop_warning_interval_is_configurable(void **state)
{
    (void)state;
    fx_t fx;
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    cfg.maxsize = 1;
    cfg.drop_log_interval = 2.0;
    fx_open_cfg(&fx, &cfg);
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    emit_simple(&fx, "doc:1");
    emit_simple(&fx, "doc:1"); /* t=100: logged */
    fx.clock.now = 101.0;
    emit_simple(&fx, "doc:1"); /* counted */
    fx.clock.now = 102.5;
    emit_simple(&fx, "doc:1"); /* 2 s passed: logged with 2 */
    assert_int_equal(logcap_count(&fx.log, SC_LOG_WARN, DROP_PREFIX), 2);
    assert_string_equal(logcap_find(&fx.log, SC_LOG_WARN, DROP_PREFIX, 1),
                        "dropped 2 event(s) for scope='doc:1' "
                        "(subscriber queue full, maxsize=1)");
    sc_sub_destroy(s);
    fx_close(&fx);
}

static void test_bus_close_clears_drop_warning_throttle(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 1);
    sc_sub_t *a = sub_plain(&fx, "doc:1");
    emit_simple(&fx, "doc:1");
    emit_simple(&fx, "doc:1"); /* t=100: logged */
    fx.clock.now = 101.0;
    emit_simple(&fx, "doc:1"); /* counted, pending in the throttle */
    assert_int_equal(logcap_count(&fx.log, SC_LOG_WARN, DROP_PREFIX), 1);
    assert_int_equal(sc_bus_close(fx.bus, "doc:1", SC_CLOSE_CLOSED), 1);

    sc_sub_t *b = sub_plain(&fx, "doc:1");
    fx.clock.now = 102.0;
    emit_simple(&fx, "doc:1");
    emit_simple(&fx, "doc:1"); /* a fresh throttle: logged at once */
    assert_int_equal(logcap_count(&fx.log, SC_LOG_WARN, DROP_PREFIX), 2);
    assert_string_equal(logcap_find(&fx.log, SC_LOG_WARN, DROP_PREFIX, 1),
                        "dropped 1 event(s) for scope='doc:1' "
                        "(subscriber queue full, maxsize=1)");
    sc_sub_destroy(a);
    sc_sub_destroy(b);
    fx_close(&fx);
}

/* ---- on_drop and the log hook ---------------------------------------- */

typedef struct drop_rec {
    int calls;
    int ret;
    uint64_t seq;
    char scope[32];
    char text[32];
    int ev_kind;
    sc_bus_t *bus; /* set: call back into the bus from the hook */
    uint64_t emitted_seen;
} drop_rec_t;

static int on_drop_rec(void *ud, const char *scope, const sc_event_t *ev)
{
    drop_rec_t *r = ud;
    r->calls++;
    snprintf(r->scope, sizeof r->scope, "%s", scope);
    r->seq = sc_event_seq(ev);
    r->ev_kind = sc_event_kind(ev);
    size_t len = 0;
    const char *p = sc_event_payload(ev, &len);
    if (p != NULL && len < sizeof r->text) {
        memcpy(r->text, p, len);
        r->text[len] = '\0';
    }
    if (r->bus != NULL) {
        sc_bus_stats_t st;
        sc_bus_stats(r->bus, &st);
        r->emitted_seen = st.emitted;
    }
    return r->ret;
}

static void test_bus_on_drop_fires_once_with_second_event(void **state)
{
    (void)state;
    drop_rec_t rec;
    memset(&rec, 0, sizeof rec);
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    cfg.maxsize = 1;
    cfg.on_drop = on_drop_rec;
    cfg.on_drop_ud = &rec;
    fx_t fx;
    fx_open_cfg(&fx, &cfg);
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    emit_text(&fx, "doc:1", "first");
    assert_int_equal(rec.calls, 0);
    emit_text(&fx, "doc:1", "second");
    assert_int_equal(rec.calls, 1);
    assert_string_equal(rec.scope, "doc:1");
    assert_string_equal(rec.text, "second");
    assert_int_equal(rec.seq, 2);
    assert_int_equal(rec.ev_kind, SC_EVENT_CHANGE);
    take_text(s, "first");
    sc_sub_destroy(s);
    fx_close(&fx);
}

static void
test_bus_on_drop_failure_is_logged_and_others_still_receive(void **state)
{
    (void)state;
    drop_rec_t rec;
    memset(&rec, 0, sizeof rec);
    rec.ret = -1;
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    cfg.maxsize = 2;
    cfg.on_drop = on_drop_rec;
    cfg.on_drop_ud = &rec;
    fx_t fx;
    fx_open_cfg(&fx, &cfg);
    /* The full subscriber sits between two readers in subscribe order. */
    sc_sub_t *before = sub_plain(&fx, "doc:1");
    sc_sub_t *full = sub_plain(&fx, "doc:1");
    sc_sub_t *after = sub_plain(&fx, "doc:1");
    emit_text(&fx, "doc:1", "a");
    emit_text(&fx, "doc:1", "b");
    take_text(before, "a");
    take_text(before, "b");
    take_text(after, "a");
    take_text(after, "b");
    for (int i = 0; i < 3; i++) {
        char text[8];
        snprintf(text, sizeof text, "c%d", i);
        uint64_t seq = emit_text(&fx, "doc:1", text);
        assert_int_equal(seq, (uint64_t)i + 3); /* emit itself succeeds */
        take_text(before, text);
        take_text(after, text);
    }
    assert_int_equal(rec.calls, 3);
    /* Each failing callback is logged (not a drop warning). */
    assert_true(logcap_count_other_warnings(&fx.log) >= 1);
    assert_int_equal(sc_sub_dropped_total(full), 3);
    sc_sub_destroy(before);
    sc_sub_destroy(full);
    sc_sub_destroy(after);
    fx_close(&fx);
}

static void test_bus_on_drop_may_call_back_into_bus(void **state)
{
    (void)state;
    drop_rec_t rec;
    memset(&rec, 0, sizeof rec);
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    cfg.maxsize = 1;
    cfg.on_drop = on_drop_rec;
    cfg.on_drop_ud = &rec;
    fx_t fx;
    fx_open_cfg(&fx, &cfg);
    rec.bus = fx.bus; /* sc_bus_stats from inside on_drop: no deadlock */
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    emit_simple(&fx, "doc:1");
    emit_simple(&fx, "doc:1");
    assert_int_equal(rec.calls, 1);
    assert_true(rec.emitted_seen >= 1);
    sc_sub_destroy(s);
    fx_close(&fx);
}

typedef struct reentrant_log {
    sc_bus_t *bus;
    int lines;
    uint64_t dropped_seen;
} reentrant_log_t;

static void reentrant_log_fn(void *ud, int level, const char *msg)
{
    (void)level;
    (void)msg;
    reentrant_log_t *r = ud;
    r->lines++;
    if (r->bus != NULL) {
        sc_bus_stats_t st;
        sc_bus_stats(r->bus, &st);
        r->dropped_seen = st.dropped;
        (void)sc_bus_scope_seq(r->bus, "doc:1");
    }
}

static void test_bus_log_hook_may_call_back_into_bus(void **state)
{
    (void)state;
    reentrant_log_t rl = {NULL, 0, 0};
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    cfg.maxsize = 1;
    cfg.log = reentrant_log_fn;
    cfg.log_ud = &rl;
    fx_t fx;
    fx_open_cfg(&fx, &cfg);
    rl.bus = fx.bus;
    sc_sub_t *s = sub_plain(&fx, "doc:1");
    emit_simple(&fx, "doc:1");
    emit_simple(&fx, "doc:1"); /* logs a drop warning: no lock held */
    assert_true(rl.lines >= 1);
    assert_int_equal(rl.dropped_seen, 1);
    sc_sub_destroy(s);
    fx_close(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bus_drop_warning_names_scope_and_maxsize),
        cmocka_unit_test(test_bus_drop_warning_is_throttled_per_scope_interval),
        cmocka_unit_test(
            test_bus_drop_warning_throttle_is_independent_per_scope),
        cmocka_unit_test(
            test_bus_drop_warning_first_drop_logs_even_at_clock_zero),
        cmocka_unit_test(test_bus_drop_warning_interval_is_configurable),
        cmocka_unit_test(test_bus_close_clears_drop_warning_throttle),
        cmocka_unit_test(test_bus_on_drop_fires_once_with_second_event),
        cmocka_unit_test(
            test_bus_on_drop_failure_is_logged_and_others_still_receive),
        cmocka_unit_test(test_bus_on_drop_may_call_back_into_bus),
        cmocka_unit_test(test_bus_log_hook_may_call_back_into_bus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
