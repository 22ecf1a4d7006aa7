/*
 * Unit tests for core/bus.h, remote presence and the presence hook:
 * sc_bus_remote_join / sc_bus_remote_leave / sc_bus_remote_drop (another
 * node's entries: JOIN/LEAVE/UPDATE to the scope's subscribers, counted
 * with local entries for the user's first/last, listed by
 * sc_bus_presence, keeping a scope alive, keyed by node and session,
 * generations), the on_presence hook of sc_bus_config_t (local shown
 * entries only: subscribe, unsubscribe, kick, a held entry's expiry or
 * kick, meta updates, adoption; never remote entries, never
 * sc_bus_close) and sc_bus_each_presence (every local shown and held
 * entry once).
 *
 * Single-threaded, on the shared fixture (bus_fixture.h): the injected
 * clock moves the presence grace without sleeping; every test ends with
 * fx_close(), which asserts no subscription or scope is left, so ASan's
 * leak check covers remote entries too.
 */
#include "bus_fixture.h"

#include <stdio.h>
#include <string.h>

#define GRACE 5.0

/* ---- helpers ---------------------------------------------------------- */

/* A conn with an optional meta (NULL: none). */
static void mkconn_meta(sc_conn_t *c, const char *session, const char *user,
                        double at, const char *meta)
{
    assert_int_equal(
        sc_conn_init(c, session, user, at, meta, meta ? strlen(meta) : 0),
        SC_OK);
}

/* remote_join of a conn built from the arguments; asserts SC_OK. */
static void rjoin(fx_t *fx, const char *scope, uint64_t node, uint64_t gen,
                  const char *session, const char *user, const char *meta)
{
    sc_conn_t c;
    mkconn_meta(&c, session, user, 1700000000.25, meta);
    assert_int_equal(sc_bus_remote_join(fx->bus, scope, node, gen, &c), SC_OK);
    sc_conn_deinit(&c);
}

static void rleave(fx_t *fx, const char *scope, uint64_t node,
                   const char *session)
{
    assert_int_equal(sc_bus_remote_leave(fx->bus, scope, node, session), SC_OK);
}

/* Subscribes fx's owner with a conn (meta may be NULL) and flags. */
static sc_sub_t *sub_with(fx_t *fx, const char *scope, const char *session,
                          const char *user, const char *meta, bool hidden,
                          bool adopt)
{
    sc_conn_t c;
    mkconn_meta(&c, session, user, 1000.0, meta);
    sc_sub_opts_t o = {.conn = &c, .hidden = hidden, .adopt = adopt};
    sc_sub_t *s = sub_opts(fx, scope, NULL, &o, NULL);
    sc_conn_deinit(&c);
    return s;
}

static sc_sub_t *sub_user(fx_t *fx, const char *scope, const char *session,
                          const char *user)
{
    return sub_with(fx, scope, session, user, NULL, false, false);
}

static uint64_t stat_scopes(fx_t *fx)
{
    sc_bus_stats_t st;
    sc_bus_stats(fx->bus, &st);
    return st.scopes;
}

/* Takes the next item: a presence event of `kind` whose conn is `session`
 * of `user` with meta `meta` (NULL: none) and edge flag `edge`. */
static void take_full(sc_sub_t *sub, int kind, const char *scope,
                      const char *session, const char *user, const char *meta,
                      bool edge)
{
    sc_event_t *ev = take(sub, NULL);
    assert_int_equal(sc_event_kind(ev), kind);
    assert_string_equal(sc_event_scope(ev), scope);
    assert_int_equal(sc_event_seq(ev), 0);
    const sc_conn_t *c = sc_event_conn(ev);
    assert_non_null(c);
    assert_string_equal(c->session_id, session);
    if (user)
        assert_string_equal(c->user_id, user);
    else
        assert_null(c->user_id);
    if (meta) {
        assert_non_null(c->meta);
        assert_int_equal(c->meta_len, strlen(meta));
        assert_memory_equal(c->meta, meta, strlen(meta));
    } else {
        assert_null(c->meta);
    }
    assert_int_equal(sc_event_user_edge(ev), edge);
    sc_event_unref(ev);
}

/* How many entries of the presence snapshot of `scope` have `session`;
 * *n_out (optional) gets the snapshot's size. */
static int listed(fx_t *fx, const char *scope, const char *session,
                  size_t *n_out)
{
    sc_conn_t *list = NULL;
    size_t n = 0;
    assert_int_equal(sc_bus_presence(fx->bus, scope, &list, &n), SC_OK);
    int k = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i].session_id, session) == 0)
            k++;
    sc_presence_free(list, n);
    if (n_out)
        *n_out = n;
    return k;
}

