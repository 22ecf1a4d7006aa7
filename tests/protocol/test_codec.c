/*
 * Unit tests of protocol/codec.c and protocol/scope.c: decoding client
 * WebSocket requests, every op, every invalid field with its exact message,
 * id echo, null-means-absent, strict JSON and the scope rule.
 */
#include "codec.h"
#include "scope.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Decodes `len` bytes that must succeed. */
static void decode_n(const char *msg, size_t len, sc_request_t *req)
{
    sc_proto_err_t err;
    int rc = sc_proto_decode(msg, len, req, &err);

    if (rc != SC_OK)
        fail_msg("decode of %.*s failed: %s", (int)len, msg, err.message);
    assert_null(err.code);
    assert_null(err.id_json);
}

static void decode_ok(const char *msg, sc_request_t *req)
{
    decode_n(msg, strlen(msg), req);
}

/* Decodes `len` bytes that must fail with `message` and `id` (NULL: no
 * id in the error). */
static void expect_err_n(const char *msg, size_t len, const char *message,
                         const char *id)
{
    sc_request_t req;
    sc_proto_err_t err;
    sc_request_t zero;
    int rc = sc_proto_decode(msg, len, &req, &err);

    memset(&zero, 0, sizeof(zero));
    if (rc != SC_EINVAL)
        fail_msg("decode of %.*s: rc %d, expected SC_EINVAL", (int)len, msg,
                 rc);
    assert_string_equal(err.code, "bad_request");
    assert_string_equal(err.message, message);
    if (id == NULL)
        assert_null(err.id_json);
    else
        assert_string_equal(err.id_json, id);
    assert_memory_equal(&req, &zero, sizeof(req));
    sc_proto_err_deinit(&err);
    assert_null(err.id_json);
}

static void expect_err(const char *msg, const char *message, const char *id)
{
    expect_err_n(msg, strlen(msg), message, id);
}

/* ---- ops --------------------------------------------------------------- */

static void test_subscribe_with_scope_only_has_defaults(void **state)
{
    sc_request_t req;

    decode_ok("{\"op\":\"subscribe\",\"scope\":\"doc:1\"}", &req);
    assert_int_equal(req.op, SC_OP_SUBSCRIBE);
    assert_string_equal(req.scope, "doc:1");
    assert_null(req.id_json);
    assert_null(req.meta_json);
    assert_false(req.echo);
    sc_request_deinit(&req);
}

static void test_subscribe_reads_id_meta_and_echo(void **state)
{
    sc_request_t req;

    decode_ok("{\"id\":7,\"op\":\"subscribe\",\"scope\":\"doc:1\","
              "\"meta\":{\"name\":\"ana\",\"x\":[1,2.50,null],\"u\":\"a/b\"},"
              "\"echo\":true}",
              &req);
    assert_string_equal(req.id_json, "7");
    assert_string_equal(req.meta_json,
                        "{\"name\":\"ana\",\"x\":[1,2.50,null],\"u\":\"a/b\"}");
    assert_true(req.echo);
    sc_request_deinit(&req);
}

static void test_subscribe_null_meta_and_echo_mean_absent(void **state)
{
    sc_request_t req;

    decode_ok("{\"op\":\"subscribe\",\"scope\":\"s\",\"meta\":null,"
              "\"echo\":null,\"id\":null}",
              &req);
    assert_null(req.meta_json);
    assert_false(req.echo);
    assert_null(req.id_json);
    sc_request_deinit(&req);
}

static void test_subscribe_rejects_bad_meta_and_echo(void **state)
{
    expect_err("{\"id\":1,\"op\":\"subscribe\",\"scope\":\"s\",\"meta\":[]}",
               "meta: must be an object", "1");
    expect_err("{\"id\":1,\"op\":\"subscribe\",\"scope\":\"s\",\"meta\":\"x\"}",
               "meta: must be an object", "1");
    expect_err("{\"op\":\"subscribe\",\"scope\":\"s\",\"echo\":\"yes\"}",
               "echo: must be a boolean", NULL);
    expect_err("{\"id\":\"a\",\"op\":\"subscribe\",\"scope\":\"s\",\"echo\":1}",
               "echo: must be a boolean", "\"a\"");
}

