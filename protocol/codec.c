/*
 * Decoding client WebSocket requests (see codec.h for the rules and the
 * exact error messages).
 *
 * Order of checks: JSON, object, id, op, then the op's fields in the order
 * scope, meta, echo, paths, data, audience. The id comes first so that any
 * later error can echo it.
 */
#include "codec.h"
#include "jsonr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    sc_op_t op;
} ops[] = {
    {"subscribe", SC_OP_SUBSCRIBE},
    {"unsubscribe", SC_OP_UNSUBSCRIBE},
    {"emit", SC_OP_EMIT},
    {"presence", SC_OP_PRESENCE},
    {"ping", SC_OP_PING},
    {"refresh", SC_OP_REFRESH},
    {"presence_update", SC_OP_PRESENCE_UPDATE},
};

#define NOPS (sizeof(ops) / sizeof(ops[0]))

void sc_proto_err_deinit(sc_proto_err_t *err)
{
    if (err == NULL)
        return;
    free(err->id_json);
    memset(err, 0, sizeof(*err));
}

const char *sc_proto_op_name(sc_op_t op)
{
    for (size_t i = 0; i < NOPS; i++) {
        if (ops[i].op == op)
            return ops[i].name;
    }
    return "?";
}

void sc_request_deinit(sc_request_t *req)
{
    if (req == NULL)
        return;
    free(req->id_json);
    free(req->scope);
    free(req->meta_json);
    sc__str_array_free(req->paths, req->npaths);
    free(req->data_json);
    sc__str_array_free(req->audience, req->naudience);
    free(req->token);
    memset(req, 0, sizeof(*req));
}

/* id: absent/null, an integer (64-bit) or a string. */
static int decode_id(json_object *root, char **out, sc_proto_err_t *err)
{
    json_object *v = sc__member(root, "id");

    if (v == NULL)
        return SC_OK;
    if (!json_object_is_type(v, json_type_int) &&
        !json_object_is_type(v, json_type_string))
        return sc__err_field(err, "", "id", "must be an integer or a string");
    *out = sc__json_text(v);
    return *out != NULL ? SC_OK : sc__err_nomem(err);
}

/* Copies at most 32 bytes of an unknown op name for the message, printable
 * ASCII only, so the message stays short and plain. */