/* ---- a recorder for the presence hook and sc_bus_each_presence -------- */

#define REC_MAX 64

typedef struct rec {
    int n;
    int kind[REC_MAX];
    char scope[REC_MAX][32];
    char session[REC_MAX][32];
    char meta[REC_MAX][32]; /* "" when none */
    bool has_meta[REC_MAX];
} rec_t;

static void rec_fn(void *ud, int kind, const char *scope, const sc_conn_t *c)
{
    rec_t *r = ud;
    if (r->n < REC_MAX) {
        int i = r->n;
        r->kind[i] = kind;
        snprintf(r->scope[i], sizeof r->scope[i], "%s", scope);
        snprintf(r->session[i], sizeof r->session[i], "%s",
                 c && c->session_id ? c->session_id : "(null)");
        r->has_meta[i] = c && c->meta;
        snprintf(r->meta[i], sizeof r->meta[i], "%s",
                 c && c->meta ? c->meta : "");
    }
    r->n++;
}

/* Asserts the recorder's call number *at is (kind, scope, session) and
 * moves *at past it. */
static void rec_expect(const rec_t *r, int *at, int kind, const char *scope,
                       const char *session)
{
    assert_true(*at < r->n);
    assert_true(*at < REC_MAX);
    assert_int_equal(r->kind[*at], kind);
    assert_string_equal(r->scope[*at], scope);
    assert_string_equal(r->session[*at], session);
    (*at)++;
}

static void open_hooked(fx_t *fx, rec_t *r)
{
    memset(r, 0, sizeof *r);
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    cfg.on_presence = rec_fn;
    cfg.on_presence_ud = r;
    cfg.presence_grace = GRACE;
    fx_open_cfg(fx, &cfg);
}

/* ---- 1. join/leave with first/last across local and remote entries ---- */

static void test_remote_join_leave_first_last(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_sub_t *obs = sub_user(&fx, "d", "obs", "bob");

    /* a new user: JOIN with the remote conn (session, user, connected-at,
     * meta), first */
    rjoin(&fx, "d", 1, 1, "r1", "alice", "{\"m\":1}");
    sc_event_t *ev = take(obs, NULL);
    assert_int_equal(sc_event_kind(ev), SC_EVENT_JOIN);
    assert_string_equal(sc_event_scope(ev), "d");
    assert_int_equal(sc_event_seq(ev), 0);
    assert_true(sc_event_user_edge(ev));
    const sc_conn_t *c = sc_event_conn(ev);
    assert_non_null(c);
    assert_string_equal(c->session_id, "r1");
    assert_string_equal(c->user_id, "alice");
    assert_true(c->connected_at == 1700000000.25);
    assert_int_equal(c->meta_len, 7);
    assert_memory_equal(c->meta, "{\"m\":1}", 7);
    sc_event_unref(ev);
    expect_empty(obs);
    /* the same user again: another session on the same node, another
     * node, and the same session id on another node (another entry) */
    rjoin(&fx, "d", 1, 1, "r2", "alice", NULL);
    take_full(obs, SC_EVENT_JOIN, "d", "r2", "alice", NULL, false);
    rjoin(&fx, "d", 2, 1, "r3", "alice", "{}");
    take_full(obs, SC_EVENT_JOIN, "d", "r3", "alice", "{}", false);
    rjoin(&fx, "d", 2, 1, "r1", "alice", "{\"m\":1}");
    take_full(obs, SC_EVENT_JOIN, "d", "r1", "alice", "{\"m\":1}", false);
    expect_empty(obs);
    /* a local subscription of alice: its JOIN is not first */
    sc_sub_t *loc = sub_user(&fx, "d", "loc", "alice");
    take_presence(obs, SC_EVENT_JOIN, "loc", false);
    expect_empty(loc); /* nobody's JOIN to the joiner */
    /* leaves: last only for the very last entry, whatever its kind */
    rleave(&fx, "d", 1, "r1");
    take_full(obs, SC_EVENT_LEAVE, "d", "r1", "alice", "{\"m\":1}", false);
    take_full(loc, SC_EVENT_LEAVE, "d", "r1", "alice", "{\"m\":1}", false);
    sc_sub_destroy(loc);
    take_presence(obs, SC_EVENT_LEAVE, "loc", false);
    rleave(&fx, "d", 2, "r3");
    take_presence(obs, SC_EVENT_LEAVE, "r3", false);
    rleave(&fx, "d", 1, "r2");
    take_presence(obs, SC_EVENT_LEAVE, "r2", false);
    rleave(&fx, "d", 2, "r1");
    take_full(obs, SC_EVENT_LEAVE, "d", "r1", "alice", "{\"m\":1}", true);
    expect_empty(obs);
    sc_sub_destroy(obs);
    fx_close(&fx);
}

