/*
 * Unit tests for core/event.h: what a change event carries (paths as a
 * sorted set, payload present / absent / empty, origin, audience rules),
 * reference counting and the encoded frame.
 *
 * Events are only made by sc_bus_emit, so each test emits through a small
 * bus and looks at the event either as a subscriber receives it or, for
 * events nobody receives (an empty audience), from inside the encoder hook.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"

/* A bus, one owner and one subscriber of "doc:1" whose connection is
 * user "alice" (so audience-filtered events listing alice reach it). */
typedef struct fx {
    sc_bus_t *bus;
    sc_owner_t *owner;
    sc_sub_t *sub;
} fx_t;

static void fx_open_cfg(fx_t *fx, const sc_bus_config_t *cfg)
{
    memset(fx, 0, sizeof *fx);
    assert_int_equal(sc_bus_create(cfg, &fx->bus), SC_OK);
    assert_int_equal(sc_owner_create(NULL, NULL, &fx->owner), SC_OK);
    sc_conn_t alice;
    assert_int_equal(sc_conn_init(&alice, "s1", "alice", 1.0, NULL, 0), SC_OK);
    sc_sub_opts_t o;
    memset(&o, 0, sizeof o);
    o.conn = &alice;
    o.quiet = true;
    assert_int_equal(
        sc_bus_subscribe(fx->bus, "doc:1", fx->owner, &o, &fx->sub, NULL),
        SC_OK);
    sc_conn_deinit(&alice);
}

static void fx_open(fx_t *fx)
{
    fx_open_cfg(fx, NULL);
}

static void fx_close(fx_t *fx)
{
    sc_sub_destroy(fx->sub);
    sc_owner_destroy(fx->owner);
    sc_bus_destroy(fx->bus);
}

/* Emits `e` into doc:1 and returns the event as the subscriber got it
 * (a new reference). */
static sc_event_t *roundtrip(fx_t *fx, sc_emit_t *e)
{
    e->scope = "doc:1";
    assert_int_equal(sc_bus_emit(fx->bus, e, NULL), SC_OK);
    sc_event_t *ev = NULL;
    assert_int_equal(sc_sub_next(fx->sub, &ev, NULL), SC_OK);
    assert_non_null(ev);
    return ev;
}

static void test_event_paths_are_deduplicated_and_sorted(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx);
    const char *paths[] = {"title",  "body.text", "title",
                           "author", "body.text", "a"};
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.paths = paths;
    e.npaths = 6;
    sc_event_t *ev = roundtrip(&fx, &e);
    size_t n = 0;
    const char *const *p = sc_event_paths(ev, &n);
    assert_int_equal(n, 4);
    assert_string_equal(p[0], "a");
    assert_string_equal(p[1], "author");
    assert_string_equal(p[2], "body.text");
    assert_string_equal(p[3], "title");
    /* Copies, not the caller's strings. */
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < 6; k++)
            assert_ptr_not_equal(p[i], paths[k]);
    sc_event_unref(ev);
    fx_close(&fx);
}

static void test_event_without_paths_has_empty_path_set(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx);
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    sc_event_t *ev = roundtrip(&fx, &e);
    size_t n = 99;
    (void)sc_event_paths(ev, &n);
    assert_int_equal(n, 0);
    sc_event_unref(ev);
    fx_close(&fx);
}

static void test_event_payload_absent_is_null(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx);
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.payload = "ignored"; /* has_payload false: no payload */
    e.payload_len = 7;
    sc_event_t *ev = roundtrip(&fx, &e);
    size_t len = 99;
    assert_null(sc_event_payload(ev, &len));
    assert_int_equal(len, 0);
    sc_event_unref(ev);
    fx_close(&fx);
}

static void test_event_payload_empty_is_present_with_zero_length(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx);
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.has_payload = true; /* present, zero bytes: not the same as absent */
    e.payload = NULL;
    e.payload_len = 0;
    sc_event_t *ev = roundtrip(&fx, &e);
    size_t len = 99;
    assert_non_null(sc_event_payload(ev, &len));
    assert_int_equal(len, 0);
    sc_event_unref(ev);
    fx_close(&fx);
}

