/*
 * Unit tests for core/bus.h, seqs given by the emitter (sc_emit_t.seq, the
 * Redis broker's cluster order; core/event.h has the rule): 0 takes the
 * scope's next seq; a given seq above the scope's is taken as it is (a
 * jump) and becomes the scope's; one at or below it gets the scope's seq +
 * 1 (seqs only rise); the encoder sees the final seq; a jump ends the
 * scope's kept history (recovery from before it answers false, in the same
 * epoch), a contiguous given seq (the scope's + 1) keeps it.
 *
 * Epochs given with a seq (sc_emit_t.epoch, the cluster's epoch of the
 * scope): an emit that gets exactly its given seq adopts the epoch (a
 * different one ends the kept history, the same one keeps it); one that
 * cannot (the scope numbers past it) or that gives none leaves an adopted
 * epoch for a fresh local one; a local epoch stays across plain emits.
 *
 * Single-threaded, on the shared fixture (bus_fixture.h).
 */
#include "bus_fixture.h"

#include <string.h>

/* The history hook: "h:*" keeps 5 events, anything else nothing. */
static void hook(void *ud, const char *scope, sc_history_limits_t *out)
{
    (void)ud;
    if (strncmp(scope, "h:", 2) == 0)
        out->max_events = 5;
}

/* The encoder records the seq of every event it is called with. */
typedef struct encrec {
    int n;
    uint64_t seq[64];
} encrec_t;

static int enc_record(void *ud, sc_event_t *ev)
{
    encrec_t *r = ud;
    if (r->n < 64)
        r->seq[r->n] = sc_event_seq(ev);
    r->n++;
    return 0;
}

static void open_hist(fx_t *fx, int maxsize)
{
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    cfg.history = hook;
    cfg.maxsize = maxsize;
    cfg.epoch_seed = 42;
    fx_open_cfg(fx, &cfg);
}

/* Emits a change event into `scope` with the given seq (0: the bus's);
 * returns the seq the bus reports. */
/* Emits a change event into `scope` with the given seq and epoch (0:
 * none); returns the seq the bus reports. */
static uint64_t emit_seq_epoch(fx_t *fx, const char *scope, uint64_t seq,
                               uint64_t epoch)
{
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = scope;
    e.seq = seq;
    e.epoch = epoch;
    return emit_ok(fx, &e);
}

static uint64_t emit_seq(fx_t *fx, const char *scope, uint64_t seq)
{
    return emit_seq_epoch(fx, scope, seq, 0);
}

static sc_sub_t *sub_since(fx_t *fx, const char *scope, const sc_since_t *since)
{
    sc_sub_opts_t o = {.since = since};
    return sub_opts(fx, scope, NULL, &o, NULL);
}

static uint64_t kept_events(fx_t *fx)
{
    sc_bus_stats_t st;
    sc_bus_stats(fx->bus, &st);
    return st.history_events;
}

/* Subscribes with since {seq, epoch} and asserts whether it recovered and,
 * when it did, the seqs replayed (n of them, in order). */
static void expect_recovery(fx_t *fx, const char *scope, uint64_t seq,
                            uint64_t epoch, bool recovered,
                            const uint64_t *replayed, size_t n)
{
    sc_since_t since = {.seq = seq, .epoch = epoch, .has_epoch = true};
    sc_sub_t *s = sub_since(fx, scope, &since);
    if (sc_sub_recovered(s) != recovered)
        fail_msg("since %llu: recovered %d, want %d", (unsigned long long)seq,
                 sc_sub_recovered(s), recovered);
    assert_int_equal(sc_sub_epoch(s), epoch); /* a jump keeps the epoch */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(take_seq(s), replayed[i]);
    expect_empty(s);
    sc_sub_destroy(s);
    /* the HTTP read answers the same */
    sc_history_read_t r;
    assert_int_equal(sc_bus_history(fx->bus, scope, &since, NULL, 100, &r),
                     SC_OK);
    assert_int_equal(r.recovered, recovered);
    assert_int_equal(r.n, recovered ? n : 0);
    for (size_t i = 0; recovered && i < n; i++)
        assert_int_equal(sc_event_seq(r.events[i]), replayed[i]);
    sc_history_read_free(&r);
}

/* ---- the seq an emit gets -------------------------------------------------
 */

static void test_cluster_seq_zero_takes_the_next(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 16);
    sc_sub_t *s = sub_plain(&fx, "x");
    assert_int_equal(emit_seq(&fx, "x", 0), 1);
    assert_int_equal(emit_seq(&fx, "x", 0), 2);
    assert_int_equal(sc_bus_scope_seq(fx.bus, "x"), 2);
    assert_int_equal(take_seq(s), 1);
    assert_int_equal(take_seq(s), 2);
    expect_empty(s);
    sc_sub_destroy(s);
    fx_close(&fx);
}

