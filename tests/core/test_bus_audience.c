/*
 * The audience rule of core/bus.h as a property: SC_AUDIENCE_EVENTS
 * (default 1,000,000) change events with random scopes and random
 * audiences, 64 subscriptions with random users (some with a conn whose
 * user is NULL, some without a conn: both anonymous), drained by the test
 * thread with the pull API (sc_sub_next) every BATCH events, so no queue
 * can overflow (maxsize > BATCH). Every CHURN_EVERY events one
 * subscription is replaced by a new one (another session, user, scope).
 *
 * An independent model (a linear strcmp search of the audience as the
 * emitter wrote it, duplicates and all; the bus sorts, de-duplicates and
 * binary-searches) decides for every event which subscriptions must get
 * it: those of its scope, when it has no audience or lists the
 * subscription's user; never an anonymous one when an audience is set;
 * nobody for an empty audience. Each drained batch is merged with the
 * model's list per subscription: a delivery the model does not expect
 * (outside the audience, or twice) and an expected one missing are both
 * failures, as are a seq out of order, a seq or scope other than the
 * emit's, a drop, and a presence event after the setup. The totals must
 * equal the model's, and sc_bus_stats must agree.
 *
 * Deterministic: one seed (SC_AUDIENCE_SEED overrides it). The first
 * problems are printed with the event's audience; the test prints its
 * totals and wall time. A second test checks the checker: the same run
 * against an inverted model must report deliveries outside the audience
 * and missed ones, and fabricated delivery lists (missing, extra,
 * duplicated, reordered) must each be caught.
 */
#include "bus_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NSCOPES 8
#define NSUBS 64
#define NCONNS 40   /* sessions; the subscriptions are spread over them */
#define BATCH 256   /* events between two drains */
#define MAXSIZE 512 /* > BATCH (+ nothing else queued): no drop possible */
#define MAX_AUD 6
#define MAX_REPORTS 12
#define CHURN_EVERY (BATCH * 16) /* events between two re-subscriptions */

/* User ids: some differ only by case, a prefix, a trailing space; one is
 * not ASCII. The ghosts appear in audiences but are nobody's user; "" and
 * "null" must not match anonymous subscribers. */
static const char *const pool[] = {
    "alice", "Alice", "bob", "bobby", "carol", "dave", "eve", "frank", "grace",
    "heidi", "ivan", "zo\xc3\xab",
    /* ghosts */
    "mallory", "bob ", "ALICE", "null", "alic", "", "zoe"};
#define NUSERS 12
#define NPOOL (sizeof pool / sizeof pool[0])

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned long long env_count(const char *name, unsigned long long def)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return def;
    char *end = NULL;
    unsigned long long n = strtoull(v, &end, 10);
    return (end != NULL && *end == '\0' && n > 0) ? n : def;
}

/* splitmix64 */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint32_t rng_below(uint64_t *s, uint32_t n)
{
    return (uint32_t)(((rng_next(s) >> 32) * n) >> 32);
}

/* An audience as the emitter wrote it: indices into pool. */
typedef struct aud {
    bool has;
    uint8_t n;
    uint8_t id[MAX_AUD];
} aud_t;

typedef struct counts {
    uint64_t expected; /* deliveries the model asked for */
    uint64_t received; /* change events taken */
    uint64_t outside;  /* taken but not expected (outside, or twice) */
    uint64_t missed;   /* expected but not taken */
    uint64_t order;    /* seq not above the previous one */
    uint64_t wrong;    /* seq or scope other than the emit's, bad payload */
    uint64_t dropped;  /* drops reported by sc_sub_next */
    uint64_t other;    /* presence events or SC_ECLOSED after the setup */
} counts_t;

/* One subscription and the model's view of it. */
typedef struct tsub {
    sc_sub_t *sub;
    int scope;
    const char *user; /* NULL: anonymous (conn without user, or no conn) */
    bool has_conn;
    uint32_t expect[BATCH]; /* event indices the model expects, in order */
    size_t nexpect;
    uint64_t last_seq;
    uint64_t expected, received; /* totals per subscription */
} tsub_t;

/* What the run keeps about recent events, for the checker and reports. */
typedef struct run {
    const char *scope_name[NSCOPES];
    uint64_t *ev_seq; /* per event: the seq the emit returned */
    uint64_t nev;     /* events emitted so far */
    aud_t recent[BATCH];
    int recent_scope[BATCH];
    counts_t c;
    int reports; /* problems printed so far */
    bool quiet;  /* print no problems */
} run_t;