static void test_unsubscribe_presence_and_ping_decode(void **state)
{
    sc_request_t req;

    decode_ok("{\"op\":\"unsubscribe\",\"scope\":\"a\",\"id\":\"u1\"}", &req);
    assert_int_equal(req.op, SC_OP_UNSUBSCRIBE);
    assert_string_equal(req.scope, "a");
    assert_string_equal(req.id_json, "\"u1\"");
    sc_request_deinit(&req);

    decode_ok("{\"op\":\"presence\",\"scope\":\"b\"}", &req);
    assert_int_equal(req.op, SC_OP_PRESENCE);
    assert_string_equal(req.scope, "b");
    sc_request_deinit(&req);

    decode_ok("{\"op\":\"ping\",\"id\":3}", &req);
    assert_int_equal(req.op, SC_OP_PING);
    assert_null(req.scope);
    assert_string_equal(req.id_json, "3");
    sc_request_deinit(&req);
}

static void test_refresh_reads_a_token(void **state)
{
    sc_request_t req;

    (void)state;
    decode_ok("{\"op\":\"refresh\",\"id\":4,\"token\":\"a.b.c\"}", &req);
    assert_int_equal(req.op, SC_OP_REFRESH);
    assert_string_equal(req.token, "a.b.c");
    assert_string_equal(req.id_json, "4");
    assert_null(req.scope);
    sc_request_deinit(&req);
    expect_err("{\"op\":\"refresh\",\"id\":1}", "token: required", "1");
    expect_err("{\"op\":\"refresh\",\"token\":\"\"}",
               "token: must be a non-empty string", NULL);
    expect_err("{\"op\":\"refresh\",\"token\":5}",
               "token: must be a non-empty string", NULL);
    expect_err("{\"op\":\"refresh\",\"token\":\"a\\u0000b\"}",
               "token: must not contain NUL characters", NULL);
}

static void test_presence_update_reads_scope_and_meta(void **state)
{
    sc_request_t req;

    (void)state;
    decode_ok("{\"op\":\"presence_update\",\"id\":5,\"scope\":\"room:1\","
              "\"meta\":{\"typing\":true,\"cursor\":[1,2.50]}}",
              &req);
    assert_int_equal(req.op, SC_OP_PRESENCE_UPDATE);
    assert_string_equal(req.scope, "room:1");
    assert_string_equal(req.id_json, "5");
    assert_string_equal(req.meta_json, "{\"typing\":true,\"cursor\":[1,2.50]}");
    assert_false(req.echo);
    assert_false(req.no_presence);
    sc_request_deinit(&req);
    /* an empty object clears the meta; subscribe's fields are ignored */
    decode_ok("{\"op\":\"presence_update\",\"scope\":\"r\",\"meta\":{},"
              "\"echo\":\"x\",\"presence\":5}",
              &req);
    assert_string_equal(req.meta_json, "{}");
    assert_false(req.echo);
    sc_request_deinit(&req);
    assert_string_equal(sc_proto_op_name(SC_OP_PRESENCE_UPDATE),
                        "presence_update");
}

