/*
 * scopecast protocol: the WebSocket upgrade request (RFC 6455 section 4).
 *
 * The server looks at the first bytes of a new connection without taking
 * them (MSG_PEEK): sc_upgrade_classify() tells a complete WebSocket
 * upgrade head from plain HTTP (left to the HTTP server) and from a head
 * still incomplete or too large. sc_upgrade_parse() then checks the head
 * (docs/PROTOCOL.md, "WebSocket": endpoint /ws, optional ?token=,
 * subprotocol scopecast.v1) and says how to refuse it; sc_upgrade_accept()
 * and sc_http_refusal_write() write the answers (101, or a JSON error
 * with connection: close).
 *
 * Design: a head is parsed where it lies, never copied: the request fields
 * point into it. Headers are found by name (any case) at the start of a
 * line, first occurrence wins; values are trimmed of spaces and tabs;
 * Connection, Upgrade and Sec-WebSocket-Protocol are comma-separated token
 * lists compared in any case. Every function stays within the bytes it is
 * given (a head need not end with CRLFCRLF, nor with a NUL).
 *
 * Thread: any (pure functions; sc_upgrade_accept uses OpenSSL's SHA-1,
 * which needs no initialisation).
 */
#ifndef SC_PROTO_UPGRADE_HEAD_H
#define SC_PROTO_UPGRADE_HEAD_H

#include "common.h"

#include <stdbool.h>
#include <stddef.h>

/* Longest request head the server peeks at before refusing with 431. */
#define SC_UPGRADE_HEAD_MAX 8192

enum sc_head_kind {
    SC_HEAD_INCOMPLETE, /* no CRLFCRLF yet and fewer than `max` bytes */
    SC_HEAD_TOO_LARGE,  /* no CRLFCRLF within `max` bytes */
    SC_HEAD_OTHER,      /* not a GET or not an upgrade: plain HTTP */
    SC_HEAD_UPGRADE,    /* a GET whose Upgrade header lists websocket */
};

/* Classifies the first `n` bytes a new connection sent (`b`, borrowed,
 * typically peeked). OTHER as soon as the first min(n, 4) bytes differ
 * from "GET " (even when the head is incomplete); else INCOMPLETE or
 * TOO_LARGE (n >= max) while there is no CRLFCRLF; else UPGRADE when the
 * Upgrade header lists "websocket" (any case), with *head_len = the bytes
 * through CRLFCRLF, and OTHER when it does not. *head_len is set only for
 * UPGRADE. Thread: any. */
enum sc_head_kind sc_upgrade_classify(const char *b, size_t n, size_t max,
                                      size_t *head_len);

/* A checked upgrade request; every pointer points into the head. */
typedef struct sc_upgrade_req {
    const char *query; /* after '?' in the target, query_len bytes (maybe
                          0); NULL when the target has no '?' */
    size_t query_len;
    const char *key;    /* Sec-WebSocket-Key: 24 chars, not NUL-terminated */
    bool with_protocol; /* the client offered scopecast.v1 */
    const char *origin; /* the Origin header's value (origin_len bytes), or
                           NULL when absent */
    size_t origin_len;
    const char *host; /* the Host header's value, or NULL when absent */
    size_t host_len;
    const char *cookie; /* the Cookie header's value (the first), or NULL */
    size_t cookie_len;
} sc_upgrade_req_t;

/* How to refuse a request: the fields of an HTTP answer. All strings are
 * static (borrowed forever) in the refusals made here. */
typedef struct sc_http_refusal {
    unsigned status;           /* e.g. 400 */
    const char *reason_phrase; /* e.g. "Bad Request" */
    const char *code;          /* the JSON body's "error" */
    const char *message;       /* the JSON body's "message" */
    const char *extra_headers; /* "name: value\r\n" lines, or NULL */
} sc_http_refusal_t;

/* The refusal of a head larger than SC_UPGRADE_HEAD_MAX (classified
 * TOO_LARGE): 431 Request Header Fields Too Large, bad_request, "request
 * head too large". */
extern const sc_http_refusal_t sc_upgrade_refusal_too_large;

/* Checks a whole request head (`head`, borrowed, `len` bytes through
 * CRLFCRLF), in this order: request line "METHOD TARGET HTTP/1.1" (400
 * bad_request "malformed request"; the method is not checked, see
 * sc_upgrade_classify); the head as HTTP/1.1, read by http_req.h's reader
 * (its refusals: 400 for a line without a colon, obs-fold, NUL or a body;
 * 431, 501, 505); path /ws of an origin- or absolute-form target (404
 * not_found "WebSocket endpoint is /ws"); Sec-WebSocket-Version 13 (426
 * bad_request "WebSocket version 13 required", with a
 * "sec-websocket-version: 13" header); one Sec-WebSocket-Key that is the
 * base64 of 16 bytes and Connection listing upgrade (400 bad_request "not
 * a valid WebSocket upgrade"); one Host (400); the Sec-WebSocket-Protocol
 * headers, when present, together listing scopecast.v1 (400 bad_request
 * "subprotocol scopecast.v1 required"). Returns SC_OK with *req filled
 * (pointing into head), or SC_EINVAL with *refusal set (static strings;
 * 503 when out of memory). Other capacity refusals (503) are the
 * server's. Thread: any. */
int sc_upgrade_parse(const char *head, size_t len, sc_upgrade_req_t *req,
                     sc_http_refusal_t *refusal);

/* The value of the first "token=" parameter with a non-empty value in a
 * query string (`query`, borrowed, `len` bytes, '&'-separated; NULL is
 * taken as empty): at most `max_len` bytes of the raw value are taken, then
 * %XX escapes are decoded ('+' is kept; a '%' not followed by two hex
 * digits within those bytes is kept as is, and so is %00: a token has no
 * NUL, and one would cut it short). Returns a new NUL-terminated string
 * (caller frees with free()), or NULL when absent or out of memory.
 * Thread: any. */
char *sc_upgrade_query_param_token(const char *query, size_t len,
                                   size_t max_len);

/* Writes the 101 Switching Protocols answer to `req` (borrowed) into `out`
 * (`cap` bytes): upgrade, connection, sec-websocket-accept (base64 of the
 * SHA-1 of the key and RFC 6455's GUID) and, when the client offered it,
 * sec-websocket-protocol: scopecast.v1. Returns its length (no NUL counted;
 * a NUL follows it), or 0 when it does not fit in `cap`, req->key is NULL
 * or SHA-1 failed.
 * Thread: any. */
size_t sc_upgrade_accept(const sc_upgrade_req_t *req, char *out, size_t cap);

/* Writes the refusal answer `r` (borrowed) into `out` (`cap` bytes): status
 * line, content-type: application/json, content-length, r->extra_headers,
 * connection: close, then the body {"error":code,"message":message} (JSON
 * strings, escaped; a NULL code or message is written as null; a NULL
 * reason phrase as ""). Returns its length (a NUL follows it), or 0 when
 * it does not fit in `cap` or out of memory. Thread: any. */
size_t sc_http_refusal_write(const sc_http_refusal_t *r, char *out, size_t cap);

#endif
