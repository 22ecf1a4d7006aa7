/*
 * Unit tests of protocol/upgrade_head.c: classification of the first bytes of
 * a connection (incomplete, too large, not a GET, plain GET, upgrade),
 * every refusal of sc_upgrade_parse with its exact answer (compared with
 * the answer the server wrote before this module), ?token= decoding (bad
 * percent escapes, the length cap), and the 101 answer with RFC 6455's
 * sample key. Allocations can be failed through the linker's --wrap
 * (CMakeLists.txt).
 */
#include "upgrade_head.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

void *__real_malloc(size_t n);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_realloc(void *p, size_t n);

static bool fail_allocs; /* every malloc/realloc fails while set */

void *__wrap_malloc(size_t n)
{
    return fail_allocs ? NULL : __real_malloc(n);
}

void *__wrap_realloc(void *p, size_t n)
{
    return fail_allocs ? NULL : __real_realloc(p, n);
}

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

/* A valid upgrade head with `target` and `extra` header lines. */
static size_t head(char *out, size_t cap, const char *target, const char *extra)
{
    int n = snprintf(out, cap,
                     "GET %s HTTP/1.1\r\nHost: localhost:8080\r\n"
                     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: " KEY "\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     target, extra);
    assert_true(n > 0 && (size_t)n < cap);
    return (size_t)n;
}

static enum sc_head_kind classify(const char *s, size_t max, size_t *hl)
{
    return sc_upgrade_classify(s, strlen(s), max, hl);
}

/* ---- classification ----------------------------------------------------- */

static void test_classify_sends_anything_but_get_to_http_at_once(void **state)
{
    size_t hl = 99;

    assert_int_equal(classify("POST /api/emit HTTP/1.1\r\n", 8192, &hl),
                     SC_HEAD_OTHER);
    assert_int_equal(classify("PUT ", 8192, &hl), SC_HEAD_OTHER);
    assert_int_equal(classify("GX", 8192, &hl), SC_HEAD_OTHER);
    assert_int_equal(classify("get /ws HTTP/1.1\r\n\r\n", 8192, &hl),
                     SC_HEAD_OTHER);
    assert_int_equal(classify("\x16\x03\x01", 8192, &hl), SC_HEAD_OTHER);
    assert_int_equal(hl, 99); /* untouched */
}

static void test_classify_waits_for_an_incomplete_head(void **state)
{
    size_t hl = 99;

    assert_int_equal(sc_upgrade_classify("", 0, 8192, &hl), SC_HEAD_INCOMPLETE);
    assert_int_equal(classify("G", 8192, &hl), SC_HEAD_INCOMPLETE);
    assert_int_equal(classify("GET", 8192, &hl), SC_HEAD_INCOMPLETE);
    assert_int_equal(
        classify("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n", 8192, &hl),
        SC_HEAD_INCOMPLETE);
    assert_int_equal(
        classify("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r", 8192, &hl),
        SC_HEAD_INCOMPLETE);
    assert_int_equal(hl, 99);
}

static void test_classify_refuses_a_head_not_ended_within_max(void **state)
{
    static char b[SC_UPGRADE_HEAD_MAX];
    size_t hl;

    memcpy(b, "GET /ws HTTP/1.1\r\nX-Long: ", 26);
    memset(b + 26, 'x', sizeof(b) - 26);
    assert_int_equal(sc_upgrade_classify(b, sizeof(b), sizeof(b), &hl),
                     SC_HEAD_TOO_LARGE);
    assert_int_equal(sc_upgrade_classify(b, sizeof(b) - 1, sizeof(b), &hl),
                     SC_HEAD_INCOMPLETE);
    /* a non-GET is never too large: it goes to HTTP */
    b[0] = 'P';
    assert_int_equal(sc_upgrade_classify(b, sizeof(b), sizeof(b), &hl),
                     SC_HEAD_OTHER);
}