static void test_presence_update_rejects_missing_or_bad_meta(void **state)
{
    (void)state;
    expect_err("{\"op\":\"presence_update\",\"id\":1,\"meta\":{}}",
               "scope: required", "1");
    expect_err("{\"op\":\"presence_update\",\"id\":1,\"scope\":\"a b\","
               "\"meta\":{}}",
               "scope: must be 1-200 printable ASCII characters without "
               "spaces",
               "1");
    expect_err("{\"op\":\"presence_update\",\"id\":1,\"scope\":\"s\"}",
               "meta: required", "1");
    expect_err("{\"op\":\"presence_update\",\"scope\":\"s\",\"meta\":null}",
               "meta: required", NULL);
    expect_err("{\"op\":\"presence_update\",\"id\":\"x\",\"scope\":\"s\","
               "\"meta\":[]}",
               "meta: must be an object", "\"x\"");
    expect_err("{\"op\":\"presence_update\",\"scope\":\"s\",\"meta\":\"{}\"}",
               "meta: must be an object", NULL);
    expect_err("{\"op\":\"presence_update\",\"scope\":\"s\",\"meta\":1}",
               "meta: must be an object", NULL);
    expect_err(
        "{\"op\":\"presence_update\",\"scope\":\"s\",\"meta\":{\"a\":NaN}}",
        "invalid JSON", NULL);
    /* the op's name is matched exactly */
    expect_err("{\"op\":\"presence_updat\",\"scope\":\"s\",\"meta\":{}}",
               "op: unknown op 'presence_updat'", NULL);
    expect_err("{\"op\":\"Presence_update\",\"scope\":\"s\",\"meta\":{}}",
               "op: unknown op 'Presence_update'", NULL);
}

static void test_scope_is_required_except_for_ping(void **state)
{
    sc_request_t req;

    expect_err("{\"op\":\"subscribe\"}", "scope: required", NULL);
    expect_err("{\"op\":\"unsubscribe\",\"id\":2}", "scope: required", "2");
    expect_err("{\"op\":\"emit\",\"scope\":null}", "scope: required", NULL);
    expect_err("{\"op\":\"presence\",\"scope\":5}", "scope: must be a string",
               NULL);
    /* ping ignores a scope, even an invalid one */
    decode_ok("{\"op\":\"ping\",\"scope\":\"\"}", &req);
    assert_null(req.scope);
    sc_request_deinit(&req);
}

static void test_emit_reads_paths_data_and_audience(void **state)
{
    sc_request_t req;

    decode_ok("{\"op\":\"emit\",\"id\":9,\"scope\":\"doc:1\","
              "\"paths\":[\"a.b\",\"c\"],\"data\":{\"v\":[true,false],"
              "\"s\":\"\\u00e9\\n\"},\"audience\":[\"ana\",\"bob\"]}",
              &req);
    assert_int_equal(req.op, SC_OP_EMIT);
    assert_string_equal(req.id_json, "9");
    assert_int_equal(req.npaths, 2);
    assert_string_equal(req.paths[0], "a.b");
    assert_string_equal(req.paths[1], "c");
    assert_true(req.has_data);
    assert_string_equal(req.data_json,
                        "{\"v\":[true,false],\"s\":\"\xc3\xa9\\n\"}");
    assert_true(req.has_audience);
    assert_int_equal(req.naudience, 2);
    assert_string_equal(req.audience[0], "ana");
    assert_string_equal(req.audience[1], "bob");
    sc_request_deinit(&req);
}

static void test_emit_data_null_is_a_value_and_absent_is_none(void **state)
{
    sc_request_t req;

    decode_ok("{\"op\":\"emit\",\"scope\":\"s\",\"data\":null}", &req);
    assert_true(req.has_data);
    assert_string_equal(req.data_json, "null");
    sc_request_deinit(&req);

    decode_ok("{\"op\":\"emit\",\"scope\":\"s\"}", &req);
    assert_false(req.has_data);
    assert_null(req.data_json);
    assert_false(req.has_audience);
    assert_int_equal(req.npaths, 0);
    assert_null(req.paths);
    sc_request_deinit(&req);

    decode_ok("{\"op\":\"emit\",\"scope\":\"s\",\"data\":\"x\"}", &req);
    assert_string_equal(req.data_json, "\"x\"");
    sc_request_deinit(&req);

    decode_ok("{\"op\":\"emit\",\"scope\":\"s\",\"data\":-12.5e3}", &req);
    assert_string_equal(req.data_json, "-12.5e3");
    sc_request_deinit(&req);
}