static void describe_aud(const aud_t *a, char *buf, size_t len)
{
    if (!a->has) {
        snprintf(buf, len, "none (everyone)");
        return;
    }
    size_t off = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < a->n && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s\"%s\"", i ? ", " : "",
                                pool[a->id[i]]);
    if (off < len)
        snprintf(buf + off, len - off, "]");
}

static void report(run_t *r, const tsub_t *t, int k, const char *what,
                   uint32_t idx)
{
    if (r->quiet || r->reports++ >= MAX_REPORTS)
        return;
    char aud[160] = "(not recent)";
    int scope = -1;
    if (r->ev_seq && idx < r->nev && r->nev - idx <= BATCH) {
        describe_aud(&r->recent[idx % BATCH], aud, sizeof aud);
        scope = r->recent_scope[idx % BATCH];
    }
    printf("  audience problem: %s: sub %d (user %s%s%s, %s) event %u "
           "(scope %d, seq %llu, audience %s)\n",
           what, k, t->user ? "\"" : "", t->user ? t->user : "null",
           t->user ? "\"" : "", t->has_conn ? "conn" : "no conn", idx, scope,
           r->ev_seq && idx < r->nev ? (unsigned long long)r->ev_seq[idx] : 0,
           aud);
}

/* The model: may subscription t receive an event of `scope` for `a`? */
static bool model_allows(const tsub_t *t, int scope, const aud_t *a)
{
    if (t->scope != scope)
        return false;
    if (!a->has)
        return true;
    if (t->user == NULL)
        return false;
    for (int i = 0; i < a->n; i++)
        if (strcmp(pool[a->id[i]], t->user) == 0)
            return true;
    return false;
}

/* Merges what subscription k took (event indices and seqs, in order) with
 * what the model expects since the last drain, counting every difference;
 * then forgets the expectations. */
static void check_batch(run_t *r, tsub_t *t, int k, const uint32_t *idx,
                        const uint64_t *seq, size_t n)
{
    size_t e = 0;
    for (size_t i = 0; i < n; i++) {
        if (seq[i] <= t->last_seq) {
            r->c.order++;
            report(r, t, k, "seq not above the previous one", idx[i]);
        } else {
            t->last_seq = seq[i];
        }
        if (r->ev_seq && (idx[i] >= r->nev || r->ev_seq[idx[i]] != seq[i])) {
            r->c.wrong++;
            report(r, t, k, "seq differs from the emit's", idx[i]);
        }
        while (e < t->nexpect && t->expect[e] < idx[i]) {
            r->c.missed++;
            report(r, t, k, "missed", t->expect[e]);
            e++;
        }
        if (e < t->nexpect && t->expect[e] == idx[i]) {
            e++;
        } else {
            r->c.outside++;
            report(r, t, k, "delivered outside the audience (or twice)",
                   idx[i]);
        }
    }
    for (; e < t->nexpect; e++) {
        r->c.missed++;
        report(r, t, k, "missed", t->expect[e]);
    }
    t->nexpect = 0;
    t->received += n;
    r->c.received += n;
}

/* Takes everything queued for subscription k and checks it. */
static void drain_check(run_t *r, tsub_t *t, int k)
{
    uint32_t idx[MAXSIZE];
    uint64_t seq[MAXSIZE];
    size_t n = 0;
    for (;;) {
        sc_event_t *ev = NULL;
        uint32_t dropped = 0;
        int rc = sc_sub_next(t->sub, &ev, &dropped);
        r->c.dropped += dropped;
        if (rc == SC_EAGAIN)
            break;
        if (rc != SC_OK) {
            r->c.other++; /* SC_ECLOSED: nobody closes here */
            break;
        }
        size_t len = 0;
        const void *p = sc_event_payload(ev, &len);
        if (sc_event_kind(ev) != SC_EVENT_CHANGE) {
            r->c.other++;
        } else if (p == NULL || len != sizeof(uint32_t) ||
                   strcmp(sc_event_scope(ev), r->scope_name[t->scope]) != 0 ||
                   n == MAXSIZE) {
            r->c.wrong++;
        } else {
            memcpy(&idx[n], p, sizeof(uint32_t));
            seq[n++] = sc_event_seq(ev);
        }
        sc_event_unref(ev);
    }
    check_batch(r, t, k, idx, seq, n);
}