static void test_classify_sends_plain_gets_to_http(void **state)
{
    size_t hl;

    assert_int_equal(classify("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 8192, &hl),
                     SC_HEAD_OTHER);
    assert_int_equal(
        classify("GET /ws HTTP/1.1\r\nUpgrade: h2c\r\n\r\n", 8192, &hl),
        SC_HEAD_OTHER);
    assert_int_equal(
        classify("GET /ws HTTP/1.1\r\nX-Upgrade: websocket\r\n\r\n", 8192, &hl),
        SC_HEAD_OTHER);
    /* only the head counts: an Upgrade line after it is not looked at */
    assert_int_equal(
        classify("GET / HTTP/1.1\r\n\r\nUpgrade: websocket\r\n\r\n", 8192, &hl),
        SC_HEAD_OTHER);
}

static void test_classify_finds_upgrade_heads(void **state)
{
    char b[512];
    size_t n = head(b, sizeof(b), "/ws", ""), hl = 0;

    assert_int_equal(sc_upgrade_classify(b, n, 8192, &hl), SC_HEAD_UPGRADE);
    assert_int_equal(hl, n);
    /* a first frame sent early is not part of the head */
    memcpy(b + n, "\x81\x85", 2);
    assert_int_equal(sc_upgrade_classify(b, n + 2, 8192, &hl), SC_HEAD_UPGRADE);
    assert_int_equal(hl, n);
    assert_int_equal(
        classify("GET /x HTTP/1.1\r\nupgrade:   WebSocket  \r\n\r\n", 8192,
                 &hl),
        SC_HEAD_UPGRADE);
    assert_int_equal(
        classify("GET /x HTTP/1.1\r\nUPGRADE: foo, websocket\r\n\r\n", 8192,
                 &hl),
        SC_HEAD_UPGRADE);
}

/* ---- parsing and refusals ----------------------------------------------- */

/* The refusal answer exactly as the server wrote it before this module. */
static int old_refusal(char *out, size_t cap, unsigned status,
                       const char *reason, const char *code,
                       const char *message, const char *extra)
{
    char body[256];
    int bl = snprintf(body, sizeof body,
                      "{\"error\":\"%s\",\"message\":\"%s\"}", code, message);

    return snprintf(out, cap,
                    "HTTP/1.1 %u %s\r\ncontent-type: application/json\r\n"
                    "content-length: %d\r\n%sconnection: close\r\n\r\n%s",
                    status, reason, bl, extra ? extra : "", body);
}

/* Parses `h` and expects a refusal with these fields, written as before. */
static void expect_refusal(const char *h, unsigned status, const char *reason,
                           const char *code, const char *message,
                           const char *extra)
{
    sc_upgrade_req_t req;
    sc_http_refusal_t r;
    char got[640], want[640];
    size_t n;
    int wn;

    if (sc_upgrade_parse(h, strlen(h), &req, &r) != SC_EINVAL)
        fail_msg("accepted: %s", h);
    assert_int_equal(r.status, status);
    assert_string_equal(r.reason_phrase, reason);
    assert_string_equal(r.code, code);
    assert_string_equal(r.message, message);
    if (extra == NULL)
        assert_null(r.extra_headers);
    else
        assert_string_equal(r.extra_headers, extra);
    n = sc_http_refusal_write(&r, got, sizeof(got));
    wn = old_refusal(want, sizeof(want), status, reason, code, message, extra);
    assert_int_equal(n, wn);
    assert_string_equal(got, want);
}

static void expect_accepted(const char *h, sc_upgrade_req_t *req)
{
    sc_http_refusal_t r;

    if (sc_upgrade_parse(h, strlen(h), req, &r) != SC_OK)
        fail_msg("refused (%s): %s", r.message, h);
}

static void test_parse_accepts_a_valid_upgrade(void **state)
{
    char b[512];
    sc_upgrade_req_t req;

    head(b, sizeof(b), "/ws", "");
    expect_accepted(b, &req);
    assert_null(req.query);
    assert_int_equal(req.query_len, 0);
    assert_non_null(req.key);
    assert_memory_equal(req.key, KEY, 24);
    assert_true(req.key > b && req.key < b + strlen(b)); /* into the head */
    assert_false(req.with_protocol);
}

static void test_parse_gives_the_query(void **state)
{
    char b[512];
    sc_upgrade_req_t req;

    head(b, sizeof(b), "/ws?token=abc&x=1", "");
    expect_accepted(b, &req);
    assert_int_equal(req.query_len, 13);
    assert_memory_equal(req.query, "token=abc&x=1", 13);
    head(b, sizeof(b), "/ws?", "");
    expect_accepted(b, &req);
    assert_non_null(req.query);
    assert_int_equal(req.query_len, 0);
}

static void test_parse_selects_the_scopecast_subprotocol(void **state)
{
    char b[512];
    sc_upgrade_req_t req;

    head(b, sizeof(b), "/ws", "Sec-WebSocket-Protocol: scopecast.v1\r\n");
    expect_accepted(b, &req);
    assert_true(req.with_protocol);
    head(b, sizeof(b), "/ws", "sec-websocket-protocol: chat, SCOPECAST.v1\r\n");
    expect_accepted(b, &req);
    assert_true(req.with_protocol);
}

static void test_parse_accepts_header_variants(void **state)
{
    sc_upgrade_req_t req;

    expect_accepted("GET /ws HTTP/1.1\r\nHost: h\r\n"
                    "connection: Upgrade , keep-alive\r\n"
                    "SEC-WEBSOCKET-KEY:\t" KEY " \r\n"
                    "sec-websocket-version:13  \r\n\r\n",
                    &req);
    assert_memory_equal(req.key, KEY, 24);
}

static void test_parse_refuses_a_malformed_request_line_with_400(void **state)
{
    static const char *heads[] = {
        "GET /ws\r\nHost: a b\r\n\r\n", /* second space on a later line */
        "GET /ws HTTP/1.0\r\n\r\n",
        "GET /ws HTTP/2\r\n\r\n",
        "GET  /ws HTTP/1.1\r\n\r\n", /* empty target, then " /ws ..." */
        "GET /ws HTTP/1.1\n\n",      /* no CR at all */
        "GET ws HTTP/1.1\r\n\r\n",   /* neither origin- nor absolute-form */
        "GET /ws",
        "",
    };
    size_t i;

    for (i = 0; i < sizeof(heads) / sizeof(heads[0]); i++)
        expect_refusal(heads[i], 400, "Bad Request", "bad_request",
                       "malformed request", NULL);
}

static void test_parse_refuses_other_paths_with_404(void **state)
{
    static const char *targets[] = {
        "/",  "/wss",      "/ws/",         "/WS",
        "/w", "/api/emit", "/ws/?token=x", "http://h/wss?x"};
    char b[512];
    size_t i;

    for (i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        head(b, sizeof(b), targets[i], "");
        expect_refusal(b, 404, "Not Found", "not_found",
                       "WebSocket endpoint is /ws", NULL);
    }
    /* the path is checked before the headers */
    expect_refusal("GET /x HTTP/1.1\r\n\r\n", 404, "Not Found", "not_found",
                   "WebSocket endpoint is /ws", NULL);
}

/* A valid upgrade head to /ws with `extra` header lines instead of the
 * key line (when `key` is NULL) or after it. */
static void head_with(char *b, size_t cap, const char *key, const char *extra)
{
    snprintf(b, cap,
             "GET /ws HTTP/1.1\r\nHost: localhost:8080\r\n"
             "Upgrade: websocket\r\nConnection: Upgrade\r\n%s%s%s"
             "Sec-WebSocket-Version: 13\r\n%s\r\n",
             key ? "Sec-WebSocket-Key: " : "", key ? key : "",
             key ? "\r\n" : "", extra);
}

static void
test_parse_refuses_keys_that_are_not_16_bytes_of_base64(void **state)
{
    static const char *keys[] = {
        "dGhlIHNhbXBsZSBub25jZQ=!",   /* not "==" */
        "dGhlIHNhbXBsZSBub25j*Q==",   /* outside the alphabet */
        "dGhlIHNhbXBsZSBub25jZR==",   /* low bits set: not 16 bytes */
        "dGhlIHNhbXBsZSBub25jZQ",     /* 22 characters */
        "dGhlIHNhbXBsZSBub25jZQ==AA", /* 26 */
    };
    char b[512];
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        head_with(b, sizeof b, keys[i], "");
        expect_refusal(b, 400, "Bad Request", "bad_request",
                       "not a valid WebSocket upgrade", NULL);
    }
    /* two keys, even equal ones */
    head_with(b, sizeof b, KEY, "Sec-WebSocket-Key: " KEY "\r\n");
    expect_refusal(b, 400, "Bad Request", "bad_request",
                   "not a valid WebSocket upgrade", NULL);
}