static void test_remote_counts_with_local_entries(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_sub_t *obs = sub_user(&fx, "d", "obs", "bob");
    sc_sub_opts_t qo = {0};
    sc_conn_t qc;
    mkconn(&qc, "q", "quinn");
    qo.conn = &qc;
    qo.quiet = true;
    sc_sub_t *quiet = sub_opts(&fx, "d", NULL, &qo, NULL);
    sc_conn_deinit(&qc);
    take_presence(obs, SC_EVENT_JOIN, "q", true);

    /* a local alice first: the remote alice is not first */
    sc_sub_t *loc = sub_user(&fx, "d", "loc", "alice");
    take_presence(obs, SC_EVENT_JOIN, "loc", true);
    rjoin(&fx, "d", 7, 1, "r", "alice", NULL);
    take_presence(obs, SC_EVENT_JOIN, "r", false);
    take_presence(loc, SC_EVENT_JOIN, "r", false);
    /* the remote one leaves while the local one stays: not last */
    rleave(&fx, "d", 7, "r");
    take_presence(obs, SC_EVENT_LEAVE, "r", false);
    take_presence(loc, SC_EVENT_LEAVE, "r", false);
    /* now the local one is the last */
    sc_sub_destroy(loc);
    take_presence(obs, SC_EVENT_LEAVE, "loc", true);
    /* anonymous remote entries are always first and last */
    rjoin(&fx, "d", 7, 1, "a1", NULL, NULL);
    take_full(obs, SC_EVENT_JOIN, "d", "a1", NULL, NULL, true);
    rjoin(&fx, "d", 7, 1, "a2", NULL, NULL);
    take_full(obs, SC_EVENT_JOIN, "d", "a2", NULL, NULL, true);
    rleave(&fx, "d", 7, "a1");
    take_full(obs, SC_EVENT_LEAVE, "d", "a1", NULL, NULL, true);
    rleave(&fx, "d", 7, "a2");
    take_full(obs, SC_EVENT_LEAVE, "d", "a2", NULL, NULL, true);
    expect_empty(obs);
    expect_empty(quiet); /* quiet: no remote presence either */
    sc_sub_destroy(quiet);
    take_presence(obs, SC_EVENT_LEAVE, "q", true);
    sc_sub_destroy(obs);
    fx_close(&fx);
}

static void test_remote_counts_with_held_entries(void **state)
{
    (void)state;
    fx_t fx;
    rec_t r;
    open_hooked(&fx, &r);
    sc_sub_t *obs = sub_user(&fx, "d", "obs", "bob");
    sc_sub_t *a = sub_user(&fx, "d", "loc", "alice");
    take_presence(obs, SC_EVENT_JOIN, "loc", true);
    sc_sub_destroy_hold(a); /* held: still alice's entry */
    rjoin(&fx, "d", 3, 1, "r", "alice", NULL);
    take_presence(obs, SC_EVENT_JOIN, "r", false);
    rleave(&fx, "d", 3, "r");
    take_presence(obs, SC_EVENT_LEAVE, "r", false);
    rjoin(&fx, "d", 3, 2, "r", "alice", NULL);
    take_presence(obs, SC_EVENT_JOIN, "r", false);
    fx.clock.now += GRACE;
    assert_int_equal(sc_bus_expire_held(fx.bus), 1);
    take_presence(obs, SC_EVENT_LEAVE, "loc", false); /* r remains */
    rleave(&fx, "d", 3, "r");
    take_presence(obs, SC_EVENT_LEAVE, "r", true);
    expect_empty(obs);
    sc_sub_destroy(obs);
    fx_close(&fx);
}

/* ---- 2. listing, and a remote entry keeping a scope alive ------------- */