/* The bus, the sessions and the subscriptions of one run. */
typedef struct world {
    fx_t fx;
    uint64_t rs; /* the random state */
    tsub_t subs[NSUBS];
    sc_conn_t conns[NCONNS];
    int conn_kind[NCONNS]; /* 0: no conn, 1: anonymous conn, 2: user */
    int conn_user[NCONNS]; /* index into pool when a user */
    int per_scope[NSCOPES][NSUBS];
    int nper[NSCOPES];
    uint64_t scope_seq[NSCOPES]; /* the model of each scope's seq */
} world_t;

static const char *const scope_names[NSCOPES] = {
    "aud:0", "aud:1", "aud:2", "aud:3", "aud:4", "aud:5", "aud:6", "aud:7"};

/* Subscribes subscription k for session ci to `scope` with random
 * echo/quiet/hidden options, and rebuilds the per-scope lists. */
static void subscribe_one(world_t *w, int k, int ci, int scope)
{
    tsub_t *t = &w->subs[k];
    t->scope = scope;
    t->has_conn = w->conn_kind[ci] > 0;
    t->user = w->conn_kind[ci] == 2 ? pool[w->conn_user[ci]] : NULL;
    t->nexpect = 0;
    sc_sub_opts_t o;
    memset(&o, 0, sizeof o);
    o.conn = t->has_conn ? &w->conns[ci] : NULL;
    o.echo = rng_below(&w->rs, 2) != 0;
    o.quiet = rng_below(&w->rs, 2) != 0;
    o.hidden = rng_below(&w->rs, 4) == 0;
    uint64_t seq0 = 99;
    t->sub = sub_opts(&w->fx, scope_names[scope], NULL, &o, &seq0);
    assert_int_equal(seq0, w->scope_seq[scope]);
    t->last_seq = seq0;
    memset(w->nper, 0, sizeof w->nper);
    for (int j = 0; j < NSUBS; j++)
        if (w->subs[j].sub != NULL) {
            int sc = w->subs[j].scope;
            w->per_scope[sc][w->nper[sc]++] = j;
        }
}

/* Takes the presence events (JOIN, LEAVE) a (un)subscription caused; the
 * queues held nothing else (they were just drained). */
static void take_presence_only(world_t *w)
{
    for (int k = 0; k < NSUBS; k++) {
        sc_event_t *ev;
        while (sc_sub_next(w->subs[k].sub, &ev, NULL) == SC_OK) {
            assert_int_not_equal(sc_event_kind(ev), SC_EVENT_CHANGE);
            sc_event_unref(ev);
        }
    }
}

/* The property run: `events` emits with `seed`. Every CHURN_EVERY events
 * one subscription (never one of the first NSCOPES, so that no scope ends
 * and its seq goes on) is destroyed and made anew for a random session and
 * scope. invert_model turns the model's audience answer around (the
 * checker's own test). Fills *out; asserts only what is not the property
 * (the setup, the API calls, the seqs the emits return). */