static void test_emit_null_paths_and_audience_mean_absent(void **state)
{
    sc_request_t req;

    decode_ok("{\"op\":\"emit\",\"scope\":\"s\",\"paths\":null,"
              "\"audience\":null}",
              &req);
    assert_int_equal(req.npaths, 0);
    assert_false(req.has_audience);
    sc_request_deinit(&req);

    decode_ok("{\"op\":\"emit\",\"scope\":\"s\",\"paths\":[],"
              "\"audience\":[]}",
              &req);
    assert_int_equal(req.npaths, 0);
    assert_true(req.has_audience);
    assert_int_equal(req.naudience, 0);
    sc_request_deinit(&req);
}

static void test_emit_rejects_bad_paths_and_audience(void **state)
{
    const char *paths = "paths: must be an array of strings";
    const char *aud = "audience: must be an array of strings";

    expect_err("{\"id\":4,\"op\":\"emit\",\"scope\":\"s\",\"paths\":\"a\"}",
               paths, "4");
    expect_err("{\"op\":\"emit\",\"scope\":\"s\",\"paths\":[1]}", paths, NULL);
    expect_err("{\"op\":\"emit\",\"scope\":\"s\",\"paths\":[\"a\",null]}",
               paths, NULL);
    expect_err("{\"op\":\"emit\",\"scope\":\"s\",\"paths\":{\"a\":1}}", paths,
               NULL);
    expect_err("{\"op\":\"emit\",\"scope\":\"s\",\"paths\":[\"a\\u0000b\"]}",
               "paths: must not contain NUL characters", NULL);
    expect_err("{\"id\":4,\"op\":\"emit\",\"scope\":\"s\",\"audience\":\"a\"}",
               aud, "4");
    expect_err("{\"op\":\"emit\",\"scope\":\"s\",\"audience\":[[\"a\"]]}", aud,
               NULL);
    expect_err("{\"op\":\"emit\",\"scope\":\"s\",\"audience\":true}", aud,
               NULL);
    expect_err("{\"op\":\"emit\",\"scope\":\"s\",\"audience\":[\"\\u0000\"]}",
               "audience: must not contain NUL characters", NULL);
}

static void test_request_to_emit_borrows_every_field(void **state)
{
    sc_request_t req;
    sc_emit_t e;

    decode_ok("{\"op\":\"emit\",\"scope\":\"s\",\"paths\":[\"p\"],"
              "\"data\":[1],\"audience\":[]}",
              &req);
    sc_request_to_emit(&req, "sess", &e);
    assert_ptr_equal(e.scope, req.scope);
    assert_int_equal(e.npaths, 1);
    assert_string_equal(e.paths[0], "p");
    assert_string_equal(e.origin, "sess");
    assert_true(e.has_audience);
    assert_int_equal(e.naudience, 0);
    assert_true(e.has_payload);
    assert_int_equal(e.payload_len, 3);
    assert_memory_equal(e.payload, "[1]", 3);
    sc_request_deinit(&req);

    decode_ok("{\"op\":\"emit\",\"scope\":\"s\"}", &req);
    sc_request_to_emit(&req, NULL, &e);
    assert_false(e.has_payload);
    assert_null(e.payload);
    assert_false(e.has_audience);
    assert_null(e.origin);
    sc_request_deinit(&req);
}

/* ---- id ------------------------------------------------------------------ */

static void test_id_is_echoed_as_json_text(void **state)
{
    sc_request_t req;

    decode_ok("{\"op\":\"ping\",\"id\":-3}", &req);
    assert_string_equal(req.id_json, "-3");
    sc_request_deinit(&req);
    decode_ok("{\"op\":\"ping\",\"id\":\"a\\\"b/\\u00e9\"}", &req);
    assert_string_equal(req.id_json, "\"a\\\"b/\xc3\xa9\"");
    sc_request_deinit(&req);
    decode_ok("{\"op\":\"ping\",\"id\":18446744073709551615}", &req);
    assert_string_equal(req.id_json, "18446744073709551615");
    sc_request_deinit(&req);
    decode_ok("{\"op\":\"ping\",\"id\":-9223372036854775808}", &req);
    assert_string_equal(req.id_json, "-9223372036854775808");
    sc_request_deinit(&req);
    decode_ok("{\"op\":\"ping\",\"id\":\"\"}", &req);
    assert_string_equal(req.id_json, "\"\"");
    sc_request_deinit(&req);
}