static void test_parse_refuses_http_that_is_not_well_formed(void **state)
{
    char b[512];
    /* no Host, or two */
    expect_refusal("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: " KEY "\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n",
                   400, "Bad Request", "bad_request",
                   "one Host header required (RFC 7230 section 5.4)", NULL);
    head_with(b, sizeof b, KEY, "Host: other\r\n");
    expect_refusal(b, 400, "Bad Request", "bad_request",
                   "one Host header required (RFC 7230 section 5.4)", NULL);
    /* a line without a colon; obs-fold (RFC 6455 section 4.2.1: 400) */
    head_with(b, sizeof b, KEY, "no colon here\r\n");
    expect_refusal(b, 400, "Bad Request", "bad_request", "malformed request",
                   NULL);
    head_with(b, sizeof b, KEY, "X-A: 1\r\n folded\r\n");
    expect_refusal(b, 400, "Bad Request", "bad_request",
                   "malformed request: obsolete line folding", NULL);
    /* a body announced (found by the fuzzer: a 413 from the reader's body
     * limit of 0 is not an answer the upgrade gives) */
    head_with(b, sizeof b, KEY, "Content-Length: 15\r\n");
    expect_refusal(b, 400, "Bad Request", "bad_request",
                   "a WebSocket upgrade request has no body", NULL);
    /* a NUL inside a header value */
    head_with(b, sizeof b, KEY, "X-A: a?b\r\n");
    size_t n = strlen(b);
    *strchr(b, '?') = '\0';
    sc_upgrade_req_t req;
    sc_http_refusal_t r;
    assert_int_equal(sc_upgrade_parse(b, n, &req, &r), SC_EINVAL);
    assert_int_equal(r.status, 400);
}