static void run_property(unsigned long long events, uint64_t seed,
                         bool invert_model, bool quiet, counts_t *out)
{
    world_t *w = calloc(1, sizeof *w);
    run_t *r = calloc(1, sizeof *r);
    assert_non_null(w);
    assert_non_null(r);
    r->ev_seq = malloc(events * sizeof *r->ev_seq);
    assert_non_null(r->ev_seq);
    r->quiet = quiet;
    for (int s = 0; s < NSCOPES; s++)
        r->scope_name[s] = scope_names[s];
    w->rs = seed;
    fx_open(&w->fx, MAXSIZE);

    /* Sessions: 4 without a conn, 6 anonymous, the others users (each of
     * the 12 at least once, then at random: several share a user). */
    int nusers = 0;
    for (int i = 0; i < NCONNS; i++) {
        char session[16];
        snprintf(session, sizeof session, "sess-%02d", i);
        w->conn_kind[i] = i < 4 ? 0 : i < 10 ? 1 : 2;
        if (w->conn_kind[i] == 2)
            w->conn_user[i] =
                nusers < NUSERS ? nusers++ : (int)rng_below(&w->rs, NUSERS);
        if (w->conn_kind[i] > 0)
            mkconn(&w->conns[i], session,
                   w->conn_kind[i] == 2 ? pool[w->conn_user[i]] : NULL);
    }
    /* Subscriptions: every scope gets one, then random scopes; the first
     * NCONNS take one session each, the rest random sessions (a session
     * may hold several, in one scope too). */
    for (int k = 0; k < NSUBS; k++)
        subscribe_one(w, k,
                      k < NCONNS ? (k * 7) % NCONNS
                                 : (int)rng_below(&w->rs, NCONNS),
                      k < NSCOPES ? k : (int)rng_below(&w->rs, NSCOPES));
    take_presence_only(w);

    const char *ids[MAX_AUD];
    for (unsigned long long i = 0; i < events; i++) {
        int scope = (int)rng_below(&w->rs, NSCOPES);
        aud_t a = {.has = true, .n = 0};
        uint32_t roll = rng_below(&w->rs, 100);
        if (roll < 25) {
            a.has = false; /* everyone */
        } else if (roll < 35) {
            a.n = 0; /* nobody */
        } else if (roll < 40) {
            a.n = (uint8_t)(1 + rng_below(&w->rs, 3)); /* ghosts only */
            for (int j = 0; j < a.n; j++)
                a.id[j] = (uint8_t)(NUSERS + rng_below(&w->rs, NPOOL - NUSERS));
        } else {
            a.n = (uint8_t)(1 + rng_below(&w->rs, MAX_AUD)); /* dups too */
            for (int j = 0; j < a.n; j++)
                a.id[j] = (uint8_t)rng_below(&w->rs, NPOOL);
        }
        for (int j = 0; j < a.n; j++)
            ids[j] = pool[a.id[j]];
        uint32_t idx = (uint32_t)i;
        sc_emit_t e;
        memset(&e, 0, sizeof e);
        e.scope = scope_names[scope];
        e.has_audience = a.has;
        e.naudience = a.n;
        /* an empty audience with and without a pointer */
        e.audience = a.n || (i & 1) ? ids : NULL;
        e.payload = &idx;
        e.payload_len = sizeof idx;
        e.has_payload = true;
        uint64_t seq = 0;
        assert_int_equal(sc_bus_emit(w->fx.bus, &e, &seq), SC_OK);
        assert_int_equal(seq, ++w->scope_seq[scope]); /* audience [] too */
        r->ev_seq[i] = seq;
        r->nev = i + 1;
        r->recent[i % BATCH] = a;
        r->recent_scope[i % BATCH] = scope;

        for (int j = 0; j < w->nper[scope]; j++) {
            tsub_t *t = &w->subs[w->per_scope[scope][j]];
            if (model_allows(t, scope, &a) != invert_model) {
                t->expect[t->nexpect++] = idx;
                t->expected++;
                r->c.expected++;
            }
        }
        if ((i + 1) % BATCH != 0 && i + 1 != events)
            continue;
        for (int k = 0; k < NSUBS; k++)
            drain_check(r, &w->subs[k], k);
        if ((i + 1) % CHURN_EVERY == 0 && i + 1 != events) {
            int k = NSCOPES + (int)rng_below(&w->rs, NSUBS - NSCOPES);
            sc_sub_destroy(w->subs[k].sub);
            w->subs[k].sub = NULL;
            int ci = (int)rng_below(&w->rs, NCONNS);
            subscribe_one(w, k, ci, (int)rng_below(&w->rs, NSCOPES));
            take_presence_only(w);
        }
    }

    sc_bus_stats_t st;
    sc_bus_stats(w->fx.bus, &st);
    assert_int_equal(st.emitted, events);
    assert_int_equal(st.dropped, r->c.dropped);
    assert_int_equal(st.subscribers, NSUBS);
    assert_int_equal(st.scopes, NSCOPES);
    for (int k = 0; k < NSUBS; k++) {
        /* per subscription, the totals equal the model's */
        tsub_t *t = &w->subs[k];
        if (!quiet && t->received != t->expected)
            printf("  sub %d (user %s): received %llu, model %llu\n", k,
                   t->user ? t->user : "null", (unsigned long long)t->received,
                   (unsigned long long)t->expected);
        sc_sub_destroy(t->sub);
    }
    for (int i = 0; i < NCONNS; i++)
        sc_conn_deinit(&w->conns[i]);
    assert_int_equal(logcap_count_other_warnings(&w->fx.log), 0);
    if (r->c.dropped == 0)
        assert_int_equal(logcap_count(&w->fx.log, SC_LOG_WARN, DROP_PREFIX), 0);
    fx_close(&w->fx);
    *out = r->c;
    free(r->ev_seq);
    free(r);
    free(w);
}