static void test_cluster_seq_above_current_is_taken_as_given(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 16);
    sc_sub_t *s = sub_plain(&fx, "x");
    /* a fresh scope (seq 0) starts at the given seq */
    assert_int_equal(emit_seq(&fx, "x", 100), 100);
    assert_int_equal(sc_bus_scope_seq(fx.bus, "x"), 100);
    assert_int_equal(emit_seq(&fx, "x", 0), 101);   /* next after the jump */
    assert_int_equal(emit_seq(&fx, "x", 102), 102); /* contiguous */
    assert_int_equal(emit_seq(&fx, "x", 250), 250); /* a jump */
    assert_int_equal(sc_bus_scope_seq(fx.bus, "x"), 250);
    assert_int_equal(emit_seq(&fx, "x", UINT64_MAX - 1), UINT64_MAX - 1);
    assert_true(sc_bus_scope_seq(fx.bus, "x") == UINT64_MAX - 1);
    /* the subscriber sees exactly those seqs, and no drops: the events
     * between were never here, this queue lost nothing */
    assert_int_equal(take_seq(s), 100);
    assert_int_equal(take_seq(s), 101);
    assert_int_equal(take_seq(s), 102);
    assert_int_equal(take_seq(s), 250);
    assert_true(take_seq(s) == UINT64_MAX - 1);
    expect_empty(s);
    /* a later subscriber starts after the scope's seq */
    uint64_t at = 0;
    sc_sub_t *t = sub_opts(&fx, "x", NULL, NULL, &at);
    assert_true(at == UINT64_MAX - 1);
    sc_sub_destroy(t);
    sc_sub_destroy(s);
    fx_close(&fx);
}

static void test_cluster_seq_at_or_below_current_gets_the_next(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 16);
    sc_sub_t *s = sub_plain(&fx, "x");
    assert_int_equal(emit_seq(&fx, "x", 5), 5);
    assert_int_equal(emit_seq(&fx, "x", 5), 6); /* equal: the next */
    assert_int_equal(emit_seq(&fx, "x", 3), 7); /* below: the next */
    assert_int_equal(emit_seq(&fx, "x", 1), 8);
    assert_int_equal(emit_seq(&fx, "x", 0), 9);
    assert_int_equal(emit_seq(&fx, "x", 9), 10);
    assert_int_equal(sc_bus_scope_seq(fx.bus, "x"), 10);
    for (uint64_t q = 5; q <= 10; q++)
        assert_int_equal(take_seq(s), q);
    expect_empty(s);
    sc_sub_destroy(s);
    fx_close(&fx);
}

static void test_cluster_seq_scopes_are_independent(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 16);
    sc_sub_t *a = sub_plain(&fx, "a");
    sc_sub_t *b = sub_plain(&fx, "b");
    assert_int_equal(emit_seq(&fx, "a", 40), 40);
    assert_int_equal(emit_seq(&fx, "b", 0), 1); /* b's own seq */
    assert_int_equal(emit_seq(&fx, "b", 3), 3);
    assert_int_equal(emit_seq(&fx, "a", 2), 41);
    assert_int_equal(sc_bus_scope_seq(fx.bus, "a"), 41);
    assert_int_equal(sc_bus_scope_seq(fx.bus, "b"), 3);
    assert_int_equal(take_seq(a), 40);
    assert_int_equal(take_seq(a), 41);
    assert_int_equal(take_seq(b), 1);
    assert_int_equal(take_seq(b), 3);
    sc_sub_destroy(a);
    sc_sub_destroy(b);
    fx_close(&fx);
}

static void test_cluster_seq_without_subscribers_is_not_sequenced(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 16);
    /* nobody, no history: counted, no seq, the scope stays unknown */
    assert_int_equal(emit_seq(&fx, "x", 7), 0);
    assert_int_equal(sc_bus_scope_seq(fx.bus, "x"), 0);
    sc_bus_stats_t st;
    sc_bus_stats(fx.bus, &st);
    assert_int_equal(st.emitted, 1);
    /* a subscriber that comes now starts at 0, then sees the given seq */
    uint64_t at = 99;
    sc_sub_t *s = sub_opts(&fx, "x", NULL, NULL, &at);
    assert_int_equal(at, 0);
    assert_int_equal(emit_seq(&fx, "x", 8), 8);
    assert_int_equal(take_seq(s), 8);
    sc_sub_destroy(s);
    fx_close(&fx);
}

static void test_cluster_seq_encoder_sees_the_final_seq(void **state)
{
    (void)state;
    encrec_t rec = {0};
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    cfg.encode = enc_record;
    cfg.encode_ud = &rec;
    fx_t fx;
    fx_open_cfg(&fx, &cfg);
    sc_sub_t *s = sub_plain(&fx, "x");
    assert_int_equal(emit_seq(&fx, "x", 20), 20);
    assert_int_equal(emit_seq(&fx, "x", 4), 21);
    assert_int_equal(emit_seq(&fx, "x", 0), 22);
    assert_int_equal(rec.n, 3);
    assert_int_equal(rec.seq[0], 20);
    assert_int_equal(rec.seq[1], 21);
    assert_int_equal(rec.seq[2], 22);
    assert_int_equal(take_seq(s), 20);
    assert_int_equal(take_seq(s), 21);
    assert_int_equal(take_seq(s), 22);
    sc_sub_destroy(s);
    fx_close(&fx);
}

