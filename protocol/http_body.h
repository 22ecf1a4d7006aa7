/*
 * scopecast protocol: HTTP API bodies (docs/PROTOCOL.md, "HTTP API").
 *
 * Parsers for the bodies of POST /api/emit and POST /api/close, with the
 * same strict JSON and field rules as the WebSocket decoder (codec.h), and
 * encoders of the API's answers and error bodies.
 *
 * POST /api/emit: one object, or a non-empty array of objects, each with
 * `scope` (required), `paths` (array of strings), `data` (any JSON, null is
 * a value), `origin` (string) and `audience` (array of strings); null means
 * absent for the optional ones, unknown fields are ignored. A batch is
 * validated as a whole: the first invalid item fails everything, and the
 * message names it: "[2].scope: required". Messages for a single object
 * have no index: "scope: required". Other messages: "invalid JSON...",
 * "must be an object or a non-empty array of objects", "[2]: must be an
 * object", "origin: must be a string", "origin: must not contain NUL
 * characters", and the field messages of codec.h.
 *
 * POST /api/close: {} (everything), {"scope":S}, {"user":U} or
 * {"user":U,"scope":S}. Messages: "invalid JSON...", "not an object", the
 * scope messages of codec.h, "user: must be a non-empty string", "user: must
 * not contain NUL characters". An empty body is "invalid JSON" (closing
 * everything takes an explicit {}).
 *
 * POST /demo/token (demo mode): {"name":N}, N a string of 1-64 bytes
 * without control characters. Messages: "invalid JSON...", "not an
 * object", "name: must be a string of 1-64 characters".
 *
 * Errors have code "bad_request" (HTTP 400), or "internal" with SC_ENOMEM;
 * err->id_json is always NULL here.
 *
 * Ownership: parsed bodies own their strings (free with the _deinit
 * functions). Encoders append to a caller's sc_buf_t (see jsonw.h) and
 * return SC_OK or SC_ENOMEM; their arguments are borrowed.
 * Thread: pure, any thread.
 */
#ifndef SC_PROTO_HTTP_BODY_H
#define SC_PROTO_HTTP_BODY_H

#include "codec.h"
#include "conn.h"
#include "event.h"
#include "jsonw.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One emit of an HTTP body. */
typedef struct sc_emit_item {
    char *scope;  /* a valid scope */
    char **paths; /* npaths strings, NULL when none */
    size_t npaths;
    bool has_data;     /* `data` present (null included) */
    char *data_json;   /* its JSON text */
    char *origin;      /* NULL when absent/null */
    bool has_audience; /* false = everyone; true with 0 ids = nobody */
    char **audience;
    size_t naudience;
} sc_emit_item_t;

typedef struct sc_emit_body {
    sc_emit_item_t *items; /* n >= 1 items after a successful parse */
    size_t n;
    bool batch; /* the body was an array: answer {"results":[...]} */
} sc_emit_body_t;

/* Parses a POST /api/emit body of `len` bytes. `out` and `err` are caller
 * storage, overwritten. Returns SC_OK (*out filled, free with
 * sc_emit_body_deinit), SC_EINVAL or SC_ENOMEM (*err filled, *out zeroed). */
int sc_proto_decode_emit_body(const char *body, size_t len, sc_emit_body_t *out,
                              sc_proto_err_t *err);

/* Frees what `body` owns and zeroes it. NULL is a no-op. */
void sc_emit_body_deinit(sc_emit_body_t *body);

/* Fills `out` for sc_bus_emit() from an item; every pointer is borrowed
 * from `item`. The payload is data_json (absent when the item had none). */
void sc_emit_item_to_emit(const sc_emit_item_t *item, sc_emit_t *out);

typedef struct sc_close_body {
    char *scope; /* NULL = every scope */
    char *user;  /* NULL = every user */
} sc_close_body_t;

/* Parses a POST /api/close body. Returns SC_OK (*out filled, free with
 * sc_close_body_deinit), SC_EINVAL or SC_ENOMEM (*err filled, *out
 * zeroed). */
int sc_proto_decode_close_body(const char *body, size_t len,
                               sc_close_body_t *out, sc_proto_err_t *err);

