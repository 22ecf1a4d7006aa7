/*
 * Threaded tests of core/bus.h, labelled "threads": scripts/test.sh tsan
 * runs them again under ThreadSanitizer.
 *
 * They check invariants that must hold under any interleaving, never
 * timings: per-subscriber seq order, exact accounting of received versus
 * dropped items, on_disconnect exactly once, every consumer ending with
 * SC_ECLOSED or its own destroy, counts returned by close_user. Worker
 * threads never call cmocka asserts (a failure longjmps on the main thread
 * only); they count problems in atomics that the main thread asserts.
 *
 * SC_STRESS_EVENTS sets the events per emitter thread of the stress test
 * (default 100000). Each test prints its wall time, for the TSan budget.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned long env_count(const char *name, unsigned long def)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return def;
    char *end = NULL;
    unsigned long n = strtoul(v, &end, 10);
    return (end != NULL && *end == '\0' && n > 0) ? n : def;
}

/* A logger that only counts warnings (drop warnings are expected here). */
static atomic_ulong g_log_lines;

static void count_log(void *ud, int level, const char *msg)
{
    (void)ud;
    (void)level;
    (void)msg;
    atomic_fetch_add(&g_log_lines, 1);
}

static sc_bus_t *new_bus(int maxsize)
{
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    cfg.maxsize = maxsize;
    cfg.log = count_log;
    sc_bus_t *bus = NULL;
    assert_int_equal(sc_bus_create(&cfg, &bus), SC_OK);
    return bus;
}

static void assert_bus_empty(sc_bus_t *bus)
{
    sc_bus_stats_t st;
    sc_bus_stats(bus, &st);
    assert_int_equal(st.subscribers, 0);
    assert_int_equal(st.scopes, 0);
}

static void start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    assert_int_equal(pthread_create(t, NULL, fn, arg), 0);
}

static void join(pthread_t t)
{
    assert_int_equal(pthread_join(t, NULL), 0);
}

/* ==== (a) 8 emitters x N events, 64 subscribers, 4 consumer threads ==== */

#define A_EMITTERS 8
#define A_SUBS 64
#define A_CONSUMERS 4
#define A_PER_CONSUMER (A_SUBS / A_CONSUMERS)
#define A_SCOPE "stress:1"

typedef struct a_track {
    sc_sub_t *sub;
    uint64_t last_seq; /* seq of the last item taken */
    uint64_t gap;      /* drops reported since that item */
    uint64_t received;
    uint64_t dropped;          /* sum of the `dropped` out-params */
    uint64_t order_errors;     /* seq not above the previous one */
    uint64_t gap_errors;       /* seq jump != reported drops + 1 */
    char first_gap_error[160]; /* details of the first one */
    uint64_t kind_errors;      /* anything but a change event */
    uint64_t dropped_total;    /* sc_sub_dropped_total before destroy */
    bool closed;
} a_track_t;

typedef struct a_consumer {
    sc_owner_t *owner;
    a_track_t subs[A_PER_CONSUMER];
    uint64_t lost_wakeups; /* a wait timed out although items were there */
    uint64_t waits;
} a_consumer_t;

typedef struct a_emitter {
    sc_bus_t *bus;
    unsigned long events;
    unsigned long failures;
    pthread_barrier_t *barrier;
} a_emitter_t;

static void *a_emit(void *p)
{
    a_emitter_t *e = p;
    sc_emit_t ev;
    memset(&ev, 0, sizeof ev);
    ev.scope = A_SCOPE;
    pthread_barrier_wait(e->barrier);
    for (unsigned long i = 0; i < e->events; i++) {
        if (sc_bus_emit(e->bus, &ev, NULL) != SC_OK)
            e->failures++;
    }
    return NULL;
}

/* Takes everything queued for one subscription. Returns true when it made
 * progress (an item, a drop report or the end). */
static bool a_drain(a_track_t *t)
{
    bool progress = false;
    for (;;) {
        sc_event_t *ev = NULL;
        uint32_t d = 0;
        int rc = sc_sub_next(t->sub, &ev, &d);
        t->dropped += d;
        t->gap += d;
        if (d)
            progress = true;
        if (rc == SC_EAGAIN)
            return progress;
        if (rc == SC_ECLOSED) {
            t->closed = true;
            return true;
        }
        progress = true;
        if (sc_event_kind(ev) != SC_EVENT_CHANGE)
            t->kind_errors++;
        uint64_t seq = sc_event_seq(ev);
        if (seq <= t->last_seq)
            t->order_errors++;
        if (seq != t->last_seq + 1 + t->gap && t->gap_errors++ == 0)
            snprintf(t->first_gap_error, sizeof t->first_gap_error,
                     "after seq %llu, %llu drops reported (%u on this "
                     "item, the rest with SC_EAGAIN), then seq %llu",
                     (unsigned long long)t->last_seq,
                     (unsigned long long)t->gap, d, (unsigned long long)seq);
        t->last_seq = seq;
        t->gap = 0;
        t->received++;
        sc_event_unref(ev);
    }
}