/* ---- history across a jump ------------------------------------------------
 */

static void test_cluster_seq_jump_clears_kept_history(void **state)
{
    (void)state;
    fx_t fx;
    open_hist(&fx, 16);
    sc_sub_t *live = sub_plain(&fx, "h:j");
    uint64_t ep = sc_sub_epoch(live);
    assert_int_equal(emit_seq(&fx, "h:j", 0), 1);
    assert_int_equal(emit_seq(&fx, "h:j", 0), 2);
    assert_int_equal(emit_seq(&fx, "h:j", 0), 3);
    assert_int_equal(kept_events(&fx), 3);
    static const uint64_t from1[] = {2, 3};
    expect_recovery(&fx, "h:j", 1, ep, true, from1, 2);

    assert_int_equal(emit_seq(&fx, "h:j", 10), 10); /* 4..9 never here */
    assert_int_equal(kept_events(&fx), 1);          /* only 10 */
    assert_int_equal(sc_bus_scope_seq(fx.bus, "h:j"), 10);
    /* the live subscriber gets 1, 2, 3 and 10 */
    assert_int_equal(take_seq(live), 1);
    assert_int_equal(take_seq(live), 2);
    assert_int_equal(take_seq(live), 3);
    assert_int_equal(take_seq(live), 10);
    expect_empty(live);

    /* from before the jump, in the same epoch: not recovered */
    expect_recovery(&fx, "h:j", 3, ep, false, NULL, 0);
    expect_recovery(&fx, "h:j", 1, ep, false, NULL, 0);
    expect_recovery(&fx, "h:j", 5, ep, false, NULL, 0); /* inside the gap */
    expect_recovery(&fx, "h:j", 8, ep, false, NULL, 0);
    sc_since_t s0 = {0};
    sc_sub_t *z = sub_since(&fx, "h:j", &s0);
    assert_false(sc_sub_recovered(z));
    expect_empty(z);
    sc_sub_destroy(z);
    /* from right before 10 (the client saw 9 elsewhere): 10 is replayed */
    static const uint64_t from9[] = {10};
    expect_recovery(&fx, "h:j", 9, ep, true, from9, 1);
    expect_recovery(&fx, "h:j", 10, ep, true, NULL, 0);

    /* a live subscription moved back across the jump: not recovered */
    sc_since_t s3 = {3, ep, true};
    bool rec = true;
    assert_int_equal(sc_sub_recover(live, &s3, &rec, NULL), SC_OK);
    assert_false(rec);
    expect_empty(live);

    /* history grows again from the jump */
    assert_int_equal(emit_seq(&fx, "h:j", 0), 11);
    assert_int_equal(emit_seq(&fx, "h:j", 12), 12);
    assert_int_equal(kept_events(&fx), 3);
    static const uint64_t from9b[] = {10, 11, 12};
    expect_recovery(&fx, "h:j", 9, ep, true, from9b, 3);
    assert_int_equal(take_seq(live), 11);
    assert_int_equal(take_seq(live), 12);
    sc_sub_destroy(live);
    fx_close(&fx);
}

static void test_cluster_seq_jump_by_two_clears_kept_history(void **state)
{
    (void)state;
    fx_t fx;
    open_hist(&fx, 16);
    sc_sub_t *live = sub_plain(&fx, "h:2");
    uint64_t ep = sc_sub_epoch(live);
    assert_int_equal(emit_seq(&fx, "h:2", 0), 1);
    assert_int_equal(emit_seq(&fx, "h:2", 0), 2);
    assert_int_equal(emit_seq(&fx, "h:2", 4), 4); /* 3 was never here */
    assert_int_equal(kept_events(&fx), 1);
    expect_recovery(&fx, "h:2", 2, ep, false, NULL, 0);
    expect_recovery(&fx, "h:2", 1, ep, false, NULL, 0);
    static const uint64_t from3[] = {4};
    expect_recovery(&fx, "h:2", 3, ep, true, from3, 1);
    assert_int_equal(take_seq(live), 1);
    assert_int_equal(take_seq(live), 2);
    assert_int_equal(take_seq(live), 4);
    sc_sub_destroy(live);
    fx_close(&fx);
}

static void
test_cluster_seq_jump_without_subscribers_clears_history(void **state)
{
    (void)state;
    fx_t fx;
    open_hist(&fx, 16);
    /* the scope lives on its history alone */
    assert_int_equal(emit_seq(&fx, "h:n", 0), 1);
    assert_int_equal(emit_seq(&fx, "h:n", 0), 2);
    sc_since_t s0 = {0};
    sc_history_read_t r;
    assert_int_equal(sc_bus_history(fx.bus, "h:n", &s0, NULL, 10, &r), SC_OK);
    assert_true(r.recovered);
    assert_int_equal(r.n, 2);
    uint64_t ep = r.epoch;
    sc_history_read_free(&r);
    assert_int_equal(emit_seq(&fx, "h:n", 7), 7);
    assert_int_equal(kept_events(&fx), 1);
    expect_recovery(&fx, "h:n", 2, ep, false, NULL, 0);
    expect_recovery(&fx, "h:n", 4, ep, false, NULL, 0);
    static const uint64_t from6[] = {7};
    expect_recovery(&fx, "h:n", 6, ep, true, from6, 1);
    fx_close(&fx);
}

