/*
 * libFuzzer target for the WebSocket upgrade request (built with
 * -DSC_FUZZ=ON, clang; run by scripts/fuzz.sh).
 *
 * Input: 1 byte of settings (the ?token= length cap), then the first bytes
 * of a connection. Each input goes through what the server does with them:
 * classify, parse (the whole input and, for an upgrade, the head), take
 * the token, write the 101 or the refusal; and the refusal writer gets
 * strings cut from the input. Invariants, checked rather than only "no
 * crash":
 *   - classification follows its rules: anything not starting with "GET "
 *     is OTHER; an upgrade's head ends at the first CRLFCRLF; no CRLFCRLF
 *     means INCOMPLETE below the limit and TOO_LARGE at it;
 *   - an accepted request points into the head (key of 24 bytes, query
 *     after '?'), and its 101 answer is written whole;
 *   - a refusal is 400, 404, 426, or from the HTTP reader 431, 501 or
 *     505, and its answer is a well-formed HTTP
 *     head whose content-length is the length of a body that is strict,
 *     UTF-8-valid JSON with "error" and "message" strings (json-c);
 *   - a token is never longer than the cap nor the query.
 * A violated invariant aborts (a finding).
 */
#include "upgrade_head.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

/* The first CRLFCRLF in b[0..n): offset after it, or 0. */
static size_t find_end(const char *b, size_t n)
{
    for (size_t i = 0; i + 4 <= n; i++) {
        if (memcmp(b + i, "\r\n\r\n", 4) == 0)
            return i + 4;
    }
    return 0;
}

/* Checks an HTTP error answer of `n` bytes; returns its status. */
static unsigned check_answer(const char *out, size_t n)
{
    unsigned status = 0;

    check(strlen(out) == n);
    check(sscanf(out, "HTTP/1.1 %3u ", &status) == 1);
    size_t hl = find_end(out, n);
    check(hl > 0);
    const char *body = out + hl;
    size_t blen = n - hl;
    const char *cl = strstr(out, "\r\ncontent-length: ");
    check(cl != NULL && cl < body);
    check(strtoul(cl + 18, NULL, 10) == blen);
    check(strstr(out, "\r\nconnection: close\r\n\r\n") == body - 23);
    json_tokener *tok = json_tokener_new();
    check(tok != NULL);
    json_tokener_set_flags(tok,
                           JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *o =
        json_tokener_parse_ex(tok, body, (int)blen + 1); /* + the NUL */
    check(json_tokener_get_error(tok) == json_tokener_success);
    check(json_object_is_type(o, json_type_object));
    json_object *v;
    check(json_object_object_get_ex(o, "error", &v));
    check(json_object_object_get_ex(o, "message", &v));
    json_object_put(o);
    json_tokener_free(tok);
    return status;
}

static void check_token(const char *q, size_t len, size_t max)
{
    char *t = sc_upgrade_query_param_token(q, len, max);

    if (t != NULL) {
        check(strlen(t) <= max && strlen(t) <= len);
        free(t);
    }
}

static void fuzz_parse(const char *h, size_t n, size_t token_max)
{
    sc_upgrade_req_t req;
    sc_http_refusal_t ref;
    char out[640];

    if (sc_upgrade_parse(h, n, &req, &ref) == SC_OK) {
        check(req.key != NULL && req.key >= h && req.key + 24 <= h + n);
        if (req.query != NULL) {
            check(req.query > h && req.query + req.query_len <= h + n);
            check(req.query[-1] == '?');
            check_token(req.query, req.query_len, token_max);
        } else {
            check(req.query_len == 0);
        }
        size_t len = sc_upgrade_accept(&req, out, 256);
        check(len > 0 && strlen(out) == len);
        check(memcmp(out, "HTTP/1.1 101 Switching Protocols\r\n", 34) == 0);
        check(find_end(out, len) == len);
        check((strstr(out, "scopecast.v1") != NULL) == req.with_protocol);
        return;
    }
    check(ref.status == 400 || ref.status == 404 || ref.status == 426 ||
          ref.status == 431 || ref.status == 501 || ref.status == 505);
    check(ref.reason_phrase && ref.code && ref.message);
    size_t len = sc_http_refusal_write(&ref, out, sizeof(out));
    check(len > 0);
    check(check_answer(out, len) == ref.status);
}

static void fuzz_classify(const char *b, size_t n, size_t token_max)
{
    size_t k = n < 4 ? n : 4, end = find_end(b, n), hl = 0;
    enum sc_head_kind kind =
        sc_upgrade_classify(b, n, SC_UPGRADE_HEAD_MAX, &hl);

    if (memcmp(b, "GET ", k) != 0) {
        check(kind == SC_HEAD_OTHER);
        return;
    }
    if (end == 0) {
        check(kind == (n >= SC_UPGRADE_HEAD_MAX ? SC_HEAD_TOO_LARGE
                                                : SC_HEAD_INCOMPLETE));
        check(sc_upgrade_classify(b, n, n, &hl) == SC_HEAD_TOO_LARGE);
        return;
    }
    check(kind == SC_HEAD_OTHER || kind == SC_HEAD_UPGRADE);
    if (kind == SC_HEAD_UPGRADE) {
        check(hl == end);
        fuzz_parse(b, hl, token_max); /* what the server does next */
    }
}

/* A refusal with strings cut from the input: still well-formed. */
static void fuzz_refusal(const char *s, size_t n)
{
    char *copy = malloc(n + 1);

    check(copy != NULL);
    memcpy(copy, s, n);
    copy[n] = '\0';
    char *message = copy + strlen(copy) + (strlen(copy) < n ? 1 : 0);
    sc_http_refusal_t r;
    r.status = 400 + (unsigned)(n % 100);
    r.reason_phrase = "Bad Request";
    r.code = copy;
    r.message = (n & 1) ? message : NULL;
    r.extra_headers = (n & 2) ? "x-test: 1\r\n" : NULL;
    char out[2048];
    size_t len = sc_http_refusal_write(&r, out, sizeof(out));
    if (len > 0)
        check(check_answer(out, len) == r.status);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t caps[] = {0, 1, 2, 8, 64, 8192};
    const char *b = (const char *)data + 1;

    if (size < 1)
        return 0;
    size_t n = size - 1;
    size_t token_max = caps[data[0] % 6];
    fuzz_classify(b, n, token_max);
    fuzz_parse(b, n, token_max);
    check_token(b, n, token_max);
    fuzz_refusal(b, n);
    return 0;
}
