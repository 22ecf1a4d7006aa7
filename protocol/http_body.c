/*
 * HTTP API bodies and answers (see http_body.h).
 *
 * An emit body is parsed into an array of items allocated up front (its
 * length is known once the JSON is parsed); the first failing item unwinds
 * everything, so a batch is all or nothing.
 */
#include "http_body.h"
#include "http_req.h"
#include "jsonr.h"
#include "reply.h"
#include "scope.h"
#include "utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIT(b, s) sc_buf_put((b), (s), sizeof(s) - 1)
#define BAD_SHAPE "must be an object or a non-empty array of objects"

/* Frees what an item owns and zeroes it. */
static void item_deinit(sc_emit_item_t *it)
{
    free(it->scope);
    sc__str_array_free(it->paths, it->npaths);
    free(it->data_json);
    free(it->origin);
    sc__str_array_free(it->audience, it->naudience);
    memset(it, 0, sizeof(*it));
}

void sc_emit_body_deinit(sc_emit_body_t *body)
{
    if (body == NULL)
        return;
    for (size_t i = 0; i < body->n; i++)
        item_deinit(&body->items[i]);
    free(body->items);
    memset(body, 0, sizeof(*body));
}

/* One object item; `prefix` is "" for a single object, "[i]." in a batch.
 * On error the item is left empty. */
static int decode_item(json_object *o, const char *prefix, sc_emit_item_t *it,
                       sc_proto_err_t *err)
{
    bool has_paths = false;
    int rc = sc__read_scope(o, prefix, &it->scope, err);
    if (rc == SC_OK)
        rc = sc__read_str_array(o, "paths", prefix, &has_paths, &it->paths,
                                &it->npaths, err);
    if (rc == SC_OK)
        rc = sc__read_any(o, "data", &it->has_data, &it->data_json, err);
    if (rc == SC_OK)
        rc = sc__read_string(o, "origin", prefix, false, &it->origin, err);
    if (rc == SC_OK)
        rc = sc__read_str_array(o, "audience", prefix, &it->has_audience,
                                &it->audience, &it->naudience, err);
    if (rc != SC_OK)
        item_deinit(it);
    return rc;
}

/* A batch: a non-empty array of objects, all valid or nothing kept. */
static int decode_batch(json_object *arr, sc_emit_body_t *out,
                        sc_proto_err_t *err)
{
    size_t n = json_object_array_length(arr);

    out->batch = true;
    if (n == 0)
        return sc__err_field(err, "", NULL, BAD_SHAPE);
    out->items = calloc(n, sizeof(*out->items));
    if (out->items == NULL)
        return sc__err_nomem(err);
    for (size_t i = 0; i < n; i++) {
        json_object *o = json_object_array_get_idx(arr, i);
        char prefix[32];
        if (!json_object_is_type(o, json_type_object)) {
            snprintf(prefix, sizeof(prefix), "[%zu]: ", i);
            return sc__err_field(err, prefix, NULL, "must be an object");
        }
        snprintf(prefix, sizeof(prefix), "[%zu].", i);
        int rc = decode_item(o, prefix, &out->items[i], err);
        if (rc != SC_OK)
            return rc;
        out->n = i + 1;
    }
    return SC_OK;
}

/* A body is UTF-8 like every WebSocket text frame: its strings and `data`
 * go out in frames as they are, and one invalid byte makes a browser close
 * the connection. */
static int parse_utf8_json(const char *body, size_t len, bool object,
                           json_object **root, sc_proto_err_t *err)
{
    if (len > 0 && body != NULL && !sc_utf8_valid(body, len))
        return sc__err_field(err, "", NULL, "invalid JSON: invalid UTF-8");
    return object ? sc__json_parse_object(body, len, root, err)
                  : sc__json_parse(body, len, root, err);
}

int sc_proto_decode_emit_body(const char *body, size_t len, sc_emit_body_t *out,
                              sc_proto_err_t *err)
{
    json_object *root = NULL;

    memset(out, 0, sizeof(*out));
    memset(err, 0, sizeof(*err));
    int rc = parse_utf8_json(body, len, false, &root, err);
    if (rc != SC_OK)
        goto fail;
    if (json_object_is_type(root, json_type_array)) {
        rc = decode_batch(root, out, err);
    } else if (json_object_is_type(root, json_type_object)) {
        out->items = calloc(1, sizeof(*out->items));
        rc = out->items != NULL ? decode_item(root, "", out->items, err)
                                : sc__err_nomem(err);
        out->n = rc == SC_OK ? 1 : 0;
    } else {
        rc = sc__err_field(err, "", NULL, BAD_SHAPE);
    }
    if (rc != SC_OK)
        goto fail;
    json_object_put(root);
    return SC_OK;
fail:
    sc_emit_body_deinit(out);
    json_object_put(root);
    return rc;
}

