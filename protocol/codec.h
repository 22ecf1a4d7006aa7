/*
 * scopecast protocol: decoding client WebSocket requests (docs/PROTOCOL.md v1).
 *
 * sc_proto_decode() turns one text message into an sc_request_t, or into an
 * sc_proto_err_t that names the offending field precisely. It never trusts
 * its input: strict JSON (json-c strict mode plus a pre-scan that rejects
 * NaN/Infinity and NUL bytes), bounded nesting (SC_PROTO_MAX_DEPTH), no
 * trailing characters after the value (whitespace is allowed), integers
 * beyond 64 bits kept exactly (they pass through `data` as written, with
 * "e0" appended so the value is unchanged).
 *
 * Rules (docs/PROTOCOL.md, "Precise rules"):
 *   - unknown fields, and fields that do not belong to the op, are ignored;
 *   - null means absent for every optional field (id, meta, echo, paths,
 *     audience); `data: null` is a value (has_data, data_json "null");
 *   - `id` is checked first: when it is valid, every later error carries it
 *     (err->id_json) so the reply can echo it; when it is neither an integer
 *     nor a string, the error carries no id;
 *   - `scope` is required for subscribe, unsubscribe, emit, presence and
 *     presence_update;
 *   - `meta` is required for presence_update (null counts as absent);
 *   - `token` is required for refresh.
 *
 * Error messages (err->code is "bad_request" for all of them):
 *   "invalid JSON" (also "invalid JSON: ..." with a reason), "not an object",
 *   "id: must be an integer or a string", "op: required",
 *   "op: must be a string", "op: unknown op 'NAME'", "scope: required",
 *   "scope: must be a string",
 *   "scope: must be 1-200 printable ASCII characters without spaces",
 *   "meta: must be an object", "meta: required" (presence_update),
 *   "echo: must be a boolean",
 *   "presence: must be a boolean",
 *   "since: must be an object", "since.seq: required",
 *   "since.seq: must be a non-negative integer",
 *   "since.epoch: must be a string",
 *   "paths: must be an array of strings",
 *   "paths: must not contain NUL characters",
 *   "audience: must be an array of strings",
 *   "audience: must not contain NUL characters",
 *   "token: required", "token: must be a non-empty string",
 *   "token: must not contain NUL characters".
 *
 * Ownership: a decoded request owns all its strings (free with
 * sc_request_deinit); an error owns its id_json (sc_proto_err_deinit).
 * Thread: every function is pure and may run on any thread.
 */
#ifndef SC_PROTO_CODEC_H
#define SC_PROTO_CODEC_H

#include "common.h"
#include "event.h"

#include <stdbool.h>
#include <stddef.h>

/* Deepest nesting of arrays/objects accepted in any message or body. */
#define SC_PROTO_MAX_DEPTH 64
#define SC_PROTO_ERR_MSG_MAX 160

/* A decode failure, ready to be sent as `error` (WebSocket) or as an HTTP
 * error body. */
typedef struct sc_proto_err {
    const char *code; /* static: "bad_request", or "internal" on SC_ENOMEM;
                         NULL when no error */
    char message[SC_PROTO_ERR_MSG_MAX]; /* NUL-terminated, plain text */
    char *id_json; /* owned; the request's id as JSON text, NULL if none */
} sc_proto_err_t;

/* Frees what `err` owns and zeroes it. NULL is a no-op. */
void sc_proto_err_deinit(sc_proto_err_t *err);

typedef enum {
    SC_OP_SUBSCRIBE,
    SC_OP_UNSUBSCRIBE,
    SC_OP_EMIT,
    SC_OP_PRESENCE,
    SC_OP_PING,
    SC_OP_REFRESH, /* an addition to v1: a new token for the connection */
    SC_OP_PRESENCE_UPDATE /* an addition to v1: a new meta for one of the
                             connection's subscriptions */
} sc_op_t;

