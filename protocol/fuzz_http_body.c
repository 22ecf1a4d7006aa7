/*
 * libFuzzer target for the HTTP API bodies (built with -DSC_FUZZ=ON,
 * clang; run by scripts/fuzz.sh).
 *
 * Input: 1 byte that picks the mode (its value modulo 4), then the bytes:
 *   0  a POST /api/emit body (sc_proto_decode_emit_body);
 *   1  a POST /api/close body (sc_proto_decode_close_body);
 *   2  a POST /demo/token body (sc_proto_decode_demo_token_body);
 *   3  field values rather than a body: the bytes, cut at NUL bytes, become
 *      the strings of a close and a demo body built here (JSON-escaped),
 *      and the numbers and strings given to the answer encoders.
 * Invariants, checked rather than only "no crash":
 *   - a failure is SC_EINVAL with code "bad_request" (or SC_ENOMEM with
 *     "internal"), a message, no id, and an emptied output; its error body
 *     (sc_proto_enc_http_error) is strict JSON that gives the code and the
 *     message back;
 *   - what a decoder accepts follows the field rules (valid scopes, `data`
 *     is JSON, a demo name of 1-64 bytes without control characters, a
 *     non-empty user, lists and their counts agree, a batch only for an
 *     array), every string and `data` is valid UTF-8 (checked with a plain
 *     code point decoder: json-c's own check lets overlong forms,
 *     surrogates and code points above U+10FFFF through), and it equals
 *     what json-c reads from the same input;
 *   - round trip: re-encoding what was decoded as a body and decoding that
 *     gives the same values again;
 *   - mode 3: a body built from the strings is accepted exactly when the
 *     strings follow the rules (scope: 1-200 bytes of 0x21-0x7e), written
 *     here independently of scope.c;
 *   - every answer encoder ({"seq"}, {"results"}, {"closed"}, stats,
 *     presence, history) writes strict JSON that gives its numbers and
 *     strings back;
 *   - mode 3 also reads the first string as GET /api/history's query
 *     (accepted: a valid scope, a limit of 1-1000, a user of 1-255 bytes)
 *     and as --history rules (accepted: every limit in range, at least
 *     one per rule; each rule's own pattern matches; the rules written
 *     back parse to the same rules), and the epoch text round-trips.
 * A violated invariant aborts (a finding).
 */
#include "history_spec.h"
#include "http_body.h"
#include "http_req.h"
#include "scope.h"

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_STRINGS 8

static void check(int ok)
{
    if (!ok)
        abort();
}

/* ---- json-c as the oracle ---------------------------------------------- */

/* Strictly parses `len` bytes of `s` (NUL-terminated) and returns the
 * object (NULL for `null`); aborts when the text is not valid JSON. The
 * depth limit is the decoders' one. */
static json_object *must_parse(const char *s, size_t len)
{
    json_tokener *tok = json_tokener_new_ex(SC_PROTO_MAX_DEPTH);

    check(tok != NULL);
    json_tokener_set_flags(tok,
                           JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *o =
        json_tokener_parse_ex(tok, s, (int)len + 1); /* + the NUL */
    check(json_tokener_get_error(tok) == json_tokener_success);
    json_tokener_free(tok);
    return o;
}

/* must_parse for the input (not NUL-terminated). */
static json_object *parse_input(const char *s, size_t n)
{
    char *copy = malloc(n + 1);

    check(copy != NULL);
    memcpy(copy, s, n);
    copy[n] = '\0';
    json_object *o = must_parse(copy, n);
    free(copy);
    return o;
}

/* The buffer's text, parsed strictly (aborts when it is not JSON); the
 * buffer is freed. */
static json_object *parse_buf(sc_buf_t *b)
{
    const char *s = sc_buf_str(b);

    check(s != NULL && b->err == SC_OK);
    json_object *o = must_parse(s, sc_buf_len(b));
    sc_buf_deinit(b);
    return o;
}

static json_object *member(json_object *o, const char *key)
{
    json_object *v = NULL;

    check(json_object_is_type(o, json_type_object));
    check(json_object_object_get_ex(o, key, &v));
    return v;
}

/* The string member `key` equals `want` (the same bytes), or `want` had
 * bytes the escaper replaced (invalid UTF-8 becomes U+FFFD). */
static void check_str_member(json_object *o, const char *key, const char *want)
{
    json_object *v = member(o, key);

    if (want == NULL) {
        check(v == NULL);
        return;
    }
    check(json_object_is_type(v, json_type_string));
    bool same = (size_t)json_object_get_string_len(v) == strlen(want) &&
                memcmp(json_object_get_string(v), want, strlen(want)) == 0;
    check(same || strstr(json_object_get_string(v), "\xef\xbf\xbd") != NULL);
}

static void check_u64_member(json_object *o, const char *key, uint64_t want)
{
    json_object *v = member(o, key);

    check(json_object_is_type(v, json_type_int));
    check(json_object_get_uint64(v) == want);
}

/* ---- shared checks --------------------------------------------------------
 */

static bool streq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static bool list_eq(char **a, size_t na, char **b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++) {
        if (!streq(a[i], b[i]))
            return false;
    }
    return true;
}