static void test_cluster_seq_first_emit_of_a_history_scope(void **state)
{
    (void)state;
    fx_t fx;
    open_hist(&fx, 16);
    /* a scope new here starting at the cluster's seq 50 */
    assert_int_equal(emit_seq(&fx, "h:f", 50), 50);
    assert_int_equal(kept_events(&fx), 1);
    sc_since_t s0 = {0};
    sc_sub_t *z = sub_since(&fx, "h:f", &s0);
    assert_false(sc_sub_recovered(z)); /* 1..49 were never here */
    expect_empty(z);
    uint64_t ep = sc_sub_epoch(z);
    sc_sub_destroy(z);
    static const uint64_t from49[] = {50};
    expect_recovery(&fx, "h:f", 49, ep, true, from49, 1);
    expect_recovery(&fx, "h:f", 10, ep, false, NULL, 0);
    fx_close(&fx);
}

static void test_cluster_seq_contiguous_keeps_history(void **state)
{
    (void)state;
    fx_t fx;
    open_hist(&fx, 16);
    sc_sub_t *live = sub_plain(&fx, "h:c");
    uint64_t ep = sc_sub_epoch(live);
    assert_int_equal(emit_seq(&fx, "h:c", 0), 1);
    assert_int_equal(emit_seq(&fx, "h:c", 0), 2);
    assert_int_equal(emit_seq(&fx, "h:c", 3), 3); /* current + 1 */
    assert_int_equal(emit_seq(&fx, "h:c", 4), 4);
    assert_int_equal(kept_events(&fx), 4);
    static const uint64_t from0[] = {1, 2, 3, 4};
    expect_recovery(&fx, "h:c", 0, ep, true, from0, 4);
    static const uint64_t from2[] = {3, 4};
    expect_recovery(&fx, "h:c", 2, ep, true, from2, 2);
    /* a given seq at or below the scope's is no jump either */
    assert_int_equal(emit_seq(&fx, "h:c", 2), 5);
    assert_int_equal(emit_seq(&fx, "h:c", 6), 6);
    assert_int_equal(kept_events(&fx), 5); /* 2..6, the count limit */
    static const uint64_t from1[] = {2, 3, 4, 5, 6};
    expect_recovery(&fx, "h:c", 1, ep, true, from1, 5);
    expect_recovery(&fx, "h:c", 0, ep, false, NULL, 0); /* 1 aged out */
    for (uint64_t q = 1; q <= 6; q++)
        assert_int_equal(take_seq(live), q);
    expect_empty(live);
    sc_sub_destroy(live);
    fx_close(&fx);
}

/* on_seq: what it saw, and whether the subscriber could already take the
 * event at that moment (it must not: the answer comes first). */
typedef struct seqrec {
    sc_sub_t *sub;
    int calls;
    uint64_t seq;
    size_t pending_then;
} seqrec_t;

static void on_seq(void *ud, uint64_t seq)
{
    seqrec_t *r = ud;
    r->calls++;
    r->seq = seq;
    r->pending_then = r->sub ? sc_sub_pending(r->sub) : 0;
}

static void
test_cluster_seq_on_seq_reports_the_seq_before_delivery(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 8);
    sc_sub_t *s = sub_opts(&fx, "room", NULL, NULL, NULL);
    seqrec_t r = {.sub = s};
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = "room";
    e.on_seq = on_seq;
    e.on_seq_ud = &r;
    assert_int_equal(emit_ok(&fx, &e), 1);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.seq, 1);
    assert_int_equal(r.pending_then, 0); /* nothing queued yet */
    e.seq = 10;                          /* a given seq: reported as taken */
    assert_int_equal(emit_ok(&fx, &e), 10);
    assert_int_equal(r.calls, 2);
    assert_int_equal(r.seq, 10);
    assert_int_equal(r.pending_then, 1); /* only the first one */
    e.seq = 3;                           /* below: the scope's next */
    assert_int_equal(emit_ok(&fx, &e), 11);
    assert_int_equal(r.seq, 11);
    assert_int_equal(take_seq(s), 1);
    assert_int_equal(take_seq(s), 10);
    assert_int_equal(take_seq(s), 11);
    /* a scope nobody is in: called with 0 */
    seqrec_t r0 = {0};
    e.scope = "empty";
    e.on_seq_ud = &r0;
    e.seq = 0;
    assert_int_equal(emit_ok(&fx, &e), 0);
    assert_int_equal(r0.calls, 1);
    assert_int_equal(r0.seq, 0);
    sc_sub_destroy(s);
    fx_close(&fx);
}

/* ---- epochs given with the seq (sc_emit_t.epoch) --------------------------
 */

