/*
 * Unit tests of protocol/http_body.c: POST /api/emit and POST /api/close
 * bodies (single, batch, empty, invalid items named by index) and the
 * HTTP API's answer bodies.
 */
#include "http_body.h"
#include "scope.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void emit_ok(const char *body, sc_emit_body_t *out)
{
    sc_proto_err_t err;

    if (sc_proto_decode_emit_body(body, strlen(body), out, &err) != SC_OK)
        fail_msg("emit body %s: %s", body, err.message);
    assert_null(err.code);
}

static void emit_err(const char *body, const char *message)
{
    sc_emit_body_t out;
    sc_proto_err_t err;

    assert_int_equal(sc_proto_decode_emit_body(body, strlen(body), &out, &err),
                     SC_EINVAL);
    assert_string_equal(err.code, "bad_request");
    assert_string_equal(err.message, message);
    assert_null(err.id_json);
    assert_null(out.items);
    assert_int_equal(out.n, 0);
    sc_proto_err_deinit(&err);
}

static void test_single_emit_body(void **state)
{
    sc_emit_body_t out;
    sc_emit_t e;

    emit_ok("{\"scope\":\"doc:1\",\"paths\":[\"a\"],\"data\":{\"x\":1},"
            "\"origin\":\"api\",\"audience\":[\"ana\"],\"extra\":true}",
            &out);
    assert_false(out.batch);
    assert_int_equal(out.n, 1);
    assert_string_equal(out.items[0].scope, "doc:1");
    assert_int_equal(out.items[0].npaths, 1);
    assert_string_equal(out.items[0].paths[0], "a");
    assert_true(out.items[0].has_data);
    assert_string_equal(out.items[0].data_json, "{\"x\":1}");
    assert_string_equal(out.items[0].origin, "api");
    assert_true(out.items[0].has_audience);
    assert_string_equal(out.items[0].audience[0], "ana");

    sc_emit_item_to_emit(&out.items[0], &e);
    assert_ptr_equal(e.scope, out.items[0].scope);
    assert_string_equal(e.origin, "api");
    assert_true(e.has_payload);
    assert_int_equal(e.payload_len, 7);
    assert_int_equal(e.npaths, 1);
    assert_int_equal(e.naudience, 1);
    sc_emit_body_deinit(&out);
    assert_null(out.items);
}

static void test_single_emit_body_minimal_and_nulls(void **state)
{
    sc_emit_body_t out;

    emit_ok("{\"scope\":\"s\",\"paths\":null,\"origin\":null,"
            "\"audience\":null}",
            &out);
    assert_int_equal(out.n, 1);
    assert_false(out.items[0].has_data);
    assert_null(out.items[0].data_json);
    assert_null(out.items[0].origin);
    assert_null(out.items[0].paths);
    assert_false(out.items[0].has_audience);
    sc_emit_body_deinit(&out);

    emit_ok("{\"scope\":\"s\",\"data\":null,\"audience\":[]}", &out);
    assert_true(out.items[0].has_data);
    assert_string_equal(out.items[0].data_json, "null");
    assert_true(out.items[0].has_audience);
    assert_int_equal(out.items[0].naudience, 0);
    sc_emit_body_deinit(&out);
}

static void test_batch_emit_body(void **state)
{
    sc_emit_body_t out;

    emit_ok("[{\"scope\":\"a\",\"data\":1},{\"scope\":\"b\"},"
            "{\"scope\":\"c\",\"data\":[null]}]",
            &out);
    assert_true(out.batch);
    assert_int_equal(out.n, 3);
    assert_string_equal(out.items[0].scope, "a");
    assert_string_equal(out.items[0].data_json, "1");
    assert_string_equal(out.items[1].scope, "b");
    assert_false(out.items[1].has_data);
    assert_string_equal(out.items[2].data_json, "[null]");
    sc_emit_body_deinit(&out);

    emit_ok("[{\"scope\":\"a\"}]", &out);
    assert_true(out.batch);
    assert_int_equal(out.n, 1);
    sc_emit_body_deinit(&out);
}