/* A list and its count agree: NULL exactly when empty, no NULL entry. */
static void check_list(char **a, size_t n)
{
    check((a == NULL) == (n == 0));
    for (size_t i = 0; i < n; i++)
        check(a[i] != NULL);
}

/* UTF-8 by decoding code points (independent of utf8.c and json-c):
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        uint8_t b = s[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint32_t cp, min;
        if ((b & 0xe0) == 0xc0)
            k = 1, cp = b & 0x1f, min = 0x80;
        else if ((b & 0xf0) == 0xe0)
            k = 2, cp = b & 0x0f, min = 0x800;
        else if ((b & 0xf8) == 0xf0)
            k = 3, cp = b & 0x07, min = 0x10000;
        else
            return false;
        if (n - i <= k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

/* A decoded string (NULL: absent) is valid UTF-8: it goes out in WebSocket
 * text frames, `data` as it is (wire.c), the others escaped. */
static void check_utf8(const char *s)
{
    if (s != NULL)
        check(utf8_ok((const uint8_t *)s, strlen(s)));
}

static void check_utf8_list(char **a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        check_utf8(a[i]);
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The scope rule, written here independently of scope.c. */
static bool scope_rule(const char *s, size_t n)
{
    if (n == 0 || n > 200)
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    }
    return true;
}

static bool demo_rule(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    }
    return true;
}

/* A failed decode: its error and its error body. */
static void check_error(int rc, sc_proto_err_t *err)
{
    check(rc == SC_EINVAL || rc == SC_ENOMEM);
    check(err->code != NULL);
    check(strcmp(err->code, rc == SC_EINVAL ? "bad_request" : "internal") == 0);
    check(memchr(err->message, '\0', sizeof(err->message)) != NULL);
    check(err->message[0] != '\0' && err->id_json == NULL);
    sc_buf_t b;
    sc_buf_init(&b);
    check(sc_proto_enc_http_error(&b, err->code, err->message) == SC_OK);
    json_object *o = parse_buf(&b);
    check_str_member(o, "error", err->code);
    check_str_member(o, "message", err->message);
    json_object_put(o);
    sc_proto_err_deinit(err);
}

/* ---- POST /api/emit ----------------------------------------------------- */

static void put_list(sc_buf_t *b, const char *key, char **a, size_t n)
{
    sc_buf_putc(b, ',');
    sc_buf_put_json_cstr(b, key);
    sc_buf_put(b, ":[", 2);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            sc_buf_putc(b, ',');
        sc_buf_put_json_cstr(b, a[i]);
    }
    sc_buf_putc(b, ']');
}

/* Writes a decoded body back as a body. */
static void encode_emit_body(sc_buf_t *b, const sc_emit_body_t *body)
{
    if (body->batch)
        sc_buf_putc(b, '[');
    for (size_t i = 0; i < body->n; i++) {
        const sc_emit_item_t *it = &body->items[i];
        if (i > 0)
            sc_buf_putc(b, ',');
        sc_buf_puts(b, "{\"scope\":");
        sc_buf_put_json_cstr(b, it->scope);
        if (it->npaths > 0 || (i & 1))
            put_list(b, "paths", it->paths, it->npaths);
        if (it->has_data) {
            sc_buf_puts(b, ",\"data\":");
            sc_buf_puts(b, it->data_json);
        }
        if (it->origin != NULL) {
            sc_buf_puts(b, ",\"origin\":");
            sc_buf_put_json_cstr(b, it->origin);
        }
        if (it->has_audience)
            put_list(b, "audience", it->audience, it->naudience);
        sc_buf_putc(b, '}');
    }
    if (body->batch)
        sc_buf_putc(b, ']');
}

