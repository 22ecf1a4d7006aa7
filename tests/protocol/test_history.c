/*
 * Unit tests of the protocol side of history and recovery
 * (docs/PROTOCOL.md, "History and recovery"): `since` in subscribe, the
 * epoch's wire text, the subscribed reply's history fields, GET
 * /api/history's query and answer, and the --history rules.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "codec.h"
#include "history_spec.h"
#include "http_body.h"
#include "http_req.h"
#include "reply.h"

#include <stdio.h>
#include <string.h>

/* ---- since --------------------------------------------------------------- */

static void decode(const char *msg, sc_request_t *req)
{
    sc_proto_err_t err;
    if (sc_proto_decode(msg, strlen(msg), req, &err) != SC_OK)
        fail_msg("decode of %s failed: %s", msg, err.message);
}

static void expect_err(const char *msg, const char *message)
{
    sc_request_t req;
    sc_proto_err_t err;
    assert_int_equal(sc_proto_decode(msg, strlen(msg), &req, &err), SC_EINVAL);
    assert_string_equal(err.message, message);
    sc_proto_err_deinit(&err);
}

static void test_since_is_read(void **state)
{
    (void)state;
    sc_request_t req;
    decode("{\"op\":\"subscribe\",\"scope\":\"s\",\"since\":{\"seq\":42,"
           "\"epoch\":\"00000000000000ff\"}}",
           &req);
    assert_true(req.has_since);
    assert_int_equal(req.since_seq, 42);
    assert_true(req.since_epoch_given);
    assert_true(req.since_epoch_ok);
    assert_int_equal(req.since_epoch, 255);
    sc_request_deinit(&req);
    /* seq 0 without an epoch: from the start */
    decode("{\"op\":\"subscribe\",\"scope\":\"s\",\"since\":{\"seq\":0}}",
           &req);
    assert_true(req.has_since);
    assert_int_equal(req.since_seq, 0);
    assert_false(req.since_epoch_given);
    sc_request_deinit(&req);
    /* an epoch the server cannot have made is kept as "given, not ok" */
    decode("{\"op\":\"subscribe\",\"scope\":\"s\",\"since\":{\"seq\":1,"
           "\"epoch\":\"nope\"}}",
           &req);
    assert_true(req.since_epoch_given);
    assert_false(req.since_epoch_ok);
    sc_request_deinit(&req);
    /* null means absent */
    decode("{\"op\":\"subscribe\",\"scope\":\"s\",\"since\":null}", &req);
    assert_false(req.has_since);
    sc_request_deinit(&req);
    decode("{\"op\":\"subscribe\",\"scope\":\"s\"}", &req);
    assert_false(req.has_since);
    sc_request_deinit(&req);
}

static void test_since_errors(void **state)
{
    (void)state;
    expect_err("{\"op\":\"subscribe\",\"scope\":\"s\",\"since\":5}",
               "since: must be an object");
    expect_err("{\"op\":\"subscribe\",\"scope\":\"s\",\"since\":{}}",
               "since.seq: required");
    expect_err("{\"op\":\"subscribe\",\"scope\":\"s\",\"since\":{\"seq\":-1}}",
               "since.seq: must be a non-negative integer");
    expect_err("{\"op\":\"subscribe\",\"scope\":\"s\",\"since\":{\"seq\":1.5}}",
               "since.seq: must be a non-negative integer");
    expect_err(
        "{\"op\":\"subscribe\",\"scope\":\"s\",\"since\":{\"seq\":\"1\"}}",
        "since.seq: must be a non-negative integer");
    expect_err("{\"op\":\"subscribe\",\"scope\":\"s\",\"since\":{\"seq\":1,"
               "\"epoch\":7}}",
               "since.epoch: must be a string");
}

/* ---- epoch text ------------------------------------------------------------
 */

static void test_epoch_text_round_trips(void **state)
{
    (void)state;
    const uint64_t v[] = {0, 1, 0xdeadbeefULL, UINT64_MAX,
                          0x0123456789abcdefULL};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char t[SC_PROTO_EPOCH_LEN + 1];
        sc_proto_epoch_text(v[i], t);
        assert_int_equal(strlen(t), SC_PROTO_EPOCH_LEN);
        uint64_t back = 7;
        assert_true(sc_proto_epoch_parse(t, strlen(t), &back));
        assert_int_equal(back, v[i]);
    }
    uint64_t x;
    assert_false(sc_proto_epoch_parse("0123456789ABCDEF", 16, &x)); /* upper */
    assert_false(sc_proto_epoch_parse("0123456789abcde", 15, &x));
    assert_false(sc_proto_epoch_parse("0123456789abcdef0", 17, &x));
    assert_false(sc_proto_epoch_parse("0123456789abcdeg", 16, &x));
    assert_false(sc_proto_epoch_parse(NULL, 0, &x));
}

