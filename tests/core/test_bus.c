/*
 * Unit tests for core/bus.h: the behaviours of the original ReactiveBus
 * (seed/BEHAVIOUR.md) and the scopecast additions (PROTOCOL.md "Precise
 * rules": seq, shared bounded queues, dropped notices, close, first/last).
 *
 * Every test is single-threaded unless its name says otherwise, uses an
 * injected clock for the drop-warning throttle and a captured logger, never
 * sleeps for timing, and ends with every subscription, owner and bus
 * destroyed, so ASan's leak check covers each behaviour.
 *
 * Threaded stress and race tests live in test_bus_threads.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"

/* ---- captured logger ------------------------------------------------- */

#define LOGCAP_MAX 64

typedef struct logcap {
    pthread_mutex_t mu;
    int n; /* lines seen (may exceed LOGCAP_MAX; only the first are kept) */
    int level[LOGCAP_MAX];
    char msg[LOGCAP_MAX][256];
} logcap_t;

static void logcap_init(logcap_t *lc)
{
    memset(lc, 0, sizeof *lc);
    pthread_mutex_init(&lc->mu, NULL);
}

static void logcap_deinit(logcap_t *lc)
{
    pthread_mutex_destroy(&lc->mu);
}

static void logcap_fn(void *ud, int level, const char *msg)
{
    logcap_t *lc = ud;
    pthread_mutex_lock(&lc->mu);
    if (lc->n < LOGCAP_MAX) {
        lc->level[lc->n] = level;
        snprintf(lc->msg[lc->n], sizeof lc->msg[0], "%s", msg);
    }
    lc->n++;
    pthread_mutex_unlock(&lc->mu);
}

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Number of kept lines at `min_level` or above that start with `prefix`. */
static int logcap_count(logcap_t *lc, int min_level, const char *prefix)
{
    int k = 0;
    for (int i = 0; i < lc->n && i < LOGCAP_MAX; i++) {
        if (lc->level[i] >= min_level && has_prefix(lc->msg[i], prefix))
            k++;
    }
    return k;
}

/* The k-th (0-based) kept line at `min_level`+ starting with `prefix`. */
static const char *logcap_find(logcap_t *lc, int min_level, const char *prefix,
                               int k)
{
    for (int i = 0; i < lc->n && i < LOGCAP_MAX; i++) {
        if (lc->level[i] >= min_level && has_prefix(lc->msg[i], prefix) &&
            k-- == 0)
            return lc->msg[i];
    }
    return NULL;
}

#define DROP_PREFIX "dropped "

/* Warnings and errors that are not drop warnings (callback failures). */
static int logcap_count_other_warnings(logcap_t *lc)
{
    return logcap_count(lc, SC_LOG_WARN, "") -
           logcap_count(lc, SC_LOG_WARN, DROP_PREFIX);
}

/* ---- injected clock -------------------------------------------------- */

typedef struct fclock {
    double now;
} fclock_t;

static double fclock_fn(void *ud)
{
    return ((fclock_t *)ud)->now;
}

/* ---- fixture: a bus with a captured log, a fake clock and one owner -- */

typedef struct fx {
    sc_bus_t *bus;
    sc_owner_t *owner; /* built-in condition variable (no wake callback) */
    logcap_t log;
    fclock_t clock;
} fx_t;

/* Creates the bus from `cfg` (NULL: defaults), adding the captured log and
 * the fake clock (starting at 100 s) unless the config has its own. */
static void fx_open_cfg(fx_t *fx, sc_bus_config_t *cfg)
{
    sc_bus_config_t def;
    if (cfg == NULL) {
        sc_bus_config_default(&def);
        cfg = &def;
    }
    memset(fx, 0, sizeof *fx);
    logcap_init(&fx->log);
    fx->clock.now = 100.0;
    if (cfg->log == NULL) {
        cfg->log = logcap_fn;
        cfg->log_ud = &fx->log;
    }
    if (cfg->clock == NULL) {
        cfg->clock = fclock_fn;
        cfg->clock_ud = &fx->clock;
    }
    assert_int_equal(sc_bus_create(cfg, &fx->bus), SC_OK);
    assert_non_null(fx->bus);
    assert_int_equal(sc_owner_create(NULL, NULL, &fx->owner), SC_OK);
    assert_non_null(fx->owner);
}