static void *a_consume(void *p)
{
    a_consumer_t *c = p;
    size_t open = A_PER_CONSUMER;
    bool timed_out = false;
    while (open > 0) {
        sc_owner_rearm(c->owner);
        bool progress = false;
        for (size_t i = 0; i < A_PER_CONSUMER; i++) {
            a_track_t *t = &c->subs[i];
            if (t->closed)
                continue;
            progress |= a_drain(t);
            if (t->closed)
                open--;
        }
        if (timed_out && progress)
            c->lost_wakeups++;
        if (open == 0)
            break;
        c->waits++;
        /* Emitters run flat out until the scope is closed, so 30 s without
         * a wake while items are queued can only be a lost wakeup. */
        timed_out = sc_owner_wait(c->owner, 30000) == SC_ETIMEDOUT;
    }
    for (size_t i = 0; i < A_PER_CONSUMER; i++) {
        c->subs[i].dropped_total = sc_sub_dropped_total(c->subs[i].sub);
        sc_sub_destroy(c->subs[i].sub);
        c->subs[i].sub = NULL;
    }
    return NULL;
}

static void
test_bus_threads_eight_emitters_sixty_four_subs_account_for_every_event(
    void **state)
{
    (void)state;
    const unsigned long per = env_count("SC_STRESS_EVENTS", 100000);
    const uint64_t emitted = (uint64_t)per * A_EMITTERS;
    double t0 = now_s();
    sc_bus_t *bus = new_bus(256);
    static a_consumer_t cons[A_CONSUMERS];
    memset(cons, 0, sizeof cons);
    for (int c = 0; c < A_CONSUMERS; c++) {
        assert_int_equal(sc_owner_create(NULL, NULL, &cons[c].owner), SC_OK);
        /* half the consumers under a byte budget shared by their
         * subscriptions: its drops are accounted for like full queues */
        if (c % 2)
            sc_owner_set_budget(cons[c].owner, 8192);
        for (int i = 0; i < A_PER_CONSUMER; i++) {
            uint64_t seq = 1;
            assert_int_equal(sc_bus_subscribe(bus, A_SCOPE, cons[c].owner, NULL,
                                              &cons[c].subs[i].sub, &seq),
                             SC_OK);
            assert_int_equal(seq, 0);
        }
    }
    pthread_barrier_t barrier;
    assert_int_equal(pthread_barrier_init(&barrier, NULL, A_EMITTERS), 0);
    a_emitter_t em[A_EMITTERS];
    pthread_t te[A_EMITTERS], tc[A_CONSUMERS];
    for (int c = 0; c < A_CONSUMERS; c++)
        start(&tc[c], a_consume, &cons[c]);
    for (int i = 0; i < A_EMITTERS; i++) {
        em[i] = (a_emitter_t){bus, per, 0, &barrier};
        start(&te[i], a_emit, &em[i]);
    }
    for (int i = 0; i < A_EMITTERS; i++)
        join(te[i]);
    pthread_barrier_destroy(&barrier);
    /* Everything is emitted: close so consumers drain and see the end. */
    assert_int_equal(sc_bus_close(bus, A_SCOPE, SC_CLOSE_CLOSED), A_SUBS);
    for (int c = 0; c < A_CONSUMERS; c++)
        join(tc[c]);

    /* Tally first, free everything, then assert (so a failure reports
     * only itself, not leaks on top). */
    uint64_t received = 0, dropped = 0, waits = 0, failures = 0;
    uint64_t lost = 0, not_closed = 0, kind = 0, order = 0, gaps = 0;
    uint64_t unaccounted = 0, totals_disagree = 0;
    for (int i = 0; i < A_EMITTERS; i++)
        failures += em[i].failures;
    for (int c = 0; c < A_CONSUMERS; c++) {
        lost += cons[c].lost_wakeups;
        waits += cons[c].waits;
        for (int i = 0; i < A_PER_CONSUMER; i++) {
            a_track_t *t = &cons[c].subs[i];
            not_closed += !t->closed;
            kind += t->kind_errors;
            order += t->order_errors;
            if (t->gap_errors != 0 && gaps == 0)
                print_error("subscriber %d.%d: %llu seq gap(s) not matching "
                            "the reported drops; first: %s\n",
                            c, i, (unsigned long long)t->gap_errors,
                            t->first_gap_error);
            gaps += t->gap_errors;
            /* Every seq 1..emitted was received or reported dropped. */
            unaccounted += t->last_seq + t->gap != emitted;
            unaccounted += t->received + t->dropped != emitted;
            /* The out-params and the running total agree. */
            totals_disagree += t->dropped != t->dropped_total;
            received += t->received;
            dropped += t->dropped;
        }
        /* every byte counted in was counted out */
        unaccounted += sc_owner_queued_bytes(cons[c].owner) != 0;
        sc_owner_destroy(cons[c].owner);
    }
    sc_bus_stats_t st;
    sc_bus_stats(bus, &st);
    sc_bus_destroy(bus);
    assert_int_equal(failures, 0);
    assert_int_equal(lost, 0);
    assert_int_equal(not_closed, 0);
    assert_int_equal(kind, 0);
    assert_int_equal(order, 0);
    assert_int_equal(gaps, 0);
    assert_int_equal(unaccounted, 0);
    assert_int_equal(totals_disagree, 0);
    assert_int_equal(received + dropped, emitted * A_SUBS);
    assert_int_equal(st.emitted, emitted);
    assert_int_equal(st.dropped, dropped);
    assert_int_equal(st.subscribers, 0);
    assert_int_equal(st.scopes, 0);
    assert_int_equal(st.queued_bytes, 0);
    double dt = now_s() - t0;
    printf("stress: %d emitters x %lu events, %d subs: %.2f s, "
           "received %llu, dropped %llu (%.1f%%), %llu waits\n",
           A_EMITTERS, per, A_SUBS, dt, (unsigned long long)received,
           (unsigned long long)dropped,
           100.0 * (double)dropped / (double)(emitted * A_SUBS),
           (unsigned long long)waits);
}

