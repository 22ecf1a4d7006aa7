/*
 * Unit tests of protocol/wire.c's event encoder, through a real bus with
 * sc_proto_encode_event installed: change, join, leave and update frames, their
 * length forms and head room. Each frame's JSON is compared exactly and
 * also parsed back with json-c.
 */
#include "bus.h"
#include "wire.h"

#include <json-c/json.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define HEADROOM 16

typedef struct fixture {
    sc_proto_event_cfg_t cfg;
    sc_bus_t *bus;
    sc_owner_t *owner;
    sc_sub_t *sub; /* subscribed to "doc:1" with a conn */
    sc_conn_t conn;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    sc_bus_config_t cfg;
    sc_sub_opts_t opts;

    f->cfg.headroom = HEADROOM;
    sc_bus_config_default(&cfg);
    cfg.encode = sc_proto_encode_event;
    cfg.encode_ud = &f->cfg;
    assert_int_equal(sc_bus_create(&cfg, &f->bus), SC_OK);
    assert_int_equal(sc_owner_create(NULL, NULL, &f->owner), SC_OK);
    assert_int_equal(sc_conn_init(&f->conn, "s-a", "ana", 1.5, NULL, 0), SC_OK);
    memset(&opts, 0, sizeof(opts));
    opts.conn = &f->conn;
    assert_int_equal(
        sc_bus_subscribe(f->bus, "doc:1", f->owner, &opts, &f->sub, NULL),
        SC_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    sc_sub_destroy(f->sub);
    sc_owner_destroy(f->owner);
    sc_bus_destroy(f->bus);
    sc_conn_deinit(&f->conn);
    free(f);
    return 0;
}

/* Takes the next event of f->sub and returns its frame's JSON as a
 * malloc'd string, after checking the frame header and the head room. */
static char *next_json(fixture_t *f)
{
    sc_event_t *ev = NULL;
    const uint8_t *fr;
    size_t len, hlen, n, i;
    uint8_t h[SC_WS_MAX_HEADER];
    char *s;

    assert_int_equal(sc_sub_next(f->sub, &ev, NULL), SC_OK);
    fr = sc_event_frame(ev, &len);
    assert_non_null(fr);
    assert_true(len >= 2);
    assert_int_equal(fr[0], 0x81);
    n = fr[1] < 126 ? fr[1] : len - (fr[1] == 126 ? 4 : 10);
    hlen = sc_ws_frame_header(h, n);
    assert_int_equal(hlen + n, len);
    assert_memory_equal(fr, h, hlen);
    /* The head room in front of the frame is ours (ASan checks it). */
    for (i = 1; i <= HEADROOM; i++)
        (void)((const volatile uint8_t *)fr)[-(ptrdiff_t)i];
    s = malloc(n + 1);
    memcpy(s, fr + hlen, n);
    s[n] = '\0';
    sc_event_unref(ev);
    return s;
}

static json_object *parse(const char *s)
{
    json_object *o = json_tokener_parse(s);

    assert_non_null(o);
    return o;
}

static const char *member_str(json_object *o, const char *key)
{
    json_object *v = NULL;

    assert_true(json_object_object_get_ex(o, key, &v));
    return json_object_get_string(v);
}

static void emit(fixture_t *f, const char *const *paths, size_t npaths,
                 const char *origin, const char *payload)
{
    sc_emit_t e;

    memset(&e, 0, sizeof(e));
    e.scope = "doc:1";
    e.paths = paths;
    e.npaths = npaths;
    e.origin = origin;
    e.payload = payload;
    e.payload_len = payload != NULL ? strlen(payload) : 0;
    e.has_payload = payload != NULL;
    assert_int_equal(sc_bus_emit(f->bus, &e, NULL), SC_OK);
}

static void test_change_event_frame(void **state)
{
    fixture_t *f = *state;
    const char *paths[] = {"b", "a\"x"};
    char *s;
    json_object *o, *v;

    emit(f, paths, 2, "s-z", "{\"x\":[1,\"y\"]}");
    s = next_json(f);
    assert_string_equal(s, "{\"op\":\"event\",\"scope\":\"doc:1\",\"seq\":1,"
                           "\"paths\":[\"a\\\"x\",\"b\"],\"origin\":\"s-z\","
                           "\"data\":{\"x\":[1,\"y\"]}}");
    o = parse(s);
    assert_string_equal(member_str(o, "op"), "event");
    assert_true(json_object_object_get_ex(o, "seq", &v));
    assert_int_equal(json_object_get_int64(v), 1);
    assert_true(json_object_object_get_ex(o, "paths", &v));
    assert_int_equal(json_object_array_length(v), 2);
    assert_string_equal(json_object_get_string(json_object_array_get_idx(v, 0)),
                        "a\"x");
    json_object_put(o);
    free(s);
}

static void test_change_event_without_data_origin_or_paths(void **state)
{
    fixture_t *f = *state;
    char *s;

    emit(f, NULL, 0, NULL, NULL);
    s = next_json(f);
    assert_string_equal(s, "{\"op\":\"event\",\"scope\":\"doc:1\",\"seq\":1,"
                           "\"paths\":[],\"origin\":null}");
    json_object_put(parse(s));
    free(s);

    emit(f, NULL, 0, NULL, "null"); /* data: null is a value */
    s = next_json(f);
    assert_string_equal(s, "{\"op\":\"event\",\"scope\":\"doc:1\",\"seq\":2,"
                           "\"paths\":[],\"origin\":null,\"data\":null}");
    free(s);
}

/* Frames payloads that need each length form and parses them back. */
static void test_change_event_length_forms(void **state)
{
    fixture_t *f = *state;
    size_t sizes[] = {10, 200, 70000}, i, n;
    json_object *o, *v;
    char *payload, *s;

    for (i = 0; i < 3; i++) {
        n = sizes[i];
        payload = malloc(n + 3);
        payload[0] = '"';
        memset(payload + 1, 'q', n);
        payload[n + 1] = '"';
        payload[n + 2] = '\0';
        emit(f, NULL, 0, NULL, payload);
        s = next_json(f);
        o = parse(s);
        assert_true(json_object_object_get_ex(o, "data", &v));
        assert_int_equal(json_object_get_string_len(v), n);
        json_object_put(o);
        free(s);
        free(payload);
    }
}

static void test_join_and_leave_frames(void **state)
{
    fixture_t *f = *state;
    static const char meta[] = "{\"name\":\"Bo\"}";
    sc_conn_t b1, b2;
    sc_sub_opts_t opts;
    sc_sub_t *s1, *s2;
    json_object *o, *v;
    char *s;

    assert_int_equal(
        sc_conn_init(&b1, "s-b1", "bo", 1732530000.123, meta, sizeof(meta) - 1),
        SC_OK);
    assert_int_equal(sc_conn_init(&b2, "s-b2", "bo", 2.0, NULL, 0), SC_OK);
    memset(&opts, 0, sizeof(opts));
    opts.conn = &b1;
    assert_int_equal(
        sc_bus_subscribe(f->bus, "doc:1", f->owner, &opts, &s1, NULL), SC_OK);
    opts.conn = &b2;
    assert_int_equal(
        sc_bus_subscribe(f->bus, "doc:1", f->owner, &opts, &s2, NULL), SC_OK);
    s = next_json(f);
    assert_string_equal(s, "{\"op\":\"join\",\"scope\":\"doc:1\",\"conn\":"
                           "{\"session\":\"s-b1\",\"user\":\"bo\","
                           "\"at\":1732530000.123,\"meta\":{\"name\":\"Bo\"}},"
                           "\"first\":true}");
    o = parse(s);
    assert_true(json_object_object_get_ex(o, "conn", &v));
    assert_string_equal(member_str(v, "session"), "s-b1");
    json_object_put(o);
    free(s);
    s = next_json(f);
    assert_string_equal(s, "{\"op\":\"join\",\"scope\":\"doc:1\",\"conn\":"
                           "{\"session\":\"s-b2\",\"user\":\"bo\","
                           "\"at\":2.000,\"meta\":{}},\"first\":false}");
    free(s);

    sc_sub_destroy(s2);
    s = next_json(f);
    assert_string_equal(s, "{\"op\":\"leave\",\"scope\":\"doc:1\",\"conn\":"
                           "{\"session\":\"s-b2\",\"user\":\"bo\","
                           "\"at\":2.000,\"meta\":{}},\"last\":false}");
    free(s);
    sc_sub_destroy(s1);
    s = next_json(f);
    json_object_put(parse(s));
    assert_non_null(strstr(s, "\"op\":\"leave\""));
    assert_non_null(strstr(s, "\"last\":true}"));
    free(s);
    /* the other subscriptions' queues (s1 got b2's join) are gone too */
    sc_conn_deinit(&b1);
    sc_conn_deinit(&b2);
}

/* An update: the conn with its new meta, no first/last. */
static void test_update_frame(void **state)
{
    fixture_t *f = *state;
    static const char meta[] = "{\"cursor\":[3,4],\"name\":\"B\\u00f6\"}";
    sc_conn_t b;
    sc_sub_opts_t opts;
    sc_sub_t *sb;
    json_object *o, *v;
    char *s;

    assert_int_equal(sc_conn_init(&b, "s-b", "bo", 2.5, "{}", 2), SC_OK);
    memset(&opts, 0, sizeof(opts));
    opts.conn = &b;
    assert_int_equal(
        sc_bus_subscribe(f->bus, "doc:1", f->owner, &opts, &sb, NULL), SC_OK);
    free(next_json(f)); /* its join */
    assert_int_equal(sc_bus_presence_update(f->bus, sb, meta, sizeof(meta) - 1),
                     SC_OK);
    s = next_json(f);
    assert_string_equal(s, "{\"op\":\"update\",\"scope\":\"doc:1\",\"conn\":"
                           "{\"session\":\"s-b\",\"user\":\"bo\","
                           "\"at\":2.500,\"meta\":{\"cursor\":[3,4],"
                           "\"name\":\"B\\u00f6\"}}}");
    o = parse(s);
    assert_true(json_object_object_get_ex(o, "conn", &v));
    assert_string_equal(member_str(v, "session"), "s-b");
    assert_false(json_object_object_get_ex(o, "first", NULL));
    assert_false(json_object_object_get_ex(o, "last", NULL));
    json_object_put(o);
    free(s);
    /* no meta: {} on the wire, like a join without one */
    assert_int_equal(sc_bus_presence_update(f->bus, sb, NULL, 0), SC_OK);
    s = next_json(f);
    assert_string_equal(s, "{\"op\":\"update\",\"scope\":\"doc:1\",\"conn\":"
                           "{\"session\":\"s-b\",\"user\":\"bo\","
                           "\"at\":2.500,\"meta\":{}}}");
    free(s);
    sc_sub_destroy(sb);
    s = next_json(f); /* the leave carries the latest meta */
    assert_string_equal(s, "{\"op\":\"leave\",\"scope\":\"doc:1\",\"conn\":"
                           "{\"session\":\"s-b\",\"user\":\"bo\","
                           "\"at\":2.500,\"meta\":{}},\"last\":true}");
    free(s);
    sc_conn_deinit(&b);
}

/* Without a config, frames have no head room requirement. */
static void test_encoder_without_config(void **state)
{
    static const char want[] = "{\"op\":\"event\",\"scope\":\"s\",\"seq\":1,"
                               "\"paths\":[],\"origin\":null}";
    sc_bus_config_t cfg;
    sc_bus_t *bus;
    sc_owner_t *owner;
    sc_sub_t *sub;
    sc_event_t *ev;
    sc_emit_t e;
    const uint8_t *fr;
    size_t len;

    sc_bus_config_default(&cfg);
    cfg.encode = sc_proto_encode_event;
    assert_int_equal(sc_bus_create(&cfg, &bus), SC_OK);
    assert_int_equal(sc_owner_create(NULL, NULL, &owner), SC_OK);
    assert_int_equal(sc_bus_subscribe(bus, "s", owner, NULL, &sub, NULL),
                     SC_OK);
    memset(&e, 0, sizeof(e));
    e.scope = "s";
    assert_int_equal(sc_bus_emit(bus, &e, NULL), SC_OK);
    assert_int_equal(sc_sub_next(sub, &ev, NULL), SC_OK);
    fr = sc_event_frame(ev, &len);
    assert_int_equal(len, 2 + sizeof(want) - 1);
    assert_int_equal(fr[0], 0x81);
    assert_int_equal(fr[1], sizeof(want) - 1);
    assert_memory_equal(fr + 2, want, sizeof(want) - 1);
    sc_event_unref(ev);
    sc_sub_destroy(sub);
    sc_owner_destroy(owner);
    sc_bus_destroy(bus);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_change_event_frame, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_change_event_without_data_origin_or_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_event_length_forms, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_join_and_leave_frames, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_update_frame, setup, teardown),
        cmocka_unit_test(test_encoder_without_config),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