static void
test_parse_combines_subprotocol_headers_and_takes_absolute_form(void **state)
{
    char b[512];
    sc_upgrade_req_t req;
    head_with(b, sizeof b, KEY,
              "Sec-WebSocket-Protocol: chat\r\n"
              "Sec-WebSocket-Protocol: scopecast.v1\r\n");
    expect_accepted(b, &req);
    assert_true(req.with_protocol);
    head_with(b, sizeof b, KEY,
              "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: x\r\n");
    expect_refusal(b, 400, "Bad Request", "bad_request",
                   "subprotocol scopecast.v1 required", NULL);
    expect_accepted("GET ws://h:8080/ws?token=abc HTTP/1.1\r\nHost: h:8080\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: " KEY "\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n",
                    &req);
    assert_int_equal(req.query_len, 9);
    assert_memory_equal(req.query, "token=abc", 9);
}

static void test_parse_refuses_other_versions_with_426(void **state)
{
    static const char *heads[] = {
        "GET /ws HTTP/1.1\r\nSec-WebSocket-Key: " KEY
        "\r\nConnection: Upgrade\r\n\r\n",
        "GET /ws HTTP/1.1\r\nSec-WebSocket-Version: 8\r\n\r\n",
        "GET /ws HTTP/1.1\r\nSec-WebSocket-Version: 130\r\n\r\n",
        "GET /ws HTTP/1.1\r\nSec-WebSocket-Version: 13, 8\r\n\r\n",
    };
    size_t i;

    for (i = 0; i < sizeof(heads) / sizeof(heads[0]); i++)
        expect_refusal(heads[i], 426, "Upgrade Required", "bad_request",
                       "WebSocket version 13 required",
                       "sec-websocket-version: 13\r\n");
}

