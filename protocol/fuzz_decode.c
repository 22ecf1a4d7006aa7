/*
 * libFuzzer target for the protocol layer (built with -DSC_FUZZ=ON, clang).
 *
 * Feeds each input to the WebSocket decoder and to the JSON string escaper
 * (the HTTP body decoders have their own target, fuzz_http_body.c), and
 * checks invariants rather than only "no crash": whatever the decoder
 * accepts re-serialises to valid JSON (data, meta, id), accepted scopes
 * follow the rule, every error has a code and a message, and every encoder
 * output parses back with json-c in strict, UTF-8-validating mode. A
 * violated invariant aborts (a finding).
 */
#include "codec.h"
#include "reply.h"
#include "scope.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

/* Strictly parses `len` bytes of `s` and returns the object (NULL for
 * `null`); aborts when the text is not valid JSON. The depth limit is the
 * decoder's one (json-c's default, 32, is lower). */
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

/* The buffer's text must be valid JSON; then the buffer is freed. */
static void check_buf(sc_buf_t *b)
{
    const char *s = sc_buf_str(b);

    if (s != NULL)
        json_object_put(must_parse(s, sc_buf_len(b)));
    sc_buf_deinit(b);
}

static void check_request(const sc_request_t *req)
{
    /* the ops that require a scope have a valid one; others (ping, and
     * ops without a scope) have none or a valid one */
    bool needs_scope = req->op == SC_OP_SUBSCRIBE ||
                       req->op == SC_OP_UNSUBSCRIBE || req->op == SC_OP_EMIT ||
                       req->op == SC_OP_PRESENCE;
    check(req->scope != NULL || !needs_scope);
    if (req->scope != NULL)
        check(sc_proto_scope_valid(req->scope, strlen(req->scope)));
    /* a refresh has a non-empty token, nothing else has one */
    if (req->op == SC_OP_REFRESH)
        check(req->token != NULL && req->token[0] != '\0');
    else
        check(req->token == NULL);
    if (req->meta_json != NULL) {
        json_object *o = must_parse(req->meta_json, strlen(req->meta_json));
        check(json_object_is_type(o, json_type_object));
        json_object_put(o);
    }
    if (req->has_data)
        json_object_put(must_parse(req->data_json, strlen(req->data_json)));
    check(req->npaths == 0 || req->paths != NULL);
    sc_buf_t b;
    sc_buf_init(&b);
    sc_proto_enc_emitted(&b, req->id_json, req->scope ? req->scope : "", 1);
    check_buf(&b);
}

static void fuzz_decode(const char *s, size_t n)
{
    sc_request_t req;
    sc_proto_err_t err;

    if (sc_proto_decode(s, n, &req, &err) == SC_OK) {
        check_request(&req);
        sc_request_deinit(&req);
        return;
    }
    check(err.code != NULL && err.message[0] != '\0');
    sc_buf_t b;
    sc_buf_init(&b);
    sc_proto_enc_decode_error(&b, &err);
    check_buf(&b);
    sc_proto_err_deinit(&err);
}

/* Escaping any bytes gives a valid JSON string that decodes to the input
 * exactly, unless the input had invalid UTF-8 (then replaced by \ufffd). */
static void fuzz_escape(const char *s, size_t n)
{
    sc_buf_t b;

    sc_buf_init(&b);
    sc_buf_put_json_str(&b, s, n);
    const char *text = sc_buf_str(&b);
    json_object *o = must_parse(text, sc_buf_len(&b));
    check(json_object_is_type(o, json_type_string));
    bool same = (size_t)json_object_get_string_len(o) == n &&
                memcmp(json_object_get_string(o), s, n) == 0;
    check(same || strstr(text, "\\ufffd") != NULL);
    json_object_put(o);
    sc_buf_deinit(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;

    fuzz_decode(s, size);
    fuzz_escape(s, size);
    return 0;
}