static void test_remote_listed_with_local_and_held(void **state)
{
    (void)state;
    fx_t fx;
    rec_t r;
    open_hooked(&fx, &r);
    sc_sub_t *loc = sub_user(&fx, "d", "loc", "alice");
    sc_sub_t *hid = sub_with(&fx, "d", "hid", "hugo", NULL, true, false);
    sc_sub_t *plain = sub_plain(&fx, "d");
    sc_sub_t *h = sub_user(&fx, "d", "held", "hal");
    sc_sub_destroy_hold(h);
    rjoin(&fx, "d", 1, 1, "rem1", "rita", "{\"x\":1}");
    rjoin(&fx, "d", 2, 1, "rem2", "alice", NULL);
    size_t n = 0;
    assert_int_equal(listed(&fx, "d", "loc", &n), 1);
    assert_int_equal(n, 4);
    assert_int_equal(listed(&fx, "d", "held", NULL), 1);
    assert_int_equal(listed(&fx, "d", "rem1", NULL), 1);
    assert_int_equal(listed(&fx, "d", "rem2", NULL), 1);
    assert_int_equal(listed(&fx, "d", "hid", NULL), 0);
    /* the remote entry as given */
    sc_conn_t *list = NULL;
    assert_int_equal(sc_bus_presence(fx.bus, "d", &list, &n), SC_OK);
    sc_conn_t want;
    mkconn_meta(&want, "rem1", "rita", 1700000000.25, "{\"x\":1}");
    bool found = false;
    for (size_t i = 0; i < n; i++)
        found = found || sc_conn_equal(&list[i], &want);
    assert_true(found);
    sc_conn_deinit(&want);
    sc_presence_free(list, n);
    /* gone from the list when they leave */
    rleave(&fx, "d", 1, "rem1");
    assert_int_equal(listed(&fx, "d", "rem1", &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(sc_bus_remote_drop(fx.bus, 2, UINT64_MAX), 1);
    assert_int_equal(listed(&fx, "d", "rem2", &n), 0);
    assert_int_equal(n, 2);
    fx.clock.now += GRACE;
    assert_int_equal(sc_bus_expire_held(fx.bus), 1);
    sc_sub_destroy(plain);
    sc_sub_destroy(hid);
    sc_sub_destroy(loc);
    fx_close(&fx);
}

static void test_remote_entry_alone_keeps_scope(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    assert_int_equal(stat_scopes(&fx), 0);
    rjoin(&fx, "solo", 1, 1, "r1", "alice", "{\"k\":\"v\"}");
    assert_int_equal(stat_scopes(&fx), 1);
    size_t n = 0;
    assert_int_equal(listed(&fx, "solo", "r1", &n), 1);
    assert_int_equal(n, 1);
    /* a second entry, and a second scope */
    rjoin(&fx, "solo", 1, 1, "r2", NULL, NULL);
    rjoin(&fx, "other", 2, 1, "r3", "bob", NULL);
    assert_int_equal(stat_scopes(&fx), 2);
    rleave(&fx, "solo", 1, "r1");
    assert_int_equal(stat_scopes(&fx), 2); /* r2 is still there */
    rleave(&fx, "solo", 1, "r2");
    assert_int_equal(stat_scopes(&fx), 1);
    sc_conn_t *list = (sc_conn_t *)1;
    assert_int_equal(sc_bus_presence(fx.bus, "solo", &list, &n), SC_OK);
    assert_null(list);
    assert_int_equal(n, 0);
    /* a local subscriber of a remote-only scope sees it listed, and it
     * stays when the local one leaves */
    sc_sub_t *s = sub_user(&fx, "other", "loc", "carl");
    expect_empty(s);
    assert_int_equal(listed(&fx, "other", "r3", &n), 1);
    assert_int_equal(n, 2);
    sc_sub_destroy(s);
    assert_int_equal(stat_scopes(&fx), 1);
    /* a drop frees the emptied scope too */
    assert_int_equal(sc_bus_remote_drop(fx.bus, 2, UINT64_MAX), 1);
    assert_int_equal(stat_scopes(&fx), 0);
    fx_close(&fx); /* no scope left; ASan: nothing leaked */
}

/* ---- 3. joining again, generations, drops ----------------------------- */

static void test_remote_join_again_updates(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_sub_t *obs = sub_user(&fx, "d", "obs", "bob");
    rjoin(&fx, "d", 1, 1, "s1", "alice", "{\"v\":1}");
    take_full(obs, SC_EVENT_JOIN, "d", "s1", "alice", "{\"v\":1}", true);
    /* the same meta: nothing, and still listed once */
    rjoin(&fx, "d", 1, 2, "s1", "alice", "{\"v\":1}");
    expect_empty(obs);
    size_t n = 0;
    assert_int_equal(listed(&fx, "d", "s1", &n), 1);
    assert_int_equal(n, 2);
    /* ...but its gen was taken: a drop below 2 leaves it */
    assert_int_equal(sc_bus_remote_drop(fx.bus, 1, 2), 0);
    expect_empty(obs);
    assert_int_equal(listed(&fx, "d", "s1", NULL), 1);
    /* another meta: one UPDATE with it, listed with it */
    rjoin(&fx, "d", 1, 3, "s1", "alice", "{\"v\":2}");
    take_full(obs, SC_EVENT_UPDATE, "d", "s1", "alice", "{\"v\":2}", false);
    expect_empty(obs);
    sc_conn_t *list = NULL;
    assert_int_equal(sc_bus_presence(fx.bus, "d", &list, &n), SC_OK);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i].session_id, "s1") != 0)
            continue;
        assert_int_equal(list[i].meta_len, 7);
        assert_memory_equal(list[i].meta, "{\"v\":2}", 7);
    }
    sc_presence_free(list, n);
    /* no meta is a change too */
    rjoin(&fx, "d", 1, 3, "s1", "alice", NULL);
    take_full(obs, SC_EVENT_UPDATE, "d", "s1", "alice", NULL, false);
    rjoin(&fx, "d", 1, 3, "s1", "alice", NULL);
    expect_empty(obs);
    /* the update did not count the user twice: one leave, last */
    rleave(&fx, "d", 1, "s1");
    take_full(obs, SC_EVENT_LEAVE, "d", "s1", "alice", NULL, true);
    expect_empty(obs);
    rleave(&fx, "d", 1, "s1"); /* gone: nothing */
    expect_empty(obs);
    sc_sub_destroy(obs);
    fx_close(&fx);
}