static void test_event_payload_is_copied(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx);
    char data[] = "{\"n\":null}\0tail"; /* bytes, NULs included */
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.has_payload = true;
    e.payload = data;
    e.payload_len = sizeof data - 1;
    sc_event_t *ev = roundtrip(&fx, &e);
    memset(data, 'x', sizeof data); /* the caller's buffer was borrowed */
    size_t len = 0;
    const void *p = sc_event_payload(ev, &len);
    assert_non_null(p);
    assert_ptr_not_equal(p, data);
    assert_int_equal(len, 15);
    assert_memory_equal(p, "{\"n\":null}\0tail", 15);
    sc_event_unref(ev);
    fx_close(&fx);
}

static void test_event_origin_present_and_absent(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx);
    char origin[] = "sess-1";
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.origin = origin;
    sc_event_t *with = roundtrip(&fx, &e);
    origin[0] = 'X';
    assert_string_equal(sc_event_origin(with), "sess-1");
    e.origin = NULL;
    sc_event_t *without = roundtrip(&fx, &e);
    assert_null(sc_event_origin(without));
    sc_event_unref(with);
    sc_event_unref(without);
    fx_close(&fx);
}

static void test_event_change_has_kind_scope_seq_and_no_conn(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx);
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    sc_event_t *a = roundtrip(&fx, &e);
    sc_event_t *b = roundtrip(&fx, &e);
    assert_int_equal(sc_event_kind(a), SC_EVENT_CHANGE);
    assert_string_equal(sc_event_scope(a), "doc:1");
    assert_int_equal(sc_event_seq(a), 1);
    assert_int_equal(sc_event_seq(b), 2);
    assert_null(sc_event_conn(a));
    sc_event_unref(a);
    sc_event_unref(b);
    fx_close(&fx);
}

static void test_event_audience_absent_allows_everyone(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx);
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    sc_event_t *ev = roundtrip(&fx, &e);
    size_t n = 99;
    assert_null(sc_event_audience(ev, &n));
    assert_int_equal(n, 0);
    assert_true(sc_event_audience_allows(ev, "alice"));
    assert_true(sc_event_audience_allows(ev, NULL));
    sc_event_unref(ev);
    fx_close(&fx);
}

static void test_event_audience_allows_only_listed_users(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx);
    const char *ids[] = {"bob", "alice"};
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.has_audience = true;
    e.audience = ids;
    e.naudience = 2;
    sc_event_t *ev = roundtrip(&fx, &e);
    assert_true(sc_event_audience_allows(ev, "alice"));
    assert_true(sc_event_audience_allows(ev, "bob"));
    assert_false(sc_event_audience_allows(ev, "carol"));
    assert_false(sc_event_audience_allows(ev, "alic"));
    assert_false(sc_event_audience_allows(ev, "alicee"));
    assert_false(sc_event_audience_allows(ev, ""));
    assert_false(sc_event_audience_allows(ev, NULL));
    sc_event_unref(ev);
    fx_close(&fx);
}

static void test_event_audience_is_sorted_and_deduplicated(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx);
    const char *ids[] = {"carol", "alice", "carol", "bob", "alice"};
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.has_audience = true;
    e.audience = ids;
    e.naudience = 5;
    sc_event_t *ev = roundtrip(&fx, &e);
    size_t n = 0;
    const char *const *a = sc_event_audience(ev, &n);
    assert_non_null(a);
    assert_int_equal(n, 3);
    assert_string_equal(a[0], "alice");
    assert_string_equal(a[1], "bob");
    assert_string_equal(a[2], "carol");
    sc_event_unref(ev);
    fx_close(&fx);
}

/* The encoder sees every sequenced change event, including ones nobody
 * receives: it records what the audience accessors say. */
typedef struct aud_seen {
    int calls;
    uint64_t seq;
    bool audience_non_null;
    size_t naudience;
    bool allows_alice;
    bool allows_null;
} aud_seen_t;