static bool items_eq(const sc_emit_item_t *a, const sc_emit_item_t *b)
{
    return streq(a->scope, b->scope) &&
           list_eq(a->paths, a->npaths, b->paths, b->npaths) &&
           a->has_data == b->has_data && streq(a->data_json, b->data_json) &&
           streq(a->origin, b->origin) && a->has_audience == b->has_audience &&
           list_eq(a->audience, a->naudience, b->audience, b->naudience);
}

/* The string member `key` of the input's object, or NULL (absent/null). */
static const char *input_str(json_object *o, const char *key)
{
    json_object *v = NULL;

    if (!json_object_object_get_ex(o, key, &v) || v == NULL)
        return NULL;
    check(json_object_is_type(v, json_type_string));
    return json_object_get_string(v);
}

/* The input's member `key` is an array of the strings of `a`. */
static void check_list_member(json_object *o, const char *key, char **a,
                              size_t n)
{
    json_object *v = member(o, key);

    check(json_object_is_type(v, json_type_array));
    check(json_object_array_length(v) == n);
    for (size_t i = 0; i < n; i++)
        check(strcmp(json_object_get_string(json_object_array_get_idx(v, i)),
                     a[i]) == 0);
}

/* True when the text has a run of 19 or more digits (an integer that may
 * not fit 64 bits). */
static bool has_long_number(const char *s, size_t n)
{
    size_t run = 0;

    for (size_t i = 0; i < n; i++) {
        run = s[i] >= '0' && s[i] <= '9' ? run + 1 : 0;
        if (run >= 19)
            return true;
    }
    return false;
}

/* The item equals what json-c reads from the object `o` of the input;
 * `big_int`: the input has an integer json-c may have clamped. */
static void check_item(const sc_emit_item_t *it, json_object *o, bool big_int)
{
    check(it->scope != NULL &&
          sc_proto_scope_valid(it->scope, strlen(it->scope)));
    check(scope_rule(it->scope, strlen(it->scope)));
    check_str_member(o, "scope", it->scope);
    check_list(it->paths, it->npaths);
    check(it->has_data == (it->data_json != NULL));
    check_utf8(it->data_json);
    check_utf8_list(it->paths, it->npaths);
    check_utf8(it->origin);
    check_utf8_list(it->audience, it->naudience);
    if (it->has_data) {
        json_object *d = must_parse(it->data_json, strlen(it->data_json));
        json_object *want = NULL;
        check(json_object_object_get_ex(o, "data", &want));
        /* the same value (json-c compares numbers by value), unless an
         * integer beyond 64 bits, which json-c alone clamps, is in it */
        check(json_object_equal(d, want) || big_int);
        json_object_put(d);
    } else {
        check(!json_object_object_get_ex(o, "data", NULL));
    }
    check(it->has_audience || (it->audience == NULL && it->naudience == 0));
    check_list(it->audience, it->naudience);
    if (it->has_audience)
        check_list_member(o, "audience", it->audience, it->naudience);
    if (it->npaths > 0)
        check_list_member(o, "paths", it->paths, it->npaths);
    check(streq(input_str(o, "origin"), it->origin));

    sc_emit_t e;
    sc_emit_item_to_emit(it, &e);
    check(e.scope == it->scope && e.origin == it->origin);
    check(e.npaths == it->npaths && e.naudience == it->naudience);
    check(e.has_audience == it->has_audience);
    check(e.has_payload == it->has_data);
    check(e.payload_len == (it->has_data ? strlen(it->data_json) : 0));
}

/* The answer to an emit: {"seq":N} or {"results":[{"seq":N},...]}. */
static void check_answer(const sc_emit_body_t *body, uint64_t seed)
{
    uint64_t seqs[64];
    size_t n = body->n < 64 ? body->n : 64;
    sc_buf_t b;

    for (size_t i = 0; i < n; i++)
        seqs[i] = seed * (i + 1) + (i == 1 ? UINT64_MAX - seed : 0);
    sc_buf_init(&b);
    if (body->batch) {
        check(sc_proto_enc_http_results(&b, seqs, n) == SC_OK);
        json_object *o = parse_buf(&b);
        json_object *r = member(o, "results");
        check(json_object_array_length(r) == n);
        for (size_t i = 0; i < n; i++)
            check_u64_member(json_object_array_get_idx(r, i), "seq", seqs[i]);
        json_object_put(o);
    } else {
        check(sc_proto_enc_http_seq(&b, seqs[0]) == SC_OK);
        json_object *o = parse_buf(&b);
        check_u64_member(o, "seq", seqs[0]);
        json_object_put(o);
    }
}