static void test_remote_drop_by_node_and_gen(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    sc_sub_t *obs = sub_user(&fx, "d", "obs", "bob");
    sc_sub_t *obs_e = sub_user(&fx, "e", "obs-e", "bob");
    rjoin(&fx, "d", 1, 1, "s1", "alice", NULL); /* node 1, gen 1 -> 3 */
    rjoin(&fx, "d", 1, 1, "s2", "alice", NULL); /* node 1, gen 1 */
    rjoin(&fx, "d", 2, 1, "s3", "alice", NULL); /* node 2, gen 1 */
    rjoin(&fx, "e", 1, 2, "s4", "erin", NULL);  /* node 1, gen 2 */
    rjoin(&fx, "d", 1, 3, "s1", "alice", NULL); /* s1 now gen 3 */
    take_presence(obs, SC_EVENT_JOIN, "s1", true);
    take_presence(obs, SC_EVENT_JOIN, "s2", false);
    take_presence(obs, SC_EVENT_JOIN, "s3", false);
    expect_empty(obs); /* s1 again: no JOIN, no UPDATE */
    take_presence(obs_e, SC_EVENT_JOIN, "s4", true);
    /* node 1 below gen 3: s2 and s4, not s1 (gen 3) nor node 2's s3 */
    assert_int_equal(sc_bus_remote_drop(fx.bus, 1, 3), 2);
    take_presence(obs, SC_EVENT_LEAVE, "s2", false);
    expect_empty(obs);
    take_presence(obs_e, SC_EVENT_LEAVE, "s4", true);
    expect_empty(obs_e);
    assert_int_equal(listed(&fx, "d", "s1", NULL), 1);
    assert_int_equal(listed(&fx, "d", "s3", NULL), 1);
    assert_int_equal(listed(&fx, "d", "s2", NULL), 0);
    assert_int_equal(listed(&fx, "e", "s4", NULL), 0);
    /* nothing more below 3; node 2's gen 1 is not below 1 */
    assert_int_equal(sc_bus_remote_drop(fx.bus, 1, 3), 0);
    assert_int_equal(sc_bus_remote_drop(fx.bus, 2, 1), 0);
    assert_int_equal(sc_bus_remote_drop(fx.bus, 9, UINT64_MAX), 0);
    expect_empty(obs);
    /* UINT64_MAX: all of the node's */
    assert_int_equal(sc_bus_remote_drop(fx.bus, 1, UINT64_MAX), 1);
    take_presence(obs, SC_EVENT_LEAVE, "s1", false); /* s3 remains */
    expect_empty(obs);
    assert_int_equal(sc_bus_remote_drop(fx.bus, 2, 2), 1);
    take_presence(obs, SC_EVENT_LEAVE, "s3", true);
    expect_empty(obs);
    size_t n = 0;
    assert_int_equal(listed(&fx, "d", "obs", &n), 1);
    assert_int_equal(n, 1);
    assert_int_equal(sc_bus_remote_drop(fx.bus, 1, UINT64_MAX), 0);
    sc_sub_destroy(obs_e);
    sc_sub_destroy(obs);
    fx_close(&fx);
}

/* ---- 4. the presence hook --------------------------------------------- */