#define EP_A 0x1111222233334444ULL
#define EP_B 0x5555666677778888ULL

static uint64_t scope_epoch(fx_t *fx, const char *scope)
{
    return sc_bus_scope_epoch(fx->bus, scope, NULL);
}

/* Like expect_recovery, for a since whose epoch may differ from the
 * scope's: subscribes with since {seq, epoch} (has_epoch as given) and
 * reads the history, asserting whether each recovered and what was
 * replayed; the subscription and the read both report the scope's epoch
 * now (`scope_ep`). */
static void expect_since(fx_t *fx, const char *scope, uint64_t seq,
                         uint64_t epoch, bool has_epoch, uint64_t scope_ep,
                         bool recovered, const uint64_t *replayed, size_t n)
{
    sc_since_t since = {.seq = seq, .epoch = epoch, .has_epoch = has_epoch};
    sc_sub_t *s = sub_since(fx, scope, &since);
    if (sc_sub_recovered(s) != recovered)
        fail_msg("since (%016llx, %llu): recovered %d, want %d",
                 (unsigned long long)epoch, (unsigned long long)seq,
                 sc_sub_recovered(s), recovered);
    assert_true(sc_sub_epoch(s) == scope_ep);
    for (size_t i = 0; recovered && i < n; i++)
        assert_int_equal(take_seq(s), replayed[i]);
    expect_empty(s);
    sc_sub_destroy(s);
    sc_history_read_t r;
    assert_int_equal(sc_bus_history(fx->bus, scope, &since, NULL, 100, &r),
                     SC_OK);
    if (r.recovered != recovered)
        fail_msg("history since (%016llx, %llu): recovered %d, want %d",
                 (unsigned long long)epoch, (unsigned long long)seq,
                 r.recovered, recovered);
    assert_true(r.exists);
    assert_true(r.epoch == scope_ep);
    assert_int_equal(r.n, recovered ? n : 0);
    for (size_t i = 0; recovered && i < n; i++)
        assert_int_equal(sc_event_seq(r.events[i]), replayed[i]);
    sc_history_read_free(&r);
}

static void test_cluster_epoch_first_emit_adopts_the_epoch(void **state)
{
    (void)state;
    fx_t fx;
    open_hist(&fx, 16);
    assert_true(scope_epoch(&fx, "h:e1") == 0); /* not alive yet */
    uint64_t seq = 99;
    assert_true(sc_bus_scope_epoch(fx.bus, "h:e1", &seq) == 0);
    assert_int_equal(seq, 0);

    /* a history scope new here, its first event with the cluster's
     * (epoch, seq): the scope takes both */
    assert_int_equal(emit_seq_epoch(&fx, "h:e1", 1, EP_A), 1);
    assert_true(sc_bus_scope_epoch(fx.bus, "h:e1", &seq) == EP_A);
    assert_int_equal(seq, 1);
    assert_int_equal(kept_events(&fx), 1);

    static const uint64_t from0[] = {1};
    expect_since(&fx, "h:e1", 0, 0, false, EP_A, true, from0, 1);
    expect_since(&fx, "h:e1", 0, EP_A, true, EP_A, true, from0, 1);
    expect_since(&fx, "h:e1", 1, EP_A, true, EP_A, true, NULL, 0);
    /* the same seq in another epoch (or none) is another position */
    expect_since(&fx, "h:e1", 1, EP_B, true, EP_A, false, NULL, 0);
    expect_since(&fx, "h:e1", 1, 0, false, EP_A, false, NULL, 0);

    /* the cluster's next seq in the same epoch: kept, contiguous */
    assert_int_equal(emit_seq_epoch(&fx, "h:e1", 2, EP_A), 2);
    assert_true(scope_epoch(&fx, "h:e1") == EP_A);
    assert_int_equal(kept_events(&fx), 2);
    static const uint64_t from0b[] = {1, 2};
    expect_since(&fx, "h:e1", 0, 0, false, EP_A, true, from0b, 2);
    static const uint64_t from1[] = {2};
    expect_since(&fx, "h:e1", 1, EP_A, true, EP_A, true, from1, 1);
    fx_close(&fx);
}