static void test_subscribed_carries_epoch_and_recovered(void **state)
{
    (void)state;
    sc_buf_t b;
    sc_buf_init(&b);
    sc_proto_enc_subscribed_epoch(&b, "3", "doc", 9, 0xabcULL, 1, NULL, 0, 0);
    assert_string_equal(sc_buf_str(&b),
                        "{\"op\":\"subscribed\",\"id\":3,\"scope\":\"doc\","
                        "\"seq\":9,\"epoch\":\"0000000000000abc\","
                        "\"recovered\":true,\"presence\":[]}");
    sc_buf_reset(&b);
    sc_proto_enc_subscribed_epoch(&b, NULL, "doc", 0, 1, 0, NULL, 0, 0);
    assert_string_equal(sc_buf_str(&b),
                        "{\"op\":\"subscribed\",\"scope\":\"doc\",\"seq\":0,"
                        "\"epoch\":\"0000000000000001\",\"recovered\":false,"
                        "\"presence\":[]}");
    sc_buf_reset(&b);
    sc_proto_enc_subscribed_epoch(&b, NULL, "doc", 0, 1, -1, NULL, 0, 0);
    assert_string_equal(sc_buf_str(&b),
                        "{\"op\":\"subscribed\",\"scope\":\"doc\",\"seq\":0,"
                        "\"epoch\":\"0000000000000001\",\"presence\":[]}");
    sc_buf_deinit(&b);
}

/* ---- GET /api/history
 * -------------------------------------------------------- */

static long qget(void *ud, const char *name, char *out, size_t cap)
{
    const char *q = ud;
    return sc_http_query_param(q, strlen(q), name, out, cap);
}

static int query(const char *q, sc_history_query_t *out, char *msg)
{
    sc_proto_err_t err;
    int rc = sc_proto_decode_history_query(qget, (void *)q, out, &err);
    snprintf(msg, 160, "%s", rc == SC_OK ? "" : err.message);
    sc_proto_err_deinit(&err);
    return rc;
}