static void test_invalid_id_gives_an_error_without_id(void **state)
{
    const char *m = "id: must be an integer or a string";

    expect_err("{\"op\":\"ping\",\"id\":1.5}", m, NULL);
    expect_err("{\"op\":\"ping\",\"id\":1e3}", m, NULL);
    expect_err("{\"op\":\"ping\",\"id\":true}", m, NULL);
    expect_err("{\"op\":\"ping\",\"id\":[1]}", m, NULL);
    expect_err("{\"op\":\"ping\",\"id\":{}}", m, NULL);
    /* beyond 64 bits: not an integer json-c can hold exactly */
    expect_err("{\"op\":\"ping\",\"id\":18446744073709551616}", m, NULL);
    expect_err("{\"op\":\"ping\",\"id\":-9223372036854775809}", m, NULL);
    /* the id is checked before the op */
    expect_err("{\"op\":\"nope\",\"id\":false}", m, NULL);
}

static void test_valid_id_is_carried_by_later_errors(void **state)
{
    expect_err("{\"id\":5,\"op\":\"nope\"}", "op: unknown op 'nope'", "5");
    expect_err("{\"id\":\"x\",\"scope\":\"s\"}", "op: required", "\"x\"");
    expect_err("{\"id\":6,\"op\":\"emit\",\"scope\":\"a b\"}",
               "scope: " SC_SCOPE_RULE, "6");
}

/* ---- op ------------------------------------------------------------------ */

static void test_op_must_be_a_known_string(void **state)
{
    expect_err("{}", "op: required", NULL);
    expect_err("{\"op\":null}", "op: required", NULL);
    expect_err("{\"op\":5}", "op: must be a string", NULL);
    expect_err("{\"op\":[\"ping\"]}", "op: must be a string", NULL);
    expect_err("{\"op\":\"PING\"}", "op: unknown op 'PING'", NULL);
    expect_err("{\"op\":\"\"}", "op: unknown op ''", NULL);
    expect_err("{\"op\":\"ping\\u0000\"}", "op: unknown op 'ping?'", NULL);
    expect_err("{\"op\":\"\\n\xc3\xa9\"}", "op: unknown op '?\?\?'", NULL);
    expect_err("{\"op\":\"0123456789012345678901234567890123456789\"}",
               "op: unknown op '01234567890123456789012345678901...'", NULL);
}

static void test_op_names_round_trip(void **state)
{
    assert_string_equal(sc_proto_op_name(SC_OP_SUBSCRIBE), "subscribe");
    assert_string_equal(sc_proto_op_name(SC_OP_UNSUBSCRIBE), "unsubscribe");
    assert_string_equal(sc_proto_op_name(SC_OP_EMIT), "emit");
    assert_string_equal(sc_proto_op_name(SC_OP_PRESENCE), "presence");
    assert_string_equal(sc_proto_op_name(SC_OP_PING), "ping");
    assert_string_equal(sc_proto_op_name((sc_op_t)42), "?");
}

/* ---- JSON strictness ------------------------------------------------------
 */