void sc_emit_item_to_emit(const sc_emit_item_t *item, sc_emit_t *out)
{
    memset(out, 0, sizeof(*out));
    out->scope = item->scope;
    out->paths = (const char *const *)item->paths;
    out->npaths = item->npaths;
    out->origin = item->origin;
    out->audience = (const char *const *)item->audience;
    out->naudience = item->naudience;
    out->has_audience = item->has_audience;
    out->payload = item->data_json;
    out->payload_len = item->data_json != NULL ? strlen(item->data_json) : 0;
    out->has_payload = item->has_data;
}

void sc_close_body_deinit(sc_close_body_t *body)
{
    if (body == NULL)
        return;
    free(body->scope);
    free(body->user);
    memset(body, 0, sizeof(*body));
}

int sc_proto_decode_close_body(const char *body, size_t len,
                               sc_close_body_t *out, sc_proto_err_t *err)
{
    json_object *root = NULL;

    memset(out, 0, sizeof(*out));
    memset(err, 0, sizeof(*err));
    int rc = parse_utf8_json(body, len, true, &root, err);
    if (rc != SC_OK)
        goto fail;
    if (sc__member(root, "scope") != NULL)
        rc = sc__read_scope(root, "", &out->scope, err);
    if (rc == SC_OK)
        rc = sc__read_string(root, "user", "", true, &out->user, err);
    if (rc != SC_OK)
        goto fail;
    json_object_put(root);
    return SC_OK;
fail:
    sc_close_body_deinit(out);
    json_object_put(root);
    return rc;
}

void sc_demo_token_body_deinit(sc_demo_token_body_t *body)
{
    if (body == NULL)
        return;
    free(body->name);
    body->name = NULL;
}

/* A demo name: 1-64 bytes, no control characters. */
static bool demo_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

int sc_proto_decode_demo_token_body(const char *body, size_t len,
                                    sc_demo_token_body_t *out,
                                    sc_proto_err_t *err)
{
    json_object *root = NULL;

    memset(out, 0, sizeof(*out));
    memset(err, 0, sizeof(*err));
    int rc = parse_utf8_json(body, len, true, &root, err);
    if (rc != SC_OK)
        goto fail;
    json_object *name = sc__member(root, "name");
    if (name == NULL || !json_object_is_type(name, json_type_string) ||
        strlen(json_object_get_string(name)) !=
            (size_t)json_object_get_string_len(name) ||
        !demo_name_ok(json_object_get_string(name))) {
        rc = sc__err_field(err, "", "name",
                           "must be a string of 1-64 characters");
        goto fail;
    }
    out->name = strdup(json_object_get_string(name));
    if (out->name == NULL) {
        rc = sc__err_nomem(err);
        goto fail;
    }
    json_object_put(root);
    return SC_OK;
fail:
    sc_demo_token_body_deinit(out);
    json_object_put(root);
    return rc;
}

int sc_proto_enc_http_seq(sc_buf_t *b, uint64_t seq)
{
    LIT(b, "{\"seq\":");
    sc_buf_put_u64(b, seq);
    sc_buf_putc(b, '}');
    return b->err;
}

int sc_proto_enc_http_results(sc_buf_t *b, const uint64_t *seqs, size_t n)
{
    LIT(b, "{\"results\":[");
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            sc_buf_putc(b, ',');
        sc_proto_enc_http_seq(b, seqs[i]);
    }
    LIT(b, "]}");
    return b->err;
}

int sc_proto_enc_http_closed(sc_buf_t *b, uint64_t n)
{
    LIT(b, "{\"closed\":");
    sc_buf_put_u64(b, n);
    sc_buf_putc(b, '}');
    return b->err;
}

/* A decimal query value of at most 20 digits that fits 64 bits. */
static bool parse_u64(const char *s, uint64_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 20)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