static void fuzz_emit(const char *s, size_t n)
{
    sc_emit_body_t body, again;
    sc_proto_err_t err;
    int rc = sc_proto_decode_emit_body(s, n, &body, &err);

    if (rc != SC_OK) {
        check(body.items == NULL && body.n == 0);
        check_error(rc, &err);
        return;
    }
    check(err.code == NULL && err.id_json == NULL);
    check(body.n >= 1 && body.items != NULL);
    size_t at = 0;
    while (at < n && is_ws(s[at]))
        at++;
    check(at < n && body.batch == (s[at] == '['));
    check(body.batch || body.n == 1);

    json_object *root = parse_input(s, n);
    bool big_int = has_long_number(s, n);
    check(json_object_is_type(root,
                              body.batch ? json_type_array : json_type_object));
    if (body.batch)
        check(json_object_array_length(root) == body.n);
    for (size_t i = 0; i < body.n; i++) {
        json_object *o = body.batch ? json_object_array_get_idx(root, i) : root;
        check_item(&body.items[i], o, big_int);
    }
    json_object_put(root);

    sc_buf_t b;
    sc_buf_init(&b);
    encode_emit_body(&b, &body);
    check(b.err == SC_OK);
    rc =
        sc_proto_decode_emit_body(sc_buf_str(&b), sc_buf_len(&b), &again, &err);
    check(rc == SC_OK);
    check(again.batch == body.batch && again.n == body.n);
    for (size_t i = 0; i < body.n; i++)
        check(items_eq(&body.items[i], &again.items[i]));
    sc_emit_body_deinit(&again);
    sc_buf_deinit(&b);

    check_answer(&body, n * 0x9e3779b97f4a7c15u);
    sc_emit_body_deinit(&body);
    check(body.items == NULL && body.n == 0);
}

/* ---- POST /api/close and POST /demo/token ------------------------------- */

static void check_close(const char *s, size_t n, const sc_close_body_t *cb)
{
    if (cb->scope != NULL)
        check(scope_rule(cb->scope, strlen(cb->scope)));
    check(cb->user == NULL || cb->user[0] != '\0');
    check_utf8(cb->user);
    json_object *o = parse_input(s, n);
    check(json_object_is_type(o, json_type_object));
    check(streq(input_str(o, "scope"), cb->scope));
    check(streq(input_str(o, "user"), cb->user));
    json_object_put(o);

    /* round trip */
    sc_buf_t b;
    sc_close_body_t again;
    sc_proto_err_t err;
    sc_buf_init(&b);
    sc_buf_putc(&b, '{');
    if (cb->user != NULL) {
        sc_buf_puts(&b, "\"user\":");
        sc_buf_put_json_cstr(&b, cb->user);
    }
    if (cb->scope != NULL) {
        sc_buf_puts(&b, cb->user != NULL ? ",\"scope\":" : "\"scope\":");
        sc_buf_put_json_cstr(&b, cb->scope);
    }
    sc_buf_putc(&b, '}');
    check(sc_proto_decode_close_body(sc_buf_str(&b), sc_buf_len(&b), &again,
                                     &err) == SC_OK);
    check(streq(again.scope, cb->scope) && streq(again.user, cb->user));
    sc_close_body_deinit(&again);
    sc_buf_deinit(&b);
}

static void fuzz_close(const char *s, size_t n)
{
    sc_close_body_t cb;
    sc_proto_err_t err;
    int rc = sc_proto_decode_close_body(s, n, &cb, &err);

    if (rc != SC_OK) {
        check(cb.scope == NULL && cb.user == NULL);
        check_error(rc, &err);
        return;
    }
    check(err.code == NULL);
    check_close(s, n, &cb);
    sc_close_body_deinit(&cb);
    check(cb.scope == NULL && cb.user == NULL);
}

