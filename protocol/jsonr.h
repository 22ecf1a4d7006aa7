/*
 * scopecast protocol, INTERNAL: strict JSON parsing and field readers shared
 * by the WebSocket decoder (codec.c) and the HTTP body parsers
 * (http_body.c). Not part of the public API (sc__ prefix); it is the only
 * header that exposes json-c types.
 *
 * Field readers take the object, the field name and a `prefix` that is put
 * in front of the field name in error messages ("" for WebSocket requests,
 * "[2]." for the third item of an HTTP batch). Each returns SC_OK (the field
 * was valid or absent; outputs set), SC_EINVAL (err filled, outputs
 * untouched) or SC_ENOMEM (err filled).
 *
 * Thread: pure, any thread.
 */
#ifndef SC_PROTO_JSONR_H
#define SC_PROTO_JSONR_H

#include "codec.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

/* Sets err to bad_request with "<prefix><field>: <text>" (field may be NULL:
 * then "<prefix><text>"). Always returns SC_EINVAL. */
int sc__err_field(sc_proto_err_t *err, const char *prefix, const char *field,
                  const char *text);

/* Sets err to "internal" / "out of memory". Returns SC_ENOMEM. */
int sc__err_nomem(sc_proto_err_t *err);

/* Strictly parses `len` bytes. On SC_OK *out is a new reference (release
 * with json_object_put), NULL for the JSON text `null`. Errors: SC_EINVAL
 * ("invalid JSON..."), SC_ENOMEM. */
int sc__json_parse(const char *text, size_t len, json_object **out,
                   sc_proto_err_t *err);

/* sc__json_parse, and the text must be an object: else SC_EINVAL with
 * "not an object" (*out is NULL). */
int sc__json_parse_object(const char *text, size_t len, json_object **out,
                          sc_proto_err_t *err);

/* The compact JSON text of `o` (no escaped slashes), malloc'd; NULL on
 * ENOMEM. */
char *sc__json_text(json_object *o);

/* The member `key` of object `obj`, or NULL when absent or JSON null. */
json_object *sc__member(json_object *obj, const char *key);

/* Required scope: missing/null, not a string, or invalid -> SC_EINVAL.
 * *out receives a malloc'd copy. */
int sc__read_scope(json_object *obj, const char *prefix, char **out,
                   sc_proto_err_t *err);

/* Optional string without NUL bytes; absent/null leaves *out NULL.
 * `nonempty` also rejects "". Messages: "must be a string" or "must be a
 * non-empty string", "must not contain NUL characters". */
int sc__read_string(json_object *obj, const char *key, const char *prefix,
                    bool nonempty, char **out, sc_proto_err_t *err);

/* Optional array of strings (no NUL bytes). Absent/null: *has false, *out
 * NULL, *n 0. An empty array: *has true, *out NULL, *n 0. */
int sc__read_str_array(json_object *obj, const char *key, const char *prefix,
                       bool *has, char ***out, size_t *n, sc_proto_err_t *err);

/* Optional value of any type, JSON null included: *has and the text. */
int sc__read_any(json_object *obj, const char *key, bool *has, char **out,
                 sc_proto_err_t *err);

/* Frees an array from sc__read_str_array. NULL is a no-op. */
void sc__str_array_free(char **a, size_t n);

#endif