static void test_cluster_epoch_adoption_clears_kept_history(void **state)
{
    (void)state;
    fx_t fx;
    open_hist(&fx, 16);
    sc_sub_t *live = sub_plain(&fx, "h:ad");
    uint64_t local = scope_epoch(&fx, "h:ad");
    assert_true(local != 0);
    assert_true(sc_sub_epoch(live) == local);
    assert_int_equal(emit_seq(&fx, "h:ad", 0), 1);
    assert_int_equal(emit_seq(&fx, "h:ad", 0), 2);
    assert_int_equal(emit_seq(&fx, "h:ad", 0), 3);
    /* plain emits keep a local epoch */
    assert_true(scope_epoch(&fx, "h:ad") == local);
    assert_int_equal(kept_events(&fx), 3);
    static const uint64_t from1[] = {2, 3};
    expect_since(&fx, "h:ad", 1, local, true, local, true, from1, 2);

    /* the cluster's seq 4 (contiguous: no jump) in the cluster's epoch:
     * another order, so 1..3 are not in it */
    assert_int_equal(emit_seq_epoch(&fx, "h:ad", 4, EP_A), 4);
    uint64_t seq = 0;
    assert_true(sc_bus_scope_epoch(fx.bus, "h:ad", &seq) == EP_A);
    assert_int_equal(seq, 4);
    assert_int_equal(kept_events(&fx), 1); /* only 4 */
    static const uint64_t from3[] = {4};
    expect_since(&fx, "h:ad", 3, EP_A, true, EP_A, true, from3, 1);
    expect_since(&fx, "h:ad", 4, EP_A, true, EP_A, true, NULL, 0);
    /* 1..3 were numbered in the local order, not the cluster's */
    expect_since(&fx, "h:ad", 2, EP_A, true, EP_A, false, NULL, 0);
    expect_since(&fx, "h:ad", 1, EP_A, true, EP_A, false, NULL, 0);
    expect_since(&fx, "h:ad", 0, 0, false, EP_A, false, NULL, 0);
    /* and positions of the local order are gone */
    expect_since(&fx, "h:ad", 2, local, true, EP_A, false, NULL, 0);
    expect_since(&fx, "h:ad", 3, local, true, EP_A, false, NULL, 0);

    /* the live subscriber lost nothing it had queued */
    for (uint64_t q = 1; q <= 4; q++)
        assert_int_equal(take_seq(live), q);
    expect_empty(live);
    /* a live subscription moved back into the old order: not recovered */
    sc_since_t old = {2, local, true};
    bool rec = true;
    assert_int_equal(sc_sub_recover(live, &old, &rec, NULL), SC_OK);
    assert_false(rec);
    sc_since_t now = {3, EP_A, true};
    assert_int_equal(sc_sub_recover(live, &now, &rec, NULL), SC_OK);
    assert_true(rec);
    assert_int_equal(take_seq(live), 4);
    expect_empty(live);

    /* another cluster epoch (Redis lost the scope's order): again */
    assert_int_equal(emit_seq_epoch(&fx, "h:ad", 5, EP_A), 5);
    assert_int_equal(emit_seq_epoch(&fx, "h:ad", 6, EP_B), 6);
    assert_true(scope_epoch(&fx, "h:ad") == EP_B);
    assert_int_equal(kept_events(&fx), 1);
    expect_since(&fx, "h:ad", 4, EP_A, true, EP_B, false, NULL, 0);
    expect_since(&fx, "h:ad", 4, EP_B, true, EP_B, false, NULL, 0);
    static const uint64_t from5[] = {6};
    expect_since(&fx, "h:ad", 5, EP_B, true, EP_B, true, from5, 1);
    assert_int_equal(take_seq(live), 5);
    assert_int_equal(take_seq(live), 6);
    sc_sub_destroy(live);
    fx_close(&fx);
}

static void test_cluster_epoch_same_epoch_keeps_kept_history(void **state)
{
    (void)state;
    fx_t fx;
    open_hist(&fx, 16);
    assert_int_equal(emit_seq(&fx, "h:same", 0), 1);
    uint64_t local = scope_epoch(&fx, "h:same");
    assert_true(local != 0);
    assert_int_equal(emit_seq(&fx, "h:same", 0), 2);
    assert_int_equal(emit_seq(&fx, "h:same", 0), 3);
    assert_true(scope_epoch(&fx, "h:same") == local);

    /* the cluster took this node's epoch as its own (the broker proposed
     * it): the same order, nothing is lost */
    assert_int_equal(emit_seq_epoch(&fx, "h:same", 4, local), 4);
    assert_true(scope_epoch(&fx, "h:same") == local);
    assert_int_equal(kept_events(&fx), 4);
    static const uint64_t from1[] = {2, 3, 4};
    expect_since(&fx, "h:same", 1, local, true, local, true, from1, 3);
    static const uint64_t from0[] = {1, 2, 3, 4};
    expect_since(&fx, "h:same", 0, 0, false, local, true, from0, 4);

    /* the epoch is now the cluster's: an emit numbered here leaves it */
    assert_int_equal(emit_seq(&fx, "h:same", 0), 5);
    uint64_t fresh = scope_epoch(&fx, "h:same");
    assert_true(fresh != local);
    assert_true(fresh != 0);
    expect_since(&fx, "h:same", 4, local, true, fresh, false, NULL, 0);
    static const uint64_t from4[] = {5};
    expect_since(&fx, "h:same", 4, fresh, true, fresh, true, from4, 1);
    fx_close(&fx);
}