static void check_demo(const char *s, size_t n, const sc_demo_token_body_t *d)
{
    check(d->name != NULL && demo_rule(d->name, strlen(d->name)));
    check_utf8(d->name);
    json_object *o = parse_input(s, n);
    check(streq(input_str(o, "name"), d->name));
    json_object_put(o);

    sc_buf_t b;
    sc_demo_token_body_t again;
    sc_proto_err_t err;
    sc_buf_init(&b);
    sc_buf_puts(&b, "{\"name\":");
    sc_buf_put_json_cstr(&b, d->name);
    sc_buf_putc(&b, '}');
    check(sc_proto_decode_demo_token_body(sc_buf_str(&b), sc_buf_len(&b),
                                          &again, &err) == SC_OK);
    check(streq(again.name, d->name));
    sc_demo_token_body_deinit(&again);
    sc_buf_deinit(&b);
}

static void fuzz_demo(const char *s, size_t n)
{
    sc_demo_token_body_t d;
    sc_proto_err_t err;
    int rc = sc_proto_decode_demo_token_body(s, n, &d, &err);

    if (rc != SC_OK) {
        check(d.name == NULL);
        check_error(rc, &err);
        return;
    }
    check(err.code == NULL);
    check_demo(s, n, &d);
    sc_demo_token_body_deinit(&d);
    check(d.name == NULL);
}

/* ---- mode 3: bodies built from strings, and the answer encoders --------- */

/* What json-c reads back from `s` escaped as a JSON string: the bytes, with
 * invalid UTF-8 replaced. Returns a new string and its length. */
static char *escaped_value(const char *s, size_t n, size_t *len)
{
    sc_buf_t b;

    sc_buf_init(&b);
    sc_buf_put_json_str(&b, s, n);
    json_object *o = parse_buf(&b);
    check(json_object_is_type(o, json_type_string));
    *len = (size_t)json_object_get_string_len(o);
    char *out = malloc(*len + 1);
    check(out != NULL);
    memcpy(out, json_object_get_string(o), *len + 1);
    json_object_put(o);
    return out;
}

static void built_demo(const char *s, size_t n)
{
    size_t vlen;
    char *v = escaped_value(s, n, &vlen);
    bool want = memchr(v, '\0', vlen) == NULL && demo_rule(v, vlen);
    sc_buf_t b;
    sc_demo_token_body_t d;
    sc_proto_err_t err;

    sc_buf_init(&b);
    sc_buf_puts(&b, "{\"name\":");
    sc_buf_put_json_str(&b, s, n);
    sc_buf_putc(&b, '}');
    int rc = sc_proto_decode_demo_token_body(sc_buf_str(&b), sc_buf_len(&b), &d,
                                             &err);
    check((rc == SC_OK) == want);
    if (rc == SC_OK) {
        check(strcmp(d.name, v) == 0);
        sc_demo_token_body_deinit(&d);
    } else {
        check(strcmp(err.message, "name: must be a string of 1-64 "
                                  "characters") == 0);
        check_error(rc, &err);
    }
    sc_buf_deinit(&b);
    free(v);
}

static void built_close(const char *scope, size_t sn, const char *user,
                        size_t un)
{
    size_t slen, ulen;
    char *sv = escaped_value(scope, sn, &slen);
    char *uv = escaped_value(user, un, &ulen);
    bool scope_ok = scope_rule(sv, slen);
    bool user_ok = ulen > 0 && memchr(uv, '\0', ulen) == NULL;
    sc_buf_t b;
    sc_close_body_t cb;
    sc_proto_err_t err;

    sc_buf_init(&b);
    sc_buf_puts(&b, "{\"scope\":");
    sc_buf_put_json_str(&b, scope, sn);
    sc_buf_puts(&b, ",\"user\":");
    sc_buf_put_json_str(&b, user, un);
    sc_buf_putc(&b, '}');
    int rc =
        sc_proto_decode_close_body(sc_buf_str(&b), sc_buf_len(&b), &cb, &err);
    check((rc == SC_OK) == (scope_ok && user_ok));
    if (rc == SC_OK) {
        check(strcmp(cb.scope, sv) == 0 && strcmp(cb.user, uv) == 0);
        sc_close_body_deinit(&cb);
    } else {
        check(strncmp(err.message,
                      scope_ok ? "user: " : "scope: ", scope_ok ? 6 : 7) == 0);
        check_error(rc, &err);
    }
    sc_buf_deinit(&b);
    free(sv);
    free(uv);
}