static void test_parse_refuses_a_bad_key_or_connection_with_400(void **state)
{
    static const char *heads[] = {
        /* no key */
        "GET /ws HTTP/1.1\r\nSec-WebSocket-Version: 13\r\n"
        "Connection: Upgrade\r\n\r\n",
        /* 23 and 25 chars */
        "GET /ws HTTP/1.1\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n"
        "Connection: Upgrade\r\n\r\n",
        "GET /ws HTTP/1.1\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ===\r\n"
        "Connection: Upgrade\r\n\r\n",
        /* no Connection, or without upgrade */
        "GET /ws HTTP/1.1\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: " KEY "\r\n\r\n",
        "GET /ws HTTP/1.1\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: " KEY "\r\nConnection: keep-alive\r\n\r\n",
        "GET /ws HTTP/1.1\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: " KEY "\r\nConnection: upgrades\r\n\r\n",
    };
    size_t i;

    for (i = 0; i < sizeof(heads) / sizeof(heads[0]); i++)
        expect_refusal(heads[i], 400, "Bad Request", "bad_request",
                       "not a valid WebSocket upgrade", NULL);
}

static void test_parse_refuses_other_subprotocols_with_400(void **state)
{
    char b[512];

    head(b, sizeof(b), "/ws", "Sec-WebSocket-Protocol: chat\r\n");
    expect_refusal(b, 400, "Bad Request", "bad_request",
                   "subprotocol scopecast.v1 required", NULL);
    head(b, sizeof(b), "/ws", "Sec-WebSocket-Protocol: scopecast.v2\r\n");
    expect_refusal(b, 400, "Bad Request", "bad_request",
                   "subprotocol scopecast.v1 required", NULL);
}

/* Any prefix of a valid head is handled within its bounds (ASan). */
static void test_parse_stays_within_the_bytes_given(void **state)
{
    char b[512], *copy;
    size_t n = head(b, sizeof(b), "/ws?token=abc", ""), len;
    sc_upgrade_req_t req;
    sc_http_refusal_t r;

    for (len = 0; len <= n; len++) {
        copy = malloc(len ? len : 1);
        assert_non_null(copy);
        memcpy(copy, b, len);
        (void)sc_upgrade_parse(copy, len, &req, &r);
        free(copy);
    }
    assert_int_equal(sc_upgrade_parse(NULL, 0, &req, &r), SC_EINVAL);
}

/* ---- refusal answers ------------------------------------------------------
 */

static void test_refusal_of_a_too_large_head_is_431(void **state)
{
    char got[640], want[640];
    size_t n;

    n = sc_http_refusal_write(&sc_upgrade_refusal_too_large, got, sizeof(got));
    assert_int_equal(n, old_refusal(want, sizeof(want), 431,
                                    "Request Header Fields Too Large",
                                    "bad_request", "request head too large",
                                    NULL));
    assert_string_equal(got, want);
}