static void test_invalid_emit_bodies(void **state)
{
    const char *shape = "must be an object or a non-empty array of objects";

    emit_err("[]", shape);
    emit_err("1", shape);
    emit_err("\"x\"", shape);
    emit_err("null", shape);
    emit_err("", "invalid JSON");
    emit_err("{\"scope\":\"a\"} x", "invalid JSON");
    emit_err("{\"scope\":\"a\",\"data\":NaN}", "invalid JSON");
    emit_err("{\"scope\":\"a\",\"data\":\"\xc3\x28\"}",
             "invalid JSON: invalid UTF-8");
    emit_err("{}", "scope: required");
    emit_err("{\"scope\":\"a b\"}", "scope: " SC_SCOPE_RULE);
    emit_err("{\"scope\":\"a\",\"origin\":5}", "origin: must be a string");
    emit_err("{\"scope\":\"a\",\"origin\":\"x\\u0000\"}",
             "origin: must not contain NUL characters");
    emit_err("{\"scope\":\"a\",\"paths\":[1]}",
             "paths: must be an array of strings");
    emit_err("{\"scope\":\"a\",\"audience\":\"bob\"}",
             "audience: must be an array of strings");
}

static void test_batch_is_validated_as_a_whole(void **state)
{
    emit_err("[{\"scope\":\"a\"},{\"scope\":\"b\"},{\"scope\":\"\"}]",
             "[2].scope: " SC_SCOPE_RULE);
    emit_err("[{\"scope\":\"a\"},{}]", "[1].scope: required");
    emit_err("[{\"scope\":\"a\"},5]", "[1]: must be an object");
    emit_err("[null]", "[0]: must be an object");
    emit_err("[{\"scope\":\"a\",\"paths\":[\"x\",2]}]",
             "[0].paths: must be an array of strings");
    emit_err("[{\"scope\":\"a\"},{\"scope\":\"b\",\"origin\":[]}]",
             "[1].origin: must be a string");
    emit_err("[{\"scope\":\"a\"},{\"scope\":\"b\",\"audience\":{}}]",
             "[1].audience: must be an array of strings");
    emit_err("[[{\"scope\":\"a\"}]]", "[0]: must be an object");
}

static void close_ok(const char *body, const char *scope, const char *user)
{
    sc_close_body_t out;
    sc_proto_err_t err;

    assert_int_equal(sc_proto_decode_close_body(body, strlen(body), &out, &err),
                     SC_OK);
    if (scope == NULL)
        assert_null(out.scope);
    else
        assert_string_equal(out.scope, scope);
    if (user == NULL)
        assert_null(out.user);
    else
        assert_string_equal(out.user, user);
    sc_close_body_deinit(&out);
}

static void close_err(const char *body, const char *message)
{
    sc_close_body_t out;
    sc_proto_err_t err;

    assert_int_equal(sc_proto_decode_close_body(body, strlen(body), &out, &err),
                     SC_EINVAL);
    assert_string_equal(err.code, "bad_request");
    assert_string_equal(err.message, message);
    assert_null(out.scope);
    assert_null(out.user);
    sc_proto_err_deinit(&err);
}

static void test_close_bodies(void **state)
{
    close_ok("{}", NULL, NULL);
    close_ok("{\"scope\":\"s\"}", "s", NULL);
    close_ok("{\"user\":\"ana\"}", NULL, "ana");
    close_ok("{\"user\":\"ana\",\"scope\":\"s\",\"x\":1}", "s", "ana");
    close_ok("{\"user\":null,\"scope\":null}", NULL, NULL);
}

static void test_invalid_close_bodies(void **state)
{
    close_err("", "invalid JSON");
    close_err("{", "invalid JSON");
    close_err("[]", "not an object");
    close_err("{\"scope\":\"\"}", "scope: " SC_SCOPE_RULE);
    close_err("{\"scope\":1}", "scope: must be a string");
    close_err("{\"user\":1}", "user: must be a non-empty string");
    close_err("{\"user\":\"\"}", "user: must be a non-empty string");
    close_err("{\"user\":\"a\\u0000\"}", "user: must not contain NUL "
                                         "characters");
    close_err("{\"scope\":\"ok\",\"user\":false}",
              "user: must be a non-empty string");
    sc_close_body_deinit(NULL);
    sc_emit_body_deinit(NULL);
}

#define CHECK_ENC(call, want)                                                  \
    do {                                                                       \
        sc_buf_t b;                                                            \
        sc_buf_init(&b);                                                       \
        assert_int_equal((call), SC_OK);                                       \
        assert_string_equal(sc_buf_str(&b), (want));                           \
        sc_buf_deinit(&b);                                                     \
    } while (0)

static void token_err(const char *body, const char *message)
{
    size_t len = strlen(body);
    sc_demo_token_body_t out;
    sc_proto_err_t err;

    assert_int_equal(sc_proto_decode_demo_token_body(body, len, &out, &err),
                     SC_EINVAL);
    assert_string_equal(err.code, "bad_request");
    if (strncmp(err.message, message, strlen(message)) != 0)
        fail_msg("body %.*s: got \"%s\", want \"%s...\"", (int)len, body,
                 err.message, message);
    assert_null(out.name);
    sc_proto_err_deinit(&err);
}