static uint64_t load_u64(const uint8_t *p, size_t n, size_t at)
{
    uint64_t v = 0;

    for (size_t i = 0; i < 8; i++)
        v = v << 8 | (at + i < n ? p[at + i] : 0);
    return v;
}

static void encoders(const uint8_t *p, size_t n, char **strs, size_t nstr)
{
    sc_buf_t b;
    sc_proto_stats_t st = {load_u64(p, n, 0), load_u64(p, n, 8),
                           load_u64(p, n, 16), load_u64(p, n, 24),
                           load_u64(p, n, 32)};

    sc_buf_init(&b);
    check(sc_proto_enc_http_stats(&b, &st) == SC_OK);
    json_object *o = parse_buf(&b);
    check_u64_member(o, "emitted", st.emitted);
    check_u64_member(o, "dropped", st.dropped);
    check_u64_member(o, "subscribers", st.subscribers);
    check_u64_member(o, "connections", st.connections);
    check_u64_member(o, "scopes", st.scopes);
    json_object_put(o);

    sc_buf_init(&b);
    check(sc_proto_enc_http_closed(&b, st.dropped) == SC_OK);
    o = parse_buf(&b);
    check_u64_member(o, "closed", st.dropped);
    json_object_put(o);

    /* presence: conns from the strings (session, user; user NULL for the
     * odd ones), times from the input's bytes */
    sc_conn_t conns[MAX_STRINGS];
    size_t nc = nstr > 1 ? nstr - 1 : 0;
    for (size_t i = 0; i < nc; i++) {
        uint64_t bits = load_u64(p, n, 40 + 8 * i);
        double at;
        memcpy(&at, &bits, sizeof(at));
        conns[i].session_id = strs[i + 1];
        conns[i].user_id = (i & 1) ? NULL : strs[i + 1];
        conns[i].connected_at = (i & 2) ? at : (double)(bits >> 24) / 1000.0;
        conns[i].meta = (i & 4) ? "{\"k\":[1,\"v\"]}" : NULL;
        conns[i].meta_len = conns[i].meta ? strlen(conns[i].meta) : 0;
    }
    sc_buf_init(&b);
    check(sc_proto_enc_http_presence(&b, strs[0], conns, nc) == SC_OK);
    o = parse_buf(&b);
    check_str_member(o, "scope", strs[0]);
    json_object *list = member(o, "presence");
    check(json_object_array_length(list) == nc);
    for (size_t i = 0; i < nc; i++) {
        json_object *c = json_object_array_get_idx(list, i);
        check_str_member(c, "session", conns[i].session_id);
        check_str_member(c, "user", conns[i].user_id);
        json_object *at = member(c, "at");
        check(json_object_is_type(at, json_type_double));
        double want = conns[i].connected_at;
        if (!isfinite(want) || fabs(want) * 1000.0 > 9.0e15)
            want = 0;
        check(fabs(json_object_get_double(at) - want) <=
              0.0005 + 1e-9 + fabs(want) * 1e-15);
        check(json_object_is_type(member(c, "meta"), json_type_object));
    }
    json_object_put(o);
}

static long query_get(void *ud, const char *name, char *out, size_t cap)
{
    const char *q = ud;
    return sc_http_query_param(q, strlen(q), name, out, cap);
}

static void history_query(const char *q)
{
    sc_history_query_t hq;
    sc_proto_err_t err;
    int rc = sc_proto_decode_history_query(query_get, (void *)q, &hq, &err);
    if (rc != SC_OK) {
        check_error(rc, &err);
        return;
    }
    check(scope_rule(hq.scope, strlen(hq.scope)));
    check(hq.limit >= 1 && hq.limit <= SC_PROTO_HISTORY_LIMIT_MAX);
    check(!hq.epoch_ok || hq.epoch_given);
    check(!hq.has_user || (hq.user[0] && strlen(hq.user) < 256));
}