static void test_refusal_write_matches_the_old_503_and_500(void **state)
{
    sc_http_refusal_t r = {503, "Service Unavailable", "unavailable",
                           "too many connections", NULL};
    char got[640], want[640];
    size_t n;

    n = sc_http_refusal_write(&r, got, sizeof(got));
    assert_int_equal(n,
                     old_refusal(want, sizeof(want), 503, "Service Unavailable",
                                 "unavailable", "too many connections", NULL));
    assert_string_equal(got, want);
    r = (sc_http_refusal_t){500, "Internal Server Error", "internal", "sha1",
                            NULL};
    n = sc_http_refusal_write(&r, got, sizeof(got));
    assert_int_equal(n, old_refusal(want, sizeof(want), 500,
                                    "Internal Server Error", "internal", "sha1",
                                    NULL));
    assert_string_equal(got, want);
}

static void test_refusal_write_gives_the_exact_426_answer(void **state)
{
    static const char want[] =
        "HTTP/1.1 426 Upgrade Required\r\n"
        "content-type: application/json\r\n"
        "content-length: 65\r\n"
        "sec-websocket-version: 13\r\n"
        "connection: close\r\n\r\n"
        "{\"error\":\"bad_request\",\"message\":\"WebSocket version 13 "
        "required\"}";
    sc_http_refusal_t r = {426, "Upgrade Required", "bad_request",
                           "WebSocket version 13 required",
                           "sec-websocket-version: 13\r\n"};
    char got[640];

    assert_int_equal(sc_http_refusal_write(&r, got, sizeof(got)),
                     sizeof(want) - 1);
    assert_string_equal(got, want);
}

static void test_refusal_write_escapes_the_body(void **state)
{
    sc_http_refusal_t r = {400, "Bad Request", NULL, "say \"hi\"\n", NULL};
    char got[640];

    assert_true(sc_http_refusal_write(&r, got, sizeof(got)) > 0);
    assert_non_null(strstr(
        got, "\r\n\r\n{\"error\":null,\"message\":\"say \\\"hi\\\"\\n\"}"));
    assert_non_null(strstr(got, "content-length: 39\r\n"));
}

static void test_refusal_write_returns_0_when_it_does_not_fit(void **state)
{
    sc_http_refusal_t r = {404, "Not Found", "not_found",
                           "WebSocket endpoint is /ws", NULL};
    char got[640];
    size_t n = sc_http_refusal_write(&r, got, sizeof(got));

    assert_true(n > 0);
    assert_int_equal(sc_http_refusal_write(&r, got, n), 0);
    assert_int_equal(sc_http_refusal_write(&r, got, n + 1), n);
    assert_int_equal(sc_http_refusal_write(&r, got, 0), 0);
    fail_allocs = true;
    assert_int_equal(sc_http_refusal_write(&r, got, sizeof(got)), 0);
    fail_allocs = false;
}

/* ---- ?token= ----------------------------------------------------------------
 */

static char *token(const char *q, size_t max)
{
    return sc_upgrade_query_param_token(q, strlen(q), max);
}

static void expect_token(const char *q, size_t max, const char *want)
{
    char *t = token(q, max);

    if (want == NULL) {
        if (t != NULL)
            fail_msg("%s: got %s", q, t);
        return;
    }
    if (t == NULL)
        fail_msg("%s: no token", q);
    assert_string_equal(t, want);
    free(t);
}

static void test_token_is_taken_from_the_query(void **state)
{
    expect_token("token=abc", 8192, "abc");
    expect_token("a=1&token=xyz&b=2", 8192, "xyz");
    expect_token("token=first&token=second", 8192, "first");
    expect_token("token=&token=second", 8192, "second"); /* empty: skipped */
    expect_token("token=", 8192, NULL);
    expect_token("tokenx=1", 8192, NULL);
    expect_token("xtoken=1", 8192, NULL);
    expect_token("Token=1", 8192, NULL);
    expect_token("", 8192, NULL);
    expect_token("&&", 8192, NULL);
    assert_null(sc_upgrade_query_param_token(NULL, 0, 8192));
}

