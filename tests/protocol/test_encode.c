/*
 * Unit tests of protocol/jsonw.c, protocol/reply.c and the framing part of
 * protocol/wire.c: JSON escaping, every server message compared exactly,
 * WebSocket frame headers and framed buffers.
 */
#include "bus.h"
#include "reply.h"
#include "wire.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Escapes `n` bytes of `s` and compares with `want`. */
static void check_str(const char *s, size_t n, const char *want)
{
    sc_buf_t b;

    sc_buf_init(&b);
    sc_buf_put_json_str(&b, s, n);
    assert_int_equal(b.err, SC_OK);
    assert_string_equal(sc_buf_str(&b), want);
    assert_int_equal(sc_buf_len(&b), strlen(want));
    sc_buf_deinit(&b);
}

#define CHECK_STR(lit, want) check_str((lit), sizeof(lit) - 1, (want))

static void test_json_strings_escape_quotes_backslash_and_controls(void **state)
{
    CHECK_STR("", "\"\"");
    CHECK_STR("plain text / ok", "\"plain text / ok\"");
    CHECK_STR("a\"b\\c", "\"a\\\"b\\\\c\"");
    CHECK_STR("\b\f\n\r\t", "\"\\b\\f\\n\\r\\t\"");
    CHECK_STR("\x01\x1f\x7f", "\"\\u0001\\u001f\x7f\"");
    CHECK_STR("a\0b", "\"a\\u0000b\"");
    check_str(NULL, 0, "\"\"");
}