static void history_spec(const char *text)
{
    sc_history_spec_t a, b;
    char err[256];
    if (sc_history_spec_parse(text, &a, err, sizeof err) != SC_OK) {
        check(a.n == 0 && a.rules == NULL && err[0] != '\0');
        return;
    }
    sc_buf_t w;
    sc_buf_init(&w);
    for (size_t i = 0; i < a.n; i++) {
        const sc_history_rule_t *r = &a.rules[i];
        check(r->max_events || r->max_age);
        check(r->max_events <= SC_HISTORY_MAX_EVENTS);
        check(r->max_age <= SC_HISTORY_MAX_AGE);
        check(strlen(r->pattern) == r->len && !strchr(r->pattern, '*'));
        check(sc_history_spec_match(&a, r->pattern) != NULL || !r->len);
        char item[64];
        if (r->max_events && r->max_age)
            snprintf(item, sizeof item, "=%u/%us", r->max_events, r->max_age);
        else if (r->max_events)
            snprintf(item, sizeof item, "=%u", r->max_events);
        else
            snprintf(item, sizeof item, "=%us", r->max_age);
        if (i)
            sc_buf_putc(&w, ',');
        sc_buf_puts(&w, r->pattern);
        if (r->prefix)
            sc_buf_putc(&w, '*');
        sc_buf_puts(&w, item);
    }
    check(w.err == SC_OK);
    check(sc_history_spec_parse(a.n ? sc_buf_str(&w) : NULL, &b, err,
                                sizeof err) == SC_OK);
    check(a.n == b.n);
    for (size_t i = 0; i < a.n; i++)
        check(strcmp(a.rules[i].pattern, b.rules[i].pattern) == 0 &&
              a.rules[i].prefix == b.rules[i].prefix &&
              a.rules[i].max_events == b.rules[i].max_events &&
              a.rules[i].max_age == b.rules[i].max_age);
    sc_buf_deinit(&w);
    sc_history_spec_deinit(&a);
    sc_history_spec_deinit(&b);
}

static void fuzz_built(const uint8_t *p, size_t n)
{
    char *strs[MAX_STRINGS];
    size_t lens[MAX_STRINGS], nstr = 0, at = 0;

    /* up to MAX_STRINGS strings cut at NUL bytes (the last takes the rest) */
    while (nstr < MAX_STRINGS) {
        const uint8_t *z = nstr + 1 < MAX_STRINGS && at < n
                               ? memchr(p + at, '\0', n - at)
                               : NULL;
        size_t len = z != NULL ? (size_t)(z - (p + at)) : n - at;
        strs[nstr] = malloc(len + 1);
        check(strs[nstr] != NULL);
        memcpy(strs[nstr], p + at, len);
        strs[nstr][len] = '\0';
        lens[nstr++] = len;
        if (z == NULL)
            break;
        at += len + 1;
    }
    built_demo(strs[0], lens[0]);
    built_close(strs[0], lens[0], nstr > 1 ? strs[1] : "",
                nstr > 1 ? lens[1] : 0);
    encoders(p, n, strs, nstr);
    history_query(strs[0]);
    history_spec(strs[0]);
    uint64_t ep = load_u64(p, n, 0), back = 0;
    char et[SC_PROTO_EPOCH_LEN + 1];
    sc_proto_epoch_text(ep, et);
    check(sc_proto_epoch_parse(et, strlen(et), &back) && back == ep);
    sc_buf_t hb;
    sc_buf_init(&hb);
    const sc_proto_slice_t evs[2] = {{"{}", 2}, {"[1]", 3}};
    check(sc_proto_enc_http_history(&hb, strs[0], ep & 1, ep, ep >> 1, ep & 2,
                                    evs, (size_t)(ep >> 2) % 3,
                                    ep & 8) == SC_OK);
    json_object *ho = parse_buf(&hb);
    check_str_member(ho, "scope", strs[0]);
    check_u64_member(ho, "seq", ep >> 1);
    check(json_object_array_length(member(ho, "events")) == (ep >> 2) % 3);
    check(json_object_get_boolean(member(ho, "recovered")) == !!(ep & 2));
    check(json_object_get_boolean(member(ho, "more")) == !!(ep & 8));
    if (ep & 1)
        check_str_member(ho, "epoch", et);
    else
        check(member(ho, "epoch") == NULL);
    json_object_put(ho);
    for (size_t i = 0; i < nstr; i++)
        free(strs[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;

    switch (data[0] & 3) {
    case 0:
        fuzz_emit(s, n);
        break;
    case 1:
        fuzz_close(s, n);
        break;
    case 2:
        fuzz_demo(s, n);
        break;
    default:
        fuzz_built(data + 1, n);
        break;
    }
    return 0;
}