/* ==== (a2) drop reports stay in place with a one-slot queue ============ */

/* With maxsize 1 a single push followed by a single drop fits between any
 * two steps of the consumer, so a consumer polling flat out checks the
 * position of every drop report against the seq gaps. */

typedef struct a2_emitter {
    sc_bus_t *bus;
    unsigned long events;
    unsigned long failures;
    atomic_bool done;
} a2_emitter_t;

static void *a2_emit(void *p)
{
    a2_emitter_t *e = p;
    sc_emit_t ev;
    memset(&ev, 0, sizeof ev);
    ev.scope = "tiny:1";
    for (unsigned long i = 0; i < e->events; i++)
        if (sc_bus_emit(e->bus, &ev, NULL) != SC_OK)
            e->failures++;
    atomic_store(&e->done, true);
    return NULL;
}

static void
test_bus_threads_drop_reports_match_seq_gaps_with_one_slot_queue(void **state)
{
    (void)state;
    const unsigned long per = env_count("SC_STRESS_EVENTS", 100000);
    double t0 = now_s();
    sc_bus_t *bus = new_bus(1);
    sc_owner_t *owner = NULL;
    assert_int_equal(sc_owner_create(NULL, NULL, &owner), SC_OK);
    a_track_t t;
    memset(&t, 0, sizeof t);
    assert_int_equal(sc_bus_subscribe(bus, "tiny:1", owner, NULL, &t.sub, NULL),
                     SC_OK);
    static a2_emitter_t em;
    em.bus = bus;
    em.events = per * 2;
    em.failures = 0;
    atomic_init(&em.done, false);
    pthread_t te;
    start(&te, a2_emit, &em);
    /* Poll without waiting until every event is accounted for (or, once
     * the emitter is done, until a drain finds nothing more). */
    for (;;) {
        bool done = atomic_load(&em.done);
        bool progress = a_drain(&t);
        if (t.last_seq + t.gap >= em.events || (done && !progress))
            break;
    }
    join(te);
    uint64_t dropped_total = sc_sub_dropped_total(t.sub);
    sc_sub_destroy(t.sub);
    sc_owner_destroy(owner);
    sc_bus_stats_t st;
    sc_bus_stats(bus, &st);
    sc_bus_destroy(bus);
    assert_int_equal(em.failures, 0);
    assert_int_equal(t.order_errors, 0);
    if (t.gap_errors != 0)
        print_error("%llu seq gap(s) not matching the reported drops; "
                    "first: %s\n",
                    (unsigned long long)t.gap_errors, t.first_gap_error);
    assert_int_equal(t.gap_errors, 0);
    assert_int_equal(t.received + t.dropped, em.events);
    assert_int_equal(t.dropped, dropped_total);
    assert_int_equal(st.subscribers, 0);
    printf("one-slot queue: %lu events: %.2f s, received %llu, dropped "
           "%llu\n",
           em.events, now_s() - t0, (unsigned long long)t.received,
           (unsigned long long)t.dropped);
}

/* ==== (b) close and unsubscribe racing with emits ====================== */

#define B_SCOPES 4
#define B_CONSUMERS 3
#define B_SLOTS 8
#define B_EMITTERS 2
#define B_EMITS 100000
#define B_MAX_IDS (1u << 18)

static const char *const b_scopes[B_SCOPES] = {"race:0", "race:1", "race:2",
                                               "race:3"};
static const char *const b_users[5] = {"u0", "u1", "u2", "u3", "u4"};

typedef struct b_ctx {
    sc_bus_t *bus;
    atomic_bool emitters_done;
    atomic_bool stop;
    atomic_uint next_id;
    atomic_int *disc;    /* on_disconnect calls per subscription id */
    atomic_ulong errors; /* invariant violations in workers */
    atomic_ulong ended_closed;
    atomic_ulong ended_destroyed;
    atomic_ulong closed_by_bus; /* sum of close / close_user returns */
} b_ctx_t;

typedef struct b_slot {
    sc_sub_t *sub;
    unsigned id;
    unsigned received;
    unsigned limit; /* destroy it ourselves after this many items */
    uint64_t last_seq;
} b_slot_t;

static int b_on_disc(void *ud, const char *scope, const sc_conn_t *conn)
{
    atomic_int *n = ud;
    (void)scope;
    (void)conn;
    atomic_fetch_add(n, 1);
    return 0;
}