static void test_cluster_epoch_divergence_leaves_the_epoch(void **state)
{
    (void)state;
    fx_t fx;
    open_hist(&fx, 16);
    sc_sub_t *live = sub_plain(&fx, "h:dv");
    uint64_t local = sc_sub_epoch(live);
    assert_int_equal(emit_seq_epoch(&fx, "h:dv", 10, EP_A), 10);
    assert_true(scope_epoch(&fx, "h:dv") == EP_A);
    static const uint64_t from9[] = {10};
    expect_since(&fx, "h:dv", 9, EP_A, true, EP_A, true, from9, 1);
    expect_since(&fx, "h:dv", 10, EP_A, true, EP_A, true, NULL, 0);

    /* the cluster's seq 5 in its epoch, below the scope's 10: this node
     * numbers differently (it gets 11), so it may not claim the
     * cluster's epoch for it */
    assert_int_equal(emit_seq_epoch(&fx, "h:dv", 5, EP_A), 11);
    uint64_t seq = 0;
    uint64_t ep = sc_bus_scope_epoch(fx.bus, "h:dv", &seq);
    assert_int_equal(seq, 11);
    assert_true(ep != EP_A);
    assert_true(ep != 0);
    assert_true(ep != local); /* a fresh one */
    expect_since(&fx, "h:dv", 10, EP_A, true, ep, false, NULL, 0);
    expect_since(&fx, "h:dv", 9, EP_A, true, ep, false, NULL, 0);
    /* the events stay kept, under the new local epoch */
    static const uint64_t from10[] = {11};
    expect_since(&fx, "h:dv", 10, ep, true, ep, true, from10, 1);

    /* the same at an equal seq: 11 again gets 12, a local numbering */
    assert_int_equal(emit_seq_epoch(&fx, "h:dv", 11, EP_A), 12);
    assert_true(scope_epoch(&fx, "h:dv") == ep); /* local stays local */
    expect_since(&fx, "h:dv", 11, EP_A, true, ep, false, NULL, 0);
    static const uint64_t from10b[] = {11, 12};
    expect_since(&fx, "h:dv", 10, ep, true, ep, true, from10b, 2);

    /* the cluster catches up above the scope's seq: adopted again, and
     * (another order) the local history ends */
    assert_int_equal(emit_seq_epoch(&fx, "h:dv", 13, EP_A), 13);
    assert_true(scope_epoch(&fx, "h:dv") == EP_A);
    assert_int_equal(kept_events(&fx), 1);
    expect_since(&fx, "h:dv", 11, ep, true, EP_A, false, NULL, 0);
    expect_since(&fx, "h:dv", 11, EP_A, true, EP_A, false, NULL, 0);
    static const uint64_t from12[] = {13};
    expect_since(&fx, "h:dv", 12, EP_A, true, EP_A, true, from12, 1);

    assert_int_equal(take_seq(live), 10);
    assert_int_equal(take_seq(live), 11);
    assert_int_equal(take_seq(live), 12);
    assert_int_equal(take_seq(live), 13);
    expect_empty(live);
    assert_true(sc_sub_epoch(live) == local); /* fixed while subscribed */
    sc_sub_destroy(live);
    fx_close(&fx);
}

static void test_cluster_epoch_plain_emit_moves_to_a_local_epoch(void **state)
{
    (void)state;
    fx_t fx;
    open_hist(&fx, 16);
    sc_sub_t *live = sub_plain(&fx, "h:pl");
    uint64_t before = sc_sub_epoch(live);
    assert_int_equal(emit_seq_epoch(&fx, "h:pl", 3, EP_A), 3);
    assert_true(scope_epoch(&fx, "h:pl") == EP_A);

    /* numbered here (no seq, no epoch): a fresh local epoch */
    assert_int_equal(emit_seq(&fx, "h:pl", 0), 4);
    uint64_t l1 = scope_epoch(&fx, "h:pl");
    assert_true(l1 != EP_A);
    assert_true(l1 != 0);
    assert_true(l1 != before);
    /* a second plain emit keeps it */
    assert_int_equal(emit_seq(&fx, "h:pl", 0), 5);
    assert_true(scope_epoch(&fx, "h:pl") == l1);
    assert_int_equal(emit_seq(&fx, "h:pl", 0), 6);
    assert_true(scope_epoch(&fx, "h:pl") == l1);
    static const uint64_t from4[] = {5, 6};
    expect_since(&fx, "h:pl", 4, l1, true, l1, true, from4, 2);
    expect_since(&fx, "h:pl", 3, EP_A, true, l1, false, NULL, 0);

    /* a given seq without an epoch (taken as given) is the same */
    assert_int_equal(emit_seq_epoch(&fx, "h:pl", 7, EP_A), 7);
    assert_true(scope_epoch(&fx, "h:pl") == EP_A);
    assert_int_equal(emit_seq(&fx, "h:pl", 8), 8);
    uint64_t l2 = scope_epoch(&fx, "h:pl");
    assert_true(l2 != EP_A);
    assert_true(l2 != 0);
    assert_true(l2 != l1);
    assert_int_equal(emit_seq(&fx, "h:pl", 9), 9);
    assert_true(scope_epoch(&fx, "h:pl") == l2);
    static const uint64_t from8[] = {9};
    expect_since(&fx, "h:pl", 8, l2, true, l2, true, from8, 1);
    expect_since(&fx, "h:pl", 7, EP_A, true, l2, false, NULL, 0);

    for (uint64_t q = 3; q <= 9; q++)
        assert_int_equal(take_seq(live), q);
    expect_empty(live);
    sc_sub_destroy(live);
    fx_close(&fx);
}