static void test_invalid_json_is_rejected(void **state)
{
    const char *bad[] = {
        "",
        " ",
        "{",
        "}",
        "{\"op\":\"ping\"",
        "{\"op\":'ping'}",
        "{\"op\":\"ping\",}",
        "{op:\"ping\"}",
        "{\"op\":\"ping\"}/* c */",
        "{\"op\":\"ping\",\"x\":NaN}",
        "{\"op\":\"ping\",\"x\":Infinity}",
        "{\"op\":\"ping\",\"x\":-Infinity}",
        "{\"op\":\"ping\",\"x\":nan}",
        "{\"op\":\"ping\",\"x\":01}",
        "{\"op\":\"ping\",\"x\":1.}",
        "{\"op\":\"ping\",\"x\":\"\\x\"}",
        "{\"op\":\"ping\",\"x\":True}",
        "{\"op\":\"ping\",\"x\":[1,]}",
        "{\"op\":\"ping\" \"x\":1}",
        "\"unterminated",
        "{\"a\":\"\\",
        "-",
        "1e",
        "tru",
        /* json-c alone would accept these */
        "{\"op\":\"ping\",\"x\":1.e5}",
        "{\"op\":\"ping\",\"x\":-.5}",
        "{\"op\":\"ping\",\"x\":-01}",
        "{\"op\":\"ping\",\"x\":+1}",
        "{\"op\":\"ping\",\"x\":.5}",
        "{\"op\":\"ping\",\"x\":\"a\nb\"}",
        "{\"op\":\"ping\",\"x\":\"\x01\"}",
        "{\"op\":\"ping\",\"x\":0x1}",
        "{\"op\":\"ping\",\"x\":1e5e5}",
        "{\"op\":\"ping\",\"x\":1.5.5}",
        "{\"op\":\"ping\",\"x\":1-2}",
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_err(bad[i], "invalid JSON", NULL);
}

static void
test_trailing_garbage_is_rejected_but_whitespace_is_not(void **state)
{
    sc_request_t req;

    expect_err("{\"op\":\"ping\"} x", "invalid JSON", NULL);
    expect_err("{\"op\":\"ping\"}{}", "invalid JSON", NULL);
    expect_err("{\"op\":\"ping\"}1", "invalid JSON", NULL);
    expect_err("{\"op\":\"ping\"}]", "invalid JSON", NULL);
    decode_ok(" \t\r\n{\"op\":\"ping\"} \t\r\n", &req);
    sc_request_deinit(&req);
}

static void test_embedded_nul_and_bad_utf8_are_invalid_json(void **state)
{
    static const char nul[] = "{\"op\":\"ping\"}\0";
    static const char nul2[] = "{\"op\":\"p\0ing\"}";

    expect_err_n(nul, sizeof(nul) - 1, "invalid JSON: NUL byte", NULL);
    expect_err_n(nul2, sizeof(nul2) - 1, "invalid JSON: NUL byte", NULL);
    expect_err("{\"op\":\"ping\",\"x\":\"\xff\"}",
               "invalid JSON: invalid UTF-8", NULL);
}

static void test_message_need_not_be_nul_terminated(void **state)
{
    static const char msg[] = "{\"op\":\"ping\"}garbage";
    char *copy = malloc(13);
    sc_request_t req;

    memcpy(copy, msg, 13); /* exactly the object, no terminator */
    decode_n(copy, 13, &req);
    assert_int_equal(req.op, SC_OP_PING);
    sc_request_deinit(&req);
    free(copy);
}

static void test_non_objects_are_rejected(void **state)
{
    const char *bad[] = {"[]",
                         "[{\"op\":\"ping\"}]",
                         "1",
                         "-0.5",
                         "\"ping\"",
                         "null",
                         "true",
                         "false",
                         "123456789012345678901"};
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_err(bad[i], "not an object", NULL);
}

static void test_unknown_and_foreign_fields_are_ignored(void **state)
{
    sc_request_t req;

    decode_ok("{\"op\":\"ping\",\"foo\":{\"bar\":[1,{\"x\":null}]},"
              "\"scope\":5,\"meta\":1,\"paths\":2}",
              &req);
    assert_int_equal(req.op, SC_OP_PING);
    sc_request_deinit(&req);
    decode_ok("{\"op\":\"unsubscribe\",\"scope\":\"s\",\"meta\":5,"
              "\"echo\":\"x\",\"paths\":3,\"audience\":4}",
              &req);
    assert_null(req.meta_json);
    assert_null(req.paths);
    sc_request_deinit(&req);
    decode_ok("{\"op\":\"emit\",\"scope\":\"s\",\"meta\":5,\"echo\":\"x\"}",
              &req);
    sc_request_deinit(&req);
}

static void test_duplicate_keys_keep_the_last(void **state)
{
    sc_request_t req;

    decode_ok("{\"op\":\"nope\",\"op\":\"ping\",\"id\":1,\"id\":2}", &req);
    assert_int_equal(req.op, SC_OP_PING);
    assert_string_equal(req.id_json, "2");
    sc_request_deinit(&req);
}

static void test_numbers_keep_their_text(void **state)
{
    sc_request_t req;

    decode_ok("{\"op\":\"emit\",\"scope\":\"s\",\"data\":"
              "[-0,0e0,1E+2,-1.50e-3,0.0,10,-7]}",
              &req);
    assert_string_equal(req.data_json, "[0,0e0,1E+2,-1.50e-3,0.0,10,-7]");
    sc_request_deinit(&req);
}

static void test_integers_beyond_64_bits_keep_their_value(void **state)
{
    sc_request_t req;

    decode_ok("{\"op\":\"emit\",\"scope\":\"s\",\"data\":"
              "[100000000000000000000,-9223372036854775809,"
              "18446744073709551615,-9223372036854775808,1e400,0.1]}",
              &req);
    assert_string_equal(req.data_json,
                        "[100000000000000000000e0,-9223372036854775809e0,"
                        "18446744073709551615,-9223372036854775808,1e400,"
                        "0.1]");
    sc_request_deinit(&req);
}

/* A message nested `depth` levels deep (the root object counts as one). */
static char *nested(size_t depth)
{
    const char *head = "{\"op\":\"emit\",\"scope\":\"s\",\"data\":";
    size_t hl = strlen(head), n = hl + 2 * depth + 8, i;
    char *s = malloc(n);

    memcpy(s, head, hl);
    for (i = 0; i + 1 < depth; i++)
        s[hl + i] = '[';
    for (i = 0; i + 1 < depth; i++)
        s[hl + depth - 1 + i] = ']';
    strcpy(s + hl + 2 * (depth - 1), "}");
    return s;
}

static void test_nesting_is_bounded(void **state)
{
    sc_request_t req;
    char *ok = nested(SC_PROTO_MAX_DEPTH);
    char *deep = nested(SC_PROTO_MAX_DEPTH + 1);
    char *huge = nested(100000);

    decode_ok(ok, &req);
    assert_true(req.has_data);
    sc_request_deinit(&req);
    expect_err(deep, "invalid JSON: nested too deeply", NULL);
    expect_err(huge, "invalid JSON: nested too deeply", NULL);
    free(ok);
    free(deep);
    free(huge);
}

/* ---- scopes ----------------------------------------------------------------
 */

static void test_scope_rule_boundaries(void **state)
{
    char s[202];

    memset(s, 'a', sizeof(s));
    assert_false(sc_proto_scope_valid(s, 0));
    assert_true(sc_proto_scope_valid(s, 1));
    assert_true(sc_proto_scope_valid(s, 200));
    assert_false(sc_proto_scope_valid(s, 201));
    assert_false(sc_proto_scope_valid(NULL, 3));
    assert_true(sc_proto_scope_valid("!~\"\\{}", 6));
    assert_false(sc_proto_scope_valid("a b", 3));
    assert_false(sc_proto_scope_valid("a\tb", 3));
    assert_false(sc_proto_scope_valid("a\0b", 3));
    assert_false(sc_proto_scope_valid("a\x7f", 2));
    assert_false(sc_proto_scope_valid("\x1f", 1));
    assert_false(sc_proto_scope_valid("caf\xc3\xa9", 5));
}

/* Decodes a subscribe whose scope is `scope` (JSON string body). */
static int subscribe_scope(const char *json_scope, sc_proto_err_t *err)
{
    char msg[512];
    sc_request_t req;
    int rc;

    snprintf(msg, sizeof(msg), "{\"op\":\"subscribe\",\"scope\":\"%s\"}",
             json_scope);
    rc = sc_proto_decode(msg, strlen(msg), &req, err);
    sc_request_deinit(&req);
    return rc;
}

static void test_request_scopes_follow_the_rule(void **state)
{
    const char *bad[] = {"",         "a b",         "\\u0001", "\\t",
                         "a\\u007f", "caf\xc3\xa9", "\\u00e9", "\\u0000"};
    char s[202];
    sc_proto_err_t err;
    size_t i;

    memset(s, 'x', sizeof(s));
    s[200] = '\0';
    assert_int_equal(subscribe_scope(s, &err), SC_OK);
    s[200] = 'x';
    s[201] = '\0';
    assert_int_equal(subscribe_scope(s, &err), SC_EINVAL);
    assert_string_equal(err.message, "scope: " SC_SCOPE_RULE);
    sc_proto_err_deinit(&err);
    assert_int_equal(subscribe_scope("a", &err), SC_OK);
    assert_int_equal(subscribe_scope("a\\\"b\\\\c", &err), SC_OK);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(subscribe_scope(bad[i], &err), SC_EINVAL);
        assert_string_equal(err.message,
                            "scope: must be 1-200 printable ASCII characters "
                            "without spaces");
        sc_proto_err_deinit(&err);
    }
}