static void b_subscribe(b_ctx_t *x, sc_owner_t *owner, b_slot_t *s)
{
    s->sub = NULL;
    unsigned id = atomic_fetch_add(&x->next_id, 1);
    if (id >= B_MAX_IDS)
        return;
    char session[32];
    snprintf(session, sizeof session, "b-%u", id);
    sc_conn_t conn;
    if (sc_conn_init(&conn, session, b_users[id % 5], 1.0, NULL, 0) != SC_OK) {
        atomic_fetch_add(&x->errors, 1);
        return;
    }
    sc_sub_opts_t o;
    memset(&o, 0, sizeof o);
    o.conn = &conn;
    o.quiet = id % 4 != 0;
    o.on_disconnect = b_on_disc;
    o.on_disconnect_ud = &x->disc[id];
    if (sc_bus_subscribe(x->bus, b_scopes[id % B_SCOPES], owner, &o, &s->sub,
                         NULL) != SC_OK) {
        atomic_fetch_add(&x->errors, 1);
        s->sub = NULL;
    }
    sc_conn_deinit(&conn);
    s->id = id;
    s->received = 0;
    s->last_seq = 0;
    s->limit = id % 3 == 0 ? id % 17 : UINT32_MAX;
}

/* Drains one slot; ends it (destroy) when closed or over its limit. */
static void b_drain(b_ctx_t *x, b_slot_t *s)
{
    for (;;) {
        if (s->received >= s->limit) {
            sc_sub_destroy(s->sub); /* unsubscribe racing with emits */
            s->sub = NULL;
            atomic_fetch_add(&x->ended_destroyed, 1);
            return;
        }
        sc_event_t *ev = NULL;
        int rc = sc_sub_next(s->sub, &ev, NULL);
        if (rc == SC_EAGAIN)
            return;
        if (rc == SC_ECLOSED) {
            int why = sc_sub_close_reason(s->sub);
            if (why != SC_CLOSE_CLOSED && why != SC_CLOSE_KICKED &&
                why != SC_CLOSE_SHUTDOWN)
                atomic_fetch_add(&x->errors, 1);
            sc_sub_destroy(s->sub);
            s->sub = NULL;
            atomic_fetch_add(&x->ended_closed, 1);
            return;
        }
        if (rc != SC_OK) {
            atomic_fetch_add(&x->errors, 1);
            return;
        }
        if (sc_event_kind(ev) == SC_EVENT_CHANGE) {
            if (sc_event_seq(ev) <= s->last_seq)
                atomic_fetch_add(&x->errors, 1);
            s->last_seq = sc_event_seq(ev);
        }
        s->received++;
        sc_event_unref(ev);
    }
}

static void *b_consume(void *p)
{
    b_ctx_t *x = p;
    sc_owner_t *owner = NULL;
    if (sc_owner_create(NULL, NULL, &owner) != SC_OK) {
        atomic_fetch_add(&x->errors, 1);
        return NULL;
    }
    b_slot_t slots[B_SLOTS];
    for (int i = 0; i < B_SLOTS; i++)
        b_subscribe(x, owner, &slots[i]);
    for (;;) {
        sc_owner_rearm(owner);
        int live = 0;
        for (int i = 0; i < B_SLOTS; i++) {
            if (slots[i].sub != NULL)
                b_drain(x, &slots[i]);
            if (slots[i].sub == NULL && !atomic_load(&x->stop))
                b_subscribe(x, owner, &slots[i]);
            live += slots[i].sub != NULL;
        }
        /* Checked after re-subscribing: a subscription made before `stop`
         * was set is ended by the main thread's final close (which wakes
         * us); anything later is ended here by its own destroy. */
        if (atomic_load(&x->stop) || live == 0)
            break;
        (void)sc_owner_wait(owner, 100);
    }
    for (int i = 0; i < B_SLOTS; i++) {
        if (slots[i].sub != NULL) {
            /* Drain what is left, then end it ourselves if still open. */
            b_drain(x, &slots[i]);
            if (slots[i].sub != NULL) {
                sc_sub_destroy(slots[i].sub);
                atomic_fetch_add(&x->ended_destroyed, 1);
            }
        }
    }
    sc_owner_destroy(owner);
    return NULL;
}

typedef struct b_emitter {
    b_ctx_t *x;
    int index;
} b_emitter_t;

static void *b_emit(void *p)
{
    b_emitter_t *e = p;
    const char *paths[] = {"a", "b"};
    for (int i = 0; i < B_EMITS; i++) {
        sc_emit_t ev;
        memset(&ev, 0, sizeof ev);
        ev.scope = b_scopes[(i + e->index) % B_SCOPES];
        ev.paths = paths;
        ev.npaths = 2;
        if (sc_bus_emit(e->x->bus, &ev, NULL) != SC_OK)
            atomic_fetch_add(&e->x->errors, 1);
    }
    return NULL;
}

static void *b_close(void *p)
{
    b_ctx_t *x = p;
    for (unsigned i = 0; !atomic_load(&x->emitters_done); i++) {
        size_t n;
        if (i % 5 == 4)
            n = sc_bus_close_user(x->bus, b_users[(i / 5) % 5], NULL);
        else
            n = sc_bus_close(x->bus, b_scopes[i % B_SCOPES], SC_CLOSE_CLOSED);
        atomic_fetch_add(&x->closed_by_bus, n);
        sched_yield();
    }
    return NULL;
}