static void test_history_query(void **state)
{
    (void)state;
    sc_history_query_t q;
    char msg[160];
    assert_int_equal(query("scope=doc%3A1&since=5", &q, msg), SC_OK);
    assert_string_equal(q.scope, "doc:1");
    assert_int_equal(q.since, 5);
    assert_false(q.epoch_given);
    assert_int_equal(q.limit, 1000);
    assert_false(q.has_user);
    assert_int_equal(query("since=0&scope=a&epoch=00000000000000ff&limit=7&"
                           "user=bob",
                           &q, msg),
                     SC_OK);
    assert_true(q.epoch_given && q.epoch_ok);
    assert_int_equal(q.epoch, 255);
    assert_int_equal(q.limit, 7);
    assert_true(q.has_user);
    assert_string_equal(q.user, "bob");
    assert_int_equal(query("scope=a&since=18446744073709551615", &q, msg),
                     SC_OK);
    assert_int_equal(q.since, UINT64_MAX);
    assert_int_equal(query("scope=a&since=1&epoch=x", &q, msg), SC_OK);
    assert_true(q.epoch_given);
    assert_false(q.epoch_ok);

    const struct {
        const char *q, *msg;
    } bad[] = {
        {"since=1", "scope: required"},
        {"scope=a%20b&since=1",
         "scope: must be 1-200 printable ASCII characters without spaces"},
        {"scope=a", "since: required"},
        {"scope=a&since=", "since: must be a non-negative integer"},
        {"scope=a&since=-1", "since: must be a non-negative integer"},
        {"scope=a&since=1x", "since: must be a non-negative integer"},
        {"scope=a&since=18446744073709551616",
         "since: must be a non-negative integer"},
        {"scope=a&since=1&limit=0", "limit: must be an integer from 1 to 1000"},
        {"scope=a&since=1&limit=1001",
         "limit: must be an integer from 1 to 1000"},
        {"scope=a&since=1&user=", "user: must be 1-255 bytes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (query(bad[i].q, &q, msg) != SC_EINVAL)
            fail_msg("%s: accepted", bad[i].q);
        assert_string_equal(msg, bad[i].msg);
    }
}

static void test_history_answer(void **state)
{
    (void)state;
    sc_buf_t b;
    sc_buf_init(&b);
    sc_proto_slice_t ev[] = {{"{\"seq\":1}", 9}, {"{\"seq\":2}xx", 9}};
    sc_proto_enc_http_history(&b, "doc", true, 2, 5, true, ev, 2, true);
    assert_string_equal(sc_buf_str(&b),
                        "{\"scope\":\"doc\",\"epoch\":\"0000000000000002\","
                        "\"seq\":5,\"recovered\":true,\"events\":[{\"seq\":1},"
                        "{\"seq\":2}],\"more\":true}");
    sc_buf_reset(&b);
    sc_proto_enc_http_history(&b, "x", false, 0, 0, false, NULL, 0, false);
    assert_string_equal(sc_buf_str(&b),
                        "{\"scope\":\"x\",\"epoch\":null,\"seq\":0,"
                        "\"recovered\":false,\"events\":[],\"more\":false}");
    sc_buf_deinit(&b);
}

/* ---- --history
 * --------------------------------------------------------------- */

static void test_history_spec_parses_and_matches(void **state)
{
    (void)state;
    sc_history_spec_t s;
    char err[256];
    assert_int_equal(sc_history_spec_parse("doc:*=500/300s,chat:*=100,"
                                           "live=60s,*=1",
                                           &s, err, sizeof err),
                     SC_OK);
    assert_int_equal(s.n, 4);
    const sc_history_rule_t *r = sc_history_spec_match(&s, "doc:1");
    assert_non_null(r);
    assert_int_equal(r->max_events, 500);
    assert_int_equal(r->max_age, 300);
    r = sc_history_spec_match(&s, "chat:x");
    assert_int_equal(r->max_events, 100);
    assert_int_equal(r->max_age, 0);
    r = sc_history_spec_match(&s, "live");
    assert_int_equal(r->max_events, 0);
    assert_int_equal(r->max_age, 60);
    r = sc_history_spec_match(&s, "live2"); /* not "live": falls to "*" */
    assert_int_equal(r->max_events, 1);
    r = sc_history_spec_match(&s, "doc:"); /* the prefix itself matches */
    assert_int_equal(r->max_events, 500);
    sc_history_spec_deinit(&s);

    assert_int_equal(sc_history_spec_parse("a=1", &s, err, sizeof err), SC_OK);
    assert_null(sc_history_spec_match(&s, "b"));
    assert_null(sc_history_spec_match(&s, "a1"));
    sc_history_spec_deinit(&s);
    assert_int_equal(sc_history_spec_parse(NULL, &s, err, sizeof err), SC_OK);
    assert_int_equal(s.n, 0);
    assert_null(sc_history_spec_match(&s, "a"));
    assert_int_equal(
        sc_history_spec_parse("x=1000000/31536000s", &s, err, sizeof err),
        SC_OK);
    sc_history_spec_deinit(&s);
}

static void test_history_spec_errors(void **state)
{
    (void)state;
    const struct {
        const char *text, *err;
    } bad[] = {
        {"a=1,", "history: empty item"},
        {",a=1", "history: empty item"},
        {"a", "history: 'a': expected PATTERN=LIMITS"},
        {"=5", "history: '=5': bad pattern"},
        {"a b=5", "history: 'a b=5': bad pattern"},
        {"a*b=5", "history: 'a*b=5': bad pattern"},
        {"**=5", "history: '**=5': bad pattern"},
        {"a=0", "history: 'a=0': N must be 1-1000000"},
        {"a=1000001", "history: 'a=1000001': N must be 1-1000000"},
        {"a=0s", "history: 'a=0s': T must be 1-31536000 seconds"},
        {"a=5/31536001s", "history: 'a=5/31536001s': T must be 1-31536000 "
                          "seconds"},
        {"a=", "history: 'a=': limits must be N, Ts or N/Ts"},
        {"a=5/", "history: 'a=5/': limits must be N, Ts or N/Ts"},
        {"a=5/10", "history: 'a=5/10': limits must be N, Ts or N/Ts"},
        {"a=10s/5", "history: 'a=10s/5': limits must be N, Ts or N/Ts"},
        {"a=s", "history: 'a=s': limits must be N, Ts or N/Ts"},
        {"a=12345678901", "history: 'a=12345678901': limits must be N, Ts or "
                          "N/Ts"},
        {"a=5 ", "history: 'a=5 ': limits must be N, Ts or N/Ts"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sc_history_spec_t s;
        char err[256];
        if (sc_history_spec_parse(bad[i].text, &s, err, sizeof err) !=
            SC_EINVAL)
            fail_msg("'%s' was accepted", bad[i].text);
        assert_string_equal(err, bad[i].err);
        assert_int_equal(s.n, 0);
        assert_null(s.rules);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_since_is_read),
        cmocka_unit_test(test_since_errors),
        cmocka_unit_test(test_epoch_text_round_trips),
        cmocka_unit_test(test_subscribed_carries_epoch_and_recovered),
        cmocka_unit_test(test_history_query),
        cmocka_unit_test(test_history_answer),
        cmocka_unit_test(test_history_spec_parses_and_matches),
        cmocka_unit_test(test_history_spec_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