static int audience_enc(void *ud, sc_event_t *ev)
{
    aud_seen_t *a = ud;
    if (sc_event_kind(ev) != SC_EVENT_CHANGE)
        return 0;
    a->calls++;
    a->seq = sc_event_seq(ev);
    a->naudience = 99;
    a->audience_non_null = sc_event_audience(ev, &a->naudience) != NULL;
    a->allows_alice = sc_event_audience_allows(ev, "alice");
    a->allows_null = sc_event_audience_allows(ev, NULL);
    return 0;
}

static void test_event_empty_audience_allows_nobody(void **state)
{
    (void)state;
    aud_seen_t seen;
    memset(&seen, 0, sizeof seen);
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    cfg.encode = audience_enc;
    cfg.encode_ud = &seen;
    fx_t fx;
    fx_open_cfg(&fx, &cfg);
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = "doc:1";
    e.has_audience = true; /* [] = nobody, unlike no audience */
    e.audience = NULL;
    e.naudience = 0;
    uint64_t seq = 0;
    assert_int_equal(sc_bus_emit(fx.bus, &e, &seq), SC_OK);
    assert_int_equal(seq, 1);
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.seq, 1);
    assert_true(seen.audience_non_null); /* not "everyone" */
    assert_int_equal(seen.naudience, 0);
    assert_false(seen.allows_alice);
    assert_false(seen.allows_null);
    sc_event_t *ev = NULL;
    assert_int_equal(sc_sub_next(fx.sub, &ev, NULL), SC_EAGAIN);
    fx_close(&fx);
}

static void test_event_ref_keeps_event_alive_after_bus_destroyed(void **state)
{
    (void)state;
    fx_t fx;
    fx_open(&fx);
    const char *paths[] = {"p"};
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.paths = paths;
    e.npaths = 1;
    e.origin = "o";
    e.has_payload = true;
    e.payload = "xyz";
    e.payload_len = 3;
    sc_event_t *ev = roundtrip(&fx, &e);
    assert_ptr_equal(sc_event_ref(ev), ev);
    fx_close(&fx); /* subscription, owner and bus are gone */
    assert_string_equal(sc_event_scope(ev), "doc:1");
    size_t n = 0;
    assert_string_equal(sc_event_paths(ev, &n)[0], "p");
    assert_string_equal(sc_event_origin(ev), "o");
    size_t len = 0;
    assert_memory_equal(sc_event_payload(ev, &len), "xyz", 3);
    sc_event_unref(ev);
    assert_int_equal(sc_event_seq(ev), 1); /* one reference still held */
    sc_event_unref(ev);
}

static void test_event_ref_and_unref_accept_null(void **state)
{
    (void)state;
    assert_null(sc_event_ref(NULL));
    sc_event_unref(NULL);
}

/* Frames with head room and a counting free function. */
typedef struct frame_rec {
    int encoded;
    int freed;
} frame_rec_t;

static frame_rec_t *g_frames; /* for counting_free, which has no ud */

static void counting_free(void *p)
{
    g_frames->freed++;
    free(p);
}

#define HEADROOM 10

static int headroom_enc(void *ud, sc_event_t *ev)
{
    frame_rec_t *r = ud;
    char *data = malloc(HEADROOM + 5);
    if (data == NULL)
        return -1;
    memset(data, 0, HEADROOM);
    memcpy(data + HEADROOM, "frame", 5);
    sc_event_set_frame(ev, data, data + HEADROOM, 5, counting_free);
    r->encoded++;
    return 0;
}