static void test_bus_threads_close_and_unsubscribe_race_with_emits(void **state)
{
    (void)state;
    double t0 = now_s();
    static b_ctx_t x;
    memset(&x, 0, sizeof x);
    x.bus = new_bus(64);
    x.disc = calloc(B_MAX_IDS, sizeof *x.disc);
    assert_non_null(x.disc);
    for (unsigned i = 0; i < B_MAX_IDS; i++)
        atomic_init(&x.disc[i], 0);
    atomic_init(&x.emitters_done, false);
    atomic_init(&x.stop, false);
    atomic_init(&x.next_id, 0);
    atomic_init(&x.errors, 0);
    atomic_init(&x.ended_closed, 0);
    atomic_init(&x.ended_destroyed, 0);
    atomic_init(&x.closed_by_bus, 0);

    pthread_t tc[B_CONSUMERS], te[B_EMITTERS], tk;
    b_emitter_t em[B_EMITTERS];
    for (int i = 0; i < B_CONSUMERS; i++)
        start(&tc[i], b_consume, &x);
    start(&tk, b_close, &x);
    for (int i = 0; i < B_EMITTERS; i++) {
        em[i] = (b_emitter_t){&x, i};
        start(&te[i], b_emit, &em[i]);
    }
    for (int i = 0; i < B_EMITTERS; i++)
        join(te[i]);
    atomic_store(&x.emitters_done, true);
    join(tk);
    atomic_store(&x.stop, true);
    size_t last = sc_bus_close(x.bus, NULL, SC_CLOSE_SHUTDOWN);
    atomic_fetch_add(&x.closed_by_bus, last);
    for (int i = 0; i < B_CONSUMERS; i++)
        join(tc[i]);

    unsigned ids = atomic_load(&x.next_id);
    if (ids > B_MAX_IDS)
        ids = B_MAX_IDS;
    unsigned long ended =
        atomic_load(&x.ended_closed) + atomic_load(&x.ended_destroyed);
    assert_int_equal(atomic_load(&x.errors), 0);
    for (unsigned i = 0; i < ids; i++)
        assert_int_equal(atomic_load(&x.disc[i]), 1);
    /* Every subscription ended exactly one way. */
    assert_int_equal(ended, ids);
    /* Those that saw SC_ECLOSED were ended by the bus. */
    assert_true(atomic_load(&x.ended_closed) <= atomic_load(&x.closed_by_bus));
    assert_bus_empty(x.bus);
    sc_bus_destroy(x.bus);
    free(x.disc);
    printf("close/unsubscribe race: %.2f s, %u subscriptions, %lu ended by "
           "SC_ECLOSED, %lu by their own destroy, %lu closed by the bus\n",
           now_s() - t0, ids, atomic_load(&x.ended_closed),
           atomic_load(&x.ended_destroyed), atomic_load(&x.closed_by_bus));
}

/* ==== (c) 100k subscribe/unsubscribe cycles across threads ============= */

#define C_THREADS 4
#define C_CYCLES 25000

typedef struct c_ctx {
    sc_bus_t *bus;
    atomic_ulong disconnects;
    atomic_ulong errors;
    atomic_bool stop;
} c_ctx_t;

static int c_on_disc(void *ud, const char *scope, const sc_conn_t *conn)
{
    int *calls = ud; /* one per cycle, on this (the owner's) thread */
    (*calls)++;
    (void)scope;
    (void)conn;
    return 0;
}

static int c_on_disc_global(void *ud, const char *scope, const sc_conn_t *conn)
{
    (void)scope;
    (void)conn;
    atomic_fetch_add((atomic_ulong *)ud, 1);
    return 0;
}

typedef struct c_worker {
    c_ctx_t *x;
    int index;
} c_worker_t;

static void c_drain(sc_sub_t *s)
{
    sc_event_t *ev = NULL;
    while (sc_sub_next(s, &ev, NULL) == SC_OK)
        sc_event_unref(ev);
}

static void *c_cycle(void *p)
{
    c_worker_t *w = p;
    c_ctx_t *x = w->x;
    static const char *const scopes[2] = {"cycle:0", "cycle:1"};
    static const char *const users[3] = {"ua", "ub", NULL};
    sc_owner_t *owner = NULL;
    if (sc_owner_create(NULL, NULL, &owner) != SC_OK) {
        atomic_fetch_add(&x->errors, 1);
        return NULL;
    }
    /* A long-lived watcher gets the others' join/leave (and drops). */
    sc_sub_t *watch = NULL;
    if (sc_bus_subscribe(x->bus, scopes[w->index % 2], owner, NULL, &watch,
                         NULL) != SC_OK)
        atomic_fetch_add(&x->errors, 1);
    for (int i = 0; i < C_CYCLES; i++) {
        char session[32];
        snprintf(session, sizeof session, "c-%d-%d", w->index, i);
        sc_conn_t conn;
        if (sc_conn_init(&conn, session, users[i % 3], 0.0, NULL, 0) != SC_OK) {
            atomic_fetch_add(&x->errors, 1);
            continue;
        }
        int calls = 0;
        sc_sub_opts_t o;
        memset(&o, 0, sizeof o);
        o.conn = i % 5 == 0 ? NULL : &conn;
        o.quiet = i % 2 == 0;
        o.on_disconnect = c_on_disc;
        o.on_disconnect_ud = &calls;
        sc_sub_t *s = NULL;
        int rc = sc_bus_subscribe(x->bus, scopes[i % 2], owner, &o, &s, NULL);
        sc_conn_deinit(&conn);
        if (rc != SC_OK) {
            atomic_fetch_add(&x->errors, 1);
            continue;
        }
        if (i % 3 == 0) {
            sc_emit_t e;
            memset(&e, 0, sizeof e);
            e.scope = scopes[i % 2];
            if (sc_bus_emit(x->bus, &e, NULL) != SC_OK)
                atomic_fetch_add(&x->errors, 1);
        }
        if (i % 7 == 0)
            c_drain(s);
        sc_sub_destroy(s); /* queued items, if any, are released */
        if (calls != 1)
            atomic_fetch_add(&x->errors, 1);
        atomic_fetch_add(&x->disconnects, 1);
        if (i % 64 == 0)
            c_drain(watch);
    }
    sc_sub_destroy(watch);
    sc_owner_destroy(owner);
    return NULL;
}