static void print_counts(const char *what, unsigned long long events,
                         uint64_t seed, const counts_t *c, double secs)
{
    printf("%s: %llu events, %d subs in %d scopes, seed %llu: deliveries "
           "expected %llu, received %llu; outside %llu, missed %llu, order "
           "%llu, wrong %llu, dropped %llu, other %llu; %.2f s\n",
           what, events, NSUBS, NSCOPES, (unsigned long long)seed,
           (unsigned long long)c->expected, (unsigned long long)c->received,
           (unsigned long long)c->outside, (unsigned long long)c->missed,
           (unsigned long long)c->order, (unsigned long long)c->wrong,
           (unsigned long long)c->dropped, (unsigned long long)c->other, secs);
    fflush(stdout);
}

static void test_bus_audience_property_random_users_and_audiences(void **state)
{
    (void)state;
    unsigned long long events = env_count("SC_AUDIENCE_EVENTS", 1000000);
    uint64_t seed = env_count("SC_AUDIENCE_SEED", 20250611);
    counts_t c;
    double t0 = now_s();
    run_property(events, seed, false, false, &c);
    print_counts("audience", events, seed, &c, now_s() - t0);
    assert_int_equal(c.outside, 0);
    assert_int_equal(c.missed, 0);
    assert_int_equal(c.order, 0);
    assert_int_equal(c.wrong, 0);
    assert_int_equal(c.dropped, 0);
    assert_int_equal(c.other, 0);
    assert_int_equal(c.received, c.expected);
    /* the mix reaches some but not all: the check is not vacuous */
    if (events >= 1000) {
        assert_true(c.expected > events / 2);
        assert_true(c.expected < events * (NSUBS / NSCOPES));
    }
}

static void test_bus_audience_checker_catches_differences(void **state)
{
    (void)state;
    /* The real bus against an inverted model: both directions differ. */
    counts_t c;
    run_property(5000, 7, true, true, &c);
    print_counts("inverted model", 5000, 7, &c, 0.0);
    assert_true(c.outside > 0);
    assert_true(c.missed > 0);
    assert_int_equal(c.order, 0);
    assert_int_equal(c.dropped, 0);

    /* Fabricated delivery lists against expectations {1, 3, 5, 7}. */
    static const struct {
        const char *what;
        uint32_t idx[6];
        size_t n;
        uint64_t outside, missed, order;
    } cases[] = {
        {"exact", {1, 3, 5, 7}, 4, 0, 0, 0},
        {"one missing", {1, 5, 7}, 3, 0, 1, 0},
        {"last missing", {1, 3, 5}, 3, 0, 1, 0},
        {"none", {0}, 0, 0, 4, 0},
        {"one extra", {1, 2, 3, 5, 7}, 5, 1, 0, 0},
        {"extra after", {1, 3, 5, 7, 9}, 5, 1, 0, 0},
        {"duplicate", {1, 3, 3, 5, 7}, 5, 1, 0, 1},
        {"reordered", {1, 5, 3, 7}, 4, 1, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_t r;
        memset(&r, 0, sizeof r);
        r.quiet = true;
        tsub_t t;
        memset(&t, 0, sizeof t);
        const uint32_t want[] = {1, 3, 5, 7};
        memcpy(t.expect, want, sizeof want);
        t.nexpect = 4;
        uint64_t seq[6];
        for (size_t j = 0; j < cases[i].n; j++)
            seq[j] = 100 + cases[i].idx[j]; /* seq follows the event */
        check_batch(&r, &t, 0, cases[i].idx, seq, cases[i].n);
        printf("  checker case %-12s outside %llu missed %llu order %llu\n",
               cases[i].what, (unsigned long long)r.c.outside,
               (unsigned long long)r.c.missed, (unsigned long long)r.c.order);
        assert_int_equal(r.c.outside, cases[i].outside);
        assert_int_equal(r.c.missed, cases[i].missed);
        assert_int_equal(r.c.order, cases[i].order);
        assert_int_equal(t.nexpect, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bus_audience_property_random_users_and_audiences),
        cmocka_unit_test(test_bus_audience_checker_catches_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