static void unknown_op(json_object *v, sc_proto_err_t *err)
{
    const char *s = json_object_get_string(v);
    size_t n = (size_t)json_object_get_string_len(v);

    char name[33];
    size_t i = 0;
    for (; i < n && i < 32; i++) {
        unsigned char c = (unsigned char)s[i];
        name[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    name[i] = '\0';
    char text[64];
    snprintf(text, sizeof(text), "unknown op '%s%s'", name,
             n > 32 ? "..." : "");
    sc__err_field(err, "", "op", text);
}

/* op: a required string naming one of the ops. */
static int decode_op(json_object *root, sc_op_t *op, sc_proto_err_t *err)
{
    json_object *v = sc__member(root, "op");

    if (v == NULL)
        return sc__err_field(err, "", "op", "required");
    if (!json_object_is_type(v, json_type_string))
        return sc__err_field(err, "", "op", "must be a string");
    const char *s = json_object_get_string(v);
    for (size_t i = 0; i < NOPS; i++) {
        if (strcmp(s, ops[i].name) == 0 &&
            strlen(s) == (size_t)json_object_get_string_len(v)) {
            *op = ops[i].op;
            return SC_OK;
        }
    }
    unknown_op(v, err);
    return SC_EINVAL;
}

void sc_proto_epoch_text(uint64_t epoch, char out[SC_PROTO_EPOCH_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = SC_PROTO_EPOCH_LEN - 1; i >= 0; i--, epoch >>= 4)
        out[i] = hex[epoch & 15];
    out[SC_PROTO_EPOCH_LEN] = '\0';
}

bool sc_proto_epoch_parse(const char *text, size_t len, uint64_t *epoch)
{
    if (!text || len != SC_PROTO_EPOCH_LEN)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                       : -1;
        if (d < 0)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    *epoch = v;
    return true;
}

/* since (object or null): seq, a required integer >= 0; epoch, an
 * optional string (null: absent). */
static int decode_since(json_object *root, sc_request_t *req,
                        sc_proto_err_t *err)
{
    json_object *since = sc__member(root, "since");
    if (since == NULL)
        return SC_OK;
    if (!json_object_is_type(since, json_type_object))
        return sc__err_field(err, "", "since", "must be an object");
    json_object *seq = sc__member(since, "seq");
    json_object *epoch = sc__member(since, "epoch");
    if (seq == NULL)
        return sc__err_field(err, "", "since.seq", "required");
    if (!json_object_is_type(seq, json_type_int) ||
        json_object_get_int64(seq) < 0)
        return sc__err_field(err, "", "since.seq",
                             "must be a non-negative integer");
    if (epoch != NULL && !json_object_is_type(epoch, json_type_string))
        return sc__err_field(err, "", "since.epoch", "must be a string");
    req->has_since = true;
    req->since_seq = (uint64_t)json_object_get_int64(seq);
    req->since_epoch_given = epoch != NULL;
    req->since_epoch_ok =
        epoch != NULL &&
        sc_proto_epoch_parse(json_object_get_string(epoch),
                             (size_t)json_object_get_string_len(epoch),
                             &req->since_epoch);
    return SC_OK;
}

/* subscribe: meta (object or null), echo and presence (boolean or null;
 * presence is a scopecast addition to v1, default true), since (an
 * addition: decode_since). */
static int decode_subscribe(json_object *root, sc_request_t *req,
                            sc_proto_err_t *err)
{
    json_object *meta = sc__member(root, "meta");
    json_object *echo = sc__member(root, "echo");
    json_object *presence = sc__member(root, "presence");

    if (meta != NULL && !json_object_is_type(meta, json_type_object))
        return sc__err_field(err, "", "meta", "must be an object");
    if (echo != NULL && !json_object_is_type(echo, json_type_boolean))
        return sc__err_field(err, "", "echo", "must be a boolean");
    if (presence != NULL && !json_object_is_type(presence, json_type_boolean))
        return sc__err_field(err, "", "presence", "must be a boolean");
    req->echo = echo != NULL && json_object_get_boolean(echo);
    req->no_presence = presence != NULL && !json_object_get_boolean(presence);
    int rc = decode_since(root, req, err);
    if (rc != SC_OK)
        return rc;
    if (meta != NULL && (req->meta_json = sc__json_text(meta)) == NULL)
        return sc__err_nomem(err);
    return SC_OK;
}

/* presence_update: meta, a required object (null counts as absent). */
static int decode_presence_update(json_object *root, sc_request_t *req,
                                  sc_proto_err_t *err)
{
    json_object *meta = sc__member(root, "meta");

    if (meta == NULL)
        return sc__err_field(err, "", "meta", "required");
    if (!json_object_is_type(meta, json_type_object))
        return sc__err_field(err, "", "meta", "must be an object");
    if ((req->meta_json = sc__json_text(meta)) == NULL)
        return sc__err_nomem(err);
    return SC_OK;
}

/* emit: paths and audience (arrays of strings or null), data (any). */
static int decode_emit(json_object *root, sc_request_t *req,
                       sc_proto_err_t *err)
{
    bool has_paths = false;
    int rc = sc__read_str_array(root, "paths", "", &has_paths, &req->paths,
                                &req->npaths, err);
    if (rc == SC_OK)
        rc = sc__read_any(root, "data", &req->has_data, &req->data_json, err);
    if (rc == SC_OK)
        rc = sc__read_str_array(root, "audience", "", &req->has_audience,
                                &req->audience, &req->naudience, err);
    return rc;
}

/* The op's fields: scope for every op but ping, then its own fields. */
static int decode_fields(json_object *root, sc_request_t *req,
                         sc_proto_err_t *err)
{
    if (req->op == SC_OP_PING)
        return SC_OK;
    if (req->op == SC_OP_REFRESH) {
        int rc = sc__read_string(root, "token", "", true, &req->token, err);
        if (rc == SC_OK && req->token == NULL)
            rc = sc__err_field(err, "", "token", "required");
        return rc;
    }
    int rc = sc__read_scope(root, "", &req->scope, err);
    if (rc != SC_OK)
        return rc;
    if (req->op == SC_OP_SUBSCRIBE)
        return decode_subscribe(root, req, err);
    if (req->op == SC_OP_EMIT)
        return decode_emit(root, req, err);
    if (req->op == SC_OP_PRESENCE_UPDATE)
        return decode_presence_update(root, req, err);
    return SC_OK;
}

int sc_proto_decode(const char *msg, size_t len, sc_request_t *req,
                    sc_proto_err_t *err)
{
    json_object *root = NULL;

    memset(req, 0, sizeof(*req));
    memset(err, 0, sizeof(*err));
    int rc = sc__json_parse_object(msg, len, &root, err);
    if (rc != SC_OK)
        goto fail;
    rc = decode_id(root, &req->id_json, err);
    if (rc == SC_OK)
        rc = decode_op(root, &req->op, err);
    if (rc == SC_OK)
        rc = decode_fields(root, req, err);
    if (rc != SC_OK)
        goto fail;
    json_object_put(root);
    return SC_OK;
fail:
    /* Hand the id over to the error so the reply can echo it. */
    err->id_json = req->id_json;
    req->id_json = NULL;
    sc_request_deinit(req);
    json_object_put(root);
    return rc;
}

void sc_request_to_emit(const sc_request_t *req, const char *origin,
                        sc_emit_t *out)
{
    memset(out, 0, sizeof(*out));
    out->scope = req->scope;
    out->paths = (const char *const *)req->paths;
    out->npaths = req->npaths;
    out->origin = origin;
    out->audience = (const char *const *)req->audience;
    out->naudience = req->naudience;
    out->has_audience = req->has_audience;
    out->payload = req->data_json;
    out->payload_len = req->data_json != NULL ? strlen(req->data_json) : 0;
    out->has_payload = req->has_data;
}

int sc_proto_json_value(const char *text, size_t len, char **out,
                        sc_proto_err_t *err)
{
    json_object *v = NULL;
    *out = NULL;
    memset(err, 0, sizeof *err);
    int rc = sc__json_parse(text, len, &v, err);
    if (rc != SC_OK)
        return rc;
    *out = v ? sc__json_text(v) : strdup("null");
    json_object_put(v);
    return *out ? SC_OK : sc__err_nomem(err);
}