static void *c_emit(void *p)
{
    c_ctx_t *x = p;
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    for (unsigned i = 0; !atomic_load(&x->stop); i++) {
        e.scope = i % 2 ? "cycle:1" : "cycle:0";
        if (sc_bus_emit(x->bus, &e, NULL) != SC_OK)
            atomic_fetch_add(&x->errors, 1);
        if (i % 64 == 0)
            sched_yield();
    }
    return NULL;
}

static void
test_bus_threads_subscribe_unsubscribe_cycles_disconnect_once(void **state)
{
    (void)state;
    double t0 = now_s();
    static c_ctx_t x;
    memset(&x, 0, sizeof x);
    x.bus = new_bus(16);
    atomic_init(&x.disconnects, 0);
    atomic_init(&x.errors, 0);
    atomic_init(&x.stop, false);
    /* A subscription kept across the whole run, ended by close at the end:
     * its on_disconnect counts once too. */
    atomic_ulong keeper_disc;
    atomic_init(&keeper_disc, 0);
    sc_owner_t *owner = NULL;
    assert_int_equal(sc_owner_create(NULL, NULL, &owner), SC_OK);
    sc_sub_opts_t o;
    memset(&o, 0, sizeof o);
    o.on_disconnect = c_on_disc_global;
    o.on_disconnect_ud = &keeper_disc;
    sc_sub_t *keeper = NULL;
    assert_int_equal(
        sc_bus_subscribe(x.bus, "cycle:0", owner, &o, &keeper, NULL), SC_OK);

    pthread_t t[C_THREADS], te;
    c_worker_t w[C_THREADS];
    start(&te, c_emit, &x);
    for (int i = 0; i < C_THREADS; i++) {
        w[i] = (c_worker_t){&x, i};
        start(&t[i], c_cycle, &w[i]);
    }
    for (int i = 0; i < C_THREADS; i++)
        join(t[i]);
    atomic_store(&x.stop, true);
    join(te);

    assert_int_equal(atomic_load(&x.errors), 0);
    assert_int_equal(atomic_load(&x.disconnects), C_THREADS * C_CYCLES);
    sc_bus_stats_t st;
    sc_bus_stats(x.bus, &st);
    assert_int_equal(st.subscribers, 1);
    assert_int_equal(st.scopes, 1);
    assert_int_equal(sc_bus_close(x.bus, NULL, SC_CLOSE_CLOSED), 1);
    assert_int_equal(atomic_load(&keeper_disc), 0);
    sc_sub_destroy(keeper);
    assert_int_equal(atomic_load(&keeper_disc), 1);
    sc_owner_destroy(owner);
    assert_bus_empty(x.bus);
    sc_bus_destroy(x.bus);
    printf("subscribe/unsubscribe: %d x %d cycles: %.2f s\n", C_THREADS,
           C_CYCLES, now_s() - t0);
}

/* ==== (d) close_user racing with subscribes ============================ */

#define D_THREADS 3
#define D_SUBS 1500
#define D_USERS 4

static const char *const d_users[D_USERS] = {"ka", "kb", "kc", "kd"};
static const char *const d_scopes[D_USERS] = {"kick:0", "kick:1", "kick:2",
                                              "kick:3"};

typedef struct d_ctx {
    sc_bus_t *bus;
    atomic_int subscribed_threads; /* threads done subscribing */
    atomic_ulong kicked;           /* sum of close_user returns */
    atomic_ulong errors;
    atomic_ulong stuck;
} d_ctx_t;

typedef struct d_worker {
    d_ctx_t *x;
    int index;
    sc_sub_t *subs[D_SUBS];
    atomic_int disc[D_SUBS];
    bool ended[D_SUBS];
} d_worker_t;

static int d_on_disc(void *ud, const char *scope, const sc_conn_t *conn)
{
    (void)scope;
    (void)conn;
    atomic_fetch_add((atomic_int *)ud, 1);
    return 0;
}

/* Drains every subscription of the worker; returns how many have ended
 * (SC_ECLOSED seen, which must be a kick). */
static int d_drain_all(d_worker_t *w, int upto)
{
    int ended = 0;
    for (int k = 0; k < upto; k++) {
        if (w->subs[k] == NULL || w->ended[k]) {
            ended += w->subs[k] != NULL;
            continue;
        }
        sc_event_t *ev = NULL;
        int rc;
        while ((rc = sc_sub_next(w->subs[k], &ev, NULL)) == SC_OK)
            sc_event_unref(ev);
        if (rc == SC_ECLOSED) {
            if (sc_sub_close_reason(w->subs[k]) != SC_CLOSE_KICKED)
                atomic_fetch_add(&w->x->errors, 1);
            w->ended[k] = true;
            ended++;
        }
    }
    return ended;
}