static void test_cluster_epoch_of_subscriptions(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx, 16); /* no history: the epoch is named all the same */
    sc_sub_t *before = sub_plain(&fx, "ep");
    uint64_t local = sc_sub_epoch(before);
    assert_true(local != 0);
    assert_true(scope_epoch(&fx, "ep") == local);
    assert_int_equal(emit_seq_epoch(&fx, "ep", 1, EP_A), 1);
    assert_true(scope_epoch(&fx, "ep") == EP_A);
    /* fixed while subscribed: the one it started in */
    assert_true(sc_sub_epoch(before) == local);
    sc_sub_t *after = sub_plain(&fx, "ep");
    assert_true(sc_sub_epoch(after) == EP_A);
    assert_int_equal(emit_seq_epoch(&fx, "ep", 2, EP_A), 2);
    assert_int_equal(take_seq(before), 1);
    assert_int_equal(take_seq(before), 2);
    assert_int_equal(take_seq(after), 2);
    expect_empty(before);
    expect_empty(after);
    assert_true(sc_sub_epoch(before) == local);
    assert_true(sc_sub_epoch(after) == EP_A);
    sc_sub_destroy(before);
    sc_sub_destroy(after);
    /* the scope is gone with its subscribers (no history) */
    assert_true(scope_epoch(&fx, "ep") == 0);
    fx_close(&fx);
}

static void test_cluster_epoch_mix(void **state)
{
    (void)state;
    /* splitmix64: its first output for the state 0 (a known answer) */
    assert_true(sc_epoch_mix(0, 1) == 0xE220A8397B1DCDAFULL);
    /* deterministic */
    assert_true(sc_epoch_mix(42, 7) == sc_epoch_mix(42, 7));
    assert_true(sc_epoch_mix(UINT64_MAX, 3) == sc_epoch_mix(UINT64_MAX, 3));
    /* never 0, even where the mix itself gives 0 (seed + n * golden = 0) */
    assert_true(sc_epoch_mix(0, 0) != 0);
    assert_true(sc_epoch_mix(0 - 0x9E3779B97F4A7C15ULL, 1) != 0);
    assert_true(sc_epoch_mix(0 - 2 * 0x9E3779B97F4A7C15ULL, 2) != 0);
    /* different n (and seeds) give different epochs, never 0 */
    static const uint64_t seeds[] = {0, 1, 42, 0x9E3779B97F4A7C15ULL,
                                     UINT64_MAX};
    enum { N = 64 };
    for (size_t k = 0; k < sizeof seeds / sizeof seeds[0]; k++) {
        uint64_t v[N];
        for (uint64_t n = 0; n < N; n++) {
            v[n] = sc_epoch_mix(seeds[k], n + 1);
            assert_true(v[n] != 0);
            for (uint64_t m = 0; m < n; m++)
                if (v[m] == v[n])
                    fail_msg(
                        "seed %llx: n %llu and %llu give %016llx",
                        (unsigned long long)seeds[k], (unsigned long long)m + 1,
                        (unsigned long long)n + 1, (unsigned long long)v[n]);
        }
    }
    assert_true(sc_epoch_mix(1, 1) != sc_epoch_mix(2, 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cluster_seq_zero_takes_the_next),
        cmocka_unit_test(test_cluster_seq_above_current_is_taken_as_given),
        cmocka_unit_test(test_cluster_seq_at_or_below_current_gets_the_next),
        cmocka_unit_test(test_cluster_seq_scopes_are_independent),
        cmocka_unit_test(test_cluster_seq_without_subscribers_is_not_sequenced),
        cmocka_unit_test(test_cluster_seq_encoder_sees_the_final_seq),
        cmocka_unit_test(test_cluster_seq_jump_clears_kept_history),
        cmocka_unit_test(test_cluster_seq_jump_by_two_clears_kept_history),
        cmocka_unit_test(
            test_cluster_seq_jump_without_subscribers_clears_history),
        cmocka_unit_test(test_cluster_seq_first_emit_of_a_history_scope),
        cmocka_unit_test(test_cluster_seq_contiguous_keeps_history),
        cmocka_unit_test(
            test_cluster_seq_on_seq_reports_the_seq_before_delivery),
        cmocka_unit_test(test_cluster_epoch_first_emit_adopts_the_epoch),
        cmocka_unit_test(test_cluster_epoch_adoption_clears_kept_history),
        cmocka_unit_test(test_cluster_epoch_same_epoch_keeps_kept_history),
        cmocka_unit_test(test_cluster_epoch_divergence_leaves_the_epoch),
        cmocka_unit_test(test_cluster_epoch_plain_emit_moves_to_a_local_epoch),
        cmocka_unit_test(test_cluster_epoch_of_subscriptions),
        cmocka_unit_test(test_cluster_epoch_mix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