static void test_hook_local_entries_only(void **state)
{
    (void)state;
    fx_t fx;
    rec_t r;
    int at = 0;
    open_hooked(&fx, &r);
    /* subscribe: shown ones only */
    sc_sub_t *obs = sub_user(&fx, "d", "obs", "bob");
    rec_expect(&r, &at, SC_EVENT_JOIN, "d", "obs");
    sc_sub_t *hid = sub_with(&fx, "d", "hid", "hugo", NULL, true, false);
    sc_sub_t *plain = sub_plain(&fx, "d");
    assert_int_equal(r.n, at);
    sc_sub_t *a = sub_with(&fx, "d", "a", "alice", "{\"c\":0}", false, false);
    rec_expect(&r, &at, SC_EVENT_JOIN, "d", "a");
    take_presence(obs, SC_EVENT_JOIN, "a", true);

    /* remote entries: never */
    rjoin(&fx, "d", 1, 1, "rem", "rita", NULL);
    rjoin(&fx, "d", 1, 2, "rem", "rita", "{\"new\":1}");
    rjoin(&fx, "d", 1, 2, "rem2", "rita", NULL);
    rleave(&fx, "d", 1, "rem");
    assert_int_equal(sc_bus_remote_drop(fx.bus, 1, UINT64_MAX), 1);
    rjoin(&fx, "x", 2, 1, "rem3", NULL, NULL); /* a scope of its own */
    rleave(&fx, "x", 2, "rem3");
    assert_int_equal(r.n, at);
    assert_int_equal(drain(obs, NULL, NULL, NULL, 0), SC_EAGAIN);

    /* update: with the new meta, even with nobody else to tell */
    assert_int_equal(sc_bus_presence_update(fx.bus, a, "{\"c\":1}", 7), SC_OK);
    rec_expect(&r, &at, SC_EVENT_UPDATE, "d", "a");
    assert_true(r.has_meta[at - 1]);
    assert_string_equal(r.meta[at - 1], "{\"c\":1}");
    assert_int_equal(sc_bus_presence_update(fx.bus, hid, "{}", 2), SC_EINVAL);
    assert_int_equal(r.n, at);
    /* unsubscribe: LEAVE (with the latest meta) */
    sc_sub_destroy(a);
    rec_expect(&r, &at, SC_EVENT_LEAVE, "d", "a");
    assert_string_equal(r.meta[at - 1], "{\"c\":1}");
    sc_sub_destroy(hid);
    sc_sub_destroy(plain);
    assert_int_equal(r.n, at);

    /* a kick: LEAVE at once, nothing at the destroy that follows */
    sc_sub_t *k = sub_user(&fx, "e", "k", "kate");
    rec_expect(&r, &at, SC_EVENT_JOIN, "e", "k");
    assert_int_equal(sc_bus_close_user(fx.bus, "kate", NULL), 1);
    rec_expect(&r, &at, SC_EVENT_LEAVE, "e", "k");
    sc_sub_destroy(k);
    assert_int_equal(r.n, at);

    /* held: nothing when held, LEAVE at its expiry */
    sc_sub_t *h = sub_user(&fx, "d", "h", "hal");
    rec_expect(&r, &at, SC_EVENT_JOIN, "d", "h");
    sc_sub_destroy_hold(h);
    assert_int_equal(r.n, at);
    fx.clock.now += GRACE - 1;
    assert_int_equal(sc_bus_expire_held(fx.bus), 0);
    assert_int_equal(r.n, at);
    fx.clock.now += 1;
    assert_int_equal(sc_bus_expire_held(fx.bus), 1);
    rec_expect(&r, &at, SC_EVENT_LEAVE, "d", "h");

    /* held, then kicked: LEAVE at the kick */
    sc_sub_t *h2 = sub_user(&fx, "d", "h2", "hank");
    rec_expect(&r, &at, SC_EVENT_JOIN, "d", "h2");
    sc_sub_destroy_hold(h2);
    assert_int_equal(sc_bus_close_user(fx.bus, "hank", "d"), 0);
    rec_expect(&r, &at, SC_EVENT_LEAVE, "d", "h2");

    /* held, then adopted: no JOIN for the same meta, an UPDATE for a new
     * one; its later leave is one LEAVE */
    sc_sub_t *s1 = sub_with(&fx, "d", "s1", "sue", "{\"v\":1}", false, false);
    rec_expect(&r, &at, SC_EVENT_JOIN, "d", "s1");
    sc_sub_destroy_hold(s1);
    sc_sub_t *s1b = sub_with(&fx, "d", "s1", "sue", "{\"v\":1}", false, true);
    assert_int_equal(r.n, at);
    sc_sub_destroy_hold(s1b);
    sc_sub_t *s1c = sub_with(&fx, "d", "s1", "sue", "{\"v\":2}", false, true);
    rec_expect(&r, &at, SC_EVENT_UPDATE, "d", "s1");
    assert_string_equal(r.meta[at - 1], "{\"v\":2}");
    sc_sub_destroy(s1c);
    rec_expect(&r, &at, SC_EVENT_LEAVE, "d", "s1");

    /* sc_bus_close: nothing for its subscriptions nor held entries */
    sc_sub_t *c1 = sub_user(&fx, "f", "c1", "cat");
    rec_expect(&r, &at, SC_EVENT_JOIN, "f", "c1");
    sc_sub_t *c2 = sub_user(&fx, "f", "c2", "cy");
    rec_expect(&r, &at, SC_EVENT_JOIN, "f", "c2");
    sc_sub_destroy_hold(c2);
    assert_int_equal(sc_bus_close(fx.bus, "f", SC_CLOSE_CLOSED), 1);
    sc_sub_destroy(c1);
    fx.clock.now += 2 * GRACE;
    assert_int_equal(sc_bus_expire_held(fx.bus), 0);
    assert_int_equal(r.n, at);

    sc_sub_destroy(obs);
    rec_expect(&r, &at, SC_EVENT_LEAVE, "d", "obs");
    assert_int_equal(r.n, at);
    /* shutdown of everything: nothing either */
    sc_sub_t *z = sub_user(&fx, "z", "z", "zed");
    rec_expect(&r, &at, SC_EVENT_JOIN, "z", "z");
    assert_int_equal(sc_bus_close(fx.bus, NULL, SC_CLOSE_SHUTDOWN), 1);
    sc_sub_destroy(z);
    assert_int_equal(r.n, at);
    fx_close(&fx);
}