static void fx_open(fx_t *fx, int maxsize)
{
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    cfg.maxsize = maxsize;
    fx_open_cfg(fx, &cfg);
}

/* Ends a test: every subscription must already be destroyed. */
static void fx_close(fx_t *fx)
{
    sc_bus_stats_t st;
    sc_bus_stats(fx->bus, &st);
    assert_int_equal(st.subscribers, 0);
    assert_int_equal(st.scopes, 0);
    sc_owner_destroy(fx->owner);
    sc_bus_destroy(fx->bus);
    logcap_deinit(&fx->log);
}

/* ---- helpers: subscribing, emitting, taking -------------------------- */

static sc_sub_t *sub_opts(fx_t *fx, const char *scope, sc_owner_t *owner,
                          const sc_sub_opts_t *opts, uint64_t *seq_out)
{
    sc_sub_t *sub = NULL;
    assert_int_equal(sc_bus_subscribe(fx->bus, scope, owner ? owner : fx->owner,
                                      opts, &sub, seq_out),
                     SC_OK);
    assert_non_null(sub);
    return sub;
}

static sc_sub_t *sub_plain(fx_t *fx, const char *scope)
{
    return sub_opts(fx, scope, NULL, NULL, NULL);
}

static sc_sub_t *sub_conn(fx_t *fx, const char *scope, const sc_conn_t *conn,
                          bool echo, bool quiet)
{
    sc_sub_opts_t o;
    memset(&o, 0, sizeof o);
    o.conn = conn;
    o.echo = echo;
    o.quiet = quiet;
    return sub_opts(fx, scope, NULL, &o, NULL);
}

static void mkconn(sc_conn_t *c, const char *session, const char *user)
{
    assert_int_equal(sc_conn_init(c, session, user, 1732530000.125, "{}", 2),
                     SC_OK);
}

/* Emits `e` and asserts success; returns the seq assigned. */
static uint64_t emit_ok(fx_t *fx, const sc_emit_t *e)
{
    uint64_t seq = 987654321;
    assert_int_equal(sc_bus_emit(fx->bus, e, &seq), SC_OK);
    return seq;
}

/* Emits a change event whose payload is `text` (used to identify it). */
static uint64_t emit_text(fx_t *fx, const char *scope, const char *text)
{
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = scope;
    e.payload = text;
    e.payload_len = strlen(text);
    e.has_payload = true;
    return emit_ok(fx, &e);
}

static uint64_t emit_simple(fx_t *fx, const char *scope)
{
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = scope;
    return emit_ok(fx, &e);
}

static uint64_t emit_origin(fx_t *fx, const char *scope, const char *origin)
{
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = scope;
    e.origin = origin;
    return emit_ok(fx, &e);
}

static uint64_t emit_audience(fx_t *fx, const char *scope,
                              const char *const *ids, size_t n)
{
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = scope;
    e.audience = ids;
    e.naudience = n;
    e.has_audience = true;
    return emit_ok(fx, &e);
}

/* Takes the next item, which must exist; *dropped gets the drops before it
 * (asserted 0 when `dropped` is NULL). Returns a new reference. */
static sc_event_t *take(sc_sub_t *sub, uint32_t *dropped)
{
    sc_event_t *ev = NULL;
    uint32_t d = 0xdeadu;
    assert_int_equal(sc_sub_next(sub, &ev, &d), SC_OK);
    assert_non_null(ev);
    if (dropped != NULL)
        *dropped = d;
    else
        assert_int_equal(d, 0);
    return ev;
}

/* Takes the next item, which must be a change event without drops before
 * it, and returns its seq. */