/* Frees what `body` owns and zeroes it. NULL is a no-op. */
void sc_close_body_deinit(sc_close_body_t *body);

typedef struct sc_demo_token_body {
    char *name; /* the user name to sign a token for */
} sc_demo_token_body_t;

/* Parses a POST /demo/token body. Returns SC_OK (*out filled, free with
 * sc_demo_token_body_deinit), SC_EINVAL or SC_ENOMEM (*err filled, *out
 * zeroed). */
int sc_proto_decode_demo_token_body(const char *body, size_t len,
                                    sc_demo_token_body_t *out,
                                    sc_proto_err_t *err);

/* Frees what `body` owns and zeroes it. NULL is a no-op. */
void sc_demo_token_body_deinit(sc_demo_token_body_t *body);

/* GET /api/history's query (an addition: "History and recovery"). */
#define SC_PROTO_HISTORY_LIMIT_MAX 1000

typedef struct sc_history_query {
    char scope[256]; /* a valid scope */
    uint64_t since;
    bool epoch_given; /* ?epoch= was there */
    bool epoch_ok;    /* ...and is one the server could have made */
    uint64_t epoch;
    size_t limit;   /* 1..SC_PROTO_HISTORY_LIMIT_MAX (default the max) */
    bool has_user;  /* ?user= was there */
    char user[256]; /* the audience to read as (has_user) */
} sc_history_query_t;

/* Gets query parameter `name` decoded into `out` (`cap` bytes,
 * NUL-terminated): its length, or -1 when absent, too long or decoding to
 * a NUL byte (sc_http_query_param's contract). */
typedef long (*sc_query_get_fn)(void *ud, const char *name, char *out,
                                size_t cap);

/* Reads GET /api/history's query parameters through `get`: scope (required, a
 * valid scope), since (required, decimal digits, at most 20, a 64-bit value),
 * epoch (optional, any text; its value when it is an epoch's wire text), limit
 * (optional, decimal 1-1000) and user (optional, 1-255 bytes; present but empty
 * or longer is an error). Returns SC_OK or SC_EINVAL with the message in *err:
 * "scope: required", the scope messages of codec.h, "since: required", "since:
 * must be a non-negative integer", "limit: must be an integer from 1 to 1000",
 * "user: must be 1-255 bytes". Thread: any. */
int sc_proto_decode_history_query(sc_query_get_fn get, void *ud,
                                  sc_history_query_t *out, sc_proto_err_t *err);

/* A borrowed piece of text: one event's JSON in a history answer. */
typedef struct sc_proto_slice {
    const char *p;
    size_t len;
} sc_proto_slice_t;

/* {"scope":S,"epoch":E|null,"seq":N,"recovered":B,"events":[…],"more":B}
 * with each event's JSON copied as given (epoch null when !has_epoch). */
int sc_proto_enc_http_history(sc_buf_t *b, const char *scope, bool has_epoch,
                              uint64_t epoch, uint64_t seq, bool recovered,
                              const sc_proto_slice_t *events, size_t n,
                              bool more);

/* {"seq":N} */
int sc_proto_enc_http_seq(sc_buf_t *b, uint64_t seq);

/* {"results":[{"seq":N},...]} */
int sc_proto_enc_http_results(sc_buf_t *b, const uint64_t *seqs, size_t n);

/* {"closed":N} */
int sc_proto_enc_http_closed(sc_buf_t *b, uint64_t n);

/* {"scope":S,"presence":[conn...]} */
int sc_proto_enc_http_presence(sc_buf_t *b, const char *scope,
                               const sc_conn_t *list, size_t n);

typedef struct sc_proto_stats {
    uint64_t emitted;
    uint64_t dropped;
    uint64_t subscribers;
    uint64_t connections; /* WebSocket connections */
    uint64_t scopes;      /* scopes with at least one subscriber */
} sc_proto_stats_t;

/* {"emitted":N,"dropped":N,"subscribers":N,"connections":N,"scopes":N} */
int sc_proto_enc_http_stats(sc_buf_t *b, const sc_proto_stats_t *st);

/* {"error":CODE,"message":TEXT}; both non-NULL. */
int sc_proto_enc_http_error(sc_buf_t *b, const char *code, const char *message);

#endif