static void test_token_is_percent_decoded(void **state)
{
    expect_token("token=a%2Eb%2fc", 8192, "a.b/c");
    expect_token("token=%41", 8192, "A");
    expect_token("token=%%41", 8192, "%A");
    expect_token("token=a+b", 8192, "a+b");   /* '+' is not a space */
    expect_token("token=%252F", 8192, "%2F"); /* decoded once */
}

static void test_token_keeps_bad_percent_escapes(void **state)
{
    expect_token("token=%G1x", 8192, "%G1x");
    expect_token("token=%1Gx", 8192, "%1Gx");
    expect_token("token=ab%4", 8192, "ab%4");
    expect_token("token=ab%", 8192, "ab%");
    expect_token("token=%4&x=1", 8192, "%4"); /* escapes end at '&' */
}

static void
test_token_keeps_an_escaped_nul_so_it_cannot_cut_the_token(void **state)
{
    /* %00 used to decode to a NUL and the rest was ignored: a valid token
     * followed by %00garbage was accepted */
    expect_token("token=abc%00garbage", 8192, "abc%00garbage");
    expect_token("token=%00", 8192, "%00");
    expect_token("token=%0A", 8192, "\n"); /* other escapes still decode */
}

static void test_parse_reports_origin_and_host(void **state)
{
    char b[1024];
    sc_upgrade_req_t req;
    sc_http_refusal_t ref;
    size_t n = head(b, sizeof(b), "/ws", "Origin: https://a.example\r\n");
    assert_int_equal(sc_upgrade_parse(b, n, &req, &ref), SC_OK);
    assert_int_equal(req.origin_len, 17);
    assert_memory_equal(req.origin, "https://a.example", 17);
    assert_int_equal(req.host_len, 14);
    assert_memory_equal(req.host, "localhost:8080", 14);
    n = head(b, sizeof(b), "/ws", "");
    assert_int_equal(sc_upgrade_parse(b, n, &req, &ref), SC_OK);
    assert_null(req.origin);
    assert_null(req.cookie);
}

static void test_parse_reports_the_first_cookie_header(void **state)
{
    char b[1024];
    sc_upgrade_req_t req;
    sc_http_refusal_t ref;
    size_t n = head(b, sizeof(b), "/ws",
                    "cookie:  sid=abc; theme=dark \r\nCookie: sid=evil\r\n");
    assert_int_equal(sc_upgrade_parse(b, n, &req, &ref), SC_OK);
    assert_int_equal(req.cookie_len, 19);
    assert_memory_equal(req.cookie, "sid=abc; theme=dark", 19);
}

static void test_token_length_is_capped_on_the_raw_value(void **state)
{
    expect_token("token=abcdefghij", 5, "abcde");
    expect_token("token=abcdefghij", 10, "abcdefghij");
    expect_token("token=ab%41cd", 4, "ab%4"); /* an escape cut by the cap */
    expect_token("token=ab%41cd", 5, "abA");
    expect_token("token=abc", 0, "");
}

static void test_token_out_of_memory_is_null(void **state)
{
    char *t;

    fail_allocs = true;
    t = token("token=abc", 8192);
    fail_allocs = false;
    assert_null(t);
}

/* ---- the 101 answer ---------------------------------------------------------
 */

static void test_accept_answers_the_rfc6455_sample_key(void **state)
{
    static const char want[] = "HTTP/1.1 101 Switching Protocols\r\n"
                               "upgrade: websocket\r\n"
                               "connection: Upgrade\r\n"
                               "sec-websocket-accept: " ACCEPT "\r\n\r\n";
    sc_upgrade_req_t req = {.key = KEY};
    char out[256];

    assert_int_equal(sc_upgrade_accept(&req, out, sizeof(out)),
                     sizeof(want) - 1);
    assert_string_equal(out, want);
}