static uint64_t take_seq(sc_sub_t *sub)
{
    sc_event_t *ev = take(sub, NULL);
    assert_int_equal(sc_event_kind(ev), SC_EVENT_CHANGE);
    uint64_t seq = sc_event_seq(ev);
    sc_event_unref(ev);
    return seq;
}

/* Takes the next change event and compares its payload text. */
static void take_text(sc_sub_t *sub, const char *text)
{
    sc_event_t *ev = take(sub, NULL);
    size_t len = 0;
    const void *p = sc_event_payload(ev, &len);
    assert_non_null(p);
    assert_int_equal(len, strlen(text));
    assert_memory_equal(p, text, len);
    sc_event_unref(ev);
}

/* Takes the next item, which must be a JOIN or LEAVE (`kind`) of the
 * connection with `session`, with the given first/last flag. */
static void take_presence(sc_sub_t *sub, int kind, const char *session,
                          bool edge)
{
    sc_event_t *ev = take(sub, NULL);
    assert_int_equal(sc_event_kind(ev), kind);
    assert_int_equal(sc_event_seq(ev), 0);
    const sc_conn_t *c = sc_event_conn(ev);
    assert_non_null(c);
    assert_string_equal(c->session_id, session);
    assert_int_equal(sc_event_user_edge(ev), edge);
    sc_event_unref(ev);
}

/* Asserts sc_sub_next returns `rc` (SC_EAGAIN or SC_ECLOSED) reporting
 * `dropped` trailing drops. */
static void expect_end(sc_sub_t *sub, int rc, uint32_t dropped)
{
    sc_event_t *ev = NULL;
    uint32_t d = 0xdeadu;
    int got = sc_sub_next(sub, &ev, &d);
    if (got == SC_OK)
        sc_event_unref(ev);
    assert_int_equal(got, rc);
    assert_int_equal(d, dropped);
}

static void expect_empty(sc_sub_t *sub)
{
    expect_end(sub, SC_EAGAIN, 0);
}

/* Drains `sub` to its end, counting items and drops. Returns the final rc
 * (SC_EAGAIN or SC_ECLOSED). `seqs` (optional, `max` entries) receives the
 * seqs of change events in order. */
static int drain(sc_sub_t *sub, size_t *count, uint64_t *drops, uint64_t *seqs,
                 size_t max)
{
    size_t n = 0;
    uint64_t dr = 0;
    for (;;) {
        sc_event_t *ev = NULL;
        uint32_t d = 0;
        int rc = sc_sub_next(sub, &ev, &d);
        dr += d;
        if (rc != SC_OK) {
            assert_true(rc == SC_EAGAIN || rc == SC_ECLOSED);
            if (count)
                *count = n;
            if (drops)
                *drops = dr;
            return rc;
        }
        if (seqs != NULL && n < max)
            seqs[n] = sc_event_seq(ev);
        n++;
        sc_event_unref(ev);
    }
}

/* ---- creation and configuration ------------------------------------- */

static void
test_bus_config_default_sets_maxsize_256_and_10s_interval(void **state)
{
    (void)state;
    sc_bus_config_t cfg;
    memset(&cfg, 0x5a, sizeof cfg);
    sc_bus_config_default(&cfg);
    assert_int_equal(cfg.maxsize, SC_BUS_DEFAULT_MAXSIZE);
    assert_int_equal(cfg.maxsize, 256);
    assert_true(cfg.drop_log_interval == 10.0);
    assert_null(cfg.on_drop);
    assert_null(cfg.log);
    assert_null(cfg.encode);
    assert_null(cfg.clock);
}

static void test_bus_create_with_null_config_uses_defaults(void **state)
{
    (void)state;
    sc_bus_t *bus = NULL;
    assert_int_equal(sc_bus_create(NULL, &bus), SC_OK);
    assert_non_null(bus);
    assert_int_equal(sc_bus_maxsize(bus), 256);
    sc_bus_stats_t st;
    memset(&st, 0x5a, sizeof st);
    sc_bus_stats(bus, &st);
    assert_int_equal(st.emitted, 0);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.subscribers, 0);
    assert_int_equal(st.scopes, 0);
    sc_bus_destroy(bus);
}