static void test_err_deinit_accepts_null_and_zeroed(void **state)
{
    sc_proto_err_t err;
    sc_request_t req;

    memset(&err, 0, sizeof(err));
    sc_proto_err_deinit(NULL);
    sc_proto_err_deinit(&err);
    memset(&req, 0, sizeof(req));
    sc_request_deinit(NULL);
    sc_request_deinit(&req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subscribe_with_scope_only_has_defaults),
        cmocka_unit_test(test_subscribe_reads_id_meta_and_echo),
        cmocka_unit_test(test_subscribe_null_meta_and_echo_mean_absent),
        cmocka_unit_test(test_subscribe_rejects_bad_meta_and_echo),
        cmocka_unit_test(test_unsubscribe_presence_and_ping_decode),
        cmocka_unit_test(test_refresh_reads_a_token),
        cmocka_unit_test(test_presence_update_reads_scope_and_meta),
        cmocka_unit_test(test_presence_update_rejects_missing_or_bad_meta),
        cmocka_unit_test(test_scope_is_required_except_for_ping),
        cmocka_unit_test(test_emit_reads_paths_data_and_audience),
        cmocka_unit_test(test_emit_data_null_is_a_value_and_absent_is_none),
        cmocka_unit_test(test_emit_null_paths_and_audience_mean_absent),
        cmocka_unit_test(test_emit_rejects_bad_paths_and_audience),
        cmocka_unit_test(test_request_to_emit_borrows_every_field),
        cmocka_unit_test(test_id_is_echoed_as_json_text),
        cmocka_unit_test(test_invalid_id_gives_an_error_without_id),
        cmocka_unit_test(test_valid_id_is_carried_by_later_errors),
        cmocka_unit_test(test_op_must_be_a_known_string),
        cmocka_unit_test(test_op_names_round_trip),
        cmocka_unit_test(test_invalid_json_is_rejected),
        cmocka_unit_test(
            test_trailing_garbage_is_rejected_but_whitespace_is_not),
        cmocka_unit_test(test_embedded_nul_and_bad_utf8_are_invalid_json),
        cmocka_unit_test(test_message_need_not_be_nul_terminated),
        cmocka_unit_test(test_non_objects_are_rejected),
        cmocka_unit_test(test_unknown_and_foreign_fields_are_ignored),
        cmocka_unit_test(test_duplicate_keys_keep_the_last),
        cmocka_unit_test(test_numbers_keep_their_text),
        cmocka_unit_test(test_integers_beyond_64_bits_keep_their_value),
        cmocka_unit_test(test_nesting_is_bounded),
        cmocka_unit_test(test_scope_rule_boundaries),
        cmocka_unit_test(test_request_scopes_follow_the_rule),
        cmocka_unit_test(test_err_deinit_accepts_null_and_zeroed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