static void *d_subscribe(void *p)
{
    d_worker_t *w = p;
    d_ctx_t *x = w->x;
    sc_owner_t *owner = NULL;
    if (sc_owner_create(NULL, NULL, &owner) != SC_OK) {
        atomic_fetch_add(&x->errors, 1);
        atomic_fetch_add(&x->subscribed_threads, 1);
        return NULL;
    }
    int made = 0;
    for (int k = 0; k < D_SUBS; k++) {
        char session[32];
        snprintf(session, sizeof session, "d-%d-%d", w->index, k);
        sc_conn_t conn;
        w->subs[k] = NULL;
        if (sc_conn_init(&conn, session, d_users[k % D_USERS], 0.0, NULL, 0) !=
            SC_OK) {
            atomic_fetch_add(&x->errors, 1);
            continue;
        }
        sc_sub_opts_t o;
        memset(&o, 0, sizeof o);
        o.conn = &conn;
        o.quiet = k % 8 != 0;
        o.on_disconnect = d_on_disc;
        o.on_disconnect_ud = &w->disc[k];
        if (sc_bus_subscribe(x->bus, d_scopes[(k / D_USERS) % D_USERS], owner,
                             &o, &w->subs[k], NULL) != SC_OK) {
            atomic_fetch_add(&x->errors, 1);
            w->subs[k] = NULL;
        } else {
            made++;
        }
        sc_conn_deinit(&conn);
        if (k % 16 == 15) {
            sc_owner_rearm(owner);
            d_drain_all(w, k + 1);
        }
    }
    atomic_fetch_add(&x->subscribed_threads, 1);
    /* The main thread's final sweep kicks whatever is left; wait for every
     * subscription to end. 30 idle seconds means one escaped a kick. */
    int idle = 0;
    for (;;) {
        sc_owner_rearm(owner);
        if (d_drain_all(w, D_SUBS) == made)
            break;
        if (sc_owner_wait(owner, 1000) == SC_ETIMEDOUT && ++idle >= 30) {
            atomic_fetch_add(&x->stuck, 1);
            break;
        }
    }
    for (int k = 0; k < D_SUBS; k++)
        sc_sub_destroy(w->subs[k]);
    sc_owner_destroy(owner);
    return NULL;
}

static void *d_kick(void *p)
{
    d_ctx_t *x = p;
    for (unsigned i = 0; atomic_load(&x->subscribed_threads) < D_THREADS; i++) {
        const char *scope = i % 3 == 0 ? NULL : d_scopes[(i / 3) % D_USERS];
        atomic_fetch_add(
            &x->kicked, sc_bus_close_user(x->bus, d_users[i % D_USERS], scope));
        sched_yield();
    }
    return NULL;
}

static void test_bus_threads_close_user_races_with_subscribes(void **state)
{
    (void)state;
    double t0 = now_s();
    static d_ctx_t x;
    static d_worker_t w[D_THREADS];
    memset(&x, 0, sizeof x);
    memset(w, 0, sizeof w);
    x.bus = new_bus(32);
    atomic_init(&x.subscribed_threads, 0);
    atomic_init(&x.kicked, 0);
    atomic_init(&x.errors, 0);
    atomic_init(&x.stuck, 0);
    pthread_t t[D_THREADS], tk;
    for (int i = 0; i < D_THREADS; i++) {
        w[i].x = &x;
        w[i].index = i;
        for (int k = 0; k < D_SUBS; k++)
            atomic_init(&w[i].disc[k], 0);
        start(&t[i], d_subscribe, &w[i]);
    }
    start(&tk, d_kick, &x);
    join(tk);
    unsigned long raced = atomic_load(&x.kicked);
    /* Final sweep: every remaining subscription is kicked exactly once. */
    for (int u = 0; u < D_USERS; u++)
        atomic_fetch_add(&x.kicked, sc_bus_close_user(x.bus, d_users[u], NULL));
    for (int i = 0; i < D_THREADS; i++)
        join(t[i]);

    assert_int_equal(atomic_load(&x.errors), 0);
    assert_int_equal(atomic_load(&x.stuck), 0);
    /* Each subscription was counted by exactly one close_user call. */
    assert_int_equal(atomic_load(&x.kicked), D_THREADS * D_SUBS);
    for (int i = 0; i < D_THREADS; i++)
        for (int k = 0; k < D_SUBS; k++)
            assert_int_equal(atomic_load(&w[i].disc[k]), 1);
    assert_bus_empty(x.bus);
    sc_bus_destroy(x.bus);
    printf("close_user race: %d x %d subscriptions: %.2f s, %lu kicked "
           "while subscribing\n",
           D_THREADS, D_SUBS, now_s() - t0, raced);
}

/* ==== (e) history: resubscribes with `since` race with emitters ========= */

#define E_EMITTERS 3
#define E_SCOPES 40
#define E_ROUNDS 300

typedef struct e_ctx {
    sc_bus_t *bus;
    _Atomic bool stop;
    _Atomic unsigned long emitted;
} e_ctx_t;

static void e_hook(void *ud, const char *scope, sc_history_limits_t *out)
{
    (void)ud;
    /* the watched scope keeps 2000, the others 100 (and the budget) */
    out->max_events = strcmp(scope, "hist:w") == 0 ? 2000 : 100;
}