/* The wire name of an op ("subscribe", ...); "?" for an unknown value. */
const char *sc_proto_op_name(sc_op_t op);

typedef struct sc_request {
    sc_op_t op;
    char *id_json;    /* the id re-serialised as JSON ("7", "\"abc\""); NULL
                         when absent or null */
    char *scope;      /* NULL for ping; else a valid scope */
    char *meta_json;  /* subscribe: object text; NULL when absent/null;
                         presence_update: object text, never NULL */
    bool echo;        /* subscribe: default false */
    bool no_presence; /* subscribe: "presence": false (an addition to v1):
                         neither sees nor shows presence */
    /* subscribe: "since":{"seq":N,"epoch":E} (an addition: history and
     * recovery). since_epoch_given: an epoch string was there;
     * since_epoch_ok: it is one the server could have made
     * (sc_proto_epoch_parse), with its value in since_epoch. */
    bool has_since;
    uint64_t since_seq;
    bool since_epoch_given;
    bool since_epoch_ok;
    uint64_t since_epoch;
    char **paths; /* emit: npaths strings, NULL when none */
    size_t npaths;
    bool has_data;     /* emit: `data` present (null included) */
    char *data_json;   /* emit: any JSON value text, incl. "null" */
    bool has_audience; /* emit: false = everyone; true with 0 = nobody */
    char **audience;
    size_t naudience;
    char *token; /* refresh: a non-empty string without NUL */
} sc_request_t;

/* Decodes one client message of `len` bytes (need not be NUL-terminated).
 * `req` and `err` are caller storage and are overwritten (not freed first).
 * Returns:
 *   SC_OK      *req holds the request (free with sc_request_deinit); *err is
 *              zeroed;
 *   SC_EINVAL  bad request: *err is filled (code "bad_request"), *req is
 *              zeroed; free *err with sc_proto_err_deinit;
 *   SC_ENOMEM  allocation failure: *err has code "internal", message "out of
 *              memory" (and the id when it was read); *req is zeroed.
 * Thread: any. */
int sc_proto_decode(const char *msg, size_t len, sc_request_t *req,
                    sc_proto_err_t *err);

/* Frees what `req` owns and zeroes it. NULL and zeroed requests are no-ops. */
void sc_request_deinit(sc_request_t *req);

/* Checks that the `len` bytes at `text` are exactly one JSON value under
 * the rules of a request's `data` and `meta` (strict JSON, nesting up to
 * SC_PROTO_MAX_DEPTH) and gives its compact text in *out (malloc'd, the
 * caller frees; "null" for JSON null). For values that come from outside a
 * request: plugins' data and meta. Returns SC_OK, SC_EINVAL (*err says why;
 * free it with sc_proto_err_deinit) or SC_ENOMEM. Thread: any. */
int sc_proto_json_value(const char *text, size_t len, char **out,
                        sc_proto_err_t *err);

/* A scope epoch on the wire: 16 lower-case hex digits (docs/PROTOCOL.md,
 * "History and recovery"; clients treat it as opaque). */
#define SC_PROTO_EPOCH_LEN 16

/* Writes `epoch` as its wire text (SC_PROTO_EPOCH_LEN digits and a NUL).
 * Thread: any. */
void sc_proto_epoch_text(uint64_t epoch, char out[SC_PROTO_EPOCH_LEN + 1]);

/* Reads an epoch's wire text (`len` bytes): true with *epoch set when it
 * is exactly SC_PROTO_EPOCH_LEN lower-case hex digits. Thread: any. */
bool sc_proto_epoch_parse(const char *text, size_t len, uint64_t *epoch);

/* Fills `out` for sc_bus_emit() from an emit request. Every pointer in
 * *out is borrowed from `req` (keep `req` alive for the call); `origin`
 * (the emitting connection's session, may be NULL) is borrowed too. The
 * payload is data_json (JSON text), absent when the request had no data. */
void sc_request_to_emit(const sc_request_t *req, const char *origin,
                        sc_emit_t *out);

#endif