/* ---- 5. sc_bus_each_presence ------------------------------------------ */

static int rec_count(const rec_t *r, const char *scope, const char *session)
{
    int k = 0;
    for (int i = 0; i < r->n && i < REC_MAX; i++)
        if (strcmp(r->scope[i], scope) == 0 &&
            strcmp(r->session[i], session) == 0)
            k++;
    return k;
}

static void test_each_presence_visits_local_entries_once(void **state)
{
    (void)state;
    fx_t fx;
    rec_t hook;
    open_hooked(&fx, &hook);
    sc_sub_t *obs = sub_user(&fx, "d", "obs", "bob");
    sc_sub_t *hid = sub_with(&fx, "d", "hid", "hugo", NULL, true, false);
    sc_sub_t *plain = sub_plain(&fx, "d");
    sc_sub_t *h = sub_with(&fx, "d", "held", "hal", "{\"h\":1}", false, false);
    sc_sub_destroy_hold(h);
    /* a live entry taken over: visited once, as its new subscription */
    sc_sub_t *l1 = sub_with(&fx, "d", "live", "lou", "{\"n\":1}", false, false);
    sc_sub_t *l2 = sub_with(&fx, "d", "live", "lou", "{\"n\":2}", false, true);
    sc_sub_t *e = sub_user(&fx, "e", "ex", NULL);
    sc_sub_t *e2 = sub_user(&fx, "e", "ex2", "eve");
    /* the same session in two scopes: two entries */
    sc_sub_t *e3 = sub_user(&fx, "e", "obs", "bob");
    rjoin(&fx, "d", 1, 1, "rem", "rita", NULL);
    rjoin(&fx, "g", 1, 1, "rem-g", "rita", NULL); /* remote-only scope */
    /* a scope with a held entry only */
    sc_sub_t *ho = sub_user(&fx, "ho", "ho", "holly");
    sc_sub_destroy_hold(ho);

    rec_t r;
    memset(&r, 0, sizeof r);
    sc_bus_each_presence(fx.bus, rec_fn, &r);
    assert_int_equal(r.n, 7);
    for (int i = 0; i < r.n; i++)
        assert_int_equal(r.kind[i], SC_EVENT_JOIN);
    assert_int_equal(rec_count(&r, "d", "obs"), 1);
    assert_int_equal(rec_count(&r, "d", "held"), 1);
    assert_int_equal(rec_count(&r, "d", "live"), 1);
    assert_int_equal(rec_count(&r, "e", "ex"), 1);
    assert_int_equal(rec_count(&r, "e", "ex2"), 1);
    assert_int_equal(rec_count(&r, "e", "obs"), 1);
    assert_int_equal(rec_count(&r, "ho", "ho"), 1);
    /* the conns as they are: the held meta, the adopter's new meta */
    for (int i = 0; i < r.n; i++) {
        if (strcmp(r.session[i], "held") == 0)
            assert_string_equal(r.meta[i], "{\"h\":1}");
        if (strcmp(r.session[i], "live") == 0)
            assert_string_equal(r.meta[i], "{\"n\":2}");
    }
    /* NULL fn / bus: nothing */
    sc_bus_each_presence(fx.bus, NULL, &r);
    sc_bus_each_presence(NULL, rec_fn, &r);
    assert_int_equal(r.n, 7);

    /* after leaves: the rest only */
    sc_sub_destroy(l1); /* superseded: leaves unannounced */
    sc_sub_destroy(l2);
    sc_sub_destroy(e);
    fx.clock.now += GRACE;
    assert_int_equal(sc_bus_expire_held(fx.bus), 2);
    memset(&r, 0, sizeof r);
    sc_bus_each_presence(fx.bus, rec_fn, &r);
    assert_int_equal(r.n, 3);
    assert_int_equal(rec_count(&r, "d", "obs"), 1);
    assert_int_equal(rec_count(&r, "e", "ex2"), 1);
    assert_int_equal(rec_count(&r, "e", "obs"), 1);

    sc_sub_destroy(e3);
    sc_sub_destroy(e2);
    sc_sub_destroy(plain);
    sc_sub_destroy(hid);
    sc_sub_destroy(obs);
    assert_int_equal(sc_bus_remote_drop(fx.bus, 1, UINT64_MAX), 2);
    memset(&r, 0, sizeof r);
    sc_bus_each_presence(fx.bus, rec_fn, &r);
    assert_int_equal(r.n, 0);
    fx_close(&fx);
}