static void test_bus_create_rejects_zero_maxsize(void **state)
{
    (void)state;
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    cfg.maxsize = 0;
    sc_bus_t *bus = NULL;
    assert_int_equal(sc_bus_create(&cfg, &bus), SC_EINVAL);
    assert_null(bus);
}

static void test_bus_create_rejects_negative_maxsize(void **state)
{
    (void)state;
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    int bad[] = {-1, -256, -2147483647 - 1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg.maxsize = bad[i];
        sc_bus_t *bus = NULL;
        assert_int_equal(sc_bus_create(&cfg, &bus), SC_EINVAL);
        assert_null(bus);
    }
}

static void test_bus_destroy_functions_accept_null(void **state)
{
    (void)state;
    sc_bus_destroy(NULL);
    sc_owner_destroy(NULL);
    sc_sub_destroy(NULL);
}

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

static void
test_bus_sub_accessors_report_scope_conn_owner_and_reason(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_conn_t c;
    mkconn(&c, "s1", "alice");
    sc_sub_t *with = sub_conn(&fx, "doc:1", &c, false, false);
    sc_sub_t *without = sub_plain(&fx, "doc:2");
    assert_string_equal(sc_sub_scope(with), "doc:1");
    assert_string_equal(sc_sub_scope(without), "doc:2");
    const sc_conn_t *got = sc_sub_conn(with);
    assert_non_null(got);
    assert_ptr_not_equal(got, &c); /* copied */
    assert_true(sc_conn_equal(got, &c));
    assert_null(sc_sub_conn(without));
    assert_ptr_equal(sc_sub_owner(with), fx.owner);
    assert_int_equal(sc_sub_close_reason(with), SC_CLOSE_NONE);
    assert_int_equal(sc_sub_pending(with), 0);
    assert_int_equal(sc_sub_dropped_total(with), 0);
    sc_conn_deinit(&c); /* the subscription keeps its own copy */
    assert_string_equal(sc_sub_conn(with)->session_id, "s1");
    assert_string_equal(sc_sub_conn(with)->user_id, "alice");
    sc_sub_destroy(with);
    sc_sub_destroy(without);
    fx_close(&fx);
}

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

/* ---- join / leave ----------------------------------------------------- */

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
    sc_sub_destroy(a);   /* alice's last *shown* connection: last = true */
    take_presence(w, SC_EVENT_LEAVE, "s1", true);
    expect_empty(h);     /* quiet: no LEAVE either */
    sc_sub_destroy(h);
    expect_empty(w);     /* the hidden one leaves unannounced */
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

/* ---- stats ----------------------------------------------------------- */