static void *e_emit(void *p)
{
    e_ctx_t *x = p;
    char name[32];
    unsigned long k = 0;
    while (!atomic_load(&x->stop)) {
        const char *scope = "hist:w";
        if (k % 3) {
            snprintf(name, sizeof name, "hist:%lu", k % E_SCOPES);
            scope = name;
        }
        sc_emit_t e = {.scope = scope,
                       .payload = "{\"n\":1}",
                       .payload_len = 7,
                       .has_payload = true};
        assert_int_equal(sc_bus_emit(x->bus, &e, NULL), SC_OK);
        k++;
    }
    atomic_fetch_add(&x->emitted, k);
    return NULL;
}

/* Emitters keep writing into 41 scopes under a budget small enough to
 * evict across shards; one consumer subscribes to "hist:w" with `since`
 * where it stopped, takes a few events and leaves, again and again, and
 * a second one moves its live subscription back (sc_sub_recover). Every
 * recovered resubscribe continues with exactly the next seq (no gap, no
 * duplicate at the seam), the budget holds, TSan sees no race. */
static void test_bus_threads_history_recovery_races_with_emits(void **state)
{
    (void)state;
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    cfg.maxsize = 4096;
    cfg.log = count_log;
    cfg.history = e_hook;
    cfg.history_max_bytes = 400000;
    e_ctx_t x = {0};
    assert_int_equal(sc_bus_create(&cfg, &x.bus), SC_OK);
    pthread_t em[E_EMITTERS];
    for (int i = 0; i < E_EMITTERS; i++)
        start(&em[i], e_emit, &x);
    sc_owner_t *owner;
    assert_int_equal(sc_owner_create(NULL, NULL, &owner), SC_OK);
    uint64_t last = 0, epoch = 0;
    bool have = false;
    unsigned recovered = 0, fresh = 0, moved = 0;
    sc_sub_t *live = NULL;
    for (int round = 0; round < E_ROUNDS; round++) {
        sc_since_t since = {.seq = last, .epoch = epoch, .has_epoch = have};
        sc_sub_opts_t o = {.since = have ? &since : NULL};
        sc_sub_t *sub;
        uint64_t seq0;
        assert_int_equal(
            sc_bus_subscribe(x.bus, "hist:w", owner, &o, &sub, &seq0), SC_OK);
        bool rec = have && sc_sub_recovered(sub);
        if (have && sc_sub_epoch(sub) != epoch)
            assert_false(rec); /* another life never recovers */
        if (rec)
            recovered++;
        else
            fresh++;
        uint64_t expect = rec ? last + 1 : seq0 + 1;
        epoch = sc_sub_epoch(sub);
        /* every fifth round: keep it and move it back instead */
        bool keep = round % 5 == 4 && !live;
        for (int k = 0; k < 20; k++) {
            sc_event_t *ev;
            uint32_t dropped = 0;
            int rc = sc_sub_wait(sub, &ev, &dropped, 2000);
            assert_int_equal(rc, SC_OK);
            assert_int_equal(dropped, 0);
            assert_int_equal(sc_event_seq(ev), expect);
            expect++;
            sc_event_unref(ev);
        }
        last = expect - 1;
        have = true;
        if (keep) {
            live = sub;
            continue;
        }
        sc_sub_destroy(sub);
        if (live && round % 5 == 0) { /* the kept one: back to `last` */
            sc_since_t back = {.seq = last, .epoch = epoch, .has_epoch = true};
            bool r;
            uint64_t s1;
            assert_int_equal(sc_sub_recover(live, &back, &r, &s1), SC_OK);
            if (r) {
                moved++;
                sc_event_t *ev;
                assert_int_equal(sc_sub_wait(live, &ev, NULL, 2000), SC_OK);
                assert_int_equal(sc_event_seq(ev), last + 1);
                sc_event_unref(ev);
            }
            sc_sub_destroy(live);
            live = NULL;
        }
    }
    if (live)
        sc_sub_destroy(live);
    atomic_store(&x.stop, true);
    for (int i = 0; i < E_EMITTERS; i++)
        join(em[i]);
    unsigned long total = atomic_load(&x.emitted);
    sc_bus_stats_t st;
    sc_bus_stats(x.bus, &st);
    /* each emitter may pass the budget by one event at a time */
    assert_true(st.history_bytes <= cfg.history_max_bytes + E_EMITTERS * 512);
    assert_true(st.history_evicted > 0);
    assert_true(recovered > 0);
    print_message("history: %u recovered resubscribes, %u fresh, %u moved "
                  "back; %lu emits, %llu evicted for the budget\n",
                  recovered, fresh, moved, total,
                  (unsigned long long)st.history_evicted);
    sc_owner_destroy(owner);
    sc_bus_destroy(x.bus);
}

int main(void)
{
    atomic_init(&g_log_lines, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_bus_threads_eight_emitters_sixty_four_subs_account_for_every_event),
        cmocka_unit_test(
            test_bus_threads_drop_reports_match_seq_gaps_with_one_slot_queue),
        cmocka_unit_test(
            test_bus_threads_close_and_unsubscribe_race_with_emits),
        cmocka_unit_test(
            test_bus_threads_subscribe_unsubscribe_cycles_disconnect_once),
        cmocka_unit_test(test_bus_threads_close_user_races_with_subscribes),
        cmocka_unit_test(test_bus_threads_history_recovery_races_with_emits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