/* ---- 6. unknown entries, invalid arguments ---------------------------- */

static void test_remote_unknown_and_invalid(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 256);
    /* unknown scope: SC_OK, no scope made */
    rleave(&fx, "nowhere", 1, "s");
    assert_int_equal(stat_scopes(&fx), 0);
    sc_sub_t *obs = sub_user(&fx, "d", "obs", "bob");
    rjoin(&fx, "d", 1, 1, "s1", "alice", NULL);
    take_presence(obs, SC_EVENT_JOIN, "s1", true);
    /* unknown session, another node's session, a local session */
    rleave(&fx, "d", 1, "nope");
    rleave(&fx, "d", 2, "s1");
    rleave(&fx, "d", 1, "obs");
    expect_empty(obs);
    size_t n = 0;
    assert_int_equal(listed(&fx, "d", "s1", &n), 1);
    assert_int_equal(n, 2);
    assert_int_equal(listed(&fx, "d", "obs", NULL), 1);
    assert_int_equal(stat_scopes(&fx), 1);

    /* invalid arguments: SC_EINVAL, nothing changes */
    sc_conn_t c, nosess;
    mkconn(&c, "s9", "ivan");
    memset(&nosess, 0, sizeof nosess);
    assert_int_equal(sc_bus_remote_join(NULL, "d", 1, 1, &c), SC_EINVAL);
    assert_int_equal(sc_bus_remote_join(fx.bus, NULL, 1, 1, &c), SC_EINVAL);
    assert_int_equal(sc_bus_remote_join(fx.bus, "", 1, 1, &c), SC_EINVAL);
    assert_int_equal(sc_bus_remote_join(fx.bus, "d", 1, 1, NULL), SC_EINVAL);
    assert_int_equal(sc_bus_remote_join(fx.bus, "d", 1, 1, &nosess), SC_EINVAL);
    assert_int_equal(sc_bus_remote_leave(NULL, "d", 1, "s1"), SC_EINVAL);
    assert_int_equal(sc_bus_remote_leave(fx.bus, NULL, 1, "s1"), SC_EINVAL);
    assert_int_equal(sc_bus_remote_leave(fx.bus, "d", 1, NULL), SC_EINVAL);
    assert_int_equal(sc_bus_remote_drop(NULL, 1, UINT64_MAX), 0);
    sc_conn_deinit(&c);
    expect_empty(obs);
    assert_int_equal(listed(&fx, "d", "s1", &n), 1);
    assert_int_equal(n, 2);
    assert_int_equal(stat_scopes(&fx), 1);
    assert_int_equal(logcap_count(&fx.log, SC_LOG_WARN, ""), 0);

    rleave(&fx, "d", 1, "s1");
    take_presence(obs, SC_EVENT_LEAVE, "s1", true);
    sc_sub_destroy(obs);
    fx_close(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_remote_join_leave_first_last),
        cmocka_unit_test(test_remote_counts_with_local_entries),
        cmocka_unit_test(test_remote_counts_with_held_entries),
        cmocka_unit_test(test_remote_listed_with_local_and_held),
        cmocka_unit_test(test_remote_entry_alone_keeps_scope),
        cmocka_unit_test(test_remote_join_again_updates),
        cmocka_unit_test(test_remote_drop_by_node_and_gen),
        cmocka_unit_test(test_hook_local_entries_only),
        cmocka_unit_test(test_each_presence_visits_local_entries_once),
        cmocka_unit_test(test_remote_unknown_and_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