int sc_proto_decode_history_query(sc_query_get_fn get, void *ud,
                                  sc_history_query_t *out, sc_proto_err_t *err)
{
    memset(out, 0, sizeof *out);
    memset(err, 0, sizeof *err);
    char v[256];
    long n = get(ud, "scope", out->scope, sizeof out->scope);
    if (n < 0)
        return sc__err_field(err, "", "scope", "required");
    if (!sc_proto_scope_valid(out->scope, (size_t)n))
        return sc__err_field(err, "", "scope",
                             "must be 1-200 printable ASCII characters "
                             "without spaces");
    if (get(ud, "since", v, sizeof v) < 0)
        return sc__err_field(err, "", "since", "required");
    if (!parse_u64(v, &out->since))
        return sc__err_field(err, "", "since",
                             "must be a non-negative integer");
    n = get(ud, "epoch", v, sizeof v);
    out->epoch_given = n >= 0;
    out->epoch_ok = n >= 0 && sc_proto_epoch_parse(v, (size_t)n, &out->epoch);
    out->limit = SC_PROTO_HISTORY_LIMIT_MAX;
    if (get(ud, "limit", v, sizeof v) >= 0) {
        uint64_t lim;
        if (!parse_u64(v, &lim) || lim < 1 || lim > SC_PROTO_HISTORY_LIMIT_MAX)
            return sc__err_field(err, "", "limit",
                                 "must be an integer from 1 to 1000");
        out->limit = (size_t)lim;
    }
    /* a buffer one byte larger tells "too long" from "absent" */
    char big[sizeof out->user + 1];
    n = get(ud, "user", big, sizeof big);
    if (n == 0 || n >= (long)sizeof out->user)
        return sc__err_field(err, "", "user", "must be 1-255 bytes");
    if (n > 0) {
        memcpy(out->user, big, (size_t)n + 1);
        out->has_user = true;
    }
    return SC_OK;
}

int sc_proto_enc_http_history(sc_buf_t *b, const char *scope, bool has_epoch,
                              uint64_t epoch, uint64_t seq, bool recovered,
                              const sc_proto_slice_t *events, size_t n,
                              bool more)
{
    LIT(b, "{\"scope\":");
    sc_buf_put_json_cstr(b, scope);
    if (has_epoch) {
        char text[SC_PROTO_EPOCH_LEN + 1];
        sc_proto_epoch_text(epoch, text);
        LIT(b, ",\"epoch\":\"");
        sc_buf_puts(b, text);
        sc_buf_putc(b, '"');
    } else {
        LIT(b, ",\"epoch\":null");
    }
    LIT(b, ",\"seq\":");
    sc_buf_put_u64(b, seq);
    sc_buf_puts(b, recovered ? ",\"recovered\":true" : ",\"recovered\":false");
    LIT(b, ",\"events\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            sc_buf_putc(b, ',');
        sc_buf_put(b, events[i].p, events[i].len);
    }
    sc_buf_puts(b, more ? "],\"more\":true}" : "],\"more\":false}");
    return b->err;
}

int sc_proto_enc_http_presence(sc_buf_t *b, const char *scope,
                               const sc_conn_t *list, size_t n)
{
    LIT(b, "{\"scope\":");
    sc_buf_put_json_cstr(b, scope);
    LIT(b, ",\"presence\":");
    sc_proto_enc_conn_list(b, list, n);
    sc_buf_putc(b, '}');
    return b->err;
}

int sc_proto_enc_http_stats(sc_buf_t *b, const sc_proto_stats_t *st)
{
    LIT(b, "{\"emitted\":");
    sc_buf_put_u64(b, st->emitted);
    LIT(b, ",\"dropped\":");
    sc_buf_put_u64(b, st->dropped);
    LIT(b, ",\"subscribers\":");
    sc_buf_put_u64(b, st->subscribers);
    LIT(b, ",\"connections\":");
    sc_buf_put_u64(b, st->connections);
    LIT(b, ",\"scopes\":");
    sc_buf_put_u64(b, st->scopes);
    sc_buf_putc(b, '}');
    return b->err;
}

int sc_proto_enc_http_error(sc_buf_t *b, const char *code, const char *message)
{
    LIT(b, "{\"error\":");
    sc_buf_put_json_cstr(b, code != NULL ? code : "");
    LIT(b, ",\"message\":");
    sc_buf_put_json_cstr(b, message != NULL ? message : "");
    sc_buf_putc(b, '}');
    return b->err;
}