static void test_accept_names_the_subprotocol_when_offered(void **state)
{
    static const char want[] = "HTTP/1.1 101 Switching Protocols\r\n"
                               "upgrade: websocket\r\n"
                               "connection: Upgrade\r\n"
                               "sec-websocket-accept: " ACCEPT "\r\n"
                               "sec-websocket-protocol: scopecast.v1\r\n\r\n";
    char b[512], out[256];
    sc_upgrade_req_t req;

    head(b, sizeof(b), "/ws", "Sec-WebSocket-Protocol: scopecast.v1\r\n");
    expect_accepted(b, &req);
    assert_int_equal(sc_upgrade_accept(&req, out, sizeof(out)),
                     sizeof(want) - 1);
    assert_string_equal(out, want);
}

static void test_accept_returns_0_when_it_does_not_fit(void **state)
{
    sc_upgrade_req_t req = {.key = KEY};
    sc_upgrade_req_t none = {.key = NULL};
    char out[256];
    size_t n = sc_upgrade_accept(&req, out, sizeof(out));

    assert_int_equal(sc_upgrade_accept(&none, out, sizeof(out)), 0);
    assert_int_equal(sc_upgrade_accept(&req, out, n), 0);
    assert_int_equal(sc_upgrade_accept(&req, out, n + 1), n);
    assert_int_equal(sc_upgrade_accept(&req, out, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_sends_anything_but_get_to_http_at_once),
        cmocka_unit_test(test_classify_waits_for_an_incomplete_head),
        cmocka_unit_test(test_classify_refuses_a_head_not_ended_within_max),
        cmocka_unit_test(test_classify_sends_plain_gets_to_http),
        cmocka_unit_test(test_classify_finds_upgrade_heads),
        cmocka_unit_test(test_parse_accepts_a_valid_upgrade),
        cmocka_unit_test(test_parse_gives_the_query),
        cmocka_unit_test(test_parse_selects_the_scopecast_subprotocol),
        cmocka_unit_test(test_parse_accepts_header_variants),
        cmocka_unit_test(test_parse_refuses_a_malformed_request_line_with_400),
        cmocka_unit_test(test_parse_refuses_other_paths_with_404),
        cmocka_unit_test(test_parse_refuses_other_versions_with_426),
        cmocka_unit_test(test_parse_refuses_a_bad_key_or_connection_with_400),
        cmocka_unit_test(test_parse_refuses_other_subprotocols_with_400),
        cmocka_unit_test(test_parse_stays_within_the_bytes_given),
        cmocka_unit_test(test_refusal_of_a_too_large_head_is_431),
        cmocka_unit_test(test_refusal_write_matches_the_old_503_and_500),
        cmocka_unit_test(test_refusal_write_gives_the_exact_426_answer),
        cmocka_unit_test(test_refusal_write_escapes_the_body),
        cmocka_unit_test(test_refusal_write_returns_0_when_it_does_not_fit),
        cmocka_unit_test(test_token_is_taken_from_the_query),
        cmocka_unit_test(test_token_is_percent_decoded),
        cmocka_unit_test(test_token_keeps_bad_percent_escapes),
        cmocka_unit_test(
            test_token_keeps_an_escaped_nul_so_it_cannot_cut_the_token),
        cmocka_unit_test(test_parse_reports_origin_and_host),
        cmocka_unit_test(
            test_parse_refuses_keys_that_are_not_16_bytes_of_base64),
        cmocka_unit_test(test_parse_refuses_http_that_is_not_well_formed),
        cmocka_unit_test(
            test_parse_combines_subprotocol_headers_and_takes_absolute_form),
        cmocka_unit_test(test_token_length_is_capped_on_the_raw_value),
        cmocka_unit_test(test_token_out_of_memory_is_null),
        cmocka_unit_test(test_parse_reports_the_first_cookie_header),
        cmocka_unit_test(test_accept_answers_the_rfc6455_sample_key),
        cmocka_unit_test(test_accept_names_the_subprotocol_when_offered),
        cmocka_unit_test(test_accept_returns_0_when_it_does_not_fit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