static void
test_bus_stats_count_subscribers_scopes_emitted_dropped(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 2);
    sc_bus_stats_t st;
    sc_sub_t *a = sub_plain(&fx, "doc:1");
    sc_sub_t *b = sub_plain(&fx, "doc:1");
    sc_sub_t *c = sub_plain(&fx, "doc:2");
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.subscribers, 3);
    assert_int_equal(st.scopes, 2);
    for (int i = 0; i < 3; i++)
        emit_simple(&fx, "doc:1"); /* a and b drop one each */
    emit_simple(&fx, "doc:2");
    emit_simple(&fx, "doc:9"); /* nobody */
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.emitted, 5);
    assert_int_equal(st.dropped, 2);
    sc_sub_destroy(c);
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.subscribers, 2);
    assert_int_equal(st.scopes, 1);
    assert_int_equal(st.dropped, 2); /* totals never go down */
    assert_int_equal(st.emitted, 5);
    sc_sub_destroy(a);
    sc_sub_destroy(b);
    fx_close(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_bus_config_default_sets_maxsize_256_and_10s_interval),
        cmocka_unit_test(test_bus_create_with_null_config_uses_defaults),
        cmocka_unit_test(test_bus_create_rejects_zero_maxsize),
        cmocka_unit_test(test_bus_create_rejects_negative_maxsize),
        cmocka_unit_test(test_bus_destroy_functions_accept_null),
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
        cmocka_unit_test(test_bus_full_queue_drops_newest_event),
        cmocka_unit_test(test_bus_counters_count_received_dropped_and_emitted),
        cmocka_unit_test(test_bus_queue_sizes_64_256_512_are_honoured),
        cmocka_unit_test(test_bus_dropped_counts_per_subscriber_per_event),
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
        cmocka_unit_test(test_bus_dropped_count_on_next_item_equals_seq_gap),
        cmocka_unit_test(test_bus_trailing_drops_are_reported_with_eagain),
        cmocka_unit_test(test_bus_each_drop_is_reported_exactly_once),
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
        cmocka_unit_test(
            test_bus_sub_accessors_report_scope_conn_owner_and_reason),
        cmocka_unit_test(test_bus_presence_includes_subscriber_connection),
        cmocka_unit_test(test_bus_presence_deduplicates_equal_connections),
        cmocka_unit_test(test_bus_presence_of_unknown_scope_is_empty),
        cmocka_unit_test(test_bus_presence_skips_subscribers_without_conn),
        cmocka_unit_test(test_bus_audience_reaches_listed_user_only),
        cmocka_unit_test(
            test_bus_empty_audience_reaches_nobody_but_is_counted_and_seqd),
        cmocka_unit_test(
            test_bus_origin_session_does_not_receive_its_own_event),
        cmocka_unit_test(
            test_bus_origin_session_with_echo_receives_its_own_event),
        cmocka_unit_test(test_bus_seq_starts_at_one_and_rises_by_one_per_emit),
        cmocka_unit_test(test_bus_subscribe_seq_equals_scope_last_seq),
        cmocka_unit_test(test_bus_join_goes_to_others_not_self_nor_quiet),
        cmocka_unit_test(test_bus_hidden_subscriber_is_not_announced_nor_listed),
        cmocka_unit_test(test_bus_join_event_carries_scope_and_connection),
        cmocka_unit_test(test_bus_join_first_flag_is_per_user),
        cmocka_unit_test(test_bus_join_anonymous_connections_are_always_first),
        cmocka_unit_test(
            test_bus_subscriber_without_conn_causes_no_join_or_leave),
        cmocka_unit_test(test_bus_leave_on_destroy_carries_last_flag),
        cmocka_unit_test(test_bus_close_user_in_scope_kicks_and_sends_leave),
        cmocka_unit_test(test_bus_close_user_in_all_scopes_returns_count),
        cmocka_unit_test(test_bus_close_user_unknown_user_returns_zero),
        cmocka_unit_test(
            test_bus_join_and_leave_share_bounded_queue_and_count_as_drops),
        cmocka_unit_test(test_bus_wake_called_once_until_rearm),
        cmocka_unit_test(test_bus_wake_called_on_close),
        cmocka_unit_test(
            test_bus_wake_once_for_several_subscriptions_of_one_owner),
        cmocka_unit_test(
            test_bus_owner_wait_returns_after_wake_and_times_out_after_rearm),
        cmocka_unit_test(test_bus_owner_wait_rejects_owner_with_wake_callback),
        cmocka_unit_test(test_bus_sub_wait_times_out_when_nothing_comes),
        cmocka_unit_test(test_bus_sub_wait_returns_queued_item_and_closed),
        cmocka_unit_test(test_bus_encoder_called_once_per_emit_with_seq_set),
        cmocka_unit_test(test_bus_encoded_frame_is_shared_by_every_subscriber),
        cmocka_unit_test(
            test_bus_encoder_failure_rejects_emit_without_using_seq),
        cmocka_unit_test(test_bus_events_carry_no_frame_without_encoder),
        cmocka_unit_test(
            test_bus_stats_count_subscribers_scopes_emitted_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
