/*
 * The shared fixture of the single-threaded bus tests: see bus_fixture.h
 * for what each helper asserts. Moved here unchanged from test_bus.c when
 * it was split by area.
 */
#include "bus_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- captured logger ------------------------------------------------- */

void logcap_init(logcap_t *lc)
{
    memset(lc, 0, sizeof *lc);
    pthread_mutex_init(&lc->mu, NULL);
}

void logcap_deinit(logcap_t *lc)
{
    pthread_mutex_destroy(&lc->mu);
}

void logcap_fn(void *ud, int level, const char *msg)
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

bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

int logcap_count(logcap_t *lc, int min_level, const char *prefix)
{
    int k = 0;
    for (int i = 0; i < lc->n && i < LOGCAP_MAX; i++) {
        if (lc->level[i] >= min_level && has_prefix(lc->msg[i], prefix))
            k++;
    }
    return k;
}

const char *logcap_find(logcap_t *lc, int min_level, const char *prefix, int k)
{
    for (int i = 0; i < lc->n && i < LOGCAP_MAX; i++) {
        if (lc->level[i] >= min_level && has_prefix(lc->msg[i], prefix) &&
            k-- == 0)
            return lc->msg[i];
    }
    return NULL;
}

int logcap_count_other_warnings(logcap_t *lc)
{
    return logcap_count(lc, SC_LOG_WARN, "") -
           logcap_count(lc, SC_LOG_WARN, DROP_PREFIX);
}

/* ---- injected clock -------------------------------------------------- */

double fclock_fn(void *ud)
{
    return ((fclock_t *)ud)->now;
}

/* ---- fixture: a bus with a captured log, a fake clock and one owner -- */

void fx_open_cfg(fx_t *fx, sc_bus_config_t *cfg)
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

void fx_open(fx_t *fx, int maxsize)
{
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    cfg.maxsize = maxsize;
    fx_open_cfg(fx, &cfg);
}

void fx_close(fx_t *fx)
{
    sc_bus_stats_t st;
    sc_bus_stats(fx->bus, &st);
    assert_int_equal(st.subscribers, 0);
    /* only scopes living on their kept history may remain */
    assert_int_equal(st.scopes, st.history_scopes);
    sc_owner_destroy(fx->owner);
    sc_bus_destroy(fx->bus);
    logcap_deinit(&fx->log);
}

/* ---- helpers: subscribing, emitting, taking -------------------------- */

sc_sub_t *sub_opts(fx_t *fx, const char *scope, sc_owner_t *owner,
                   const sc_sub_opts_t *opts, uint64_t *seq_out)
{
    sc_sub_t *sub = NULL;
    assert_int_equal(sc_bus_subscribe(fx->bus, scope, owner ? owner : fx->owner,
                                      opts, &sub, seq_out),
                     SC_OK);
    assert_non_null(sub);
    return sub;
}

sc_sub_t *sub_plain(fx_t *fx, const char *scope)
{
    return sub_opts(fx, scope, NULL, NULL, NULL);
}

sc_sub_t *sub_conn(fx_t *fx, const char *scope, const sc_conn_t *conn,
                   bool echo, bool quiet)
{
    sc_sub_opts_t o;
    memset(&o, 0, sizeof o);
    o.conn = conn;
    o.echo = echo;
    o.quiet = quiet;
    return sub_opts(fx, scope, NULL, &o, NULL);
}

void mkconn(sc_conn_t *c, const char *session, const char *user)
{
    assert_int_equal(sc_conn_init(c, session, user, 1732530000.125, "{}", 2),
                     SC_OK);
}

uint64_t emit_ok(fx_t *fx, const sc_emit_t *e)
{
    uint64_t seq = 987654321;
    assert_int_equal(sc_bus_emit(fx->bus, e, &seq), SC_OK);
    return seq;
}

uint64_t emit_text(fx_t *fx, const char *scope, const char *text)
{
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = scope;
    e.payload = text;
    e.payload_len = strlen(text);
    e.has_payload = true;
    return emit_ok(fx, &e);
}

uint64_t emit_simple(fx_t *fx, const char *scope)
{
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = scope;
    return emit_ok(fx, &e);
}

uint64_t emit_origin(fx_t *fx, const char *scope, const char *origin)
{
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = scope;
    e.origin = origin;
    return emit_ok(fx, &e);
}

uint64_t emit_audience(fx_t *fx, const char *scope, const char *const *ids,
                       size_t n)
{
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = scope;
    e.audience = ids;
    e.naudience = n;
    e.has_audience = true;
    return emit_ok(fx, &e);
}

sc_event_t *take(sc_sub_t *sub, uint32_t *dropped)
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

uint64_t take_seq(sc_sub_t *sub)
{
    sc_event_t *ev = take(sub, NULL);
    assert_int_equal(sc_event_kind(ev), SC_EVENT_CHANGE);
    uint64_t seq = sc_event_seq(ev);
    sc_event_unref(ev);
    return seq;
}

void take_text(sc_sub_t *sub, const char *text)
{
    sc_event_t *ev = take(sub, NULL);
    size_t len = 0;
    const void *p = sc_event_payload(ev, &len);
    assert_non_null(p);
    assert_int_equal(len, strlen(text));
    assert_memory_equal(p, text, len);
    sc_event_unref(ev);
}

void take_presence(sc_sub_t *sub, int kind, const char *session, bool edge)
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

void expect_end(sc_sub_t *sub, int rc, uint32_t dropped)
{
    sc_event_t *ev = NULL;
    uint32_t d = 0xdeadu;
    int got = sc_sub_next(sub, &ev, &d);
    if (got == SC_OK)
        sc_event_unref(ev);
    assert_int_equal(got, rc);
    assert_int_equal(d, dropped);
}

void expect_empty(sc_sub_t *sub)
{
    expect_end(sub, SC_EAGAIN, 0);
}

int drain(sc_sub_t *sub, size_t *count, uint64_t *drops, uint64_t *seqs,
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