static void
test_event_frame_free_fn_runs_once_when_last_reference_dropped(void **state)
{
    (void)state;
    frame_rec_t rec = {0, 0};
    g_frames = &rec;
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    cfg.encode = headroom_enc;
    cfg.encode_ud = &rec;
    fx_t fx;
    fx_open_cfg(&fx, &cfg);
    sc_sub_t *second = NULL;
    assert_int_equal(
        sc_bus_subscribe(fx.bus, "doc:1", fx.owner, NULL, &second, NULL),
        SC_OK);
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = "doc:1";
    assert_int_equal(sc_bus_emit(fx.bus, &e, NULL), SC_OK);
    assert_int_equal(sc_bus_emit(fx.bus, &e, NULL), SC_OK);
    assert_int_equal(rec.encoded, 2);
    sc_event_t *a = NULL, *b = NULL;
    assert_int_equal(sc_sub_next(fx.sub, &a, NULL), SC_OK);
    assert_int_equal(sc_sub_next(second, &b, NULL), SC_OK);
    assert_ptr_equal(a, b); /* one event shared by both queues */
    size_t len = 0;
    const char *f = sc_event_frame(a, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(f, "frame", 5);
    sc_event_unref(a);
    assert_int_equal(rec.freed, 0); /* `b` and nothing else still holds it */
    sc_event_unref(b);
    assert_int_equal(rec.freed, 1);
    /* The second event is still queued twice: destroying the subscriptions
     * releases it, exactly once. */
    sc_sub_destroy(second);
    assert_int_equal(rec.freed, 1);
    fx_close(&fx);
    assert_int_equal(rec.freed, 2);
    g_frames = NULL;
}

/* An encoder that keeps a reference to the event it encoded (a server
 * retaining recent events for replay would). The frame's free function
 * tells when the event is really freed. */
typedef struct keep_rec {
    sc_event_t *kept;
    int freed;
} keep_rec_t;

static keep_rec_t *g_keep; /* for keep_free, which has no ud */

static void keep_free(void *p)
{
    g_keep->freed++;
    free(p);
}

static int keeping_enc(void *ud, sc_event_t *ev)
{
    keep_rec_t *k = ud;
    char *data = malloc(4);
    if (data == NULL)
        return -1;
    memcpy(data, "keep", 4);
    sc_event_set_frame(ev, data, data, 4, keep_free);
    if (sc_event_kind(ev) == SC_EVENT_CHANGE && k->kept == NULL)
        k->kept = sc_event_ref(ev);
    return 0;
}

static void test_event_reference_taken_in_encoder_outlives_emit(void **state)
{
    (void)state;
    keep_rec_t keep = {NULL, 0};
    g_keep = &keep;
    sc_bus_config_t cfg;
    sc_bus_config_default(&cfg);
    cfg.encode = keeping_enc;
    cfg.encode_ud = &keep;
    fx_t fx;
    fx_open_cfg(&fx, &cfg);
    sc_emit_t e;
    memset(&e, 0, sizeof e);
    e.scope = "doc:1";
    e.has_audience = true; /* nobody receives it: only `kept` holds it */
    int rc = sc_bus_emit(fx.bus, &e, NULL);
    /* The encoder's reference must keep the event (and its frame) alive.
     * If the bus freed it anyway, `kept` dangles: do not touch it, clean
     * up and fail. */
    int freed_by_emit = keep.freed;
    uint64_t seq = 0;
    if (keep.kept != NULL && freed_by_emit == 0) {
        seq = sc_event_seq(keep.kept);
        sc_event_unref(keep.kept);
    }
    fx_close(&fx);
    g_keep = NULL;
    assert_int_equal(rc, SC_OK);
    assert_non_null(keep.kept);
    assert_int_equal(freed_by_emit, 0);
    assert_int_equal(seq, 1);
    assert_int_equal(keep.freed, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_paths_are_deduplicated_and_sorted),
        cmocka_unit_test(test_event_without_paths_has_empty_path_set),
        cmocka_unit_test(test_event_payload_absent_is_null),
        cmocka_unit_test(test_event_payload_empty_is_present_with_zero_length),
        cmocka_unit_test(test_event_payload_is_copied),
        cmocka_unit_test(test_event_origin_present_and_absent),
        cmocka_unit_test(test_event_change_has_kind_scope_seq_and_no_conn),
        cmocka_unit_test(test_event_audience_absent_allows_everyone),
        cmocka_unit_test(test_event_audience_allows_only_listed_users),
        cmocka_unit_test(test_event_audience_is_sorted_and_deduplicated),
        cmocka_unit_test(test_event_empty_audience_allows_nobody),
        cmocka_unit_test(test_event_ref_keeps_event_alive_after_bus_destroyed),
        cmocka_unit_test(test_event_ref_and_unref_accept_null),
        cmocka_unit_test(
            test_event_frame_free_fn_runs_once_when_last_reference_dropped),
        cmocka_unit_test(test_event_reference_taken_in_encoder_outlives_emit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