static void test_json_strings_pass_valid_utf8_and_replace_invalid(void **state)
{
    CHECK_STR("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xe2\x80\xa8",
              "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xe2\x80\xa8\"");
    CHECK_STR("\xef\xbf\xbf\xf4\x8f\xbf\xbf",
              "\"\xef\xbf\xbf\xf4\x8f\xbf\xbf\"");
    CHECK_STR("a\x80z", "\"a\\ufffdz\"");
    CHECK_STR("\xff", "\"\\ufffd\"");
    CHECK_STR("\xc0\x80", "\"\\ufffd\\ufffd\"");            /* overlong */
    CHECK_STR("\xe0\x9f\xbf", "\"\\ufffd\\ufffd\\ufffd\""); /* overlong */
    CHECK_STR("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""); /* surrogate */
    CHECK_STR("\xf4\x90\x80\x80",
              "\"\\ufffd\\ufffd\\ufffd\\ufffd\""); /* > U+10FFFF */
    CHECK_STR("\xe2\x82", "\"\\ufffd\\ufffd\"");   /* truncated */
    CHECK_STR("\xc3\"", "\"\\ufffd\\\"\"");
}

static void test_json_scalars(void **state)
{
    sc_buf_t b;

    sc_buf_init(&b);
    sc_buf_put_json_cstr(&b, NULL);
    sc_buf_putc(&b, ' ');
    sc_buf_put_json_cstr(&b, "x");
    sc_buf_putc(&b, ' ');
    sc_buf_put_json_bool(&b, true);
    sc_buf_put_json_bool(&b, false);
    sc_buf_putc(&b, ' ');
    sc_buf_put_u64(&b, 0);
    sc_buf_putc(&b, ' ');
    sc_buf_put_u64(&b, UINT64_MAX);
    sc_buf_putc(&b, ' ');
    sc_buf_put_i64(&b, INT64_MIN);
    sc_buf_putc(&b, ' ');
    sc_buf_put_i64(&b, -1);
    assert_string_equal(sc_buf_str(&b), "null \"x\" truefalse 0 "
                                        "18446744073709551615 "
                                        "-9223372036854775808 -1");
    sc_buf_deinit(&b);
}

static void check_time(double t, const char *want)
{
    sc_buf_t b;

    sc_buf_init(&b);
    sc_buf_put_json_time(&b, t);
    assert_string_equal(sc_buf_str(&b), want);
    sc_buf_deinit(&b);
}

static void test_json_time_has_millisecond_precision(void **state)
{
    check_time(1732530000.123, "1732530000.123");
    check_time(1732530000.0, "1732530000.000");
    check_time(12.5, "12.500");
    check_time(0.0004, "0.000");
    check_time(0.0996, "0.100");
    check_time(-1.5, "-1.500");
    check_time(-0.0001, "0.000");
    check_time(NAN, "0.000");
    check_time(INFINITY, "0.000");
    check_time(1e300, "0.000");
}

static void test_buffer_detach_reset_and_failure(void **state)
{
    sc_buf_t b;
    size_t len;
    char *s;

    sc_buf_init(&b);
    assert_string_equal(sc_buf_str(&b), "");
    s = sc_buf_detach(&b, &len);
    assert_string_equal(s, "");
    assert_int_equal(len, 0);
    free(s);

    assert_int_equal(sc_buf_reserve_front(&b, 5, 0), SC_OK);
    sc_buf_puts(&b, "abc");
    assert_int_equal(sc_buf_reserve_front(&b, 5, 0), SC_EINVAL);
    assert_int_equal(sc_buf_len(&b), 3);
    s = sc_buf_detach(&b, &len);
    assert_string_equal(s, "abc");
    assert_int_equal(len, 3);
    assert_null(b.data);
    free(s);

    sc_buf_puts(&b, "xyz");
    sc_buf_reset(&b);
    sc_buf_puts(&b, "q");
    assert_string_equal(sc_buf_str(&b), "q");
    b.err = SC_ENOMEM; /* as after a failed allocation */
    assert_int_equal(sc_proto_enc_pong(&b, NULL), SC_ENOMEM);
    assert_null(sc_buf_str(&b));
    assert_null(sc_buf_detach(&b, &len));
    assert_int_equal(len, 0);
    assert_null(b.data);
    sc_buf_deinit(&b);
    sc_buf_deinit(NULL);
}

static void test_buffer_grows_for_large_payloads(void **state)
{
    size_t n = 300000, i;
    char *big = malloc(n);
    sc_buf_t b;

    for (i = 0; i < n; i++)
        big[i] = (char)(i % 2 ? '"' : 'a');
    sc_buf_init(&b);
    sc_buf_put_json_str(&b, big, n);
    assert_int_equal(b.err, SC_OK);
    assert_int_equal(sc_buf_len(&b), n + n / 2 + 2);
    sc_buf_deinit(&b);
    free(big);
}

/* ---- messages ------------------------------------------------------------ */

/* Runs `rc` (an encoder's result into b) and compares the text. */
#define CHECK_ENC(call, want)                                                  \
    do {                                                                       \
        sc_buf_t b;                                                            \
        sc_buf_init(&b);                                                       \
        assert_int_equal((call), SC_OK);                                       \
        assert_string_equal(sc_buf_str(&b), (want));                           \
        sc_buf_deinit(&b);                                                     \
    } while (0)

static void make_conns(sc_conn_t c[2])
{
    static const char meta[] = "{\"name\":\"Ana\"}";

    assert_int_equal(sc_conn_init(&c[0], "s1", "ana", 1732530000.123, meta,
                                  sizeof(meta) - 1),
                     SC_OK);
    assert_int_equal(sc_conn_init(&c[1], "s\"2", NULL, 5.0, NULL, 0), SC_OK);
}

#define CONN0                                                                  \
    "{\"session\":\"s1\",\"user\":\"ana\",\"at\":1732530000.123,"              \
    "\"meta\":{\"name\":\"Ana\"}}"
#define CONN1 "{\"session\":\"s\\\"2\",\"user\":null,\"at\":5.000,\"meta\":{}}"

static void test_conn_objects(void **state)
{
    sc_conn_t c[2];

    make_conns(c);
    CHECK_ENC(sc_proto_enc_conn(&b, &c[0]), CONN0);
    CHECK_ENC(sc_proto_enc_conn(&b, &c[1]), CONN1);
    CHECK_ENC(sc_proto_enc_conn_list(&b, c, 2), "[" CONN0 "," CONN1 "]");
    CHECK_ENC(sc_proto_enc_conn_list(&b, NULL, 0), "[]");
    sc_conn_deinit(&c[0]);
    sc_conn_deinit(&c[1]);
}

static void test_welcome(void **state)
{
    CHECK_ENC(sc_proto_enc_welcome(&b, "abc", "alice", 25, 256, 65536),
              "{\"op\":\"welcome\",\"version\":1,\"session\":\"abc\","
              "\"user\":\"alice\",\"heartbeat\":25,\"maxsize\":256,"
              "\"maxmessage\":65536}");
    CHECK_ENC(sc_proto_enc_welcome(&b, "abc", NULL, 25, 256, 1),
              "{\"op\":\"welcome\",\"version\":1,\"session\":\"abc\","
              "\"user\":null,\"heartbeat\":25,\"maxsize\":256,"
              "\"maxmessage\":1}");
    CHECK_ENC(
        sc_proto_enc_welcome_resume(&b, "abc", NULL, 25, 256, 1, "f00d", -1),
        "{\"op\":\"welcome\",\"version\":1,\"session\":\"abc\","
        "\"user\":null,\"heartbeat\":25,\"maxsize\":256,"
        "\"maxmessage\":1,\"resume_token\":\"f00d\"}");
    CHECK_ENC(
        sc_proto_enc_welcome_resume(&b, "abc", NULL, 25, 256, 1, "f00d", 1),
        "{\"op\":\"welcome\",\"version\":1,\"session\":\"abc\","
        "\"user\":null,\"heartbeat\":25,\"maxsize\":256,"
        "\"maxmessage\":1,\"resume_token\":\"f00d\","
        "\"resumed\":true}");
    CHECK_ENC(sc_proto_enc_welcome_resume(&b, "abc", NULL, 25, 256, 1, NULL, 0),
              "{\"op\":\"welcome\",\"version\":1,\"session\":\"abc\","
              "\"user\":null,\"heartbeat\":25,\"maxsize\":256,"
              "\"maxmessage\":1,\"resumed\":false}");
}

static void test_subscribed_and_presence_replies(void **state)
{
    sc_conn_t c[2];

    make_conns(c);
    CHECK_ENC(sc_proto_enc_subscribed(&b, "7", "doc:1", 42, c, 2, 2),
              "{\"op\":\"subscribed\",\"id\":7,\"scope\":\"doc:1\","
              "\"seq\":42,\"presence\":[" CONN0 "," CONN1 "]}");
    CHECK_ENC(sc_proto_enc_subscribed(&b, NULL, "a\"b", 0, NULL, 0, 0),
              "{\"op\":\"subscribed\",\"scope\":\"a\\\"b\",\"seq\":0,"
              "\"presence\":[]}");
    CHECK_ENC(sc_proto_enc_presence(&b, "\"q\"", "s", c, 1, 1),
              "{\"op\":\"presence\",\"id\":\"q\",\"scope\":\"s\","
              "\"presence\":[" CONN0 "]}");
    CHECK_ENC(sc_proto_enc_presence(&b, NULL, "s", NULL, 0, 0),
              "{\"op\":\"presence\",\"scope\":\"s\",\"presence\":[]}");
    /* a list cut at --max-presence says how many there are */
    CHECK_ENC(sc_proto_enc_presence(&b, NULL, "s", c, 1, 5000),
              "{\"op\":\"presence\",\"scope\":\"s\",\"presence\":[" CONN0
              "],\"total\":5000}");
    CHECK_ENC(sc_proto_enc_subscribed(&b, "1", "s", 3, c, 2, 3),
              "{\"op\":\"subscribed\",\"id\":1,\"scope\":\"s\",\"seq\":3,"
              "\"presence\":[" CONN0 "," CONN1 "],\"total\":3}");
    sc_conn_deinit(&c[0]);
    sc_conn_deinit(&c[1]);
}

static void test_simple_replies(void **state)
{
    CHECK_ENC(sc_proto_enc_unsubscribed(&b, "1", "s"),
              "{\"op\":\"unsubscribed\",\"id\":1,\"scope\":\"s\"}");
    CHECK_ENC(sc_proto_enc_unsubscribed(&b, NULL, "s"),
              "{\"op\":\"unsubscribed\",\"scope\":\"s\"}");
    CHECK_ENC(sc_proto_enc_emitted(&b, "\"e\"", "s", 9),
              "{\"op\":\"emitted\",\"id\":\"e\",\"scope\":\"s\",\"seq\":9}");
    CHECK_ENC(sc_proto_enc_emitted(&b, NULL, "s", 0),
              "{\"op\":\"emitted\",\"scope\":\"s\",\"seq\":0}");
    CHECK_ENC(sc_proto_enc_presence_updated(&b, "4", "room:1"),
              "{\"op\":\"presence_updated\",\"id\":4,\"scope\":\"room:1\"}");
    CHECK_ENC(sc_proto_enc_presence_updated(&b, NULL, "s\"q"),
              "{\"op\":\"presence_updated\",\"scope\":\"s\\\"q\"}");
    CHECK_ENC(sc_proto_enc_pong(&b, "-2"), "{\"op\":\"pong\",\"id\":-2}");
    CHECK_ENC(sc_proto_enc_pong(&b, NULL), "{\"op\":\"pong\"}");
}

static void test_error_replies(void **state)
{
    static const char msg[] = "{\"id\":\"r\",\"op\":5}";
    sc_proto_err_t err;
    sc_request_t req;

    CHECK_ENC(sc_proto_enc_error(&b, "3", "forbidden", "emit not allowed"),
              "{\"op\":\"error\",\"id\":3,\"code\":\"forbidden\","
              "\"message\":\"emit not allowed\"}");
    CHECK_ENC(sc_proto_enc_error(&b, NULL, "bad_request",
                                 "op: unknown op "
                                 "'\"\\'"),
              "{\"op\":\"error\",\"code\":\"bad_request\","
              "\"message\":\"op: unknown op '\\\"\\\\'\"}");
    assert_int_equal(sc_proto_decode(msg, sizeof(msg) - 1, &req, &err),
                     SC_EINVAL);
    CHECK_ENC(sc_proto_enc_decode_error(&b, &err),
              "{\"op\":\"error\",\"id\":\"r\",\"code\":\"bad_request\","
              "\"message\":\"op: must be a string\"}");
    sc_proto_err_deinit(&err);
}

static void test_dropped_and_closed_pushes(void **state)
{
    CHECK_ENC(sc_proto_enc_dropped(&b, "s", 17),
              "{\"op\":\"dropped\",\"scope\":\"s\",\"count\":17}");
    CHECK_ENC(sc_proto_enc_closed(&b, "s", SC_CLOSE_CLOSED),
              "{\"op\":\"closed\",\"scope\":\"s\",\"reason\":\"closed\"}");
    CHECK_ENC(sc_proto_enc_closed(&b, "s", SC_CLOSE_KICKED),
              "{\"op\":\"closed\",\"scope\":\"s\",\"reason\":\"kicked\"}");
    CHECK_ENC(sc_proto_enc_closed(&b, "s", SC_CLOSE_SHUTDOWN),
              "{\"op\":\"closed\",\"scope\":\"s\",\"reason\":\"shutdown\"}");
    assert_string_equal(sc_proto_close_reason_name(SC_CLOSE_NONE), "closed");
    assert_string_equal(sc_proto_close_reason_name(99), "closed");
}

static void test_messages_append_to_one_buffer(void **state)
{
    sc_buf_t b;

    sc_buf_init(&b);
    assert_int_equal(sc_proto_enc_pong(&b, "1"), SC_OK);
    assert_int_equal(sc_proto_enc_pong(&b, "2"), SC_OK);
    assert_string_equal(sc_buf_str(&b),
                        "{\"op\":\"pong\",\"id\":1}{\"op\":\"pong\",\"id\":2}");
    sc_buf_deinit(&b);
}

/* ---- framing ------------------------------------------------------------- */

static void test_frame_header_length_forms(void **state)
{
    uint8_t h[SC_WS_MAX_HEADER];

    assert_int_equal(sc_ws_frame_header(h, 0), 2);
    assert_int_equal(h[0], 0x81);
    assert_int_equal(h[1], 0);
    assert_int_equal(sc_ws_frame_header(h, 125), 2);
    assert_int_equal(h[1], 125);
    assert_int_equal(sc_ws_frame_header(h, 126), 4);
    assert_memory_equal(h, "\x81\x7e\x00\x7e", 4);
    assert_int_equal(sc_ws_frame_header(h, 65535), 4);
    assert_memory_equal(h, "\x81\x7e\xff\xff", 4);
    assert_int_equal(sc_ws_frame_header(h, 65536), 10);
    assert_memory_equal(h, "\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    assert_int_equal(sc_ws_frame_header(h, (size_t)0x123456789aULL), 10);
    assert_memory_equal(h, "\x81\x7f\x00\x00\x00\x12\x34\x56\x78\x9a", 10);
}

/* Frames `n` payload bytes with `headroom` and checks the layout. */
static void check_frame(size_t headroom, size_t n, size_t hlen)
{
    sc_buf_t b;
    void *data;
    uint8_t *frame, h[SC_WS_MAX_HEADER];
    size_t len;
    char *payload = malloc(n + 1);

    memset(payload, 'x', n);
    sc_buf_init(&b);
    assert_int_equal(sc_ws_frame_begin(&b, headroom, 16), SC_OK);
    sc_buf_put(&b, payload, n);
    assert_int_equal(sc_ws_frame_end(&b, &data, &frame, &len), SC_OK);
    assert_null(b.data);
    assert_true(frame >= (uint8_t *)data + headroom);
    memset(frame - headroom, 0, headroom); /* head room is writable */
    assert_int_equal(len, hlen + n);
    assert_int_equal(sc_ws_frame_header(h, n), hlen);
    assert_memory_equal(frame, h, hlen);
    assert_memory_equal(frame + hlen, payload, n);
    free(data);
    free(payload);
}

static void test_framed_buffers_keep_head_room(void **state)
{
    check_frame(0, 0, 2);
    check_frame(16, 20, 2);
    check_frame(16, 125, 2);
    check_frame(0, 126, 4);
    check_frame(16, 65535, 4);
    check_frame(16, 65536, 10);
}

static void test_frame_of_a_reply(void **state)
{
    static const char want[] = "{\"op\":\"pong\",\"id\":1}";
    sc_buf_t b;
    void *data;
    uint8_t *frame;
    size_t len;

    sc_buf_init(&b);
    assert_int_equal(sc_ws_frame_begin(&b, 4, 0), SC_OK);
    assert_int_equal(sc_proto_enc_pong(&b, "1"), SC_OK);
    assert_int_equal(sc_ws_frame_end(&b, &data, &frame, &len), SC_OK);
    assert_int_equal(len, 2 + sizeof(want) - 1);
    assert_int_equal(frame[0], 0x81);
    assert_int_equal(frame[1], sizeof(want) - 1);
    assert_memory_equal(frame + 2, want, sizeof(want) - 1);
    free(data);

    /* an unframed or failed buffer gives no frame */
    assert_int_equal(sc_ws_frame_end(&b, &data, &frame, &len), SC_EINVAL);
    assert_null(data);
    assert_null(frame);
    assert_int_equal(len, 0);
    assert_int_equal(sc_ws_frame_begin(&b, 0, 0), SC_OK);
    b.err = SC_ENOMEM;
    assert_int_equal(sc_ws_frame_end(&b, &data, &frame, &len), SC_ENOMEM);
    assert_null(data);
    assert_null(b.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_json_strings_escape_quotes_backslash_and_controls),
        cmocka_unit_test(test_json_strings_pass_valid_utf8_and_replace_invalid),
        cmocka_unit_test(test_json_scalars),
        cmocka_unit_test(test_json_time_has_millisecond_precision),
        cmocka_unit_test(test_buffer_detach_reset_and_failure),
        cmocka_unit_test(test_buffer_grows_for_large_payloads),
        cmocka_unit_test(test_conn_objects),
        cmocka_unit_test(test_welcome),
        cmocka_unit_test(test_subscribed_and_presence_replies),
        cmocka_unit_test(test_simple_replies),
        cmocka_unit_test(test_error_replies),
        cmocka_unit_test(test_dropped_and_closed_pushes),
        cmocka_unit_test(test_messages_append_to_one_buffer),
        cmocka_unit_test(test_frame_header_length_forms),
        cmocka_unit_test(test_framed_buffers_keep_head_room),
        cmocka_unit_test(test_frame_of_a_reply),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