/* One invalid byte in a text frame makes a browser close the connection:
 * HTTP bodies were passed on without a UTF-8 check (found by fuzzing). */
static void test_bodies_must_be_utf8(void **state)
{
    (void)state;
    emit_err("{\"scope\":\"s\",\"data\":\"\xff\"}",
             "invalid JSON: invalid UTF-8");
    emit_err("{\"scope\":\"s\",\"origin\":\"\xc0\xaf\"}",
             "invalid JSON: invalid UTF-8");
    token_err("{\"name\":\"\xed\xa0\x80\"}", "invalid JSON: invalid UTF-8");
}

static void test_demo_token_body_takes_a_name(void **state)
{
    (void)state;
    sc_demo_token_body_t out;
    sc_proto_err_t err;
    const char *body = "{\"name\":\"ana\",\"other\":1}";

    assert_int_equal(
        sc_proto_decode_demo_token_body(body, strlen(body), &out, &err), SC_OK);
    assert_string_equal(out.name, "ana");
    sc_demo_token_body_deinit(&out);
    assert_null(out.name);
}

static void test_demo_token_body_is_decoded_strictly(void **state)
{
    (void)state;
    static const char *const bad_name =
        "name: must be a string of 1-64 characters";
    /* Trailing data after the object used to be accepted. */
    token_err("{\"name\":\"ana\"} x", "invalid JSON");
    token_err("{\"name\":\"ana\"}{}", "invalid JSON");
    token_err("", "invalid JSON");
    token_err("[1]", "not an object");
    token_err("{}", bad_name);
    token_err("{\"name\":7}", bad_name);
    token_err("{\"name\":\"\"}", bad_name);
    token_err("{\"name\":\"a\\u0001\"}", bad_name);
    token_err("{\"name\":\"a\\u0000b\"}", bad_name);
    char big[128];
    int n = snprintf(big, sizeof big, "{\"name\":\"%065d\"}", 0);
    assert_true(n > 0);
    token_err(big, bad_name);
}

static void test_http_answers(void **state)
{
    const uint64_t seqs[] = {1, 0, 18446744073709551615ULL};
    sc_proto_stats_t st = {10, 2, 3, 4, 5};
    sc_conn_t c;

    assert_int_equal(sc_conn_init(&c, "s1", NULL, 1.25, "{\"a\":1}", 7), SC_OK);
    CHECK_ENC(sc_proto_enc_http_seq(&b, 12), "{\"seq\":12}");
    CHECK_ENC(sc_proto_enc_http_results(&b, seqs, 3),
              "{\"results\":[{\"seq\":1},{\"seq\":0},"
              "{\"seq\":18446744073709551615}]}");
    CHECK_ENC(sc_proto_enc_http_results(&b, NULL, 0), "{\"results\":[]}");
    CHECK_ENC(sc_proto_enc_http_closed(&b, 3), "{\"closed\":3}");
    CHECK_ENC(sc_proto_enc_http_presence(&b, "s", &c, 1),
              "{\"scope\":\"s\",\"presence\":[{\"session\":\"s1\","
              "\"user\":null,\"at\":1.250,\"meta\":{\"a\":1}}]}");
    CHECK_ENC(sc_proto_enc_http_presence(&b, "s", NULL, 0),
              "{\"scope\":\"s\",\"presence\":[]}");
    CHECK_ENC(sc_proto_enc_http_stats(&b, &st),
              "{\"emitted\":10,\"dropped\":2,\"subscribers\":3,"
              "\"connections\":4,\"scopes\":5}");
    CHECK_ENC(sc_proto_enc_http_error(&b, "bad_request", "[2].scope: \"x\""),
              "{\"error\":\"bad_request\",\"message\":"
              "\"[2].scope: \\\"x\\\"\"}");
    sc_conn_deinit(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_emit_body),
        cmocka_unit_test(test_single_emit_body_minimal_and_nulls),
        cmocka_unit_test(test_batch_emit_body),
        cmocka_unit_test(test_invalid_emit_bodies),
        cmocka_unit_test(test_batch_is_validated_as_a_whole),
        cmocka_unit_test(test_close_bodies),
        cmocka_unit_test(test_invalid_close_bodies),
        cmocka_unit_test(test_bodies_must_be_utf8),
        cmocka_unit_test(test_demo_token_body_takes_a_name),
        cmocka_unit_test(test_demo_token_body_is_decoded_strictly),
        cmocka_unit_test(test_http_answers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
